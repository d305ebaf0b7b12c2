"""Adapters that put an MCP server's tools into agent frameworks.

One module per framework, each behind an extra named for it (``pip install
resilient-mcp[pydantic-ai]``) that pulls only the framework's core package. Every
adapter maps from :class:`resilient_mcp.Toolbox`: tool names, descriptions and schemas
pass through unchanged, results are the framework's own types, and a call that may
have run (``ToolOutcome.status == "maybe_executed"``) takes the framework's terminal
error path, never its "please try again" one. An adapter given a client (or a client
group) never closes it; given a target, it owns the client it makes.
"""

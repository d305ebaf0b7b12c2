"""Transports: move JSON-RPC messages between a session and one server.

``base`` is the contract (:class:`~.base.Transport`, the per-message
:class:`~.base.SendContext`, the error boundary); ``streamable`` (Streamable HTTP),
``sse`` (legacy HTTP+SSE) and ``stdio`` implement it. Nothing here knows an MCP method:
what a message means is decided above, and arrives here as fields of its context.
"""

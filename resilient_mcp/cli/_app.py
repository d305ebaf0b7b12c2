"""The commands. Each one connects, does one thing, prints it, and maps any failure of
the library's error tree to its exit code (``_exit``)."""

from __future__ import annotations

import logging
import time
from typing import Any

import click

import resilient_mcp
from resilient_mcp import Client, MCPError

from . import _render as render
from ._args import parse_json_args, parse_pairs
from ._common import Body, Split, execute, json_flag, make_target, split_url, target_options
from ._exit import Exit, exit_code


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(resilient_mcp.__version__, prog_name="resilient-mcp")
def cli() -> None:
    """Diagnose, call and load-test any MCP server.

    TARGET is a URL (first argument), a command after `--` (a stdio server), or
    --config FILE --server NAME. Exit codes: see docs/cli.md.
    """


def _tools_body(schema: bool, as_json: bool) -> Body:
    async def body(client: Client) -> int:
        tools = await client.list_tools()
        if as_json:
            render.emit_json({"ok": True, "tools": [render.dump(t) for t in tools]})
            return Exit.OK
        rows = []
        for tool in tools:
            notes = tool.annotations
            hints = [
                name
                for name, on in (
                    ("read-only", notes and notes.readOnlyHint),
                    ("idempotent", notes and notes.idempotentHint),
                    ("destructive", notes and notes.destructiveHint),
                )
                if on
            ]
            rows.append([tool.name, render.first_line(tool.description), ", ".join(hints)])
        render.table("Tools", ["name", "description", "hints"], rows)
        if schema:
            for tool in tools:
                render.out.print(f"[bold]{tool.name}[/bold] input schema:")
                render.out.print_json(data=tool.inputSchema)
        return Exit.OK

    return body


@cli.command()
@click.argument("url", required=False)
@click.option("--schema", is_flag=True, help="Also print each tool's inputSchema.")
@json_flag
@target_options
def tools(url: str | None, schema: bool, as_json: bool, **params: Any) -> int:
    """List the server's tools."""
    return execute(make_target(params, url), _tools_body(schema, as_json), as_json=as_json)


@cli.command()
@click.argument("words", nargs=-1, metavar="[URL] NAME [K=V]...")
@click.option("--json", "json_args", metavar="ARGS", help="The arguments as one JSON object.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    help="json: machine-readable output (`--json` takes the arguments here).",
)
@target_options
def call(words: tuple[str, ...], json_args: str | None, output: str, **params: Any) -> int:
    """Call a tool: NAME k=v ... (JSON values parsed, coerced per the tool's schema)."""
    url, rest = split_url(words)
    if not rest:
        raise click.UsageError("call needs a tool NAME")
    name, pairs = rest[0], rest[1:]
    if json_args is not None and pairs:
        raise click.UsageError("give k=v pairs or --json ARGS, not both")
    as_json = output == "json"

    async def body(client: Client) -> int:
        if json_args is not None:
            arguments = parse_json_args(json_args)
        else:
            schema = None
            if any("=" in p for p in pairs):
                listed = {t.name: t for t in await client.list_tools()}
                schema = listed[name].inputSchema if name in listed else None
            arguments = parse_pairs(pairs, schema)
        result = await client.call_tool(name, arguments)
        if as_json:
            render.emit_json({"ok": not result.isError, "result": render.dump(result)})
        else:
            if result.text:
                (render.err if result.isError else render.out).print(result.text)
            if result.structuredContent is not None:
                render.out.print_json(data=result.structuredContent)
            if result.isError:
                render.err.print(
                    f"[bold red]the tool reported an error[/bold red] (exit {int(Exit.TOOL_ERROR)})"
                )
        return Exit.TOOL_ERROR if result.isError else Exit.OK

    return execute(make_target(params, url), body, as_json=as_json)


@cli.command()
@click.argument("url", required=False)
@json_flag
@target_options
def resources(url: str | None, as_json: bool, **params: Any) -> int:
    """List resources and resource templates."""

    async def body(client: Client) -> int:
        caps = client.capabilities
        if caps is not None and caps.resources is None:
            found, templates = [], []
        else:
            found = await client.list_resources()
            templates = await client.list_resource_templates()
        if as_json:
            render.emit_json(
                {
                    "ok": True,
                    "resources": [render.dump(r) for r in found],
                    "resourceTemplates": [render.dump(t) for t in templates],
                }
            )
            return Exit.OK
        render.table(
            "Resources", ["uri", "name", "mime type"], [[r.uri, r.name, r.mimeType] for r in found]
        )
        render.table(
            "Resource templates",
            ["uri template", "name"],
            [[t.uriTemplate, t.name] for t in templates],
        )
        return Exit.OK

    return execute(make_target(params, url), body, as_json=as_json)


@cli.command()
@click.argument("words", nargs=-1, metavar="[URL] URI")
@json_flag
@target_options
def read(words: tuple[str, ...], as_json: bool, **params: Any) -> int:
    """Read one resource."""
    url, rest = split_url(words)
    if len(rest) != 1:
        raise click.UsageError("read needs exactly one resource URI")

    async def body(client: Client) -> int:
        result = await client.read_resource(rest[0])
        if as_json:
            render.emit_json({"ok": True, "result": render.dump(result)})
            return Exit.OK
        for item in result.contents:
            text = getattr(item, "text", None)
            if text is not None:
                render.out.print(text)
            else:
                size = len(getattr(item, "blob", ""))
                render.out.print(f"[dim]<binary {item.mimeType or ''}, {size} base64 chars>[/dim]")
        return Exit.OK

    return execute(make_target(params, url), body, as_json=as_json)


@cli.command()
@click.argument("url", required=False)
@json_flag
@target_options
def prompts(url: str | None, as_json: bool, **params: Any) -> int:
    """List prompts."""

    async def body(client: Client) -> int:
        found = await client.list_prompts()
        if as_json:
            render.emit_json({"ok": True, "prompts": [render.dump(p) for p in found]})
            return Exit.OK
        render.table(
            "Prompts",
            ["name", "description", "arguments"],
            [
                [
                    p.name,
                    render.first_line(p.description),
                    ", ".join(a.name + ("*" if a.required else "") for a in p.arguments or []),
                ]
                for p in found
            ],
        )
        return Exit.OK

    return execute(make_target(params, url), body, as_json=as_json)


@cli.command()
@click.argument("words", nargs=-1, metavar="[URL] NAME [K=V]...")
@json_flag
@target_options
def prompt(words: tuple[str, ...], as_json: bool, **params: Any) -> int:
    """Render a prompt with string arguments k=v."""
    url, rest = split_url(words)
    if not rest:
        raise click.UsageError("prompt needs a prompt NAME")
    arguments = parse_pairs(rest[1:], strings=True)

    async def body(client: Client) -> int:
        result = await client.get_prompt(rest[0], arguments)
        if as_json:
            render.emit_json({"ok": True, "result": render.dump(result)})
            return Exit.OK
        for message in result.messages:
            text = getattr(message.content, "text", None)
            render.out.print(
                f"[bold]{message.role}[/bold]: {text if text is not None else message.content.type}"
            )
        return Exit.OK

    return execute(make_target(params, url), body, as_json=as_json)


@cli.command()
@click.argument("url", required=False)
@json_flag
@target_options
def ping(url: str | None, as_json: bool, **params: Any) -> int:
    """Check that the server answers (after connecting)."""

    async def body(client: Client) -> int:
        started = time.perf_counter()
        await client.ping()
        latency = (time.perf_counter() - started) * 1000
        if as_json:
            render.emit_json(
                {
                    "ok": True,
                    "latency_ms": round(latency, 3),
                    "era": client.era,
                    "transport": client.transport,
                }
            )
        else:
            render.out.print(f"pong in {latency:.1f} ms ({client.era} era, {client.transport})")
        return Exit.OK

    return execute(make_target(params, url), body, as_json=as_json)


def _register() -> None:
    # The heavier commands live in their own modules.
    from ._load import load
    from ._probe_cmd import probe
    from ._serve import serve_fault

    cli.add_command(probe)
    cli.add_command(load)
    cli.add_command(serve_fault)


def run(argv: list[str]) -> int:
    """Parse ``argv`` and run; click's own usage errors exit 1, as ours do."""
    if "--" in argv:
        at = argv.index("--")
        argv, Split.command = argv[:at], tuple(argv[at + 1 :])
    else:
        Split.command = ()
    # The library logs nothing unless asked; keep stray warnings off a script's stdout.
    logging.getLogger("resilient_mcp").setLevel(logging.ERROR)
    _register()
    try:
        result = cli.main(argv, prog_name="resilient-mcp", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        render.err.print("interrupted")
        return Exit.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return Exit.USAGE
    except MCPError as exc:  # a target the library refused before any I/O
        render.report_error(exc, as_json=False)
        return int(exit_code(exc))
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    return int(result) if isinstance(result, int) else Exit.OK

"""The real-peer matrix: one scenario on every peer x transport x era it supports.

Peers (see `launcher.py`): ``mcp126`` (mcp 1.26.0 FastMCP, 380 tools, its own venv),
``mcp`` (mcp 2.3.0 MCPServer), ``fastmcp`` (fastmcp 4.1.2; lists paginated two a
page) and ``everything`` (the TypeScript reference server from npm).

The scenario: connect (in each of the target forms `connect` accepts: URL, command
list, `StdioServer`, ``mcpServers`` entries), check the era and transport that were
detected or forced, list every tool, call two, read a resource, render a prompt,
close. server-everything adds what only it exercises: progress notifications, log
messages after ``logging/setLevel``, and server-to-client requests (sampling,
elicitation, roots) answered by our `Handlers`. Its tools that read the environment
or fetch URLs (get-env, gzip-file-as-resource) are never called.

What the peers answer (probed on the wire; the era cases below depend on it):

- mcp 2.3 and fastmcp 4 (built on it) serve both eras with nothing to enable: over
  Streamable HTTP by the ``MCP-Protocol-Version`` header of each POST; over SSE and
  stdio the first request of a connection locks its era.
- mcp 1.26 and server-everything (TypeScript SDK 1.32) are legacy only.

The matrix runs on asyncio; a few cases also run on trio (``test_trio_smoke``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest

import resilient_mcp
from resilient_mcp import Handlers, HTTPServer, StdioServer, UnsupportedProtocolVersion
from resilient_mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    LoggingMessage,
    Progress,
    Root,
    TextContent,
    TextResourceContents,
)

from .fixtures import PeerPool
from .launcher import PeerKind

pytestmark = [pytest.mark.anyio, pytest.mark.peer]

# One case: generous for a real server on a loaded 2-core CI machine; healthy runs
# take well under a second (mcp126's 380-tool list included).
DEADLINE = 20.0
LEGACY_VERSION = "2025-11-25"  # every peer speaks it; the newest handshake version
MODERN_VERSION = "2026-07-28"

Era = Literal["legacy", "modern"]
Transport = Literal["streamable-http", "sse", "stdio"]
# How the case names its server to connect():
#   url          the endpoint URL, transport left to detection (or forced by `force`)
#   url-entry    an mcpServers entry {"url": ...}
#   sse-entry    an mcpServers entry {"url": ..., "type": "sse"}
#   argv         a command list
#   stdio-server a StdioServer with its own env and cwd, nothing inherited
#   cmd-entry    an mcpServers entry {"command": ..., "args": [...], "env": {...}}
Form = Literal["url", "url-entry", "sse-entry", "argv", "stdio-server", "cmd-entry"]
EraOption = Literal["auto", "legacy", "modern"]
ForceTransport = Literal["auto", "streamable-http", "sse"]


@pytest.fixture
def anyio_backend() -> str:
    """The matrix runs on asyncio only (trio: `test_trio_smoke`)."""
    return "asyncio"


# --- what each peer serves ------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    server_name: str
    tool_count: int | None  # exact, when the peer's tool list is fixed
    tools: frozenset[str]  # present in every session
    echo: tuple[str, dict[str, Any], str]  # tool, arguments, text of the result
    add: tuple[str, dict[str, Any], str, dict[str, Any] | None]  # ... text, structured
    resource: tuple[str, str]  # uri, start of its text
    prompt: tuple[str, dict[str, str], str]  # name, arguments, part of the message


_PYTHON_ADD = ("add", {"a": 2, "b": 40}, "42", {"result": 42})
_PYTHON_RESOURCE = ("resource://static/hello", "hello world")
_PYTHON_PROMPT = ("greet", {"name": "Ann"}, "Please greet Ann warmly.")

PROFILES: dict[PeerKind, Profile] = {
    "mcp126": Profile(
        server_name="resilient-mcp-peer-mcp126",
        tool_count=380,
        tools=frozenset({"echo", "add", "progress", "billing_get_000", "users_search_376"}),
        echo=("echo", {"text": "hi"}, "hi"),
        add=_PYTHON_ADD,
        resource=_PYTHON_RESOURCE,
        prompt=_PYTHON_PROMPT,
    ),
    "mcp": Profile(
        server_name="resilient-mcp-test-peer",
        tool_count=7,
        tools=frozenset({"echo", "add", "progress", "log", "fail", "sleep", "bad_output"}),
        echo=("echo", {"text": "hi"}, "hi"),
        add=_PYTHON_ADD,
        resource=_PYTHON_RESOURCE,
        prompt=_PYTHON_PROMPT,
    ),
    "fastmcp": Profile(
        server_name="resilient-mcp-peer-fastmcp",
        tool_count=3,  # two pages of two
        tools=frozenset({"echo", "add", "progress"}),
        echo=("echo", {"text": "hi"}, "hi"),
        add=_PYTHON_ADD,
        resource=_PYTHON_RESOURCE,
        prompt=_PYTHON_PROMPT,
    ),
    "everything": Profile(
        server_name="mcp-servers/everything",
        tool_count=None,  # some tools appear only for clients with matching capabilities
        tools=frozenset({"echo", "get-sum", "trigger-long-running-operation"}),
        echo=("echo", {"message": "hi"}, "Echo: hi"),
        add=("get-sum", {"a": 2, "b": 40}, "The sum of 2 and 40 is 42.", None),
        resource=("demo://resource/dynamic/text/1", "Resource 1: This is a plaintext resource"),
        prompt=("args-prompt", {"city": "Paris"}, "What's weather in Paris?"),
    ),
}


# --- the cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    kind: PeerKind
    transport: Transport  # what the peer serves, and what the client must end up on
    form: Form
    era: EraOption  # what connect() is asked for
    expect_era: Era  # what the client must end up speaking
    force: ForceTransport = "auto"

    @property
    def id(self) -> str:
        forced = "" if self.force == "auto" else f"-force-{self.force}"
        return f"{self.kind}-{self.transport}-{self.form}{forced}-era-{self.era}"


CASES = [
    # mcp 1.26 (legacy only; the bug report's server).
    Case("mcp126", "streamable-http", "url", "auto", "legacy"),
    Case("mcp126", "streamable-http", "url", "legacy", "legacy", force="streamable-http"),
    Case("mcp126", "sse", "url", "auto", "legacy"),  # /sse URL: detection finds SSE
    Case("mcp126", "sse", "url", "legacy", "legacy", force="sse"),
    Case("mcp126", "stdio", "argv", "auto", "legacy"),
    # mcp 2.3 (both eras everywhere).
    Case("mcp", "streamable-http", "url", "auto", "modern"),
    Case("mcp", "streamable-http", "url", "legacy", "legacy"),
    Case("mcp", "streamable-http", "url-entry", "modern", "modern"),
    Case("mcp", "sse", "url", "auto", "legacy"),  # HTTP+SSE predates the modern era
    Case("mcp", "sse", "url", "legacy", "legacy", force="sse"),
    Case("mcp", "sse", "sse-entry", "modern", "modern"),  # mcp 2.3 serves it on SSE too
    Case("mcp", "stdio", "argv", "auto", "modern"),
    Case("mcp", "stdio", "stdio-server", "legacy", "legacy"),
    Case("mcp", "stdio", "cmd-entry", "modern", "modern"),
    # fastmcp 4 (on mcp 2.3: both eras).
    Case("fastmcp", "streamable-http", "url", "auto", "modern"),
    Case("fastmcp", "streamable-http", "url", "legacy", "legacy"),
    Case("fastmcp", "sse", "url", "auto", "legacy"),
    Case("fastmcp", "stdio", "cmd-entry", "auto", "modern"),
    Case("fastmcp", "stdio", "argv", "legacy", "legacy"),
    # server-everything (TypeScript SDK; legacy only).
    Case("everything", "streamable-http", "url", "auto", "legacy"),
    Case("everything", "streamable-http", "url-entry", "legacy", "legacy"),
    Case("everything", "sse", "url", "auto", "legacy"),
    Case("everything", "sse", "sse-entry", "legacy", "legacy"),
    Case("everything", "stdio", "argv", "auto", "legacy"),
    Case("everything", "stdio", "stdio-server", "legacy", "legacy"),
]

# era="modern" against servers that speak only the handshake era.
REFUSALS = [
    Case("mcp126", "streamable-http", "url", "modern", "legacy"),
    Case("mcp126", "stdio", "argv", "modern", "legacy"),
    Case("everything", "streamable-http", "url", "modern", "legacy"),
    Case("everything", "stdio", "argv", "modern", "legacy"),
]


Target = str | list[str] | HTTPServer | StdioServer | Mapping[str, Any]


def target_of(
    case: Case,
    peer_pool: PeerPool,
    peer_stdio_command: Callable[[PeerKind], list[str]],
    tmp_path: Path,
) -> Target:
    """What `case` hands to ``connect()``; starts (or reuses) the peer it needs."""
    if case.transport == "stdio":
        command, *args = peer_stdio_command(case.kind)
        if case.form == "argv":
            return [command, *args]
        if case.form == "stdio-server":
            # Nothing of our environment but the safe set; a foreign working directory.
            return StdioServer(
                command, args=args, env={"MCP_PEER": "1"}, cwd=tmp_path, inherit_env=False
            )
        assert case.form == "cmd-entry"
        return {"command": command, "args": args, "env": {"MCP_PEER": "1"}}
    url = peer_pool.get(case.kind, case.transport).url
    if case.form == "url":
        return url if case.force == "auto" else HTTPServer(url, transport=case.force)
    if case.form == "url-entry":
        return {"url": url}
    assert case.form == "sse-entry"
    return {"url": url, "type": "sse"}


def _text(blocks: list[Any]) -> str:
    return "\n".join(block.text for block in blocks if isinstance(block, TextContent))


async def run_scenario(client: resilient_mcp.Client, case: Case) -> None:
    profile = PROFILES[case.kind]

    assert client.era == case.expect_era
    assert client.transport == case.transport
    if case.expect_era == "modern":
        assert client.protocol_version == MODERN_VERSION
    else:
        assert client.protocol_version == LEGACY_VERSION
    if client.server_info is not None or case.expect_era == "legacy":
        assert client.server_info is not None
        assert client.server_info.name == profile.server_name
    assert client.capabilities is not None
    assert client.capabilities.tools is not None

    tools = await client.list_tools()
    names = [tool.name for tool in tools]
    assert len(names) == len(set(names)), "a tool listed twice: pagination went wrong"
    assert profile.tools <= set(names), sorted(profile.tools - set(names))
    if profile.tool_count is not None:
        assert len(names) == profile.tool_count

    name, arguments, expected = profile.echo
    echoed = await client.call_tool(name, arguments)
    assert not echoed.isError, echoed
    assert echoed.text == expected

    name, arguments, expected, structured = profile.add
    added = await client.call_tool(name, arguments)
    assert not added.isError, added
    assert added.text == expected
    if structured is not None:
        assert added.structuredContent == structured

    uri, start = profile.resource
    read = await client.read_resource(uri)
    content = read.contents[0]
    assert isinstance(content, TextResourceContents)
    assert content.text.startswith(start), content.text

    name, prompt_arguments, part = profile.prompt
    prompt = await client.get_prompt(name, prompt_arguments)
    assert prompt.messages
    assert part in _text([message.content for message in prompt.messages])


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_scenario(
    case: Case,
    peer_pool: PeerPool,
    peer_stdio_command: Callable[[PeerKind], list[str]],
    tmp_path: Path,
) -> None:
    target = target_of(case, peer_pool, peer_stdio_command, tmp_path)
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(target, era=case.era) as client:
            await run_scenario(client, case)


@pytest.mark.parametrize("case", REFUSALS, ids=[case.id for case in REFUSALS])
async def test_modern_refused_by_legacy_only_peers(
    case: Case,
    peer_pool: PeerPool,
    peer_stdio_command: Callable[[PeerKind], list[str]],
    tmp_path: Path,
) -> None:
    target = target_of(case, peer_pool, peer_stdio_command, tmp_path)
    with anyio.fail_after(DEADLINE), pytest.raises(UnsupportedProtocolVersion):
        async with resilient_mcp.connect(target, era="modern"):
            pass


TRIO_CASES = [
    Case("mcp126", "sse", "url", "legacy", "legacy", force="sse"),
    Case("mcp", "streamable-http", "url", "auto", "modern"),
    Case("everything", "stdio", "argv", "auto", "legacy"),
]


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("case", TRIO_CASES, ids=[case.id for case in TRIO_CASES])
async def test_trio_smoke(
    case: Case,
    peer_pool: PeerPool,
    peer_stdio_command: Callable[[PeerKind], list[str]],
    tmp_path: Path,
) -> None:
    target = target_of(case, peer_pool, peer_stdio_command, tmp_path)
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(target, era=case.era) as client:
            await run_scenario(client, case)


# --- server-everything: what only the reference server exercises ------------------------------

EVERYTHING = [
    Case("everything", "streamable-http", "url", "auto", "legacy"),
    Case("everything", "sse", "url", "auto", "legacy"),
    Case("everything", "stdio", "argv", "auto", "legacy"),
]
EVERYTHING_IDS = [case.transport for case in EVERYTHING]


@pytest.mark.parametrize("case", EVERYTHING, ids=EVERYTHING_IDS)
async def test_everything_progress(
    case: Case,
    peer_pool: PeerPool,
    peer_stdio_command: Callable[[PeerKind], list[str]],
    tmp_path: Path,
) -> None:
    seen: list[Progress] = []

    async def on_progress(progress: Progress) -> None:
        seen.append(progress)

    target = target_of(case, peer_pool, peer_stdio_command, tmp_path)
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(target) as client:
            result = await client.call_tool(
                "trigger-long-running-operation",
                {"duration": 0.3, "steps": 3},
                progress=on_progress,
            )
    assert not result.isError, result
    assert "Long running operation completed" in result.text
    assert [(p.progress, p.total) for p in seen] == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("case", EVERYTHING, ids=EVERYTHING_IDS)
async def test_everything_logging(
    case: Case,
    peer_pool: PeerPool,
    peer_stdio_command: Callable[[PeerKind], list[str]],
    tmp_path: Path,
) -> None:
    logs: list[LoggingMessage] = []
    first = anyio.Event()

    async def on_log(message: LoggingMessage) -> None:
        logs.append(message)
        first.set()

    target = target_of(case, peer_pool, peer_stdio_command, tmp_path)
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(target, handlers=Handlers(log=on_log)) as client:
            await client.set_logging_level("debug")
            # Sends one message (of a random level) at once, then one every 5 s.
            started = await client.call_tool("toggle-simulated-logging", {})
            assert "Started simulated" in started.text, started
            await first.wait()
            stopped = await client.call_tool("toggle-simulated-logging", {})
            assert "Stopped simulated" in stopped.text, stopped
    assert logs
    assert "message" in str(logs[0].data), logs[0]


@pytest.mark.parametrize("case", EVERYTHING, ids=EVERYTHING_IDS)
async def test_everything_sampling(
    case: Case,
    peer_pool: PeerPool,
    peer_stdio_command: Callable[[PeerKind], list[str]],
    tmp_path: Path,
) -> None:
    asked: list[CreateMessageRequestParams] = []

    async def sample(params: CreateMessageRequestParams) -> CreateMessageResult:
        asked.append(params)
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text="sampled by resilient-mcp"),
            model="test-model",
            stopReason="endTurn",
        )

    target = target_of(case, peer_pool, peer_stdio_command, tmp_path)
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(target, handlers=Handlers(sampling=sample)) as client:
            # Registered once the server has seen our sampling capability.
            assert "trigger-sampling-request" in {t.name for t in await client.list_tools()}
            result = await client.call_tool(
                "trigger-sampling-request", {"prompt": "say hi", "maxTokens": 7}
            )
    assert not result.isError, result
    assert "sampled by resilient-mcp" in result.text
    assert "test-model" in result.text
    assert len(asked) == 1
    assert asked[0].maxTokens == 7
    assert "say hi" in _text([message.content for message in asked[0].messages])


@pytest.mark.parametrize("case", EVERYTHING, ids=EVERYTHING_IDS)
async def test_everything_elicitation(
    case: Case,
    peer_pool: PeerPool,
    peer_stdio_command: Callable[[PeerKind], list[str]],
    tmp_path: Path,
) -> None:
    asked: list[ElicitRequestParams] = []

    async def elicit(params: ElicitRequestParams) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})

    target = target_of(case, peer_pool, peer_stdio_command, tmp_path)
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(target, handlers=Handlers(elicitation=elicit)) as client:
            assert "trigger-elicitation-request" in {t.name for t in await client.list_tools()}
            result = await client.call_tool("trigger-elicitation-request", {})
    assert not result.isError, result
    assert "User provided the requested information" in result.text
    assert "- Name: Ada Lovelace" in result.text
    assert "- Agreed to terms: true" in result.text
    assert len(asked) == 1
    schema = asked[0].requestedSchema or {}
    assert schema.get("required") == ["name"]


@pytest.mark.parametrize("case", EVERYTHING, ids=EVERYTHING_IDS)
async def test_everything_roots(
    case: Case,
    peer_pool: PeerPool,
    peer_stdio_command: Callable[[PeerKind], list[str]],
    tmp_path: Path,
) -> None:
    async def roots() -> list[Root]:
        return [Root(uri=tmp_path.as_uri(), name="workspace")]

    target = target_of(case, peer_pool, peer_stdio_command, tmp_path)
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(target, handlers=Handlers(roots=roots)) as client:
            result = await client.call_tool("get-roots-list", {})
    assert not result.isError, result
    assert "Current MCP Roots (1 total)" in result.text
    assert tmp_path.as_uri() in result.text

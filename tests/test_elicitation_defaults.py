"""SEP-1034: an accepted form gets the requested schema's defaults for the fields the
user left out, and the client advertises that it does (``elicitation.form.applyDefaults``).

A scripted server asks ``elicitation/create`` inside a tool call's SSE stream and
returns the answer it received as the tool's result, so each test sees exactly what
went over the wire.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import Handlers
from resilient_mcp.types import ElicitRequestParams, ElicitResult, TextContent

from .fake import FakeServer, result

URL = "http://127.0.0.1:1/mcp"

# One property of every kind a 2025-11-25 form may hold, each with a default.
FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "email": {"type": "string", "format": "email", "default": "jd@example.com"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "verified": {"type": "boolean", "default": True},
        "status": {"type": "string", "enum": ["active", "inactive"], "default": "active"},
        "color": {
            "type": "string",
            "oneOf": [{"const": "#f00", "title": "Red"}, {"const": "#0f0", "title": "Green"}],
            "default": "#0f0",
        },
        "tags": {
            "type": "array",
            "items": {"type": "string", "enum": ["a", "b", "c"]},
            "default": ["a", "c"],
        },
        "nickname": {"type": "string"},  # no default: left out stays out
    },
    "required": [],
}
DEFAULTS = {name: prop["default"] for name, prop in FORM["properties"].items() if "default" in prop}


@dataclass
class AskingServer(FakeServer):
    """Answers ``tools/call`` by asking ``ask`` (an ``elicitation/create`` params) and
    returning, as the tool's text, the JSON-RPC answer the client POSTed back."""

    ask: dict[str, Any] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._answered = anyio.Event()
        self.routes["tools/call"] = self._call

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            message = json.loads(request.content)
            if "method" not in message:  # the client's answer to our request
                self.answers.append(message)
                self._answered.set()
                return httpx.Response(202)
        return await super().handle(request)

    def _call(self, message: dict[str, Any]) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            ask = {"jsonrpc": "2.0", "id": "ask-1", "method": "elicitation/create"}
            yield _event({**ask, "params": self.ask})
            await self._answered.wait()
            text = json.dumps(self.answers[-1])
            yield _event(result(message, {"content": [{"type": "text", "text": text}]}))

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})


def _event(message: dict[str, Any]) -> bytes:
    return f"event: message\ndata: {json.dumps(message)}\n\n".encode()


def form(schema: dict[str, Any] = FORM, **extra: Any) -> dict[str, Any]:
    return {"message": "Your details?", "requestedSchema": schema, **extra}


async def answer_to(
    ask: dict[str, Any], handler: Callable[[ElicitRequestParams], Any]
) -> dict[str, Any]:
    """What the server received when it asked ``ask`` of a client with ``handler``."""
    server = AskingServer(ask=ask)
    async with (
        server.client() as http,
        resilient_mcp.connect(
            resilient_mcp.HTTPServer(URL, http_client=http),
            handlers=Handlers(elicitation=handler),
        ) as client,
    ):
        called = await client.call_tool("ask", timeout=10)
    block = called.content[0]
    assert isinstance(block, TextContent)
    answer: dict[str, Any] = json.loads(block.text)
    assert answer["id"] == "ask-1"
    return answer


def accepting(content: dict[str, Any] | None) -> Callable[[ElicitRequestParams], Any]:
    async def handler(params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content=content)

    return handler


@pytest.mark.anyio
class TestAsyncClient:
    """The async client completes accepted forms, and only those."""

    async def test_an_empty_accepted_form_gets_every_default(self) -> None:
        answer = await answer_to(form(), accepting({}))
        assert answer["result"] == {"action": "accept", "content": DEFAULTS}

    async def test_an_accept_without_content_gets_the_defaults_too(self) -> None:
        answer = await answer_to(form(), accepting(None))
        assert answer["result"] == {"action": "accept", "content": DEFAULTS}

    async def test_values_the_user_gave_win_even_falsy_or_null(self) -> None:
        given = {"name": "", "age": 0, "verified": False, "tags": [], "status": None}
        answer = await answer_to(form(), accepting(given))
        assert answer["result"]["content"] == {**DEFAULTS, **given}

    async def test_a_field_without_default_is_not_invented(self) -> None:
        answer = await answer_to(form(), accepting({}))
        assert "nickname" not in answer["result"]["content"]

    async def test_an_explicit_form_mode_is_completed(self) -> None:
        answer = await answer_to(form(mode="form"), accepting({"age": 41}))
        assert answer["result"]["content"] == {**DEFAULTS, "age": 41}

    @pytest.mark.parametrize("action", ["decline", "cancel"])
    async def test_a_declined_or_cancelled_form_is_left_alone(self, action: str) -> None:
        async def handler(params: ElicitRequestParams) -> ElicitResult:
            return ElicitResult(action=action)  # type: ignore[arg-type]  # parametrized

        answer = await answer_to(form(), handler)
        assert answer["result"] == {"action": action}

    async def test_a_handler_that_returns_nothing_is_not_turned_into_an_accept(self) -> None:
        async def handler(params: ElicitRequestParams) -> None:
            return None

        answer = await answer_to(form(), handler)
        assert "result" not in answer
        assert answer["error"]["code"] == -32603

    async def test_a_url_elicitation_has_no_form_to_complete(self) -> None:
        ask = {"mode": "url", "message": "Sign in", "url": "https://example.test/x"}
        answer = await answer_to({**ask, "elicitationId": "e1"}, accepting(None))
        assert answer["result"] == {"action": "accept"}

    async def test_a_form_without_defaults_is_sent_as_given(self) -> None:
        schema = {"type": "object", "properties": {"name": {"type": "string"}}}
        answer = await answer_to(form(schema), accepting({}))
        assert answer["result"] == {"action": "accept", "content": {}}

    async def test_the_client_advertises_that_it_applies_defaults(self) -> None:
        server = AskingServer(ask=form())
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http),
                handlers=Handlers(elicitation=accepting({})),
            ),
        ):
            pass
        (initialize,) = [m for m in server.received if m.get("method") == "initialize"]
        capabilities = initialize["params"]["capabilities"]
        assert capabilities == {"elicitation": {"form": {"applyDefaults": True}}}


def test_the_sync_client_completes_a_form_a_plain_function_accepted() -> None:
    server = AskingServer(ask=form())

    def handler(params: ElicitRequestParams) -> ElicitResult:  # runs in a worker thread
        return ElicitResult(action="accept", content={"name": "Ada"})

    http = server.client()
    with resilient_mcp.connect_sync(
        resilient_mcp.HTTPServer(URL, http_client=http), handlers=Handlers(elicitation=handler)
    ) as client:
        called = client.call_tool("ask", timeout=10)
    block = called.content[0]
    assert isinstance(block, TextContent)
    assert json.loads(block.text)["result"]["content"] == {**DEFAULTS, "name": "Ada"}

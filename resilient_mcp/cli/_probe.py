"""The probe's deliberate misbehaviours, over raw HTTP (the client never does these).

Only ``ping``, ``tools/list``, an unknown method and invalid session ids are sent, never
a tool call. Each step records the HTTP status, content type and the start of the body,
with its duration. Matching the observations to a row of the dialect table
(``resilient_mcp.testing._profiles.DIALECTS``, from docs server-dialects.md) is
``_dialect``'s job.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from resilient_mcp._versions import LEGACY_PROTOCOL_VERSIONS

_ACCEPT = "application/json, text/event-stream"
_UNKNOWN_METHOD = "resilient-mcp/probe-unknown-method"


@dataclass
class Answer:
    """One raw exchange."""

    step: str
    status: int | None
    content_type: str = ""
    body: str = ""
    seconds: float = 0.0
    session_header: bool = False
    error: str | None = None
    session: str | None = None

    def rpc(self) -> dict[str, Any] | None:
        """The JSON-RPC message in the body (JSON or the first SSE data line)."""
        text = self.body
        if "text/event-stream" in self.content_type:
            lines = [ln[5:].strip() for ln in text.splitlines() if ln.startswith("data:")]
            text = next((ln for ln in lines if ln), "")
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def error_of(self) -> tuple[int | None, str | None]:
        message = self.rpc() or {}
        error = message.get("error") or message.get("jsonRpcError")
        if isinstance(error, dict):
            return error.get("code"), error.get("message")
        return None, None

    def summary(self) -> dict[str, Any]:
        code, message = self.error_of()
        rpc = self.rpc() or {}
        return {
            "step": self.step,
            "status": self.status,
            "content_type": self.content_type.split(";")[0],
            "rpc_error": None
            if code is None and message is None
            else {"code": code, "message": message},
            "result": "result" in rpc,
            "body": self.body[:200] if not rpc else None,
            "new_session_id": self.session_header,
            "seconds": round(self.seconds, 4),
            "error": self.error,
        }


@dataclass
class Observations:
    """Everything the raw probe saw, step by step."""

    answers: dict[str, Answer] = field(default_factory=dict)
    ack_first: bool | None = None
    """True: a request right after `initialized`'s 202 was refused (the server acks
    before processing). None: not observed (it was served, which proves nothing)."""


def _body(method: str, request_id: int | None, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


def _initialize(version: str) -> dict[str, Any]:
    return {
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": {"name": "resilient-mcp-probe", "version": "0"},
    }


class RawHttp:
    """Raw Streamable HTTP exchanges with one endpoint."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        self.url = url
        self.headers = {"Accept": _ACCEPT, "Content-Type": "application/json", **headers}
        self.http = httpx.AsyncClient(timeout=timeout)

    async def post(
        self, step: str, payload: bytes, session: str | None = None, version: str | None = None
    ) -> Answer:
        headers = dict(self.headers)
        if session is not None:
            headers["Mcp-Session-Id"] = session
        if version is not None:
            headers["MCP-Protocol-Version"] = version
        started = time.perf_counter()
        try:
            response = await self.http.post(self.url, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            return Answer(step, None, seconds=time.perf_counter() - started, error=repr(exc))
        return Answer(
            step,
            response.status_code,
            response.headers.get("content-type", ""),
            response.text[:1_000_000],
            time.perf_counter() - started,
            "mcp-session-id" in response.headers,
            session=response.headers.get("mcp-session-id"),
        )

    async def close_session(self, session: str | None) -> None:
        if session is None:
            return
        # Cleanup only: a server without DELETE times the session out itself.
        with contextlib.suppress(httpx.HTTPError):
            await self.http.delete(self.url, headers={**self.headers, "Mcp-Session-Id": session})

    async def aclose(self) -> None:
        await self.http.aclose()


async def probe_streamable(
    url: str, headers: dict[str, str], timeout: float, version: str = LEGACY_PROTOCOL_VERSIONS[0]
) -> Observations:
    """Missing session, bogus session, early request, `initialized` ack, unknown method."""
    obs = Observations()
    raw = RawHttp(url, headers, timeout)
    try:
        seen = obs.answers
        seen["missing_session"] = await raw.post(
            "tools/list without a session id", _body("tools/list", 1), version=version
        )
        seen["bogus_session"] = await raw.post(
            "ping with an unknown session id",
            _body("ping", 2),
            session=f"resilient-mcp-probe-{uuid.uuid4().hex}",
            version=version,
        )
        # Session A: initialize, then tools/list before `initialized`.
        first = await raw.post(
            "initialize (session A)", _body("initialize", 3, _initialize(version))
        )
        seen["initialize"] = first
        session_a = first.session
        seen["early"] = await raw.post(
            "tools/list before initialized",
            _body("tools/list", 4),
            session=session_a,
            version=version,
        )
        seen["after_early"] = await raw.post(
            "ping after the early request", _body("ping", 5), session=session_a, version=version
        )
        await raw.close_session(session_a)
        # Session B: the proper handshake, then at once a list request.
        second = await raw.post(
            "initialize (session B)", _body("initialize", 6, _initialize(version))
        )
        session_b = second.session
        seen["initialized"] = await raw.post(
            "notifications/initialized",
            _body("notifications/initialized", None),
            session=session_b,
            version=version,
        )
        seen["right_after_initialized"] = await raw.post(
            "tools/list right after initialized's 202",
            _body("tools/list", 7),
            session=session_b,
            version=version,
        )
        seen["unknown_method"] = await raw.post(
            "an unknown method", _body(_UNKNOWN_METHOD, 8), session=session_b, version=version
        )
        await raw.close_session(session_b)
        after = seen["right_after_initialized"]
        if seen["initialized"].status == 202 and seen["early"].rpc() is not None:
            early_code = seen["early"].error_of()
            refused = after.error_of()
            # The same refusal as the early request proves the 202 came first.
            obs.ack_first = True if refused[0] is not None and refused == early_code else None
    finally:
        await raw.aclose()
    return obs


async def probe_sse(url: str, headers: dict[str, str], timeout: float) -> Observations:
    """Legacy HTTP+SSE: the messages endpoint without and with a bogus session id.

    (The early request needs the event stream of a live session; not probed here.)
    """
    obs = Observations()
    base = url[: -len("/sse")] if url.endswith("/sse") else url.rstrip("/")
    raw = RawHttp(f"{base}/messages/", headers, timeout)
    try:
        obs.answers["missing_session"] = await raw.post(
            "POST /messages/ without session_id", _body("tools/list", 1)
        )
        raw.url = f"{base}/messages/?session_id={uuid.uuid4().hex}"
        obs.answers["bogus_session"] = await raw.post(
            "POST /messages/ with an unknown session", _body("ping", 2)
        )
    finally:
        await raw.aclose()
    return obs

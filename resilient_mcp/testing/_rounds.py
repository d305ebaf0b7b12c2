"""Multi round-trip requests of the modern era, and the modern `Context`.

In 2026-07-28 a server cannot send the client a request: a tool that needs the
client's answer returns an `input_required` result with `inputRequests` and a signed
`requestState`, and the client re-sends the call with `inputResponses` and that state.
`ModernContext.ask` is that exchange, for the tools the eras share.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from starlette.datastructures import Headers

from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._context import ToolCall, ToolReturn
from resilient_mcp.testing._envelope import Envelope, has_capability, missing_capability
from resilient_mcp.testing._jsonrpc import INVALID_PARAMS, RpcError, dumps, notification
from resilient_mcp.testing._stats import ServerStats

# How long a minted `requestState` stays valid.
_STATE_TTL_SECONDS: Final = 300.0


class StateSealer:
    """HMAC-protected `requestState`: bound to tool and arguments, expiring."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def seal(self, payload: JSON) -> str:
        """`payload` as an opaque token only this server can open."""
        body = base64.urlsafe_b64encode(dumps(payload)).decode("ascii").rstrip("=")
        mac = hmac.new(self._key, body.encode("ascii"), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def open(self, token: Any) -> JSON | None:
        """The payload of a token this server sealed and that has not expired, or None."""
        if not isinstance(token, str) or token.count(".") != 1:
            return None
        body, mac = token.split(".")
        expected = hmac.new(self._key, body.encode("ascii"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
            return None
        return payload


def arguments_digest(tool: str, arguments: JSON) -> str:
    """What a `requestState` is bound to: the tool and its exact arguments."""
    raw = json.dumps([tool, arguments], sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def input_request(method: str, params: JSON) -> JSON:
    """A server→client request as an `inputRequests` entry (no params when empty).

    An elicitation names its mode, which is always a form here.
    """
    if method == "elicitation/create":
        params = {"mode": "form", **params}
    request: JSON = {"method": method}
    if params:
        request["params"] = params
    return request


class Rounds:
    """Mints and checks the `requestState` of `input_required` rounds for one server."""

    def __init__(self, key: bytes, stats: ServerStats) -> None:
        self._sealer = StateSealer(key)
        self._stats = stats

    def verify(self, params: JSON, call: ToolCall) -> JSON | None:
        """The verified `requestState` of a retry, None on a first attempt."""
        if "requestState" not in params:
            return None
        state = self._sealer.open(params["requestState"])
        if state is None or state.get("bind") != arguments_digest(call.name, call.arguments):
            raise RpcError(INVALID_PARAMS, "Invalid or expired requestState")
        return state

    @staticmethod
    def response(params: JSON, key: str) -> JSON | None:
        """The client's answer to input request `key`, if the retry carries one."""
        responses = params.get("inputResponses")
        if not isinstance(responses, dict):
            return None
        response = responses.get(key)
        return response if isinstance(response, dict) else None

    def input_required(self, call: ToolCall, requests: JSON | None, state: JSON) -> JSON:
        """An `input_required` result asking `requests` (None: only retry), with `state`."""
        self._stats.input_required_results += 1
        sealed = {
            **state,
            "bind": arguments_digest(call.name, call.arguments),
            "exp": time.time() + _STATE_TTL_SECONDS,
        }
        result: JSON = {"resultType": "input_required", "requestState": self._sealer.seal(sealed)}
        if requests is not None:
            result["inputRequests"] = requests
        return result


Emit = Callable[[JSON], Awaitable[None]]


@dataclass
class ModernContext:
    """`Context` of a modern request, and what modern-only methods see."""

    request_id: str | int
    method: str
    params: JSON
    envelope: Envelope
    headers: Headers | None
    rounds: Rounds
    emit: Emit | None = None
    """Sends a message on this request's response stream (None: nowhere)."""

    @property
    def progress_token(self) -> str | int | None:
        """The envelope's progress token."""
        return self.envelope.progress_token

    async def notify(self, method: str, params: JSON) -> None:
        """Send a notification on the response stream (dropped in JSON mode)."""
        if self.emit is not None:
            await self.emit(notification(method, params))

    def require(self, capability: str, tool: str) -> None:
        """-32021 when the envelope lacks `capability`."""
        if not has_capability(self.envelope.capabilities, capability):
            raise missing_capability(capability, tool)

    async def ask(
        self, call: ToolCall, capability: str, method: str, params: JSON, *, key: str
    ) -> JSON:
        """The client's answer to `key` on a retry; else raise `ToolReturn` with an
        `input_required` result that asks for it."""
        self.rounds.verify(self.params, call)
        response = self.rounds.response(self.params, key)
        if response is None:
            # First attempt, or a retry without the answer: ask (again).
            asked = {key: input_request(method, params)}
            raise ToolReturn(self.rounds.input_required(call, asked, {"tool": call.name}))
        return response

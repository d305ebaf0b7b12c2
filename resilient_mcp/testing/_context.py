"""The one interface between the MCP features and the front ends that serve them.

A feature (a tool, a list, a prompt...) is written once against `Context`; each era's
front end implements it for one request. The legacy era notifies on the request's SSE
stream or the session's GET stream and asks the client with a server→client request;
the modern era notifies on the response stream and asks with an `input_required`
result that the client answers by re-sending the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from resilient_mcp.testing._catalog import JSON


@dataclass(frozen=True)
class ToolCall:
    """One `tools/call` that passed validation: the tool's name and its arguments."""

    name: str
    arguments: JSON


class ToolReturn(Exception):
    """Raised by `Context.ask` to end the tool call at once with `result` as its result:
    the client could not be asked (legacy) or has to answer first (modern)."""

    def __init__(self, result: JSON) -> None:
        super().__init__("tool call ended early")
        self.result = result


def text_result(text: str, *, is_error: bool = False) -> JSON:
    """A tool result with one text block."""
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


class Context(Protocol):
    """What a feature sees of the request it serves, implemented by each era."""

    @property
    def params(self) -> JSON:
        """The request's params (an object)."""
        ...

    @property
    def progress_token(self) -> str | int | None:
        """`params._meta.progressToken`, if the client asked for progress."""
        ...

    async def notify(self, method: str, params: JSON) -> None:
        """Send a notification about this request to the client, where the era says."""
        ...

    def require(self, capability: str, tool: str) -> None:
        """Before `tool` runs: raise `RpcError` if this era refuses calls of a tool that
        needs a client `capability` the client lacks (2026-07-28: -32021); an era that
        lets the tool run and fail when it asks does nothing."""
        ...

    async def ask(
        self, call: ToolCall, capability: str, method: str, params: JSON, *, key: str
    ) -> JSON:
        """The client's result of the server→client request `method` with `params`.

        `key` names the request among the call's `inputRequests` (modern era). Raises
        `ToolReturn` when the tool has to return without the answer.
        """
        ...

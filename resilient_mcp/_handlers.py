"""What the user supplies to answer the server: :class:`Handlers`, and how they are run.

The same handlers answer the legacy era's server→client requests (``sampling/createMessage``,
``elicitation/create``, ``roots/list``, ``ping``) and the modern era's ``input_required``
rounds: both go through :func:`serve`.

A form the user accepted without filling in every field gets the requested schema's
defaults for the fields left out (SEP-1034, MCP 2025-11-25), and the client says so in
its capabilities (``elicitation.form.applyDefaults``, as the TypeScript SDK names it):
a server may then offer defaults and count on getting them back.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, cast

from .types import (
    ClientCapabilities,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    LoggingMessage,
    Progress,
    Root,
)

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "METHOD_NOT_FOUND",
    "Handlers",
    "ProgressCallback",
    "RPCFailure",
    "serve",
    "settle",
    "with_defaults",
]

T = TypeVar("T")
MaybeAwaitable: TypeAlias = Awaitable[T] | T
"""A handler may be async or a plain function: a plain one runs in a worker thread."""

ProgressCallback = Callable[[Progress], Awaitable[None]]
"""A call's ``progress=`` callback: receives each ``notifications/progress``, in order."""

# JSON-RPC error codes we answer with.
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


@dataclass(frozen=True, kw_only=True, slots=True)
class Handlers:
    """Callbacks for what the server sends on its own. All are optional; each may be an
    async function or a plain one (which runs in a worker thread, so it may block).

    A capability is advertised to the server only when its handler is given (a server
    may change behaviour when it sees one: server-filesystem replaces its allowed
    directories with the client's roots).

    Attributes:
        sampling: answers ``sampling/createMessage`` (advertises ``sampling``).
        elicitation: answers ``elicitation/create`` (advertises ``elicitation``). An
            ``accept`` that leaves out fields of a form gets their defaults from the
            requested schema; what the user gave always wins.
        roots: returns the roots for ``roots/list`` (advertises ``roots``).
        log: receives ``notifications/message``.
        notification: receives every server notification as (method, params), after the
            specific handlers.
    """

    sampling: Callable[[CreateMessageRequestParams], MaybeAwaitable[CreateMessageResult]] | None = (
        None
    )
    elicitation: Callable[[ElicitRequestParams], MaybeAwaitable[ElicitResult]] | None = None
    roots: Callable[[], MaybeAwaitable[list[Root]]] | None = None
    log: Callable[[LoggingMessage], MaybeAwaitable[None]] | None = None
    notification: Callable[[str, Mapping[str, Any]], MaybeAwaitable[None]] | None = None

    def listens(self) -> bool:
        """True if any handler would hear what the server sends outside a request."""
        return any(
            h is not None
            for h in (self.sampling, self.elicitation, self.roots, self.log, self.notification)
        )

    def capabilities(self) -> ClientCapabilities:
        """The client capabilities these handlers let us advertise (and no others)."""
        return ClientCapabilities(
            sampling={} if self.sampling else None,
            elicitation={"form": {"applyDefaults": True}} if self.elicitation else None,
            roots={"listChanged": False} if self.roots else None,
        )


class RPCFailure(Exception):
    """A JSON-RPC error to answer a server request with (internal)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def serve(handlers: Handlers, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Answer one server→client request (or one ``input_required`` input request).

    Raises:
        RPCFailure: -32601 for a method no handler was given for.
        pydantic.ValidationError: the params do not fit the method.
        Exception: whatever the user's handler raised.
    """
    if method == "ping":
        return {}
    if method == "roots/list" and handlers.roots is not None:
        roots = await settle(handlers.roots())
        return {"roots": [r.model_dump(exclude_none=True) for r in roots]}
    if method == "sampling/createMessage" and handlers.sampling is not None:
        sampled = await settle(handlers.sampling(CreateMessageRequestParams.model_validate(params)))
        return sampled.model_dump(exclude_none=True)
    if method == "elicitation/create" and handlers.elicitation is not None:
        request = ElicitRequestParams.model_validate(params)
        answer = await settle(handlers.elicitation(request))
        return with_defaults(request, answer).model_dump(exclude_none=True)
    raise RPCFailure(METHOD_NOT_FOUND, f"Method not found: {method}")


def with_defaults(request: ElicitRequestParams, answer: ElicitResult) -> ElicitResult:
    """``answer`` with the requested form's defaults for the fields the user left out.

    Only an accepted form is completed: a declined or cancelled one says nothing, and a
    URL-mode elicitation has no form. A field the user gave (even as ``null``) is kept.
    Form schemas are flat (MCP 2025-11-25: primitive properties, enums and multi-select
    arrays), so the defaults are those of the top-level properties.
    """
    schema = request.requestedSchema
    if answer.action != "accept" or request.mode not in (None, "form") or not schema:
        return answer
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return answer
    content = dict(answer.content or {})
    missing = {
        name: copy.deepcopy(prop["default"])
        for name, prop in properties.items()
        if isinstance(prop, Mapping) and "default" in prop and name not in content
    }
    if not missing:
        return answer
    return answer.model_copy(update={"content": {**content, **missing}})


async def settle(value: MaybeAwaitable[T]) -> T:
    """What a handler gave, awaited if it is awaitable. The clients make every handler
    async (:func:`~resilient_mcp._callbacks.async_handlers`); this keeps the union
    type of :class:`Handlers` honest where they are called."""
    if inspect.isawaitable(value):
        return await cast(Awaitable[T], value)
    return value

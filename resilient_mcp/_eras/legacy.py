"""The legacy era (protocol 2024-11-05 … 2025-11-25): a session opened by a handshake.

Nothing reaches the server before it can take it: the gate (:mod:`.._gate`) holds every
call until this strategy's :meth:`LegacyEra.establish` returned, that is until

1. the ``initialize`` result arrived and its protocol version was accepted, and
2. ``notifications/initialized`` was *delivered* (over HTTP: its 202 came back), and,
   on a transport that confirms delivery before the server reads a message (legacy
   HTTP+SSE), a ``ping`` sent after it was answered: a server reads its messages in
   order, so by then it has read ``initialized`` too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pydantic

from .._deadline import Deadline
from .._exceptions import HandshakeError, MalformedMessage, MCPError, UnsupportedProtocolVersion
from .._rpc import Cancel
from .._versions import LEGACY_PROTOCOL_VERSIONS
from ..types import Implementation, InitializeResult, ServerCapabilities
from .base import EraStrategy

__all__ = ["LegacyEra"]


class LegacyEra(EraStrategy):
    """One legacy session: its id, its negotiated version, what the server said."""

    name = "legacy"
    resumable = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session_id: str | None = None
        self._init: InitializeResult | None = None

    @property
    def session_id(self) -> str | None:
        return self._session_id

    @property
    def initialize_result(self) -> InitializeResult | None:
        return self._init

    @property
    def server_info(self) -> Implementation | None:
        return self._init.serverInfo if self._init is not None else None

    @property
    def capabilities(self) -> ServerCapabilities | None:
        return self._init.capabilities if self._init is not None else None

    @property
    def instructions(self) -> str | None:
        return self._init.instructions if self._init is not None else None

    @property
    def keeps_alive(self) -> bool:
        return True

    # --- the handshake -------------------------------------------------------------------

    async def establish(self) -> None:
        """``initialize``, then ``notifications/initialized``, confirmed.

        Raises:
            UnsupportedProtocolVersion: the server offered a version we do not speak
                (the session is ended first, as the spec asks).
            HandshakeError: an invalid result, or ``initialized`` was not delivered.
            MCPError: ``initialize`` itself failed (refused, not answered...).
        """
        setup = self.setup
        # A new session never carries the old one's resources (legacy SSE: its stream),
        # and a stdio server that a probe made exit is restarted first.
        await self.transport.reset()
        params = {
            "protocolVersion": LEGACY_PROTOCOL_VERSIONS[0],
            "capabilities": setup.handlers.capabilities().model_dump(exclude_none=True),
            "clientInfo": setup.client_info.model_dump(exclude_none=True),
        }
        # initialize is never cancelled with notifications/cancelled (the spec forbids
        # it); its deadline is the handshake's, enforced by the caller.
        reply = await self.request(
            "initialize", params, Deadline.after(None), ready=False, cancellable=False
        )
        self._session_id = _session_id(reply.session_id, self.context("request", "initialize"))
        try:
            result = InitializeResult.model_validate(reply.result)
        except pydantic.ValidationError as exc:
            raise HandshakeError(
                f"invalid initialize result: {exc.error_count()} error(s)",
                method="initialize",
                session_id=self._session_id,
            ) from exc
        version = result.protocolVersion
        if version not in LEGACY_PROTOCOL_VERSIONS:
            # The spec: a client that cannot use the offered version should disconnect.
            await self.end()
            raise UnsupportedProtocolVersion(
                f"server offered protocol version {version!r}; this client's handshake "
                f"speaks {', '.join(LEGACY_PROTOCOL_VERSIONS)}",
                offered=version,
                supported=LEGACY_PROTOCOL_VERSIONS,
                method="initialize",
                session_id=self._session_id,
            )
        self.protocol_version = version
        self._init = result
        try:
            await self.notify("notifications/initialized", None, ready=False)
        except MCPError as exc:
            # Never ignored: a server that did not get `initialized` rejects what follows.
            raise HandshakeError(
                f"notifications/initialized was not delivered: {exc.message}",
                method="notifications/initialized",
                session_id=self._session_id,
            ) from exc
        if self.transport.acknowledges_before_processing:
            await self._barrier()
        if setup.wishes.stream:
            # Open before the gate does: the first call may be asked something at once,
            # which a server answering in JSON can send on this stream only.
            await self.open_stream()

    async def _barrier(self) -> None:
        """Wait until the server has read what was sent so far (best effort).

        The server confirmed ``initialized`` before reading it (legacy HTTP+SSE: the 202
        comes first), so a request sent right after may overtake it. A ``ping``
        (answered even before initialization) sent after it and answered makes that
        unlikely: a server reads its messages in order. It cannot make it certain (the
        ping itself may overtake), and the answer proves nothing more; a failure here is
        not the handshake's (the next request finds out).
        """
        with anyio.move_on_after(self.setup.timeouts.connect):
            try:
                await self.request(
                    "ping", None, Deadline.after(None), ready=False, cancellable=False
                )
            except MCPError as exc:
                self.setup.log().debug("handshake.barrier_failed", error=repr(exc))

    # --- calls ---------------------------------------------------------------------------

    def cancel_hook(self) -> Cancel | None:
        return self.notify_cancelled

    def on_accepted(self) -> Callable[[], Awaitable[None]] | None:
        # Accepted (202): the answer will come on the server->client stream, so that
        # stream must be open whoever else is listening.
        return self.open_stream

    async def open_stream(self) -> None:
        await self.transport.listen(self.context("request", None))

    async def ready(self, generation: int) -> None:
        if generation > 1 and self.setup.wishes.subscriptions:
            # A new legacy session starts without the old one's subscriptions.
            self.setup.task_group.start_soon(self._resubscribe)

    async def _resubscribe(self) -> None:
        for uri in sorted(self.setup.wishes.subscriptions):
            if self.closed:
                return  # lost again meanwhile: the next session does it
            try:
                await self.request(
                    "resources/subscribe", {"uri": uri}, Deadline.after(self.setup.timeouts.request)
                )
            except MCPError as exc:
                self.setup.log().warning("resubscribe.failed", uri=uri, error=repr(exc))

    async def end(self) -> None:
        await self.transport.end_session(self.context("notification", None))


def _session_id(value: str | None, ctx: Any) -> str | None:
    """The ``Mcp-Session-Id`` the initialize response assigned, checked."""
    if value is None:
        return None
    if not value or not all(0x21 <= ord(ch) <= 0x7E for ch in value):
        raise MalformedMessage(
            "server sent an Mcp-Session-Id with characters outside visible ASCII",
            **ctx.context(),
        )
    return value

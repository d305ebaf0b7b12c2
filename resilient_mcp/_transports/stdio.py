"""The stdio transport (MCP ``basic/transports``), client side.

The client starts the server as a subprocess and speaks newline-delimited JSON-RPC on
its stdin/stdout; stderr is free-form logging (never an error signal). Like legacy SSE,
stdio is one shared channel: answers come later from a reader task, and when the channel
ends (the server exited, closed its stdout, or stopped reading its stdin) the peer is
told (:meth:`~.base.Peer.lost`), which fails every pending request and starts a new
handshake. That handshake first calls :meth:`StdioTransport.reset`, which restarts a
server that exited (MCP 2026-07-28: a client should restart a server that exits
unexpectedly), up to :attr:`StdioServer.max_restarts` times over the client's life.
Starting and ending each process is :mod:`.process`'s job.

With :attr:`StdioServer.keep_alive`, a closing client hands its process to :mod:`.warm`
for the next client of the same command line (which handshakes again; a process that
refuses is replaced by a new one, and the handshake's first request is sent again).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio
import anyio.abc

from .._classify import FailureContext
from .._config import Limits, Timeouts
from .._detection import process_key
from .._exceptions import (
    ClientClosed,
    ConnectError,
    ConnectionLost,
    Execution,
    MCPError,
    MessageTooLarge,
    ProtocolError,
)
from .._log import Logger
from .._targets import StdioServer
from . import warm
from .base import DELIVERED, Peer, Receipt, SendContext, Transport
from .lines import Dropped, LineSplitter, response_id
from .process import Proc, spawn

__all__ = ["StdioTransport"]

_CHUNK = 64 * 1024
# After the process exited, how long what it wrote last may take to be read (a
# grandchild that inherited its stdout or stderr may hold them open for ever).
_DRAIN_S = 1.0
_MALFORMED_PREVIEW = 80
_LATER = Receipt("later")


class StdioTransport(Transport):
    """Talks to a server it starts as a subprocess (MCP stdio transport).

    Attributes:
        restarts: how many times the server was restarted after exiting unexpectedly.
        malformed_messages: stdout lines dropped because they were not JSON.
        oversized_messages: stdout lines dropped because they exceeded
            :attr:`Limits.max_message_size`.
        late_probe_answers: answers to an era probe that came after it was given up on.
    """

    name = "stdio"
    per_request_streams = False
    acknowledges_before_processing = False

    def __init__(
        self, server: StdioServer, *, timeouts: Timeouts, limits: Limits, logger: Logger
    ) -> None:
        self._server = server
        self._timeouts = timeouts
        self._max_size = limits.max_message_size
        # The command names the server in logs and errors; args and env may hold secrets.
        self._log = logger.bind(transport=self.name, command=server.command)
        self._peer: Peer | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._proc: Proc | None = None
        # Serialises starting and replacing processes (and closing, against both).
        self._lifecycle = anyio.Lock()
        # Set once the server is gone for good (no restart allowed or left): every send
        # fails with it instead of starting anything.
        self._terminal: str | None = None
        self._closed = False
        self._returncode: int | None = None
        self.restarts = 0
        self.malformed_messages = 0
        self.oversized_messages = 0
        self.late_probe_answers = 0
        self._ledger = warm.Ledger()  # the ids of our requests (probes, unanswered)
        self._proc_key: str | None = None  # the command line's key at the current start
        self.reused = 0  # how many times this client took a process kept warm

    # --- introspection -----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The process id of the running server (None when none is running)."""
        proc = self._proc
        return None if proc is None or proc.gone else proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit status of the last server process that ended (negative: a signal)."""
        return self._returncode

    def detection_key(self) -> str | None:
        """Names the command line: every start of the same command shares detections."""
        server = self._server
        return process_key(server.command, server.args, server.cwd, server.environment())

    async def shows_life(self) -> None:
        """Return once the running server wrote its first byte (stdout or stderr).

        Until then it is still starting (an interpreter importing, npx installing), and
        its silence says nothing about its era. Returns at once if no server is running.
        """
        proc = self._proc
        if proc is not None:
            await proc.alive.wait()

    def __repr__(self) -> str:
        return f"<StdioTransport {self._server.command!r} pid={self.pid} restarts={self.restarts}>"

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self, peer: Peer, task_group: anyio.abc.TaskGroup) -> None:
        """Start the server process and its readers.

        Raises:
            ConnectError: the command could not be started (not found, not executable,
                bad working directory...).
        """
        self._peer = peer
        self._task_group = task_group
        async with self._lifecycle:
            if self._server.keep_alive is not None:
                key = self.detection_key()
                assert key is not None
                proc = await warm.take(key)
                if proc is not None:
                    self._proc = proc
                    self._proc_key = key
                    self._ledger.warm = True
                    self.reused += 1
                    task_group.start_soon(self._supervise, proc)
                    self._log.info("server.reused", pid=proc.pid)
                    return
            await self._start()

    async def _start(self) -> None:
        """Start a process and its supervisor (the caller holds the lifecycle lock)."""
        if self._closed:
            raise ClientClosed("the stdio transport is closed")
        if self._task_group is None:
            raise ProtocolError("transport is not open")
        self._proc_key = self.detection_key()
        proc = await spawn(self._server)
        self._proc = proc
        self._ledger.new_process()
        self._task_group.start_soon(self._supervise, proc)
        self._log.info("server.started", pid=proc.pid, restarts=self.restarts)

    async def listen(self, ctx: SendContext) -> None:
        """Nothing to open: stdout carries everything the server sends."""

    async def reset(self) -> None:
        """Called before every handshake: restart the server if it exited.

        A running server is kept (the first handshake, or one that failed while the
        server lived). A server that exited is restarted if :attr:`StdioServer.restart`
        allows and restarts are left; otherwise nothing is started and every later send
        fails with :class:`ConnectError` naming the exit status. Never raises (the
        session also calls it after a failed handshake, where it must not fail).
        """
        async with self._lifecycle:
            proc = self._proc
            if self._closed or proc is None or not proc.gone or self._terminal is not None:
                return
            await self._lose(proc)  # reaped, and the loss reported, before anything new
            server = self._server
            if server.restart and self.restarts < server.max_restarts:
                self.restarts += 1
                self._log.warning(
                    "server.restart",
                    restart=self.restarts,
                    max_restarts=server.max_restarts,
                    returncode=proc.process.returncode,
                )
                try:
                    await self._start()
                except MCPError as exc:
                    self._terminal = exc.message
                    self._log.warning("server.gone", reason=exc.message)
                return
            self._terminal = proc.gone_for_good(server, self.restarts)
            self._log.warning("server.gone", reason=self._terminal)

    async def end_session(self, ctx: SendContext) -> None:
        """Nothing to do: a stdio session ends with its process (see :meth:`aclose`)."""

    async def aclose(self) -> None:
        """Stop the server: close its stdin, wait; SIGTERM, wait; SIGKILL. Idempotent.

        Each wait lasts at most :attr:`Timeouts.close`; the process is always reaped.
        Runs to the end even when the caller is cancelled.
        """
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            # A restart under way completes first, so that its process is the one stopped.
            async with self._lifecycle:
                proc = self._proc
                if proc is None:
                    return
                proc.retired = True
                if await self._keep(proc):
                    return
                await self._stop(proc)
                # Its last stderr lines (why it exited, if it had to be killed) are
                # worth the log; then nothing more is read.
                with anyio.move_on_after(_DRAIN_S):
                    await proc.stderr_closed.wait()
                proc.scope.cancel()
                with anyio.move_on_after(self._timeouts.close):
                    await proc.finished.wait()

    async def _keep(self, proc: Proc) -> bool:
        """Hand ``proc``, running, to the warm pool if it may serve the next client;
        False: it must be stopped instead."""
        key, idle = self._proc_key, self._server.keep_alive
        if (
            key is None
            or idle is None
            or proc.gone
            or proc.process.returncode is not None
            or self._terminal is not None
            or not self._ledger.quiet()  # a late answer would reach the next client
        ):
            return False
        return await warm.hand_in(key, proc, idle=idle, timeouts=self._timeouts, log=self._log)

    async def _stop(self, proc: Proc) -> None:
        returncode = await proc.stop(self._timeouts, self._log)
        if returncode is not None:
            self._returncode = returncode

    # --- sending -------------------------------------------------------------------------

    async def send(
        self, body: bytes, ctx: SendContext, *, on_sent: Callable[[], None] | None = None
    ) -> Receipt:
        """Write one message as one line on the server's stdin.

        Raises:
            ConnectionLost: the server is gone (``NOT_EXECUTED``: nothing was written),
                or it did not take the line within :attr:`Timeouts.connect` (``MAYBE``).
            ConnectError: the server exited and is not restarted any more.
            ClientClosed: the transport is closed.
        """
        if self._closed:
            raise ClientClosed("the stdio transport is closed", **ctx.context())
        proc = self._proc
        if proc is None:
            raise ProtocolError("transport is not open", **ctx.context())
        # Compact JSON escapes control characters in strings: the line has no raw newline.
        line = body + b"\n"
        if proc.gone:
            raise await self._gone_error(proc, ctx)
        async with proc.lock:
            if proc.gone:
                raise await self._gone_error(proc, ctx)
            if ctx.kind == "request" and ctx.request_id is not None:
                # Noted before the write: the answer may be read before the write returns.
                self._ledger.sent(ctx.request_id, body, ctx)
            stdin = proc.process.stdin
            assert stdin is not None
            try:
                # Shielded and bounded: a line cut by a cancellation would corrupt the
                # framing of every later message; a server that stops reading its stdin
                # must not hang us for ever.
                with anyio.CancelScope(shield=True), anyio.fail_after(self._timeouts.connect):
                    await stdin.send(line)
            except TimeoutError:
                self._abandon(
                    proc,
                    f"the stdio server {self._server.command!r} did not read its input for "
                    f"{self._timeouts.connect} s (Timeouts.connect) and was stopped",
                )
                raise ConnectionLost(
                    f"the stdio server {self._server.command!r} did not read the message "
                    f"within {self._timeouts.connect} s (Timeouts.connect); it is being stopped",
                    execution=Execution.MAYBE,
                    **ctx.context(),
                ) from None
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                # Its stdin is closed: it exited or is exiting; it cannot have read this.
                self._log.debug("stdin.write_failed", error=repr(exc))
                self._abandon(proc, None)
                raise await self._gone_error(proc, ctx) from exc
        if on_sent is not None:
            on_sent()
        return _LATER if ctx.kind == "request" else DELIVERED

    def _abandon(self, proc: Proc, why: str | None) -> None:
        """Mark ``proc`` unusable and end it in the background (reported as a loss)."""
        proc.gone = True
        if self._task_group is not None:
            self._task_group.start_soon(self._lose, proc, why)

    async def _gone_error(self, proc: Proc, ctx: FailureContext) -> MCPError:
        """The error for a send to a process that is gone (nothing was written)."""
        # Its end is usually being handled right now; waiting (briefly) for it gives the
        # caller the exit status, and the session its report first: the retry of this
        # call then waits for the new session instead of failing again at once.
        if proc.losing:
            with anyio.move_on_after(self._timeouts.close):
                await proc.lost.wait()
        if self._terminal is not None:
            return ConnectError(self._terminal, permanent=True, **ctx.context())
        reason = proc.reason or f"the stdio server {self._server.command!r} is not running"
        if proc.lost.is_set() and proc is self._proc and not self._closed:
            # Reported again: a report that came while a handshake was finishing may
            # have found no session to recover; this one does (repeats are harmless).
            self._report_lost(reason)
        return ConnectionLost(reason, execution=Execution.NOT_EXECUTED, **ctx.context())

    def _report_lost(self, reason: str) -> None:
        if self._peer is not None:
            self._peer.lost(reason)

    # --- reading ---------------------------------------------------------------------------

    async def _supervise(self, proc: Proc) -> None:
        """Read the process's stdout and stderr; handle its end. One task per process."""
        try:
            with proc.scope:
                async with anyio.create_task_group() as readers:
                    readers.start_soon(proc.read_stderr, self._log)
                    ended = False
                    try:
                        await self._read_stdout(proc)
                        ended = True
                    finally:
                        if ended or not proc.keeping:  # (kept warm: it is still open)
                            proc.stdout_closed.set()
                            proc.alive.set()  # an ended server shows no more life
                    # End of stdout: the server exited (or will); it cannot answer any more.
                    proc.gone = True
                    if not proc.retired:
                        await self._lose(proc)
                    readers.cancel_scope.cancel()
        finally:
            if proc.keeping and not proc.stdout_closed.is_set():
                proc.finished.set()  # handed on, running (see _keep)
            else:
                with anyio.CancelScope(shield=True):
                    # Normally stopped already; this catches a task group cancelled
                    # without aclose(): the process must not outlive us.
                    await self._stop(proc)
                    await proc.close_pipes(self._timeouts)
                    proc.finished.set()

    async def _read_stdout(self, proc: Proc) -> None:
        stdout = proc.process.stdout
        assert stdout is not None
        if proc.stdout_splitter is None:
            proc.stdout_splitter = LineSplitter(self._max_size)
        splitter = proc.stdout_splitter
        try:
            while True:
                try:
                    chunk = await stdout.receive(_CHUNK)
                except anyio.EndOfStream:
                    break
                proc.alive.set()
                for item in splitter.feed(chunk):
                    self._on_line(item, proc)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            self._log.debug("stdout.failed", pid=proc.pid, error=repr(exc))
        for item in splitter.finish():
            self._on_line(item, proc)

    def _on_line(self, item: bytes | int, proc: Proc) -> None:
        if isinstance(item, int):
            self.oversized_messages += 1
            self._log.warning("message.too_large", size=item, limit=self._max_size, pid=proc.pid)
            request_id = response_id(item.head if isinstance(item, Dropped) else b"")
            self._ledger.unanswered.discard(request_id)
            if request_id is not None and self._peer is not None:
                # The answer is lost, but we know whose it was: that request fails now
                # (and alone) instead of waiting for its timeout.
                self._peer.undeliverable(
                    request_id,
                    MessageTooLarge(
                        f"answer of {int(item)} bytes exceeds the {self._max_size}-byte limit"
                    ),
                )
            return
        if not item.strip():
            return  # blank lines (and a lone "\r") carry nothing
        try:
            message = json.loads(item)
        except ValueError:
            self.malformed_messages += 1
            self._log.warning(
                "message.malformed",
                line=item[:_MALFORMED_PREVIEW].decode("utf-8", "replace"),
                size=len(item),
                pid=proc.pid,
            )
            return
        if isinstance(message, dict) and "method" not in message:
            refused = self._ledger.answered(message)
            if refused is not None:  # a warm process refused a new session
                self._log.warning("server.reuse_refused", pid=proc.pid, error=refused[2])
                if self._task_group is not None:
                    self._task_group.start_soon(self._replace_refused, proc, *refused[:2])
                return
        if self._late_probe(message):
            return
        if self._peer is not None:
            try:
                self._peer.deliver(message)
            except Exception as exc:  # the session's bug must not end our reader
                self._log.error("deliver.failed", error=repr(exc))

    async def _replace_refused(self, proc: Proc, line: bytes, ctx: SendContext) -> None:
        """Stop the warm process that refused a new session; ask a new one instead."""
        async with self._lifecycle:
            if self._closed or proc is not self._proc:
                return
            proc.retired = True
            await self._lose(proc)
            try:
                await self._start()
                await self.send(line, ctx)
            except MCPError as exc:
                self._log.warning("server.reuse_fallback_failed", error=exc.message)
                self._report_lost(exc.message)

    def _late_probe(self, message: object) -> bool:
        """Whether ``message`` answers an era probe given up on (it is consumed here).

        The handshake went on in the legacy era; whatever the late answer says, the
        session it established stands (a server that answers both is dual-era), so the
        answer is noted, not routed to a request nobody waits for.
        """
        if not isinstance(message, dict) or "method" in message:
            return False
        request_id = message.get("id")
        if not self._ledger.late(request_id):
            return False
        self.late_probe_answers += 1
        self._log.info("era.probe_late", request_id=request_id, answered="result" in message)
        return True

    def watch_probes(self) -> None:
        """An era probe starts: note the ids of the requests sent from now on."""
        self._ledger.watched = set()

    def end_probes(self, *, abandoned: bool) -> None:
        """The probe is over; ``abandoned``: it went unanswered and was given up on, so
        late answers to what was sent meanwhile are expected (see :meth:`_late_probe`)."""
        self._ledger.end_watch(abandoned=abandoned)

    # --- ending a process ----------------------------------------------------------------------

    async def _lose(self, proc: Proc, why: str | None = None) -> None:
        """Handle the end of ``proc``: reap it, then report the loss to the peer.

        Idempotent: later callers wait for the first one's (bounded) work.
        """
        if proc.losing:
            await proc.lost.wait()
            return
        proc.losing = True
        proc.gone = True
        try:
            with anyio.CancelScope(shield=True):
                await self._stop(proc)
                # What it wrote before it ended is read first: its answers are delivered
                # before the loss fails what is pending, and its last words (often why it
                # exited) go into the reason.
                with anyio.move_on_after(_DRAIN_S):
                    await proc.stdout_closed.wait()
                    await proc.stderr_closed.wait()
            returncode = proc.process.returncode
            reason = proc.reason = proc.end_reason(self._server.command, why)
        finally:
            proc.lost.set()
            if not proc.stdout_closed.is_set():
                proc.scope.cancel()  # a grandchild holds its stdout: stop reading it
        if proc.retired or self._closed or proc is not self._proc:
            return  # ended on purpose, or already replaced: nobody waits on it
        self._log.warning("server.exited", pid=proc.pid, returncode=returncode, reason=reason)
        self._report_lost(reason)

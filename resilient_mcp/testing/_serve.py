"""serve(): run a StrictServer on loopback in a background thread.

uvicorn gets a dedicated thread with its own asyncio loop, so the caller may be
synchronous code, an asyncio test or a trio test alike.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import anyio.to_thread
import uvicorn

from resilient_mcp.testing._server import StrictServer, host_of
from resilient_mcp.testing._stats import ServerStats

# How long stopping may take before we give up on the thread; generous because a
# loaded CI machine can be slow, yet bounded so a stuck server fails the test.
_STOP_TIMEOUT: Final = 10.0
# Backstop for uvicorn's graceful shutdown: our own streams are closed before it
# starts, so this only matters if a handler ignores cancellation.
_GRACEFUL_SHUTDOWN: Final = 2
_THREAD_PREFIX: Final = "resilient-mcp-strict:"
# What uvicorn logs when an app returns mid-response, which is how chaos and
# restart() cut a connection on purpose.
_CUT_MESSAGE: Final = "ASGI callable returned without completing response."


class _QuietCuts(logging.Filter):
    """Hide uvicorn's error record for connections our own server cut on purpose."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self._thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName == self._thread_name and record.msg == _CUT_MESSAGE)


@dataclass(frozen=True)
class RunningServer:
    """A `StrictServer` being served on 127.0.0.1 by `serve()`."""

    url: str
    """The MCP endpoint, e.g. ``http://127.0.0.1:PORT/mcp`` (``.../sse`` for the
    legacy SSE profile); usable as soon as `serve()` is entered."""
    port: int
    """The TCP port the server listens on."""
    server: StrictServer
    """The server being served."""

    @property
    def stats(self) -> ServerStats:
        """The served server's counters (`server.stats`)."""
        return self.server.stats


class _Uvicorn(uvicorn.Server):
    """uvicorn that ends our long-lived streams first when asked to stop."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Open SSE streams would otherwise keep uvicorn waiting for the
        # graceful-shutdown timeout.
        self._on_shutdown()
        await super().shutdown(sockets=sockets)


class ServerContext:
    """What `serve()` returns: a single-use sync *and* async context manager.

    Entering binds and listens on the socket before the server thread starts, so the
    URL accepts connections at once (they wait in the listen backlog). Leaving stops
    uvicorn and joins its thread, waiting at most 10 s.
    """

    def __init__(self, server: StrictServer, *, host: str = "127.0.0.1") -> None:
        self._server = server
        self._hosting = host_of(server)
        self._host = host
        self._used = False
        self._sock: socket.socket | None = None
        self._uvicorn: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._quiet: _QuietCuts | None = None

    def __enter__(self) -> RunningServer:
        return self._start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    async def __aenter__(self) -> RunningServer:
        # Binding and starting a thread do not block, so no worker thread is needed.
        return self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Joining blocks; do it off the caller's event loop (asyncio or trio).
        await anyio.to_thread.run_sync(self._stop)

    def _start(self) -> RunningServer:
        if self._used:
            raise RuntimeError("a serve() context can be entered only once")
        self._used = True
        self._hosting.claim()
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets
        # whose proto says TCP, and without it Nagle + delayed ACK add ~40 ms to every
        # response written in more than one piece.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.bind((self._host, 0))
            sock.listen(128)
            port: int = sock.getsockname()[1]
            config = uvicorn.Config(
                self._server.asgi_app(),
                # log_config=None: leave the process's logging configuration alone.
                log_config=None,
                log_level="warning",
                access_log=False,
                # The lifespan holds the task group where cut streams finish their work.
                lifespan="on",
                ws="none",
                proxy_headers=False,
                timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN,
            )
            self._uvicorn = _Uvicorn(config, self._hosting.shutdown)
            self._sock = sock
            name = f"{_THREAD_PREFIX}{port}"
            self._quiet = _QuietCuts(name)
            logging.getLogger("uvicorn.error").addFilter(self._quiet)
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()
        except BaseException:
            sock.close()
            self._unquiet()
            self._hosting.release()
            raise
        return RunningServer(
            url=f"http://{self._host}:{port}{self._server.endpoint_path}",
            port=port,
            server=self._server,
        )

    def _unquiet(self) -> None:
        if self._quiet is not None:
            logging.getLogger("uvicorn.error").removeFilter(self._quiet)
            self._quiet = None

    async def _main(self) -> None:
        assert self._uvicorn is not None
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        # restart() from another thread runs on this loop.
        self._hosting.attach_loop(threading.get_ident(), loop.call_soon_threadsafe)
        try:
            await self._uvicorn.serve(sockets=[self._sock])
        finally:
            self._hosting.attach_loop(None, None)

    def _run(self) -> None:
        assert self._sock is not None
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # includes uvicorn's SystemExit on startup failure
            self._error = exc
        finally:
            # If uvicorn died early, refuse queued connections instead of leaving them
            # hanging in the backlog.
            self._sock.close()

    def _stop(self) -> None:
        if self._thread is None or self._uvicorn is None:
            return
        try:
            self._uvicorn.should_exit = True
            self._thread.join(_STOP_TIMEOUT)
            if self._thread.is_alive():
                self._uvicorn.force_exit = True
                self._thread.join(1.0)
        finally:
            if self._sock is not None:
                self._sock.close()
            self._unquiet()
            self._hosting.release()
        if self._thread.is_alive():
            raise RuntimeError(f"the server thread did not stop within {_STOP_TIMEOUT:g} s")
        if self._error is not None:
            raise RuntimeError("the server thread failed") from self._error


def serve(server: StrictServer) -> ServerContext:
    """Serve `server` on 127.0.0.1 (a free port) for the duration of a ``with`` block.

    Works as ``with serve(s) as running:`` and ``async with serve(s) as running:``
    (under asyncio or trio); `running` is a `RunningServer` whose `url` can be used
    immediately. On exit the server stops, its sessions end and its thread is joined.
    """
    return ServerContext(server)

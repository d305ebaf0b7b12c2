"""Start a real `mcp` 2.3.0 Streamable HTTP server in a child process.

The child is `tests/peers/mcp_server_app.py`. It binds 127.0.0.1 on an ephemeral port
itself and prints ``PORT <n>`` as its first stdout line once uvicorn accepts
connections; the parent blocks on that line (bounded, no sleeping or polling).
The child exits when its stdin reaches EOF, so it dies with the parent.

Sync use::

    with start_mcp_peer() as peer:          # stateful, SSE responses
        ... peer.url ...                    # "http://127.0.0.1:PORT/mcp"

Async use (asyncio or trio; start/stop run in a worker thread)::

    async with async_mcp_peer(stateless=True) as peer:
        ...

pytest fixtures built on this live in `tests/peers/fixtures.py`.
"""

from __future__ import annotations

import atexit
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import IO

import anyio
import anyio.to_thread

__all__ = [
    "SERVER_APP",
    "McpPeer",
    "PeerStartError",
    "async_mcp_peer",
    "launch_mcp_peer",
    "start_mcp_peer",
]

SERVER_APP = Path(__file__).resolve().with_name("mcp_server_app.py")
PORT_LINE_PREFIX = b"PORT "
DEFAULT_STARTUP_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 5.0
_MAX_FIRST_LINE = 4096

_live: weakref.WeakSet[McpPeer] = weakref.WeakSet()
_live_lock = threading.Lock()


class PeerStartError(RuntimeError):
    """The peer process did not announce its port (crashed, hung, or printed garbage)."""


class McpPeer:
    """A running peer server process. Create with `launch_mcp_peer` / `start_mcp_peer`."""

    def __init__(
        self,
        *,
        stateless: bool,
        json_response: bool,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        python: str | None = None,
    ) -> None:
        self.stateless = stateless
        self.json_response = json_response
        self.startup_timeout = startup_timeout
        self.python = python or sys.executable
        self.port = 0
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._start(port=0)
        with _live_lock:
            _live.add(self)

    # -- public surface ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The MCP endpoint, ``http://127.0.0.1:PORT/mcp``."""
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> int | None:
        """Stop the process and reap it. Idempotent; returns its exit code.

        SIGTERM, wait up to `timeout`, then SIGKILL and wait (bounded as well).
        The process is always waited for, so it never stays a zombie.
        """
        with self._lock:
            return self._stop_locked(timeout)

    def restart(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server and start a fresh one on the same port.

        Every session the old process held is gone: a stateful client that
        reuses its ``Mcp-Session-Id`` now gets 404, exactly like a real server
        restart or a load balancer moving it to a new replica.
        """
        with self._lock:
            port = self.port
            self._stop_locked(timeout)
            self._start(port=port)

    def kill(self) -> int | None:
        """SIGKILL at once (a crash, no graceful shutdown), then reap."""
        with self._lock:
            process = self._process
            if process is None:
                return None
            if process.poll() is None:
                process.kill()
            return self._reap(process, DEFAULT_STOP_TIMEOUT)

    def stderr_text(self, limit: int = 20_000) -> str:
        """The tail of the child's stderr (its log), for failure messages."""
        stream = self._stderr
        if stream is None or stream.closed:
            return ""
        try:
            stream.flush()
            size = os.fstat(stream.fileno()).st_size
            stream.seek(max(0, size - limit))
            return stream.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def __enter__(self) -> McpPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        mode = "stateless" if self.stateless else "stateful"
        body = "json" if self.json_response else "sse"
        return f"<McpPeer {self.url} {mode} {body} pid={self.pid}>"

    # -- internals ----------------------------------------------------------------------

    def _argv(self, port: int) -> list[str]:
        argv = [self.python, str(SERVER_APP), "--port", str(port)]
        if self.stateless:
            argv.append("--stateless")
        if self.json_response:
            argv.append("--json-response")
        return argv

    def _start(self, *, port: int) -> None:
        if self._stderr is not None:
            self._stderr.close()
        # Lives as long as the peer (closed on the next start or at exit), not a block.
        self._stderr = tempfile.TemporaryFile(prefix="mcp-peer-", suffix=".log")  # noqa: SIM115
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        process = subprocess.Popen(
            self._argv(port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            close_fds=True,
        )
        self._process = process
        try:
            self.port = self._read_port(process, self.startup_timeout)
        except BaseException:
            self._stop_locked(DEFAULT_STOP_TIMEOUT)
            raise

    def _read_port(self, process: subprocess.Popen[bytes], timeout: float) -> int:
        """Block (bounded) until the child's first stdout line; parse ``PORT <n>``."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerStartError(
                        f"peer did not announce its port within {timeout:.0f} s\n"
                        f"{self.stderr_text()}"
                    )
                if not sel.select(remaining):
                    continue  # deadline reached; reported above
                chunk = os.read(fd, 1024)
                if not chunk:
                    code = process.wait(timeout=DEFAULT_STOP_TIMEOUT)
                    raise PeerStartError(
                        f"peer exited with code {code} before announcing its port\n"
                        f"{self.stderr_text()}"
                    )
                buf += chunk
                if len(buf) > _MAX_FIRST_LINE:
                    break
        line = buf.split(b"\n", 1)[0].strip()
        if not line.startswith(PORT_LINE_PREFIX):
            raise PeerStartError(f"unexpected first line from peer: {line[:200]!r}")
        try:
            return int(line[len(PORT_LINE_PREFIX) :])
        except ValueError:
            raise PeerStartError(f"unexpected first line from peer: {line[:200]!r}") from None

    def _stop_locked(self, timeout: float) -> int | None:
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            with suppress(ProcessLookupError):
                process.terminate()
        code = self._reap(process, timeout)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        return code

    @staticmethod
    def _reap(process: subprocess.Popen[bytes], timeout: float) -> int | None:
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                return process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable process
                return None


def launch_mcp_peer(
    *,
    stateless: bool = False,
    json_response: bool = False,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    python: str | None = None,
) -> McpPeer:
    """Start a peer and return it once it accepts connections. The caller must `.stop()` it."""
    return McpPeer(
        stateless=stateless,
        json_response=json_response,
        startup_timeout=startup_timeout,
        python=python,
    )


@contextmanager
def start_mcp_peer(
    stateless: bool = False,
    json_response: bool = False,
    *,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    python: str | None = None,
) -> Iterator[McpPeer]:
    """Run a peer for the duration of the ``with`` block; always stopped and reaped."""
    peer = launch_mcp_peer(
        stateless=stateless,
        json_response=json_response,
        startup_timeout=startup_timeout,
        python=python,
    )
    try:
        yield peer
    finally:
        peer.stop()


@asynccontextmanager
async def async_mcp_peer(
    stateless: bool = False,
    json_response: bool = False,
    *,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    python: str | None = None,
) -> AsyncIterator[McpPeer]:
    """`start_mcp_peer` for async code: start and stop run in a worker thread."""

    def launch() -> McpPeer:
        return launch_mcp_peer(
            stateless=stateless,
            json_response=json_response,
            startup_timeout=startup_timeout,
            python=python,
        )

    peer = await anyio.to_thread.run_sync(launch)
    try:
        yield peer
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(peer.stop)


@atexit.register
def _stop_all() -> None:
    """Last resort: stop peers the caller forgot (they would exit on stdin EOF anyway)."""
    with _live_lock:
        peers = list(_live)
    for peer in peers:
        peer.stop(timeout=2.0)

"""Start real third-party MCP servers ("peers") in child processes, always bounded and reaped.

Peers (`PeerKind`) and the HTTP transports each serves (`launch_peer(kind, transport)`):

``"mcp"``
    `mcp` 2.3.0 ``MCPServer`` (`tests/peers/mcp_server_app.py`, in our venv):
    ``"streamable-http"`` (stateful, stateless, JSON responses) and ``"sse"``.
``"mcp126"``
    `mcp` 1.26.0 FastMCP with 380 tools (`tests/peers/mcp126_server.py`), run by the
    interpreter of ``.venv-mcp126``: ``"streamable-http"`` and ``"sse"``.
``"fastmcp"``
    `fastmcp` 4.1.2 (`tests/peers/fastmcp_server_app.py`, in our venv):
    ``"streamable-http"`` and ``"sse"``.
``"everything"``
    The TypeScript reference server ``@modelcontextprotocol/server-everything`` from
    ``node_modules`` (``npm ci``): ``"streamable-http"`` and ``"sse"``.

Every peer also runs over stdio; the client starts those itself, so for them this
module only gives the command line (`stdio_command(kind)`, absolute paths, so the
working directory does not matter).

How a start works. The Python peers bind 127.0.0.1 port 0 themselves and print
``PORT <n>`` as their first stdout line once uvicorn accepts connections; the parent
blocks on that line with a bounded timeout (no sleeping, no polling). The Node peer
cannot print our line: the parent picks a free port, passes it in ``PORT``, and blocks
(bounded) on the server's own ready line, read from its merged stdout/stderr by a
drain thread. server-everything prints, on stderr::

    MCP Streamable HTTP Server listening on port <n>       (streamableHttp)
    Server is running on port <n>                          (sse)

Node is started with `node_peer_preload.cjs` preloaded, which binds it to 127.0.0.1
(its own ``app.listen(PORT)`` would bind every interface).

Every child exits when its stdin reaches EOF, so it dies with the parent however the
parent ends; `stop()` is SIGTERM, bounded wait, SIGKILL, bounded wait; an atexit hook
stops whatever the caller forgot.

Sync use::

    with start_peer("mcp126", "sse") as peer:     # or start_mcp_peer(stateless=True)
        ... peer.url ...                           # "http://127.0.0.1:PORT/sse"

Async use (asyncio or trio; start and stop run in a worker thread)::

    async with async_peer("everything", "streamable-http") as peer:
        ...

Peers installed by ``make test`` (``.venv-mcp126``, ``node_modules``) raise
`PeerUnavailable` when missing, with a message saying what to run. pytest fixtures
built on this live in `tests/peers/fixtures.py`.
"""

from __future__ import annotations

import atexit
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import IO, Literal, get_args

import anyio
import anyio.to_thread

__all__ = [
    "EVERYTHING_ENTRY",
    "FASTMCP_APP",
    "HTTP_TRANSPORTS",
    "MCP126_APP",
    "MCP126_PYTHON",
    "NODE_PRELOAD",
    "PEER_KINDS",
    "REPO_ROOT",
    "SERVER_APP",
    "EverythingPeer",
    "FastMcpPeer",
    "HttpTransport",
    "Mcp126Peer",
    "McpPeer",
    "PeerKind",
    "PeerProcess",
    "PeerStartError",
    "PeerUnavailable",
    "async_mcp_peer",
    "async_peer",
    "everything_stdio_command",
    "fastmcp_stdio_command",
    "launch_mcp_peer",
    "launch_peer",
    "mcp126_stdio_command",
    "mcp_stdio_command",
    "node_executable",
    "require_everything",
    "require_mcp126",
    "start_mcp_peer",
    "start_peer",
    "stdio_command",
]

PeerKind = Literal["mcp", "mcp126", "fastmcp", "everything"]
HttpTransport = Literal["streamable-http", "sse"]
PEER_KINDS: tuple[PeerKind, ...] = get_args(PeerKind)
HTTP_TRANSPORTS: tuple[HttpTransport, ...] = get_args(HttpTransport)

PEERS_DIR = Path(__file__).resolve().parent
REPO_ROOT = PEERS_DIR.parents[1]
SERVER_APP = PEERS_DIR / "mcp_server_app.py"
FASTMCP_APP = PEERS_DIR / "fastmcp_server_app.py"
MCP126_APP = PEERS_DIR / "mcp126_server.py"
# Not resolved: a venv's python is a symlink, and only its own path finds the venv.
MCP126_VENV = REPO_ROOT / ".venv-mcp126"
MCP126_PYTHON = MCP126_VENV / "bin" / "python"
MCP126_STAMP = MCP126_VENV / ".installed"
NODE_MODULES = REPO_ROOT / "node_modules"
NODE_STAMP = NODE_MODULES / ".installed"
EVERYTHING_PACKAGE = NODE_MODULES / "@modelcontextprotocol" / "server-everything"
EVERYTHING_ENTRY = EVERYTHING_PACKAGE / "dist" / "index.js"
NODE_PRELOAD = PEERS_DIR / "node_peer_preload.cjs"

PORT_LINE_PREFIX = b"PORT "
DEFAULT_STARTUP_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 5.0
_MAX_FIRST_LINE = 4096
_LOG_TAIL_BYTES = 64 * 1024
_PORT_ATTEMPTS = 3

_live: weakref.WeakSet[PeerProcess] = weakref.WeakSet()
_live_lock = threading.Lock()


class PeerStartError(RuntimeError):
    """The peer process did not announce its port (crashed, hung, or printed garbage)."""


class PeerUnavailable(PeerStartError):
    """A peer installed by ``make test`` (its venv or node_modules) is missing."""


# --- prerequisites --------------------------------------------------------------------


def require_mcp126() -> Path:
    """The interpreter of ``.venv-mcp126``; `PeerUnavailable` if it was not installed."""
    if not MCP126_PYTHON.exists() or not MCP126_STAMP.exists():
        raise PeerUnavailable(
            f"the mcp==1.26.0 peer needs its own virtual environment, {MCP126_VENV}, "
            "which is missing or incomplete: run `make test` (or `make peers`) to create it"
        )
    return MCP126_PYTHON


def node_executable() -> str:
    """The absolute path of ``node``; `PeerUnavailable` if it is not on PATH."""
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailable(
            "the server-everything peer needs Node.js (`node` on PATH, version 20 or newer)"
        )
    return str(Path(node).absolute())


def require_everything() -> Path:
    """server-everything's entry point; `PeerUnavailable` if ``npm ci`` has not run."""
    if not EVERYTHING_ENTRY.exists() or not NODE_STAMP.exists():
        raise PeerUnavailable(
            f"@modelcontextprotocol/server-everything is not installed in {NODE_MODULES}: "
            "run `make test` (or `make peers`), which runs `npm ci`"
        )
    return EVERYTHING_ENTRY


# --- stdio command lines ------------------------------------------------------------------


def mcp_stdio_command() -> list[str]:
    """`mcp` 2.3.0 ``MCPServer`` over stdio (both protocol eras)."""
    return [sys.executable, str(SERVER_APP), "--stdio"]


def mcp126_stdio_command() -> list[str]:
    """`mcp` 1.26.0 FastMCP (380 tools) over stdio."""
    return [str(require_mcp126()), str(MCP126_APP), "--transport", "stdio"]


def fastmcp_stdio_command() -> list[str]:
    """`fastmcp` 4.1.2 over stdio."""
    return [sys.executable, str(FASTMCP_APP), "--transport", "stdio"]


def everything_stdio_command() -> list[str]:
    """server-everything over stdio (``node .../dist/index.js stdio``)."""
    entry = require_everything()
    return [node_executable(), str(entry), "stdio"]


def stdio_command(kind: PeerKind) -> list[str]:
    """The command line that runs peer `kind` as a stdio server (absolute paths)."""
    commands = {
        "mcp": mcp_stdio_command,
        "mcp126": mcp126_stdio_command,
        "fastmcp": fastmcp_stdio_command,
        "everything": everything_stdio_command,
    }
    return commands[kind]()


# --- the process ----------------------------------------------------------------------------


class PeerProcess:
    """A peer server in a child process, serving HTTP on 127.0.0.1.

    Subclasses say how to run it (`_argv`, `_env`) and where its endpoint is (`path`);
    this class starts it (blocking, bounded, until it accepts connections), stops,
    kills and restarts it, and keeps its log for failure messages.
    """

    kind: PeerKind = "mcp"
    transport: HttpTransport = "streamable-http"

    def __init__(self, *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._start(port=0)
        with _live_lock:
            _live.add(self)

    # -- public surface ---------------------------------------------------------------

    @property
    def path(self) -> str:
        """The endpoint's path: ``/mcp`` (Streamable HTTP) or ``/sse`` (legacy SSE)."""
        return "/sse" if self.transport == "sse" else "/mcp"

    @property
    def url(self) -> str:
        """The MCP endpoint, e.g. ``http://127.0.0.1:PORT/mcp`` or ``.../sse``."""
        return f"{self.base_url}{self.path}"

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
        """The tail of the child's log (stderr), for failure messages."""
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

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} pid={self.pid}>"

    # -- what subclasses define -------------------------------------------------------

    def _argv(self, port: int) -> list[str]:
        raise NotImplementedError

    def _env(self, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    # -- internals ----------------------------------------------------------------------

    def _start(self, *, port: int) -> None:
        if self._stderr is not None:
            self._stderr.close()
        # Lives as long as the peer (closed on the next start or at exit), not a block.
        self._stderr = tempfile.TemporaryFile(prefix="mcp-peer-", suffix=".log")  # noqa: SIM115
        process = subprocess.Popen(
            self._argv(port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=self._env(port),
            cwd=REPO_ROOT,
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
                        f"{self._label()} did not announce its port within {timeout:.0f} s\n"
                        f"{self.stderr_text()}"
                    )
                if not sel.select(remaining):
                    continue  # deadline reached; reported above
                chunk = os.read(fd, 1024)
                if not chunk:
                    code = process.wait(timeout=DEFAULT_STOP_TIMEOUT)
                    raise PeerStartError(
                        f"{self._label()} exited with code {code} before announcing its port\n"
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

    def _label(self) -> str:
        return f"peer {self.kind}/{self.transport}"

    def _stop_locked(self, timeout: float) -> int | None:
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            with suppress(ProcessLookupError):
                process.terminate()
        code = self._reap(process, timeout)
        self._close_pipes(process)
        return code

    def _close_pipes(self, process: subprocess.Popen[bytes]) -> None:
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()

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


class McpPeer(PeerProcess):
    """`mcp` 2.3.0 ``MCPServer`` (`mcp_server_app.py`): Streamable HTTP or legacy SSE."""

    kind: PeerKind = "mcp"

    def __init__(
        self,
        *,
        stateless: bool = False,
        json_response: bool = False,
        sse: bool = False,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        python: str | None = None,
    ) -> None:
        if sse and (stateless or json_response):
            raise ValueError("stateless and json_response apply to Streamable HTTP only")
        self.stateless = stateless
        self.json_response = json_response
        self.transport = "sse" if sse else "streamable-http"
        self.python = python or sys.executable
        super().__init__(startup_timeout=startup_timeout)

    def __repr__(self) -> str:
        if self.transport == "sse":
            return f"<McpPeer {self.url} sse pid={self.pid}>"
        mode = "stateless" if self.stateless else "stateful"
        body = "json" if self.json_response else "sse"
        return f"<McpPeer {self.url} {mode} {body} pid={self.pid}>"

    def _argv(self, port: int) -> list[str]:
        argv = [self.python, str(SERVER_APP), "--port", str(port)]
        if self.transport == "sse":
            argv.append("--sse")
        if self.stateless:
            argv.append("--stateless")
        if self.json_response:
            argv.append("--json-response")
        return argv


class Mcp126Peer(PeerProcess):
    """`mcp` 1.26.0 FastMCP with 380 tools (`mcp126_server.py`, run by ``.venv-mcp126``)."""

    kind: PeerKind = "mcp126"

    def __init__(
        self, transport: HttpTransport, *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    ) -> None:
        self.transport = transport
        self.python = str(require_mcp126())
        super().__init__(startup_timeout=startup_timeout)

    def _argv(self, port: int) -> list[str]:
        return [self.python, str(MCP126_APP), "--transport", self.transport, "--port", str(port)]


class FastMcpPeer(PeerProcess):
    """`fastmcp` 4.1.2 (`fastmcp_server_app.py`): Streamable HTTP or legacy SSE."""

    kind: PeerKind = "fastmcp"

    def __init__(
        self, transport: HttpTransport, *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    ) -> None:
        self.transport = transport
        super().__init__(startup_timeout=startup_timeout)

    def _argv(self, port: int) -> list[str]:
        wire = "sse" if self.transport == "sse" else "http"
        return [sys.executable, str(FASTMCP_APP), "--transport", wire, "--port", str(port)]


class EverythingPeer(PeerProcess):
    """``@modelcontextprotocol/server-everything`` (Node) over Streamable HTTP or legacy SSE.

    It takes its port from ``PORT`` and prints no line of ours, so the parent picks a
    free port and waits for the server's own ready line; its merged stdout/stderr (it
    logs every request) is drained by a thread for the whole life of the process, so
    the child never blocks on a full pipe.
    """

    kind: PeerKind = "everything"
    READY = re.compile(
        rb"(?:MCP Streamable HTTP Server listening on port|Server is running on port) (\d+)"
    )
    _IN_USE = (b"EADDRINUSE", b"already in use")

    def __init__(
        self, transport: HttpTransport, *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    ) -> None:
        self.transport = transport
        self.entry = require_everything()
        self.node = node_executable()
        self._log = _LogTail()
        self._drain_thread: threading.Thread | None = None
        super().__init__(startup_timeout=startup_timeout)

    def stderr_text(self, limit: int = 20_000) -> str:
        """The tail of the server's merged stdout and stderr."""
        return self._log.text(limit)

    def _close_pipes(self, process: subprocess.Popen[bytes]) -> None:
        # The child is gone, so its output reaches EOF: let the drain thread finish
        # reading before the pipe is closed under it.
        if self._drain_thread is not None:
            self._drain_thread.join(timeout=DEFAULT_STOP_TIMEOUT)
        super()._close_pipes(process)

    def _argv(self, port: int) -> list[str]:
        mode = "sse" if self.transport == "sse" else "streamableHttp"
        return [self.node, "--require", str(NODE_PRELOAD), str(self.entry), mode]

    def _env(self, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env["PORT"] = str(port)
        env.pop("NODE_OPTIONS", None)  # nothing of the caller's may change the peer
        return env

    def _start(self, *, port: int) -> None:
        fixed = port != 0
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            chosen = port if fixed else _free_port()
            try:
                self._start_on(chosen)
                return
            except PeerStartError:
                # Another process took the port between our pick and the child's bind.
                in_use = any(mark in self._log.tail_bytes() for mark in self._IN_USE)
                if fixed or not in_use or attempt == _PORT_ATTEMPTS:
                    raise

    def _start_on(self, port: int) -> None:
        self._log = _LogTail()
        process = subprocess.Popen(
            self._argv(port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env(port),
            cwd=REPO_ROOT,
            close_fds=True,
        )
        self._process = process
        assert process.stdout is not None
        ready = _ReadyWatch(self.READY)
        self._drain_thread = threading.Thread(
            target=_drain,
            args=(process.stdout, self._log, ready),
            name=f"drain-everything-{process.pid}",
            daemon=True,
        )
        self._drain_thread.start()
        try:
            announced = ready.wait(self.startup_timeout)
            if announced is None:
                if process.poll() is not None or ready.eof:
                    code = process.wait(timeout=DEFAULT_STOP_TIMEOUT)
                    raise PeerStartError(
                        f"{self._label()} exited with code {code} before it was listening\n"
                        f"{self.stderr_text()}"
                    )
                raise PeerStartError(
                    f"{self._label()} was not listening within {self.startup_timeout:.0f} s\n"
                    f"{self.stderr_text()}"
                )
            if announced != port:
                raise PeerStartError(f"{self._label()} listens on {announced}, not {port}")
            self.port = port
        except BaseException:
            self._stop_locked(DEFAULT_STOP_TIMEOUT)
            raise


class _LogTail:
    """The last bytes a child printed (thread-safe, bounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def append(self, chunk: bytes) -> None:
        with self._lock:
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size > _LOG_TAIL_BYTES and len(self._chunks) > 1:
                self._size -= len(self._chunks.popleft())

    def tail_bytes(self) -> bytes:
        with self._lock:
            return b"".join(self._chunks)

    def text(self, limit: int) -> str:
        return self.tail_bytes()[-limit:].decode("utf-8", "replace")


class _ReadyWatch:
    """Set once a line matches `pattern` (its first group is the port) or output ends."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.port: int | None = None
        self.eof = False
        self._event = threading.Event()

    def line(self, line: bytes) -> None:
        if self.port is None and (match := self.pattern.search(line)):
            self.port = int(match.group(1))
            self._event.set()

    def end(self) -> None:
        self.eof = True
        self._event.set()

    def wait(self, timeout: float) -> int | None:
        self._event.wait(timeout)
        return self.port


def _drain(stream: IO[bytes], log: _LogTail, ready: _ReadyWatch) -> None:
    """Read a child's output until EOF: keep its tail, report its ready line."""
    try:
        for line in iter(stream.readline, b""):
            log.append(line)
            ready.line(line)
    except (OSError, ValueError):
        pass
    finally:
        ready.end()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- starting peers -------------------------------------------------------------------------


def launch_peer(
    kind: PeerKind,
    transport: HttpTransport = "streamable-http",
    *,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
) -> PeerProcess:
    """Start peer `kind` over `transport`; return it once it accepts connections.

    The caller must `.stop()` it. Raises `PeerUnavailable` if the peer is not
    installed (run ``make test``), `PeerStartError` if it did not come up in time.
    """
    if transport not in HTTP_TRANSPORTS:
        raise ValueError(f"unknown HTTP transport {transport!r}; stdio: use stdio_command()")
    if kind == "mcp":
        return McpPeer(sse=transport == "sse", startup_timeout=startup_timeout)
    if kind == "mcp126":
        return Mcp126Peer(transport, startup_timeout=startup_timeout)
    if kind == "fastmcp":
        return FastMcpPeer(transport, startup_timeout=startup_timeout)
    if kind == "everything":
        return EverythingPeer(transport, startup_timeout=startup_timeout)
    raise ValueError(f"unknown peer {kind!r}: expected one of {PEER_KINDS}")


@contextmanager
def start_peer(
    kind: PeerKind,
    transport: HttpTransport = "streamable-http",
    *,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
) -> Iterator[PeerProcess]:
    """Run a peer for the duration of the ``with`` block; always stopped and reaped."""
    peer = launch_peer(kind, transport, startup_timeout=startup_timeout)
    try:
        yield peer
    finally:
        peer.stop()


@asynccontextmanager
async def async_peer(
    kind: PeerKind,
    transport: HttpTransport = "streamable-http",
    *,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
) -> AsyncIterator[PeerProcess]:
    """`start_peer` for async code: start and stop run in a worker thread."""

    def launch() -> PeerProcess:
        return launch_peer(kind, transport, startup_timeout=startup_timeout)

    peer = await anyio.to_thread.run_sync(launch)
    try:
        yield peer
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(peer.stop)


def launch_mcp_peer(
    *,
    stateless: bool = False,
    json_response: bool = False,
    sse: bool = False,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    python: str | None = None,
) -> McpPeer:
    """Start an `mcp` 2.3.0 peer; return it once it accepts connections. The caller must
    `.stop()` it."""
    return McpPeer(
        stateless=stateless,
        json_response=json_response,
        sse=sse,
        startup_timeout=startup_timeout,
        python=python,
    )


@contextmanager
def start_mcp_peer(
    stateless: bool = False,
    json_response: bool = False,
    *,
    sse: bool = False,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    python: str | None = None,
) -> Iterator[McpPeer]:
    """Run an `mcp` 2.3.0 peer for the duration of the ``with`` block; always stopped."""
    peer = launch_mcp_peer(
        stateless=stateless,
        json_response=json_response,
        sse=sse,
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
    sse: bool = False,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    python: str | None = None,
) -> AsyncIterator[McpPeer]:
    """`start_mcp_peer` for async code: start and stop run in a worker thread."""

    def launch() -> McpPeer:
        return launch_mcp_peer(
            stateless=stateless,
            json_response=json_response,
            sse=sse,
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

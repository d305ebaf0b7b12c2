"""Which HTTP library carries our requests: httpx (the default) or httpx2.

httpx2 is pydantic's maintained successor of httpx: the same API under another module
name, with classes of its own (an ``httpx2.ConnectError`` is not an ``httpx.ConnectError``,
and an ``httpx2.AsyncClient`` refuses ``httpx.Timeout``, ``httpx.Auth`` and
``httpx.USE_CLIENT_DEFAULT``). A :class:`HTTPStack` names one library: the module our own
client, its limits and timeouts are built from, and the exception classes the transports
translate (:func:`~._transports.base.map_transport_errors`). Each transport uses the one
stack its :class:`~resilient_mcp.HTTPServer` resolved to (:func:`stack_for`), so one process
may run clients on both.

httpx2 is imported only when asked for (``HTTPServer(..., http_stack="httpx2")``) or when
the user's client or auth object already is one (then it was imported already: we look
in ``sys.modules``, we never import to find out). A user of plain httpx pays nothing.

The transports are typed against httpx's API, which httpx2 keeps: the objects of the
httpx2 stack are httpx2's at run time, cast to httpx's types for the type checker only.
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio
import httpx

from ._exceptions import UsageError

if TYPE_CHECKING:
    import ssl

    from ._targets import HTTPServer

__all__ = ["HTTPX", "HTTPStack", "HTTPStackName", "httpx2_hints", "load", "resolve", "stack_for"]

HTTPStackName = Literal["httpx", "httpx2"]
_NAMES: tuple[HTTPStackName, ...] = ("httpx", "httpx2")


@dataclass(frozen=True, slots=True, eq=False)
class HTTPStack:
    """One HTTP library, and what the transports need from it.

    Attributes:
        name: ``"httpx"`` or ``"httpx2"``.
        module: the library's module (clients, limits, timeouts, URLs come from it).
        connect_errors: the request never reached the server (refused, timed out
            connecting or waiting for a pooled connection).
        unsupported_url: the URL's scheme cannot be spoken.
        transport_errors: anything else below HTTP (read/write errors, a broken
            response, read timeouts): the request may have reached the server.
        lost_errors: ``transport_errors`` and the socket and stream errors below them.

    The exception tuples of the httpx2 stack hold httpx's classes too: a custom
    transport or auth flow written for httpx still fails as typed errors there.
    """

    name: HTTPStackName
    module: ModuleType
    connect_errors: tuple[type[Exception], ...]
    unsupported_url: tuple[type[Exception], ...]
    transport_errors: tuple[type[Exception], ...]
    lost_errors: tuple[type[Exception], ...]

    def __repr__(self) -> str:
        return f"HTTPStack({self.name!r})"

    @property
    def use_client_default(self) -> httpx._client.UseClientDefault:
        """This library's "use the client's setting" marker (each checks for its own)."""
        return cast("httpx._client.UseClientDefault", self.module.USE_CLIENT_DEFAULT)

    @property
    def core(self) -> ModuleType | None:
        """The library's connection layer (httpcore, httpcore2) once it is loaded: the
        library imports it when it builds its first client; None before (or if absent)."""
        return sys.modules.get("httpcore" if self.name == "httpx" else "httpcore2")

    def url(self, url: str) -> httpx.URL:
        """``url`` parsed by this library (its clients take only their own ``URL``)."""
        return cast(httpx.URL, self.module.URL(url))

    def timeout(self, *, connect: float, write: float) -> httpx.Timeout:
        """A timeout bounding connecting and writing; reading and the pool unbounded."""
        return cast(
            httpx.Timeout, self.module.Timeout(connect=connect, read=None, write=write, pool=None)
        )

    def client(
        self,
        *,
        verify: ssl.SSLContext,
        timeout: httpx.Timeout,
        max_connections: int | None,
        max_keepalive_connections: int,
        keepalive_expiry: float | None = None,
    ) -> httpx.AsyncClient:
        """A new client of this library (redirects are not followed: a POST must not
        turn into a GET elsewhere). ``max_connections=None``: no bound;
        ``keepalive_expiry``: seconds an idle connection is kept (None: the library's)."""
        lib = self.module
        return cast(
            httpx.AsyncClient,
            lib.AsyncClient(
                verify=verify,
                timeout=timeout,
                follow_redirects=False,
                limits=lib.Limits(
                    max_connections=max_connections,
                    max_keepalive_connections=max_keepalive_connections,
                    **({} if keepalive_expiry is None else {"keepalive_expiry": keepalive_expiry}),
                ),
            ),
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying SSL context, built the way this library builds its own."""
        context: ssl.SSLContext = self.module.create_ssl_context()
        return context


def _stack(name: HTTPStackName, module: ModuleType, *libs: Any) -> HTTPStack:
    transport = tuple(lib.TransportError for lib in libs)
    return HTTPStack(
        name,
        module,
        connect_errors=tuple(
            cls for lib in libs for cls in (lib.ConnectError, lib.ConnectTimeout, lib.PoolTimeout)
        ),
        unsupported_url=tuple(lib.UnsupportedProtocol for lib in libs),
        transport_errors=transport,
        lost_errors=(*transport, OSError, anyio.BrokenResourceError),
    )


HTTPX = _stack("httpx", httpx, httpx)
"""The default stack."""


@functools.cache
def _httpx2_stack(module: ModuleType) -> HTTPStack:
    return _stack("httpx2", module, module, httpx)


def load(name: str) -> HTTPStack:
    """The stack named ``name``, importing its library if needed.

    Raises:
        UsageError: an unknown name, or httpx2 is not installed.
    """
    if name == "httpx":
        return HTTPX
    if name != "httpx2":
        raise UsageError(f"unknown http_stack {name!r}: expected one of {_NAMES}")
    try:
        module = importlib.import_module("httpx2")
    except ImportError as exc:
        raise UsageError(
            "http_stack='httpx2' needs httpx2: pip install 'resilient-mcp[httpx2]'"
        ) from exc
    return _httpx2_stack(module)


def _library_of(obj: object, kind: str) -> HTTPStackName | None:
    """Which library's ``kind`` (``"AsyncClient"``, ``"Auth"``) ``obj`` is, None if neither.

    Never imports httpx2: an object of httpx2's can only exist once it was imported.
    """
    if isinstance(obj, getattr(httpx, kind)):
        return "httpx"
    httpx2 = sys.modules.get("httpx2")
    if httpx2 is not None and isinstance(obj, getattr(httpx2, kind)):
        return "httpx2"
    return None


def stack_for(server: HTTPServer) -> HTTPStack:
    """The stack a server spec resolved to (see :class:`~resilient_mcp.HTTPServer`)."""
    return load(server.http_stack or "httpx")


def resolve(requested: str | None, *, http_client: object, auth: object) -> HTTPStackName:
    """The stack for an :class:`~resilient_mcp.HTTPServer`: the one asked for, else the
    one of the user's client or auth, else httpx. Checks that they all agree.

    Raises:
        UsageError: an unknown stack, httpx2 missing, a client that is no
            ``AsyncClient`` of httpx or httpx2 (or auth no ``Auth``), or a client or
            auth of another library than the stack's.
    """
    found: dict[str, HTTPStackName] = {}
    for what, obj, kind in (("http_client", http_client, "AsyncClient"), ("auth", auth, "Auth")):
        if obj is None:
            continue
        library = _library_of(obj, kind)
        if library is None:
            raise UsageError(
                f"{what} must be an httpx.{kind} or an httpx2.{kind}, got {type(obj).__qualname__}"
            )
        found[what] = library
    stack = load(requested or found.get("http_client") or found.get("auth") or "httpx")
    for what, library in found.items():
        if library != stack.name:
            raise UsageError(
                f"{what} is an {library} object but the HTTP stack is {stack.name}: "
                f"pass an {stack.name} one, or http_stack={library!r}"
            )
    return stack.name


class _Httpx2Hints:
    """``httpx2`` as public annotations name it, resolvable at run time without importing
    httpx2 (``typing.get_type_hints(HTTPServer)`` must work for a user without it).

    Its classes once httpx2 is loaded; before, stand-ins that nothing is an instance of,
    which is exact: no httpx2 object can exist before httpx2 is imported.
    """

    def __getattr__(self, name: str) -> type:
        if name.startswith("_"):
            raise AttributeError(name)
        module = sys.modules.get("httpx2")
        found: type = getattr(module, name) if module is not None else _stand_in(name)
        return found


@functools.cache
def _stand_in(name: str) -> type:
    return type(name, (), {"__module__": "httpx2", "__doc__": "httpx2 is not loaded."})


httpx2_hints = _Httpx2Hints()

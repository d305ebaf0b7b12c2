"""User callbacks that may be plain functions or async ones, made awaitable.

A plain function (a handler, a progress callback) runs in a worker thread, where it may
block and may even call a sync client back (its loop keeps running meanwhile); an async
one is awaited as it is. Both clients use this: the async :class:`Client` for its
:class:`Handlers`, :class:`SyncClient` for those and for ``progress=`` callbacks.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import anyio.to_thread

from ._handlers import Handlers, ProgressCallback
from .types import Progress

__all__ = ["SyncProgressCallback", "async_handlers", "async_progress", "in_callback"]

T = TypeVar("T")

SyncProgressCallback = Callable[[Progress], None]
"""A sync client's ``progress=`` callback may be a plain function (run in a worker
thread, in order) as well as an async one."""


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


# Set in the worker threads that run callbacks: a client closed from one cannot wait for
# its own end (the end waits for the callback to return).
in_callback = threading.local()


def _callback(fn: Callable[..., Any], *args: Any) -> Any:
    in_callback.active = True
    try:
        return fn(*args)
    finally:
        in_callback.active = False


def in_worker(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` as an async callable: a plain function runs in a worker thread (it may
    block, and may call the sync client: the loop keeps running meanwhile)."""

    async def run(*args: Any) -> Any:
        result = await anyio.to_thread.run_sync(functools.partial(_callback, fn, *args))
        if inspect.isawaitable(result):  # a plain function that returned a coroutine
            return await result
        return result

    return run


def async_progress(
    progress: ProgressCallback | SyncProgressCallback | None,
) -> ProgressCallback | None:
    """The progress callback the async client can await."""
    if progress is None or _is_async(progress):
        return cast(ProgressCallback | None, progress)
    return in_worker(progress)


def async_handlers(handlers: Handlers) -> Handlers:
    """``handlers`` with every plain function made awaitable (async ones are kept)."""
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(handlers):
        handler = getattr(handlers, field.name)
        if callable(handler) and not _is_async(handler):
            changes[field.name] = in_worker(handler)
    return dataclasses.replace(handlers, **changes) if changes else handlers

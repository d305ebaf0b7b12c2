"""Newline-delimited framing for stdio: split a byte stream into bounded lines.

A line longer than the limit is dropped, not kept (memory stays bounded), but its first
bytes are, so that the answer it carried can still be matched to its request.
"""

from __future__ import annotations

import json
import re

__all__ = ["Dropped", "LineSplitter", "response_id"]


class Dropped(int):
    """The size of a dropped over-long line, with its first bytes (to find its id)."""

    head: bytes = b""

    @classmethod
    def of(cls, size: int, head: bytes) -> Dropped:
        dropped = cls(size)
        dropped.head = head
        return dropped


# Enough of a line's start to read `{"jsonrpc":"2.0","id":...` however it is spaced.
_HEAD = 256
# A response's id near its start (SDKs write jsonrpc/id first); a message with a method
# is a request or notification, whose loss no pending request waits for.
_HEAD_ID = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')


class LineSplitter:
    """Split a byte stream on ``\\n``; a line longer than ``limit`` is dropped, not kept.

    :meth:`feed` returns complete lines (``bytes``, without ``\\n`` or ``\\r\\n``) and, for each
    dropped line, its size (``int``). Memory stays bounded by ``limit``.
    """

    __slots__ = ("_buffer", "_head", "_limit", "_skipped")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._skipped = 0  # bytes of the over-long line being dropped (0: none)
        self._head = b""

    def feed(self, chunk: bytes) -> list[bytes | int]:
        out: list[bytes | int] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            out.append(self._complete(chunk[start:end]))
            start = end + 1
        rest = chunk[start:]
        if self._skipped:
            self._skipped += len(rest)
        elif len(self._buffer) + len(rest) > self._limit:
            self._skipped = len(self._buffer) + len(rest)
            self._head = bytes(self._buffer[:_HEAD]) + rest[: max(0, _HEAD - len(self._buffer))]
            self._buffer.clear()
        else:
            self._buffer += rest
        return out

    def finish(self) -> list[bytes | int]:
        """What is left at end of stream (a last line without its newline)."""
        if self._skipped or self._buffer:
            return [self._complete(b"")]
        return []

    def _complete(self, piece: bytes) -> bytes | int:
        if self._skipped:
            size, self._skipped = self._skipped + len(piece), 0
            return Dropped.of(size, self._head)
        if len(self._buffer) + len(piece) > self._limit:
            size = len(self._buffer) + len(piece)
            head = (bytes(self._buffer[:_HEAD]) + piece)[:_HEAD]
            self._buffer.clear()
            return Dropped.of(size, head)
        if self._buffer:
            piece = bytes(self._buffer + piece)
            self._buffer.clear()
        # CRLF-ended lines (Windows servers) are tolerated.
        return piece[:-1] if piece.endswith(b"\r") else piece


def response_id(head: bytes) -> int | str | None:
    """The id of the response a dropped line started, if its start shows one."""
    if b'"method"' in head:
        return None
    found = _HEAD_ID.search(head)
    if found is None:
        return None
    try:
        value = json.loads(found.group(1))
    except ValueError:
        return None
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None

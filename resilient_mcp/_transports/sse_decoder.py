"""A bounded Server-Sent Events decoder: a pure state machine over bytes.

Follows the WHATWG "event stream interpretation" rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
a leading byte order mark is skipped; lines end in CRLF, LF or CR (split on bytes, then
decoded, so a character cut between chunks survives); ``data`` lines accumulate with
``\\n``; an ``id`` containing NUL is ignored; ``retry`` takes only ASCII digits; an event
with an empty data buffer is not dispatched, but its ``id`` still updates the last event
id (that is how MCP servers send "priming" events). Unlike a browser we refuse to buffer
without bound: a line or an event larger than ``max_event_size`` raises
:class:`SSEEventTooLarge` so that a hostile or broken server cannot exhaust memory.

Decoding is linear in the stream's size: the bytes of an unfinished line are scanned
for a line ending once, not again with every chunk that extends it (a 16 MiB event sent
in 64 KiB chunks would otherwise be rescanned 256 times, and take seconds).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from httpx_sse import ServerSentEvent

__all__ = ["SSEDecoder", "SSEEventTooLarge"]

_LINE_END = re.compile(rb"\r\n?|\n")
# Longer ``retry`` values are ignored: ``int()`` refuses more than 4300 digits, and no
# sane reconnection time needs more than 18 (over 30 million years in milliseconds).
_MAX_RETRY_DIGITS = 18


class SSEEventTooLarge(Exception):
    """An SSE line or event exceeded the decoder's size limit."""


class SSEDecoder:
    """Feed bytes with :meth:`feed`; get complete events back.

    Attributes:
        last_event_id: the last event id seen (``Last-Event-ID`` to resume with).
        retry: the reconnection time in milliseconds the server asked for, if any.
    """

    __slots__ = (
        "_buffer",
        "_data",
        "_data_size",
        "_event",
        "_first_line",
        "_id",
        "_max",
        "_pending_cr",
        "_scanned",
        "last_event_id",
        "retry",
    )

    def __init__(self, max_event_size: int) -> None:
        self._max = max_event_size
        self._buffer = bytearray()
        self._pending_cr = False
        # Bytes at the start of the buffer known to hold no line ending (an unfinished line).
        self._scanned = 0
        self._first_line = True
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._id: str | None = None
        self.last_event_id: str | None = None
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> Iterator[ServerSentEvent]:
        """Decode one chunk; yields every event it completes.

        Raises:
            SSEEventTooLarge: a line or event is larger than ``max_event_size``.
        """
        if self._pending_cr and chunk:
            if chunk.startswith(b"\n"):
                # The CR that ended the previous chunk and this LF are one line ending.
                chunk = chunk[1:]
            self._pending_cr = False
        self._buffer += chunk
        buffer = self._buffer
        pos = 0  # start of the next unread line; consumed bytes are deleted before a yield
        scan = self._scanned  # where the search for the next line ending resumes
        while (match := _LINE_END.search(buffer, scan)) is not None:
            start, end = match.span()
            if start - pos > self._max:
                raise SSEEventTooLarge(f"SSE line longer than {self._max} bytes")
            if end == len(buffer) and match.group() == b"\r":
                # A CR at the very end: the line is complete, but an LF may follow.
                self._pending_cr = True
            line = buffer[pos:start].decode("utf-8", errors="replace")
            pos = scan = end
            if self._first_line:
                self._first_line = False
                line = line.removeprefix("\ufeff")  # a BOM may open the stream
            event = self._line(line)
            if event is not None:
                del buffer[:pos]
                pos = scan = 0
                self._scanned = 0
                yield event
        del buffer[:pos]
        # What is left is one unfinished line, already searched: the next chunk's search
        # starts after it. (A CR at its end was taken as a line ending above.)
        self._scanned = len(buffer)
        if len(buffer) > self._max:
            raise SSEEventTooLarge(f"SSE line longer than {self._max} bytes")

    def end_of_stream(self) -> None:
        """The stream ended (or broke): an event it left unfinished is discarded, never
        dispatched (the spec), so that a resumed stream starts clean. The last event
        id and the reconnection time are kept: they are what resuming needs."""
        self._buffer.clear()
        self._scanned = 0
        self._pending_cr = False
        self._data = []
        self._data_size = 0
        self._event = ""
        self._id = None

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max:
                raise SSEEventTooLarge(f"SSE event larger than {self._max} bytes")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif (
            name == "retry"
            and value.isascii()
            and value.isdigit()
            and len(value) <= _MAX_RETRY_DIGITS
        ):
            self.retry = int(value)
        # Unknown field names are ignored, as the spec requires.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if self._id is not None:
            self.last_event_id = self._id
            self._id = None
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self.last_event_id or "",
            retry=self.retry,
        )
        self._data = []
        self._data_size = 0
        self._event = ""
        return event

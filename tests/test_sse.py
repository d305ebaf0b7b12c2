"""The SSE decoder against the WHATWG event-stream interpretation rules.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
Pure state machine, so every test feeds bytes and compares the events that come out
(``ServerSentEvent`` has no ``__eq__``: events are compared as tuples).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable

import pytest

from resilient_mcp._transports import sse_decoder
from resilient_mcp._transports.sse_decoder import SSEDecoder, SSEEventTooLarge

Event = tuple[str, str, str, int | None]
"""(event type, data, id, retry) of one dispatched event."""

BIG = 1 << 20


def feed_all(decoder: SSEDecoder, chunks: Iterable[bytes]) -> list[Event]:
    return [
        (event.event, event.data, event.id, event.retry)
        for chunk in chunks
        for event in decoder.feed(chunk)
    ]


def decode(*chunks: bytes, max_event_size: int = BIG) -> list[Event]:
    return feed_all(SSEDecoder(max_event_size), chunks)


def data_of(*chunks: bytes) -> list[str]:
    return [data for _, data, _, _ in decode(*chunks)]


class TestLineEndings:
    """LF, CRLF and CR all end a line, alone or mixed in one stream."""

    @pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
    def test_each_line_ending_delimits_lines_and_events(self, eol: bytes) -> None:
        stream = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
        assert data_of(stream) == ["a\nb", "c"]

    def test_mixed_line_endings_in_one_stream(self) -> None:
        assert data_of(b"data: a\rdata: b\r\ndata: c\n\r\n") == ["a\nb\nc"]

    def test_crlf_split_across_chunks_is_one_line_ending(self) -> None:
        # If the LF were a second line ending, the empty line would dispatch "a" alone.
        assert data_of(b"data: a\r", b"\ndata: b\r\n\r\n") == ["a\nb"]

    def test_cr_at_chunk_end_then_lf_only_chunk(self) -> None:
        assert data_of(b"data: a\r", b"\n", b"\r", b"\n") == ["a"]

    def test_empty_chunk_between_cr_and_lf_keeps_them_together(self) -> None:
        # Regression: an empty chunk used to forget the pending CR, so the LF after it
        # counted as a blank line and split one event in two.
        assert data_of(b"data: a\r", b"", b"\ndata: b\n\n") == ["a\nb"]

    def test_cr_at_chunk_end_followed_by_other_text_is_a_line_ending(self) -> None:
        assert data_of(b"data: a\r", b"data: b\r", b"\r") == ["a\nb"]

    def test_cr_cr_is_a_line_then_a_blank_line(self) -> None:
        assert data_of(b"data: a\r\r") == ["a"]


class TestFields:
    """Field parsing: data accumulation, the optional space, comments, unknown fields."""

    def test_multi_line_data_is_joined_with_newlines(self) -> None:
        assert data_of(b"data: line 1\ndata: line 2\ndata: line 3\n\n") == [
            "line 1\nline 2\nline 3"
        ]

    @pytest.mark.parametrize(
        ("line", "data"),
        [
            (b"data: x", "x"),
            (b"data:x", "x"),
            (b"data:  x", " x"),  # only one space is removed
            (b"data: x ", "x "),  # trailing space kept
            (b"data: a:b: c", "a:b: c"),  # only the first colon separates
            (b"data:", ""),
            (b"data", ""),  # a field name alone: the value is empty
        ],
    )
    def test_value_after_optional_single_space(self, line: bytes, data: str) -> None:
        assert data_of(line + b"\n\n") == [data]

    def test_empty_data_lines_contribute_newlines(self) -> None:
        assert data_of(b"data:\ndata:\n\n") == ["\n"]
        assert data_of(b"data: a\ndata\ndata: b\n\n") == ["a\n\nb"]

    def test_comments_are_ignored(self) -> None:
        assert decode(b": keep-alive\n\n") == []
        assert decode(b":\n\n") == []
        assert data_of(b"data: a\n: between\ndata: b\n\n") == ["a\nb"]

    @pytest.mark.parametrize(
        "line",
        [b"foo: bar", b"Data: upper-case is another field", b" data: leading space", b"datum: x"],
    )
    def test_unknown_fields_are_ignored(self, line: bytes) -> None:
        assert data_of(line + b"\ndata: kept\n\n") == ["kept"]

    def test_invalid_utf8_becomes_replacement_characters(self) -> None:
        assert data_of(b"data: \xff\xfe ok\n\n") == ["\ufffd\ufffd ok"]

    def test_utf8_sequence_split_across_chunks_is_reassembled(self) -> None:
        # Lines are split on bytes first (CR and LF never occur inside a multi-byte UTF-8
        # sequence) and each complete line is decoded, so a split character survives.
        text = "café 😀 ∑"
        raw = b"data: " + text.encode() + b"\n\n"
        euro = raw.index("😀".encode())
        assert data_of(raw[: euro + 2], raw[euro + 2 :]) == [text]
        assert data_of(*(raw[i : i + 1] for i in range(len(raw)))) == [text]

    def test_leading_byte_order_mark_is_skipped(self) -> None:
        bom = "\ufeff".encode()
        assert data_of(bom + b"data: a\n\n") == ["a"]
        assert data_of(bom[:1], bom[1:] + b"data: a\n\n") == ["a"]

    def test_byte_order_mark_later_in_the_stream_is_not_skipped(self) -> None:
        bom = "\ufeff".encode()
        # Only the stream's first line may start with one; later it makes an unknown field.
        assert data_of(b"data: a\n\n" + bom + b"data: b\n\n") == ["a"]


class TestEventType:
    """The ``event`` field sets the type of the next dispatched event only."""

    def test_default_type_is_message(self) -> None:
        assert decode(b"data: x\n\n")[0][0] == "message"

    def test_event_field_sets_type(self) -> None:
        assert decode(b"event: ping\ndata: x\n\n")[0][0] == "ping"

    def test_empty_event_field_means_message(self) -> None:
        assert decode(b"event:\ndata: x\n\n")[0][0] == "message"

    def test_type_resets_after_dispatch(self) -> None:
        events = decode(b"event: ping\ndata: 1\n\ndata: 2\n\n")
        assert [event[0] for event in events] == ["ping", "message"]

    def test_type_of_an_event_without_data_does_not_leak_into_the_next(self) -> None:
        events = decode(b"event: ping\n\ndata: 2\n\n")
        assert [event[0] for event in events] == ["message"]


class TestEventId:
    """``id`` updates the last event id at dispatch and persists across events."""

    def test_id_persists_across_events(self) -> None:
        decoder = SSEDecoder(BIG)
        events = feed_all(decoder, [b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"])
        assert [(data, id_) for _, data, id_, _ in events] == [("a", "1"), ("b", "1"), ("c", "2")]
        assert decoder.last_event_id == "2"

    def test_no_id_ever_means_none_and_events_carry_empty_id(self) -> None:
        decoder = SSEDecoder(BIG)
        assert feed_all(decoder, [b"data: a\n\n"]) == [("message", "a", "", None)]
        assert decoder.last_event_id is None

    def test_empty_id_resets_the_last_event_id(self) -> None:
        decoder = SSEDecoder(BIG)
        events = feed_all(decoder, [b"id: 1\ndata: a\n\nid\ndata: b\n\n"])
        assert [id_ for _, _, id_, _ in events] == ["1", ""]
        assert decoder.last_event_id == ""

    def test_id_containing_nul_is_ignored(self) -> None:
        decoder = SSEDecoder(BIG)
        events = feed_all(decoder, [b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"])
        assert [id_ for _, _, id_, _ in events] == ["1", "1"]
        assert decoder.last_event_id == "1"

    def test_id_is_taken_verbatim(self) -> None:
        decoder = SSEDecoder(BIG)
        feed_all(decoder, [b"id:  spaced id : x\ndata\n\n"])
        assert decoder.last_event_id == " spaced id : x"

    def test_last_event_id_updates_only_at_dispatch(self) -> None:
        decoder = SSEDecoder(BIG)
        assert feed_all(decoder, [b"id: 7\ndata: x\n"]) == []
        assert decoder.last_event_id is None
        assert feed_all(decoder, [b"\n"]) == [("message", "x", "7", None)]
        assert decoder.last_event_id == "7"

    def test_last_id_of_several_in_one_event_wins(self) -> None:
        decoder = SSEDecoder(BIG)
        assert feed_all(decoder, [b"id: 1\nid: 2\ndata: x\n\n"])[0][2] == "2"


class TestPrimingEvent:
    """MCP servers open a resumable stream with an id and an empty ``data:`` line."""

    @pytest.mark.parametrize("data_line", [b"data:", b"data: ", b"data"])
    def test_id_with_empty_data_line_is_dispatched(self, data_line: bytes) -> None:
        decoder = SSEDecoder(BIG)
        events = feed_all(decoder, [b"id: prime-1\n" + data_line + b"\n\n"])
        assert events == [("message", "", "prime-1", None)]
        assert decoder.last_event_id == "prime-1"

    def test_id_without_any_data_line_is_not_dispatched_but_recorded(self) -> None:
        decoder = SSEDecoder(BIG)
        assert feed_all(decoder, [b"id: prime-1\n\n"]) == []
        assert decoder.last_event_id == "prime-1"
        # The next event carries it.
        assert feed_all(decoder, [b"data: x\n\n"]) == [("message", "x", "prime-1", None)]

    def test_blank_lines_alone_dispatch_nothing(self) -> None:
        decoder = SSEDecoder(BIG)
        assert feed_all(decoder, [b"\n\n\r\n\r\r"]) == []
        assert decoder.last_event_id is None


class TestRetry:
    """``retry`` takes only ASCII digits; anything else leaves it unchanged."""

    def test_digits_set_retry(self) -> None:
        decoder = SSEDecoder(BIG)
        assert feed_all(decoder, [b"retry: 2500\n\n"]) == []
        assert decoder.retry == 2500

    def test_retry_is_reported_on_later_events(self) -> None:
        assert decode(b"retry: 10\ndata: x\n\n") == [("message", "x", "", 10)]

    def test_zero_is_allowed(self) -> None:
        decoder = SSEDecoder(BIG)
        feed_all(decoder, [b"retry: 0\n"])
        assert decoder.retry == 0

    @pytest.mark.parametrize(
        "value",
        [b"", b"3s", b"-1", b"+1", b"1.5", b" 1", b"1 ", b"1e3", "\uff13".encode(), "²".encode()],
        ids=repr,
    )
    def test_non_digits_are_ignored(self, value: bytes) -> None:
        decoder = SSEDecoder(BIG)
        feed_all(decoder, [b"retry: 100\n", b"retry: " + value + b"\n"])
        assert decoder.retry == 100

    def test_absurdly_long_value_is_ignored_not_an_error(self) -> None:
        # Regression: int() refuses strings of more than 4300 digits (ValueError).
        decoder = SSEDecoder(BIG)
        feed_all(decoder, [b"retry: 100\n", b"retry: " + b"9" * 5000 + b"\n"])
        assert decoder.retry == 100

    def test_retry_applies_without_dispatch(self) -> None:
        decoder = SSEDecoder(BIG)
        feed_all(decoder, [b"retry: 5\n"])  # no blank line yet
        assert decoder.retry == 5


class TestIncompleteInput:
    """Nothing is dispatched until the blank line that ends an event arrives."""

    def test_trailing_event_without_blank_line_is_not_dispatched(self) -> None:
        assert decode(b"data: a\n\ndata: b\n") == [("message", "a", "", None)]

    def test_trailing_partial_line_is_not_dispatched(self) -> None:
        assert decode(b"data: a") == []

    def test_trailing_event_completes_with_a_later_chunk(self) -> None:
        decoder = SSEDecoder(BIG)
        assert feed_all(decoder, [b"data: a\n"]) == []
        assert feed_all(decoder, [b"data: b\n", b"\n"]) == [("message", "a\nb", "", None)]

    def test_stopping_iteration_early_keeps_the_rest_for_the_next_feed(self) -> None:
        decoder = SSEDecoder(BIG)
        first = next(iter(decoder.feed(b"data: 1\n\ndata: 2\n\ndata: 3")))
        assert first.data == "1"
        assert [event.data for event in decoder.feed(b"\n\n")] == ["2", "3"]


# One stream exercising every rule at once; its meaning must not depend on how it is cut.
SAMPLE = (
    "\ufeff".encode()
    + b": keep-alive\r\n"
    + b"retry: 2500\r\n"
    + b"id: 1\r\n"
    + b"data:\r\n\r\n"  # priming event
    + b"event: notice\n"
    + b'data: {"a": 1}\n'
    + b"data: second line\n\n"
    + b"id: 2\rdata: caf\xc3\xa9 \xf0\x9f\x98\x80\r\r"
    + b"id: 3\r\n\r\n"  # id only: recorded, not dispatched
    + b"data:x\r\nunknown: field\r\ndata:  y\r\nid: bad\x00id\r\n\r\n"
    + b"data: a\r\r\ndata: b\n\n"  # CR then CRLF: two line endings
    + b"data: never dispatched\n"
)
SAMPLE_EVENTS: list[Event] = [
    ("message", "", "1", 2500),
    ("notice", '{"a": 1}\nsecond line', "1", 2500),
    ("message", "café 😀", "2", 2500),
    ("message", "x\n y", "3", 2500),
    ("message", "a", "3", 2500),
    ("message", "b", "3", 2500),
]


class TestChunkingIndependence:
    """Any way of cutting the byte stream yields the same events (property-style)."""

    def test_sample_in_one_chunk(self) -> None:
        decoder = SSEDecoder(BIG)
        assert feed_all(decoder, [SAMPLE]) == SAMPLE_EVENTS
        assert decoder.last_event_id == "3"
        assert decoder.retry == 2500

    def test_sample_split_at_every_position(self) -> None:
        for cut in range(len(SAMPLE) + 1):
            decoder = SSEDecoder(BIG)
            events = feed_all(decoder, [SAMPLE[:cut], SAMPLE[cut:]])
            assert events == SAMPLE_EVENTS, f"cut at {cut}"
            assert decoder.last_event_id == "3"

    def test_sample_byte_by_byte(self) -> None:
        chunks = [SAMPLE[i : i + 1] for i in range(len(SAMPLE))]
        assert decode(*chunks) == SAMPLE_EVENTS

    def test_sample_byte_by_byte_with_empty_chunks_between(self) -> None:
        chunks = [piece for i in range(len(SAMPLE)) for piece in (SAMPLE[i : i + 1], b"")]
        assert decode(*chunks) == SAMPLE_EVENTS

    def test_sample_in_random_chunks(self) -> None:
        rng = random.Random(20251125)
        for _ in range(200):
            cuts = sorted(rng.sample(range(1, len(SAMPLE)), rng.randint(1, 12)))
            bounds = [0, *cuts, len(SAMPLE)]
            chunks = [SAMPLE[a:b] for a, b in itertools.pairwise(bounds)]
            assert decode(*chunks) == SAMPLE_EVENTS, f"cuts {cuts}"


class TestSizeLimits:
    """A line or an event over ``max_event_size`` raises instead of buffering for ever."""

    def test_line_at_the_limit_is_accepted(self) -> None:
        assert decode(b"data: " + b"x" * 10 + b"\n\n", max_event_size=16) == [
            ("message", "x" * 10, "", None)
        ]

    def test_unterminated_line_longer_than_limit_raises(self) -> None:
        decoder = SSEDecoder(16)
        with pytest.raises(SSEEventTooLarge):
            feed_all(decoder, [b"data: ", b"x" * 8, b"x" * 8])

    def test_unterminated_line_raises_however_it_is_chunked(self) -> None:
        decoder = SSEDecoder(16)
        with pytest.raises(SSEEventTooLarge):
            feed_all(decoder, [b"x"] * 17)

    @pytest.mark.parametrize(
        "line",
        [b": " + b"c" * 30, b"event: " + b"e" * 30, b"id: " + b"i" * 30, b"data: " + b"d" * 30],
        ids=["comment", "event", "id", "data"],
    )
    def test_complete_line_longer_than_limit_raises(self, line: bytes) -> None:
        # Regression: a too-long line that arrived whole (terminator included) in one
        # chunk used to be accepted unless it was a data line.
        with pytest.raises(SSEEventTooLarge):
            decode(line + b"\n\n", max_event_size=16)

    def test_many_data_lines_together_over_limit_raise(self) -> None:
        line = b"data: 123456789\n"  # 9 characters plus the joining newline
        assert data_of(line * 3 + b"\n") == ["123456789\n123456789\n123456789"]
        with pytest.raises(SSEEventTooLarge):
            decode(line * 4 + b"\n", max_event_size=32)

    def test_limit_is_per_event_not_per_stream(self) -> None:
        events = decode(b"data: 123456789\ndata: 123456789\n\n" * 50, max_event_size=32)
        assert len(events) == 50

    def test_many_data_lines_over_limit_raise_however_they_are_chunked(self) -> None:
        decoder = SSEDecoder(32)
        with pytest.raises(SSEEventTooLarge):
            feed_all(decoder, [b"data: 123456789\n"] * 4)

    def test_one_large_chunk_of_many_small_events(self) -> None:
        # A whole buffered body arrives as one chunk; every event in it comes out (this
        # used to be quadratic: each line rescanned the rest of the buffer for a CR).
        chunk = b"data: x\n\n" * 20_000
        assert len(decode(chunk, max_event_size=16)) == 20_000


class TestLinearCost:
    """Decoding costs what the stream is long, not what it is long times its chunks."""

    class CountingPattern:
        """Stands in for the line-ending regex and counts the bytes it is asked to scan."""

        def __init__(self, pattern: re.Pattern[bytes]) -> None:
            self.pattern = pattern
            self.scanned = 0

        def search(self, buffer: bytes | bytearray, pos: int = 0) -> re.Match[bytes] | None:
            self.scanned += len(buffer) - pos
            return self.pattern.search(buffer, pos)

    def test_a_long_line_in_many_chunks_is_scanned_once(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        counter = self.CountingPattern(sse_decoder._LINE_END)
        monkeypatch.setattr(sse_decoder, "_LINE_END", counter)
        chunk = b"x" * 4096
        chunks = [b"data: ", *([chunk] * 256), b"\n\n"]  # one 1 MiB line
        events = decode(*chunks, max_event_size=2 * BIG)
        assert [len(data) for _, data, _, _ in events] == [256 * 4096]
        total = sum(len(c) for c in chunks)
        # Every byte is looked at a bounded number of times (a rescan of the unfinished
        # line per chunk would make this 128 times the stream's size).
        assert counter.scanned <= 2 * total

    def test_an_over_long_line_is_refused_as_soon_as_it_passes_the_limit(self) -> None:
        decoder = SSEDecoder(64 * 1024)
        fed = 0

        def feed_until_refused() -> None:
            nonlocal fed
            for chunk in itertools.chain([b"data: "], itertools.repeat(b"y" * 4096)):
                fed += len(chunk)
                list(decoder.feed(chunk))

        with pytest.raises(SSEEventTooLarge):
            feed_until_refused()
        assert fed <= 64 * 1024 + 2 * 4096

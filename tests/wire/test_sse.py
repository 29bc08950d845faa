"""rxllm.wire.Decoder: the WHATWG event-stream rules, one by one (wire-formats.md sections 1, 7).

Each docstring cites the rule it checks: "WF 1 Lines" is wire-formats.md section 1, bullet
"Lines"; "WF 7.2" is item 2 of section 7.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxllm.errors import FrameTooLarge, WireError
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES, Decoder, SSEEvent

BOM = b"\xef\xbb\xbf"


def ev(data: str, event: str = "message", id: str = "") -> SSEEvent:
    """An expected event."""
    return SSEEvent(event, data, id)


def decode(*reads: bytes, decoder: Decoder | None = None) -> list[SSEEvent]:
    """Feed ``reads`` one by one and return every event they completed."""
    dec = decoder if decoder is not None else Decoder()
    out: list[SSEEvent] = []
    for read in reads:
        out.extend(dec.feed(read))
    return out


def decode_raw(*reads: bytes, decoder: Decoder | None = None) -> list[tuple[str, str]]:
    """Feed ``reads`` through ``feed_raw``; return (type, data) pairs, raw data decoded."""
    dec = decoder if decoder is not None else Decoder()
    out: list[tuple[str, str]] = []
    for read in reads:
        for item in dec.feed_raw(read):
            if isinstance(item, bytes):
                out.append(("message", item.decode("utf-8", "replace")))
            else:
                out.append((item.event, item.data))
    return out


def pairs(events: list[SSEEvent]) -> list[tuple[str, str]]:
    """(type, data) of each event: what ``decode_raw`` can compare."""
    return [(e.event, e.data) for e in events]


def cut(body: bytes, sizes: list[int]) -> list[bytes]:
    """Split ``body`` into reads of the given sizes (the rest is the last read)."""
    reads, pos = [], 0
    for size in sizes:
        reads.append(body[pos : pos + size])
        pos += size
    reads.append(body[pos:])
    return reads


# --- BOM ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[], [3], [1], [2], [1, 2], [2, 1], [1, 1, 1], [1, 1, 1, 1]])
def test_one_leading_bom_is_stripped_however_it_is_split(sizes: list[int]) -> None:
    """WF 1 Encoding / 7.2: one leading BOM is stripped, even when split across reads."""
    body = BOM + b"data: a\n\n"
    assert decode(*cut(body, sizes)) == [ev("a")]
    assert decode_raw(*cut(body, sizes)) == pairs([ev("a")])


def test_a_second_bom_is_not_stripped_so_its_field_is_ignored() -> None:
    """WF 1 Encoding [WPT-BOM2]: only one BOM goes; a second one makes the field name unknown."""
    assert decode(BOM + BOM + b"data: a\n\ndata: b\n\n") == [ev("b")]
    assert decode(BOM, BOM + b"data: a\n\ndata: b\n\n") == [ev("b")]


def test_a_bom_later_in_the_stream_is_content() -> None:
    """WF 1 Encoding: the BOM is stripped only at the start; later it is an ordinary U+FEFF."""
    assert decode(b"data: a\n\n" + BOM + b"data: b\n\ndata: " + BOM + b"c\n\n") == [
        ev("a"),
        ev("\ufeffc"),
    ]


def test_a_partial_bom_at_the_start_is_kept_as_content() -> None:
    """WF 1 Encoding: bytes held while deciding on a BOM are not lost when it is not one."""
    # "\xef\xbb" then ":": a comment line whose first bytes are invalid UTF-8, then data.
    assert decode(b"\xef", b"\xbb", b"x\ndata: a\n\n") == [ev("a")]
    dec = Decoder()
    assert decode(b"\xef", decoder=dec) == []
    assert dec.pending


# --- line ends ----------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_cr_lf_and_crlf_all_end_lines(eol: bytes) -> None:
    """WF 1 Lines: a line ends with CRLF, a lone LF or a lone CR."""
    body = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert decode(body) == [ev("a\nb"), ev("c")]
    assert decode_raw(body) == pairs([ev("a\nb"), ev("c")])


def test_crlf_split_across_reads_is_one_line_end() -> None:
    """WF 7.1: a CRLF whose CR and LF arrive in different reads is one line end, not two."""
    reads = [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]
    assert decode(*reads) == [ev("a\nb")]
    assert decode_raw(*reads) == pairs([ev("a\nb")])


def test_a_cr_at_a_read_end_then_other_bytes() -> None:
    """WF 1 Lines: a CR that ends a read and is not followed by LF is a line end by itself."""
    assert decode(b"data: a\r", b"data: b\r", b"\r") == [ev("a\nb")]
    assert decode(b"data: a\r", b"", b"\r") == [ev("a")]


def test_lf_cr_is_two_line_ends() -> None:
    """WF 7.1: LF followed by CR is two line ends (here: a blank line that dispatches)."""
    assert decode(b"data: a\n\rdata: b\n\n") == [ev("a"), ev("b")]
    assert decode(b"data: a\n", b"\rdata: b\n\n") == [ev("a"), ev("b")]


def test_gemini_crlf_crlf_framing() -> None:
    """WF 4 / 7.1: Gemini's alt=sse events end with CRLF CRLF, at every split point."""
    body = b'data: {"n": 1}\r\n\r\ndata: {"n": 2, "t": "\xe5\x86\x92"}\r\n\r\n'
    expected = [ev('{"n": 1}'), ev('{"n": 2, "t": "冒"}')]
    for i in range(len(body) + 1):
        assert decode(body[:i], body[i:]) == expected, i
        assert decode_raw(body[:i], body[i:]) == pairs(expected), i


# --- comments and fields ------------------------------------------------------------------


def test_comments_and_keep_alives_are_ignored() -> None:
    """WF 1 Per-line rules 2: a line starting with ':' is a comment, ignored anywhere."""
    body = b": keep-alive\n\n:\ndata: a\n: inside an event\ndata: b\n\n:ping\n\n"
    assert decode(body) == [ev("a\nb")]


def test_a_field_without_colon_has_an_empty_value() -> None:
    """WF 1 Per-line rules 4 / examples: `data` alone fires an event with empty data."""
    assert decode(b"data\n\n") == [ev("")]
    assert decode(b"data\ndata\n\n") == [ev("\n")]


@pytest.mark.parametrize(
    ("line", "data"),
    [
        (b"data:test", "test"),
        (b"data: test", "test"),
        (b"data:  test", " test"),
        (b"data:\ttest", "\ttest"),
        (b"data: \ttest", "\ttest"),
        (b"data:", ""),
        (b"data: ", ""),
        (b"data:  ", " "),
        (b"data: a: b", "a: b"),
        (b"data::", ":"),
    ],
)
def test_exactly_one_leading_space_is_removed(line: bytes, data: str) -> None:
    """WF 1 Per-line rules 3: split at the first colon; remove one U+0020 (never a TAB)."""
    assert decode(line + b"\n\n") == [ev(data)]


@pytest.mark.parametrize("count", [2, 63, 64, 65, 66, 128, 129, 130, 1000])
def test_an_event_of_many_data_lines_is_joined_exactly(count: int) -> None:
    """WF 1 Dispatch 3: any number of data lines (some empty) join with LF, in every path."""
    values = [f"line {i}" if i % 3 else "" for i in range(count)]
    body = b"".join(b"data: " + v.encode() + b"\n" for v in values) + b"\n"
    expected = "\n".join(values)
    assert decode(body + body) == [ev(expected)] * 2
    assert decode(*(body[i : i + 7] for i in range(0, len(body), 7))) == [ev(expected)]
    raw = Decoder().feed_raw(body + b"event: t\n" + body)
    assert raw == [expected.encode(), ev(expected, "t")]
    assert type(raw[0]) is bytes


def test_data_lines_are_joined_with_lf_and_one_trailing_lf_removed() -> None:
    """WF 1 Dispatch 3: each data line adds value + LF; only ONE trailing LF is removed."""
    assert decode(b"data: a\ndata: b\ndata: c\n\n") == [ev("a\nb\nc")]
    assert decode(b"data: a\ndata:\n\n") == [ev("a\n")]
    assert decode(b"data: a\ndata\ndata\n\n") == [ev("a\n\n")]
    assert decode(b"data:\ndata: a\n\n") == [ev("\na")]


def test_field_names_are_literal_and_unknown_fields_ignored() -> None:
    """WF 1 Fields: names are compared literally, no case folding; other fields are ignored."""
    body = b"Data: x\nDATA: x\n data: x\ndata : x\nfoo: bar\nevent : e\n\ndata: y\n\n"
    assert decode(body) == [ev("y")]


def test_event_sets_the_type_and_the_default_is_message() -> None:
    """WF 1 Dispatch 4/6: the type is the event buffer or "message"; it resets after dispatch."""
    body = b"event: add\ndata: a\n\ndata: b\n\nevent:\ndata: c\n\nevent: x\nevent: y\ndata: d\n\n"
    assert decode(body) == [ev("a", "add"), ev("b"), ev("c"), ev("d", "y")]
    assert decode_raw(body) == pairs([ev("a", "add"), ev("b"), ev("c"), ev("d", "y")])


def test_an_event_only_block_fires_nothing_and_resets_the_type() -> None:
    """WF 1 Dispatch 2 / 7.3: an `event:`-only block dispatches nothing and clears the type."""
    assert decode(b"event: add\n\ndata: a\n\n") == [ev("a")]
    assert decode(b"event: add\n", b"\n", b"data: a\n\n") == [ev("a")]


# --- id -----------------------------------------------------------------------------------


def test_the_id_persists_across_later_events() -> None:
    """WF 1 Dispatch 1 / 7.3: the last-event-ID buffer is not reset, so the ID persists."""
    dec = Decoder()
    assert decode(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n", decoder=dec) == [
        ev("a", id="1"),
        ev("b", id="1"),
        ev("c", id="2"),
    ]
    assert dec.last_event_id == "2"


@pytest.mark.parametrize("reset", [b"id", b"id:", b"id: "])
def test_an_id_without_value_resets_it(reset: bytes) -> None:
    """WF 1 examples: an `id` line with no value resets the ID to ""."""
    dec = Decoder()
    body = b"id: 1\ndata: a\n\n" + reset + b"\ndata: b\n\n"
    assert decode(body, decoder=dec) == [ev("a", id="1"), ev("b")]
    assert dec.last_event_id == ""


def test_an_id_containing_nul_is_ignored() -> None:
    """WF 1 Fields id [WPT-IDNULL]: an id value containing U+0000 is ignored entirely."""
    dec = Decoder()
    body = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\nid: \x00\ndata: c\n\n"
    assert decode(body, decoder=dec) == [ev("a", id="1"), ev("b", id="1"), ev("c", id="1")]
    assert dec.last_event_id == "1"


def test_last_event_id_is_set_by_a_block_that_dispatches_nothing() -> None:
    """WF 1 Dispatch 1: the ID is copied at every blank line, even when nothing fires."""
    dec = Decoder()
    assert decode(b"id: 7\n", decoder=dec) == []
    assert dec.last_event_id == ""  # copied only at the blank line
    assert decode(b"\n", decoder=dec) == []
    assert dec.last_event_id == "7"
    assert decode(b"id: 8\nevent: x\n\n", decoder=dec) == []
    assert dec.last_event_id == "8"
    assert decode(b"data: a\n\n", decoder=dec) == [ev("a", id="8")]


def test_the_id_is_decoded_as_utf8() -> None:
    """WF 1 Encoding: an id is text; invalid bytes become U+FFFD."""
    dec = Decoder()
    assert decode(b"id: \xc3\xa9\xff\ndata: a\n\n", decoder=dec) == [ev("a", id="é\ufffd")]


# --- retry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "retry"),
    [
        (b"retry: 1500\n", 1500),
        (b"retry:1500\n", 1500),
        (b"retry: 0\n", 0),
        (b"retry: 15x\n", None),
        (b"retry: \n", None),
        (b"retry\n", None),
        (b"retry: -5\n", None),
        (b"retry: 1.5\n", None),
        (b"retry:  15\n", None),
        (b"retry: 15 \n", None),
        ("retry: ١٢\n".encode(), None),  # Arabic-Indic digits are not ASCII digits
        (b"retry: 1500\nretry: x\n", 1500),
        (b"retry: 1500\nretry: 20\n", 20),
    ],
)
def test_retry_takes_only_ascii_digits(lines: bytes, retry: int | None) -> None:
    """WF 1 Fields retry: only a value of ASCII digits sets the reconnection time."""
    dec = Decoder()
    assert decode(lines + b"\n", decoder=dec) == []
    assert dec.retry == retry


# --- end of stream ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"data: a", b"data: a\n", b"data: a\r", b"data: a\r\n"])
def test_no_dispatch_at_eof_without_a_blank_line(body: bytes) -> None:
    """WF 1 EOF / 7.3: an event not ended by a blank line is never dispatched."""
    dec = Decoder()
    assert decode(body, decoder=dec) == []
    assert dec.pending
    assert dec.finish() == []
    assert not dec.pending


def test_finish_drops_the_pending_event_and_resets_the_decoder() -> None:
    """WF 1 EOF: finish() discards pending data; the next stream starts fresh (BOM included)."""
    dec = Decoder()
    assert decode(b"id: 5\n\nevent: x\ndata: partial\ndata: more", decoder=dec) == []
    dec.finish()
    assert decode(b"\n\n", decoder=dec) == []  # nothing of the old event survived
    dec.finish()
    assert decode(BOM + b"data: new\n\n", decoder=dec) == [ev("new", id="5")]
    assert dec.last_event_id == "5"  # kept, as EventSource keeps it across reconnections


# --- UTF-8 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"a\xffb", "a\ufffdb"),
        (b"\xe2\x82", "\ufffd"),  # truncated at the line end
        (b"\xe2\x82x", "\ufffdx"),
        (b"\xc0\xaf", "\ufffd\ufffd"),  # overlong encoding
        (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),  # a UTF-16 surrogate
    ],
)
def test_invalid_utf8_becomes_replacement_characters(raw: bytes, text: str) -> None:
    """WF 1 Encoding: invalid bytes become U+FFFD, as the UTF-8 decode algorithm says."""
    assert decode(b"data: " + raw + b"\n\n") == [ev(text)]
    assert decode_raw(b"data: " + raw + b"\n\n") == pairs([ev(text)])


def test_a_multibyte_character_split_across_reads_is_intact() -> None:
    """WF 7.2: decoding is incremental; a character split between reads is not corrupted."""
    text = "é€😀中"
    body = b"data: " + text.encode() + b"\n\n"
    for i in range(len(body) + 1):
        assert decode(body[:i], body[i:]) == [ev(text)], i
    assert decode(*(body[i : i + 1] for i in range(len(body)))) == [ev(text)]


def test_feed_raw_returns_undecoded_bytes_for_default_events() -> None:
    """feed_raw: a "message" event comes as its UTF-8 data; a typed one as an SSEEvent."""
    dec = Decoder()
    got = dec.feed_raw(b"data: \xc3\xa9\n\nevent: e\ndata: x\n\ndata: a\ndata: b\n\n")
    assert got == [b"\xc3\xa9", ev("x", "e"), b"a\nb"]
    assert all(type(item) is bytes for item in (got[0], got[2]))


# --- every chunk boundary -----------------------------------------------------------------

MIXED = (
    BOM
    + b": stream opened\r\n"
    + b"retry: 2500\n"
    + b"id: 1\r\n"
    + b"data: first\n\n"
    + b"event: update\r"
    + b"data:line one\r"
    + b"data:  line two\r\n"
    + b"data\r\n"
    + b"\r\n"
    + b":keep-alive\n\n"
    + b"id\n"
    + b'data: {"t": "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80"}\n\n'
    + b"event: only-type\n\n"
    + b"id: 2\x00x\n"
    + b"data: after nul id\n\r"
    + b"id: 3\r"
    + b"data: data: [DONE]\r\n\r\n"
    + b"data: dropped at eof"
)
MIXED_EVENTS = [
    ev("first", id="1"),
    ev("line one\n line two\n", "update", id="1"),
    ev('{"t": "café 中文 😀"}'),
    ev("after nul id"),
    ev("data: [DONE]", id="3"),
]


def test_the_mixed_stream_decodes_in_one_read() -> None:
    """WF 1 and 7 together: the mixed stream's events, id and retry, read at once."""
    dec = Decoder()
    assert decode(MIXED, decoder=dec) == MIXED_EVENTS
    assert dec.last_event_id == "3"
    assert dec.retry == 2500
    assert dec.pending


def test_every_two_read_split_gives_the_same_events() -> None:
    """STYLE 8: the mixed stream split into two reads at every byte offset decodes the same."""
    for i in range(len(MIXED) + 1):
        dec = Decoder()
        assert decode(MIXED[:i], MIXED[i:], decoder=dec) == MIXED_EVENTS, i
        assert (dec.last_event_id, dec.retry) == ("3", 2500), i


def test_one_byte_per_read_gives_the_same_events() -> None:
    """STYLE 8: the mixed stream fed one byte per read decodes the same."""
    reads = [MIXED[i : i + 1] for i in range(len(MIXED))]
    assert decode(*reads) == MIXED_EVENTS
    assert decode_raw(*reads) == pairs(MIXED_EVENTS)


def test_every_two_read_split_with_feed_raw_gives_the_same_data() -> None:
    """STYLE 8: feed_raw over every two-read split yields the same events and data."""
    for i in range(len(MIXED) + 1):
        assert decode_raw(MIXED[:i], MIXED[i:]) == pairs(MIXED_EVENTS), i


def test_every_three_read_split_of_a_data_only_stream() -> None:
    """STYLE 8: the data-only fast path, split into three reads at every pair of offsets."""
    body = b'data: {"a": 1}\n\ndata: \xc3\xa9\n\ndata: x\ndata: y\n\ndata: [DONE]\n\n'
    expected = [ev('{"a": 1}'), ev("é"), ev("x\ny"), ev("[DONE]")]
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1):
            assert decode_raw(body[:i], body[i:j], body[j:]) == pairs(expected), (i, j)


# --- bounds -------------------------------------------------------------------------------

READ = 64 * 1024


def feed_counting(feed: Callable[[bytes], object], reads: Iterable[bytes], fed: list[int]) -> None:
    """Feed ``reads`` one by one, recording each read's size in ``fed``."""
    for read in reads:
        fed.append(len(read))
        feed(read)


def _endless_line(prefix: bytes, total: int) -> Iterator[bytes]:
    """Reads of a ``total``-byte line without a line end, made one at a time."""
    yield prefix + b"x" * (READ - len(prefix))
    for _ in range(total // READ - 1):
        yield b"x" * READ


@pytest.mark.parametrize("prefix", [b"data: ", b": ", b"id: ", b"event: "])
def test_an_endless_line_raises_early_with_bounded_memory(prefix: bytes) -> None:
    """A 10 MiB line fed in 64 KiB reads raises FrameTooLarge near the 1 MiB bound."""
    dec = Decoder()
    fed: list[int] = []
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as info:
            feed_counting(dec.feed, _endless_line(prefix, 10 * 1024 * 1024), fed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.limit == DEFAULT_MAX_EVENT_BYTES
    assert isinstance(info.value, WireError)
    assert sum(fed) <= DEFAULT_MAX_EVENT_BYTES + READ
    assert peak < 4 * 1024 * 1024
    assert not dec.pending


def test_an_event_of_many_small_data_lines_raises_with_bounded_memory() -> None:
    """An event's data over the bound raises, and memory follows the data, not its line count."""
    dec = Decoder()
    read = b"data: xy\n" * (READ // 9)
    fed: list[int] = []
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as info:
            feed_counting(dec.feed, (read for _ in range(10 * 1024 * 1024 // len(read))), fed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.limit == DEFAULT_MAX_EVENT_BYTES
    assert sum(fed) <= 3 * DEFAULT_MAX_EVENT_BYTES + READ  # 9 bytes a line, 3 of them data
    assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize("prefix", [b"data: ", b": ", b"id: ", b"event: ", b"unknown: "])
def test_a_long_line_completed_in_one_read_raises(prefix: bytes) -> None:
    """The line bound holds for a line that arrives whole in one read, too."""
    dec = Decoder(max_event_bytes=100)
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(b"data: ok\n\n" + prefix + b"x" * 200 + b"\n\ndata: later\n\n")
    assert info.value.events == [ev("ok")]


@pytest.mark.parametrize("split", [None, 7, 23, 31])
def test_the_bounds_are_exact_and_the_same_at_any_split(split: int | None) -> None:
    """Bounds: a line of at most ``max_event_bytes`` passes, one byte more raises, and an
    event's data (each line's value plus one LF) is held to the same bound, in every path."""

    def run(body: bytes) -> list[SSEEvent]:
        reads = [body] if split is None else [body[:split], body[split:]]
        return decode(*reads, decoder=Decoder(max_event_bytes=32))

    line = b"data: " + b"x" * 26  # 32 bytes
    assert run(line + b"\n\n" + line + b"\n\n") == [ev("x" * 26)] * 2
    with pytest.raises(FrameTooLarge):
        run(line + b"\n\n" + line + b"x\n\n")
    with pytest.raises(FrameTooLarge):
        run(line + b"x\n\n" + line + b"\n\n")
    with pytest.raises(FrameTooLarge):
        run(b": " + b"c" * 31 + b"\n\n")
    lines = b"data: " + b"y" * 15 + b"\ndata: " + b"y" * 15 + b"\n\n"  # 16 + 16 bytes of data
    assert run(lines) == [ev("y" * 15 + "\n" + "y" * 15)]
    with pytest.raises(FrameTooLarge):
        run(lines.replace(b"\n\n", b"y\n\n"))


@pytest.mark.parametrize("raw", [False, True])
def test_the_error_keeps_the_events_completed_earlier_in_the_read(raw: bool) -> None:
    """Nothing good is lost: FrameTooLarge.events holds the events completed before it."""
    dec = Decoder(max_event_bytes=64)
    assert dec.feed(b"data: zero\n\n") == [ev("zero")]
    body = b"data: one\n\nevent: t\ndata: two\n\ndata: " + b"y" * 100 + b"\n\ndata: three\n\n"
    with pytest.raises(FrameTooLarge) as info:
        dec.feed_raw(body) if raw else dec.feed(body)
    first: bytes | SSEEvent = b"one" if raw else ev("one")
    assert info.value.events == [first, ev("two", "t")]


@pytest.mark.parametrize(
    "trigger",
    [
        b"data: " + b"z" * 100,  # an unterminated line
        b"data: " + b"z" * 100 + b"\n\n",  # a whole line
        b"data: zzzzzzzzzz\n" * 10,  # many data lines
    ],
)
def test_the_decoder_refuses_input_after_a_failure(trigger: bytes) -> None:
    """After FrameTooLarge every further read raises too: a stream is not resynchronised."""
    dec = Decoder(max_event_bytes=64)
    with pytest.raises(FrameTooLarge):
        dec.feed(trigger)
    with pytest.raises(FrameTooLarge):
        dec.feed(b"data: fine\n\n")
    with pytest.raises(FrameTooLarge):
        dec.feed_raw(b"data: fine\n\n")


def test_finish_after_a_failure_readies_the_decoder_for_a_new_stream() -> None:
    """finish() resets the decoder for a new stream, also after a failure."""
    dec = Decoder(max_event_bytes=64)
    with pytest.raises(FrameTooLarge):
        dec.feed(b"data: " + b"z" * 100)
    dec.finish()
    assert dec.feed(b"data: fine\n\n") == [ev("fine")]


def test_max_event_bytes_must_be_positive() -> None:
    """A bound of zero or less is a configuration mistake, refused at once."""
    with pytest.raises(ValueError, match="positive"):
        Decoder(max_event_bytes=0)


_BOUND_PIECES = st.sampled_from(
    [
        *(b"data: ", b"data:", b"data", b"event: t", b"id: 1", b": c", b"retry: 9", b" "),
        *(b"\n", b"\r", b"\r\n", b"\n\n", b"\n\ndata: ", b"x", b"xxxxxxx", b"\xc3\xa9", BOM),
    ]
)


@settings(max_examples=1500, deadline=None)
@given(
    body=st.lists(_BOUND_PIECES, max_size=50).map(b"".join),
    cuts=st.lists(st.integers(0, 400), max_size=10),
    bound=st.integers(1, 40),
    raw=st.booleans(),
)
def test_bound_errors_do_not_depend_on_how_the_stream_is_split(
    body: bytes, cuts: list[int], bound: int, raw: bool
) -> None:
    """Bounds: whether FrameTooLarge is raised, and the events delivered before it (returned
    or in ``events``), are the same for one read as for any split of the stream."""

    def outcome(reads: list[bytes]) -> tuple[list[object], bool]:
        dec = Decoder(max_event_bytes=bound)
        got: list[object] = []
        try:
            for read in reads:
                got.extend(dec.feed_raw(read) if raw else dec.feed(read))
        except FrameTooLarge as exc:
            return got + exc.events, True
        return got, False

    points = sorted({c % (len(body) + 1) for c in cuts})
    reads = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert outcome(reads) == outcome([body])

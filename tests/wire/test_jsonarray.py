"""rxllm.wire.JSONArrayDecoder: Gemini's streamed JSON array (wire-formats.md section 4)."""

from __future__ import annotations

import json
import random
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxllm.errors import FrameTooLarge, MalformedFrame
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES, JSONArrayDecoder

BOM = b"\xef\xbb\xbf"


def _chunk(text: str, *, finish: bool = False) -> dict[str, Any]:
    """A GenerateContentResponse as Gemini streams it (WF 4 "Chunk shape")."""
    candidate: dict[str, Any] = {
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0,
    }
    if finish:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13},
        "modelVersion": "gemini-2.0-flash",
        "responseId": "abc123",
    }


GEMINI_CHUNKS = [
    _chunk("冒险伙伴"),
    _chunk(' with "quotes", {braces} and [brackets] \\ backslash'),
    _chunk("\u00e9\U0001f600\n", finish=True),
]


def gemini_body(chunks: list[dict[str, Any]]) -> bytes:
    """WF 4 "Without alt=sse": ``[{\\n  "candidates": ...}\\n,\\r\\n{...}\\n]``, 2-space indent."""
    parts = [json.dumps(c, indent=2, ensure_ascii=False) for c in chunks]
    return ("[" + "\n,\r\n".join(parts) + "\n]").encode()


GEMINI = gemini_body(GEMINI_CHUNKS)


def decode(*reads: bytes, decoder: JSONArrayDecoder | None = None) -> list[Any]:
    """Feed ``reads`` one by one; return every element."""
    dec = decoder if decoder is not None else JSONArrayDecoder()
    out: list[Any] = []
    for read in reads:
        out.extend(dec.feed(read))
    return out


def test_gemini_framing_is_exactly_as_recorded() -> None:
    """WF 4: the fixture has the recorded shape (pretty-printed, 2-space indent, \\n,\\r\\n)."""
    assert GEMINI.startswith(b'[{\n  "candidates": [\n    {\n')
    assert b"}\n,\r\n{\n" in GEMINI
    assert GEMINI.endswith(b"}\n]")


def test_a_gemini_array_decodes_in_one_read() -> None:
    """WF 4: each element of the streamed array comes out parsed; done is set at ']'."""
    dec = JSONArrayDecoder()
    assert decode(GEMINI, decoder=dec) == GEMINI_CHUNKS
    assert dec.done
    assert not dec.pending


def test_every_two_read_split_gives_the_same_elements() -> None:
    """STYLE 8: the array split into two reads at every byte offset decodes the same."""
    for i in range(len(GEMINI) + 1):
        dec = JSONArrayDecoder()
        assert decode(GEMINI[:i], GEMINI[i:], decoder=dec) == GEMINI_CHUNKS, i
        assert dec.done, i


def test_one_byte_per_read_gives_the_same_elements() -> None:
    """STYLE 8: the array fed one byte per read decodes the same."""
    assert decode(*(GEMINI[i : i + 1] for i in range(len(GEMINI)))) == GEMINI_CHUNKS


def test_each_element_comes_as_soon_as_it_closes() -> None:
    """WF 4: an element is returned by the read holding its closing brace, before the comma."""
    ends = [GEMINI.index(b"}\n,") + 1, GEMINI.rindex(b"}\n,") + 1, GEMINI.rindex(b"}") + 1]
    for i in range(len(GEMINI) + 1):
        dec = JSONArrayDecoder()
        closed = sum(end <= i for end in ends)
        assert dec.feed(GEMINI[:i]) == GEMINI_CHUNKS[:closed], i
        assert dec.done == (i == len(GEMINI)), i
        assert dec.feed(GEMINI[i:]) == GEMINI_CHUNKS[closed:], i


def test_pending_and_done_follow_the_array() -> None:
    """``pending`` is true inside an element; ``done`` only once ']' has arrived."""
    dec = JSONArrayDecoder()
    assert dec.feed(b' [ {"a": ') == []
    assert (dec.pending, dec.done) == (True, False)
    assert dec.feed(b"1} ") == [{"a": 1}]
    assert (dec.pending, dec.done) == (False, False)
    assert dec.feed(b"\r\n]\n ") == []
    assert (dec.pending, dec.done) == (False, True)
    assert dec.feed(b"  \n") == []


TRICKY = (
    b'[{"s": "a \\"quoted\\" {b} [c] \\\\", "t": "\\\\"}, '
    b'{"e": "\\u00e9\\ud83d\\ude00 \\/ \\n", "u": "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80"}, '
    b'{"k{": "]", "[k": "}", "q": "\\\\\\""}, "a string ] } ,", [1, [2, {"x": "]"}]], '
    b"-1.5e3, 0, true, false, null, {}, []]"
)
TRICKY_VALUES = orjson.loads(TRICKY)


def test_strings_with_brackets_quotes_escapes_and_unicode() -> None:
    """Brackets, quotes and backslashes inside strings never end an element early."""
    assert decode(TRICKY) == TRICKY_VALUES
    assert TRICKY_VALUES[0]["s"] == 'a "quoted" {b} [c] \\'
    assert TRICKY_VALUES[1]["e"] == "é😀 / \n"


def test_tricky_strings_at_every_split_and_one_byte_per_read() -> None:
    """STYLE 8: escapes and brackets split across reads are tracked exactly."""
    for i in range(len(TRICKY) + 1):
        assert decode(TRICKY[:i], TRICKY[i:]) == TRICKY_VALUES, i
    assert decode(*(TRICKY[i : i + 1] for i in range(len(TRICKY)))) == TRICKY_VALUES


@pytest.mark.parametrize("sizes", [[1], [2], [1, 1], [1, 2], [2, 1], [1, 1, 1], [3]])
def test_one_leading_bom_is_skipped_however_it_is_split(sizes: list[int]) -> None:
    """A leading UTF-8 BOM (RFC 8259 allows ignoring it) is skipped, even split across reads."""
    body = BOM + b'[{"a": 1}]'
    reads, pos = [], 0
    for size in sizes:
        reads.append(body[pos : pos + size])
        pos += size
    reads.append(body[pos:])
    dec = JSONArrayDecoder()
    assert decode(*reads, decoder=dec) == [{"a": 1}]
    assert dec.done


@pytest.mark.parametrize(
    "body", [BOM + BOM + b"[]", b" " + BOM + b"[]", b"[" + BOM + b"{}]", b"\xef\xbb[]"]
)
def test_a_bom_anywhere_else_is_malformed(body: bytes) -> None:
    """Only one BOM, only at the very start, is skipped; any other is not JSON."""
    with pytest.raises(MalformedFrame):
        decode(body)


def test_whitespace_anywhere_between_tokens() -> None:
    """JSON whitespace (space, TAB, CR, LF) may surround the array and every element."""
    body = b' \r\n\t[ \n {"a" : [ 1 , 2 ] }\r\n\t,\n\n  {\n}\t] \r\n '
    dec = JSONArrayDecoder()
    assert decode(body, decoder=dec) == [{"a": [1, 2]}, {}]
    assert dec.done


def test_an_empty_array() -> None:
    """``[]`` is a complete stream with no elements."""
    dec = JSONArrayDecoder()
    assert decode(b"[", b" ", b"]", decoder=dec) == []
    assert dec.done


def test_scalar_elements_split_across_reads() -> None:
    """Numbers and literals end at a delimiter, which may arrive in a later read."""
    assert decode(b"[12", b"34", b", tr", b"ue,nu", b"ll", b"\n]") == [1234, True, None]


def test_a_gemini_error_wrapped_in_an_array() -> None:
    """WF 4 Errors: on the array endpoint an error is wrapped as ``[{"error": ...}]``."""
    body = b'[{\n  "error": {\n    "code": 429,\n    "status": "RESOURCE_EXHAUSTED"\n  }\n}\n]'
    assert decode(body) == [{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}]


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": {"code": 500}}',  # not an array
        b"data: [1]",
        b"[{} {}]",  # missing comma
        b"[{}x{}]",  # garbage between elements
        b"[{},]",  # trailing comma
        b"[,{}]",
        b"[{},,{}]",
        b"[{}]]",  # anything after the closing bracket
        b"[{}] x",
        b"[] []",
        b'[{"a":}]',  # an element that is not JSON
        b"[{]}]",
        b"[tru]",
        b"[-]",
        b"[+1]",
        b"['a']",
    ],
)
def test_input_that_is_not_an_array_of_json_raises(body: bytes) -> None:
    """Bytes that are not a JSON array raise MalformedFrame (a WireError and ValueError)."""
    with pytest.raises(MalformedFrame):
        decode(body)
    with pytest.raises(MalformedFrame):
        decode(*(body[i : i + 1] for i in range(len(body))))


def test_an_error_keeps_the_elements_completed_before_it() -> None:
    """Nothing good is lost: MalformedFrame.events holds the elements of the same read."""
    dec = JSONArrayDecoder()
    assert dec.feed(b'[{"n": 0},') == [{"n": 0}]
    with pytest.raises(MalformedFrame) as info:
        dec.feed(b'{"n": 1}, {"n": 2} oops {"n": 3}]')
    assert info.value.events == [{"n": 1}, {"n": 2}]
    assert "oops" in info.value.frame


def test_the_decoder_refuses_input_after_a_failure() -> None:
    """After an error the stream is not resynchronised: further reads raise."""
    dec = JSONArrayDecoder()
    with pytest.raises(MalformedFrame):
        dec.feed(b"[{},]")
    with pytest.raises(MalformedFrame):
        dec.feed(b"[{}]")


def test_finish_drops_an_unterminated_element() -> None:
    """finish(): an element cut off at the end of the body is dropped; done stays false."""
    dec = JSONArrayDecoder()
    assert dec.feed(b'[{"a": 1}, {"b": ') == [{"a": 1}]
    assert dec.finish() == []
    assert not dec.done


READ = 64 * 1024


def feed_counting(feed: Callable[[bytes], object], reads: Iterable[bytes], fed: list[int]) -> None:
    """Feed ``reads`` one by one, recording each read's size in ``fed``."""
    for read in reads:
        fed.append(len(read))
        feed(read)


def test_an_endless_element_raises_early_with_bounded_memory() -> None:
    """A 10 MiB element fed in 64 KiB reads raises FrameTooLarge near the 1 MiB bound."""
    dec = JSONArrayDecoder()
    fed: list[int] = []
    tracemalloc.start()
    try:
        assert dec.feed(b'[{"a": 1}, {"x": "') == [{"a": 1}]
        with pytest.raises(FrameTooLarge) as info:
            feed_counting(dec.feed, (b"x" * READ for _ in range(160)), fed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.limit == DEFAULT_MAX_EVENT_BYTES
    assert sum(fed) <= DEFAULT_MAX_EVENT_BYTES + READ
    assert peak < 4 * 1024 * 1024
    with pytest.raises(MalformedFrame):
        dec.feed(b"{}]")


def test_an_element_over_the_bound_in_one_read_raises_and_keeps_earlier_ones() -> None:
    """The bound holds for an element that arrives whole; elements before it are kept."""
    dec = JSONArrayDecoder(max_element_bytes=100)
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(b'[{"a": 1}, "' + b"x" * 200 + b'", {"b": 2}]')
    assert info.value.events == [{"a": 1}]


def test_an_element_at_the_bound_passes_and_one_byte_more_raises() -> None:
    """The bound is on the element's own bytes: ``max_element_bytes`` passes."""
    element = b'"' + b"x" * 14 + b'"'  # 16 bytes
    assert decode(b"[" + element + b",", element + b"]", decoder=JSONArrayDecoder(
        max_element_bytes=16)) == ["x" * 14] * 2  # fmt: skip
    bigger = b'"' + b"x" * 15 + b'"'  # 17 bytes
    with pytest.raises(FrameTooLarge):
        JSONArrayDecoder(max_element_bytes=16).feed(b"[" + bigger + b"]")
    with pytest.raises(FrameTooLarge):
        decode(b"[", bigger[:8], bigger[8:], decoder=JSONArrayDecoder(max_element_bytes=16))


def test_an_element_in_small_reads_is_not_copied_on_every_read() -> None:
    """Linear time: an element split over many reads is joined once, not re-copied per read."""
    dec = JSONArrayDecoder(max_element_bytes=4 * 1024 * 1024)
    chunk = b'{"k": "v", "s": "\\"[x]\\\\"}, ' * 8
    reads = 2 * 1024 * 1024 // len(chunk)
    worst = 0
    tracemalloc.start()
    try:
        dec.feed(b"[[")
        for _ in range(reads):
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            assert dec.feed(chunk) == []
            worst = max(worst, tracemalloc.get_traced_memory()[1] - before)
        (element,) = dec.feed(b"0]]")
    finally:
        tracemalloc.stop()
    assert len(element) == reads * 8 + 1
    assert worst < 64 * 1024  # a re-copy of the buffered element would be up to 2 MiB


def test_many_elements_in_one_read_are_not_re_sliced() -> None:
    """Linear time: a read holding many elements is walked by offset, not copied per element."""
    element = b'{"a": 1' + b" " * 4000 + b"}"
    body = b"[" + b",".join([element] * 1024) + b"]"  # 4 MiB that parse to 1024 small dicts
    dec = JSONArrayDecoder()
    tracemalloc.start()
    try:
        out = dec.feed(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out == [{"a": 1}] * 1024
    assert peak < len(body) // 4  # one copy of what is left, per element, would reach 4 MiB


# --- property: any array of objects, any whitespace, any split ----------------------------

_WS = ["", "", "", " ", "  ", "\n", "\r\n", "\t", "\n  ", " \r\n\t "]
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_objects = st.dictionaries(st.text(max_size=6), _values, max_size=5)


def _dump(value: Any, rng: random.Random) -> str:
    """Serialize ``value`` with random whitespace between tokens and random string escaping."""

    def ws() -> str:
        return rng.choice(_WS)

    if isinstance(value, dict):
        items = [
            f"{ws()}{_dump(k, rng)}{ws()}:{ws()}{_dump(v, rng)}{ws()}" for k, v in value.items()
        ]
        return "{" + ",".join(items) + ws() + "}"
    if isinstance(value, list):
        return "[" + ",".join(f"{ws()}{_dump(v, rng)}{ws()}" for v in value) + ws() + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=rng.random() < 0.5)
    return json.dumps(value)


@settings(max_examples=400, deadline=None)
@given(
    elements=st.lists(_objects, max_size=6),
    rng=st.randoms(use_true_random=False),
    cuts=st.lists(st.integers(0, 100_000), max_size=8),
)
def test_any_array_of_objects_with_any_whitespace_and_split(
    elements: list[dict[str, Any]], rng: random.Random, cuts: list[int]
) -> None:
    """Any list of JSON objects, written with arbitrary whitespace and split anywhere, decodes
    to exactly ``orjson.loads`` of each element's text; ``done`` is set at the end."""
    texts = [_dump(e, rng) for e in elements]
    ws = [rng.choice(_WS) for _ in range(2 * len(texts) + 3)]
    body = ws[0] + "[" + ws[1]
    body += ",".join(f"{ws[2 + 2 * i]}{t}{ws[3 + 2 * i]}" for i, t in enumerate(texts))
    body += "]" + ws[-1]
    raw = body.encode()
    points = sorted({c % (len(raw) + 1) for c in cuts})
    reads = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    dec = JSONArrayDecoder()
    assert decode(*reads, decoder=dec) == [orjson.loads(t) for t in texts]
    assert dec.done


def test_max_element_bytes_must_be_positive() -> None:
    """A bound of zero or less is a configuration mistake, refused at once."""
    with pytest.raises(ValueError, match="positive"):
        JSONArrayDecoder(max_element_bytes=0)

"""rxllm.wire.NDJSONDecoder: Ollama's newline-delimited JSON (wire-formats.md section 5)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from rxllm.errors import FrameTooLarge, MalformedFrame
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES, NDJSONDecoder

# An Ollama /api/chat stream: one object per line, the last with done: true (WF 5).
OLLAMA = (
    b'{"model":"llama3.2","created_at":"2024-09-17T10:00:00Z","message":{"role":"assistant",'
    b'"content":"Caf\xc3\xa9"},"done":false}\n'
    b'{"model":"llama3.2","created_at":"2024-09-17T10:00:01Z","message":{"role":"assistant",'
    b'"content":" \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80"},"done":false}\r\n'
    b"\n"
    b"   \n"
    b"\r\n"
    b'{"model":"llama3.2","created_at":"2024-09-17T10:00:02Z","message":{"role":"assistant",'
    b'"content":"\\n{}\\"[]"},"done":true,"done_reason":"stop","eval_count":3,'
    b'"eval_duration":1200000}\n'
)
OLLAMA_TEXTS = ["Café", " 中文 😀", '\n{}"[]']


def decode(*reads: bytes, decoder: NDJSONDecoder | None = None) -> list[Any]:
    """Feed ``reads`` one by one, then finish; return every value."""
    dec = decoder if decoder is not None else NDJSONDecoder()
    out: list[Any] = []
    for read in reads:
        out.extend(dec.feed(read))
    out.extend(dec.finish())
    return out


def texts(values: list[Any]) -> list[str]:
    """The message text of each Ollama chat object."""
    return [v["message"]["content"] for v in values]


def test_an_ollama_stream_decodes_in_one_read() -> None:
    """WF 5: one JSON object per line; CRLF and blank lines are tolerated."""
    values = decode(OLLAMA)
    assert texts(values) == OLLAMA_TEXTS
    assert values[-1]["done"] is True


def test_every_two_read_split_gives_the_same_values() -> None:
    """STYLE 8: the stream split into two reads at every byte offset decodes the same."""
    for i in range(len(OLLAMA) + 1):
        assert texts(decode(OLLAMA[:i], OLLAMA[i:])) == OLLAMA_TEXTS, i


def test_one_byte_per_read_gives_the_same_values() -> None:
    """STYLE 8: the stream fed one byte per read decodes the same."""
    assert texts(decode(*(OLLAMA[i : i + 1] for i in range(len(OLLAMA))))) == OLLAMA_TEXTS


def test_values_come_as_soon_as_their_line_ends() -> None:
    """A value is returned by the read that brings its LF, not later."""
    dec = NDJSONDecoder()
    assert dec.feed(b'{"a": 1}') == []
    assert dec.pending
    assert dec.feed(b"\r") == []
    assert dec.feed(b'\n{"b"') == [{"a": 1}]
    assert dec.feed(b": 2}\n") == [{"b": 2}]
    assert not dec.pending


def test_blank_lines_are_skipped() -> None:
    """Blank or whitespace-only lines (LF, CRLF, spaces, tabs) carry no value."""
    assert decode(b"\n\r\n \t \n1\n\n2\n") == [1, 2]
    dec = NDJSONDecoder()
    assert decode(b"  \r", decoder=dec) == []


def test_an_unterminated_last_line_is_parsed_by_finish() -> None:
    """NDJSON writers may omit the final newline: finish() parses the last line."""
    dec = NDJSONDecoder()
    assert dec.feed(b'{"a": 1}\n{"done": ') == [{"a": 1}]
    assert dec.feed(b"true}") == []
    assert dec.pending
    assert dec.finish() == [{"done": True}]
    assert (dec.pending, dec.finish()) == (False, [])


def test_an_unterminated_bad_last_line_raises_at_finish() -> None:
    """A final line that is not JSON is reported at finish(), not silently dropped."""
    dec = NDJSONDecoder()
    assert dec.feed(b'{"a": 1}\n{"trunc') == [{"a": 1}]
    with pytest.raises(MalformedFrame) as info:
        dec.finish()
    assert info.value.frame == '{"trunc'


def test_a_non_json_line_raises_and_keeps_the_good_values_before_it() -> None:
    """Bad input loses nothing good: MalformedFrame.events holds the values before it."""
    dec = NDJSONDecoder()
    assert dec.feed(b'{"a": 0}\n') == [{"a": 0}]
    with pytest.raises(MalformedFrame) as info:
        dec.feed(b'{"a": 1}\n[2]\nnot json\n{"a": 3}\n')
    assert info.value.events == [{"a": 1}, [2]]
    assert info.value.frame == "not json"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "line",
    [b'{"a": 1}{"b": 2}', b'{"a": 1', b"\xef\xbb\xbf{}", b"{'a': 1}", b'{"a": 1}\r{"b": 2}'],
)
def test_lines_that_are_not_one_json_value_raise(line: bytes) -> None:
    """A line must hold exactly one JSON value (no BOM, no two values, no lone CR split)."""
    with pytest.raises(MalformedFrame):
        NDJSONDecoder().feed(line + b"\n")


def test_the_decoder_refuses_input_after_a_failure() -> None:
    """After an error the stream is not resynchronised: further reads raise, finish is empty."""
    dec = NDJSONDecoder()
    with pytest.raises(MalformedFrame):
        dec.feed(b"oops\n")
    with pytest.raises(MalformedFrame):
        dec.feed(b"{}\n")
    assert dec.finish() == []


READ = 64 * 1024


def feed_counting(feed: Callable[[bytes], object], reads: Iterable[bytes], fed: list[int]) -> None:
    """Feed ``reads`` one by one, recording each read's size in ``fed``."""
    for read in reads:
        fed.append(len(read))
        feed(read)


def test_an_endless_line_raises_early_with_bounded_memory() -> None:
    """A 10 MiB line fed in 64 KiB reads raises FrameTooLarge near the 1 MiB bound."""
    dec = NDJSONDecoder()
    fed: list[int] = []
    tracemalloc.start()
    try:
        assert dec.feed(b'{"a": 1}\n{"x": "') == [{"a": 1}]
        with pytest.raises(FrameTooLarge) as info:
            feed_counting(dec.feed, (b"x" * READ for _ in range(160)), fed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.limit == DEFAULT_MAX_EVENT_BYTES
    assert sum(fed) <= DEFAULT_MAX_EVENT_BYTES + READ
    assert peak < 4 * 1024 * 1024
    assert not dec.pending
    with pytest.raises(MalformedFrame):
        dec.feed(b"{}\n")


def test_a_long_line_in_one_read_raises_and_keeps_earlier_values() -> None:
    """The bound holds for a line that arrives whole; values before it are kept."""
    dec = NDJSONDecoder(max_line_bytes=100)
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(b"1\n2\n" + b"[" + b"0," * 100 + b"0]\n3\n")
    assert info.value.events == [1, 2]


def test_a_line_at_the_bound_passes_and_one_byte_more_raises() -> None:
    """The bound is on the line's bytes without its LF: ``max_line_bytes`` passes."""
    line = b'"' + b"x" * 14 + b'"'  # 16 bytes
    assert decode(line + b"\n", line, decoder=NDJSONDecoder(max_line_bytes=16)) == ["x" * 14] * 2
    with pytest.raises(FrameTooLarge):
        NDJSONDecoder(max_line_bytes=16).feed(b" " + line + b"\n")
    with pytest.raises(FrameTooLarge):
        NDJSONDecoder(max_line_bytes=16).feed(b" " + line)


def test_a_long_line_in_small_reads_is_not_copied_on_every_read() -> None:
    """Linear time: a line split over many reads is joined once, not re-copied per read."""
    dec = NDJSONDecoder(max_line_bytes=4 * 1024 * 1024)
    chunk = b"y" * 256
    line_reads = 2 * 1024 * 1024 // len(chunk)
    worst = 0
    tracemalloc.start()
    try:
        dec.feed(b'"')
        for _ in range(line_reads):
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            dec.feed(chunk)
            worst = max(worst, tracemalloc.get_traced_memory()[1] - before)
        assert dec.feed(b'"\n') == ["y" * (len(chunk) * line_reads)]
    finally:
        tracemalloc.stop()
    assert worst < 64 * 1024  # a re-copy of the buffered line would be up to 2 MiB


def test_max_line_bytes_must_be_positive() -> None:
    """A bound of zero or less is a configuration mistake, refused at once."""
    with pytest.raises(ValueError, match="positive"):
        NDJSONDecoder(max_line_bytes=0)

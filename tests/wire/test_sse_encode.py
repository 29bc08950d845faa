"""rxllm.wire.encode: any text round-trips through the Decoder and no payload forges a field.

The rules are wire-formats.md section 1 ("Lines", "Per-line rules", "Fields", "Dispatch").
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxllm.wire import Decoder, SSEEvent, encode

# Pieces that would break a naive encoder: line ends of every kind, lines that start with
# a space or a colon, field look-alikes, a blank line, NUL, a BOM, non-ASCII, Unicode line
# separators (which SSE does not treat as line ends).
_TRICKY = [
    "\r",
    "\n",
    "\r\n",
    "\n\r",
    "\n\n",
    " ",
    "  ",
    ":",
    ": comment",
    "data:",
    "data: x",
    "id:",
    "id: 1",
    "event:",
    "event: error",
    "retry: 1",
    "\x00",
    "\ufeff",
    "é",
    "中文",
    "😀",
    "\u2028",
    "\x85",
    "\t",
]
texts = st.lists(st.one_of(st.sampled_from(_TRICKY), st.text(max_size=12)), max_size=20).map(
    "".join
)
event_types = st.none() | st.text(max_size=10).filter(lambda s: "\r" not in s and "\n" not in s)
ids = st.none() | st.text(max_size=10).filter(lambda s: not any(c in s for c in "\r\n\x00"))


def normalized(text: str) -> str:
    """What an SSE decoder can receive of ``text``: CRLF and CR arrive as LF (WF 1 Lines)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def test_encode_writes_one_data_line_per_line() -> None:
    """encode: event, id and retry fields, then one data line per line, then a blank line."""
    assert encode("a\nb", event="e", id="1", retry=5) == (
        b"event: e\nid: 1\nretry: 5\ndata: a\ndata: b\n\n"
    )
    assert encode("") == b"data: \n\n"
    assert encode(" x") == b"data:  x\n\n"


@settings(max_examples=600, deadline=None)
@given(text=texts, event=event_types, id=ids, retry=st.none() | st.integers(0, 10**9))
def test_any_text_round_trips_and_no_field_is_forged(
    text: str, event: str | None, id: str | None, retry: int | None
) -> None:
    """WF 1: decoding encode(text) gives back text (line ends as LF) as ONE event whose type
    and id are exactly what encode was given, whatever the text contains."""
    dec = Decoder()
    assert dec.feed(encode("before", id="prior")) == [SSEEvent("message", "before", "prior")]
    body = encode(text, event=event, id=id, retry=retry)
    expected_id = "prior" if id is None else id
    assert dec.feed(body) == [SSEEvent(event or "message", normalized(text), expected_id)]
    assert dec.last_event_id == expected_id
    assert dec.retry == retry
    assert not dec.pending


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(texts, min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_encoded_events_in_a_row_round_trip_at_any_split(texts: list[str], cuts: list[int]) -> None:
    """WF 1: consecutive encoded events, split anywhere, decode to the same events in order."""
    body = b"".join(encode(t) for t in texts)
    points = sorted({c % (len(body) + 1) for c in cuts})
    reads = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    dec = Decoder()
    got = [e for read in reads for e in dec.feed(read)]
    assert got == [SSEEvent("message", normalized(t), "") for t in texts]


def test_a_hostile_payload_cannot_end_the_event_or_set_fields() -> None:
    """WF 1 Per-line rules: a payload with blank lines and field look-alikes stays data."""
    payload = "x\n\nid: evil\nevent: evil\nretry: 1\r\n\r\ndata: injected\r: c"
    dec = Decoder()
    got = dec.feed(encode(payload, event="message", id="good"))
    assert got == [SSEEvent("message", normalized(payload), "good")]
    assert dec.retry is None


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "\n", "\r"])
def test_an_event_type_with_a_line_break_is_refused(bad: str) -> None:
    """WF 1 Grammar: a field value cannot hold CR or LF, so encode refuses such a type."""
    with pytest.raises(ValueError, match="event type"):
        encode("x", event=bad)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "a\x00b", "\x00"])
def test_an_id_with_a_line_break_or_nul_is_refused(bad: str) -> None:
    """WF 1 Fields id: an id cannot hold CR or LF, and one with NUL would be ignored."""
    with pytest.raises(ValueError, match="id"):
        encode("x", id=bad)


def test_a_negative_retry_is_refused() -> None:
    """WF 1 Fields retry: only ASCII digits are a valid retry, so a negative value is refused."""
    with pytest.raises(ValueError, match="retry"):
        encode("x", retry=-1)

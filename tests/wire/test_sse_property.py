"""Property tests: any chunking of any stream decodes like the naive reference decoder."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rxllm.wire import Decoder

from .sse_reference import reference_decode

_pieces = st.sampled_from(
    [
        b"data: ",
        b"data:",
        b"data",
        b"event: ",
        b"event:tick",
        b"id: ",
        b"id:7",
        b"id: a\x00b",
        b"retry: 1500",
        b"retry: 15x",
        b": comment",
        b":",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"\n\ndata: ",
        b'{"a": 1}',
        b" ",
        b"  ",
        b"x",
        b"\xef\xbb\xbf",
        b"\xe2\x82\xac",  # euro sign
        b"\xe2\x82",  # truncated sequence
        b"\xff",
        b"[DONE]",
        b"\t",
    ]
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    body = b"".join(draw(st.lists(_pieces, max_size=40)))
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
    cuts = sorted(set(draw(st.lists(st.integers(0, max(len(body), 1)), max_size=12))))
    return body, cuts


def _split(body: bytes, cuts: list[int]) -> list[bytes]:
    out, prev = [], 0
    for c in [*cuts, len(body)]:
        out.append(body[prev:c])
        prev = c
    return out


@settings(max_examples=1500, deadline=None)
@given(streams())
def test_any_chunking_matches_reference(case: tuple[bytes, list[int]]) -> None:
    """feed() over any split of any stream yields exactly the reference decoder's events."""
    body, cuts = case
    expected, last_id, retry = reference_decode(body)
    dec = Decoder()
    got = []
    for chunk in _split(body, cuts):
        got.extend((e.event, e.data, e.id) for e in dec.feed(chunk))
    assert got == expected
    assert dec.last_event_id == last_id
    assert dec.retry == retry


@settings(max_examples=1500, deadline=None)
@given(streams())
def test_feed_raw_agrees_with_feed(case: tuple[bytes, list[int]]) -> None:
    """feed_raw() gives the same events as feed(), default-type data as undecoded bytes."""
    body, cuts = case
    expected, _, _ = reference_decode(body)
    dec = Decoder()
    got = []
    for chunk in _split(body, cuts):
        for item in dec.feed_raw(chunk):
            if isinstance(item, bytes):
                got.append(("message", item.decode("utf-8", "replace")))
            else:
                got.append((item.event, item.data))
    assert got == [(t, d) for t, d, _ in expected]

"""JsonStream: incremental, bounded JSON assembly over any chunking of model text."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxllm.errors import (
    DepthExceeded,
    IncompleteJson,
    InvalidJson,
    ItemTooLarge,
    JsonAssemblyError,
    NumberTooLong,
    StringTooLong,
)
from rxllm.wire import JsonStream, PartialItem

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))
    | st.sampled_from('{}[]",:\\/'),
    max_size=12,
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | _text
)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_text, children, max_size=5),
    max_leaves=25,
)


def _chunks(text: str, cuts: list[int]) -> list[str]:
    out, prev = [], 0
    for c in [*sorted(set(cuts)), len(text)]:
        out.append(text[prev:c])
        prev = c
    return out


def _run(pieces: list[str], prefix: str, **kw: Any) -> list[Any]:
    stream = JsonStream(prefix, **kw)
    out: list[Any] = []
    for piece in pieces:
        stream.feed(piece, out)
    stream.finish(out)
    return [x for x in out if not isinstance(x, PartialItem)]


def _feed_all(stream: JsonStream, pieces: list[str], out: list[Any]) -> None:
    for piece in pieces:
        stream.feed(piece, out)


def _expected(doc: Any, prefix: str) -> list[Any]:
    """What ijson's items() yields at ``prefix``, computed from the parsed document."""
    parts = prefix.split(".") if prefix else []
    found: list[Any] = []

    def walk(value: Any, depth: int) -> None:
        if depth == len(parts):
            found.append(value)
            return
        part = parts[depth]
        if part == "item" and isinstance(value, list):
            for v in value:
                walk(v, depth + 1)
        elif isinstance(value, dict) and part in value:
            walk(value[part], depth + 1)

    walk(doc, 0)
    return found


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_json, max_size=6),
    st.lists(st.integers(0, 2000), max_size=40),
    st.booleans(),
    st.sampled_from([0, 1, 2]),
    st.booleans(),
)
def test_any_chunking_matches_orjson(
    values: list[Any], cuts: list[int], fence: bool, indent: int, partial: bool
) -> None:
    """Items equal orjson's parse of the whole document for any split, prose and fences."""
    doc = {"people": values, "note": 'x{["]}'}
    opts = orjson.OPT_INDENT_2 if indent == 2 else 0
    body = orjson.dumps(doc, option=opts).decode()
    text = f"Sure! ```json\n{body}\n```\nHope it helps [see above]." if fence else body
    expected = orjson.loads(body)["people"]
    assert _run(_chunks(text, cuts), "people.item", partial=partial) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(_json, min_size=1, max_size=4), st.lists(st.integers(0, 500), max_size=30))
def test_whole_documents_and_single_characters(values: list[Any], cuts: list[int]) -> None:
    """Prefix "" yields each top-level document; one character per delta works too."""
    docs = [orjson.dumps({"v": v}).decode() for v in values]
    text = "first: " + " and then ".join(docs) + " done."
    assert _run(_chunks(text, cuts), "") == orjson.loads(f"[{','.join(docs)}]")
    assert _run(list(text), "v.item") == [x for v in values for x in _expected({"v": v}, "v.item")]


def test_numbers_are_int_and_float() -> None:
    """Numbers come out as int and float, never Decimal."""
    (item,) = _run(['[{"a": 1, "b": 2.5, "c": -3e2, "d": 9223372036854775807}]'], "item")
    assert item == {"a": 1, "b": 2.5, "c": -300.0, "d": 9223372036854775807}
    assert [type(v) for v in item.values()] == [int, float, float, int]


def test_integer_beyond_64_bits_is_invalid() -> None:
    """yajl reads integers as signed 64-bit: a larger one is InvalidJson, never a crash."""
    with pytest.raises(InvalidJson, match="overflow"):
        _run(["[9223372036854775808]"], "item")


def test_scalar_item_completes_at_delimiter() -> None:
    """A number item is emitted when the following comma arrives, a string at its quote."""
    stream = JsonStream("item")
    assert stream.feed("[12") == []
    assert stream.feed(', "ab') == [12]
    assert stream.feed('c"') == ["abc"]


def test_item_emitted_at_its_closing_bracket() -> None:
    """An object item is returned by the very feed that carries its closing brace."""
    stream = JsonStream("people.item")
    assert stream.feed('{"people": [{"n": 1}, {"n"') == [{"n": 1}]
    assert stream.feed(": 2") == []
    assert stream.feed("}") == [{"n": 2}]


def test_prose_bracket_without_json_is_skipped() -> None:
    """A bracket in prose that is not followed by JSON does not start a document."""
    assert _run(["See [the list] below {ok}: ", '["a", "b"]'], "item") == ["a", "b"]


def test_strict_rejects_prose_and_trailing_text() -> None:
    """strict=True accepts exactly one document."""
    with pytest.raises(InvalidJson):
        _run(['x {"a": 1}'], "", strict=True)
    with pytest.raises(InvalidJson):
        _run(['{"a": 1} x'], "", strict=True)
    with pytest.raises(InvalidJson):
        _run(["   "], "", strict=True)
    assert _run([' {"a": 1} '], "", strict=True) == [{"a": 1}]


def test_invalid_json_keeps_earlier_items() -> None:
    """Malformed JSON raises InvalidJson after the items completed before it."""
    stream = JsonStream("item")
    out: list[Any] = []
    with pytest.raises(InvalidJson):
        stream.feed('[{"a": 1}, {"b": tru}]', out)
    assert out == [{"a": 1}]
    with pytest.raises(InvalidJson):
        stream.feed("more")


def test_garbage_after_batched_text_is_invalid() -> None:
    """Bad JSON inside a document is caught even when the text was fed ahead of the scan."""
    stream = JsonStream("item")
    out: list[Any] = []
    with pytest.raises(InvalidJson):
        _feed_all(stream, list('[1, 2, 3, {"a": 1 "b"}]'), out)
    assert out == [1, 2, 3]


def test_incomplete_names_last_complete_value() -> None:
    """The text ending inside a document raises IncompleteJson with the last complete path."""
    stream = JsonStream("people.item", partial=True)
    out: list[Any] = []
    stream.feed('{"people": [{"name": "a", "age": 3}, {"name": "b", "ag', out)
    with pytest.raises(IncompleteJson) as info:
        stream.finish(out)
    assert info.value.path == "people.item.name"
    assert stream.current == {"name": "b"}
    fast = JsonStream("people.item")
    fast.feed('{"people": [{"name": "a"}, {"name": "b", "ag')
    with pytest.raises(IncompleteJson) as info2:
        fast.finish()
    assert info2.value.path == "people.item"


def test_partial_reports_each_completed_property() -> None:
    """partial=True reports the item start and each completed top-level property."""
    stream = JsonStream("item", partial=True)
    out = stream.feed('[{"a": 1, "b": [2, 3], "c"')
    marks = [(m.index, m.key) for m in out if isinstance(m, PartialItem)]
    assert marks == [(0, None), (0, "a"), (0, "b")]


@pytest.mark.parametrize("size", [1, 7, 4096, 200_000])
def test_depth_bomb(size: int) -> None:
    """100,000 opening brackets end in DepthExceeded with bounded memory."""
    text = "[" * 100_000
    tracemalloc.start()
    try:
        stream = JsonStream("item")
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        with pytest.raises(DepthExceeded) as info:
            _feed_all(stream, pieces, [])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.offset == 64
    assert peak < 50 * 1024 * 1024


@pytest.mark.parametrize("size", [1, 64, 10_000])
def test_long_number(size: int) -> None:
    """A 5,000-digit integer ends in NumberTooLong before ijson sees it."""
    text = '{"n": [1, ' + "9" * 5000 + "]}"
    stream = JsonStream("n.item")
    out: list[Any] = []
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    with pytest.raises(NumberTooLong) as info:
        _feed_all(stream, pieces, out)
    assert out == [1]
    assert info.value.path == "n.item"


def test_long_number_does_not_crash_the_process() -> None:
    """The 5,000-digit case in a fresh interpreter exits normally with the typed error."""
    code = (
        "from rxllm.wire import JsonStream\n"
        "from rxllm.errors import NumberTooLong\n"
        "s = JsonStream('item')\n"
        "try:\n"
        "    s.feed('[' + '7' * 5000 + ']')\n"
        "    s.finish()\n"
        "except NumberTooLong:\n"
        "    print('typed')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "typed"


@pytest.mark.parametrize("size", [65_536, 20 * 1024 * 1024])
def test_huge_string(size: int) -> None:
    """A 20 MB string ends in StringTooLong with under 50 MB of extra memory."""
    body = "x" * (20 * 1024 * 1024)
    tracemalloc.start()
    try:
        stream = JsonStream("item")
        out: list[Any] = []
        pieces = ['["ok", "'] + [body[i : i + size] for i in range(0, len(body), size)]
        with pytest.raises(StringTooLong):
            _feed_all(stream, pieces, out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out == ["ok"]
    assert peak - len(body) < 50 * 1024 * 1024


def test_item_too_large() -> None:
    """An item over max_item_bytes raises ItemTooLarge; earlier items are kept."""
    stream = JsonStream("item", max_item_bytes=100)
    out: list[Any] = []
    with pytest.raises(ItemTooLarge):
        _feed_all(stream, ['[{"a": 1}, [' + "1, " * 40, "1, " * 40], out)
    assert out == [{"a": 1}]


def test_escaped_keys_and_astral_text() -> None:
    """Escapes in keys and astral characters split across deltas come out intact."""
    doc = {'k"e\\y\u00e9': ['\U0001f600 \\" ]}', {"x\n": "\u2028"}]}
    text = orjson.dumps(doc).decode()
    assert _run(list(text), "") == [doc]
    assert _run(list(text), 'k"e\\yé.item') == doc['k"e\\yé']


def test_errors_are_sticky() -> None:
    """After an error every call raises the same error."""
    stream = JsonStream("item", max_depth=2)
    with pytest.raises(DepthExceeded) as info:
        stream.feed("[[[")
    with pytest.raises(JsonAssemblyError) as again:
        stream.finish()
    assert again.value is info.value


def test_bad_bounds_rejected() -> None:
    """Bounds must be positive integers."""
    with pytest.raises(ValueError, match="max_depth"):
        JsonStream(max_depth=0)


def test_tool_arguments_go_through_the_bounded_assembler() -> None:
    """parse_arguments keeps its contract and turns bound breaches into MalformedFrame."""
    from rxllm.errors import FrameTooLarge, MalformedFrame
    from rxllm.providers._tools import parse_arguments

    assert parse_arguments('{"a": [1, {"b": 2.5}]}') == {"a": [1, {"b": 2.5}]}
    assert parse_arguments("  ") == {}
    for bad in ("[1]", '{"a": 1} x', "x", '{"a": '):
        with pytest.raises(MalformedFrame):
            parse_arguments(bad, name="f")
    with pytest.raises(MalformedFrame) as info:
        parse_arguments("[" * 100_000)
    assert isinstance(info.value.__cause__, DepthExceeded)
    with pytest.raises(MalformedFrame) as info:
        parse_arguments('{"n": ' + "9" * 5000 + "}")
    assert isinstance(info.value.__cause__, NumberTooLong)
    with pytest.raises(FrameTooLarge):
        parse_arguments('{"a": "' + "x" * 100 + '"}', limit=50)

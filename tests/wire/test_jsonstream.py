"""JsonStream: incremental, bounded JSON assembly over any chunking of model text."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from typing import Any

import ijson
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


# --- batching, feeding ahead, resynchronising: the bounds and the timing still hold ------


class _Recorder:
    """Stands in for ijson's backend and records every byte the parser is given."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sent: list[list[bytes]] = []

    def _wrap(self, coro: Any) -> Any:
        log: list[bytes] = []
        self.sent.append(log)

        class Coro:
            def send(self, data: bytes) -> Any:
                log.append(bytes(data))
                return coro.send(data)

            def close(self) -> Any:
                return coro.close()

        return Coro()

    def items_coro(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrap(self.real.items_coro(*args, **kwargs))

    def parse_coro(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrap(self.real.parse_coro(*args, **kwargs))


def _violations(docs: list[list[bytes]], depth: int, number: int, string: int) -> list[str]:
    """Bounds broken in what the parser was given (one document per coroutine)."""
    found = []
    for log in docs:
        text = b"".join(log).decode("utf-8", "surrogatepass")
        level, i, n = 0, 0, len(text)
        while i < n:
            c = text[i]
            if c == '"':
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                # (a string cut by StringTooLong may reach the parser one character long)
                if min(j, n) - i - 1 > string + (j >= n):
                    found.append(f"string of {min(j, n) - i - 1}")
                i = j + 1
            elif c in "{[":
                level += 1
                if level > depth:
                    found.append(f"depth {level}")
                i += 1
            elif c in "}]":
                level -= 1
                i += 1
                if level <= 0:
                    break  # past the document: the parser's own business
            elif c in "0123456789+-.eE":
                j = i
                while j < n and text[j] in "0123456789+-.eE":
                    j += 1
                if j - i > number:
                    found.append(f"number of {j - i}")
                i = j
            else:
                i += 1
    return found


def _feed_recorded(
    pieces: list[str], prefix: str, **kw: Any
) -> tuple[list[Any], JsonAssemblyError | None, list[list[bytes]]]:
    from unittest import mock

    from rxllm.wire import _jsonstream

    recorder = _Recorder(_jsonstream._BACKEND)
    with mock.patch.object(_jsonstream, "_BACKEND", recorder):
        stream = JsonStream(prefix, **kw)
        out: list[Any] = []
        error = None
        try:
            for piece in pieces:
                stream.feed(piece, out)
            stream.finish(out)
        except JsonAssemblyError as exc:
            error = exc
    return [x for x in out if not isinstance(x, PartialItem)], error, recorder.sent


_sizes = st.lists(st.sampled_from([1, 2, 3, 4, 5, 8, 31, 32, 33, 64, 100, 250]), min_size=1)


def _cut(text: str, sizes: list[int]) -> list[str]:
    pieces, i, k = [], 0, 0
    while i < len(text):
        size = sizes[k % len(sizes)]
        pieces.append(text[i : i + size])
        i += size
        k += 1
    return pieces


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_json, max_size=8),
    _sizes,
    st.integers(2, 8),
    st.integers(3, 30),
    st.integers(3, 30),
    st.sampled_from(["people.item", "item", "", "people.item.item"]),
    st.booleans(),
)
def test_parser_never_sees_a_broken_bound(
    values: list[Any],
    sizes: list[int],
    depth: int,
    number: int,
    string: int,
    prefix: str,
    partial: bool,
) -> None:
    """Whatever the chunking, no byte that breaks a bound ever reaches ijson."""
    doc = {"people": values, "n": [10**12, [[[["x" * 40]]]]]}
    text = "Sure: " + orjson.dumps(doc).decode() + " (done) " + "[" * 80
    kw = {"max_depth": depth, "max_number_length": number, "max_string_length": string}
    _, _, sent = _feed_recorded(_cut(text, sizes), prefix, partial=partial, **kw)
    assert _violations(sent, depth, number, string) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(_json, max_size=8), _sizes, st.booleans())
def test_container_items_come_with_the_piece_that_closes_them(
    values: list[Any], sizes: list[int], indent: bool
) -> None:
    """Each object or array item is returned by the very feed holding its last bracket."""
    people = [v if isinstance(v, dict | list) else {"v": v} for v in values]
    opts = orjson.OPT_INDENT_2 if indent else 0
    text = orjson.dumps({"people": people, "note": 'x{["]}'}, option=opts).decode()
    # where each item ends: ijson fed one character at a time says so
    ends: list[int] = []
    got: list[Any] = []
    coro = ijson.get_backend("yajl2_c").items_coro(_ListSink(got), "people.item", use_float=True)
    for i, char in enumerate(text.encode()):
        coro.send(bytes([char]))
        ends.extend([i] * (len(got) - len(ends)))
    # the text is ASCII only in its structure; map byte offsets back to characters
    offsets = [len(text.encode()[: e + 1].decode("utf-8", "ignore")) - 1 for e in ends]
    stream = JsonStream("people.item")
    position = 0
    emitted: list[tuple[int, int]] = []  # (first character, last character) of each feed
    for piece in _cut(text, sizes):
        got_now = stream.feed(piece)
        emitted.extend([(position, position + len(piece) - 1)] * len(got_now))
        position += len(piece)
    stream.finish()
    assert len(emitted) == len(people)
    for (first, last), end in zip(emitted, offsets, strict=True):
        assert first <= end <= last


class _ListSink:
    def __init__(self, items: list[Any]) -> None:
        self.send = items.append


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_json, max_size=6),
    _sizes,
    st.sampled_from(["people.item", "item", ""]),
    st.integers(2, 10),
    st.integers(3, 40),
)
def test_push_handler_matches_feed(
    values: list[Any], sizes: list[int], prefix: str, depth: int, string: int
) -> None:
    """push_handler gives the values and the error feed gives, piece for piece."""
    text = "ok: " + orjson.dumps({"people": values}).decode() + " [" * 12
    pieces = _cut(text, sizes)
    kw = {"max_depth": depth, "max_string_length": string}
    by_feed: list[Any] = []
    feed_error: Exception | None = None
    stream = JsonStream(prefix, **kw)
    try:
        for piece in pieces:
            stream.feed(piece, by_feed)
    except JsonAssemblyError as exc:
        feed_error = exc
    by_push: list[Any] = []
    out: list[Any] = []
    errors: list[JsonAssemblyError] = []

    def values_ready() -> None:
        by_push.extend(out)
        out.clear()

    push = JsonStream(prefix, **kw).push_handler(out, values_ready, errors.append)
    for piece in pieces:
        push(piece)
        if errors:
            break
    push(12345)  # not text: ignored
    assert by_push == by_feed
    assert type(errors[0] if errors else None) is type(feed_error)
    if feed_error is not None:
        assert errors[0].offset == feed_error.offset  # type: ignore[attr-defined]


def test_escapes_count_toward_the_string_bound() -> None:
    """A string over max_string_length only through its escapes is StringTooLong, also
    inside an item, where the scanner skips whole strings."""
    string = '"' + "\\n" * 6 + '"'  # 12 characters of JSON text between the quotes
    for text in (f"[{string}]", f'[[{string}], {{"s": {string}}}]'):
        for pieces in ([text], list(text), _cut(text, [33])):
            with pytest.raises(StringTooLong):
                _run(pieces, "item", max_string_length=10)
        assert _run([text], "item", max_string_length=12)


@pytest.mark.parametrize("size", [3, 7, 40, 64])
def test_number_over_many_pieces_inside_an_item(size: int) -> None:
    """A number literal spread over many pieces is bounded before the parser sees it."""
    text = '{"people": [{"a": [1, ' + "7" * 150 + "]}]}"
    _, error, sent = _feed_recorded(_cut(text, [size]), "people.item")
    assert isinstance(error, NumberTooLong)
    assert _violations(sent, 64, 100, 1 << 20) == []


def test_lone_surrogate_escape_is_invalid_json() -> None:
    """A string holding half a surrogate pair is InvalidJson, not UnicodeDecodeError."""
    stream = JsonStream("item")
    stream.feed('[{"a": "\\ud83d')
    with pytest.raises(InvalidJson):
        stream.feed('x\\ude00"}]')


def test_digits_after_a_document_fed_ahead() -> None:
    """Prose made of digits right after a document, in long pieces, is just prose."""
    text = '{"people": [{"a": 1}, {"a": 2}]}\n' + "9" * 40 + " and then some more prose."
    assert _run(_cut(text, [33]), "people.item") == [{"a": 1}, {"a": 2}]


def test_empty_key_above_the_prefix() -> None:
    """ijson joins an empty key as nothing: such items still come at their delimiter."""
    stream = JsonStream("item")
    out = [stream.feed(c) for c in '{"": [1, 2, {"b": 3}]}']
    assert [i for i, got in enumerate(out) if got] == [7, 10, 19]  # the commas, the brace
    assert [x for got in out for x in got] == [1, 2, {"b": 3}]


def test_duplicate_keys_in_long_pieces() -> None:
    """A prefix array then an object with a key "item": long pieces agree with one piece."""
    text = '{"people": [{"a": 1}, {"a": [2]}], "people": {"item": {"b": 2}, "x": {"c": 3}}}'
    whole = _run([text], "people.item")
    assert whole == [{"a": 1}, {"a": [2]}, {"b": 2}]
    for size in (32, 33, 40, 64):
        assert _run(_cut(text, [size]), "people.item") == whole


def test_item_too_large_in_long_pieces() -> None:
    """max_item_bytes holds for items fed ahead of the scanner, too."""
    small = [{"n": i, "s": "x" * 10} for i in range(20)]
    big = {"n": 99, "s": "y" * 400}
    text = orjson.dumps({"people": [*small, big, *small]}).decode()
    for size in (4, 32, 64, 200):
        items, error, _ = _feed_recorded(_cut(text, [size]), "people.item", max_item_bytes=300)
        assert isinstance(error, ItemTooLarge)
        assert items == small


def test_documents_in_long_pieces() -> None:
    """Whole documents (prefix "") between prose come out alike in long pieces."""
    for docs in (
        [{"a": [i, {"b": "x}" * i}]} for i in range(6)],
        # one brace each: the piece that ends one is known to end it exactly there
        [{f"k{k}": ["x" * 30] for k in range(6)} | {"n": [i]} for i in range(6)],
    ):
        text = " and ".join("doc: " + orjson.dumps(d).decode() for d in docs) + " end [ok]."
        for size in (1, 4, 32, 40, 64, len(text)):
            assert _run(_cut(text, [size]), "") == docs
        one = orjson.dumps(docs[-1]).decode()  # the text ends with the document
        for tail in ("", "\n```"):
            for size in (4, 32, 33, 64):
                assert _run(_cut(one + tail, [size]), "") == docs[-1:]


def test_bad_json_then_the_end_is_invalid() -> None:
    """Malformed JSON in text that completed nothing is InvalidJson at the end, not
    IncompleteJson, however the text was cut."""
    text = '{"people": [{"a": 1}, {"b": [1 2], "c": "d'
    for size in (1, 3, 4, 7, 64):
        stream = JsonStream("people.item")
        out: list[Any] = []
        with pytest.raises(InvalidJson):  # noqa: PT012 - either call may notice it
            _feed_all(stream, _cut(text, [size]), out)
            stream.finish(out)
        assert out == [{"a": 1}]

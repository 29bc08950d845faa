"""json_items: items under a prefix from text deltas, as an Rx operator."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm import Finished, ReasoningDelta, Started, TextDelta, Usage, replay
from rxllm.errors import DepthExceeded, IncompleteJson, InvalidJson
from rxllm.operators import json_items


def _collect(source: Observable[Any]) -> tuple[list[Any], Exception | None, bool]:
    items: list[Any] = []
    errors: list[Exception] = []
    done: list[bool] = []
    source.subscribe(items.append, errors.append, lambda: done.append(True))
    return items, (errors[0] if errors else None), bool(done)


def test_items_from_events_ignoring_others() -> None:
    """TextDelta text is parsed; Started, Usage, reasoning and Finished are ignored."""
    events = [
        Started(provider="p", model="m"),
        ReasoningDelta(text="[1, 2]"),
        TextDelta(text='Here:\n```json\n{"people": [{"n": 1}, '),
        TextDelta(text='{"n": 2.5}]}\n```'),
        Usage(output_tokens=3),
        Finished(reason="stop"),
    ]
    items, error, done = _collect(reactivex.from_iterable(events).pipe(json_items("people.item")))
    assert (items, error, done) == ([{"n": 1}, {"n": 2.5}], None, True)


def test_plain_strings_one_character_each() -> None:
    """Plain str deltas of one character each give the same items as orjson."""
    doc = {"people": [{"name": "Ada", "tags": ["x", "]"]}, {"name": "Bob \u00e9 \U0001f600"}]}
    text = "Sure. " + orjson.dumps(doc).decode() + " Done [ok]."
    items, error, _ = _collect(reactivex.from_iterable(list(text)).pipe(json_items("people.item")))
    assert error is None
    assert items == doc["people"]


def test_several_documents_in_a_row() -> None:
    """Each top-level document yields its items."""
    source = reactivex.from_iterable(["[1, 2] and also [3", "] then {}"])
    items, error, _ = _collect(source.pipe(json_items("item")))
    assert (items, error) == ([1, 2, 3], None)


def test_items_arrive_before_the_stream_ends() -> None:
    """Each item is emitted as soon as the delta with its closing bracket arrives."""
    subject: reactivex.subject.Subject[str] = reactivex.subject.Subject()
    items: list[Any] = []
    subject.pipe(json_items("item")).subscribe(items.append)
    subject.on_next('[{"a": 1}, {"a"')
    assert items == [{"a": 1}]
    subject.on_next(": 2}")
    assert items == [{"a": 1}, {"a": 2}]


def test_errors_are_typed_and_keep_earlier_items() -> None:
    """A bound or grammar error ends the stream after the items before it."""
    items, error, _ = _collect(reactivex.from_iterable(["[1, ", "[" * 100]).pipe(json_items()))
    assert items == [1]
    assert isinstance(error, DepthExceeded)
    items, error, _ = _collect(reactivex.from_iterable(['[{"a": 1}, {"a" 2}]']).pipe(json_items()))
    assert items == [{"a": 1}]
    assert isinstance(error, InvalidJson)


def test_truncated_document_is_incomplete() -> None:
    """A stream that stops inside the document ends with IncompleteJson."""
    items, error, _ = _collect(reactivex.from_iterable(['[{"a": 1}, {"a": 2']).pipe(json_items()))
    assert items == [{"a": 1}]
    assert isinstance(error, IncompleteJson)


def test_upstream_error_passes_through() -> None:
    """The upstream's error reaches the consumer unchanged."""
    boom = RuntimeError("boom")
    source = reactivex.concat(reactivex.of("[1,"), reactivex.throw(boom))
    items, error, _ = _collect(source.pipe(json_items()))
    assert items == [1]
    assert error is boom


def test_error_disposes_upstream() -> None:
    """A JSON error disposes the upstream subscription (cancelling the request)."""
    disposed: list[bool] = []

    def subscribe(observer: abc.ObserverBase[str], _: Any = None) -> abc.DisposableBase:
        observer.on_next("[" * 80)
        return Disposable(lambda: disposed.append(True))

    _, error, _ = _collect(reactivex.create(subscribe).pipe(json_items()))
    assert isinstance(error, DepthExceeded)
    assert disposed == [True]


def test_through_replay() -> None:
    """Items assemble from a replayed OpenAI stream."""
    pieces = ['{"items": [', '{"id": 1}', ", ", '{"id": 2}', "]}"]
    chunks = [
        b"data: "
        + orjson.dumps({"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]})
        + b"\n\n"
        for p in pieces
    ]
    chunks.append(b"data: [DONE]\n\n")
    items, error, _ = _collect(replay("openai", chunks).pipe(json_items("items.item")))
    assert (items, error) == ([{"id": 1}, {"id": 2}], None)


def test_bad_arguments_fail_early() -> None:
    """Invalid bounds are rejected when the operator is built."""
    with pytest.raises(ValueError, match="max_depth"):
        json_items(max_depth=0)


def test_depth_bomb_in_small_deltas_inside_an_item() -> None:
    """Opening brackets four at a time inside an item end in DepthExceeded, as an error
    notification (never raised at the source), after the items before them."""
    subject: reactivex.subject.Subject[str] = reactivex.subject.Subject()
    items: list[Any] = []
    errors: list[Exception] = []
    subject.pipe(json_items()).subscribe(items.append, errors.append)
    for piece in ['[{"a": 1}, [', *(["[[[["] * 30)]:
        subject.on_next(piece)  # does not raise
    assert items == [{"a": 1}]
    assert len(errors) == 1
    assert isinstance(errors[0], DepthExceeded)
    assert errors[0].offset == 11 + 63  # the 65th bracket


def test_each_item_arrives_with_the_delta_that_closes_it() -> None:
    """In 4-character deltas each object item is emitted by the delta with its brace."""
    people = [{"name": f"n{i}", "tags": ["a]", "{b"], "bio": 'x "y" {z}'} for i in range(30)]
    text = orjson.dumps({"people": people}, option=orjson.OPT_INDENT_2).decode()
    subject: reactivex.subject.Subject[str] = reactivex.subject.Subject()
    items: list[Any] = []
    subject.pipe(json_items("people.item")).subscribe(items.append)
    closing = [text.index("\n    }", text.index(f'"n{i}"')) + 5 for i in range(30)]
    for start in range(0, len(text), 4):
        subject.on_next(text[start : start + 4])
        assert len(items) == sum(1 for end in closing if end < start + 4)
    subject.on_completed()
    assert items == people


def test_lean_upstream_is_called_directly() -> None:
    """A Lean upstream (fallback, retry...) calls json_items directly; errors and
    disposal pass as with any upstream."""
    from rxllm.operators._resil import Lean

    disposed: list[bool] = []

    def subscribe(observer: abc.ObserverBase[Any], _: Any = None) -> abc.DisposableBase:
        for piece in ['{"people": [{"n": 1}, ', TextDelta(text='{"n": 2}]}'), Usage()]:
            observer.on_next(piece)
        observer.on_completed()
        return Disposable(lambda: disposed.append(True))

    items, error, done = _collect(Lean(subscribe).pipe(json_items("people.item")))
    assert (items, error, done) == ([{"n": 1}, {"n": 2}], None, True)

    boom = RuntimeError("boom")

    def failing(observer: abc.ObserverBase[Any], _: Any = None) -> abc.DisposableBase:
        observer.on_next("[1, ")
        observer.on_error(boom)
        return Disposable(lambda: disposed.append(True))

    items, error, done = _collect(Lean(failing).pipe(json_items()))
    assert (items, error, done) == ([1], boom, False)

    def bomb(observer: abc.ObserverBase[Any], _: Any = None) -> abc.DisposableBase:
        observer.on_next("[" * 80)
        return Disposable(lambda: disposed.append(True))

    disposed.clear()
    _, error, _ = _collect(Lean(bomb).pipe(json_items()))
    assert isinstance(error, DepthExceeded)
    assert disposed == [True]

"""json_snapshots: the growing document, throttled by characters or virtual time."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import reactivex
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm.errors import IncompleteJson
from rxllm.operators import json_snapshots

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed


def _snap(pieces: list[str], **kw: Any) -> tuple[list[Any], Exception | None]:
    out: list[Any] = []
    errors: list[Exception] = []
    reactivex.from_iterable(pieces).pipe(json_snapshots(**kw)).subscribe(
        lambda v: out.append(copy.deepcopy(v)), errors.append
    )
    return out, (errors[0] if errors else None)


def test_growing_object_every_delta() -> None:
    """With every_chars=1 each delta that changed the document gives a snapshot."""
    out, error = _snap(['Sure: {"x": [1,', ' 2], "y"', ': {"z": "a"', "}}"], every_chars=1)
    assert error is None
    assert out == [
        {"x": [1]},
        {"x": [1, 2]},
        {"x": [1, 2], "y": {"z": "a"}},
        {"x": [1, 2], "y": {"z": "a"}},
    ]


def test_throttled_by_characters() -> None:
    """Snapshots come at most once per every_chars characters, plus the final state."""
    text = '{"items": [' + ", ".join(str(i) for i in range(50)) + "]}"
    out, _ = _snap(list(text), every_chars=40)
    assert len(out) <= len(text) // 40 + 2
    assert out[-1] == {"items": list(range(50))}
    assert all(len(a["items"]) <= len(b["items"]) for a, b in itertools.pairwise(out))


def test_live_object_by_default_copy_on_request() -> None:
    """Without copy the same live object is emitted; copy=True gives independent ones."""
    seen: list[Any] = []
    reactivex.from_iterable(['{"a": 1,', ' "b": 2}']).pipe(json_snapshots(every_chars=1)).subscribe(
        seen.append
    )
    assert seen[0] is seen[-1]
    seen2: list[Any] = []
    reactivex.from_iterable(['{"a": 1,', ' "b": 2}']).pipe(
        json_snapshots(every_chars=1, copy=True)
    ).subscribe(seen2.append)
    assert seen2[0] == {"a": 1}
    assert seen2[-1] == {"a": 1, "b": 2}


def test_truncated_document_emits_last_state_then_error() -> None:
    """A stream cut inside the document emits what was built, then IncompleteJson."""
    out, error = _snap(['{"a": 1, "b": [2', ", 3"], every_chars=1000)
    assert out == [{"a": 1, "b": [2]}]
    assert isinstance(error, IncompleteJson)


def test_throttled_by_time_in_virtual_time() -> None:
    """every_seconds emits the latest state at most once per period (virtual time).

    TestScheduler counts a float ``duetime`` in ticks, so ``every_seconds=50`` is 50 ticks.
    """
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, '{"n": [1'),
        on_next(220, ", 2"),
        on_next(230, ", 3"),
        on_next(240, ", 4"),
        on_next(400, "]}"),
        on_completed(500),
    )

    def create() -> Any:
        return source.pipe(
            json_snapshots(every_chars=None, every_seconds=50, scheduler=scheduler, copy=True)
        )

    results = scheduler.start(create)
    assert [(m.time, m.value.value) for m in results.messages if m.value.kind == "N"] == [
        (210, {"n": []}),
        (260, {"n": [1, 2, 3]}),
        (400, {"n": [1, 2, 3, 4]}),
    ]
    assert results.messages[-1].time == 500


def test_final_snapshot_for_any_delta_size() -> None:
    """The last snapshot is the whole document whatever the deltas' size."""
    doc = {"people": [{"n": i, "s": "x{]" * i} for i in range(10)], "done": True}
    text = "ok " + str(doc).replace("'", '"').replace("True", "true") + " bye"
    for size in (1, 4, 32, 33, 64, 1000):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        out, error = _snap(pieces, every_chars=50)
        assert error is None
        assert out[-1] == doc

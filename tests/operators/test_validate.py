"""validate: skip, halt and patch policies, early rejection, truncation, versions, reports."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from operators._patch import apply_patch
from rxllm.errors import IncompleteJson, SchemaError, ValidationHalted
from rxllm.operators import (
    PatchContext,
    ValidationReport,
    ValidationStats,
    json_items,
    validate,
)
from rxllm.schema import SchemaRegistry

PERSON = {
    "$id": "urn:test:person",
    "type": "object",
    "required": ["name", "age"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "role": {"enum": ["Engineer", "Manager"], "default": "Engineer"},
        "active": {"type": "boolean"},
        "code": {"type": "string"},
    },
}


def _run(source: Observable[Any]) -> tuple[list[Any], Exception | None]:
    items: list[Any] = []
    errors: list[Exception] = []
    source.subscribe(items.append, errors.append)
    return items, (errors[0] if errors else None)


def _tracked(pieces: list[Any]) -> tuple[Observable[Any], dict[str, Any]]:
    """A source that emits one piece per scheduler turn, as a network stream does, and
    records how many it sent and whether it was disposed."""
    state: dict[str, Any] = {"sent": 0, "disposed": False}

    def subscribe(observer: abc.ObserverBase[Any], _: Any = None) -> abc.DisposableBase:
        pending = list(pieces)
        scheduler = reactivex.scheduler.CurrentThreadScheduler.singleton()

        def step(*_: Any) -> None:
            if state["disposed"]:
                return
            if not pending:
                observer.on_completed()
                return
            state["sent"] += 1
            observer.on_next(pending.pop(0))
            scheduler.schedule(step)

        scheduler.schedule(step)
        return Disposable(lambda: state.__setitem__("disposed", True))

    return reactivex.create(subscribe), state


def test_skip_drops_invalid_and_reports() -> None:
    """skip drops an invalid item, reports it with pointers, and counts it."""
    reports: list[ValidationReport] = []
    stats = ValidationStats()
    items = [{"name": "a", "age": 1}, {"name": "b", "age": "x"}, {"name": "c", "age": 3}]
    out, error = _run(
        reactivex.from_iterable(items).pipe(validate(PERSON, on_report=reports.append, stats=stats))
    )
    assert error is None
    assert out == [items[0], items[2]]
    assert [(r.index, r.action) for r in reports] == [(0, "valid"), (1, "skipped"), (2, "valid")]
    assert reports[1].errors == (("/age", "'x' is not of type 'integer'"),)
    assert (stats.valid, stats.skipped, stats.patched, stats.halted) == (2, 1, 0, 0)


def test_halt_disposes_upstream_at_once() -> None:
    """halt ends with ValidationHalted(item, index, errors) and disposes the upstream."""
    pieces = ['[{"name": "a", "age": 1}, ', '{"name": "b", "age": 2, "x": 1}', ", ", "{}", "]"]
    source, state = _tracked(pieces)
    out, error = _run(source.pipe(json_items("item"), validate(PERSON, on_invalid="halt")))
    assert out == [{"name": "a", "age": 1}]
    assert isinstance(error, ValidationHalted)
    assert error.index == 1
    assert error.errors == (("", "additional property 'x' is not allowed"),)
    assert state["disposed"] is True
    assert state["sent"] == 2


def test_halt_without_fusion_validates_complete_items() -> None:
    """Without json_items right before it, halt judges complete items."""
    source, state = _tracked([{"name": "a"}, {"name": "b", "age": 2}])  # type: ignore[list-item]
    out, error = _run(source.pipe(validate(PERSON, on_invalid="halt")))
    assert out == []
    assert isinstance(error, ValidationHalted)
    assert error.index == 0
    assert error.errors == (("", "'age' is a required property"),)
    assert state["disposed"] is True


def test_early_rejection_before_the_item_closes() -> None:
    """A property already invalid halts before the rest of the item is written."""
    pieces = ['{"people": [{"name": "a", "age": "old"', ', "role": "x"', "}]}"]
    source, state = _tracked(pieces)
    out, error = _run(source.pipe(json_items("people.item"), validate(PERSON, on_invalid="halt")))
    assert out == []
    assert isinstance(error, ValidationHalted)
    assert error.item == {"name": "a", "age": "old"}
    assert error.errors[0][0] == "/age"
    assert state["sent"] == 1  # "old" is complete at its closing quote
    assert state["disposed"] is True


def test_early_rejection_of_wrong_item_type() -> None:
    """An array where an object is required halts at its opening bracket."""
    source, state = _tracked(["[[", "1, 2]]"])
    _, error = _run(source.pipe(json_items("item"), validate(PERSON, on_invalid="halt")))
    assert isinstance(error, ValidationHalted)
    assert state["sent"] == 1


def test_patch_repairs_and_reports_json_patch() -> None:
    """patch coerces, fills defaults, matches enums, drops forbidden keys; ops reproduce it."""
    reports: list[ValidationReport] = []
    stats = ValidationStats()
    bad = {"name": 42, "age": "42", "role": "engineer", "active": "true", "zz": 1}
    out, error = _run(
        reactivex.of(bad).pipe(
            validate(PERSON, on_invalid="patch", on_report=reports.append, stats=stats)
        )
    )
    assert error is None
    assert out == [{"name": "42", "age": 42, "role": "Engineer", "active": True}]
    (report,) = reports
    assert report.action == "patched"
    assert report.patch is not None
    assert {op["op"] for op in report.patch} == {"remove", "replace"}
    assert apply_patch(bad, list(report.patch)) == out[0]
    assert stats.patched == 1
    out, _ = _run(
        reactivex.of({"name": "n", "age": " 7"}).pipe(validate(PERSON, on_invalid="patch"))
    )
    assert out == [{"name": "n", "age": 7, "role": "Engineer"}]


def test_patch_failure_falls_back() -> None:
    """An item the repair cannot fix is skipped or halts, per on_patch_fail."""
    bad = {"name": "a", "age": "forty"}
    out, error = _run(reactivex.of(bad).pipe(validate(PERSON, on_invalid="patch")))
    assert (out, error) == ([], None)
    out, error = _run(
        reactivex.of(bad).pipe(validate(PERSON, on_invalid="patch", on_patch_fail="halt"))
    )
    assert isinstance(error, ValidationHalted)
    assert error.errors == (("/age", "'forty' is not of type 'integer'"),)


def test_user_patch_function_extends_builtin() -> None:
    """A patch function gets the context and may call the built-in repair."""
    seen: list[PatchContext] = []

    def fix(item: Any, ctx: PatchContext) -> Any:
        seen.append(ctx)
        item = ctx.builtin(item)
        if item["age"] == "forty":
            item["age"] = 40
        return item

    out, _ = _run(
        reactivex.of({"name": "a", "age": "forty", "zz": 0}).pipe(
            validate(PERSON, on_invalid="patch", patch=fix)
        )
    )
    assert out == [{"name": "a", "age": 40, "role": "Engineer"}]
    assert seen[0].index == 0
    assert ("/age", "'forty' is not of type 'integer'") in seen[0].errors


def test_truncated_item_policies() -> None:
    """Text cut inside an item: skip keeps the complete items, halt raises IncompleteJson,
    patch closes the item only if it then validates."""
    text = ['{"people": [{"name": "a", "age": 1}, {"name": "b", "age": 2, "role": "Eng']
    out, error = _run(
        reactivex.from_iterable(text).pipe(json_items("people.item"), validate(PERSON))
    )
    assert (out, error) == ([{"name": "a", "age": 1}], None)

    out, error = _run(
        reactivex.from_iterable(text).pipe(
            json_items("people.item"), validate(PERSON, on_invalid="halt")
        )
    )
    assert out == [{"name": "a", "age": 1}]
    assert isinstance(error, IncompleteJson)
    assert error.path == "people.item.age"

    reports: list[ValidationReport] = []
    out, error = _run(
        reactivex.from_iterable(text).pipe(
            json_items("people.item"),
            validate(PERSON, on_invalid="patch", on_report=reports.append),
        )
    )
    assert error is None
    assert out == [{"name": "a", "age": 1}, {"name": "b", "age": 2}]
    assert reports[-1].incomplete
    assert reports[-1].action == "patched"

    cut_early = ['[{"name": "a", "age": 1}, {"name": "b"']
    out, error = _run(
        reactivex.from_iterable(cut_early).pipe(json_items(), validate(PERSON, on_invalid="patch"))
    )
    assert (out, error) == ([{"name": "a", "age": 1}], None)


def test_registry_versions_report_the_match() -> None:
    """Items valid under any accepted version pass; the report names the version."""
    reg = SchemaRegistry()
    v1 = {"$id": "urn:test:item", "type": "object", "required": ["a"]}
    reg.register(v1, version="1")
    reg.register({**v1, "required": ["a", "b"]}, version="2")
    reports: list[ValidationReport] = []
    stats = ValidationStats()
    out, _ = _run(
        reactivex.from_iterable([{"a": 1, "b": 2}, {"a": 1}, {"b": 1}]).pipe(
            validate("urn:test:item", registry=reg, on_report=reports.append, stats=stats)
        )
    )
    assert out == [{"a": 1, "b": 2}, {"a": 1}]
    assert [r.version for r in reports] == ["2", "1", None]
    assert stats.by_version == {"2": 1, "1": 1}


def test_remote_ref_fails_without_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema with a remote $ref fails when the operator is built, opening no socket."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError("network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(SchemaError):
        validate({"$ref": "https://json.example.org/schema.json"})
    assert attempts == []


@pytest.mark.parametrize("size", [1, 4, 31, 32, 64, 500])
def test_same_outcome_for_any_delta_size(size: int) -> None:
    """Fused with json_items, validate skips, patches and halts alike whatever the
    deltas' size (long deltas reach the parser ahead of the scanner)."""
    people = [{"name": f"p{i}", "age": i} for i in range(12)]
    people[5]["age"] = "5"  # patchable
    people[8]["x"] = 1  # forbidden property
    text = "Here: " + json.dumps({"people": people}, indent=2) + "\nDone."
    pieces = [text[i : i + size] for i in range(0, len(text), size)]

    def run(policy: Any) -> tuple[list[Any], Exception | None]:
        source = reactivex.from_iterable(pieces)
        return _run(source.pipe(json_items("people.item"), validate(PERSON, on_invalid=policy)))

    skipped, error = run("skip")
    assert error is None
    assert [p["name"] for p in skipped] == [f"p{i}" for i in range(12) if i not in (5, 8)]
    patched, error = run("patch")
    assert error is None
    assert len(patched) == 12
    assert patched[5]["age"] == 5
    assert "x" not in patched[8]
    halted, error = run("halt")
    assert [p["name"] for p in halted] == ["p0", "p1", "p2", "p3", "p4"]
    assert isinstance(error, ValidationHalted)
    assert error.index == 5

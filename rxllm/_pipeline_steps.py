"""The operators a pipeline spec may name in ``steps``, and what flows between them.

Each step takes one *kind* of stream and gives one: ``events`` (the chain's normalized
events), ``text`` (the answer's text deltas as ``str``) or ``items`` (parsed JSON values,
tool calls, batches). ``json_items`` takes events or text and gives items; ``validate``
needs items; ``window`` makes items (lists) of anything; the flow operators keep their
input's kind. The loader checks the chain of kinds, so ``validate`` before ``json_items`` is
a spec error and not a stream that silently yields nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from reactivex import Observable, abc

from rxllm import operators as ops
from rxllm.events import TextDelta, ToolCall
from rxllm.operators._resil import Lean, subscribe_lean

from ._pipeline_source import FieldPath

__all__ = ["STEPS", "Kind", "ReportCallback", "Step", "StepDef", "tap", "text_deltas"]

Kind: TypeAlias = Literal["events", "text", "items"]
ReportCallback: TypeAlias = Callable[[ops.ValidationReport], None]
Operator: TypeAlias = Callable[[Observable[Any]], Observable[Any]]

_ANY: frozenset[Kind] = frozenset(("events", "text", "items"))


def text_deltas(source: Observable[Any]) -> Observable[str]:
    """The text of each non-empty ``TextDelta`` (and each ``str``), nothing else."""

    def subscribe(
        observer: abc.ObserverBase[str], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        emit = observer.on_next

        def on_next(event: Any) -> None:
            if event.__class__ is TextDelta:
                if event.text:
                    emit(event.text)
            elif isinstance(event, str) and event:
                emit(event)

        return subscribe_lean(source, on_next, observer.on_error, observer.on_completed, scheduler)

    return Lean(subscribe)


def tool_calls(source: Observable[Any]) -> Observable[dict[str, Any]]:
    """Each complete ``ToolCall`` as ``{"id", "name", "arguments"}``, nothing else."""

    def subscribe(
        observer: abc.ObserverBase[dict[str, Any]], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        emit = observer.on_next

        def on_next(event: Any) -> None:
            if isinstance(event, ToolCall):
                emit({"id": event.id, "name": event.name, "arguments": dict(event.arguments)})

        return subscribe_lean(source, on_next, observer.on_error, observer.on_completed, scheduler)

    return Lean(subscribe)


def tap(source: Observable[Any], on_event: Callable[[Any], None]) -> Observable[Any]:
    """``source`` unchanged, with ``on_event`` called on each item before it passes on."""

    def subscribe(
        observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        emit = observer.on_next

        def on_next(event: Any) -> None:
            on_event(event)
            emit(event)

        return subscribe_lean(source, on_next, observer.on_error, observer.on_completed, scheduler)

    return Lean(subscribe)


def _json_items(options: Mapping[str, Any], _: ReportCallback | None) -> Operator:
    return ops.json_items(**options)


def _validate(options: Mapping[str, Any], on_report: ReportCallback | None) -> Operator:
    return ops.validate(
        options["schema"],
        on_invalid=options.get("on_invalid", "skip"),
        on_patch_fail=options.get("on_patch_fail", "skip"),
        early=options.get("early", True),
        on_report=on_report,
    )


def _json_snapshots(options: Mapping[str, Any], _: ReportCallback | None) -> Operator:
    # A spec's consumer (a CLI, a batch runner) may keep what it receives: copy by default.
    return ops.json_snapshots(**{"copy": True, **options})


def _window(options: Mapping[str, Any], _: ReportCallback | None) -> Operator:
    return ops.window(**options)


def _coalesce(options: Mapping[str, Any], _: ReportCallback | None) -> Operator:
    return ops.coalesce(**options)


def _latest(options: Mapping[str, Any], _: ReportCallback | None) -> Operator:
    return ops.latest(**options)


def _drop_oldest(options: Mapping[str, Any], _: ReportCallback | None) -> Operator:
    return ops.drop_oldest(**options)


@dataclass(frozen=True, slots=True)
class StepDef:
    """An operator a spec can name: what it accepts, what it gives, how to build it."""

    name: str
    accepts: frozenset[Kind]
    gives: Kind | None  # None: the kind it was given
    build: Callable[[Mapping[str, Any], ReportCallback | None], Operator] = field(repr=False)
    hint: str = ""

    def output(self, given: Kind) -> Kind:
        """The kind of stream this step gives when it is given ``given``."""
        return given if self.gives is None else self.gives


STEPS: Mapping[str, StepDef] = {
    d.name: d
    for d in (
        StepDef("text", frozenset(("events",)), "text", lambda o, r: text_deltas),
        StepDef("tool_calls", frozenset(("events",)), "items", lambda o, r: tool_calls),
        StepDef("json_items", frozenset(("events", "text")), "items", _json_items),
        StepDef(
            "validate",
            frozenset(("items",)),
            "items",
            _validate,
            "put json_items (or json_snapshots, tool_calls) before it",
        ),
        StepDef("json_snapshots", frozenset(("events", "text")), "items", _json_snapshots),
        StepDef("window", _ANY, "items", _window),
        StepDef(
            "coalesce",
            frozenset(("events",)),
            None,
            _coalesce,
            "it merges TextDelta events: put it before text",
        ),
        StepDef("latest", _ANY, None, _latest),
        StepDef("drop_oldest", _ANY, None, _drop_oldest),
    )
}
"""Every operator a spec may name, by name (the ``operator_name`` enum of the schema)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a loaded spec: the operator, its checked options and where it was written."""

    name: str
    options: Mapping[str, Any]
    path: FieldPath

    def operator(self, on_report: ReportCallback | None = None) -> Operator:
        """A fresh operator for one stream (``on_report`` sees ``validate``'s reports)."""
        return STEPS[self.name].build(self.options, on_report)

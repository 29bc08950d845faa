"""json_items: JSON values under a prefix, assembled from text deltas in linear time."""

from __future__ import annotations

from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import SingleAssignmentDisposable

from rxllm.errors import IncompleteJson, JsonAssemblyError
from rxllm.events import TextDelta
from rxllm.typing import Operator
from rxllm.wire import JsonStream

from ._resil import subscribe_lean

__all__ = ["JsonItemsObservable", "json_items_"]


class JsonItemsObservable(Observable[Any]):
    """The observable ``json_items`` returns.

    It behaves like any observable. ``validate`` placed directly after it recognises it and
    subscribes through ``fused()`` instead, which also delivers the private progress markers
    (``PartialItem`` while an item is written, ``IncompleteItem`` when the text stops inside
    one) that early rejection and truncation repair need. No other consumer sees them.
    """

    def __init__(self, source: Observable[Any], prefix: str, options: dict[str, Any]) -> None:
        super().__init__()
        self.source = source
        self.prefix = prefix
        self.options = options

    def _subscribe_core(
        self, observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return _run(self, observer, scheduler, fused=False)

    def fused(self) -> Observable[Any]:
        """Items plus ``PartialItem`` / ``IncompleteItem`` markers (for ``validate``)."""

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            return _run(self, observer, scheduler, fused=True)

        return Observable(subscribe)


def _run(
    spec: JsonItemsObservable,
    observer: abc.ObserverBase[Any],
    scheduler: abc.SchedulerBase | None,
    *,
    fused: bool,
) -> abc.DisposableBase:
    stream = JsonStream(spec.prefix, partial=fused, **spec.options)
    upstream = SingleAssignmentDisposable()
    out: list[Any] = []
    halted = [False]  # a cell: set by fail() and completion, read everywhere
    on_next = observer.on_next

    def is_halted() -> bool:  # (a call, so that type checkers do not narrow the cell)
        return halted[0]

    def fail(error: Exception) -> None:
        halted[0] = True
        upstream.dispose()
        observer.on_error(error)

    def emit() -> None:
        if len(out) == 1:  # the usual case
            on_next(out.pop())
            return
        items = out.copy()
        out.clear()
        for item in items:
            if is_halted():
                return
            on_next(item)

    def stream_error(exc: JsonAssemblyError) -> None:
        if not is_halted():
            fail(exc)

    # Per event: one call, into the stream (which ignores events other than text). Most
    # deltas complete nothing and cost just that: JsonStream batches them; only a delta
    # that completes a value emits.
    next_ = stream.push_handler(out, emit, stream_error, TextDelta)

    def error(exc: Exception) -> None:
        if not is_halted():
            fail(exc)

    def completed() -> None:
        if is_halted():
            return
        try:
            stream.finish(out)
        except IncompleteJson as exc:
            emit()
            if is_halted():
                return
            if fused:
                on_next(stream.incomplete(exc))
                if is_halted():
                    return
            else:
                fail(exc)
                return
        except JsonAssemblyError as exc:
            emit()
            if not is_halted():
                fail(exc)
            return
        emit()
        if not is_halted():
            halted[0] = True
            observer.on_completed()

    # a Lean upstream (fallback, retry, breaker, timeouts, Chain) calls next_ directly,
    # without reactivex's AutoDetachObserver in between (see operators/_resil.py)
    upstream.disposable = subscribe_lean(spec.source, next_, error, completed, scheduler)
    return upstream


def json_items_(prefix: str = "item", **options: Any) -> Operator[Any, Any]:
    """Implementation of ``rxllm.operators.json_items``."""
    JsonStream(prefix, **options)  # validate the arguments now, not at subscription

    def operator(source: Observable[Any]) -> Observable[Any]:
        return JsonItemsObservable(source, prefix, options)

    return operator

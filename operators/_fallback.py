"""``fallback``: hand the stream to the next source if it fails before its first token."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm.typing import Operator

from ._resil import (
    ErrorFilter,
    HoldBack,
    Lean,
    Slot,
    as_predicate,
    recoverable,
    should_fall_over,
    subscribe_lean,
)

__all__ = ["fallback_"]

_T = TypeVar("_T")

Alternative = Observable[_T] | Callable[[], Observable[_T]]


def _resolve(alternative: Alternative[_T]) -> Observable[_T]:
    if isinstance(alternative, abc.ObservableBase):
        return alternative
    return alternative()


def fallback_(*alternatives: Alternative[_T], on: ErrorFilter | None = None) -> Operator[_T, _T]:
    """Implementation of ``rxllm.operators.fallback`` (see there)."""
    for alternative in alternatives:
        if not (isinstance(alternative, abc.ObservableBase) or callable(alternative)):
            raise TypeError("fallback alternatives are Observables or zero-argument factories")
    handles = as_predicate(on, should_fall_over)

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            slot = Slot()
            gate = HoldBack(observer.on_next)
            on_next = gate.on_next
            index = 0
            stopped = False  # a terminal notification went downstream

            def fail(error: Exception) -> None:
                nonlocal stopped
                if not stopped:
                    stopped = True
                    observer.on_error(error)

            def on_error(error: Exception) -> None:
                nonlocal index
                if stopped:
                    return
                if gate.live or index >= len(alternatives) or slot.disposed:
                    fail(error)
                    return
                if not (recoverable(error) and handles(error)):
                    fail(error)
                    return
                gate.drop()  # the failed attempt leaves no trace
                alternative = alternatives[index]
                index += 1
                try:
                    nxt = _resolve(alternative)
                except Exception as exc:  # noqa: BLE001 - a factory that raises ends the stream
                    fail(exc)
                    return
                slot.subscribe(
                    lambda: subscribe_lean(nxt, on_next, on_error, on_completed, scheduler)
                )

            def on_completed() -> None:
                nonlocal stopped
                if stopped:
                    return
                stopped = True
                gate.flush()  # a stream that ends with no content still shows its frames
                observer.on_completed()

            slot.subscribe(
                lambda: subscribe_lean(source, on_next, on_error, on_completed, scheduler)
            )
            return Disposable(slot.dispose)

        return Lean(subscribe)

    return operator

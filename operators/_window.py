"""``window``: batch items into lists by count, elapsed time and size in bytes.

One batch is open at a time. It is emitted when it holds ``count`` items, when its items
reach ``bytes`` bytes, or ``seconds`` after its *first* item arrived (one timer per batch,
started by that item and cancelled when the batch leaves early), and whatever is left at
the end. An error flushes the open batch first, so nothing that arrived is lost. No empty
batch is ever emitted. The timer runs on the scheduler resolved at subscription
(``rxllm.aio.scheduler_for``); a lock makes a timer on another thread (``TimeoutScheduler``
outside an event loop) safe.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable

from rxllm.aio import scheduler_for
from rxllm.errors import ConfigError
from rxllm.events import ReasoningDelta, TextDelta, ToolCallDelta
from rxllm.typing import Operator

from ._flowstats import FlowStats

__all__ = ["MAX_BATCH", "default_size", "window_"]

_T = TypeVar("_T")

MAX_BATCH = 65_536
"""The most items a batch holds when no ``count`` is given (the buffer's bound)."""


def _text_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def default_size(item: object) -> int:
    """The size in bytes of ``item`` as a sink would write it.

    ``str``: its UTF-8 length; ``bytes``-like: its length; ``TextDelta``/``ReasoningDelta``:
    their text's UTF-8 length; ``ToolCallDelta``: its argument fragment's; any other event
    (a dataclass): its fields but ``raw`` as JSON; anything else: its JSON (``orjson``),
    or its ``repr`` when it is not JSON-serializable.
    """
    kind = type(item)
    if kind is TextDelta or kind is ReasoningDelta:
        return _text_size(item.text)  # type: ignore[attr-defined]
    if kind is str:
        return _text_size(item)  # type: ignore[arg-type]
    if kind is ToolCallDelta:
        return _text_size(item.arguments)  # type: ignore[attr-defined]
    if isinstance(item, bytes | bytearray | memoryview):
        return len(item)
    value: Any = item
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        value = {f.name: getattr(item, f.name) for f in dataclasses.fields(item) if f.name != "raw"}
    try:
        return len(orjson.dumps(value, default=str))
    except TypeError:
        return _text_size(repr(item))


def window_(
    *,
    count: int | None = None,
    seconds: float | None = None,
    bytes: int | None = None,
    scheduler: abc.SchedulerBase | None = None,
    size_of: Callable[[_T], int] | None = None,
    stats: FlowStats | None = None,
) -> Operator[_T, list[_T]]:
    """Implementation of ``rxllm.operators.window`` (see there)."""
    if count is None and seconds is None and bytes is None:
        raise ConfigError("window needs at least one of count, seconds or bytes")
    if count is not None and count < 1:
        raise ConfigError("window: count must be at least 1")
    if seconds is not None and not seconds > 0:
        raise ConfigError("window: seconds must be positive")
    if bytes is not None and bytes < 1:
        raise ConfigError("window: bytes must be at least 1")
    max_items = MAX_BATCH if count is None else count
    max_bytes = bytes
    span: float = 0.0 if seconds is None else float(seconds)
    measure: Callable[[Any], int] = default_size if size_of is None else size_of

    def operator(source: Observable[_T]) -> Observable[list[_T]]:
        def subscribe(
            observer: abc.ObserverBase[list[_T]],
            subscribe_scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            sched = scheduler_for(scheduler, subscribe_scheduler) if seconds is not None else None
            counters = stats if stats is not None else FlowStats()
            lock = threading.RLock()
            timer = SerialDisposable()
            batch: list[_T] = []
            state = [0, 0, False]  # bytes in the batch, batch number, stopped

            def emit() -> None:
                # Called with the lock held and a non-empty batch.
                nonlocal batch
                out, batch = batch, []
                state[0] = 0
                state[1] += 1
                counters.emitted += 1
                counters.merged += len(out) - 1
                if sched is not None:
                    timer.disposable = Disposable()  # cancels this batch's timer
                observer.on_next(out)

            def on_timer(_: abc.SchedulerBase, number: int | None) -> None:
                with lock:
                    if number == state[1] and batch and not state[2]:
                        emit()

            def on_next(item: _T) -> None:
                with lock:
                    if state[2]:
                        return
                    counters.received += 1
                    if not batch and sched is not None:
                        timer.disposable = sched.schedule_relative(span, on_timer, state[1])
                    batch.append(item)
                    if max_bytes is not None:
                        state[0] += measure(item)
                        if state[0] >= max_bytes:
                            emit()
                            return
                    if len(batch) >= max_items:
                        emit()

            def end(error: Exception | None) -> None:
                with lock:
                    if state[2]:
                        return
                    state[2] = True
                    if batch:
                        emit()
                    timer.dispose()
                    if error is None:
                        observer.on_completed()
                    else:
                        observer.on_error(error)

            def on_error(error: Exception) -> None:
                end(error)

            def on_completed() -> None:
                end(None)

            upstream = source.subscribe(
                on_next, on_error, on_completed, scheduler=subscribe_scheduler
            )

            def stop() -> None:
                with lock:
                    state[2] = True
                    batch.clear()

            return CompositeDisposable(upstream, timer, Disposable(stop))

        return reactivex.create(subscribe)

    return operator

"""json_snapshots: the growing JSON document, throttled, for live UIs."""

from __future__ import annotations

import copy as copy_module
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable, SingleAssignmentDisposable

from rxllm.aio import scheduler_for
from rxllm.errors import ConfigError, JsonAssemblyError
from rxllm.events import TextDelta
from rxllm.typing import Operator
from rxllm.wire import JsonStream, PartialItem

__all__ = ["json_snapshots_"]

_NOTHING: Any = object()


def json_snapshots_(
    *,
    every_chars: int | None = 256,
    every_seconds: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
    copy: bool = False,
    **bounds: Any,
) -> Operator[Any, Any]:
    """Implementation of ``rxllm.operators.json_snapshots``."""
    if every_chars is not None and every_chars <= 0:
        raise ConfigError("every_chars must be positive (or None)")
    if every_seconds is not None and every_seconds <= 0:
        raise ConfigError("every_seconds must be positive (or None)")
    JsonStream("", **bounds)  # check the bounds now

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = scheduler_for(scheduler, subscribe_scheduler) if every_seconds else None
            stream = JsonStream("", partial=True, **bounds)
            upstream = SingleAssignmentDisposable()
            timer = SerialDisposable()
            out: list[Any] = []
            st: dict[str, Any] = {
                "chars": 0,
                "seen": 0,  # builder changes already emitted
                "last_doc": _NOTHING,  # the last complete document not yet superseded
                "dirty": False,
                "last_at": None,
                "timer": False,
                "stopped": False,
            }

            def latest() -> Any:
                current = stream.current
                return st["last_doc"] if current is None else current

            def emit() -> None:
                value = latest()
                st["dirty"] = False
                st["chars"] = 0
                st["seen"] = stream.changes
                if value is _NOTHING:
                    return
                if sched is not None:
                    st["last_at"] = sched.now
                observer.on_next(copy_module.deepcopy(value) if copy else value)

            def fire(_: abc.SchedulerBase, __: Any = None) -> None:
                st["timer"] = False
                if st["dirty"] and not st["stopped"]:
                    emit()

            def maybe_emit() -> None:
                if not st["dirty"]:
                    return
                if every_chars is not None and st["chars"] >= every_chars:
                    emit()
                    return
                if sched is None or every_seconds is None:
                    return
                last = st["last_at"]
                now = sched.now
                wait = 0.0 if last is None else every_seconds - (now - last).total_seconds()
                if wait <= 0:
                    emit()
                elif not st["timer"]:
                    st["timer"] = True
                    timer.disposable = sched.schedule_relative(wait, fire)

            def next_(value: Any) -> None:
                if st["stopped"]:
                    return
                cls = value.__class__
                if cls is str:
                    text = value
                elif cls is TextDelta:
                    text = value.text
                else:
                    return
                st["chars"] += len(text)
                try:
                    stream.feed(text, out)
                except JsonAssemblyError as exc:
                    finished_docs()
                    stop_with(exc)
                    return
                if finished_docs():
                    return
                if stream.changes != st["seen"]:
                    st["dirty"] = True
                maybe_emit()

            def finished_docs() -> bool:
                """Emit each document that closed (its final state) at once."""
                docs = [x for x in out if x.__class__ is not PartialItem]
                out.clear()
                for doc in docs:
                    st["last_doc"] = doc
                    st["dirty"] = True
                    emit()
                return bool(docs)

            def stop_with(exc: Exception) -> None:
                st["stopped"] = True
                timer.dispose()
                upstream.dispose()
                observer.on_error(exc)

            def error(exc: Exception) -> None:
                if not st["stopped"]:
                    stop_with(exc)

            def completed() -> None:
                if st["stopped"]:
                    return
                try:
                    stream.finish(out)
                except JsonAssemblyError as exc:
                    if st["dirty"] or stream.changes != st["seen"]:
                        emit()
                    stop_with(exc)
                    return
                finished_docs()
                if st["dirty"]:
                    emit()
                st["stopped"] = True
                timer.dispose()
                observer.on_completed()

            upstream.disposable = source.subscribe(
                next_, error, completed, scheduler=subscribe_scheduler
            )
            return CompositeDisposable(upstream, timer)

        return Observable(subscribe)

    return operator

"""Per-event cost of the resilience operators once content flows.

A synchronous Observable emits 100,000 ``TextDelta`` events (then ``Finished``) into a no-op
sink. Measured in the same run, on an asyncio loop (so the timers are the production
``AsyncIOScheduler``):

1. the floor: the bare stream;
2. ``fallback + retry + circuit_breaker + first_token_timeout + idle_timeout`` piped in
   that order (rxllm.operators);
3. ``Chain([provider])`` with a retry policy, a breaker, a first-token and an idle timeout;
4. for comparison, reactivex's own ``catch + retry + timeout`` (its ``timeout`` re-arms a
   timer on every event, so it runs on the first 20,000 events only; it is given the
   loop's scheduler, its default would start a thread per timer).

Each figure is the median of several interleaved runs after a warm-up; the cost per event
is (stack - floor) / events. The target is under 1 microsecond per event for (2) and (3).
The figures are appended to ``benchmarks/RESULTS.md`` under ``## bench_resilience``.

Run: ``.venv/bin/python benchmarks/bench_resilience.py`` (a few seconds).
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex import operators as rxops
from reactivex.disposable import Disposable

from rxllm.aio import scheduler_for
from rxllm.chain import BreakerPolicy, Chain, RetryPolicy, reset_registry
from rxllm.events import Event, Finished, TextDelta
from rxllm.operators import (
    CircuitBreaker,
    circuit_breaker,
    fallback,
    first_token_timeout,
    idle_timeout,
    retry,
)
from rxllm.request import Request
from rxllm.typing import Operator

EVENTS = 100_000
RUNS = 7
TARGET_NS = 1000.0
RESULTS = Path(__file__).with_name("RESULTS.md")

PEER_EVENTS = 20_000
_TEXT: list[Event] = [TextDelta(text=f" w{i % 97}") for i in range(EVENTS)]
_END = Finished(reason="stop")


def source(events: int = EVENTS) -> Observable[Event]:
    """A cold, synchronous stream of ``events`` text deltas and a ``Finished``."""
    stream = [*_TEXT[:events], _END]

    def subscribe(observer: abc.ObserverBase[Event], _: Any = None) -> abc.DisposableBase:
        on_next = observer.on_next
        for event in stream:
            on_next(event)
        observer.on_completed()
        return Disposable()

    return Observable(subscribe)


class _Provider:
    name = "bench"
    cost_per_token = None

    def stream(self, request: Request) -> Observable[Event]:
        return source()


def bare() -> Observable[Event]:
    """The floor."""
    return source()


def operators_stack() -> Observable[Event]:
    """The five resilience operators around the stream."""
    stack: list[Operator[Event, Event]] = [
        fallback(reactivex.empty()),
        retry(attempts=3),
        circuit_breaker(CircuitBreaker("bench-ops", failure_threshold=5)),
        first_token_timeout(30.0),
        idle_timeout(30.0),
    ]
    stream = source()
    for operator in stack:
        stream = operator(stream)
    return stream


_CHAIN = Chain(
    [_Provider()],
    retry=RetryPolicy(attempts=3),
    breaker=BreakerPolicy(failure_threshold=5),
    first_token_timeout=30.0,
    idle_timeout=30.0,
)
_REQUEST = Request.of("bench")


def chain() -> Observable[Event]:
    """A one-provider Chain with every guard on."""
    return _CHAIN.stream(_REQUEST)


def reactivex_stack() -> Observable[Event]:
    """reactivex's catch + retry + timeout (a peer's way of doing it)."""
    return source(PEER_EVENTS).pipe(
        rxops.catch(reactivex.empty()),
        rxops.retry(3),
        rxops.timeout(30.0, scheduler=scheduler_for()),  # the loop's, not a thread per timer
    )


PEER = "reactivex catch+retry+timeout"
CASES: dict[str, tuple[Callable[[], Observable[Event]], int]] = {
    "bare stream (floor)": (bare, EVENTS + 1),
    "fallback+retry+breaker+timeouts": (operators_stack, EVENTS + 1),
    "Chain (1 provider, all guards)": (chain, EVENTS + 1),
    PEER: (reactivex_stack, PEER_EVENTS + 1),
}


async def _once(make: Callable[[], Observable[Event]], expected: int) -> float:
    done = asyncio.get_running_loop().create_future()
    count = 0

    def sink(_: Event) -> None:
        nonlocal count
        count += 1

    observable = make()
    gc.collect()
    start = time.perf_counter()
    subscription = observable.subscribe(sink, done.set_exception, lambda: done.set_result(None))
    elapsed = time.perf_counter() - start
    subscription.dispose()
    await done
    if count != expected:
        raise AssertionError(f"{count} events arrived, expected {expected}")
    return elapsed


async def measure() -> dict[str, float]:
    """Median seconds per event of each case after one warm-up each.

    rxllm's cases are interleaved with the floor; the reactivex peer runs last, on its own,
    because the timers it leaves behind would slow the runs after it.
    """
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    ours = [name for name in CASES if name != PEER]
    for name in ours:
        await _once(*CASES[name])
    for _ in range(RUNS):
        for name in ours:
            make, events = CASES[name]
            samples[name].append(await _once(make, events) / events)
    make, events = CASES[PEER]
    for _ in range(RUNS):
        samples[PEER].append(await _once(make, events) / events)
    return {name: statistics.median(times) for name, times in samples.items()}


def table(per_event: dict[str, float]) -> str:
    """A Markdown table of the medians and the cost per event over the floor."""
    floor = per_event["bare stream (floor)"]
    lines = [
        f"{EVENTS + 1:,}-event stream, median of {RUNS} runs; "
        f"target: under {TARGET_NS:.0f} ns per event added",
        "",
        "| pipeline | events | ns per event | added ns per event |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, seconds in per_event.items():
        added = "-" if name.startswith("bare") else f"{(seconds - floor) * 1e9:,.0f}"
        lines.append(f"| {name} | {CASES[name][1]:,} | {seconds * 1e9:,.0f} | {added} |")
    return "\n".join(lines)


def append_results(text: str) -> None:
    """Append this run to benchmarks/RESULTS.md under ``## bench_resilience`` (never rewriting)."""
    header = (
        f"\n## bench_resilience\n\n"
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- command: `.venv/bin/python benchmarks/bench_resilience.py`\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.machine()}, reactivex {reactivex.__version__}\n\n"
    )
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n", encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(header + text + "\n")


def main() -> int:
    """Measure, print and record; exit 1 when the target is missed."""
    reset_registry()
    per_event = asyncio.run(measure())
    report = table(per_event)
    print(report)
    if "--no-record" not in sys.argv:
        append_results(report)
        print(f"\nappended to {RESULTS}")
    floor = per_event["bare stream (floor)"]
    met = all(
        (per_event[name] - floor) * 1e9 < TARGET_NS
        for name in ("fallback+retry+breaker+timeouts", "Chain (1 provider, all guards)")
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

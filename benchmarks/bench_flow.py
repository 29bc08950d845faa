"""Flow-control costs: hub fan-out against a bare loop, and the valve path of ``to_aiter``.

1. Hub fan-out to 1,000 in-process subscribers, in deliveries per second (events x
   subscribers / s), measured from ``hub.start`` to the end of the stream (ids, the
   store's window and every subscriber's queue included), against the floor measured in
   the same run: a bare loop that appends each event to the same 1,000 deques.
   - *burst*: the whole stream is available at once (a synchronous source);
   - *paced*: 8 events per loop iteration, like socket reads of a live stream;
   - *paced, read*: as paced, and each of the 1,000 subscribers is a task reading its
     listener with ``async for`` (informational: this is mostly asyncio's task switching).
2. The valve path: ``to_aiter(from_aiter(gen))`` over an async generator that never
   suspends, against a bare ``async for`` over the same generator, in ns per event; also
   with ``coalesce()`` in between and with ``window=1`` (the valve toggles on every item).
3. The per-read cost of the valve check the HTTP source makes before each socket read
   (``if valve is not None and not valve.is_open``), against an empty loop.

Inputs are deterministic; each figure is the median of several interleaved runs after a
warm-up. The figures are appended to ``benchmarks/RESULTS.md`` under ``## bench_flow``.

Run: ``.venv/bin/python benchmarks/bench_flow.py`` (about a minute); ``--no-record`` skips
the append.
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
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import reactivex

from rxllm import operators as ops
from rxllm._valve import Valve
from rxllm.aio import from_aiter, to_aiter
from rxllm.events import Event, TextDelta
from rxllm.hub import Hub
from rxllm.store import MemoryStore

SUBSCRIBERS = 1000
HUB_EVENTS = 2000
READ_EVENTS = 400
PACE = 8
VALVE_EVENTS = 200_000
CHECKS = 2_000_000
RUNS = 7
RESULTS = Path(__file__).with_name("RESULTS.md")


def make_events(n: int) -> list[TextDelta]:
    """``n`` text deltas shaped like tokens."""
    words = ("the", " model", " stream", "s", " token", ",", " and", " reactive", ".", "\n")
    return [TextDelta(text=words[i % len(words)]) for i in range(n)]


# --- 1. hub fan-out ---------------------------------------------------------------------


def bare_fanout(events: Sequence[Event]) -> float:
    """Seconds for the floor: append each event to each of the 1,000 deques."""
    queues: list[deque[Event]] = [deque() for _ in range(SUBSCRIBERS)]
    start = time.perf_counter()
    for ev in events:
        for q in queues:
            q.append(ev)
    elapsed = time.perf_counter() - start
    assert all(len(q) == len(events) for q in queues)
    return elapsed


def paced_source(events: Sequence[Event]) -> reactivex.Observable[Event]:
    """``PACE`` events per loop iteration."""

    async def gen() -> AsyncIterator[Event]:
        for i, ev in enumerate(events, 1):
            yield ev
            if i % PACE == 0:
                await asyncio.sleep(0)

    return from_aiter(gen)


async def hub_fanout(events: Sequence[Event], *, paced: bool, read: bool) -> float:
    """Seconds from ``start`` until every subscriber's queue holds the stream (or has read it)."""
    hub = Hub(MemoryStore(max_events=len(events)), queue_limit=len(events) + 1)
    source = paced_source(events) if paced else reactivex.from_iterable(events)
    start = time.perf_counter()
    sid = await hub.start(source)
    listeners = [hub.listen(sid) for _ in range(SUBSCRIBERS)]
    if read:

        async def drain(listener: Any) -> int:
            n = 0
            async for _ in listener:
                n += 1
            return n

        counts = await asyncio.gather(*(drain(li) for li in listeners))
        elapsed = time.perf_counter() - start
        assert counts == [len(events)] * SUBSCRIBERS
    else:
        await hub.join(sid)
        elapsed = time.perf_counter() - start
        assert all(li.buffered == len(events) for li in listeners)
    await hub.aclose()
    return elapsed


# --- 2. the valve path ------------------------------------------------------------------


def gen_factory(events: list[TextDelta]) -> Callable[[], AsyncIterator[TextDelta]]:
    """An async generator over ``events`` that never suspends."""

    async def gen() -> AsyncIterator[TextDelta]:
        for ev in events:
            yield ev

    return gen


async def bare_iter(events: list[TextDelta]) -> float:
    """Seconds for ``async for`` over the generator."""
    n = 0
    start = time.perf_counter()
    async for _ in gen_factory(events)():
        n += 1
    elapsed = time.perf_counter() - start
    assert n == len(events)
    return elapsed


async def valve_iter(
    events: list[TextDelta], *, coalesce: bool = False, window: int = 1024
) -> float:
    """Seconds for ``to_aiter(from_aiter(gen))`` (optionally through ``coalesce()``)."""
    source = from_aiter(gen_factory(events))
    if coalesce:
        source = source.pipe(ops.coalesce())
    chars = 0
    start = time.perf_counter()
    async for ev in to_aiter(source, window=window):
        chars += len(ev.text)
    elapsed = time.perf_counter() - start
    assert chars == sum(len(ev.text) for ev in events)
    return elapsed


# --- 3. the valve check -----------------------------------------------------------------


def valve_check(n: int) -> float:
    """Seconds for ``n`` valve checks as the transport makes them before each read."""
    valve: Valve | None = Valve()
    start = time.perf_counter()
    for _ in range(n):
        if valve is not None and not valve.is_open:
            raise AssertionError
    return time.perf_counter() - start


def empty_loop(n: int) -> float:
    """Seconds for the same loop without the check."""
    start = time.perf_counter()
    for _ in range(n):
        pass
    return time.perf_counter() - start


# --- driver -----------------------------------------------------------------------------


def median_of(samples: dict[str, list[float]]) -> dict[str, float]:
    """The median of each case's samples."""
    return {name: statistics.median(values) for name, values in samples.items()}


def timed(fn: Callable[[], Coroutine[Any, Any, float]]) -> float:
    """Run one async measurement on a fresh loop, after a collection."""
    gc.collect()
    return asyncio.run(fn())


def measure() -> dict[str, float]:
    """Every case, warm-up first, then RUNS interleaved runs; medians in seconds."""
    hub_events = make_events(HUB_EVENTS)
    read_events = make_events(READ_EVENTS)
    valve_events = make_events(VALVE_EVENTS)
    cases: dict[str, Callable[[], float]] = {
        "bare fan-out": lambda: bare_fanout(hub_events),
        "bare fan-out (read size)": lambda: bare_fanout(read_events),
        "hub burst": lambda: timed(lambda: hub_fanout(hub_events, paced=False, read=False)),
        "hub paced": lambda: timed(lambda: hub_fanout(hub_events, paced=True, read=False)),
        "hub paced, read": lambda: timed(lambda: hub_fanout(read_events, paced=True, read=True)),
        "bare async for": lambda: timed(lambda: bare_iter(valve_events)),
        "to_aiter": lambda: timed(lambda: valve_iter(valve_events)),
        "to_aiter + coalesce": lambda: timed(lambda: valve_iter(valve_events, coalesce=True)),
        "to_aiter window=1": lambda: timed(lambda: valve_iter(valve_events, window=1)),
        "valve check": lambda: valve_check(CHECKS),
        "empty loop": lambda: empty_loop(CHECKS),
    }
    for fn in cases.values():  # warm-up
        fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(RUNS):
        for name, fn in cases.items():
            gc.collect()
            samples[name].append(fn())
    return median_of(samples)


def table(t: dict[str, float]) -> str:
    """Markdown tables of the medians."""
    deliveries = HUB_EVENTS * SUBSCRIBERS
    read_deliveries = READ_EVENTS * SUBSCRIBERS
    floor = deliveries / t["bare fan-out"]
    read_floor = read_deliveries / t["bare fan-out (read size)"]
    rows = [
        ("bare loop: append to 1,000 deques", deliveries / t["bare fan-out"], floor),
        ("hub, burst source", deliveries / t["hub burst"], floor),
        (f"hub, paced source ({PACE} events/iteration)", deliveries / t["hub paced"], floor),
        (
            f"hub, paced, 1,000 reader tasks ({READ_EVENTS} events)",
            read_deliveries / t["hub paced, read"],
            read_floor,
        ),
    ]
    lines = [
        f"Hub fan-out: {HUB_EVENTS:,} events to {SUBSCRIBERS:,} subscribers; median of {RUNS} "
        "interleaved runs.",
        "",
        "| case | deliveries/s | ratio to bare loop |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {name} | {rate:,.0f} | {rate / base:.2f} |" for name, rate, base in rows]
    per = {
        name: t[name] / VALVE_EVENTS * 1e9
        for name in ("bare async for", "to_aiter", "to_aiter + coalesce", "to_aiter window=1")
    }
    lines += [
        "",
        f"Valve path: {VALVE_EVENTS:,} events from an async generator that never suspends.",
        "",
        "| case | ns/event | extra over bare `async for` |",
        "| --- | ---: | ---: |",
    ]
    base = per["bare async for"]
    for name, label in [
        ("bare async for", "bare `async for` over the generator"),
        ("to_aiter", "`to_aiter(from_aiter(gen))`"),
        ("to_aiter + coalesce", "`to_aiter(from_aiter(gen).pipe(coalesce()))`"),
        ("to_aiter window=1", "`to_aiter(from_aiter(gen), window=1)`"),
    ]:
        lines.append(f"| {label} | {per[name]:,.0f} | {per[name] - base:+,.0f} |")
    check = (t["valve check"] - t["empty loop"]) / CHECKS * 1e9
    lines += [
        "",
        f"Valve check before each socket read: {check:.1f} ns "
        f"({CHECKS:,} checks, net of the empty loop).",
    ]
    return "\n".join(lines)


def append_results(text: str) -> None:
    """Append this run to benchmarks/RESULTS.md under ``## bench_flow`` (never rewriting)."""
    header = (
        f"\n## bench_flow\n\n"
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- command: `.venv/bin/python benchmarks/bench_flow.py`\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.machine()}\n\n"
    )
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n", encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(header + text + "\n")


def main() -> int:
    """Measure, print and record."""
    report = table(measure())
    print(report)
    if "--no-record" not in sys.argv:
        append_results(report)
        print(f"\nappended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

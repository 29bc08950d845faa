"""Rows per second and CPU per row: ``rxllm.batch`` against a hand-written gather (the floor).

The simulator runs in a separate process (``python -m rxllm sim``), answering every row
with a short OpenAI Chat Completions stream (8 tokens). 10,000 rows go through, at high
concurrency (256 in flight), by three clients in the same run:

1. the floor: ``asyncio.gather`` over one coroutine per row, an ``asyncio.Semaphore(256)``
   around each, one ``aiohttp.ClientSession`` (512 connections, as rxllm's): POST, read the
   body with ``iter_any``, split on blank lines, ``orjson.loads`` per event, join the text
   deltas, and append one JSON line per row to a file with one ``os.write``;
2. the same gather and semaphore around the pipeline itself (a spec loaded with
   ``rxllm.pipeline.loads``: one provider, a ``text`` step): ``pipeline.stream(row)``
   subscribed and its items gathered into a list, one line written per row. It separates
   what the pipeline and the transport cost from what the batch adds;
3. ``rxllm.batch.run`` of that pipeline, writing its resumable output file (fsync
   ``interval``), with attempts, usage and provider recorded per row;
4. the same with a per-provider ``RateLimit`` high enough never to bind (10^6 rps), so the
   limiter's own cost shows.

Every run checks that all 10,000 rows came back with the simulator's text. Reported: rows
per second (wall), the client's CPU time per row (``time.process_time``), and how busy the
simulator process was (its CPU over wall time, from ``/proc``): near 100 % the simulator,
not the client, sets the rate, and CPU per row is the fairer comparison. One warm-up run
per client, then ``--runs`` (5) interleaved rounds, the client order rotating; medians.
Appended to ``benchmarks/RESULTS.md`` under ``## bench_batch``.

Run: ``.venv/bin/python benchmarks/bench_batch.py`` (about a minute and a half on 2 cores;
``--no-record`` skips RESULTS.md, ``--runs N`` and ``--rows N`` change the work).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from _support import cpu_seconds, simulator  # benchmarks/ is on sys.path when run
from reactivex import Observable

import rxllm
from rxllm import batch, pipeline
from rxllm.sim import lorem_text

RESULTS = Path(__file__).with_name("RESULTS.md")
MODEL = "bench-batch"
TOKENS = 8
CONCURRENCY = 256
API_KEY = "sk-bench-not-a-real-key"
PATHS = (
    "floor: gather + semaphore",
    "pipeline.stream + gather",
    "rxllm batch",
    "rxllm batch + rate limiter",
)


@dataclass(slots=True)
class Samples:
    """Per-run figures of one client."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sim_cpu: list[float] = field(default_factory=list)


def rows(n: int) -> list[dict[str, object]]:
    """Deterministic rows: an id and a short text each."""
    return [{"id": i, "text": f"row {i}"} for i in range(n)]


# -- the floor -------------------------------------------------------------------------


async def floor(url: str, data: list[dict[str, object]], out: Path) -> dict[object, str]:
    """One coroutine per row under a semaphore: POST, parse SSE, join text, write a line."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=512), timeout=aiohttp.ClientTimeout(total=None)
    )
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Authorization": f"Bearer {API_KEY}",
    }
    gate = asyncio.Semaphore(CONCURRENCY)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    texts: dict[object, str] = {}

    async def one(row: dict[str, object]) -> None:
        body = orjson.dumps(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Answer: {row['text']}"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        async with gate:
            parts: list[str] = []
            buf = b""
            async with session.post(url + "/chat/completions", data=body, headers=headers) as resp:
                resp.raise_for_status()
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    *events, buf = buf.split(b"\n\n")
                    for event in events:
                        payload = event[6:]
                        if payload == b"[DONE]":
                            continue
                        choices = orjson.loads(payload)["choices"]
                        if choices:
                            text = choices[0]["delta"].get("content")
                            if text:
                                parts.append(text)
            text = "".join(parts)
            os.write(fd, orjson.dumps({"id": row["id"], "text": text}) + b"\n")
            texts[row["id"]] = text

    try:
        await asyncio.gather(*(one(row) for row in data))
    finally:
        os.close(fd)
        await session.close()
    return texts


# -- rxllm -------------------------------------------------------------------------------


def load_pipeline(url: str) -> batch.Pipeline:
    """A spec with one provider at the simulator and a text step."""
    spec = {
        "version": 1,
        "name": "bench-batch",
        "providers": {"sim": {"model": f"openai/{MODEL}", "base_url": url}},
        "request": {"prompt": "Answer: {text}"},
        "steps": ["text"],
    }
    loaded: batch.Pipeline = pipeline.loads(json.dumps(spec), format="json")
    return loaded


async def drain(source: Observable[Any]) -> list[Any]:
    """Subscribe and gather every item into a list (what the batch does per row)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    items: list[Any] = []

    def on_error(error: Exception) -> None:
        if not done.done():
            done.set_exception(error)

    def on_completed() -> None:
        if not done.done():
            done.set_result(None)

    subscription = source.subscribe(items.append, on_error, on_completed)
    try:
        await done
    finally:
        subscription.dispose()
    return items


async def pipeline_gather(
    pipe: batch.Pipeline, data: list[dict[str, object]], out: Path
) -> dict[object, str]:
    """The pipeline without the batch: gather + semaphore, one line written per row."""
    gate = asyncio.Semaphore(CONCURRENCY)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    texts: dict[object, str] = {}

    async def one(row: dict[str, object]) -> None:
        async with gate:
            parts = await drain(pipe.stream(row))
            text = "".join(parts)
            os.write(fd, orjson.dumps({"id": row["id"], "text": text}) + b"\n")
            texts[row["id"]] = text

    try:
        await asyncio.gather(*(one(row) for row in data))
    finally:
        os.close(fd)
    return texts


async def rxllm_batch(
    pipe: batch.Pipeline, data: list[dict[str, object]], out: Path, *, limited: bool
) -> dict[object, str]:
    """``rxllm.batch.run`` over the rows, writing ``out``."""
    rate = batch.RateLimit(rps=1e6) if limited else None
    texts: dict[object, str] = {}
    async with batch.run(pipe, data, output=out, concurrency=CONCURRENCY, rate=rate) as run:
        async for result in run:
            if not result.ok:
                raise AssertionError(f"row {result.id} failed: {result.error} {result.message}")
            texts[result.id] = result.output
    return texts


# -- measuring ---------------------------------------------------------------------------


def check_and_remove(out: Path, n: int, name: str) -> None:
    """The output file has one line per row; then it goes (the next run starts afresh)."""
    if out.read_bytes().count(b"\n") != n:
        raise AssertionError(f"{name}: the output does not have {n} lines")
    out.unlink()


async def measure(url: str, sim_pid: int, n: int, runs: int) -> dict[str, Samples]:
    """A warm-up run of each client, then ``runs`` interleaved rounds."""
    data = rows(n)
    expected = lorem_text(TOKENS)
    pipe = load_pipeline(url)
    clients: dict[str, Callable[[Path], Awaitable[dict[object, str]]]] = {
        PATHS[0]: lambda out: floor(url, data, out),
        PATHS[1]: lambda out: pipeline_gather(pipe, data, out),
        PATHS[2]: lambda out: rxllm_batch(pipe, data, out, limited=False),
        PATHS[3]: lambda out: rxllm_batch(pipe, data, out, limited=True),
    }
    samples = {name: Samples() for name in clients}
    with tempfile.TemporaryDirectory() as tmp:
        counter = 0

        async def once(name: str) -> tuple[float, float, float]:
            nonlocal counter
            counter += 1
            out = Path(tmp, f"out-{counter}.jsonl")  # a fresh file: nothing to resume
            gc.collect()
            sim0, cpu0, t0 = cpu_seconds(sim_pid), time.process_time(), time.perf_counter()
            texts = await clients[name](out)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            sim = (cpu_seconds(sim_pid) - sim0) / wall
            if len(texts) != n or any(t != expected for t in texts.values()):
                raise AssertionError(f"{name}: wrong answers")
            check_and_remove(out, n, name)
            return wall, cpu, sim

        for name in clients:
            await once(name)
        names = list(clients)
        for r in range(runs):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                wall, cpu, sim = await once(name)
                s = samples[name]
                s.wall.append(wall)
                s.cpu.append(cpu)
                s.sim_cpu.append(sim)
                print(
                    f"  run {r + 1} {name}: {n / wall:,.0f} rows/s, {cpu / n * 1e6:.0f} us CPU/row"
                )
    await rxllm.aclose()
    return samples


def table(samples: dict[str, Samples], n: int) -> str:
    """The results as a Markdown table."""
    floor_cpu = statistics.median(samples[PATHS[0]].cpu) / n
    floor_rate = n / statistics.median(samples[PATHS[0]].wall)
    lines = [
        "| client | rows/s | vs floor | CPU per row | vs floor | simulator CPU busy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in samples.items():
        rate = n / statistics.median(s.wall)
        cpu = statistics.median(s.cpu) / n
        lines.append(
            f"| {name} | {rate:,.0f} | {rate / floor_rate:.2f}x | {cpu * 1e6:,.0f} us "
            f"| {cpu / floor_cpu:.2f}x | {statistics.median(s.sim_cpu) * 100:.0f} % |"
        )
    cpu_of = {name: statistics.median(s.cpu) / n * 1e6 for name, s in samples.items()}
    lines.append("")
    lines.append(
        f"CPU per row added by the batch over the bare pipeline: "
        f"{cpu_of[PATHS[2]] - cpu_of[PATHS[1]]:+.0f} us; by the rate limiter on top: "
        f"{cpu_of[PATHS[3]] - cpu_of[PATHS[2]]:+.0f} us. The rest of the gap to the floor is "
        f"the pipeline and transport ({cpu_of[PATHS[1]] - cpu_of[PATHS[0]]:+.0f} us per row)."
    )
    return "\n".join(lines)


def record(text: str, n: int, runs: int, argv: list[str]) -> None:
    """Append this run to benchmarks/RESULTS.md under ``## bench_batch`` (never rewriting)."""
    command = " ".join([".venv/bin/python", "benchmarks/bench_batch.py", *argv])
    header = (
        "\n## bench_batch\n\n"
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- command: `{command}`\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.machine()}, aiohttp {aiohttp.__version__}\n\n"
        f"{n:,} rows of {TOKENS} tokens each from the simulator (a separate process), "
        f"{CONCURRENCY} in flight, every row written to a JSON-lines file; median of {runs} "
        "interleaved runs after a warm-up.\n\n"
    )
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n", encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(header + text + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and append it to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows per run (10,000)")
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    print(f"bench_batch: {args.rows:,} rows x {args.runs} runs x {len(PATHS)} clients")
    with simulator({MODEL: {"tokens": TOKENS}}) as (url, pid):
        samples = asyncio.run(measure(url, pid, args.rows, args.runs))
    text = table(samples, args.rows)
    print()
    print(text)
    if not args.no_record:
        record(text, args.rows, args.runs, sys.argv[1:] if argv is None else argv)
        print(f"\nappended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tokens per second from the provider simulator through rxllm into ``collect``.

The simulator runs in a separate process (``python -m rxllm sim``), so the client measured
owns its core. Three clients read the same OpenAI Chat Completions stream (same body:
``stream: true`` and ``stream_options.include_usage``) from it over loopback HTTP:

1. raw aiohttp, the floor a hand-written client pays: one ``ClientSession``, the body read
   with ``resp.content.iter_any()``, split on ``b"\\n\\n"``, one ``orjson.loads`` per event,
   the text deltas joined;
2. the official ``openai`` SDK, the peer most users would pick instead: ``AsyncOpenAI(...,
   max_retries=0).chat.completions.create(..., stream=True)``, the chunks iterated and the
   text joined;
3. rxllm: ``await rxllm.collect(rxllm.provider("openai/...", base_url=...).stream(request))``.

Cases: one stream of a long answer (50,000 tokens), and 200 concurrent streams of 250 tokens
(``asyncio.gather``; 50,000 tokens too, see ``CASES``), with one token per event
(``chunk_tokens=1``, no pacing) and again with eight tokens per event (``chunk_tokens=8``),
where the simulator writes an eighth of the events and the client's per-event cost
dominates. Each client reuses its connections between runs (as it would in an application);
every (case, client) pair gets a warm-up run, then the runs are interleaved, with the client
order rotating from one round to the next.

Reported per case and client: tokens per second (the simulator's tokens; with
``chunk_tokens=1`` each is one text delta), the median of the runs; the client's CPU time
per token (``time.process_time`` around the client work); and how busy the simulator process
was (its CPU time per token and over the wall time, from ``/proc``): near 100 % the
simulator, not the client, sets the rate, and its CPU per token bounds what any client can
reach from it. The client's CPU per token is the steadier comparison on a shared machine,
where wall-clock rates move with the other load (recorded as the load average). Every run
checks that each stream received exactly the simulator's text (``rxllm.sim.lorem_text``) in
the expected number of text deltas (rxllm's delta count is checked once per case through
``to_aiter``, outside the timed runs), so nothing is compared unfairly. Targets
(``chunk_tokens=1``, 1 and 200 streams): rxllm reaches at least half the raw rate and beats
the SDK. The figures are appended to ``benchmarks/RESULTS.md`` under ``## bench_transport``.

Run: ``.venv/bin/python benchmarks/bench_transport.py`` (about two minutes on 2 cores;
``--no-record`` skips RESULTS.md, ``--runs N`` changes the number of measured rounds).
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import openai
import orjson
from _support import cpu_seconds, simulator  # benchmarks/ is on sys.path when run

import rxllm
from rxllm.events import TextDelta
from rxllm.sim import lorem_text

RUNS = 5
RESULTS = Path(__file__).with_name("RESULTS.md")
PROMPT = "Write a long answer."
API_KEY = "sk-bench-not-a-real-key"
PATHS = ("raw aiohttp", "openai SDK", "rxllm")
TARGETS = ("1x50000/c1", "200x250/c1")  # the cases the acceptance targets apply to


@dataclass(frozen=True, slots=True)
class Case:
    """``streams`` concurrent streams of ``tokens`` tokens each, ``chunk_tokens`` per event."""

    streams: int
    tokens: int
    chunk_tokens: int

    @property
    def key(self) -> str:
        return f"{self.streams}x{self.tokens}/c{self.chunk_tokens}"

    @property
    def model(self) -> str:
        return f"bench-{self.streams}x{self.tokens}-c{self.chunk_tokens}"

    @property
    def deltas(self) -> int:
        return -(-self.tokens // self.chunk_tokens)

    @property
    def label(self) -> str:
        s = "stream" if self.streams == 1 else "streams"
        return f"{self.streams} {s} x {self.tokens:,} tok, chunk_tokens={self.chunk_tokens}"


# 200 x 250 rather than 200 x 2,000: the SDK spends ~100 us of CPU per event here, so
# 400,000 events would take it ~45 s per run and the whole benchmark far past 3 minutes.
# Both concurrency levels then move the same 50,000 tokens per run.
CASES = (Case(1, 50_000, 1), Case(200, 250, 1), Case(1, 50_000, 8), Case(200, 250, 8))


@dataclass(slots=True)
class Samples:
    """Per-run figures of one (case, client) pair."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sim_cpu: list[float] = field(default_factory=list)


# -- the simulator, in its own process ---------------------------------------------------


# -- the three clients: each returns (text, number of text deltas) -------------------------


def _body(model: str) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )


async def raw_stream(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[str, int]:
    """The floor: iter_any, split on blank lines, orjson per event, join the text."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Authorization": f"Bearer {API_KEY}",
    }
    parts: list[str] = []
    buf = b""
    async with session.post(url + "/chat/completions", data=body, headers=headers) as resp:
        resp.raise_for_status()
        async for data in resp.content.iter_any():
            buf += data
            *events, buf = buf.split(b"\n\n")
            for event in events:
                payload = event[6:]  # b"data: "
                if payload == b"[DONE]":
                    continue
                choices = orjson.loads(payload)["choices"]
                if choices:
                    text = choices[0]["delta"].get("content")
                    if text:
                        parts.append(text)
    return "".join(parts), len(parts)


async def sdk_stream(client: openai.AsyncOpenAI, model: str) -> tuple[str, int]:
    """The peer: the official SDK's streaming chat completion, text joined."""
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts: list[str] = []
    async for chunk in stream:
        if chunk.choices:
            text = chunk.choices[0].delta.content
            if text:
                parts.append(text)
    return "".join(parts), len(parts)


async def rxllm_stream(provider: rxllm.Provider, request: rxllm.Request) -> tuple[str, int]:
    """rxllm: the provider's Observable folded by ``collect``."""
    response = await rxllm.collect(provider.stream(request))
    usage = response.usage
    if usage is None or response.finish_reason != "stop":
        raise AssertionError(f"rxllm: no usage or finish ({response.finish_reason!r})")
    return response.text, -1  # deltas are counted by check_rxllm_deltas (untimed)


async def count_rxllm_deltas(provider: rxllm.Provider, request: rxllm.Request) -> int:
    """How many ``TextDelta`` events rxllm emits for one stream (not timed)."""
    return sum([type(ev) is TextDelta async for ev in rxllm.to_aiter(provider.stream(request))])


# -- measuring ---------------------------------------------------------------------------


Runner = Callable[[Case], Awaitable[list[tuple[str, int]]]]


async def measure(url: str, sim_pid: int, runs: int) -> dict[tuple[str, str], Samples]:
    """Warm up every (case, client), then ``runs`` interleaved rounds of all of them."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=512), timeout=aiohttp.ClientTimeout(total=None)
    )
    client = openai.AsyncOpenAI(base_url=url, api_key=API_KEY, max_retries=0)
    providers = {
        c.key: rxllm.provider(f"openai/{c.model}", base_url=url, api_key=API_KEY) for c in CASES
    }
    request = rxllm.Request.of(PROMPT)
    bodies = {c.key: _body(c.model) for c in CASES}
    runners: dict[str, Runner] = {
        "raw aiohttp": lambda c: asyncio.gather(
            *(raw_stream(session, url, bodies[c.key]) for _ in range(c.streams))
        ),
        "openai SDK": lambda c: asyncio.gather(
            *(sdk_stream(client, c.model) for _ in range(c.streams))
        ),
        "rxllm": lambda c: asyncio.gather(
            *(rxllm_stream(providers[c.key], request) for _ in range(c.streams))
        ),
    }
    expected = {c.key: lorem_text(c.tokens) for c in CASES}
    samples = {(c.key, p): Samples() for c in CASES for p in PATHS}

    async def once(case: Case, path: str) -> tuple[float, float, float]:
        gc.collect()
        sim0, cpu0, t0 = cpu_seconds(sim_pid), time.process_time(), time.perf_counter()
        results = await runners[path](case)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        sim = cpu_seconds(sim_pid) - sim0
        for text, deltas in results:
            if text != expected[case.key] or deltas not in (case.deltas, -1):
                raise AssertionError(
                    f"{path}, {case.key}: {len(text):,} characters in {deltas:,} deltas, "
                    f"expected {len(expected[case.key]):,} in {case.deltas:,}"
                )
        if len(results) != case.streams:
            raise AssertionError(f"{path}, {case.key}: {len(results)} streams")
        return wall, cpu, sim

    try:
        for case in CASES:
            deltas = await count_rxllm_deltas(providers[case.key], request)
            if deltas != case.deltas:
                raise AssertionError(f"rxllm, {case.key}: {deltas} deltas, not {case.deltas}")
            for path in PATHS:
                await once(case, path)  # warm-up: connections open, code paths hot
        for r in range(runs):
            order = PATHS[r % len(PATHS) :] + PATHS[: r % len(PATHS)]
            for case in CASES:
                for path in order:
                    wall, cpu, sim = await once(case, path)
                    s = samples[case.key, path]
                    s.wall.append(wall)
                    s.cpu.append(cpu)
                    s.sim_cpu.append(sim)
            print(f"  round {r + 1}/{runs} done", file=sys.stderr, flush=True)
    finally:
        await session.close()
        await client.close()
        await rxllm.aclose()
    return samples


# -- reporting ---------------------------------------------------------------------------


def figures(samples: dict[tuple[str, str], Samples]) -> dict[tuple[str, str], dict[str, float]]:
    """Medians: tokens/s, client CPU us/token, simulator busy share."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for case in CASES:
        total = case.streams * case.tokens
        for path in PATHS:
            s = samples[case.key, path]
            out[case.key, path] = {
                "tps": total / statistics.median(s.wall),
                "cpu_us": statistics.median(s.cpu) / total * 1e6,
                "sim_us": statistics.median(s.sim_cpu) / total * 1e6,
                "sim_busy": statistics.median(
                    [sim / wall for sim, wall in zip(s.sim_cpu, s.wall, strict=True)]
                ),
                "client_busy": statistics.median(
                    [cpu / wall for cpu, wall in zip(s.cpu, s.wall, strict=True)]
                ),
            }
    return out


def table(fig: dict[tuple[str, str], dict[str, float]], runs: int) -> str:
    """A Markdown table of the figures."""
    lines = [
        f"Simulator in its own process, median of {runs} interleaved runs after a warm-up; "
        "tokens = the simulator's tokens (one text delta each at chunk_tokens=1). "
        "CPU us/token = that process's CPU time per token; busy = its CPU seconds over the "
        "wall seconds (100 % = one core): a simulator near 100 % sets the rate, not the client.",
        "",
        "| case | client | tokens/s | vs raw | client CPU us/token | sim CPU us/token "
        "| client busy | sim busy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in CASES:
        raw = fig[case.key, "raw aiohttp"]["tps"]
        for path in PATHS:
            f = fig[case.key, path]
            lines.append(
                f"| {case.label} | {path} | {f['tps']:,.0f} | {f['tps'] / raw:.2f} | "
                f"{f['cpu_us']:.1f} | {f['sim_us']:.1f} | {f['client_busy']:.0%} | "
                f"{f['sim_busy']:.0%} |"
            )
    lines.append("")
    for key in TARGETS:
        f = {p: fig[key, p]["tps"] for p in PATHS}
        ok = f["rxllm"] >= 0.5 * f["raw aiohttp"] and f["rxllm"] > f["openai SDK"]
        lines.append(
            f"- {key}: rxllm {f['rxllm'] / f['raw aiohttp']:.2f}x raw (target >= 0.5), "
            f"{f['rxllm'] / f['openai SDK']:.1f}x the SDK (target > 1): "
            f"{'met' if ok else 'MISSED'}"
        )
    for case in CASES:
        cpu = {p: fig[case.key, p]["cpu_us"] for p in PATHS}
        sim = statistics.median(fig[case.key, p]["sim_us"] for p in PATHS)
        lines.append(
            f"- {case.key}: client CPU per token, rxllm {cpu['rxllm'] / cpu['raw aiohttp']:.2f}x "
            f"raw's, the SDK {cpu['openai SDK'] / cpu['raw aiohttp']:.1f}x raw's; the simulator "
            f"spends {sim:.1f} us/token, so one simulator core serves at most "
            f"~{round(1e6 / sim, -3):,.0f} tokens/s"
        )
    return "\n".join(lines)


def met(fig: dict[tuple[str, str], dict[str, float]]) -> bool:
    """Whether rxllm reaches half the raw rate and beats the SDK in the target cases."""
    return all(
        fig[k, "rxllm"]["tps"] >= 0.5 * fig[k, "raw aiohttp"]["tps"]
        and fig[k, "rxllm"]["tps"] > fig[k, "openai SDK"]["tps"]
        for k in TARGETS
    )


def _load() -> str:
    """The 1-minute load average (other work on the machine slows both processes)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def append_results(text: str, load: str) -> None:
    """Append this run to benchmarks/RESULTS.md under ``## bench_transport`` (never rewriting)."""
    header = (
        f"\n## bench_transport\n\n"
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- command: `.venv/bin/python benchmarks/bench_transport.py`\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.machine()}, aiohttp {aiohttp.__version__}, "
        f"openai {openai.__version__}, orjson {orjson.__version__}\n"
        f"- load average (1 min) before the run: {load}\n\n"
    )
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n", encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(header + text + "\n")


def main() -> int:
    """Measure, print and record; exit 1 when a target is missed."""
    runs = RUNS
    if "--runs" in sys.argv:
        runs = max(1, int(sys.argv[sys.argv.index("--runs") + 1]))
    load = _load()
    with simulator(
        {c.model: {"tokens": c.tokens, "chunk_tokens": c.chunk_tokens} for c in CASES}
    ) as (url, pid):
        samples = asyncio.run(measure(url, pid, runs))
    fig = figures(samples)
    report = table(fig, runs)
    print(report)
    print(f"\nload average before the run: {load}")
    if "--no-record" not in sys.argv:
        append_results(report, load)
        print(f"\nappended to {RESULTS}")
    return 0 if met(fig) else 1


if __name__ == "__main__":
    sys.exit(main())

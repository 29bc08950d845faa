"""Structured streaming benchmark: rxllm's json_items vs bare ijson and the re-parse peers.

Run: ``.venv/bin/python benchmarks/bench_json.py`` (about ten seconds). Deterministic
inputs; each figure is the median of 5 runs unless said otherwise. Writes its figures to
``benchmarks/RESULTS.md``, replacing the ``## bench_json`` section (``--no-write`` to only
print).

1. A ~1 MB document in 4- and 64-byte deltas through ``json_items`` (bounds on, through Rx)
   vs bare ijson ``items_coro`` (yajl2_c) fed the same deltas, each encoded to UTF-8 on
   its own; both must end with every item. The sides run interleaved (bare, rxllm,
   sans-IO, bare, ...) so that a busy machine slows them alike; the ratio is the median
   of the per-round ratios.
2. A 200 KB document in 4-byte deltas: rxllm vs peers that re-parse the growing buffer
   after every delta (jiter partial mode, pydantic-core ``allow_partial``,
   partial-json-parser, LangChain ``parse_partial_json``). Their cost is quadratic, so
   each is measured on a prefix and extrapolated by (full / prefix)^2, as printed.
3. Validation throughput (items/s) with jsonschema, direct and through ``validate``.
"""

from __future__ import annotations

import datetime
import functools
import gc
import os
import platform
import random
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ijson
import orjson
import reactivex

from rxllm.operators import ValidationStats, json_items, validate
from rxllm.schema import compile_schema
from rxllm.wire import JsonStream

RUNS = 5
RUNS_VS_BARE = 9  # section 1: interleaved rounds
BACKEND = ijson.get_backend("yajl2_c")
PERSON = {
    "type": "object",
    "required": ["id", "name", "email", "age", "tags", "active"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string", "minLength": 1},
        "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "active": {"type": "boolean"},
        "bio": {"type": "string"},
    },
}


def make_doc(size: int, seed: int = 42) -> tuple[str, int]:
    """A realistic ``{"people": [...]}`` document of about ``size`` characters."""
    rng = random.Random(seed)
    first = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Zoë", "Håkon"]
    people: list[dict[str, Any]] = []
    text = ""
    while len(text) < size:
        i = len(people)
        people.append(
            {
                "id": i,
                "name": f"{rng.choice(first)} {rng.choice(first)}son",
                "email": f"user{i}@example.com",
                "age": rng.randint(18, 90),
                "score": round(rng.random() * 100, 3),
                "tags": rng.sample(["ml", "db", "web", "ops", "ui"], k=rng.randint(0, 3)),
                "active": rng.random() < 0.5,
                "bio": 'Writes "clean" code; likes {braces} & [brackets]. \\o/ '
                * rng.randint(1, 3),
            }
        )
        if i % 64 == 0:
            text = orjson.dumps({"people": people}, option=orjson.OPT_INDENT_2).decode()
    text = orjson.dumps({"people": people}, option=orjson.OPT_INDENT_2).decode()
    return text, len(people)


def deltas(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def median_time(fn: Callable[[], Any], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, list[float]]:
    """Time each function once per round, round after round; all the times, by name."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def run_rxllm(pieces: list[str], expect: int) -> None:
    out: list[Any] = []
    reactivex.from_iterable(pieces).pipe(json_items("people.item")).subscribe(out.append)
    assert len(out) == expect, (len(out), expect)


def run_bare(pieces: list[str], expect: int) -> None:
    """The floor: ijson's push parser fed the same deltas, each encoded on its own."""
    out: list[Any] = []
    coro = BACKEND.items_coro(types.SimpleNamespace(send=out.append), "people.item", use_float=True)
    for piece in pieces:
        coro.send(piece.encode())
    coro.close()
    assert len(out) == expect, (len(out), expect)


def rxllm_first_item(pieces: list[str]) -> float:
    got: list[float] = []
    t0 = time.perf_counter()
    reactivex.from_iterable(pieces).pipe(json_items("people.item")).subscribe(
        lambda _: got.append(time.perf_counter() - t0) if not got else None
    )
    return got[0]


def sansio_first_item(pieces: list[str]) -> float:
    stream = JsonStream("people.item")
    out: list[Any] = []
    t0 = time.perf_counter()
    for piece in pieces:
        stream.feed(piece, out)
        if out:
            break
    return time.perf_counter() - t0


def run_sansio(pieces: list[str], expect: int) -> None:
    stream = JsonStream("people.item")
    out: list[Any] = []
    for piece in pieces:
        stream.feed(piece, out)
    stream.finish(out)
    assert len(out) == expect


def peers() -> dict[str, Callable[[str], Any]]:
    """Each peer parses a partial buffer; missing ones are reported and skipped."""
    found: dict[str, Callable[[str], Any]] = {}
    try:
        import jiter

        found["jiter (partial_mode)"] = lambda s: jiter.from_json(
            s.encode(), partial_mode="trailing-strings"
        )
    except ImportError:
        print("  jiter: not installed, skipped")
    try:
        import pydantic_core

        found["pydantic-core (allow_partial)"] = lambda s: pydantic_core.from_json(
            s, allow_partial=True
        )
    except ImportError:
        print("  pydantic-core: not installed, skipped")
    try:
        import partial_json_parser  # type: ignore[import-untyped]

        found["partial-json-parser"] = partial_json_parser.loads
    except ImportError:
        print("  partial-json-parser: not installed, skipped")
    try:
        from langchain_core.utils.json import parse_partial_json

        found["langchain parse_partial_json"] = parse_partial_json
    except ImportError:
        print("  langchain-core: not installed, skipped")
    return found


def first_item_complete(parsed: Any) -> bool:
    people = parsed.get("people") if isinstance(parsed, dict) else None
    return isinstance(people, list) and len(people) >= 2


def run_peer(parse: Callable[[str], Any], pieces: list[str]) -> tuple[float, float | None]:
    """Re-parse the growing buffer after every delta; return (total s, first-item s)."""
    buf = ""
    first = None
    t0 = time.perf_counter()
    for piece in pieces:
        buf += piece
        try:
            parsed = parse(buf)
        except Exception:
            continue
        if first is None and first_item_complete(parsed):
            first = time.perf_counter() - t0
    return time.perf_counter() - t0, first


def replace_section(text: str, name: str, section: str) -> str:
    """``text`` with its ``## name`` section (up to the next ``## ``) replaced by
    ``section``, or with ``section`` appended if there is none; other sections kept."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == f"## {name}"), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")


def main() -> list[str]:
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line)
        lines.append(line)

    say(f"- Python {platform.python_version()} ({platform.machine()}), ijson {ijson.__version__}")

    # 1. rxllm vs bare ijson
    doc, count = make_doc(1_000_000)
    say(
        f"- 1) {len(doc):,}-character document, {count} items at people.item; medians of "
        f"{RUNS_VS_BARE} interleaved rounds, ratio = median of the per-round ratios"
    )
    say("")
    say(
        "| deltas | bare ijson items_coro | rxllm json_items | ratio | target "
        "| JsonStream alone (no Rx) |"
    )
    say("| --- | --- | --- | --- | --- | --- |")
    for size, target in ((4, 3.0), (64, 2.0)):
        pieces = deltas(doc, size)
        times = interleaved(
            {
                "bare": functools.partial(run_bare, pieces, count),
                "rxllm": functools.partial(run_rxllm, pieces, count),
                "sansio": functools.partial(run_sansio, pieces, count),
            },
            RUNS_VS_BARE,
        )
        bare = statistics.median(times["bare"])
        ours = statistics.median(times["rxllm"])
        alone = statistics.median(times["sansio"])
        ratio = statistics.median(o / b for o, b in zip(times["rxllm"], times["bare"], strict=True))
        ratio_alone = statistics.median(
            o / b for o, b in zip(times["sansio"], times["bare"], strict=True)
        )
        say(
            f"| {size} B ({len(pieces):,}) | {bare * 1e3:.0f} ms | {ours * 1e3:.0f} ms "
            f"| {ratio:.2f}x | <= {target:.0f}x | {alone * 1e3:.0f} ms ({ratio_alone:.2f}x) |"
        )
    say("")

    # 2. rxllm vs re-parse peers
    small, small_count = make_doc(200_000, seed=7)
    pieces = deltas(small, 4)
    ours = median_time(lambda: run_rxllm(pieces, small_count))
    ttfi = statistics.median(rxllm_first_item(pieces) for _ in range(RUNS))
    say(f"- 2) {len(small):,}-character document in 4-byte deltas ({len(pieces):,} deltas)")
    say("")
    say("| parser | total | time to first item | rxllm speedup | how measured |")
    say("| --- | --- | --- | --- | --- |")
    say(f"| rxllm json_items | {ours * 1e3:.1f} ms | {ttfi * 1e6:.0f} us | 1x | median of {RUNS} |")
    sansio = median_time(lambda: run_sansio(pieces, small_count))
    ttfi2 = statistics.median(sansio_first_item(pieces) for _ in range(RUNS))
    say(
        f"| rxllm JsonStream (sans-IO, no Rx) | {sansio * 1e3:.1f} ms | {ttfi2 * 1e6:.0f} us "
        f"| - | median of {RUNS} |"
    )
    fastest = None
    for name, parse in peers().items():
        # quadratic: measure on a prefix short enough to finish in seconds, extrapolate
        prefix_chars = 40_000 if "jiter" in name or "pydantic" in name else 8_000
        sub = deltas(small[:prefix_chars], 4)
        total, first = run_peer(parse, sub)
        scale = (len(small) / prefix_chars) ** 2
        estimate = total * scale
        fastest = estimate if fastest is None else min(fastest, estimate)
        first_s = f"{first * 1e6:.0f} us" if first is not None else "n/a"
        say(
            f"| {name} | ~{estimate:.1f} s | {first_s} | ~{estimate / ours:,.0f}x "
            f"| {prefix_chars // 1000} KB prefix: {total:.2f} s, x{scale:.0f} (n^2) |"
        )
    if fastest is not None:
        say("")
        say(f"rxllm vs the fastest peer: ~{fastest / ours:,.0f}x (target >= 100x)")
    say("")

    # 3. validation throughput
    rng = random.Random(3)
    items: list[Any] = orjson.loads(make_doc(400_000, seed=11)[0])["people"]
    for item in rng.sample(items, k=len(items) // 10):
        item["age"] = str(item["age"])  # a tenth invalid (and patchable)
    compiled = compile_schema(PERSON)
    decisions = [compiled.is_valid(x) for x in items]
    direct = median_time(lambda: [compiled.is_valid(x) for x in items])
    stats = ValidationStats()

    def through_operator() -> None:
        reactivex.from_iterable(items).pipe(validate(PERSON, stats=stats)).subscribe(lambda _: None)

    piped = median_time(through_operator)
    say(f"- 3) validation of {len(items)} items ({decisions.count(False)} invalid)")
    say("")
    say("| path | items/s |")
    say("| --- | --- |")
    say(f"| jsonschema Draft202012Validator.is_valid | {len(items) / direct:,.0f} |")
    say(f"| validate(on_invalid='skip') operator, reports built | {len(items) / piped:,.0f} |")
    say("")
    say("No accelerated backend is used, so accept/reject decisions are jsonschema's alone.")
    say(
        "Time to first item through json_items includes reactivex's subscription set-up "
        "(from_iterable on the trampoline scheduler), which the sans-IO row leaves out."
    )
    return lines


if __name__ == "__main__":
    started = time.perf_counter()
    body = main()
    elapsed = time.perf_counter() - started
    print(f"\n(ran in {elapsed:.0f} s)")
    if "--no-write" not in sys.argv:
        results = Path(__file__).parent / "RESULTS.md"
        existing = results.read_text() if results.exists() else "# Benchmark results\n"
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = (
            f"## bench_json\n\n{stamp}. Command: `.venv/bin/python benchmarks/bench_json.py` "
            f"(Python {platform.python_version()}, {os.cpu_count()} cores).\n\n"
            + "\n".join(body)
            + "\n"
        )
        results.write_text(replace_section(existing, "bench_json", section))

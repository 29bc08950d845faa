"""``rxllm demo``: the main job, on the built-in simulator (no key, no network)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

import orjson

from .aio import to_aiter
from .events import ReasoningDelta, TextDelta, ToolCall, Usage
from .request import Request
from .transport import aclose, provider

__all__ = ["run_demo"]

DIALECTS = ("openai", "openai-responses", "anthropic", "gemini", "ollama")

PROMPT = "In two sentences, why do streaming APIs need backpressure?"

ANSWER = (
    "A fast producer can outrun a slow consumer, and without backpressure the difference "
    "piles up in memory until something breaks. Backpressure lets the consumer's pace reach "
    "the producer, so a stream stays bounded, lossless and ordered however slowly it is read."
)


@dataclass
class _Row:
    provider: str
    ttft: float | None
    tps: float | None
    usage: Usage | None
    tokens: int


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def wrap(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self.wrap(text, "1")

    def dim(self, text: str) -> str:
        return self.wrap(text, "2")


async def run_demo(
    *, tokens: int = 40, tps: float = 150.0, color: bool = True, out: TextIO | None = None
) -> int:
    """Stream one answer from each simulated dialect live, then print their figures."""
    from rxllm.sim import serve

    out = out or sys.stdout
    style = _Style(color and out.isatty())
    out.write(style.bold("rxllm demo") + " - five provider dialects, simulated on loopback\n")
    out.write(style.dim(f"prompt: {PROMPT}") + "\n")
    rows: list[_Row] = []
    async with serve() as sim:
        for dialect in DIALECTS:
            scenario = {
                "text": ANSWER,
                "tokens_per_second": tps,
                "first_token_delay": 0.05,
            }
            if dialect in ("anthropic", "gemini"):
                scenario["reasoning"] = "The user asks about flow control; answer briefly."
            p = provider(
                f"{dialect}/sim-demo",
                base_url=sim.base_url(dialect),
                headers={"x-rxllm-sim": orjson.dumps(scenario).decode()},
            )
            rows.append(await _stream_one(p.name, p.stream(_request()), out, style))
    await aclose()
    _table(rows, out, style)
    return 0


def _request() -> Request:
    return Request.of(PROMPT, system="You are concise.", max_tokens=200)


async def _stream_one(name: str, source: object, out: TextIO, style: _Style) -> _Row:
    from reactivex import Observable

    assert isinstance(source, Observable)
    out.write("\n" + style.bold(f"▸ {name}") + "\n")
    start = time.perf_counter()
    first: float | None = None
    last = start
    usage: Usage | None = None
    count = 0
    in_reasoning = False
    async for event in to_aiter(source):
        now = time.perf_counter()
        if first is None and isinstance(event, ReasoningDelta | TextDelta | ToolCall):
            first = now  # the first token: reasoning counts, as for fallback
        if isinstance(event, ReasoningDelta):
            if event.text:
                if not in_reasoning:
                    out.write(style.dim("  (thinking) "))
                    in_reasoning = True
                out.write(style.dim(event.text))
        elif isinstance(event, TextDelta):
            if in_reasoning:
                out.write("\n")
                in_reasoning = False
            if count == 0:
                out.write("  ")
            out.write(event.text)
            count += 1
            last = now
        elif isinstance(event, ToolCall):
            out.write(f"\n  tool call {event.name}({orjson.dumps(event.arguments).decode()})")
        elif isinstance(event, Usage):
            usage = event
        out.flush()
    out.write("\n")
    ttft = None if first is None else first - start
    tps = None if first is None or last <= first or count < 2 else (count - 1) / (last - first)
    return _Row(name, ttft, tps, usage, count)


def _table(rows: list[_Row], out: TextIO, style: _Style) -> None:
    out.write(
        "\n" + style.bold(f"{'provider':<28}{'TTFT':>9}{'tok/s':>9}{'in':>6}{'out':>6}") + "\n"
    )
    for row in rows:
        ttft = f"{row.ttft * 1000:.0f} ms" if row.ttft is not None else "-"
        tps = f"{row.tps:.0f}" if row.tps is not None else "-"
        inp = row.usage.input_tokens if row.usage and row.usage.input_tokens is not None else "-"
        outp = row.usage.output_tokens if row.usage and row.usage.output_tokens is not None else "-"
        out.write(f"{row.provider:<28}{ttft:>9}{tps:>9}{inp!s:>6}{outp!s:>6}\n")

"""``rxllm demo``: the main job, on the built-in simulator (no key, no network)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
from reactivex import Observable

from .aio import to_aiter
from .errors import error_kind
from .events import Event, ReasoningDelta, TextDelta, ToolCall, Usage
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
    out.write("\n" + style.bold("extraction pipeline") + " - a spec whose primary provider fails\n")
    async with serve() as sim:
        await _extraction_demo(sim, out, style)
    await aclose()
    out.write("\n" + style.bold("roundtable") + " - three simulated panelists take turns\n")
    async with serve() as sim:
        await _roundtable_demo(sim, out, style)
    await aclose()
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


# --- the roundtable --------------------------------------------------------------------------

_TOPIC = "Should every LLM API stream its answers?"

_LINES = {
    ("Ada", "openai"): (
        "Yes. Streaming cuts the time to the first token, and people feel that far more "
        "than the total time.",
        "Bo is right about retries, which is why a failure is retried only before the "
        "first token and never after.",
    ),
    ("Bo", "anthropic"): (
        "Not always. A short answer gains nothing from it, and a stream is harder to "
        "retry and to cache.",
        "Then I accept streams, provided a slow reader can push back on the producer.",
    ),
    ("Cy", "gemini"): (
        "History sides with Ada: every medium that could stream eventually did, from "
        "radio to video.",
        "Backpressure is an old lesson: the telegraph had flow control long before computers did.",
    ),
}


class _Seat:
    """A simulated panelist that says its scripted line for the round it is asked in."""

    def __init__(self, sim: Any, dialect: str, lines: tuple[str, ...], drop_in: int) -> None:
        self.sim = sim
        self.dialect = dialect
        self.lines = lines
        self.drop_in = drop_in

    def stream(self, request: Request) -> Observable[Event]:
        """The line of the request's round, streamed by the simulator."""
        round_no = int(request.metadata["roundtable"]["round"])
        scenario: dict[str, Any] = {
            "text": self.lines[round_no - 1],
            "tokens_per_second": 120,
            "first_token_delay": 0.05,
        }
        if round_no == self.drop_in:
            scenario["drop_after_bytes"] = 2400  # the connection breaks mid-sentence
        p = provider(
            f"{self.dialect}/sim-panel",
            base_url=self.sim.base_url(self.dialect),
            headers={"x-rxllm-sim": orjson.dumps(scenario).decode()},
        )
        return p.stream(request)


async def _roundtable_demo(sim: Any, out: TextIO, style: _Style) -> None:
    """Two rounds of three simulated panelists in turns; one connection drops in round 2."""
    from .roundtable import (
        PanelDelta,
        Panelist,
        PanelistFailed,
        RoundtableFinished,
        TurnFinished,
        TurnStarted,
        roundtable,
    )

    panel = {
        name: Panelist(_Seat(sim, dialect, lines, drop_in=2 if name == "Cy" else 0))
        for (name, dialect), lines in _LINES.items()
    }
    out.write(style.dim(f"topic: {_TOPIC}") + "\n")
    table = roundtable(panel, _TOPIC, rounds=2, mode="turns", turn_timeout=10.0)
    async for event in to_aiter(table, window=8):
        if isinstance(event, TurnStarted):
            out.write("\n" + style.bold(f"{event.panelist}") + style.dim(f" (round {event.round})"))
            out.write("  ")
        elif isinstance(event, PanelDelta) and isinstance(event.event, TextDelta):
            out.write(event.event.text)
        elif isinstance(event, TurnFinished):
            out.write("\n")
        elif isinstance(event, PanelistFailed):
            out.write(
                style.dim(
                    f" [failed: {error_kind(event.error)}; "
                    f"{len(event.partial.text)} characters kept]"
                )
                + "\n"
            )
        elif isinstance(event, RoundtableFinished):
            turns = event.transcript.turns
            failed = sum(t.failed for t in turns)
            out.write(
                style.dim(f"\n{event.round} rounds, {len(turns)} turns, {failed} failed") + "\n"
            )
        out.flush()


# --- the extraction pipeline -----------------------------------------------------------------

_PEOPLE = "Ada Lovelace (36) leads the team, Grace Hopper, 41, manages it, Alan Turing (29) joins."


async def _extraction_demo(sim: Any, out: TextIO, style: _Style) -> None:
    """A pipeline spec (json_items, then validate with on_invalid: patch) whose primary
    answers 503: the chain falls over before the first token, each person prints as it
    closes, and the validation outcomes are counted."""
    from .chain import FallbackInfo, Hooks
    from .operators import ValidationReport
    from .pipeline import loads
    from .schema import load_schema

    person = {k: v for k, v in load_schema("person.example").items() if not k.startswith("$")}
    spec = {
        "name": "demo-extraction",
        "providers": {
            "primary": {"model": "openai/sim-extract"},
            "backup": {"model": "anthropic/sim-extract"},
        },
        "request": {
            "prompt": "Extract the people from: {text}",
            "response_schema": {
                "type": "object",
                "required": ["people"],
                "properties": {"people": {"type": "array", "items": person}},
            },
        },
        "steps": [
            {"json_items": {"prefix": "people.item"}},
            {"validate": {"schema": person, "on_invalid": "patch"}},
        ],
        "sim": {
            "primary": {"status": 503, "retry_after": 1},
            "backup": {"json_items": 5, "invalid_share": 0.4, "seed": 2, "tokens_per_second": 150},
        },
    }
    pipeline = loads(orjson.dumps(spec).decode(), format="json").with_simulator(sim)
    out.write(style.dim(f"text: {_PEOPLE}") + "\n")
    counts: dict[str, int] = {}

    def fell_over(info: FallbackInfo) -> None:
        status = getattr(info.error, "status", "")
        why = f"{info.reason} {status}".strip()
        out.write(style.dim(f"  {info.from_provider} failed ({why}) -> {info.to_provider}\n"))

    def reported(report: ValidationReport) -> None:
        counts[report.action] = counts.get(report.action, 0) + 1

    stream = pipeline.stream(
        {"text": _PEOPLE}, hooks=Hooks(on_fallback=fell_over), on_report=reported
    )
    async for item in to_aiter(stream):
        out.write(f"  {orjson.dumps(item).decode()}\n")
        out.flush()
    summary = ", ".join(f"{counts[a]} {a}" for a in ("valid", "patched", "skipped") if a in counts)
    out.write(style.dim(f"  validation: {summary}") + "\n")

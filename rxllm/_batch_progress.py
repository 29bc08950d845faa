"""The live progress line of ``rxllm batch`` and its final summary in words.

The line is redrawn in place (``\\r`` + erase line) a few times a second, on a terminal
only: rows done of the rows to do, a bar, items, tokens, the recent row rate, the ETA and
the failures::

    1,234/2,000 rows [######----]  61%  3,456 items  1.2M tok  41.3 rows/s  ETA 0:18  3 failed
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import deque
from typing import Any, Protocol, TextIO

__all__ = ["ProgressBar", "format_summary", "human_count", "human_duration"]

RATE_WINDOW = 10.0
"""Seconds of history the row rate (and so the ETA) is measured over."""


class _Stats(Protocol):
    """The counters the line shows (``rxllm.batch.BatchStats``)."""

    ok: int
    failed: int
    items: int
    running: int
    input_tokens: int
    output_tokens: int
    stopped: bool
    started: float

    @property
    def done(self) -> int: ...

    @property
    def todo(self) -> int | None: ...


def human_count(n: float) -> str:
    """``1234`` -> ``"1,234"``; from a million on ``"1.2M"`` (and ``"3.4G"``)."""
    if n >= 1e9:
        return f"{n / 1e9:.1f}G"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{int(n):,}"


def human_duration(seconds: float) -> str:
    """``78`` -> ``"1:18"``, ``3725`` -> ``"1:02:05"``."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """Redraws one status line for ``stats`` on ``stream`` every ``interval`` seconds.

    ``await bar.run()`` draws until cancelled; ``clear()`` erases the line (call it before
    printing anything else). ``render(now)`` returns the text without drawing it.
    """

    def __init__(
        self,
        stats: _Stats,
        stream: TextIO,
        *,
        interval: float = 0.2,
        items: bool = False,
        width: int | None = None,
    ) -> None:
        self.stats = stats
        self.stream = stream
        self.interval = interval
        self.items = items
        self.width = width
        self._samples: deque[tuple[float, int]] = deque()
        self._drawn = False

    def rate(self, now: float) -> float:
        """Rows per second over the last ``RATE_WINDOW`` seconds (the whole run before)."""
        done = self.stats.done
        samples = self._samples
        samples.append((now, done))
        while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW:
            samples.popleft()
        t0, d0 = samples[0]
        if now - t0 >= 1.0:
            return (done - d0) / (now - t0)
        elapsed = now - self.stats.started
        return done / elapsed if self.stats.started and elapsed > 0 else 0.0

    def render(self, now: float | None = None) -> str:
        """The status line for the moment ``now`` (``time.monotonic()``)."""
        stats = self.stats
        now = time.monotonic() if now is None else now
        rate = self.rate(now)
        done, todo = stats.done, stats.todo
        width = self.width or self._columns()
        head = f"{done:,}/{todo:,} rows" if todo is not None else f"{done:,} rows"
        tail: list[str] = []
        if self.items:
            tail.append(f"{human_count(stats.items)} items")
        tail.append(f"{human_count(stats.input_tokens + stats.output_tokens)} tok")
        tail.append(f"{rate:.1f} rows/s")
        if todo is not None and not stats.stopped:
            left = todo - done
            tail.append("ETA " + (human_duration(left / rate) if rate > 0 else "?"))
        if stats.failed:
            tail.append(f"{stats.failed:,} failed")
        if stats.stopped:
            tail.append(f"stopping: {stats.running} running")
        tail_text = "  ".join(tail)
        if todo:
            share = min(1.0, done / todo)
            room = width - len(head) - len(tail_text) - 12
            if room >= 10:
                bar_width = min(room, 30)
                filled = int(share * bar_width)
                head += f" [{'#' * filled}{'-' * (bar_width - filled)}]"
            head += f" {share * 100:3.0f}%"
        line = f"{head}  {tail_text}"
        return line[: max(0, width - 1)]

    def _columns(self) -> int:
        """The width of the terminal the line is drawn on (100 if unknown)."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return columns or shutil.get_terminal_size((100, 20)).columns

    def draw(self) -> None:
        """Redraw the line now."""
        self.stream.write("\r\x1b[2K" + self.render())
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Erase the line (if one was drawn)."""
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False

    async def run(self) -> None:
        """Redraw every ``interval`` seconds until cancelled; the line is erased on exit."""
        try:
            while True:
                self.draw()
                await asyncio.sleep(self.interval)
        finally:
            self.clear()


def format_summary(summary: dict[str, Any]) -> str:
    """The final summary (``Batch.summary()``) in a few lines of words."""
    total = summary.get("total")
    lines = []
    done = summary["ok"] + summary["failed"]
    head = f"{done:,} rows in {human_duration(summary['seconds'])}"
    head += f" ({summary['rows_per_second']:.1f} rows/s): {summary['ok']:,} ok"
    if summary["failed"]:
        kinds = ", ".join(f"{k} {n:,}" for k, n in summary["failed_kinds"].items())
        head += f", {summary['failed']:,} failed ({kinds})"
    if summary["skipped"]:
        head += f", {summary['skipped']:,} already done"
    lines.append(head)
    lines.append(
        f"{summary['requests']:,} requests ({summary['retries']:,} retries, "
        f"{summary['fallbacks']:,} fallbacks, {summary['throttled']:,} answered 429); "
        f"tokens {summary['input_tokens']:,} in, {summary['output_tokens']:,} out"
    )
    remaining = summary.get("remaining")
    if summary.get("stopped") and remaining:
        of = f" of {total:,}" if total is not None else ""
        lines.append(
            f"stopped with {remaining:,}{of} rows left: run the same command again to resume"
        )
    for name, info in summary.get("providers", {}).items():
        limits = ", ".join(f"{info[k]:g} {k}" for k in ("rps", "tpm") if info.get(k) is not None)
        lines.append(
            f"{name}: limit {limits}, {info['throttled']:,} throttled, rate now x{info['scale']:g}"
        )
    if summary.get("output"):
        lines.append(f"output: {summary['output']}")
    return "\n".join(lines)

"""Wire decoding throughput: rxllm's SSE decoder and OpenAI dialect against the floor.

Builds a deterministic (seeded) 100,000-event OpenAI Chat Completions stream shaped like real
traffic (role chunk, text chunks with ``obfuscation`` padding, finish chunk, empty-choices
usage chunk, ``data: [DONE]``) and measures events per second at 1 KiB and 16 KiB reads for:

1. the floor: keep the unterminated tail, ``split(b"\\n\\n")``, ``orjson.loads(part[6:])``
   per payload. No SSE rules and no event objects: the fastest a Python consumer can go.
2. ``rxllm.wire.Decoder.feed`` alone (SSE rules, ``SSEEvent`` objects, decoded text).
3. ``rxllm.providers.get_dialect("openai").stream_decoder(...).feed``: SSE plus OpenAI
   decoding into rxllm events, what the transport runs per read.

The cases run interleaved, 11 times, after a warm-up. Each rate is the median of its runs;
each ratio is the median of the per-run ratios to the floor run just before (paired, so load
from other processes cancels out). The target is (3) / (1) >= 1 / 1.5 at both read sizes.
The figures are appended to ``benchmarks/RESULTS.md`` under ``## bench_wire``.

Run: ``.venv/bin/python benchmarks/bench_wire.py`` (well under a minute; ``--no-record``
prints without appending to RESULTS.md). The exit status is 1 when the target is missed.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import random
import re
import statistics
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from rxllm.events import TextDelta
from rxllm.providers import get_dialect
from rxllm.wire import Decoder

EVENTS = 100_000
READ_SIZES = (1024, 16 * 1024)
RUNS = 11
TARGET = 1 / 1.5
SEED = 20240917
RESULTS = Path(__file__).with_name("RESULTS.md")

# Token texts of realistic lengths: mostly a leading space and a short word, some
# punctuation and line breaks, some non-ASCII (accents, CJK, emoji).
_WORDS: list[str] = re.findall(
    r"\w+",
    "the of and to in is that for it as with was on be by this are from or at an which "
    "model stream token response request provider latency reactive operator observable "
    "function returns value error retry fallback schema validate structured output "
    "however therefore example because between different important information",
)
_NON_ASCII = ["é", " café", " naïve", " Übergröße", "中文", "字", " 東京", " 😀", "—", " «ok»"]
_PUNCT = [".", ",", ":", ";", "!", "?", "\n", "\n\n", " (", ")", '"', " -", "'s"]


def _token(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.05:
        return rng.choice(_NON_ASCII)
    if r < 0.20:
        return rng.choice(_PUNCT)
    word = rng.choice(_WORDS)
    if r < 0.30 and len(word) > 4:  # a word split into sub-word tokens
        return " " + word[: rng.randint(2, len(word) - 2)]
    return " " + word if r < 0.92 else word.capitalize()


def build_stream(seed: int = SEED, events: int = EVENTS) -> tuple[bytes, str]:
    """Return (the SSE body, the concatenated assistant text) of an ``events``-event stream."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    base = {
        "id": "chatcmpl-" + "".join(rng.choice(alphabet) for _ in range(29)),
        "object": "chat.completion.chunk",
        "created": 1726570000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_" + "".join(rng.choice("0123456789abcdef") for _ in range(10)),
    }

    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        body = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "obfuscation": "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))),
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    parts = [chunk({"role": "assistant", "content": ""}, None)]
    texts: list[str] = []
    for _ in range(events - 4):  # role, finish, usage and [DONE] make up the rest
        text = _token(rng)
        texts.append(text)
        parts.append(chunk({"content": text}, None))
    parts.append(chunk({}, "stop"))
    usage = {
        **base,
        "choices": [],
        "usage": {
            "prompt_tokens": 812,
            "completion_tokens": events - 4,
            "total_tokens": 812 + events - 4,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "obfuscation": "xK2",
    }
    parts.append(b"data: " + orjson.dumps(usage) + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts), "".join(texts)


def split(body: bytes, size: int) -> list[bytes]:
    """Cut ``body`` into reads of ``size`` bytes, as a socket would deliver it."""
    return [body[i : i + size] for i in range(0, len(body), size)]


def floor(reads: list[bytes]) -> int:
    """The floor: tail + split on blank lines + one orjson.loads per payload."""
    loads = orjson.loads
    tail = b""
    n = 0
    for read in reads:
        parts = (tail + read).split(b"\n\n")
        tail = parts.pop()
        for part in parts:
            payload = part[6:]
            if payload != b"[DONE]":
                loads(payload)
            n += 1
    return n


def sse_only(reads: list[bytes]) -> int:
    """rxllm.wire.Decoder.feed: SSE rules and SSEEvent objects."""
    feed = Decoder().feed
    n = 0
    for read in reads:
        n += len(feed(read))
    return n


def sse_openai(reads: list[bytes]) -> int:
    """The OpenAI dialect's stream decoder: SSE plus OpenAI decoding into rxllm events."""
    decoder = get_dialect("openai").stream_decoder(content_type="text/event-stream")
    feed = decoder.feed
    n = 0
    for read in reads:
        n += len(feed(read))
    decoder.finish()
    if decoder.error is not None:
        raise RuntimeError(f"the stream failed: {decoder.error!r}")
    return n


FLOOR = "floor (split + orjson)"
RXLLM = "rxllm SSE + OpenAI"
CASES: dict[str, Callable[[list[bytes]], int]] = {
    FLOOR: floor,
    "rxllm Decoder.feed": sse_only,
    RXLLM: sse_openai,
}
"""Case name -> function, in the order each round runs them (the floor first)."""


def check(body: bytes, text: str) -> None:
    """Every case must decode the whole stream correctly before it is timed."""
    for size in READ_SIZES:
        reads = split(body, size)
        assert floor(reads) == EVENTS
        assert sse_only(reads) == EVENTS
        decoder = get_dialect("openai").stream_decoder(content_type="text/event-stream")
        events = [e for r in reads for e in decoder.feed(r)]
        got = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert got == text, "the OpenAI decoder lost or changed text"
        assert decoder.done, "the OpenAI decoder did not see [DONE]"
        assert decoder.error is None, decoder.error


Samples = dict[tuple[str, int], list[float]]
"""(case, read size) -> events/s of each run, in run order."""


def measure(body: bytes) -> Samples:
    """Events/s of every run of each case at each read size, interleaved after a warm-up."""
    reads = {size: split(body, size) for size in READ_SIZES}
    for size in READ_SIZES:  # warm-up
        for fn in CASES.values():
            fn(reads[size])
    samples: Samples = {(name, size): [] for name in CASES for size in READ_SIZES}
    for _ in range(RUNS):
        for size in READ_SIZES:
            for name, fn in CASES.items():
                gc.collect()
                start = time.perf_counter()
                n = fn(reads[size])
                elapsed = time.perf_counter() - start
                samples[name, size].append(n / elapsed)
    return samples


def ratio(samples: Samples, name: str, size: int) -> float:
    """Median over runs of the case's rate divided by the floor's rate in the same run.

    Pairing each run with the floor run just before it cancels most of the drift that other
    processes on the machine cause; the medians of the rates are printed beside it.
    """
    pairs = zip(samples[name, size], samples[FLOOR, size], strict=True)
    return statistics.median(rate / base for rate, base in pairs)


def table(samples: Samples, body: bytes) -> str:
    """A Markdown table of the median rates, with each case's paired ratio to the floor."""
    lines = [
        f"{EVENTS:,} events, {len(body) / 1e6:.1f} MB; {RUNS} interleaved runs: median "
        f"events/s, and the median of each run's ratio to the floor run beside it; "
        f"target for SSE + OpenAI: >= {TARGET:.3f} of the floor.",
        "",
        "| case | read | events/s | ratio to floor |",
        "| --- | ---: | ---: | ---: |",
    ]
    for size in READ_SIZES:
        for name in CASES:
            rate = statistics.median(samples[name, size])
            lines.append(
                f"| {name} | {size // 1024} KiB | {rate:,.0f} | {ratio(samples, name, size):.3f} |"
            )
    verdicts = []
    for size in READ_SIZES:
        r = ratio(samples, RXLLM, size)
        verdicts.append(f"{size // 1024} KiB: {r:.3f} ({'met' if r >= TARGET else 'MISSED'})")
    lines += ["", "SSE + OpenAI vs floor: " + ", ".join(verdicts)]
    return "\n".join(lines)


def append_results(text: str) -> None:
    """Append this run to benchmarks/RESULTS.md under ``## bench_wire`` (never rewriting)."""
    header = (
        f"\n## bench_wire\n\n"
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- command: `.venv/bin/python benchmarks/bench_wire.py`\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.machine()}, orjson {orjson.__version__}\n\n"
    )
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n", encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(header + text + "\n")


def main() -> int:
    """Build, check, measure, print and record; exit 1 when the target is missed."""
    body, text = build_stream()
    check(body, text)
    load = os.getloadavg()[0]
    samples = measure(body)
    report = table(samples, body) + (
        f"\n\nLoad average (1 min) before / after: {load:.2f} / {os.getloadavg()[0]:.2f}."
    )
    print(report)
    if "--no-record" not in sys.argv:
        append_results(report)
        print(f"\nappended to {RESULTS}")
    met = all(ratio(samples, RXLLM, size) >= TARGET for size in READ_SIZES)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

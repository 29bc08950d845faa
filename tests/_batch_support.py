"""Test support for rxllm.batch: a small Pipeline on a real Chain, and the rate proof.

``ChainPipeline`` implements ``rxllm.batch.Pipeline`` with real ``rxllm.provider(...)``s
pointed at the simulator. Each row may name its own ``model`` (``row-<id>``), so the
simulator's request log carries the row id and can pick a per-row scenario.

``pipeline()`` builds one from environment variables, so ``rxllm batch
tests._batch_support:pipeline`` runs in a subprocess against a simulator the test owns.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson
from reactivex import Observable
from reactivex import operators as rx

import rxllm
from rxllm import operators as ops
from rxllm.chain import BreakerPolicy, Chain, Hooks, RetryPolicy
from rxllm.events import Event, TextDelta
from rxllm.request import Request

FAST_RETRY = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05, jitter=0.0)

PEOPLE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    },
}


@dataclass(frozen=True, kw_only=True)
class ChainPipeline:
    """A ``Pipeline``: ``{prompt}`` of each row to a ``Chain`` of the providers."""

    providers: Mapping[str, Any]
    output: Literal["text", "items", "events"] = "text"
    name: str = "test"
    retry: RetryPolicy | None = FAST_RETRY
    breaker: BreakerPolicy | None = None
    first_token_timeout: float | None = None
    streams: list[Request] = field(default_factory=list, compare=False)

    def request(self, row: Mapping[str, Any] | str) -> Request:
        """The request of a row: its ``prompt`` (or id), its own ``model`` if it has one."""
        if isinstance(row, str):
            row = {"prompt": row}
        prompt = str(row.get("prompt", f"row {row.get('id')}"))
        schema = PEOPLE_SCHEMA if self.output == "items" else None
        return Request.of(prompt, model=row.get("model"), response_schema=schema)

    def stream(
        self,
        row: Mapping[str, Any] | str,
        *,
        hooks: Hooks | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> Observable[Any]:
        """The answer to ``row``: text deltas, items or events."""
        request = self.request(row)
        chain = Chain(
            list(self.providers.values()),
            retry=self.retry,
            breaker=self.breaker,
            hooks=hooks,
            first_token_timeout=self.first_token_timeout,
        )
        source: Observable[Any] = chain.stream(request)
        if on_event is not None:
            source = source.pipe(rx.do_action(on_event))
        if self.output == "text":
            return source.pipe(rx.filter(lambda e: isinstance(e, TextDelta)), rx.map(_text))
        if self.output == "items":
            return source.pipe(ops.json_items("item"))
        return source

    def with_providers(self, wrap: Callable[[Any], Any]) -> ChainPipeline:
        """Every provider replaced by ``wrap(provider)``."""
        return replace(self, providers={k: wrap(p) for k, p in self.providers.items()})

    def with_base_urls(self, base_url_for: Callable[[Any], str]) -> ChainPipeline:
        """Every provider pointed at ``base_url_for(provider)``."""
        return replace(
            self,
            providers={
                k: p.with_options(base_url=base_url_for(p)) for k, p in self.providers.items()
            },
        )


def _text(event: Any) -> str:
    text: str = event.text
    return text


def sim_pipeline(
    base_url: str, models: Iterable[str] = ("default",), **options: Any
) -> ChainPipeline:
    """A ``ChainPipeline`` over OpenAI-dialect providers of ``models`` at ``base_url``."""
    providers = {
        m: rxllm.provider(f"openai/{m}", base_url=base_url, api_key="sk-sim-not-a-key")
        for m in models
    }
    return ChainPipeline(providers=providers, **options)


def pipeline() -> ChainPipeline:
    """The pipeline of ``rxllm batch tests._batch_support:pipeline`` (for subprocesses):
    ``RXLLM_TEST_SIM`` is the simulator's OpenAI base URL, ``RXLLM_TEST_OUTPUT`` the
    output kind (text)."""
    output: Any = os.environ.get("RXLLM_TEST_OUTPUT", "text")
    return sim_pipeline(os.environ["RXLLM_TEST_SIM"], output=output)


def not_a_pipeline() -> int:
    """Something that is not a Pipeline (for the CLI's error path)."""
    return 42


def max_in_any_window(times: Iterable[float], window: float = 1.0) -> int:
    """The most arrivals in any window ``[t, t + window)``: every window starting at an
    arrival is checked (the maximum is always attained at one of them)."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + window, lo=i) - i)
    return best


def write_rows(path: Any, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` as JSON lines."""
    with open(path, "wb") as f:
        for row in rows:
            f.write(orjson.dumps(row) + b"\n")


def read_output(path: Any) -> list[dict[str, Any]]:
    """Every line of a batch output (each must parse: no torn line)."""
    with open(path, "rb") as f:
        data = f.read()
    assert not data or data.endswith(b"\n"), "the output ends inside a line"
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]

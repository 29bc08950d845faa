"""Structured output over loopback HTTP: the simulator writes a share of invalid items."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import rxllm
from rxllm import operators as ops
from rxllm.errors import ValidationHalted
from rxllm.operators import ValidationReport, ValidationStats
from rxllm.sim import Scenario, Simulator, invalid_items, json_document

ITEM = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "default": 0},
        "city": {"type": "string"},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "properties": {"people": {"type": "array", "items": ITEM}},
    "required": ["people"],
}
N = 40
SHARE = 0.25


def _items() -> tuple[list[dict[str, Any]], set[int]]:
    document = orjson.loads(json_document(SCHEMA, N, invalid_share=SHARE))
    return document["people"], set(invalid_items(N, share=SHARE))


async def _drain_into(source: Any, got: list[Any]) -> None:
    async for item in rxllm.to_aiter(source):
        got.append(item)  # noqa: PERF401 - keep what arrived before an error


def _stream(sim: Simulator, dialect: str, **scenario: Any) -> Any:
    sim.set_scenario("people", Scenario(json_items=N, invalid_share=SHARE, **scenario))
    p = rxllm.provider(
        f"{dialect}/people", base_url=sim.base_url(dialect), api_key="sk-test-key-0000"
    )
    return p.stream(rxllm.Request.of("List the people.", response_schema=SCHEMA))


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini", "ollama"])
async def test_skip_delivers_exactly_the_valid_items(rxllm_sim: Simulator, dialect: str) -> None:
    """skip: the consumer gets exactly the valid items, in order; each invalid one is reported."""
    items, bad = _items()
    assert bad  # the share produced invalid items
    reports: list[ValidationReport] = []
    stats = ValidationStats()
    got = [
        item
        async for item in rxllm.to_aiter(
            _stream(rxllm_sim, dialect).pipe(
                ops.json_items("people.item"),
                ops.validate(ITEM, on_invalid="skip", on_report=reports.append, stats=stats),
            )
        )
    ]
    assert got == [item for i, item in enumerate(items) if i not in bad]
    assert sorted(r.index for r in reports if r.action == "skipped") == sorted(bad)
    assert all(r.errors for r in reports if r.action == "skipped")
    assert (stats.valid, stats.skipped) == (N - len(bad), len(bad))


async def test_halt_stops_at_the_first_invalid_item_and_disconnects(
    rxllm_sim: Simulator,
) -> None:
    """halt: items before the first invalid one, then ValidationHalted; the request is closed."""
    items, bad = _items()
    first_bad = min(bad)
    got: list[Any] = []
    source = _stream(rxllm_sim, "openai", tokens_per_second=400).pipe(
        ops.json_items("people.item"), ops.validate(ITEM, on_invalid="halt")
    )
    with pytest.raises(ValidationHalted) as info:
        await _drain_into(source, got)
    assert got == items[:first_bad]
    assert info.value.index == first_bad
    assert info.value.errors
    assert await rxllm_sim.stats.wait_for(lambda s: s.disconnects == 1, within=1.0)
    assert rxllm_sim.stats.streams_completed == 0


async def test_patch_repairs_the_repairable_and_reports_each_patch(
    rxllm_sim: Simulator,
) -> None:
    """patch: a missing age gets its default, a numeric name becomes a string; the rest skip."""
    items, bad = _items()
    reports: list[ValidationReport] = []
    got = [
        item
        async for item in rxllm.to_aiter(
            _stream(rxllm_sim, "anthropic").pipe(
                ops.json_items("people.item"),
                ops.validate(ITEM, on_invalid="patch", on_report=reports.append),
            )
        )
    ]
    patched = {r.index: r for r in reports if r.action == "patched"}
    skipped = {r.index for r in reports if r.action == "skipped"}
    assert patched
    assert set(patched) | skipped == bad
    for index, report in patched.items():
        assert report.patch
        assert all(op["op"] in ("add", "replace", "remove") for op in report.patch)
        original = items[index]
        if "age" not in original:
            assert {"op": "add", "path": "/age", "value": 0} in report.patch
        if isinstance(original.get("name"), int):
            assert {"op": "replace", "path": "/name", "value": str(original["name"])} in (
                report.patch
            )
    # Every valid item, and every patched one, reaches the consumer in order.
    kept = [i for i in range(N) if i not in skipped]
    assert len(got) == len(kept)
    for i, item in zip(kept, got, strict=True):
        if i not in bad:
            assert item == items[i]

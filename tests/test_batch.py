"""``rxllm.batch``: rows through a pipeline, rate-limited per provider, resumable."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import rxllm
from rxllm import batch
from rxllm._batch_rate import Grant, RateState
from rxllm.batch import RateLimit, RowResult
from rxllm.chain import RetryPolicy, reset_registry
from rxllm.errors import ConfigError
from rxllm.sim import Scenario, Simulator, serve

from ._batch_support import (
    ChainPipeline,
    max_in_any_window,
    read_output,
    sim_pipeline,
    write_rows,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


async def collect_all(run: batch.Batch) -> list[RowResult]:
    """Every result of a batch, closing it at the end."""
    async with run:
        return [result async for result in run]


def arrivals(sim: Simulator, model: str | None = None) -> list[float]:
    """Arrival times of the simulator's requests (for ``model`` only, if given)."""
    return [r.arrival for r in sim.stats.log if model is None or r.model == model]


def requests_per_row(sim: Simulator) -> Counter[str]:
    """Requests per row id, from the per-row model names ``row-<id>``."""
    return Counter(r.model.removeprefix("row-") for r in sim.stats.log)


def rows(n: int, **extra: Any) -> list[dict[str, Any]]:
    """``n`` rows, each asking for its own model ``row-<id>``."""
    return [{"id": i, "model": f"row-{i}", **extra} for i in range(n)]


# --- the rate limiter, in virtual time ------------------------------------------------------


def drive(state: RateState, until: float, *, lag: float = 0.0, start: float = 0.0) -> list[float]:
    """Grant as soon as the state allows, waking ``lag`` seconds late each time."""
    now, granted = start, []
    while now < until:
        wait = state.delay(now)
        if wait > 0:
            now += wait + lag
            continue
        state.grant(now)
        granted.append(now)
    return granted


def test_rate_state_never_exceeds_rps_in_any_second_and_paces_evenly() -> None:
    """Grants stay within rps in every one-second window and are spread out, not bursted."""
    state = RateState(RateLimit(rps=20))
    granted = drive(state, 10.0)
    assert max_in_any_window(granted) <= 20
    assert len(granted) >= 10 * 20 / 1.05 - 2
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert min(gaps) >= 0.9 * 1.05 / 20  # no bursts


def test_rate_state_catches_up_when_the_loop_wakes_late() -> None:
    """Timer lag does not lower the rate, and the cap still holds."""
    state = RateState(RateLimit(rps=50))
    granted = drive(state, 10.0, lag=0.004)
    assert max_in_any_window(granted) <= 50
    assert len(granted) >= 0.97 * 10 * 50 / 1.05


def test_rate_state_halves_on_429_honours_retry_after_and_recovers_slowly() -> None:
    """A 429 pauses for its retry_after, halves the rate, which then climbs back to full."""
    state = RateState(RateLimit(rps=100, recover=0.1))
    granted = drive(state, 2.0)
    assert state.on_throttled(2.0, Grant(granted[-1], 0), retry_after=0.5)
    assert state.delay(2.0) == pytest.approx(0.5)
    assert state.scale(2.5) == 0.5
    assert state.scale(3.5) == pytest.approx(0.6)
    assert state.scale(7.5) == 1.0
    later = drive(state, 7.5, start=2.5)
    assert later[0] >= 2.5
    first_second = [t for t in later if t < 3.5]
    assert len(first_second) <= 0.55 * 100 + 2  # about half the rate right after the pause
    last_second = [t for t in later if 6.5 <= t < 7.5]
    assert len(last_second) >= 0.9 * 100 / 1.05


def test_rate_state_decreases_once_per_burst_and_never_below_the_floor() -> None:
    """A burst of 429s for requests sent at the old rate halves once; the floor holds."""
    state = RateState(RateLimit(rps=64, min_scale=0.25, cooldown=1.0, recover=0.0))
    old = [state.grant(0.01 * i) for i in range(5)]
    assert state.on_throttled(0.1, old[0], None)
    assert not any(state.on_throttled(0.1 + 0.01 * i, g, None) for i, g in enumerate(old[1:]))
    assert state.scale(0.2) == 0.5
    newer = state.grant(2.0)
    assert not state.on_throttled(0.5, newer, None)  # within the cooldown
    assert state.on_throttled(2.5, newer, None)
    assert state.scale(2.5) == 0.25
    assert state.on_throttled(4.0, state.grant(3.9), None)
    assert state.scale(4.0) == 0.25  # the floor
    assert (state.throttled, state.decreases) == (8, 3)


def test_rate_state_reserves_tokens_and_settles_them_to_usage() -> None:
    """Tokens are reserved by estimate, corrected to usage, and expire after a minute."""
    state = RateState(RateLimit(tpm=1000))
    grant = state.grant(0.0, 600)
    assert state.delay(1.0, 600) == pytest.approx(59.0)
    state.settle(grant, 100)
    assert state.delay(1.0, 600) == 0
    state.grant(1.0, 900)
    assert state.delay(2.0, 5000) == pytest.approx(59.0)  # bigger than the budget: alone
    assert state.delay(61.0, 5000) == 0


def test_rate_state_refund_frees_the_slot() -> None:
    """A refunded grant no longer counts against the cap or the token budget."""
    state = RateState(RateLimit(rps=1, tpm=100, margin=0.0))
    grant = state.grant(0.0, 80)
    assert state.delay(0.5, 50) == pytest.approx(59.5)  # the token budget binds
    state.refund(grant)
    assert state.delay(0.5, 50) == pytest.approx(0.5)  # only the pacing is left
    assert state.delay(1.0, 100) == 0


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"rps": 0}, {"tpm": -1}, {"rps": math.inf}, {"rps": 1, "backoff": 0}],
)
def test_rate_limit_rejects_impossible_settings(kwargs: dict[str, Any]) -> None:
    """A RateLimit without a limit, or with impossible numbers, is a ConfigError."""
    with pytest.raises(ConfigError):
        RateLimit(**kwargs)


# --- acceptance: 2,000 rows over loopback HTTP ----------------------------------------------


@pytest.mark.slow
async def test_two_thousand_rows_with_429s_and_400s(tmp_path: Path) -> None:
    """Every row once; 400s failed as bad_request; retries bounded; the rate never exceeded."""
    n, rps = 2000, 500
    throttled = {f"row-{i}" for i in range(3, n, 20)}  # 5%: a 429 once, with Retry-After
    refused = {f"row-{i}" for i in range(11, n, 100)}  # 1%: always 400
    scenarios: dict[str, Any] = {
        m: Scenario(status=429, retry_after=0.05, fail_times=1, tokens=4) for m in throttled
    }
    scenarios.update({m: Scenario(status=400) for m in refused})
    out = tmp_path / "out.jsonl"
    retry = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05, jitter=0.0)
    async with serve(scenarios=scenarios, default=Scenario(tokens=4)) as sim:
        pipe = sim_pipeline(sim.base_url("openai"), retry=retry)
        run = batch.run(
            pipe,
            rows(n),
            output=out,
            concurrency=64,
            rate=RateLimit(rps=rps, recover=0.5),
        )
        results = await collect_all(run)
        log = list(sim.stats.log)
    lines = read_output(out)
    assert sorted(line["id"] for line in lines) == list(range(n))
    assert len(results) == n
    failed = {f"row-{line['id']}": line for line in lines if line["status"] == "failed"}
    assert set(failed) == refused
    assert all(line["error"]["kind"] == "bad_request" for line in failed.values())
    assert all(line["error"]["status"] == 400 for line in failed.values())
    retried = [line for line in lines if len(line["attempts"]) == 2]
    assert {f"row-{line['id']}" for line in retried} == throttled
    assert all(line["attempts"][0]["status"] == 429 for line in retried)
    assert all(line["text"] and line["usage"]["output_tokens"] == 4 for line in retried)
    assert len(log) == n + len(throttled) <= (1 + retry.attempts - 1) * n
    assert max_in_any_window(r.arrival for r in log) <= rps
    assert run.stats.throttled == len(throttled)
    assert run.limiters["openai/default"].state.decreases >= 1


# --- rate limits apply to every attempt -----------------------------------------------------


async def test_retries_and_fallbacks_are_rate_limited_per_provider(tmp_path: Path) -> None:
    """Each provider's limit holds for retries and fallbacks too, counted per provider."""
    scenarios = {"down": Scenario(status=503), "up": Scenario(tokens=3)}
    async with serve(scenarios=scenarios) as sim:
        pipe = sim_pipeline(
            sim.base_url("openai"),
            models=("down", "up"),
            retry=RetryPolicy(attempts=2, wait_initial=0.001, jitter=0.0),
        )
        rate = {"openai/down": RateLimit(rps=40), "up": RateLimit(rps=20)}
        run = batch.run(pipe, [{"id": i} for i in range(30)], concurrency=30, rate=rate)
        results = await collect_all(run)
        down, up = arrivals(sim, "down"), arrivals(sim, "up")
    assert all(r.ok and r.provider == "openai/up" for r in results)
    assert all(
        [a.outcome for a in r.attempts] == ["server_error"] * 2 + ["success"] for r in results
    )
    assert (len(down), len(up)) == (60, 30)
    assert max_in_any_window(down) <= 40
    assert max_in_any_window(up) <= 20
    assert run.stats.fallbacks == 30
    assert run.stats.retries == 30


async def test_a_429_pauses_the_provider_for_its_retry_after() -> None:
    """After a 429 with Retry-After, no new request reaches that provider until it passed."""
    scenarios = {"row-0": Scenario(status=429, retry_after=0.3, fail_times=1, tokens=2)}
    async with serve(scenarios=scenarios, default=Scenario(tokens=2)) as sim:
        pipe = sim_pipeline(sim.base_url("openai"), retry=RetryPolicy(attempts=2))
        run = batch.run(pipe, rows(30), concurrency=4, rate=RateLimit(rps=100))
        results = await collect_all(run)
        log = list(sim.stats.log)
    assert all(r.ok for r in results)
    (refused,) = [r.arrival for r in log if r.status == 429]
    quiet = [r.arrival for r in log if refused + 0.05 <= r.arrival <= refused + 0.25]
    assert quiet == []
    assert run.limiters["openai/default"].state.decreases == 1


async def test_token_reservations_are_settled_to_the_reported_usage() -> None:
    """With a tpm limit each request's estimate is replaced by the tokens it really used."""
    async with serve(default=Scenario(tokens=5)) as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        run = batch.run(pipe, rows(6), rate=RateLimit(tpm=100_000))
        results = await collect_all(run)
    used = sum(r.usage.total_tokens for r in results if r.usage and r.usage.total_tokens)
    limiter = run.limiters["openai/default"]
    assert used > 0
    assert limiter.state.reserved_tokens == used
    assert limiter.mean_output == 5


async def test_waiting_for_the_limit_does_not_count_against_the_first_token_timeout() -> None:
    """Rows queue for the rate limit before their chain starts, so none times out."""
    async with serve(default=Scenario(tokens=3)) as sim:
        pipe = sim_pipeline(
            sim.base_url("openai"), retry=RetryPolicy(attempts=1), first_token_timeout=0.3
        )
        run = batch.run(pipe, rows(12), concurrency=12, rate=RateLimit(rps=10))
        results = await collect_all(run)
    assert [r.error for r in results if not r.ok] == []
    assert all(len(r.attempts) == 1 for r in results)
    assert sim.stats.requests == 12


# --- output, resume ------------------------------------------------------------------------


async def test_each_output_line_holds_text_usage_provider_and_attempts(tmp_path: Path) -> None:
    """An ok row's line has the text, usage, answering provider and its attempts."""
    out = tmp_path / "out.jsonl"
    async with serve(default=Scenario(text="Hello there")) as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        results = await collect_all(batch.run(pipe, [{"id": "a", "prompt": "hi"}], output=out))
    (line,) = read_output(out)
    assert line["id"] == "a"
    assert line["status"] == "ok"
    assert line["text"] == "Hello there"
    assert line["usage"] == {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}
    assert line["provider"] == "openai/default"
    assert [a["outcome"] for a in line["attempts"]] == ["success"]
    assert "error" not in line
    assert orjson.loads(results[0].to_json()) == line


async def test_items_pipeline_writes_the_items_and_counts_them(tmp_path: Path) -> None:
    """An items pipeline records each row's parsed items; stats count them."""
    out = tmp_path / "out.jsonl"
    async with serve(default=Scenario(json_items=3)) as sim:
        pipe = sim_pipeline(sim.base_url("openai"), output="items")
        run = batch.run(pipe, rows(4), output=out)
        await collect_all(run)
    lines = read_output(out)
    assert all(len(line["items"]) == 3 and "name" in line["items"][0] for line in lines)
    assert run.stats.items == 12


async def test_events_pipeline_writes_the_folded_response(tmp_path: Path) -> None:
    """An events pipeline records the folded response (text, finish reason)."""
    out = tmp_path / "out.jsonl"
    async with serve(default=Scenario(text="Folded.")) as sim:
        pipe = sim_pipeline(sim.base_url("openai"), output="events")
        await collect_all(batch.run(pipe, rows(2), output=out))
    lines = read_output(out)
    assert [line["response"]["text"] for line in lines] == ["Folded."] * 2
    assert lines[0]["response"]["finish_reason"] == "stop"
    assert lines[0]["usage"]["output_tokens"] == 2


async def test_rerun_skips_rows_already_done_and_truncates_a_torn_last_line(
    tmp_path: Path,
) -> None:
    """A rerun requests only the missing rows; a partial last line is dropped and redone."""
    out = tmp_path / "out.jsonl"
    src = tmp_path / "rows.jsonl"
    write_rows(src, rows(10))
    async with serve(default=Scenario(tokens=2)) as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        await collect_all(batch.run(pipe, src, output=out))
        assert sim.stats.requests == 10
        lines = out.read_bytes().splitlines(keepends=True)
        torn = lines[6][: len(lines[6]) // 2]
        out.write_bytes(b"".join(lines[:6]) + torn)  # rows 6..9 lost, the 7th torn
        sim.reset()
        run = batch.run(pipe, src, output=out)
        await collect_all(run)
        again = requests_per_row(sim)
    redo = {orjson.loads(line)["id"] for line in lines[6:]}
    assert set(again) == {str(i) for i in redo}
    assert set(again.values()) == {1}
    assert (run.stats.total, run.stats.skipped, run.stats.ok) == (10, 6, 4)
    assert sorted(line["id"] for line in read_output(out)) == list(range(10))


async def test_retry_failed_runs_failed_rows_again_and_keeps_one_line_per_id(
    tmp_path: Path,
) -> None:
    """With retry_failed the failed rows' lines are replaced; ok rows are not requested."""
    out = tmp_path / "out.jsonl"
    async with serve(scenarios={"row-2": Scenario(status=400)}) as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        await collect_all(batch.run(pipe, rows(4), output=out))
        assert [line["status"] for line in read_output(out)].count("failed") == 1
        sim.reset()
        await collect_all(batch.run(pipe, rows(4), output=out))
        assert sim.stats.requests == 0  # failed rows count as done by default
        sim.set_scenario("row-2", None)
        await collect_all(batch.run(pipe, rows(4), output=out, retry_failed=True))
        assert requests_per_row(sim) == Counter({"2": 1})
    lines = read_output(out)
    assert sorted(line["id"] for line in lines) == [0, 1, 2, 3]
    assert all(line["status"] == "ok" for line in lines)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": 1}\n{"prompt": "no id"}\n', "no 'id' field"),
        (b'{"id": 1}\n{"id": 1}\n', "appears twice"),
        (b'{"id": 1}\n{"id": 1.5}\n', "string or an integer"),
        (b'{"id": 1}\nnot json\n', "not JSON"),
        (b'{"id": 1}\n[1, 2]\n', "JSON object"),
    ],
)
async def test_bad_input_rows_fail_before_any_request(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """A row without a usable unique id is reported, with its line, before anything is sent."""
    src = tmp_path / "rows.jsonl"
    src.write_bytes(content)
    async with serve() as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        with pytest.raises(ConfigError, match=message) as info:
            await collect_all(batch.run(pipe, src, output=tmp_path / "out.jsonl"))
        assert sim.stats.requests == 0
    assert f"{src}:2" in str(info.value)


async def test_a_custom_id_field_names_the_ids(tmp_path: Path) -> None:
    """id_field picks the field holding ids; the output calls it id."""
    out = tmp_path / "out.jsonl"
    async with serve() as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        data = [{"key": "x"}, {"key": "y"}]
        await collect_all(batch.run(pipe, data, output=out, id_field="key"))
    assert sorted(line["id"] for line in read_output(out)) == ["x", "y"]


async def test_an_output_that_is_not_batch_output_is_refused(tmp_path: Path) -> None:
    """An existing file of other JSON is not appended to."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"hello": "world"}\n')
    async with serve() as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        with pytest.raises(ConfigError, match="not a line of rxllm batch output"):
            await collect_all(batch.run(pipe, rows(1), output=out))
    assert out.read_bytes() == b'{"hello": "world"}\n'


async def test_two_batches_cannot_write_the_same_output(tmp_path: Path) -> None:
    """The output is locked while a batch writes to it."""
    out = tmp_path / "out.jsonl"
    async with serve(default=Scenario(tokens=2, tokens_per_second=20)) as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        async with batch.run(pipe, rows(2), output=out):
            with pytest.raises(ConfigError, match="another batch"):
                await collect_all(batch.run(pipe, rows(2), output=out))


async def test_lazy_and_async_row_sources_are_checked_as_they_come() -> None:
    """Generators work; a repeated id met later stops the batch with an error."""

    async def agen() -> AsyncIterator[dict[str, Any]]:
        for i in (0, 1, 2, 1):
            yield {"id": i}

    async with serve() as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        results = await collect_all(batch.run(pipe, ({"id": i} for i in range(3))))
        assert sorted(r.id for r in results) == [0, 1, 2]
        with pytest.raises(ConfigError, match="appears twice"):
            await collect_all(batch.run(pipe, agen(), concurrency=1))


async def test_a_row_the_pipeline_cannot_take_fails_alone() -> None:
    """An error building one row's stream fails that row; the others go on."""

    class Picky(ChainPipeline):
        def request(self, row: Any) -> rxllm.Request:
            if row["id"] == 1:
                raise ConfigError("row 1 is not welcome")
            return super().request(row)

    async with serve() as sim:
        base = sim_pipeline(sim.base_url("openai"))
        pipe = Picky(providers=base.providers)
        results = {r.id: r for r in await collect_all(batch.run(pipe, rows(3)))}
    assert results[1].error == "config"
    assert results[1].message == "row 1 is not welcome"
    assert results[0].ok
    assert results[2].ok


# --- stopping ------------------------------------------------------------------------------


async def test_stop_takes_no_new_rows_and_lets_running_ones_finish(tmp_path: Path) -> None:
    """After stop(), rows in flight complete and are written; a rerun does the rest once."""
    out = tmp_path / "out.jsonl"
    async with serve(default=Scenario(tokens=6, tokens_per_second=40)) as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        run = batch.run(pipe, rows(20), output=out, concurrency=4)
        async with run:
            async for _ in run:
                run.stop()
        first = read_output(out)
        assert 1 < len(first) < 20
        assert sim.stats.disconnects == 0
        assert sorted(requests_per_row(sim)) == sorted(str(line["id"]) for line in first)
        await collect_all(batch.run(pipe, rows(20), output=out, concurrency=4))
        per_row = requests_per_row(sim)
    assert sorted(line["id"] for line in read_output(out)) == list(range(20))
    assert set(per_row.values()) == {1}


async def test_cancel_closes_running_requests_and_leaves_them_for_a_rerun(
    tmp_path: Path,
) -> None:
    """cancel() disposes the rows in flight (their connections close) without writing them."""
    out = tmp_path / "out.jsonl"
    slow = Scenario(tokens=2, first_token_delay=30)
    async with serve(default=Scenario(tokens=2), scenarios={"row-3": slow}) as sim:
        pipe = sim_pipeline(sim.base_url("openai"))
        run = batch.run(pipe, rows(4), output=out, concurrency=4)
        async with run:
            async for _ in run:
                if run.stats.done == 3:
                    run.cancel()
        assert await sim.stats.wait_for(lambda s: s.disconnects == 1, within=2.0)
        assert run.stats.cancelled == 1
        assert sorted(line["id"] for line in read_output(out)) == [0, 1, 2]
        sim.set_scenario("row-3", None)
        await collect_all(batch.run(pipe, rows(4), output=out))
    assert sorted(line["id"] for line in read_output(out)) == [0, 1, 2, 3]


# --- real spec files ----------------------------------------------------------------------


async def test_a_spec_file_pipeline_runs_over_its_example_rows(tmp_path: Path) -> None:
    """examples/extract_people.yaml over examples/rows.jsonl: one line of items per row."""
    pipeline = pytest.importorskip("rxllm.pipeline")
    spec = pipeline.load(EXAMPLES / "extract_people.yaml")
    out = tmp_path / "out.jsonl"
    src = EXAMPLES / "rows.jsonl"
    ids = [orjson.loads(line)["id"] for line in src.read_bytes().splitlines() if line.strip()]
    async with serve() as sim:
        pipe = spec.with_simulator(sim)
        run = batch.run(pipe, src, output=out, concurrency=len(ids), rate=RateLimit(rps=50))
        await collect_all(run)
        assert sim.stats.requests == len(ids)
    names = {key: p.name for key, p in spec.providers.items()}
    lines = read_output(out)
    assert sorted(line["id"] for line in lines) == sorted(ids)
    assert all(line["status"] == "ok" and line["items"] for line in lines)
    assert all(line["provider"] == names["primary"] for line in lines)
    assert all(line["usage"]["output_tokens"] > 0 for line in lines)
    assert set(run.limiters) == set(names.values())
    assert run.limiters[names["primary"]].state.granted == len(ids)

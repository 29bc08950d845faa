"""``rxllm batch``: the command, its exit codes, signals, resume after SIGKILL, progress."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from rxllm import cli
from rxllm._batch_progress import ProgressBar, format_summary, human_count, human_duration
from rxllm._cli_batch import load_pipeline, parse_limits
from rxllm.batch import BatchStats, RateLimit
from rxllm.errors import ConfigError
from rxllm.sim import Scenario, Simulator, serve

from ._batch_support import max_in_any_window, read_output, write_rows

ROOT = Path(__file__).resolve().parent.parent
SPEC = "tests._batch_support:pipeline"


def rows(n: int) -> list[dict[str, Any]]:
    """``n`` rows, each asking for its own model ``row-<id>`` (the simulator logs it)."""
    return [{"id": i, "model": f"row-{i}"} for i in range(n)]


def requested(sim: Simulator) -> Counter[int]:
    """Requests per row id so far, from the simulator's log."""
    return Counter(int(r.model.removeprefix("row-")) for r in sim.stats.log)


def env_for(sim: Simulator) -> dict[str, str]:
    """The environment of a ``rxllm batch`` subprocess using the simulator ``sim``."""
    return {
        **os.environ,
        "RXLLM_TEST_SIM": sim.base_url("openai"),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "120",  # the progress line's width when stderr is a terminal of unknown size
    }


async def start(sim: Simulator, *args: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """Start ``python -m rxllm batch SPEC ARGS`` in the repository root."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rxllm",
        "batch",
        SPEC,
        *args,
        cwd=ROOT,
        env=env_for(sim),
        stdout=kwargs.pop("stdout", asyncio.subprocess.PIPE),
        stderr=kwargs.pop("stderr", asyncio.subprocess.PIPE),
        **kwargs,
    )


async def finish(proc: asyncio.subprocess.Process, within: float = 30) -> tuple[int, str, str]:
    """Wait for the process; its exit code, stdout and stderr."""
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, (out or b"").decode(), (err or b"").decode()


def complete_lines(path: Path) -> int:
    """How many complete lines ``path`` holds (0 if it does not exist yet)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def wait_for_lines(path: Path, n: int, within: float = 20) -> None:
    """Poll ``path`` until it holds at least ``n`` complete lines."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while complete_lines(path) < n:
        assert loop.time() < deadline, f"{path} never reached {n} lines"
        await asyncio.sleep(0.01)


def io_paths(tmp_path: Path, data: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Write ``data`` as the input file; return (input, output) paths."""
    src, out = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    write_rows(src, data)
    return src, out


# --- running to the end -------------------------------------------------------------------


async def test_cli_batch_writes_every_row_and_prints_a_json_summary(tmp_path: Path) -> None:
    """Exit 0, one line per row, the JSON summary on stdout, no progress line off a TTY."""
    src, out = io_paths(tmp_path, rows(30))
    async with serve(default=Scenario(tokens=3)) as sim:
        proc = await start(sim, "-i", str(src), "-o", str(out), "--rps", "60", "--summary")
        code, stdout, stderr = await finish(proc)
        assert sim.stats.requests == 30
    assert code == cli.EXIT_OK, stderr
    summary = orjson.loads(stdout)
    assert (summary["total"], summary["ok"], summary["failed"]) == (30, 30, 0)
    assert summary["providers"]["openai/default"]["rps"] == 60
    assert "30 rows in" in stderr
    assert "\r" not in stderr
    assert sorted(line["id"] for line in read_output(out)) == list(range(30))


async def test_cli_batch_exits_1_when_rows_failed_and_records_them(tmp_path: Path) -> None:
    """Failed rows are written with their error kind and make the exit code 1."""
    src, out = io_paths(tmp_path, rows(5))
    async with serve(scenarios={"row-2": Scenario(status=400)}) as sim:
        code, _, stderr = await finish(await start(sim, "-i", str(src), "-o", str(out)))
    assert code == cli.EXIT_PROVIDER
    assert "1 failed (bad_request 1)" in stderr
    failed = [line for line in read_output(out) if line["status"] == "failed"]
    assert [(line["id"], line["error"]["kind"]) for line in failed] == [(2, "bad_request")]


async def test_cli_batch_sim_runs_a_spec_file_without_network(tmp_path: Path) -> None:
    """--sim runs a real spec (examples/fallback.yaml) against the built-in simulator."""
    pytest.importorskip("rxllm.pipeline")
    src, out = io_paths(tmp_path, [{"id": "a", "input": "why?"}, {"id": "b", "input": "how?"}])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rxllm",
        "batch",
        str(ROOT / "examples" / "fallback.yaml"),
        "--sim",
        "-i",
        str(src),
        "-o",
        str(out),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code, _, stderr = await finish(proc)
    assert code == cli.EXIT_OK, stderr
    lines = read_output(out)
    assert sorted(line["id"] for line in lines) == ["a", "b"]
    assert all(line["status"] == "ok" for line in lines)
    assert all(line["text"] for line in lines)
    assert "2 rows in" in stderr


# --- errors before anything is sent -------------------------------------------------------


@pytest.fixture
def no_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    """A simulator URL nothing listens on: these tests must not send anything."""
    monkeypatch.setenv("RXLLM_TEST_SIM", "http://127.0.0.1:9/v1")


@pytest.mark.usefixtures("no_sim")
def test_cli_batch_rejects_rows_without_ids_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row without an id exits 2 naming its line; the output gets nothing."""
    src, out = io_paths(tmp_path, [{"id": 1}, {"prompt": "no id"}])
    code = cli.main(["batch", SPEC, "-i", str(src), "-o", str(out)])
    assert code == cli.EXIT_BAD_SPEC
    assert f"{src}:2: the row has no 'id' field" in capsys.readouterr().err
    assert out.read_bytes() == b""


@pytest.mark.usefixtures("no_sim")
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no/such/spec.yaml", "no such spec file"),
        ("tests._batch_support:nothing_here", "has no attribute"),
        ("tests._batch_support:not_a_pipeline", "not a Pipeline"),
        ("no_such_module_xyz:thing", "cannot import"),
    ],
)
def test_cli_batch_bad_spec_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    """A spec that is neither a file nor an importable Pipeline exits 2."""
    src, out = io_paths(tmp_path, rows(1))
    assert cli.main(["batch", spec, "-i", str(src), "-o", str(out)]) == cli.EXIT_BAD_SPEC
    assert message in capsys.readouterr().err


@pytest.mark.usefixtures("no_sim")
def test_cli_batch_output_in_a_missing_folder_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output path that cannot be created is a usage error, reported before any request."""
    src, _ = io_paths(tmp_path, rows(1))
    out = tmp_path / "no" / "such" / "out.jsonl"
    assert cli.main(["batch", SPEC, "-i", str(src), "-o", str(out)]) == cli.EXIT_BAD_SPEC
    assert "No such file or directory" in capsys.readouterr().err


@pytest.mark.usefixtures("no_sim")
def test_cli_batch_bad_limits_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rate that is not a positive number exits 2."""
    src, out = io_paths(tmp_path, rows(1))
    code = cli.main(["batch", SPEC, "-i", str(src), "-o", str(out), "--rps", "fast"])
    assert code == cli.EXIT_BAD_SPEC
    assert "--rps 'fast': not a number" in capsys.readouterr().err


def test_limits_apply_to_every_provider_or_to_one_by_name() -> None:
    """--rps/--tpm values become RateLimits; PROVIDER= overrides the default for one."""
    assert parse_limits([], []) is None
    limits = parse_limits(["10", "openai/big=50"], ["100000"])
    assert limits == {
        "*": RateLimit(rps=10, tpm=100000),
        "openai/big": RateLimit(rps=50, tpm=100000),
    }
    with pytest.raises(ConfigError, match="positive"):
        parse_limits(["0"], [])
    with pytest.raises(ConfigError, match="name is empty"):
        parse_limits(["=3"], [])


def test_load_pipeline_calls_a_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    """module:function is called to make the pipeline."""
    monkeypatch.setenv("RXLLM_TEST_SIM", "http://127.0.0.1:9/v1")
    pipe = load_pipeline(SPEC)
    assert pipe.output == "text"
    assert list(pipe.providers) == ["default"]


# --- crash, Ctrl-C, resume ----------------------------------------------------------------


@pytest.mark.slow
async def test_sigkill_at_40_percent_then_rerun_completes_without_paying_twice(
    tmp_path: Path,
) -> None:
    """After SIGKILL mid-batch a rerun finishes; no row written as done is requested again."""
    n = 200
    src, out = io_paths(tmp_path, rows(n))
    async with serve(default=Scenario(tokens=3)) as sim:
        proc = await start(sim, "-i", str(src), "-o", str(out), "--rps", "60", "-c", "8")
        await wait_for_lines(out, int(n * 0.4))
        proc.send_signal(signal.SIGKILL)
        code, _, _ = await finish(proc)
        assert code == -signal.SIGKILL
        first_arrivals = [r.arrival for r in sim.stats.log]
        written = out.read_bytes()
        done_before = {orjson.loads(line)["id"] for line in written.split(b"\n")[:-1]}
        assert int(n * 0.4) <= len(done_before) < n
        before = requested(sim)

        code, _, stderr = await finish(await start(sim, "-i", str(src), "-o", str(out)))
        assert code == cli.EXIT_OK, stderr
        total = requested(sim)
    lines = read_output(out)  # every line parses: no torn line survived
    assert sorted(line["id"] for line in lines) == list(range(n))
    assert all(total[i] == 1 for i in done_before)  # never requested after being written
    assert all(total[i] - before[i] <= 1 for i in range(n))
    assert max_in_any_window(first_arrivals) <= 60


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_ctrl_c_lets_running_rows_finish_then_exits_130_resumable(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """One SIGINT (or SIGTERM): running rows complete and are written, exit 130; a rerun
    does the rest."""
    n = 60
    src, out = io_paths(tmp_path, rows(n))
    async with serve(default=Scenario(tokens=5, tokens_per_second=25)) as sim:
        proc = await start(sim, "-i", str(src), "-o", str(out), "-c", "6")
        await wait_for_lines(out, 8)
        proc.send_signal(sig)
        code, _, stderr = await finish(proc)
        assert code == cli.EXIT_INTERRUPTED, stderr
        assert "stopping" in stderr
        assert "run the same command again to resume" in stderr
        assert sim.stats.disconnects == 0
        first = read_output(out)
        assert 8 <= len(first) < n
        assert set(requested(sim)) == {line["id"] for line in first}  # all finished

        code, _, stderr = await finish(await start(sim, "-i", str(src), "-o", str(out)))
        assert code == cli.EXIT_OK, stderr
        total = requested(sim)
    assert sorted(line["id"] for line in read_output(out)) == list(range(n))
    assert set(total.values()) == {1}


async def test_second_ctrl_c_cancels_running_rows_without_writing_them(tmp_path: Path) -> None:
    """Two SIGINTs: rows in flight are cancelled (connections closed) and left for a rerun."""
    src, out = io_paths(tmp_path, rows(6))
    stuck = Scenario(tokens=2, first_token_delay=60)
    scenarios = {f"row-{i}": stuck for i in (3, 4, 5)}
    async with serve(scenarios=scenarios, default=Scenario(tokens=2)) as sim:
        proc = await start(sim, "-i", str(src), "-o", str(out), "-c", "6")
        await wait_for_lines(out, 3)
        assert await sim.stats.wait_for(lambda s: s.requests == 6, within=5)
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        code, _, stderr = await finish(proc)
        assert code == cli.EXIT_INTERRUPTED, stderr
        assert "cancelling" in stderr
        assert await sim.stats.wait_for(lambda s: s.disconnects == 3, within=2)
    assert sorted(line["id"] for line in read_output(out)) == [0, 1, 2]


# --- the progress line --------------------------------------------------------------------


@pytest.fixture
def pty_reader() -> Iterator[tuple[int, Callable[[], bytes]]]:
    """A pseudo-terminal: (slave fd for the child's stderr, a function returning all read)."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield slave, lambda: b"".join(chunks)
    finally:
        os.close(slave)
        os.close(master)
        thread.join(timeout=2)


async def test_progress_line_is_drawn_on_a_terminal(
    tmp_path: Path, pty_reader: tuple[int, Callable[[], bytes]]
) -> None:
    """On a TTY stderr shows a live line: rows, rate, ETA; it is erased before the summary."""
    slave, read = pty_reader
    src, out = io_paths(tmp_path, rows(12))
    async with serve(default=Scenario(tokens=5, tokens_per_second=20)) as sim:
        proc = await start(sim, "-i", str(src), "-o", str(out), "-c", "4", stderr=slave)
        code, _, _ = await finish(proc)
    assert code == cli.EXIT_OK
    await asyncio.sleep(0.1)
    text = read().decode()
    assert "\r\x1b[2K" in text
    assert "/12 rows [" in text
    assert "rows/s" in text
    assert "ETA" in text
    assert "12 rows in" in text


def test_progress_line_shows_rows_items_tokens_rate_eta_and_failures() -> None:
    """The rendered line has every figure; it fits the terminal width."""
    stats = BatchStats(total=2000, skipped=0, ok=1230, failed=4, items=3456, started=100.0)
    stats.input_tokens, stats.output_tokens = 1_000_000, 200_000
    bar = ProgressBar(stats, io.StringIO(), items=True, width=120)
    line = bar.render(now=130.0)
    assert line.startswith("1,234/2,000 rows [")
    for part in ("62%", "3,456 items", "1.2M tok", "41.1 rows/s", "ETA 0:19", "4 failed"):
        assert part in line
    assert len(line) < 120
    narrow = ProgressBar(stats, io.StringIO(), width=40).render(now=130.0)
    assert len(narrow) == 39
    assert "[" not in narrow
    assert (human_count(999), human_count(1_500_000), human_duration(3725)) == (
        "999",
        "1.5M",
        "1:02:05",
    )


def test_summary_in_words_says_what_happened() -> None:
    """The human summary names failures by kind, retries, tokens and how to resume."""
    stats = BatchStats(total=10, ok=5, failed=1, skipped=2, requests=8, retries=2)
    stats.failed_kinds["bad_request"] = 1
    stats.stopped = True
    summary = stats.to_dict()
    summary["providers"] = {
        "openai/x": {"rps": 5.0, "tpm": None, "throttled": 1, "scale": 0.5, "granted": 8}
    }
    text = format_summary(summary)
    assert "6 rows in" in text
    assert "5 ok, 1 failed (bad_request 1), 2 already done" in text
    assert "8 requests (2 retries" in text
    assert "stopped with 2 of 10 rows left" in text
    assert "openai/x: limit 5 rps, 1 throttled, rate now x0.5" in text

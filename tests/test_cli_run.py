"""``rxllm run``: streaming output, input handling and exit codes, over loopback HTTP."""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rxllm import _cli_run
from rxllm.chain import reset_registry
from rxllm.cli import EXIT_BAD_SPEC, EXIT_INTERRUPTED, EXIT_OK, EXIT_PROVIDER, EXIT_VALIDATION
from rxllm.sim import Simulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``rxllm run ARGV`` in this process; the exit code, stdout and stderr."""
    parser = argparse.ArgumentParser(prog="rxllm")
    _cli_run.add_parser(parser.add_subparsers(dest="command"))
    code = _cli_run.main(parser.parse_args(["run", *argv]))
    out, err = capsys.readouterr()
    return code, out, err


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


PEOPLE_SPEC = """\
providers:
  main: {model: openai/sim-people}
chain: {retry: false}
request:
  prompt: "Extract people from: {text}"
  response_schema:
    type: object
    properties: {people: {type: array, items: {$ref: "#/$defs/p"}}}
    $defs: {p: {type: object, required: [name], properties: {name: {type: string}}}}
steps:
  - json_items: {prefix: people.item}
  - validate: {schema: {type: object, required: [name], properties: {name: {type: string}}},
               on_invalid: ON_INVALID}
"""


# --- streaming --------------------------------------------------------------------------------


def test_items_are_printed_while_the_response_is_still_streaming() -> None:
    """The first validated item reaches stdout while the paced simulated answer goes on."""
    spec = EXAMPLES / "extract_people.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rxllm", "run", str(spec), "--sim"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        assert ready, "no output in time"
        first = proc.stdout.readline()
        first_at = time.monotonic()
        running_at_first_item = proc.poll() is None
        rest, err = proc.communicate(timeout=TIMEOUT)
        ended_at = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_OK, err.decode()
    assert first_at < ended_at
    assert running_at_first_item  # the answer was still streaming when the item arrived
    items = [orjson.loads(line) for line in [first, *rest.splitlines()]]
    assert len(items) == 5  # 6 written: one repaired, one beyond repair
    assert all(isinstance(item["name"], str) for item in items)
    assert b"item 1 patched" in err
    assert b"item 4 skipped" in err


def test_fallback_example_streams_the_backup_text(capsys: pytest.CaptureFixture[str]) -> None:
    """The fallback example's primary fails before its first token; the backup's text prints."""
    code, out, err = _run([str(EXAMPLES / "fallback.yaml"), "--sim"], capsys)
    assert code == EXIT_OK, err
    assert out.startswith("A fast producer can outrun a slow consumer")
    assert out.endswith("stays bounded and ordered.\n")
    assert "primary failed before its first token (server_error 503); falling over to backup" in err
    assert "from backup" in err


def test_json_example_prints_batches(capsys: pytest.CaptureFixture[str]) -> None:
    """A JSON spec with a window step prints one JSON array per batch."""
    code, out, err = _run([str(EXAMPLES / "products.json"), "--sim"], capsys)
    assert code == EXIT_OK, err
    batches = [orjson.loads(line) for line in out.splitlines()]
    assert [len(b) for b in batches] == [2, 2]
    assert "1 skipped" in err


def test_events_are_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without steps the normalized events are printed as their JSON form."""
    spec = _spec(
        tmp_path,
        "providers:\n  m: {model: gemini/sim-events}\nrequest: {prompt: hi}\n"
        "sim: {m: {text: 'hello there'}}\n",
    )
    code, out, err = _run([str(spec), "--sim"], capsys)
    assert code == EXIT_OK, err
    events = [orjson.loads(line) for line in out.splitlines()]
    assert events[0]["type"] == "started"
    assert events[0]["provider"] == "m"
    assert "".join(e["text"] for e in events if e["type"] == "text_delta") == "hello there"
    assert {e["type"] for e in events} >= {"usage", "finished"}


# --- input ------------------------------------------------------------------------------------


ECHO_SPEC = """\
providers:
  m: {model: ollama/sim-echo}
request:
  prompt: "Topic: {topic}"
steps: [text]
sim: {m: {echo: true}}
"""


def test_input_text_fills_the_templates_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--input TEXT fills the prompt's one field."""
    code, out, err = _run([str(_spec(tmp_path, ECHO_SPEC)), "--sim", "--input", "rivers"], capsys)
    assert code == EXIT_OK, err
    assert out == "Topic: rivers\n"


def test_input_file_json_object_and_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--input-file takes a JSON object's fields, or a text file's whole text."""
    spec = str(_spec(tmp_path, ECHO_SPEC))
    row = tmp_path / "row.json"
    row.write_text('{"id": 4, "topic": "lakes"}')
    assert _run([spec, "--sim", "--input-file", str(row)], capsys)[1] == "Topic: lakes\n"
    text = tmp_path / "topic.txt"
    text.write_text("{seas} and oceans")
    assert _run([spec, "--sim", "--input-file", str(text)], capsys)[1] == (
        "Topic: {seas} and oceans\n"
    )


def test_missing_input_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A template with fields and no input anywhere exits 2 naming the field."""
    code, out, err = _run([str(_spec(tmp_path, ECHO_SPEC)), "--sim"], capsys)
    assert code == EXIT_BAD_SPEC
    assert out == ""
    assert "{topic}" in err


def test_row_without_the_templates_field_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSON row lacking a template field is a spec error naming the row's id."""
    row = tmp_path / "row.json"
    row.write_text('{"id": "r9", "subject": "lakes"}')
    code, _, err = _run(
        [str(_spec(tmp_path, ECHO_SPEC)), "--sim", "--input-file", str(row)], capsys
    )
    assert code == EXIT_BAD_SPEC
    assert "request.prompt" in err
    assert "'r9'" in err


# --- exit codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "where"),
    [
        ("  - json_items: {}\n  - json_itemz: {}\n", ":8: steps[1]: unknown operator"),
        (
            "  - json_items: {}\n  - validate: {schema: missing.schema.json}\n",
            ":8: steps[1].validate.schema: schema file 'missing.schema.json' not found",
        ),
        ("  - json_items: {max_depth: deep}\n", ":7: steps[0].json_items.max_depth: must be"),
    ],
)
async def test_bad_spec_exits_2_before_any_request(
    rxllm_sim: Simulator, tmp_path: Path, steps: str, where: str
) -> None:
    """A bad spec exits 2 naming the field and line, and the simulator never sees a request."""
    head = (
        "providers:\n"
        f"  main: {{model: openai/sim-bad, base_url: '{rxllm_sim.base_url('openai')}'}}\n"
        "request:\n  prompt: hi\n  max_tokens: 20\nsteps:\n"
    )
    spec = _spec(tmp_path, head + steps)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rxllm",
        "run",
        str(spec),
        cwd=ROOT,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == EXIT_BAD_SPEC
    assert out == b""
    assert f"{spec}{where}" in err.decode()
    assert rxllm_sim.stats.requests == 0


def test_provider_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """When every provider fails before its first token the command exits 1 and says why."""
    spec = _spec(
        tmp_path,
        "providers:\n  a: {model: openai/sim-a}\n  b: {model: anthropic/sim-b}\n"
        "chain: {retry: false}\nrequest: {prompt: hi}\nsteps: [text]\n"
        "sim: {'*': {status: 503}}\n",
    )
    code, out, err = _run([str(spec), "--sim"], capsys)
    assert code == EXIT_PROVIDER
    assert out == ""
    assert "all_failed" in err
    assert "a server_error (503), b" in err


def test_interrupted_stream_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stream cut after its first token keeps what was printed and exits 1."""
    spec = _spec(
        tmp_path,
        "providers:\n  a: {model: openai/sim-cut}\nchain: {retry: false}\n"
        "request: {prompt: hi}\nsteps: [text]\n"
        "sim: {a: {text: 'one two three four five', error_after_tokens: 2}}\n",
    )
    code, out, err = _run([str(spec), "--sim"], capsys)
    assert code == EXIT_PROVIDER
    assert out == "one two\n"
    assert "interrupted" in err


def test_validation_halt_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate with on_invalid: halt stops at the first bad item and the command exits 3."""
    spec = _spec(
        tmp_path,
        PEOPLE_SPEC.replace("ON_INVALID", "halt")
        + "input: {text: x}\nsim: {main: {json_items: 4, invalid_share: 0.5}}\n",
    )
    code, out, err = _run([str(spec), "--sim"], capsys)
    assert code == EXIT_VALIDATION
    assert "validation halted at item" in err
    assert all("name" in orjson.loads(line) for line in out.splitlines())


def test_sigint_exits_130(tmp_path: Path) -> None:
    """Ctrl-C while the answer streams ends the command with 130."""
    spec = _spec(
        tmp_path,
        "providers:\n  a: {model: openai/sim-slow}\nrequest: {prompt: hi}\nsteps: [text]\n"
        "sim: {a: {tokens: 400, tokens_per_second: 20}}\n",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "rxllm", "run", str(spec), "--sim"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        assert ready, "no output in time"
        os.read(proc.stdout.fileno(), 1)  # the answer has started
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED
    assert b"interrupted" in err
    assert b"Traceback" not in err

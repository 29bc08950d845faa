"""The public face of rxllm.sim, serve() and the blocking run()/main() entry point."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

import rxllm.sim
from rxllm.errors import ConfigError
from rxllm.sim import Simulator, serve


def test_all_is_sorted_and_complete() -> None:
    """rxllm.sim's __all__ is sorted and every name in it exists."""
    assert rxllm.sim.__all__ == sorted(rxllm.sim.__all__)
    for name in rxllm.sim.__all__:
        assert hasattr(rxllm.sim, name), name


async def test_serve_binds_loopback_on_a_free_port() -> None:
    """serve() binds 127.0.0.1 on a free port by default and frees it on exit."""
    async with serve() as sim:
        assert isinstance(sim, Simulator)
        assert sim.url == f"http://127.0.0.1:{sim.port}"
        assert sim.port > 0
        assert repr(sim) == f"<Simulator {sim.url}>"
        with pytest.raises(ConfigError):
            sim.base_url("cohere")
    with socket.socket() as s:
        s.bind(("127.0.0.1", sim.port))  # released


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_main_serves_until_stopped(tmp_path: Path) -> None:
    """main() serves the simulator with a scenario file until the process is stopped."""
    scenarios = tmp_path / "s.json"
    scenarios.write_text('{"fixed": {"text": "from the file"}}')
    port = _free_port()
    code = "import sys; from rxllm.sim import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", str(port), "--scenarios", str(scenarios)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.05)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/generate",
            data=orjson.dumps({"model": "fixed", "prompt": "x"}),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            lines = [orjson.loads(line) for line in resp.read().splitlines()]
        assert "".join(line["response"] for line in lines) == "from the file"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}" in out

"""Shared by the benchmarks that run the simulator in a process of its own."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["cpu_seconds", "free_port", "simulator"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``; NaN elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def simulator(scenarios: Mapping[str, Mapping[str, Any]]) -> Iterator[tuple[str, int]]:
    """Start ``python -m rxllm sim`` with ``scenarios`` by model name; yield (OpenAI base URL,
    pid), and stop it afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp, "scenarios.json")
        spec.write_text(json.dumps(scenarios), encoding="utf-8")
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rxllm", "sim", "--port", str(port), "--scenarios", str(spec)],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the simulator exited with {proc.returncode}")
                try:
                    with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield url + "/v1", proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

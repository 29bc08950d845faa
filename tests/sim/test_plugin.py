"""The pytest plugin rxllm.testing: the rxllm_sim fixture, its marker and fixtures."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rxllm.sim import Scenario, Simulator

from ._wire import call, streamed_text


async def test_fixture_serves_on_loopback(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """rxllm_sim is a running simulator on 127.0.0.1 with fresh counters."""
    assert rxllm_sim.url.startswith("http://127.0.0.1:")
    assert rxllm_sim.base_url("openai") == rxllm_sim.url + "/v1"
    assert rxllm_sim.base_url("openai-responses") == rxllm_sim.url + "/v1"
    for dialect in ("anthropic", "gemini", "ollama"):
        assert rxllm_sim.base_url(dialect) == rxllm_sim.url
    assert rxllm_sim.stats.requests == 0
    async with http.get(rxllm_sim.url + "/healthz") as resp:
        assert resp.status == 200


@pytest.mark.rxllm_sim(scenarios={"fixed": Scenario(text="marked")}, default={"text": "dflt"})
async def test_marker_sets_scenarios(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """The rxllm_sim marker sets the simulator's scenarios and default."""
    _, _, data = await call(http, rxllm_sim, "ollama", model="fixed")
    assert streamed_text("ollama", data) == "marked"
    _, _, data = await call(http, rxllm_sim, "ollama", model="any")
    assert streamed_text("ollama", data) == "dflt"


class TestOverriddenFixtures:
    """Tests whose scenarios come from overridden rxllm_sim_* fixtures."""

    @pytest.fixture
    def rxllm_sim_scenarios(self) -> Mapping[str, Any]:
        """Scenarios for this class's simulators."""
        return {"flaky": {"status": 503, "fail_times": 1}}

    @pytest.fixture
    def rxllm_sim_default(self) -> Scenario:
        """The default scenario for this class's simulators."""
        return Scenario(text="from the fixture")

    async def test_fixtures_set_scenarios(
        self, rxllm_sim: Simulator, http: aiohttp.ClientSession
    ) -> None:
        """Overriding rxllm_sim_scenarios and rxllm_sim_default configures the simulator."""
        assert (await call(http, rxllm_sim, "openai", model="flaky"))[0] == 503
        assert (await call(http, rxllm_sim, "openai", model="flaky"))[0] == 200
        _, _, data = await call(http, rxllm_sim, "openai", model="other")
        assert streamed_text("openai", data) == "from the fixture"


def test_plugin_import_is_cheap() -> None:
    """Importing the plugin does not import the simulator."""
    code = "import sys, rxllm.testing; print('rxllm.sim' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_plugin_in_a_fresh_session(tmp_path: Path) -> None:
    """In a separate pytest session (strict asyncio mode) the marker and fixture work, and
    a test that does not use them is unaffected."""
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import aiohttp
            import pytest

            def test_plain():
                assert True

            @pytest.mark.asyncio
            @pytest.mark.rxllm_sim(scenarios={"m": {"status": 429}})
            async def test_user(rxllm_sim):
                async with aiohttp.ClientSession() as http:
                    url = rxllm_sim.base_url("openai") + "/chat/completions"
                    async with http.post(url, json={"model": "m"}) as resp:
                        assert resp.status == 429
                assert rxllm_sim.stats.count("openai", "m") == 1
            """
        )
    )
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "--strict-markers",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout

"""rxllm's pytest plugin: the ``rxllm_sim`` fixture (a provider simulator on loopback).

Installed with rxllm and registered as the ``rxllm`` ``pytest11`` entry point, so the
fixture is available in every test session; it costs nothing until a test asks for it (the
simulator is imported lazily). Async fixtures need pytest-asyncio (or pytest-aiohttp, which
brings it)::

    from rxllm.sim import Scenario

    @pytest.mark.rxllm_sim(scenarios={"flaky": Scenario(status=503, fail_times=2)})
    async def test_retries(rxllm_sim):
        base = rxllm_sim.base_url("openai")          # http://127.0.0.1:PORT/v1
        ...                                          # call model "flaky" three times
        assert rxllm_sim.stats.count(model="flaky") == 3

Scenarios come from, in order of precedence: the ``rxllm_sim`` marker (``scenarios=``,
``default=``; the closest marker wins), then the ``rxllm_sim_scenarios`` and
``rxllm_sim_default`` fixtures, which return ``None`` unless a test module or conftest
overrides them. Each test gets its own simulator on a free port, with fresh counters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from rxllm.sim import Scenario, Simulator

__all__ = ["pytest_configure", "rxllm_sim", "rxllm_sim_default", "rxllm_sim_scenarios"]


_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture_decorator() -> Callable[[_F], _F]:
    """pytest-asyncio's ``fixture`` (needed in its strict mode; auto mode takes either)."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - without pytest-asyncio the fixture cannot run
        return pytest.fixture  # type: ignore[return-value]
    return pytest_asyncio.fixture  # type: ignore[return-value]


_async_fixture = _async_fixture_decorator()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``rxllm_sim`` marker."""
    config.addinivalue_line(
        "markers",
        "rxllm_sim(scenarios=None, default=None): scenarios of the rxllm_sim fixture's "
        "simulator (model name -> rxllm.sim.Scenario or a mapping of its fields)",
    )


@pytest.fixture
def rxllm_sim_scenarios() -> Mapping[str, Scenario | Mapping[str, Any]] | None:
    """Scenarios by model name for ``rxllm_sim``; override this fixture to set them."""
    return None


@pytest.fixture
def rxllm_sim_default() -> Scenario | Mapping[str, Any] | None:
    """The default scenario for ``rxllm_sim``; override this fixture to set it."""
    return None


@_async_fixture
async def rxllm_sim(
    request: pytest.FixtureRequest,
    rxllm_sim_scenarios: Mapping[str, Scenario | Mapping[str, Any]] | None,
    rxllm_sim_default: Scenario | Mapping[str, Any] | None,
) -> AsyncIterator[Simulator]:
    """A running ``rxllm.sim.Simulator`` on a free 127.0.0.1 port, for one test.

    ``rxllm_sim.url``, ``rxllm_sim.base_url(dialect)``, ``rxllm_sim.stats``,
    ``rxllm_sim.set_scenario(model, scenario)`` and ``rxllm_sim.reset()`` are the usual
    handles; see ``docs/testing.md``.
    """
    from rxllm.sim import serve

    scenarios = rxllm_sim_scenarios
    default = rxllm_sim_default
    marker = request.node.get_closest_marker("rxllm_sim")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("use rxllm_sim(scenarios=..., default=...) with keywords")
        unknown = set(marker.kwargs) - {"scenarios", "default"}
        if unknown:
            raise pytest.UsageError(f"unknown rxllm_sim marker argument(s): {sorted(unknown)}")
        scenarios = marker.kwargs.get("scenarios", scenarios)
        default = marker.kwargs.get("default", default)
    async with serve(scenarios=scenarios, default=default) as sim:
        yield sim

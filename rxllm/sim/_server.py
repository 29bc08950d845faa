"""Running the simulator: ``serve`` (async, in-process), ``run`` and ``main`` (blocking)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from os import PathLike
from types import MappingProxyType
from typing import Any

from aiohttp import web

from rxllm.errors import ConfigError

from ._app import APP_STATE, SimState, create_app
from ._scenario import Scenario, load_scenarios
from ._stats import Stats

__all__ = ["DIALECTS", "Simulator", "main", "run", "serve"]

DIALECTS = ("openai", "openai-responses", "anthropic", "gemini", "ollama")
"""The dialects ``Simulator.base_url`` knows."""

_SHUTDOWN_TIMEOUT = 0.5
"""Seconds that streams still running at shutdown get before they are cancelled."""


class Simulator:
    """A running simulator (what ``serve`` yields).

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        app: the aiohttp application.
        state: its ``SimState`` (scenarios, counters).
    """

    def __init__(self, app: web.Application, url: str) -> None:
        self.app = app
        self.url = url
        self.state: SimState = app[APP_STATE]

    def __repr__(self) -> str:
        return f"<Simulator {self.url}>"

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.url.rsplit(":", 1)[1])

    @property
    def stats(self) -> Stats:
        """The counters and the request log."""
        return self.state.stats

    @property
    def scenarios(self) -> Mapping[str, Scenario]:
        """The scenarios by model name (read-only; change them with ``set_scenario``)."""
        return MappingProxyType(self.state.scenarios)

    @property
    def default(self) -> Scenario:
        """The scenario of models without one."""
        return self.state.default

    def base_url(self, dialect: str) -> str:
        """The conventional base URL of ``dialect`` on this simulator: ``{url}/v1`` for
        ``openai`` and ``openai-responses``, ``{url}`` for ``anthropic``, ``gemini`` and
        ``ollama``."""
        if dialect in ("openai", "openai-responses"):
            return self.url + "/v1"
        if dialect in DIALECTS:
            return self.url
        raise ConfigError(f"unknown dialect {dialect!r}; known: {', '.join(DIALECTS)}")

    def set_scenario(self, model: str, scenario: Scenario | Mapping[str, Any] | None) -> None:
        """Set (``None``: remove) the scenario of ``model`` from now on; ``"*"`` is the
        default. A mapping of field names is accepted for a ``Scenario``."""
        self.state.set_scenario(model, scenario)

    def set_default(self, scenario: Scenario | Mapping[str, Any] | None) -> None:
        """Set the scenario of models without one (``None``: the built-in default)."""
        self.state.set_default(scenario)

    def reset(self) -> None:
        """Zero the counters, clear the log and restart every ``fail_times`` count."""
        self.state.reset()


@asynccontextmanager
async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    scenarios: Mapping[str, Scenario | Mapping[str, Any]] | None = None,
    default: Scenario | Mapping[str, Any] | None = None,
) -> AsyncIterator[Simulator]:
    """Run the simulator on ``host:port`` (port 0: a free one) for the ``async with`` body::

    async with rxllm.sim.serve(scenarios={"flaky": Scenario(status=503)}) as sim:
        url = sim.base_url("openai")
    """
    app = create_app(scenarios, default)
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=2048)
        await site.start()
        bound = _bound_port(runner)
        shown = f"[{host}]" if ":" in host else host
        yield Simulator(app, f"http://{shown}:{bound}")
    finally:
        app[APP_STATE].closing = True
        await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the simulator is not listening on a TCP port")


def run(
    host: str = "127.0.0.1",
    port: int = 8900,
    scenario_file: str | PathLike[str] | None = None,
) -> None:
    """Serve the simulator until interrupted (blocking), with the scenarios of
    ``scenario_file`` (JSON, or YAML with PyYAML) if given."""
    scenarios = load_scenarios(scenario_file) if scenario_file is not None else None
    app = create_app(scenarios)
    url_host = f"[{host}]" if ":" in host else host

    def banner(*_: Any, **__: Any) -> None:
        print(f"rxllm sim on http://{url_host}:{port} (Ctrl+C to stop)", flush=True)
        names = ", ".join(sorted(app[APP_STATE].scenarios)) or "none"
        print(f"  scenarios: {names}; per request: the x-rxllm-sim header", flush=True)

    web.run_app(
        app,
        host=host,
        port=port,
        handler_cancellation=True,
        access_log=None,
        backlog=2048,
        shutdown_timeout=_SHUTDOWN_TIMEOUT,
        print=banner,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``rxllm sim`` command: ``--host``, ``--port``, ``--scenarios FILE``."""
    parser = argparse.ArgumentParser(
        prog="rxllm sim", description="Serve the rxllm provider simulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="port (8900)")
    parser.add_argument("--scenarios", help="a JSON or YAML file of scenarios by model name")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        run(args.host, args.port, args.scenarios)
    except (ConfigError, OSError) as exc:
        print(f"rxllm sim: {exc}", file=sys.stderr)
        return 2
    return 0

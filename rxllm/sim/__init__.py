"""The provider simulator: OpenAI, Anthropic, Gemini and Ollama streams on loopback.

One aiohttp app speaks every streaming wire format byte-exactly (wire-formats.md), with
scripted or schema-driven output, token pacing and fault injection. Tests, benchmarks and
the demo use it over real HTTP; so can your own tests::

    from rxllm.sim import Scenario, serve

    async with serve(scenarios={"flaky": Scenario(status=503, fail_times=2)}) as sim:
        base = sim.base_url("openai")          # http://127.0.0.1:PORT/v1
        ...                                    # POST {base}/chat/completions, model "flaky"
        assert sim.stats.count("openai", "flaky") == 3

What each request gets is a ``Scenario``: the model's (``scenarios[model]``, or the
default), with the fields of the request's ``x-rxllm-sim`` header (a JSON object) laid
over it. Endpoints: ``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/messages``,
``/v1beta/models/{model}:streamGenerateContent`` (``?alt=sse`` or the JSON array),
``/api/chat``, ``/api/generate``; ``GET /healthz``, ``GET /sim/stats``.

The simulator never decodes with the dialects it tests: it parses request bodies and writes
response bytes itself (SSE framing as ``rxllm.wire.encode`` writes it).
"""

from __future__ import annotations

from ._app import APP_STATE, HEADER, SimState, create_app
from ._scenario import DEFAULT_KEY, Scenario, load_scenarios
from ._schema import invalid_items, is_invalid_item, json_document, make_instance
from ._server import DIALECTS, Simulator, main, run, serve
from ._stats import RequestRecord, Stats
from ._text import lorem_text, tokenize

__all__ = [
    "APP_STATE",
    "DEFAULT_KEY",
    "DIALECTS",
    "HEADER",
    "RequestRecord",
    "Scenario",
    "SimState",
    "Simulator",
    "Stats",
    "create_app",
    "invalid_items",
    "is_invalid_item",
    "json_document",
    "load_scenarios",
    "lorem_text",
    "main",
    "make_instance",
    "run",
    "serve",
    "tokenize",
]

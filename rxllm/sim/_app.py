"""The simulator's aiohttp application: routing, scenario choice and the streaming engine.

The engine writes one event per ``await response.write()``, so a client that stops reading
stops the simulator (aiohttp drains once its buffer is full). Sleeps (pacing, stalls,
delays) wake at least every 0.25 s to check the connection, and the app asks aiohttp to
cancel the handler when its client goes away, so a disconnect is noticed promptly.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from rxllm.errors import ConfigError

from ._anthropic import AnthropicRenderer
from ._gemini import GeminiRenderer
from ._ollama import OllamaRenderer
from ._openai import OpenAIRenderer
from ._output import Feed, make_plan, read_prompt, stable_id
from ._render import Ctx, Ev, Renderer
from ._responses import ResponsesRenderer
from ._scenario import DEFAULT_KEY, Scenario, scenarios_from_mapping
from ._stats import DEFAULT_LOG_LIMIT, RequestRecord, Stats

__all__ = ["APP_STATE", "HEADER", "SimState", "create_app"]

HEADER = "x-rxllm-sim"
"""The request header whose JSON object of scenario fields overrides the model's scenario."""

MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""The largest request body the simulator accepts."""

MAX_HEADER_BYTES = 1024 * 1024
"""The largest request header (``x-rxllm-sim``) the simulator accepts."""

_CHECK_EVERY = 0.25
"""Longest sleep between two checks of the client's connection, in seconds."""

_RENDERERS: dict[str, type[Renderer]] = {
    "openai": OpenAIRenderer,
    "openai-responses": ResponsesRenderer,
    "anthropic": AnthropicRenderer,
    "gemini": GeminiRenderer,
    "ollama": OllamaRenderer,
    "ollama-generate": OllamaRenderer,
}


class SimState:
    """The mutable state of one simulator app: its scenarios, counters and the
    ``fail_times`` bookkeeping. Reach it with ``app[APP_STATE]`` or ``Simulator.state``."""

    def __init__(
        self,
        scenarios: Mapping[str, Scenario | Mapping[str, Any]] | None = None,
        default: Scenario | Mapping[str, Any] | None = None,
        *,
        log_limit: int = DEFAULT_LOG_LIMIT,
    ) -> None:
        table = scenarios_from_mapping(scenarios or {})
        fallback = table.pop(DEFAULT_KEY, None)
        if default is not None:
            fallback = _coerce(default)
        self.scenarios: dict[str, Scenario] = table
        self.default: Scenario = fallback or Scenario()
        self.stats = Stats(log_limit=log_limit)
        self.fail_counts: dict[str, int] = {}
        self.closing = False
        self._seq = itertools.count(1)

    def next_seq(self) -> int:
        """The next request number."""
        return next(self._seq)

    def scenario_for(self, model: str) -> Scenario:
        """The scenario of ``model`` (the default if it has none)."""
        return self.scenarios.get(model, self.default)

    def set_scenario(self, model: str, scenario: Scenario | Mapping[str, Any] | None) -> None:
        """Set (or with ``None`` remove) the scenario of ``model``; ``"*"`` is the default."""
        if model == DEFAULT_KEY:
            self.default = Scenario() if scenario is None else _coerce(scenario)
        elif scenario is None:
            self.scenarios.pop(model, None)
        else:
            self.scenarios[model] = _coerce(scenario)

    def set_default(self, scenario: Scenario | Mapping[str, Any] | None) -> None:
        """Set the scenario of models without one (``None`` restores the built-in one)."""
        self.set_scenario(DEFAULT_KEY, scenario)

    def reset(self) -> None:
        """Zero the counters and forget how many times each scenario key failed."""
        self.stats.reset()
        self.fail_counts.clear()


def _coerce(value: Scenario | Mapping[str, Any]) -> Scenario:
    if isinstance(value, Scenario):
        return value
    return Scenario.from_mapping(value)


APP_STATE: web.AppKey[SimState] = web.AppKey("rxllm_sim_state", SimState)
"""The app key of the simulator's ``SimState``."""


def create_app(
    scenarios: Mapping[str, Scenario | Mapping[str, Any]] | None = None,
    default: Scenario | Mapping[str, Any] | None = None,
) -> web.Application:
    """The simulator as an aiohttp ``web.Application``.

    ``scenarios`` maps model names to scenarios (``Scenario`` objects or field mappings;
    the key ``"*"`` is the default); ``default`` answers every other model. Routes:
    ``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/messages``,
    ``/v1beta/models/{model}:streamGenerateContent``, ``/api/chat``, ``/api/generate``;
    ``GET /healthz`` and ``/sim/stats``; ``POST /sim/reset`` and ``/sim/scenarios`` (a JSON
    mapping of model to fields, ``null`` to remove). The state is ``app[APP_STATE]``.
    """
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES,
        # Cancel a handler whose client went away; let x-rxllm-sim carry a sizeable schema.
        handler_args={"handler_cancellation": True, "max_field_size": MAX_HEADER_BYTES},
    )
    app[APP_STATE] = SimState(scenarios, default)

    def route(dialect: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await _handle(request, dialect)

        return handler

    app.router.add_post("/v1/chat/completions", route("openai"))
    app.router.add_post("/v1/responses", route("openai-responses"))
    app.router.add_post("/v1/messages", route("anthropic"))
    app.router.add_post(
        "/{version:v1(?:beta|alpha)?}/models/{model:[^/:]+}:streamGenerateContent",
        route("gemini"),
    )
    app.router.add_post("/api/chat", route("ollama"))
    app.router.add_post("/api/generate", route("ollama-generate"))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/sim/stats", _stats)
    app.router.add_post("/sim/reset", _reset)
    app.router.add_post("/sim/scenarios", _set_scenarios)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _stats(request: web.Request) -> web.Response:
    limit = request.query.get("log")
    snapshot = request.app[APP_STATE].stats.snapshot(
        log_limit=int(limit) if limit is not None and limit.isdigit() else None
    )
    return web.Response(body=orjson.dumps(snapshot), content_type="application/json")


async def _reset(request: web.Request) -> web.Response:
    request.app[APP_STATE].reset()
    return web.json_response({"status": "ok"})


async def _set_scenarios(request: web.Request) -> web.Response:
    state = request.app[APP_STATE]
    try:
        data = orjson.loads(await request.read())
        if not isinstance(data, dict):
            raise ConfigError("the body must be a JSON object of model name to fields")
        staged = {
            model: None if fields is None else _coerce(fields) for model, fields in data.items()
        }
    except (orjson.JSONDecodeError, ConfigError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    for model, scenario in staged.items():
        state.set_scenario(model, scenario)
    return web.json_response({"status": "ok", "models": sorted(state.scenarios)})


class _ClientGone(ConnectionResetError):
    """The client closed the connection."""


class _Dropped(Exception):
    """The scenario dropped the connection."""


async def _sleep(request: web.BaseRequest, seconds: float) -> None:
    """Sleep ``seconds``, checking the connection at least every 0.25 s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise _ClientGone("the client went away")
        left = end - loop.time()
        if left <= 0:
            return
        await asyncio.sleep(min(left, _CHECK_EVERY))


def _bad_request(
    renderer: type[Renderer], message: str, model: str, request_id: str
) -> web.Response:
    scenario = Scenario(error_message=message, error_code=None)
    body, ctype, extra = renderer.error_response(400, scenario, model=model, request_id=request_id)
    return web.Response(
        status=400,
        body=body,
        headers={"content-type": ctype, "x-request-id": request_id, **extra},
    )


async def _handle(request: web.Request, dialect: str) -> web.StreamResponse:
    state = request.app[APP_STATE]
    stats = state.stats
    seq = state.next_seq()
    request_id = f"req_{seq:024x}"
    record = stats.arrive(seq, request_id, dialect)
    renderer_cls = _RENDERERS[dialect]
    try:
        return await _serve(request, dialect, renderer_cls, state, record)
    except asyncio.CancelledError:
        if record.outcome == "pending" and not state.closing:
            record.outcome = "disconnected"
            stats.disconnects += 1
        raise
    finally:
        stats.active -= 1


async def _serve(
    request: web.Request,
    dialect: str,
    renderer_cls: type[Renderer],
    state: SimState,
    record: RequestRecord,
) -> web.StreamResponse:
    stats = state.stats
    raw = await request.read()
    record.body_bytes = len(raw)
    path_model = request.match_info.get("model")
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        body = exc
    model = path_model if path_model is not None else ""
    if isinstance(body, dict) and path_model is None and isinstance(body.get("model"), str):
        model = body["model"]
    record.model = model
    stats.by_endpoint_model[(dialect, model)] += 1

    def reject(message: str) -> web.Response:
        record.status = 400
        record.outcome = "bad_request"
        return _bad_request(renderer_cls, message, model, record.request_id)

    if not isinstance(body, dict):
        return reject("The request body is not a JSON object.")
    header = request.headers.get(HEADER)
    scenario = state.scenario_for(model)
    if header:
        try:
            overrides = orjson.loads(header)
            scenario = scenario.merged(overrides)
        except (orjson.JSONDecodeError, ConfigError) as exc:
            return reject(f"{HEADER}: {exc}")
    if scenario.has_faults:
        if scenario.fail_times is not None:
            key = scenario.fail_key or (f"{model}\n{header}" if header else model)
            count = state.fail_counts[key] = state.fail_counts.get(key, 0) + 1
            if count > scenario.fail_times:
                scenario = scenario.without_faults()
        record.faults = scenario.has_faults

    if scenario.response_delay:
        try:
            await _sleep(request, scenario.response_delay)
        except _ClientGone:
            record.outcome = "disconnected"
            stats.disconnects += 1
            return web.Response(status=499)

    if scenario.status is not None:
        stats.faults["status"] += 1
        return _status_response(renderer_cls, scenario, model, request, record, state)

    prompt = read_prompt(dialect, body, path_model)
    # Ids depend on what was asked, not on how the JSON was spelled.
    uid = stable_id(dialect, model, orjson.dumps(body, option=orjson.OPT_SORT_KEYS), scenario.seed)
    try:
        plan = make_plan(scenario, prompt, uid)
    except ConfigError as exc:
        return reject(str(exc))
    feed = Feed(scenario.chunk_tokens, (scenario.error_after_tokens, scenario.stall_after_tokens))
    ctx = Ctx(
        scenario=scenario,
        prompt=prompt,
        plan=plan,
        feed=feed,
        model=model,
        uid=uid,
        request_id=record.request_id,
        sse=dialect != "gemini" or request.query.get("alt") == "sse",
        generate=dialect == "ollama-generate",
    )
    renderer = renderer_cls(ctx)
    response = web.StreamResponse(status=200, headers=renderer.headers())
    record.status = 200
    engine = _Engine(request, response, renderer, scenario, record, stats)
    try:
        await response.prepare(request)
        await engine.run()
        record.outcome = "completed"
        stats.streams_completed += 1
        await response.write_eof()
    except _Dropped:
        record.outcome = "dropped"
    except ConnectionError:
        if record.outcome == "pending":
            record.outcome = "disconnected"
            stats.disconnects += 1
    return response


def _status_response(
    renderer_cls: type[Renderer],
    scenario: Scenario,
    model: str,
    request: web.Request,
    record: RequestRecord,
    state: SimState,
) -> web.Response:
    status = scenario.status
    assert status is not None
    array = renderer_cls is GeminiRenderer and request.query.get("alt") != "sse"
    body, ctype, extra = renderer_cls.error_response(
        status, scenario, model=model, request_id=record.request_id, array=array
    )
    headers = {"content-type": ctype, "x-request-id": record.request_id, **extra}
    if scenario.retry_after is not None:
        seconds = scenario.retry_after
        headers["retry-after"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
        if renderer_cls.retry_after_ms:
            headers["retry-after-ms"] = str(round(seconds * 1000))
    record.status = status
    record.outcome = "error_status"
    record.bytes_sent = len(body)
    state.stats.bytes_sent += len(body)
    return web.Response(status=status, body=body, headers=headers)


class _Engine:
    """Writes one stream: phases, pacing and faults."""

    __slots__ = (
        "drop_at",
        "index",
        "malformed_at",
        "record",
        "renderer",
        "request",
        "response",
        "scenario",
        "sent",
        "stats",
    )

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        renderer: Renderer,
        scenario: Scenario,
        record: RequestRecord,
        stats: Stats,
    ) -> None:
        self.request = request
        self.response = response
        self.renderer = renderer
        self.scenario = scenario
        self.record = record
        self.stats = stats
        self.index = 0
        self.sent = 0
        self.malformed_at = scenario.malformed_at
        self.drop_at = scenario.drop_after_bytes

    async def run(self) -> None:
        """Preamble, delay, body (paced, with faults), then closing or the error."""
        sc = self.scenario
        r = self.renderer
        emit = self.emit
        if self.drop_at == 0:
            await self.drop(b"")
        for ev in r.preamble():
            await emit(ev)
        if sc.first_token_delay:
            await _sleep(self.request, sc.first_token_delay)
        loop = asyncio.get_running_loop()
        tps = sc.tokens_per_second
        error_at = sc.error_after_tokens
        stall_at = sc.stall_after_tokens
        written = 0
        paced = 0
        t0 = -1.0
        body = r.body()
        while True:
            if error_at is not None and written >= error_at:
                await self.error()
                return
            if stall_at is not None and written >= stall_at:
                stall_at = None
                await self.stall()
                t0 = -1.0
                paced = 0
            item = next(body, None)
            if item is None:
                break
            if tps is not None and item.tokens:
                if t0 < 0:
                    t0 = loop.time()
                else:
                    delay = t0 + paced / tps - loop.time()
                    if delay > 0:
                        await _sleep(self.request, delay)
                paced += item.tokens
            await emit(item)
            written += item.tokens
        if error_at is not None:
            await self.error()
            return
        if stall_at is not None:
            await self.stall()
        if sc.no_terminator:
            self.stats.faults["no_terminator"] += 1
            return
        for ev in r.closing():
            await emit(ev)

    async def stall(self) -> None:
        """Send nothing for ``stall_seconds``."""
        self.stats.faults["stall"] += 1
        await _sleep(self.request, self.scenario.stall_seconds)

    async def error(self) -> None:
        """The provider's in-band error events."""
        self.stats.faults["error"] += 1
        for ev in self.renderer.inband_error():
            await self.emit(ev)

    async def emit(self, ev: Ev) -> None:
        """Frame and write one event (corrupted if it is the ``malformed_at`` one)."""
        payload = ev.payload
        if self.index == self.malformed_at:
            payload = payload[: len(payload) // 2]
            self.stats.faults["malformed"] += 1
        self.index += 1
        data = self.renderer.frame(payload, ev.event)
        if self.drop_at is not None and self.sent + len(data) >= self.drop_at:
            await self.drop(data[: self.drop_at - self.sent])
        await self.response.write(data)
        n = len(data)
        self.sent += n
        self.record.bytes_sent += n
        self.stats.bytes_sent += n

    async def drop(self, last: bytes) -> None:
        """Write ``last`` (the bytes up to the limit), then close the connection."""
        self.stats.faults["drop"] += 1
        if last:
            await self.response.write(last)
            n = len(last)
            self.sent += n
            self.record.bytes_sent += n
            self.stats.bytes_sent += n
        transport = self.request.transport
        if transport is not None:
            # close() flushes what is buffered, then closes: the client gets exactly the
            # bytes up to the limit and then EOF in the middle of the chunked body.
            transport.close()
        raise _Dropped

"""Pipeline specs: checking with line-accurate errors, and running over loopback HTTP."""

from __future__ import annotations

import dataclasses
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from reactivex import Observable

import rxllm
from rxllm import operators as ops
from rxllm.chain import FallbackInfo, Hooks, RequestStartInfo, reset_registry
from rxllm.errors import AllProvidersFailed, SpecError
from rxllm.events import Event, Started, TextDelta, Usage
from rxllm.pipeline import SIM_HEADER, Pipeline, load, loads
from rxllm.request import Request
from rxllm.schema import load_schema
from rxllm.sim import HEADER, Scenario, Simulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PERSON = {k: v for k, v in load_schema("person.example").items() if not k.startswith("$")}
PEOPLE = {
    "type": "object",
    "required": ["people"],
    "properties": {"people": {"type": "array", "items": PERSON}},
}


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


def _yaml(text: str, tmp_path: Path | None = None) -> Pipeline:
    return loads(text, format="yaml", base_dir=tmp_path)


def _error(text: str, *, format: str = "yaml", base_dir: Path | None = None) -> SpecError:
    with pytest.raises(SpecError) as caught:
        loads(text, format=format, base_dir=base_dir)  # type: ignore[arg-type]
    return caught.value


async def _collect(source: Observable[Any]) -> list[Any]:
    return [item async for item in rxllm.to_aiter(source)]


HEAD = """\
providers:
  main: {model: openai/sim-model}
request:
  prompt: "Extract people from: {text}"
"""


# --- checking ---------------------------------------------------------------------------------


def test_unknown_operator_names_step_and_line() -> None:
    """An unknown operator is a SpecError naming the step index, the operator and its line."""
    error = _error(HEAD + "steps:\n  - json_items: {prefix: people.item}\n  - json_itemz: {}\n")
    assert error.line == 7
    assert error.path == "steps[1]"
    assert "unknown operator 'json_itemz'" in str(error)
    assert str(error).startswith("<spec>:7: steps[1]:")


def test_unknown_operator_in_json_spec_has_its_line() -> None:
    """Line numbers come from the JSON text too, not only from YAML marks."""
    spec = {
        "providers": {"main": {"model": "openai/sim-model"}},
        "request": {"prompt": "hi"},
        "steps": ["text", {"textt": None}],
    }
    text = orjson.dumps(spec, option=orjson.OPT_INDENT_2).decode()
    error = _error(text, format="json")
    expected = text.splitlines().index("    {") + 1
    assert (error.path, error.line) == ("steps[1]", expected)
    assert "textt" in str(error)


def test_missing_schema_file_names_field_and_line(tmp_path: Path) -> None:
    """A validate step whose schema file does not exist fails at load with the field's line."""
    error = _error(
        HEAD + "steps:\n  - json_items: {}\n  - validate:\n      schema: nope.schema.json\n",
        base_dir=tmp_path,
    )
    assert (error.path, error.line) == ("steps[1].validate.schema", 8)
    assert "nope.schema.json" in str(error)
    assert "not found" in str(error)


def test_wrong_type_names_field_and_line() -> None:
    """A value of the wrong type names the field, the expected type and the line."""
    error = _error(HEAD + "chain:\n  first_token_timeout: soon\n")
    assert (error.path, error.line) == ("chain.first_token_timeout", 6)
    assert "must be number or null" in str(error)


def test_unknown_option_lists_known_ones() -> None:
    """A misspelt operator option is named, with the options the operator has."""
    error = _error(HEAD + "steps:\n  - json_items:\n      prefx: people.item\n")
    assert (error.path, error.line) == ("steps[0].json_items.prefx", 7)
    assert "known: max_depth" in str(error)
    assert "prefix" in str(error)


@pytest.mark.parametrize(
    ("steps", "path", "needle"),
    [
        ("  - validate: {schema: {type: object}}\n", "steps[0].validate", "put json_items"),
        ("  - text\n  - json_items: {}\n  - text\n", "steps[2]", "stream here is items"),
        ("  - text\n  - coalesce\n", "steps[1]", "put it before text"),
        ("  - window\n", "steps[0]", "count, seconds or bytes"),
        ("  - json_items: {}\n  - validate\n", "steps[1]", "'schema'"),
        ("  - drop_oldest: {limit: 0}\n", "steps[0].drop_oldest.limit", "minimum"),
        ("  - {text: null, json_items: null}\n", "steps[0]", "one operator"),
    ],
)
def test_step_order_and_options_are_checked(steps: str, path: str, needle: str) -> None:
    """Steps that cannot follow each other or lack options are refused at load time."""
    error = _error(HEAD + "steps:\n" + steps)
    assert error.path == path
    assert needle in str(error)


def test_literal_api_key_is_refused_without_echoing_it() -> None:
    """An api_key field is refused with a pointer to api_key_env, and the key is not repeated."""
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
    error = _error(
        f"providers:\n  main:\n    model: openai/x\n    api_key: {key}\nrequest: {{prompt: hi}}\n"
    )
    assert (error.path, error.line) == ("providers.main.api_key", 4)
    assert "api_key_env" in str(error)
    assert key not in str(error)
    assert "abcdefghij" not in str(error)


def test_authorization_header_is_refused() -> None:
    """A key smuggled in through headers is refused as well."""
    error = _error(
        "providers:\n  main:\n    model: openai/x\n"
        "    headers: {Authorization: Bearer abcdefghijklmnop}\nrequest: {prompt: hi}\n"
    )
    assert error.path == "providers.main.headers.Authorization"
    assert "abcdefghijklmnop" not in str(error)


def test_unsafe_template_is_refused_at_load() -> None:
    """Templates only look fields up: attribute and index access are spec errors."""
    for prompt in ("{text.__class__}", "{rows[0]}", "{0}", "{}", "{text!r}", "{text:>{w}}", "{"):
        error = _error(HEAD.replace("Extract people from: {text}", prompt))
        assert (error.path, error.line) == ("request.prompt", 4), prompt


def test_template_renders_fields_and_escaped_braces() -> None:
    """{field} takes the row's value (non-strings as JSON) and {{ }} are literal braces."""
    pipeline = _yaml(
        HEAD.replace('"Extract people from: {text}"', """'JSON {{"a": {n}}} of {text}'""")
    )
    request = pipeline.request({"text": "ada", "n": [1, 2]})
    assert request.messages[-1].content == 'JSON {"a": [1,2]} of ada'


def test_str_row_fills_the_only_field() -> None:
    """A string row is {"input": s} and also fills the templates' single field."""
    pipeline = _yaml(HEAD)
    assert pipeline.fields == ("text",)
    assert pipeline.row("ada") == {"input": "ada", "text": "ada"}
    assert pipeline.request("ada").messages[-1].content == "Extract people from: ada"


def test_duplicate_keys_are_errors_in_both_formats() -> None:
    """A key given twice is ambiguous: both YAML and JSON specs refuse it with its line."""
    error = _error(HEAD + "request: {prompt: again}\n")
    assert (error.path, error.line) == ("request", 5)
    error = _error('{"providers": {"a": {"model": "openai/x"}},\n "providers": {}}', format="json")
    assert error.line == 2


def test_syntax_errors_have_lines() -> None:
    """Broken YAML and JSON are SpecErrors with the line of the problem."""
    assert _error(HEAD + "steps: [text,\n", format="yaml").line == 6
    assert _error('{"providers": {},\n "request": {"prompt": "p",}}', format="json").line == 2


def test_json_specs_work_without_pyyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PyYAML a JSON spec loads and a YAML spec says what is missing."""
    monkeypatch.setitem(sys.modules, "yaml", None)
    pipeline = loads('{"providers": {"a": {"model": "openai/x"}}, "request": {"prompt": "p"}}')
    assert pipeline.output == "events"
    error = _error(HEAD)
    assert "PyYAML" in str(error)


def test_schema_fragment_resolves_against_its_document(tmp_path: Path) -> None:
    """validate can point into a schema file (file#/pointer) and keeps its local $refs."""
    (tmp_path / "people.json").write_text(
        orjson.dumps(
            {
                "type": "object",
                "properties": {"people": {"type": "array", "items": {"$ref": "#/$defs/p"}}},
                "$defs": {"p": {"type": "object", "required": ["name"]}},
            }
        ).decode()
    )
    steps = (
        "steps:\n  - json_items: {prefix: people.item}\n"
        "  - validate: {schema: 'people.json#/$defs/p'}\n"
    )
    pipeline = _yaml(HEAD + steps, tmp_path)
    assert pipeline.output == "items"
    error = _error(HEAD + steps.replace("$defs/p", "$defs/q"), base_dir=tmp_path)
    assert error.path == "steps[1].validate.schema"
    assert "nothing at #/$defs/q" in str(error)


def test_unknown_provider_in_order_and_sim() -> None:
    """chain.order and sim may only name declared providers."""
    assert _error(HEAD + "chain: {order: [main, other]}\n").path == "chain.order[1]"
    assert _error(HEAD + "sim: {other: {}}\n").path == "sim.other"


def test_output_kind_follows_the_steps() -> None:
    """output is events without steps, text after text, items after json_items or window."""
    assert _yaml(HEAD).output == "events"
    assert _yaml(HEAD + "steps: [coalesce, text]\n").output == "text"
    assert _yaml(HEAD + "steps: [text, {json_items: {prefix: item}}]\n").output == "items"
    assert _yaml(HEAD + "steps: [{window: {count: 5}}]\n").output == "items"


def test_every_example_loads() -> None:
    """Each spec in examples/ is valid and says what it emits."""
    specs = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    specs = [p for p in specs if not p.name.endswith(".schema.json")]
    assert len(specs) >= 3
    for path in specs:
        pipeline = load(path)
        assert pipeline.output in ("text", "items", "events")
        assert pipeline.name


def test_schema_scenario_fields_match_the_simulator() -> None:
    """The spec schema's sim scenario lists exactly the simulator's Scenario fields."""
    listed = set(load_schema("pipeline")["$defs"]["scenario"]["properties"])
    assert listed == {f.name for f in dataclasses.fields(Scenario)}
    assert SIM_HEADER == HEADER


def test_pipeline_cannot_be_built_directly() -> None:
    """Pipelines come from load()/loads(), never from a half-checked constructor."""
    with pytest.raises(TypeError):
        Pipeline()


# --- running over loopback --------------------------------------------------------------------


def _extraction_spec(sim: Simulator, *, primary: dict[str, Any], backup: dict[str, Any]) -> str:
    spec = {
        "providers": {
            "primary": {"model": "openai/sim-primary", "base_url": sim.base_url("openai")},
            "backup": {"model": "anthropic/sim-backup", "base_url": sim.base_url("anthropic")},
        },
        "chain": {"retry": False, "breaker": False},
        "request": {"prompt": "Extract people from: {text}", "response_schema": PEOPLE},
        "steps": [
            {"json_items": {"prefix": "people.item"}},
            {"validate": {"schema": PERSON, "on_invalid": "patch"}},
        ],
        "sim": {"primary": primary, "backup": backup},
    }
    return orjson.dumps(spec).decode()


async def test_spec_equals_hand_written_pipe(rxllm_sim: Simulator) -> None:
    """The spec's stream equals provider.stream(...).pipe(fallback, json_items, validate)."""
    primary_scenario = {"status": 503}
    backup_scenario = {"json_items": 6, "invalid_share": 0.34, "chunk_tokens": 2}
    spec = _extraction_spec(rxllm_sim, primary=primary_scenario, backup=backup_scenario)
    pipeline = loads(spec).with_simulator(rxllm_sim)
    from_spec = await _collect(pipeline.stream({"text": "Ada and Grace"}))

    request = Request.of("Extract people from: Ada and Grace", response_schema=PEOPLE)
    primary = rxllm.provider(
        "openai/sim-primary",
        base_url=rxllm_sim.base_url("openai"),
        api_key="sim",
        headers={HEADER: orjson.dumps(primary_scenario).decode()},
    )
    backup = rxllm.provider(
        "anthropic/sim-backup",
        base_url=rxllm_sim.base_url("anthropic"),
        api_key="sim",
        headers={HEADER: orjson.dumps(backup_scenario).decode()},
    )
    by_hand = await _collect(
        primary.stream(request).pipe(
            ops.fallback(lambda: backup.stream(request)),
            ops.json_items("people.item"),
            ops.validate(PERSON, on_invalid="patch"),
        )
    )
    assert len(from_spec) == 5  # six written, one repaired, one beyond repair
    assert from_spec == by_hand
    assert rxllm_sim.stats.count("openai", "sim-primary") == 2
    assert rxllm_sim.stats.count("anthropic", "sim-backup") == 2


async def test_text_spec_equals_hand_written_pipe(rxllm_sim: Simulator) -> None:
    """A text spec emits the very deltas a hand-written pipe over the same provider gives."""
    spec = (
        HEAD.replace("{text}", "{input}")
        + "steps: [text]\nsim: {main: {text: 'one two three four'}}\n"
    )
    pipeline = _yaml(spec).with_simulator(rxllm_sim)
    assert pipeline.output == "text"
    from_spec = await _collect(pipeline.stream("now"))
    provider = rxllm.provider(
        "openai/sim-model",
        base_url=rxllm_sim.base_url("openai"),
        api_key="sim",
        headers={HEADER: '{"text": "one two three four"}'},
    )
    events = await _collect(provider.stream(Request.of("Extract people from: now")))
    assert from_spec == [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(from_spec) == "one two three four"


async def test_template_error_is_a_spec_error_with_the_row(rxllm_sim: Simulator) -> None:
    """A row without a template field fails the stream with SpecError naming it; no request."""
    pipeline = _yaml(HEAD + "steps: [text]\n").with_simulator(rxllm_sim)
    with pytest.raises(SpecError) as caught:
        await _collect(pipeline.stream({"id": "row-17", "title": "no text here"}))
    error = caught.value
    assert (error.path, error.line) == ("request.prompt", 4)
    assert "'text'" in str(error)
    assert "'row-17'" in str(error)
    assert "title" in str(error)
    assert rxllm_sim.stats.requests == 0


async def test_on_event_sees_the_answering_attempt(rxllm_sim: Simulator) -> None:
    """on_event gets the raw events of the provider that answered, before the steps."""
    spec = _extraction_spec(
        rxllm_sim, primary={"status": 503}, backup={"json_items": 2, "tokens_per_second": None}
    )
    pipeline = loads(spec).with_simulator(rxllm_sim)
    seen: list[Event] = []
    items = await _collect(pipeline.stream({"text": "x"}, on_event=seen.append))
    assert len(items) == 2
    assert isinstance(seen[0], Started)
    assert seen[0].provider == "backup"
    assert all(not isinstance(e, Started) or e.provider == "backup" for e in seen)
    assert any(isinstance(e, Usage) for e in seen)
    assert "".join(e.text for e in seen if isinstance(e, TextDelta)).startswith('{"people"')


async def test_hooks_are_merged_with_the_specs(rxllm_sim: Simulator) -> None:
    """Hooks given to load() and to stream() both fire, the pipeline's first."""
    calls: list[str] = []
    spec = _extraction_spec(rxllm_sim, primary={"status": 503}, backup={"json_items": 1})
    pipeline = loads(
        spec, hooks=Hooks(on_fallback=lambda info: calls.append(f"spec:{info.to_provider}"))
    ).with_simulator(rxllm_sim)

    def on_fallback(info: FallbackInfo) -> None:
        calls.append(f"call:{info.to_provider}")

    def on_start(info: RequestStartInfo) -> None:
        calls.append(f"start:{info.provider}:{info.request.metadata.get('row_id')}")

    hooks = Hooks(on_fallback=on_fallback, on_request_start=on_start)
    await _collect(pipeline.stream({"id": 3, "text": "x"}, hooks=hooks))
    assert calls == ["start:primary:3", "spec:backup", "call:backup", "start:backup:3"]


class _Counting:
    """A provider wrapper that counts the streams it opens."""

    def __init__(self, inner: rxllm.Provider, log: list[str]) -> None:
        self.inner = inner
        self.log = log
        self.name = inner.name
        self.cost_per_token = inner.cost_per_token

    def stream(self, request: Request) -> Observable[Event]:
        self.log.append(self.name)
        return self.inner.stream(request)


async def test_with_providers_wraps_what_the_chain_streams_from(rxllm_sim: Simulator) -> None:
    """with_providers calls wrap once per provider and the chain streams through the wrappers."""
    log: list[str] = []
    made: list[str] = []

    def wrap(p: rxllm.Provider) -> _Counting:
        made.append(p.name)
        return _Counting(p, log)

    spec = _extraction_spec(rxllm_sim, primary={"status": 503}, backup={"json_items": 1})
    base = loads(spec).with_simulator(rxllm_sim)
    wrapped = base.with_providers(wrap)
    assert made == ["primary", "backup"]
    for _ in range(2):
        assert len(await _collect(wrapped.stream({"text": "x"}))) == 1
    assert made == ["primary", "backup"]
    assert log == ["primary", "backup", "primary", "backup"]
    assert isinstance(wrapped.providers["primary"], rxllm.Provider)
    assert log == ["primary", "backup", "primary", "backup"]
    await _collect(base.stream({"text": "x"}))  # the original is unchanged
    assert len(log) == 4


async def test_with_base_urls_repoints_every_provider(rxllm_sim: Simulator) -> None:
    """with_base_urls moves providers to new endpoints; wrappers are applied again."""
    spec = (
        "providers:\n  a: {model: openai/sim-a, base_url: 'http://127.0.0.1:9/v1'}\n"
        "chain: {retry: false}\nrequest: {prompt: hi}\nsteps: [text]\n"
    )
    log: list[str] = []
    pipeline = _yaml(spec).with_providers(lambda p: _Counting(p, log))
    with pytest.raises(AllProvidersFailed):
        await _collect(pipeline.stream({}))
    moved = pipeline.with_base_urls(lambda p: rxllm_sim.base_url(p.dialect.name))
    assert moved.providers["a"].base_url == rxllm_sim.base_url("openai")
    assert "".join(await _collect(moved.stream({})))
    assert log == ["a", "a"]
    assert rxllm_sim.stats.count("openai", "sim-a") == 1


async def test_tool_calls_and_window_steps(rxllm_sim: Simulator) -> None:
    """tool_calls emits complete calls as objects; window batches them."""
    spec = (
        HEAD.replace("{text}", "{input}")
        + "steps: [tool_calls, {window: {count: 2}}]\n"
        + "sim:\n  main:\n    tool_calls:\n"
        + "".join(f"      - {{name: f{i}, arguments: {{n: {i}}}}}\n" for i in range(3))
    )
    pipeline = _yaml(spec).with_simulator(rxllm_sim)
    batches = await _collect(pipeline.stream("go"))
    assert [[c["name"] for c in batch] for batch in batches] == [["f0", "f1"], ["f2"]]
    assert batches[0][1]["arguments"] == {"n": 1}


async def test_on_event_that_raises_is_logged_and_the_stream_goes_on(
    rxllm_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing on_event callback is logged on the rxllm logger and breaks nothing."""
    spec = _extraction_spec(rxllm_sim, primary={"json_items": 2}, backup={})

    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    pipeline = loads(spec).with_simulator(rxllm_sim)
    with caplog.at_level("ERROR", logger="rxllm"):
        items = await _collect(pipeline.stream({"text": "x"}, on_event=broken))
    assert len(items) == 2
    assert "observer bug" in caplog.text


async def test_a_row_that_is_not_an_object_fails_the_stream(rxllm_sim: Simulator) -> None:
    """A row that is neither an object nor a string is a SpecError, not a request."""
    pipeline = _yaml(HEAD).with_simulator(rxllm_sim)
    with pytest.raises(SpecError, match="an input row is an object or a string, not list"):
        await _collect(pipeline.stream([1, 2]))  # type: ignore[arg-type]
    assert rxllm_sim.stats.requests == 0


async def test_the_demo_extraction_falls_over_and_prints_people(rxllm_sim: Simulator) -> None:
    """rxllm demo's extraction section shows the fallback, each person and the outcomes."""
    from rxllm._demo import _extraction_demo, _Style

    out = io.StringIO()
    await _extraction_demo(rxllm_sim, out, _Style(False))
    text = out.getvalue()
    assert "primary failed (server_error 503) -> backup" in text
    people = [orjson.loads(line) for line in text.splitlines() if line.startswith("  {")]
    assert len(people) == 4
    assert "validation: 3 valid, 1 patched, 1 skipped" in text


def test_providers_are_listed_in_the_order_the_chain_tries_them() -> None:
    """providers follows chain.order (or cost), then the providers the chain leaves out."""
    spec = (
        "providers:\n"
        "  a: {model: openai/a, cost_per_token: 3.0}\n"
        "  b: {model: openai/b, cost_per_token: 1.0}\n"
        "  c: {model: openai/c, cost_per_token: 2.0}\n"
        "request: {prompt: hi}\n"
    )
    assert list(_yaml(spec + "chain: {order: [c, a]}\n").providers) == ["c", "a", "b"]
    assert list(_yaml(spec + "chain: {order_by: cost}\n").providers) == ["b", "c", "a"]
    assert _yaml(spec).providers["b"].base_url == "https://api.openai.com/v1"

"""Pipelines written as data: a YAML or JSON spec becomes a ``Pipeline`` (spec -> Observable).

A spec names its providers, the chain that tries them (DESIGN.md's first-token rule:
retries and fallback before the first token, never after it), the request as a template
filled from each input row, and the operators applied to the answer::

    providers:
      primary: {model: openai/gpt-4o-mini, api_key_env: OPENAI_API_KEY}
      backup:  {model: anthropic/claude-haiku-4-5}
    chain: {order: [primary, backup], first_token_timeout: 10}
    request:
      prompt: "Extract people from: {text}"
      response_schema: people.schema.json
    steps:
      - json_items: {prefix: people.item}
      - validate: {schema: "people.schema.json#/$defs/person", on_invalid: patch}

``load(path)`` checks the whole spec against ``schemas/pipeline.schema.json`` and then its
meaning (provider names, schema files, templates, the order of steps) before anything is
sent: every mistake is a ``SpecError`` whose ``path`` names the field and ``line`` its line.
A spec holds the *name* of the environment variable with the key (``api_key_env``), never
the key; an ``api_key`` field or an authorization header is refused.

``Pipeline.stream(row)`` is the same Observable as the hand-written
``Chain(...).stream(request).pipe(*operators)``; docs/pipelines.md documents each field.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from os import PathLike
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeAlias

import orjson
import reactivex
from jsonschema.exceptions import ValidationError
from reactivex import Observable

from rxllm.chain import BreakerPolicy, Chain, Hooks, RetryPolicy
from rxllm.errors import ConfigError, SchemaError, SpecError
from rxllm.events import Event
from rxllm.operators import ValidationReport
from rxllm.providers._base import SECRET_HEADERS
from rxllm.request import Request, Tool
from rxllm.schema import CompiledSchema, compile_schema, load_schema
from rxllm.transport import Provider, Timeouts, provider

from ._pipeline_source import FieldPath, Located, parse_text
from ._pipeline_steps import STEPS, Kind, Step, tap
from ._pipeline_template import Template, TemplateError

__all__ = [
    "PIPELINE_SCHEMA_ID",
    "SIM_HEADER",
    "Output",
    "Pipeline",
    "SimulatorLike",
    "load",
    "loads",
    "merge_hooks",
]

PIPELINE_SCHEMA_ID: Final = "urn:rxllm:schema:pipeline"
"""``$id`` of ``schemas/pipeline.schema.json``."""

SIM_HEADER: Final = "x-rxllm-sim"
"""The simulator's scenario header (``rxllm.sim.HEADER``; not imported: the simulator is an
edge and this module is composition)."""

Output: TypeAlias = Literal["text", "items", "events"]
"""What ``Pipeline.stream`` emits: ``str`` deltas, parsed items (values, tool calls,
batches) or ``rxllm.Event`` objects."""

_FORMATS = ("json", "yaml")

_log = logging.getLogger("rxllm")


class SimulatorLike(Protocol):
    """What ``Pipeline.with_simulator`` needs: ``rxllm.sim.Simulator`` or anything like it."""

    def base_url(self, dialect: str) -> str:
        """The simulator's base URL for ``dialect``."""
        ...


# --- loading --------------------------------------------------------------------------------


def load(path: str | PathLike[str], *, hooks: Hooks | None = None) -> Pipeline:
    """Read and check the spec at ``path`` (``.json``, else YAML); ``SpecError`` if wrong.

    Files the spec names (schemas) are relative to the spec's folder. ``hooks`` become the
    pipeline's own hooks, fired by every stream besides the ones ``stream`` is given.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read the spec: {exc}") from None
    suffix = p.suffix.lower()
    fmt: Literal["json", "yaml"] | None = (
        "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else None
    )
    return loads(text, base_dir=p.parent, format=fmt, name=p.stem, source=str(p), hooks=hooks)


def loads(
    text: str,
    *,
    base_dir: str | PathLike[str] | None = None,
    format: Literal["json", "yaml"] | None = None,
    name: str | None = None,
    source: str | None = None,
    hooks: Hooks | None = None,
) -> Pipeline:
    """Check the spec in ``text`` and build its ``Pipeline``.

    Args:
        base_dir: where relative file names in the spec are looked up (default: the
            current directory).
        format: ``"json"`` or ``"yaml"``; by default JSON when the text starts with ``{``.
            YAML needs PyYAML.
        name: the pipeline's name when the spec has no ``name`` (default ``"pipeline"``).
        source: how errors name the spec (default ``"<spec>"``).
        hooks: the pipeline's own hooks (see ``load``).
    """
    if format is None:
        format = "json" if text.lstrip().startswith("{") else "yaml"
    elif format not in _FORMATS:
        raise ConfigError(f"format is 'json' or 'yaml', not {format!r}")
    located = parse_text(text, format=format, source=source or "<spec>")
    builder = _Builder(located, Path(base_dir) if base_dir is not None else Path())
    spec = builder.build(default_name=name or "pipeline", hooks=hooks)
    return Pipeline._create(spec, spec.providers, ())


# --- the pipeline ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _ChainSettings:
    order: tuple[str, ...]
    order_by: Literal["given", "cost"]
    retry: RetryPolicy | None
    breaker: BreakerPolicy | None
    first_token_timeout: float | None
    idle_timeout: float | None
    exhausted_for: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Spec:
    """Everything a loaded spec says, checked."""

    name: str
    description: str
    located: Located
    providers: Mapping[str, Provider]
    chain: _ChainSettings
    system: Template | None
    prompt: Template
    request: Mapping[str, Any]
    steps: tuple[Step, ...]
    output: Output
    default_input: Mapping[str, Any] | None
    sim: Mapping[str, Mapping[str, Any]]
    hooks: Hooks | None


class Pipeline:
    """A loaded spec: ``stream(row)`` runs it for one input row.

    Attributes:
        name: the spec's ``name``, or the file's stem.
        description: the spec's ``description`` (may be empty).
        output: what ``stream`` emits: ``"text"`` (``str`` deltas), ``"items"`` (parsed
            JSON values, tool calls or batches) or ``"events"`` (``rxllm.Event``).
        providers: the ``rxllm.Provider`` of each spec name, in the order the chain
            tries them (then any the chain does not use); ``with_providers`` wrappers are
            applied to what the chain streams from, not here.
        fields: the row fields the templates use, in order.
        steps: the names of the steps, in order.
        default_input: the spec's ``input`` row (``None`` if it has none).
        sim_scenarios: the spec's ``sim`` section: simulator scenario fields by provider
            name (``"*"``: the others).
    """

    __slots__ = ("_chain_providers", "_spec", "_wraps", "providers")

    _spec: _Spec
    _wraps: tuple[Callable[[Provider], Any], ...]
    _chain_providers: tuple[Any, ...]
    providers: Mapping[str, Provider]

    def __init__(self) -> None:
        raise TypeError("use rxllm.pipeline.load(path) or loads(text) to make a Pipeline")

    @classmethod
    def _create(
        cls,
        spec: _Spec,
        providers: Mapping[str, Provider],
        wraps: tuple[Callable[[Provider], Any], ...],
    ) -> Pipeline:
        self = object.__new__(cls)
        self._spec = spec
        self._wraps = wraps
        order = list(spec.chain.order)
        if spec.chain.order_by == "cost":  # as the chain will sort them (stable)
            order.sort(key=lambda name: _cost_key(providers[name]))
        order += [name for name in providers if name not in order]
        self.providers = _ReadOnly({name: providers[name] for name in order})
        chained = []
        for name in spec.chain.order:
            member: Any = providers[name]
            for wrap in wraps:
                member = wrap(member)
            chained.append(member)
        self._chain_providers = tuple(chained)
        return self

    # --- what it is -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The spec's ``name``, or the file's stem."""
        return self._spec.name

    @property
    def description(self) -> str:
        """The spec's ``description``."""
        return self._spec.description

    @property
    def output(self) -> Output:
        """``"text"``, ``"items"`` or ``"events"``: what ``stream`` emits."""
        return self._spec.output

    @property
    def fields(self) -> tuple[str, ...]:
        """The row fields the system and prompt templates use."""
        found = list(self._spec.prompt.fields)
        if self._spec.system is not None:
            found += [f for f in self._spec.system.fields if f not in found]
        return tuple(found)

    @property
    def steps(self) -> tuple[str, ...]:
        """The step names, in order."""
        return tuple(step.name for step in self._spec.steps)

    @property
    def default_input(self) -> Mapping[str, Any] | None:
        """The spec's ``input`` as a row, or ``None``."""
        return self._spec.default_input

    @property
    def sim_scenarios(self) -> Mapping[str, Mapping[str, Any]]:
        """Simulator scenario fields by provider name (``"*"``: every other provider)."""
        return self._spec.sim

    def __repr__(self) -> str:
        return (
            f"Pipeline({self.name!r}, providers={list(self._spec.chain.order)!r}, "
            f"steps={list(self.steps)!r}, output={self.output!r})"
        )

    # --- running --------------------------------------------------------------------------

    def row(self, value: Mapping[str, Any] | str) -> Mapping[str, Any]:
        """The row ``value`` stands for: a mapping as is; a ``str`` is ``{"input": str}``,
        and also fills the templates' field when they use exactly one."""
        if isinstance(value, str):
            row = {"input": value}
            used = self.fields
            if len(used) == 1:
                row[used[0]] = value
            return row
        return value

    def request(self, row: Mapping[str, Any] | str) -> Request:
        """The ``Request`` for one row; ``SpecError`` (with the row's ``id``, if it has one)
        when a template names a field the row lacks."""
        spec = self._spec
        if not isinstance(row, Mapping | str):
            raise SpecError(
                f"{spec.located.source}: an input row is an object or a string, "
                f"not {type(row).__name__}"
            )
        data = self.row(row)
        system = self._render(spec.system, data, ("request", "system"))
        prompt = self._render(spec.prompt, data, ("request", "prompt"))
        assert prompt is not None
        metadata: dict[str, Any] = {"pipeline": spec.name}
        if "id" in data:
            metadata["row_id"] = data["id"]
        return Request.of(prompt, system=system, metadata=metadata, **spec.request)

    def _render(
        self, template: Template | None, row: Mapping[str, Any], path: FieldPath
    ) -> str | None:
        if template is None:
            return None
        try:
            return template.render(row)
        except KeyError as exc:
            field = exc.args[0]
            which = f"row {row['id']!r}" if "id" in row else "the row"
            has = ", ".join(sorted(map(str, row))) or "no fields"
            raise self._spec.located.error(
                path, f"the template needs field {field!r}, which {which} lacks (it has: {has})"
            ) from None

    def stream(
        self,
        row: Mapping[str, Any] | str,
        *,
        hooks: Hooks | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_report: Callable[[ValidationReport], None] | None = None,
    ) -> Observable[Any]:
        """The steps' output for one input row (a str is ``{"input": str}``); one chain per call.

        ``hooks`` are merged with the spec's (both fire). ``on_event`` sees every raw
        provider event (``Started``, ``Usage``, ...) of the attempt that answered, before
        the steps (one that raises is logged, as a hook is). ``on_report`` sees each
        ``validate`` step's reports. A row the templates
        cannot fill makes the Observable fail with ``SpecError`` (no request is made).
        Cold: each subscription runs the chain afresh.
        """
        try:
            request = self.request(row)
        except SpecError as exc:
            return reactivex.throw(exc)
        settings = self._spec.chain
        options: dict[str, Any] = {}
        if settings.exhausted_for is not None:
            options["exhausted_for"] = settings.exhausted_for
        chain = Chain(
            self._chain_providers,
            retry=settings.retry,
            breaker=settings.breaker,
            hooks=merge_hooks(self._spec.hooks, hooks),
            first_token_timeout=settings.first_token_timeout,
            idle_timeout=settings.idle_timeout,
            order=settings.order_by,
            **options,
        )
        source: Observable[Any] = chain.stream(request)
        if on_event is not None:
            source = tap(source, _guarded(on_event))
        for step in self._spec.steps:
            source = step.operator(on_report)(source)
        return source

    # --- variants -------------------------------------------------------------------------

    def with_providers(self, wrap: Callable[[Provider], Any]) -> Pipeline:
        """The same pipeline with every provider replaced by ``wrap(provider)``.

        The wrapper needs ``.name``, ``.stream(request)`` and, for ``order_by: cost``,
        ``.cost_per_token`` (rate limiters, recorders). ``wrap`` is called once per provider
        here, not per stream; wrappers stack in the order they were added.
        """
        return Pipeline._create(self._spec, self.providers, (*self._wraps, wrap))

    def with_base_urls(self, base_url_for: Callable[[Provider], str]) -> Pipeline:
        """The same pipeline with each provider's base URL set to ``base_url_for(provider)``
        (wrappers from ``with_providers`` are applied again to the new providers)."""
        return self._replace_providers(lambda _, p: p.with_options(base_url=base_url_for(p)))

    def with_simulator(self, sim: SimulatorLike) -> Pipeline:
        """The same pipeline against a provider simulator (``rxllm.sim.serve()``).

        Each provider is pointed at the simulator's endpoint for its dialect, with a
        placeholder key (a real key in the environment is never sent), and asks for its
        scenario from the spec's ``sim`` section (its own entry, else ``"*"``) through the
        simulator's ``x-rxllm-sim`` header.
        """
        scenarios = self._spec.sim

        def point(key: str, p: Provider) -> Provider:
            headers = dict(p.headers)
            scenario = scenarios.get(key, scenarios.get("*"))
            if scenario:
                headers[SIM_HEADER] = orjson.dumps(scenario).decode()
            return p.with_options(
                base_url=sim.base_url(p.dialect.name),
                api_key="sim",
                api_key_env=(),
                headers=headers,
            )

        return self._replace_providers(point)

    def _replace_providers(self, change: Callable[[str, Provider], Provider]) -> Pipeline:
        replaced = {key: change(key, p) for key, p in self.providers.items()}
        return Pipeline._create(self._spec, replaced, self._wraps)


def _cost_key(p: Provider) -> tuple[bool, float]:
    cost = p.cost_per_token
    return (cost is None, float(cost) if cost is not None else 0.0)


class _ReadOnly(dict[str, Provider]):
    """A read-only mapping of providers."""

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a pipeline's providers are read-only: use with_providers()")

    __setitem__ = __delitem__ = _readonly
    update = pop = popitem = clear = setdefault = _readonly
    __ior__ = _readonly


def merge_hooks(first: Hooks | None, second: Hooks | None) -> Hooks | None:
    """Hooks that call ``first``'s callback and then ``second``'s, for each kind of hook."""
    if first is None:
        return second
    if second is None:
        return first
    merged: dict[str, Any] = {}
    for f in fields(Hooks):
        a, b = getattr(first, f.name), getattr(second, f.name)
        merged[f.name] = b if a is None else a if b is None else _both(a, b)
    return Hooks(**merged)


def _guarded(callback: Callable[[Event], None]) -> Callable[[Event], None]:
    """``callback``, except that an exception it raises is logged and the stream goes on
    (as for hooks)."""

    def call(event: Event) -> None:
        try:
            callback(event)
        except Exception:  # noqa: BLE001 - an observer callback must never break a stream
            _log.exception("rxllm on_event callback %r raised", callback)

    return call


def _both(a: Callable[[Any], object], b: Callable[[Any], object]) -> Callable[[Any], None]:
    def call(info: Any) -> None:
        try:
            a(info)
        finally:
            b(info)

    return call


# --- checking a spec ------------------------------------------------------------------------

_KEY_HINT = (
    "a spec never holds an API key: put the key in an environment variable and name the "
    "variable with api_key_env (for example api_key_env: OPENAI_API_KEY)"
)


@functools.cache
def _spec_schema() -> CompiledSchema:
    return compile_schema(load_schema("pipeline"))


class _Builder:
    """Checks one parsed spec and builds its parts; every error points at its line."""

    def __init__(self, located: Located, base_dir: Path) -> None:
        self.located = located
        self.base_dir = base_dir
        self._files: dict[Path, Any] = {}

    def error(self, path: FieldPath, message: str) -> SpecError:
        return self.located.error(path, message)

    # --- the whole spec -------------------------------------------------------------------

    def build(self, *, default_name: str, hooks: Hooks | None) -> _Spec:
        data = self.located.data
        if not isinstance(data, Mapping):
            raise self.error((), "a pipeline spec is a mapping with providers and request")
        self._refuse_keys(data)
        self._check_schema(data)
        providers = self._providers(data["providers"])
        chain = self._chain(data.get("chain") or {}, providers)
        request = data["request"]
        system = self._template(request.get("system"), ("request", "system"))
        prompt = self._template(request["prompt"], ("request", "prompt"))
        assert prompt is not None
        steps, output = self._steps(data.get("steps") or [])
        return _Spec(
            name=data.get("name") or default_name,
            description=data.get("description", ""),
            located=self.located,
            providers=providers,
            chain=chain,
            system=system,
            prompt=prompt,
            request=self._request(request),
            steps=steps,
            output=output,
            default_input=self._input(data.get("input"), prompt, system),
            sim=self._sim(data.get("sim") or {}, providers),
            hooks=hooks,
        )

    def _refuse_keys(self, data: Mapping[str, Any]) -> None:
        """No key in the spec: checked before the schema, whose message would be generic."""
        providers = data.get("providers")
        if not isinstance(providers, Mapping):
            return
        for name, entry in providers.items():
            if not isinstance(entry, Mapping):
                continue
            for field in ("api_key", "apiKey", "key"):
                if field in entry:
                    raise self.error(("providers", name, field), _KEY_HINT)
            headers = entry.get("headers")
            if isinstance(headers, Mapping):
                for header in headers:
                    if isinstance(header, str) and header.lower() in SECRET_HEADERS:
                        raise self.error(
                            ("providers", name, "headers", header),
                            f"{header} carries a key; {_KEY_HINT}",
                        )

    def _check_schema(self, data: Mapping[str, Any]) -> None:
        errors = list(_spec_schema().validator.iter_errors(data))
        if not errors:
            return
        described = [_describe(e) for e in errors]
        described.sort(key=lambda d: (self.located.line(d[0]) or 0, -len(d[0])))
        path, message = described[0]
        more = len(set(described)) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise self.error(path, message)

    # --- providers and chain --------------------------------------------------------------

    def _providers(self, entries: Mapping[str, Any]) -> dict[str, Provider]:
        out: dict[str, Provider] = {}
        for key, entry in entries.items():
            options: dict[str, Any] = {"name": entry.get("name", key)}
            for option in ("base_url", "api_key_env", "cost_per_token", "headers"):
                if option in entry:
                    options[option] = entry[option]
            if isinstance(options.get("api_key_env"), list):
                options["api_key_env"] = tuple(options["api_key_env"])
            if "timeouts" in entry:
                options["timeouts"] = Timeouts(**entry["timeouts"])
            try:
                out[key] = provider(entry["model"], **options)
            except ConfigError as exc:
                raise self.error(("providers", key, "model"), str(exc)) from None
        return out

    def _chain(self, entry: Mapping[str, Any], providers: Mapping[str, Provider]) -> _ChainSettings:
        order = entry.get("order")
        if order is None:
            order = list(providers)
        seen: set[str] = set()
        for index, name in enumerate(order):
            if name not in providers:
                raise self.error(
                    ("chain", "order", index),
                    f"no provider named {name!r}; providers: {', '.join(providers)}",
                )
            if name in seen:
                raise self.error(("chain", "order", index), f"{name!r} is listed twice")
            seen.add(name)
        retry = self._policy(entry, "retry", RetryPolicy)
        breaker = self._policy(entry, "breaker", BreakerPolicy)
        return _ChainSettings(
            order=tuple(order),
            order_by=entry.get("order_by", "given"),
            retry=retry,
            breaker=breaker,
            first_token_timeout=entry.get("first_token_timeout"),
            idle_timeout=entry.get("idle_timeout"),
            exhausted_for=entry.get("exhausted_for"),
        )

    def _policy(self, entry: Mapping[str, Any], field: str, cls: Any) -> Any:
        if field not in entry or entry[field] is True:
            return cls()
        value = entry[field]
        if value is None or value is False:
            return None
        try:
            return cls(**value)
        except ConfigError as exc:
            raise self.error(("chain", field), str(exc)) from None

    # --- the request ----------------------------------------------------------------------

    def _template(self, text: str | None, path: FieldPath) -> Template | None:
        if text is None:
            return None
        try:
            return Template(text)
        except TemplateError as exc:
            raise self.error(path, str(exc)) from None

    def _request(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for index, tool in enumerate(entry.get("tools") or ()):
            try:
                Tool.coerce(tool)
            except ConfigError as exc:
                raise self.error(("request", "tools", index), str(exc)) from None
        if entry.get("tools"):
            out["tools"] = tuple(Tool.coerce(t) for t in entry["tools"])
        for option in ("tool_choice", "temperature", "max_tokens", "response_schema_name"):
            if option in entry:
                out[option] = entry[option]
        if "stop" in entry:
            stop = entry["stop"]
            out["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        if "extra" in entry:
            out["extra"] = dict(entry["extra"])
        if "response_schema" in entry:
            out["response_schema"] = self._schema(
                entry["response_schema"], ("request", "response_schema")
            )
        try:
            Request.of("check", **out)
        except ConfigError as exc:
            raise self.error(("request",), str(exc)) from None
        return out

    def _schema(self, value: Any, path: FieldPath) -> dict[str, Any]:
        """A schema written inline or as ``file[#/pointer]`` relative to the spec, compiled
        once to check it."""
        if isinstance(value, Mapping):
            schema = dict(value)
        else:
            schema = self._schema_file(str(value), path)
        try:
            compile_schema(schema)
        except SchemaError as exc:
            raise self.error(path, str(exc)) from None
        return schema

    def _schema_file(self, ref: str, path: FieldPath) -> dict[str, Any]:
        name, _, pointer = ref.partition("#")
        if not name:
            raise self.error(path, f"{ref!r} names no file (write file.json#/pointer)")
        file = self.base_dir / name
        document = self._files.get(file)
        if document is None:
            try:
                text = file.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise self.error(
                    path, f"schema file {name!r} not found (looked for {file.absolute()})"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise self.error(path, f"cannot read schema file {name!r}: {exc}") from None
            fmt: Literal["json", "yaml"] = (
                "yaml" if file.suffix.lower() in (".yaml", ".yml") else "json"
            )
            try:
                document = parse_text(text, format=fmt, source=str(file)).data
            except SpecError as exc:
                raise self.error(path, f"schema file {name!r} is not valid: {exc}") from None
            if not isinstance(document, Mapping):
                raise self.error(path, f"schema file {name!r} does not hold a JSON object")
            self._files[file] = document
        if not pointer:
            return dict(document)
        target: Any = document
        for part in pointer.lstrip("/").split("/") if pointer.strip("/") else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise self.error(path, f"{name!r} has nothing at #{pointer}")
        if not isinstance(target, Mapping):
            raise self.error(path, f"#{pointer} in {name!r} is not a schema object")
        # Keep the document around the fragment, so its local $refs still resolve.
        wrapper = {
            k: document[k] for k in ("$schema", "$id", "$defs", "definitions") if k in document
        }
        wrapper["$ref"] = "#" + pointer
        return wrapper

    # --- steps ----------------------------------------------------------------------------

    def _steps(self, entries: Sequence[Any]) -> tuple[tuple[Step, ...], Output]:
        kind: Kind = "events"
        steps: list[Step] = []
        for index, entry in enumerate(entries):
            path: FieldPath
            if isinstance(entry, str):
                name, options, path = entry, {}, ("steps", index)
            else:
                ((name, raw),) = entry.items()
                options, path = dict(raw or {}), ("steps", index, name)
            definition = STEPS[name]
            self._check_options(name, options, path)
            if kind not in definition.accepts:
                wants = " or ".join(sorted(definition.accepts))
                hint = f"; {definition.hint}" if definition.hint else ""
                raise self.error(path, f"{name} takes {wants}, but the stream here is {kind}{hint}")
            if name == "validate":
                options["schema"] = self._schema(options["schema"], (*path, "schema"))
            step = Step(name, options, path)
            try:
                step.operator()  # builds it once: the operator checks its own arguments
            except (ConfigError, SchemaError, TypeError) as exc:
                raise self.error(path, str(exc)) from None
            steps.append(step)
            kind = definition.output(kind)
        return tuple(steps), kind

    def _check_options(self, name: str, options: Mapping[str, Any], path: FieldPath) -> None:
        """A step written as a bare name still needs its required options."""
        compiled = _spec_schema()
        sub = compiled.sub(compiled.resolve(f"#/$defs/op_{name}"))
        errors = list(sub.validator.iter_errors(options))
        if errors:
            sub_path, message = _describe(errors[0])
            raise self.error((*path, *sub_path), message)

    # --- input and sim --------------------------------------------------------------------

    def _input(
        self, value: Any, prompt: Template, system: Template | None
    ) -> Mapping[str, Any] | None:
        if value is None:
            return None
        if isinstance(value, str):
            row = {"input": value}
            used = list(prompt.fields) + [
                f for f in (system.fields if system else ()) if f not in prompt.fields
            ]
            if len(used) == 1:
                row[used[0]] = value
            return row
        return dict(value)

    def _sim(
        self, entries: Mapping[str, Any], providers: Mapping[str, Provider]
    ) -> dict[str, Mapping[str, Any]]:
        for key in entries:
            if key != "*" and key not in providers:
                raise self.error(
                    ("sim", key),
                    f"no provider named {key!r}; providers: {', '.join(providers)} (or '*')",
                )
        return {key: dict(value) for key, value in entries.items()}


# --- schema errors in words -----------------------------------------------------------------


def _describe(error: ValidationError) -> tuple[FieldPath, str]:
    """The field an error is about and a message a person can act on."""
    path: FieldPath = tuple(error.absolute_path)
    validator = error.validator
    value: Any = error.validator_value
    instance = error.instance
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    in_step = len(path) == 2 and path[0] == "steps"
    if validator == "additionalProperties" and isinstance(instance, Mapping):
        known = schema.get("properties") or {}
        extra = [k for k in instance if k not in known]
        field = extra[0] if extra else "?"
        names = ", ".join(sorted(k for k in known if not k.startswith("$"))) or "none"
        what = "option" if len(path) >= 3 and path[0] == "steps" else "field"
        return (*path, field), f"unknown {what} {field!r}; known: {names}"
    if validator == "required" and isinstance(instance, Mapping):
        missing = [r for r in value if r not in instance]
        return path, f"missing required field {missing[0] if missing else '?'!r}"
    if in_step and validator in ("enum", "propertyNames"):
        bad = error.instance if validator == "enum" else _bad_name(error)
        known = ", ".join(STEPS)
        return path, f"unknown operator {bad!r}; known: {known}"
    if in_step and validator in ("minProperties", "maxProperties"):
        return path, (
            "a step is an operator name (text) or one operator with its options "
            "(json_items: {prefix: people.item})"
        )
    if validator == "type":
        wants = " or ".join(value) if isinstance(value, list) else str(value)
        if instance is None and len(path) == 3 and path[0] == "steps":
            return path, f"{path[2]} needs options"
        return path, f"must be {wants}, not {_json_type(instance)}"
    if validator == "minProperties" and isinstance(instance, Mapping) and not instance:
        props = list(schema.get("properties") or {})
        names = ", ".join(props[:-1]) + " or " + props[-1] if len(props) > 1 else "".join(props)
        return path, f"needs at least one of {names}" if names else "must not be empty"
    if validator == "enum":
        options = ", ".join(map(repr, value))
        return path, f"must be one of {options}, not {instance!r}"
    if validator == "pattern" and path[:1] == ("providers",) and path[-1:] == ("model",):
        return path, f"a model is written dialect/model (openai/gpt-4o-mini), not {instance!r}"
    if validator == "pattern" and path == ("providers",):
        return path, f"provider names are letters, digits, _ . : @ -, not {instance!r}"
    return path, error.message


def _bad_name(error: ValidationError) -> Any:
    for cause in error.context or ():
        return cause.instance
    instance = error.instance
    if isinstance(instance, Mapping):
        for key in instance:
            if key not in STEPS:
                return key
    return instance


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__

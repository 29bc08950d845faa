"""JSON Schema compilation, a versioned schema registry, and the JSON form of events.

- ``compile_schema(schema)`` builds a Draft 2020-12 validator once per schema (cached by
  content hash). Every ``$ref`` is resolved at compile time against local resources only:
  the ``referencing.Registry`` used refuses remote retrieval, so a remote ``$ref`` is a
  ``SchemaError`` and no socket is ever opened.
- ``SchemaRegistry`` holds schemas by ``$id`` and version (a rolling update accepts an item
  valid under any of several versions; ``validate`` reports which one matched).
- ``event_to_json`` / ``event_from_json``: the wire form of rxllm events, described by
  ``schemas/event.schema.json`` (``load_schema("event")``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urldefrag, urljoin

import jsonschema
import orjson
import referencing
import referencing.exceptions
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from jsonschema_specifications import (  # type: ignore[import-untyped]
    REGISTRY as _SPECIFICATIONS,
)
from referencing.jsonschema import DRAFT202012

from .errors import MalformedFrame, SchemaError
from .events import (
    Event,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "EVENT_SCHEMA_ID",
    "CompiledSchema",
    "SchemaRegistry",
    "compile_schema",
    "event_from_json",
    "event_to_json",
    "json_pointer",
    "load_schema",
]

EVENT_SCHEMA_ID: Final = "urn:rxllm:schema:event"
"""``$id`` of ``schemas/event.schema.json``."""

_CACHE_SIZE: Final = 256
_MAX_ERRORS: Final = 32


def _refuse(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(uri)


def _empty_registry() -> referencing.Registry[Any]:
    return referencing.Registry(retrieve=_refuse)  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True, eq=False)
class CompiledSchema:
    """A schema compiled once: ``errors(item)`` lists ``(json_pointer, message)`` pairs."""

    schema: Mapping[str, Any]
    validator: Validator = field(repr=False)
    id: str | None = None
    version: str | None = None

    def is_valid(self, item: Any) -> bool:
        """Tell whether ``item`` is valid."""
        return bool(self.validator.is_valid(item))

    def errors(self, item: Any, *, limit: int = _MAX_ERRORS) -> list[tuple[str, str]]:
        """The validation errors of ``item`` as ``(json_pointer, message)``, at most ``limit``."""
        out: list[tuple[str, str]] = []
        for err in self.validator.iter_errors(item):
            out.append((json_pointer(err.absolute_path), err.message[:300]))
            if len(out) >= limit:
                break
        out.sort()
        return out

    def sub(self, schema: Any) -> CompiledSchema:
        """A validator for a subschema of this one, resolving ``$ref`` against the root."""
        return CompiledSchema(
            schema if isinstance(schema, Mapping) else {},
            self.validator.evolve(schema=schema),
            self.id,
            self.version,
        )

    def resolve(self, ref: str) -> Any:
        """The subschema a (local) ``$ref`` in this schema points to."""
        validator: Any = self.validator
        resolver = validator._resolver
        return resolver.lookup(ref).contents


def json_pointer(path: Iterator[Any] | Sequence[Any]) -> str:
    """RFC 6901 pointer of a path of keys and indexes (``["a", 0]`` -> ``"/a/0"``)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


_lock = threading.Lock()
_cache: OrderedDict[tuple[bytes, int], CompiledSchema] = OrderedDict()


def compile_schema(
    schema: Mapping[str, Any] | bool,
    *,
    registry: SchemaRegistry | None = None,
    version: str | None = None,
) -> CompiledSchema:
    """Compile ``schema`` (Draft 2020-12) once; later calls with equal content hit a cache.

    Raises ``SchemaError`` when the schema is invalid or a ``$ref`` cannot be resolved
    locally (remote references are refused, never fetched). ``registry`` supplies other
    schemas that ``$ref`` may name by ``$id``.
    """
    if isinstance(schema, bool):
        schema = {} if schema else {"not": {}}
    if not isinstance(schema, Mapping):
        raise SchemaError(f"a JSON Schema must be an object, got {type(schema).__name__}")
    try:
        blob = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise SchemaError(f"the schema is not JSON: {exc}") from None
    key = (hashlib.sha256(blob).digest() + (version or "").encode(), id(registry))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    compiled = _compile(dict(schema), registry, version)
    with _lock:
        _cache[key] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


def _compile(
    schema: dict[str, Any], registry: SchemaRegistry | None, version: str | None
) -> CompiledSchema:
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaError(f"invalid JSON Schema: {exc.message}") from None
    schema_id = schema.get("$id") if isinstance(schema.get("$id"), str) else None
    root_uri = (
        schema_id
        or "urn:rxllm:anonymous:"
        + hashlib.sha256(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).hexdigest()
    )
    refs = registry._resources if registry is not None else _empty_registry()
    resource = DRAFT202012.create_resource(schema)
    try:
        local = refs.with_resource(root_uri, resource).crawl()
    except referencing.exceptions.Unresolvable as exc:  # pragma: no cover - defensive
        raise SchemaError(f"cannot index the schema: {exc}") from None
    _check_refs(schema, root_uri, local)
    validator = Draft202012Validator(schema, registry=local)
    return CompiledSchema(schema, validator, schema_id, version)


def _check_refs(schema: Any, root_uri: str, registry: referencing.Registry[Any]) -> None:
    """Resolve every ``$ref`` now, so a missing or remote one fails at compile time."""
    combined = registry.combine(_SPECIFICATIONS)
    stack: list[tuple[Any, str]] = [(schema, root_uri)]
    while stack:
        node, base = stack.pop()
        if isinstance(node, list):
            stack.extend((v, base) for v in node)
            continue
        if not isinstance(node, Mapping):
            continue
        if isinstance(node.get("$id"), str):
            base = urljoin(base, node["$id"])
        for keyword in ("$ref", "$dynamicRef"):
            ref = node.get(keyword)
            if isinstance(ref, str):
                target = urljoin(base, ref)
                try:
                    combined.resolver(base_uri=base).lookup(ref)
                except referencing.exceptions.Unresolvable as exc:
                    where = urldefrag(target)[0] or target
                    raise SchemaError(
                        f"{keyword} {ref!r} cannot be resolved without fetching {where!r}: "
                        f"remote references are refused ({type(exc).__name__})"
                    ) from None
        for key, value in node.items():
            if key not in ("enum", "const", "default", "examples"):
                stack.append((value, base))


class SchemaRegistry:
    """Schemas by ``$id`` and version, for ``$ref`` between them and rolling updates.

    Example::

        registry = SchemaRegistry()
        registry.register(person_v1, version="1")
        registry.register(person_v2, version="2")
        source.pipe(json_items("people.item"),
                    validate(registry.accepting("urn:example:person")))
    """

    def __init__(self) -> None:
        self._versions: dict[str, dict[str, CompiledSchema]] = {}
        self._resources: referencing.Registry[Any] = _empty_registry()

    def register(self, schema: Mapping[str, Any], *, version: str | None = None) -> CompiledSchema:
        """Compile and add ``schema`` under its ``$id``; ``version`` defaults to its
        ``x-version`` annotation, else ``"1"``. Registering a version again replaces it."""
        schema_id = schema.get("$id")
        if not isinstance(schema_id, str) or not schema_id:
            raise SchemaError("a registered schema needs an absolute $id")
        ver = version if version is not None else str(schema.get("x-version", "1"))
        compiled = compile_schema(schema, registry=self, version=ver)
        self._versions.setdefault(schema_id, {})[ver] = compiled
        self._resources = self._resources.with_resource(
            schema_id, DRAFT202012.create_resource(dict(schema))
        )
        return compiled

    def versions(self, schema_id: str) -> list[str]:
        """The registered versions of ``schema_id``, oldest first."""
        return sorted(self._versions.get(schema_id, {}), key=_version_key)

    def get(self, schema_id: str, version: str | None = None) -> CompiledSchema:
        """One version (the newest when ``version`` is ``None``); ``SchemaError`` if absent."""
        found = self._versions.get(schema_id)
        if not found:
            raise SchemaError(f"no schema registered as {schema_id!r}")
        if version is None:
            return found[self.versions(schema_id)[-1]]
        if version not in found:
            raise SchemaError(f"{schema_id!r} has no version {version!r}")
        return found[version]

    def accepting(
        self, schema_id: str, versions: Sequence[str] | None = None
    ) -> list[CompiledSchema]:
        """The versions an item may match, newest first (all registered ones by default)."""
        chosen = list(versions) if versions is not None else self.versions(schema_id)
        return [self.get(schema_id, v) for v in sorted(chosen, key=_version_key, reverse=True)]


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in version.split("."))


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """Read ``schemas/<name>.schema.json`` shipped with rxllm (``load_schema("event")``)."""
    text = importlib.resources.files("rxllm.schemas").joinpath(f"{name}.schema.json").read_bytes()
    value = orjson.loads(text)
    if not isinstance(value, dict):  # pragma: no cover - the shipped files are objects
        raise SchemaError(f"{name}.schema.json is not a JSON object")
    return value


# --- the JSON form of events ----------------------------------------------------------------

_TYPES: Final[dict[type, str]] = {
    Started: "started",
    TextDelta: "text_delta",
    ReasoningDelta: "reasoning_delta",
    ToolCallDelta: "tool_call_delta",
    ToolCall: "tool_call",
    Usage: "usage",
    Finished: "finished",
}
_CLASSES: Final = {v: k for k, v in _TYPES.items()}
_NULLABLE_REQUIRED: Final = {
    cls: tuple(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and "None" in str(f.type)
    )
    for cls in _TYPES
}
_FIELDS: Final = {
    cls: tuple(f.name for f in dataclasses.fields(cls) if f.name != "raw") for cls in _TYPES
}


def event_to_json(event: Event) -> dict[str, Any]:
    """The JSON form of an event: its fields (not ``raw``) and a ``type`` discriminator.

    ``{"type": "text_delta", "text": "Hi"}``; ``None`` fields are left out.
    """
    name = _TYPES.get(type(event))
    if name is None:
        raise TypeError(f"not an rxllm event: {type(event).__name__}")
    out: dict[str, Any] = {"type": name}
    for f in _FIELDS[type(event)]:
        value = getattr(event, f)
        if value is not None:
            out[f] = dict(value) if isinstance(value, Mapping) else value
    return out


def event_from_json(data: Mapping[str, Any]) -> Event:
    """The inverse of ``event_to_json``; ``MalformedFrame`` for an unknown or bad form."""
    kind = data.get("type") if isinstance(data, Mapping) else None
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MalformedFrame(f"not an rxllm event: {str(data)[:200]}")
    unknown = set(data) - {"type", *_FIELDS[cls]}
    if unknown:
        raise MalformedFrame(f"unknown fields for {data['type']}: {sorted(unknown)}")
    kwargs = {k: v for k, v in data.items() if k != "type"}
    for name in _NULLABLE_REQUIRED[cls]:  # left out because they were None
        kwargs.setdefault(name, None)
    try:
        event: Event = cls(**kwargs)
    except TypeError as exc:
        raise MalformedFrame(f"bad {data['type']} event: {exc}") from None
    return event

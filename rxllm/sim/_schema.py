"""Deterministic JSON instances of a JSON Schema, for schema-driven simulated output.

``json_document(schema, n)`` is what a scenario with ``json_items=n`` streams: a document
valid against ``schema`` whose one array (the root itself if it is an array, or the root
object's only array property) holds ``n`` items, each a deterministic instance of the item
schema varied by its index. ``invalid_share`` makes that share of the items schema-invalid;
which ones is ``is_invalid_item(index, share=..., seed=...)``, a pure function, so a test
knows exactly which items to expect rejected.

Supported keywords: ``type`` (one or a list), ``properties``, ``required``, ``items``,
``prefixItems``, ``minItems``/``maxItems``, ``enum``, ``const``, ``default``,
``minimum``/``maximum`` (and the exclusive forms), ``minLength``/``maxLength``, ``format``
(``date``, ``date-time``, ``time``, ``email``, ``uri``, ``uuid``), ``anyOf``/``oneOf``
(the first option), ``allOf`` (merged), and local ``$ref`` (``#/$defs/...``,
``#/definitions/...``, any JSON pointer into the root). Anything else is ignored.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from rxllm.errors import ConfigError

__all__ = [
    "DEFAULT_SCHEMA",
    "invalid_items",
    "is_invalid_item",
    "json_document",
    "json_document_pieces",
    "make_instance",
]

DEFAULT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "name": {"type": "string"},
                    "email": {"type": "string", "format": "email"},
                },
                "required": ["id", "name", "email"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["items"],
}
"""The schema used when ``json_items`` is set but the request carries no schema."""

_MAX_DEPTH = 24
_NAMES = (
    "Ada Lovelace",
    "Alan Turing",
    "Grace Hopper",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Margaret Hamilton",
    "John McCarthy",
    "Frances Allen",
    "Ken Thompson",
    "Radia Perlman",
    "Tony Hoare",
)
_CITIES = ("Lisbon", "Osaka", "Nairobi", "Toronto", "Krakow", "Lima", "Hanoi", "Tromso")
_WORDS = (
    "amber",
    "river",
    "quiet",
    "signal",
    "copper",
    "meadow",
    "lantern",
    "harbor",
    "violet",
    "summit",
    "ember",
    "orbit",
)
_SENTINEL = "\x00rxllm-sim-items\x00"


def _hash01(*parts: object) -> float:
    """A uniform number in [0, 1) from ``parts`` (stable across processes and platforms)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_invalid_item(index: int, *, share: float, seed: int = 0) -> bool:
    """True when item ``index`` (from 0) of a ``json_items`` document is made invalid.

    The invalid items are spread evenly: over any ``n`` consecutive items, the number made
    invalid is ``floor(n * share)`` or ``ceil(n * share)``; ``seed`` shifts the phase.
    """
    if share <= 0:
        return False
    if share >= 1:
        return True
    phase = _hash01("invalid-phase", seed)
    return math.floor((index + 1) * share + phase) > math.floor(index * share + phase)


def invalid_items(n: int, *, share: float, seed: int = 0) -> list[int]:
    """The indices among the first ``n`` items that ``is_invalid_item`` makes invalid."""
    return [i for i in range(n) if is_invalid_item(i, share=share, seed=seed)]


class _Gen:
    """Instance generation against one root schema (for ``$ref`` resolution)."""

    def __init__(self, root: Mapping[str, Any], seed: int) -> None:
        self.root = root
        self.seed = seed

    def resolve(self, schema: Any, depth: int = 0) -> Mapping[str, Any]:
        """Follow local ``$ref`` and merge ``allOf``; return a plain schema mapping."""
        if schema is True or schema is None:
            return {}
        if not isinstance(schema, Mapping):
            return {}
        seen = 0
        while "$ref" in schema:
            ref = schema["$ref"]
            seen += 1
            if not isinstance(ref, str) or not ref.startswith("#") or seen > _MAX_DEPTH:
                raise ConfigError(f"the simulator resolves only local $ref, not {ref!r}")
            target: Any = self.root
            for raw in ref[1:].split("/")[1:] if ref != "#" else []:
                key = raw.replace("~1", "/").replace("~0", "~")
                if isinstance(target, Mapping) and key in target:
                    target = target[key]
                elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
                    target = target[int(key)]
                else:
                    raise ConfigError(f"cannot resolve $ref {ref!r}")
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, Mapping) else rest
        if "allOf" in schema and depth < _MAX_DEPTH:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                sub = self.resolve(part, depth + 1)
                for key, value in sub.items():
                    if key == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **value}
                    elif key == "required":
                        merged["required"] = [*merged.get("required", []), *value]
                    else:
                        merged.setdefault(key, value)
            schema = merged
        out: Mapping[str, Any] = schema
        return out

    def type_of(self, schema: Mapping[str, Any]) -> str:
        """The JSON type an instance of ``schema`` gets."""
        t = schema.get("type")
        if isinstance(t, list):
            non_null = [x for x in t if x != "null"]
            t = non_null[0] if non_null else "null"
        if isinstance(t, str):
            return t
        if "properties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    def instance(self, schema: Any, index: int, name: str = "", depth: int = 0) -> Any:
        """A deterministic instance of ``schema``, varied by ``index``."""
        s = self.resolve(schema)
        if depth > _MAX_DEPTH:
            return None
        if "const" in s:
            return s["const"]
        if isinstance(s.get("enum"), list) and s["enum"]:
            return s["enum"][index % len(s["enum"])]
        if "default" in s:
            return s["default"]
        for key in ("anyOf", "oneOf"):
            options = s.get(key)
            if isinstance(options, list) and options:
                rest = {k: v for k, v in s.items() if k != key}
                return self.instance({**rest, **self.resolve(options[0])}, index, name, depth + 1)
        t = self.type_of(s)
        if t == "object":
            props = s.get("properties") or {}
            return {
                key: self.instance(sub, index, key, depth + 1)
                for key, sub in props.items()
                if isinstance(key, str)
            }
        if t == "array":
            return self.array(s, index, name, depth)
        if t == "integer":
            return self.number(s, index, integer=True)
        if t == "number":
            return self.number(s, index, integer=False)
        if t == "boolean":
            return index % 2 == 0
        if t == "null":
            return None
        return self.string(s, index, name)

    def array(self, s: Mapping[str, Any], index: int, name: str, depth: int) -> list[Any]:
        """A short array: ``minItems`` items, or two, at most ``maxItems``."""
        prefix = s.get("prefixItems") or []
        count = int(s.get("minItems", 2))
        if "maxItems" in s:
            count = min(count, int(s["maxItems"]))
        count = max(count, len(prefix))
        out = [self.instance(p, index, name, depth + 1) for p in prefix]
        items = s.get("items", {})
        out.extend(
            self.instance(items, index + k, name, depth + 1) for k in range(count - len(out))
        )
        return out

    def number(self, s: Mapping[str, Any], index: int, *, integer: bool) -> int | float:
        """A number inside the bounds, varied by ``index``."""
        lo = s.get("minimum")
        hi = s.get("maximum")
        if isinstance(s.get("exclusiveMinimum"), int | float):
            lo = s["exclusiveMinimum"] + (1 if integer else 0.5)
        if isinstance(s.get("exclusiveMaximum"), int | float):
            hi = s["exclusiveMaximum"] - (1 if integer else 0.5)
        if integer:
            if lo is not None:
                lo_i = math.ceil(lo)
            else:
                lo_i = 0 if hi is None or hi >= 99 else math.floor(hi) - 99
            hi_i = math.floor(hi) if hi is not None else lo_i + 99
            step = s.get("multipleOf")
            if not isinstance(step, int) or step <= 0:
                step = 1
            first = -(-lo_i // step) * step
            count = max((hi_i - first) // step + 1, 1)
            return int(first + ((index * 7 + 18) % count) * step)
        lo_f = float(lo) if lo is not None else 0.0
        hi_f = float(hi) if hi is not None else lo_f + 100.0
        if hi_f < lo_f:
            return lo_f
        return round(lo_f + (hi_f - lo_f) * ((index * 0.37 + 0.25) % 1.0), 2)

    def string(self, s: Mapping[str, Any], index: int, name: str) -> str:
        """A string fitting ``format`` and the length bounds, named after its property."""
        fmt = s.get("format")
        lname = name.lower()
        if fmt == "date":
            value = f"2024-{index % 12 + 1:02d}-{index % 28 + 1:02d}"
        elif fmt == "date-time":
            value = f"2024-{index % 12 + 1:02d}-{index % 28 + 1:02d}T{index % 24:02d}:30:00Z"
        elif fmt == "time":
            value = f"{index % 24:02d}:{index % 60:02d}:00Z"
        elif fmt == "email" or lname == "email" or lname.endswith("_email"):
            value = f"user{index}@example.com"
        elif fmt in ("uri", "url") or lname in ("url", "uri", "website"):
            value = f"https://example.com/items/{index}"
        elif fmt == "uuid":
            h = hashlib.blake2b(f"{self.seed}:{name}:{index}".encode(), digest_size=16).hexdigest()
            value = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"
        elif lname.endswith("name") or lname in ("author", "person"):
            value = _NAMES[(index + self.seed) % len(_NAMES)]
        elif "city" in lname or lname in ("location", "town"):
            value = _CITIES[(index + self.seed) % len(_CITIES)]
        else:
            a = _WORDS[(index + self.seed) % len(_WORDS)]
            b = _WORDS[(index * 5 + 3 + self.seed) % len(_WORDS)]
            value = f"{a} {b} {index}"
        min_len = int(s.get("minLength", 0))
        if len(value) < min_len:
            value += "x" * (min_len - len(value))
        if "maxLength" in s:
            value = value[: int(s["maxLength"])]
        return value

    def break_item(self, schema: Any, item: Any, index: int) -> Any:
        """Make ``item`` invalid against ``schema``: drop a required property, or give a
        property (or the item itself) a value of the wrong type."""
        s = self.resolve(schema)
        required = [r for r in s.get("required") or () if isinstance(item, dict) and r in item]
        if isinstance(item, dict) and required and index % 2 == 0:
            broken = dict(item)
            del broken[required[(index // 2) % len(required)]]
            return broken
        if isinstance(item, dict):
            for key, sub in (s.get("properties") or {}).items():
                sub_s = self.resolve(sub)
                t = sub_s.get("type")
                if isinstance(t, str) and key in item and not _has_alternatives(sub_s):
                    broken = dict(item)
                    broken[key] = _wrong_value(t)
                    return broken
            if required:
                broken = dict(item)
                del broken[required[0]]
                return broken
        t = s.get("type")
        if isinstance(t, str) and not _has_alternatives(s):
            return _wrong_value(t)
        raise ConfigError(
            "invalid_share needs an item schema with a required property or a typed "
            "property, so that an item can be made invalid"
        )


def _has_alternatives(s: Mapping[str, Any]) -> bool:
    return any(k in s for k in ("anyOf", "oneOf", "enum", "const", "$ref"))


def _wrong_value(json_type: str) -> Any:
    """A value that is not of ``json_type``."""
    return "not a number" if json_type in ("integer", "number") else 12345


def make_instance(schema: Mapping[str, Any], *, index: int = 0, seed: int = 0) -> Any:
    """A deterministic instance of ``schema`` (valid for the supported keywords)."""
    return _Gen(schema, seed).instance(schema, index)


def _array_slot(gen: _Gen, root: Mapping[str, Any]) -> tuple[str | None, Any]:
    """Where the ``n`` items go: ``(None, item_schema)`` for a root array,
    ``(property, item_schema)`` for the root object's only array property."""
    s = gen.resolve(root)
    if gen.type_of(s) == "array":
        return None, s.get("items", {})
    arrays = [
        (key, gen.resolve(sub))
        for key, sub in (s.get("properties") or {}).items()
        if gen.type_of(gen.resolve(sub)) == "array"
    ]
    if len(arrays) != 1:
        raise ConfigError(
            "json_items needs a schema that is an array or an object with exactly one array "
            f"property (this one has {len(arrays)})"
        )
    key, sub = arrays[0]
    return key, sub.get("items", {})


def json_document_pieces(
    schema: Mapping[str, Any], n: int, *, seed: int = 0, invalid_share: float = 0.0
) -> Iterator[str]:
    """The document of ``json_document`` as consecutive text pieces, generated lazily (the
    items one at a time), so a large document is never held in memory. A schema the
    simulator cannot fill raises ``ConfigError`` here, before any piece."""
    gen = _Gen(schema, seed)
    key, item_schema = _array_slot(gen, schema)
    if key is None:
        before, after = "", ""
    else:
        root = gen.instance(schema, 0)
        root[key] = _SENTINEL
        text = orjson.dumps(root).decode()
        before, _, after = text.partition(orjson.dumps(_SENTINEL).decode())
    if invalid_share > 0:
        gen.break_item(item_schema, gen.instance(item_schema, 0, key or ""), 0)
    return _pieces(gen, item_schema, key, n, before, after, seed, invalid_share)


def _pieces(
    gen: _Gen,
    item_schema: Any,
    key: str | None,
    n: int,
    before: str,
    after: str,
    seed: int,
    invalid_share: float,
) -> Iterator[str]:
    yield before + "["
    for i in range(n):
        item = gen.instance(item_schema, i, key or "")
        if is_invalid_item(i, share=invalid_share, seed=seed):
            item = gen.break_item(item_schema, item, i)
        yield ("," if i else "") + orjson.dumps(item).decode()
    yield "]" + after


def json_document(
    schema: Mapping[str, Any], n: int, *, seed: int = 0, invalid_share: float = 0.0
) -> str:
    """The JSON text a ``json_items=n`` scenario streams for ``schema`` (see the module
    docstring); the items at ``invalid_items(n, share=invalid_share, seed=seed)`` are
    schema-invalid and all others valid."""
    return "".join(json_document_pieces(schema, n, seed=seed, invalid_share=invalid_share))

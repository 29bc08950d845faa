"""Deterministic repair of an invalid item, and RFC 6902 JSON Patch diffs.

``repair(item, compiled)`` returns a repaired deep copy:

- missing properties that have a schema ``default`` are filled in;
- lossless type coercion: ``"42"`` -> 42 (integer), ``"4.5"`` -> 4.5 (number),
  ``"true"``/``"false"`` -> bool, 4.0 -> 4 (integer), 42 -> ``"42"`` (string);
- a string that matches an ``enum`` member case-insensitively (one match only) becomes it;
- properties that ``additionalProperties: false`` forbids are dropped.

It walks ``properties``, ``patternProperties``, ``additionalProperties``, ``items``,
``prefixItems``, ``allOf`` and local ``$ref``; it never guesses among ``anyOf``/``oneOf``.
``diff(a, b)`` writes the change as JSON Patch operations; ``apply_patch`` applies them.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any

from rxllm.schema import CompiledSchema, json_pointer

__all__ = ["apply_patch", "diff", "repair"]

_INT = re.compile(r"\s*[-+]?\d+\s*")
_MAX_WALK = 64  # depth bound of the repair walk ($ref cycles included)


def repair(item: Any, compiled: CompiledSchema) -> Any:
    """A repaired deep copy of ``item`` (see the module docstring); the input is untouched."""
    return _fix(copy.deepcopy(item), compiled.schema, compiled, 0)


def _fix(value: Any, schema: Any, compiled: CompiledSchema, depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth > _MAX_WALK:
        return value
    ref = schema.get("$ref")
    if isinstance(ref, str):
        try:
            target = compiled.resolve(ref)
        except Exception:  # noqa: BLE001 - an unresolvable ref: leave the value alone
            target = None
        value = _fix(value, target, compiled, depth + 1)
    for sub in schema.get("allOf", ()) or ():
        value = _fix(value, sub, compiled, depth + 1)
    types = schema.get("type")
    if types is not None:
        value = _coerce(value, [types] if isinstance(types, str) else list(types))
    enum = schema.get("enum")
    if isinstance(enum, list) and isinstance(value, str) and value not in enum:
        matches = [e for e in enum if isinstance(e, str) and e.casefold() == value.casefold()]
        if len(matches) == 1:
            value = matches[0]
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        patterns = schema.get("patternProperties") or {}
        extra = schema.get("additionalProperties", True)
        for name, sub in props.items():
            if name not in value and isinstance(sub, Mapping) and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name in list(value):
            subs = [props[name]] if name in props else []
            subs += [s for p, s in patterns.items() if re.search(p, name)]
            if subs:
                for sub in subs:
                    value[name] = _fix(value[name], sub, compiled, depth + 1)
            elif extra is False:
                del value[name]
            elif isinstance(extra, Mapping):
                value[name] = _fix(value[name], extra, compiled, depth + 1)
    elif isinstance(value, list):
        prefix = schema.get("prefixItems") or []
        rest = schema.get("items")
        for i, element in enumerate(value):
            sub = prefix[i] if i < len(prefix) else rest
            value[i] = _fix(element, sub, compiled, depth + 1)
    return value


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return type(value) is int or (type(value) is float and value.is_integer())
    if name == "number":
        return type(value) in (int, float)
    return {
        "string": str,
        "boolean": bool,
        "null": type(None),
        "object": dict,
        "array": list,
    }.get(name) is type(value)


def _coerce(value: Any, types: list[str]) -> Any:
    if any(_is_type(value, t) and not (t == "integer" and type(value) is float) for t in types):
        return value
    for t in types:
        if t == "integer":
            if type(value) is float and value.is_integer():
                return int(value)
            if isinstance(value, str) and _INT.fullmatch(value):
                return int(value)
        elif t == "number" and isinstance(value, str):
            if _INT.fullmatch(value):
                return int(value)
            try:
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number) and repr(number) == value.strip():
                return number
        elif t == "boolean" and isinstance(value, str) and value.strip() in ("true", "false"):
            return value.strip() == "true"
        elif t == "string" and type(value) in (int, float):
            return repr(value) if type(value) is float else str(value)
    return value


def diff(old: Any, new: Any, path: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """RFC 6902 operations that turn ``old`` into ``new`` (type-exact: 1 and 1.0 differ)."""
    if type(old) is not type(new):
        return [{"op": "replace", "path": json_pointer(path), "value": new}]
    if isinstance(old, dict):
        ops: list[dict[str, Any]] = [
            {"op": "remove", "path": json_pointer((*path, key))} for key in old if key not in new
        ]
        for key, value in new.items():
            if key in old:
                ops.extend(diff(old[key], value, (*path, key)))
            else:
                ops.append({"op": "add", "path": json_pointer((*path, key)), "value": value})
        return ops
    if isinstance(old, list):
        ops = []
        common = min(len(old), len(new))
        for i in range(common):
            ops.extend(diff(old[i], new[i], (*path, i)))
        for i in range(len(old) - 1, common - 1, -1):
            ops.append({"op": "remove", "path": json_pointer((*path, i))})
        for i in range(common, len(new)):
            ops.append({"op": "add", "path": json_pointer((*path, i)), "value": new[i]})
        return ops
    if old != new:
        return [{"op": "replace", "path": json_pointer(path), "value": new}]
    return []


def apply_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """Apply ``add``/``remove``/``replace`` operations to a deep copy of ``doc``."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        if not parts:
            if op["op"] == "remove":
                doc = None
            else:
                doc = copy.deepcopy(op["value"])
            continue
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op["op"] == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "remove":
                del parent[index]
            else:
                parent[index] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[last]
        else:
            parent[last] = copy.deepcopy(op["value"])
    return doc

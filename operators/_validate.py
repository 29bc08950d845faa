"""validate: check each item against a compiled JSON Schema, then skip, halt or patch."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from reactivex import Observable, abc
from reactivex.disposable import SingleAssignmentDisposable

from rxllm.errors import ConfigError, ValidationHalted
from rxllm.schema import CompiledSchema, SchemaRegistry, compile_schema
from rxllm.typing import Operator
from rxllm.wire import IncompleteItem, PartialItem

from ._json_items import JsonItemsObservable
from ._patch import diff, repair
from ._validtypes import (
    PatchContext,
    PatchFunction,
    SchemaSource,
    ValidationReport,
    ValidationStats,
)

__all__ = ["validate_"]


def _compile_all(schema: SchemaSource, registry: SchemaRegistry | None) -> list[CompiledSchema]:
    if isinstance(schema, CompiledSchema):
        return [schema]
    if isinstance(schema, str):
        if registry is None:
            raise ConfigError("validate(schema_id) needs registry=")
        found = registry.accepting(schema)
        if not found:
            raise ConfigError(f"no version of {schema!r} is registered")
        return found
    if isinstance(schema, Mapping):
        return [compile_schema(schema, registry=registry)]
    out = [
        s if isinstance(s, CompiledSchema) else compile_schema(s, registry=registry) for s in schema
    ]
    if not out:
        raise ConfigError("validate() needs at least one schema")
    return out


def validate_(
    schema: SchemaSource,
    *,
    on_invalid: Literal["skip", "halt", "patch"] = "skip",
    on_patch_fail: Literal["skip", "halt"] = "skip",
    patch: PatchFunction | None = None,
    on_report: Callable[[ValidationReport], None] | None = None,
    stats: ValidationStats | None = None,
    registry: SchemaRegistry | None = None,
    early: bool = True,
) -> Operator[Any, Any]:
    """Implementation of ``rxllm.operators.validate``."""
    if on_invalid not in ("skip", "halt", "patch"):
        raise ConfigError(f"on_invalid must be skip, halt or patch, not {on_invalid!r}")
    if on_patch_fail not in ("skip", "halt"):
        raise ConfigError(f"on_patch_fail must be skip or halt, not {on_patch_fail!r}")
    schemas = _compile_all(schema, registry)
    counters = stats if stats is not None else ValidationStats()
    primary = schemas[0]
    early_on = early and on_invalid == "halt"

    def operator(source: Observable[Any]) -> Observable[Any]:
        upstream_source = source.fused() if isinstance(source, JsonItemsObservable) else source

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            upstream = SingleAssignmentDisposable()
            state = {"index": 0, "stopped": False}
            early_cache: dict[int, list[Mapping[str, Any]]] = {}

            def report(r: ValidationReport) -> None:
                counters.count(r)
                if on_report is not None:
                    on_report(r)

            def stop(error: Exception) -> None:
                state["stopped"] = True
                upstream.dispose()
                observer.on_error(error)

            def match(item: Any) -> CompiledSchema | None:
                for s in schemas:
                    if s.is_valid(item):
                        return s
                return None

            def halt(index: int, item: Any, errors: Sequence[tuple[str, str]], **kw: Any) -> None:
                report(ValidationReport(index, "halted", item, tuple(errors), **kw))
                where = f"{errors[0][0] or '/'}: {errors[0][1]}" if errors else "invalid"
                stop(
                    ValidationHalted(
                        f"item {index} does not match the schema ({where})",
                        item=item,
                        index=index,
                        errors=errors,
                    )
                )

            def repaired(
                index: int, item: Any, errors: tuple[tuple[str, str], ...], cut: bool
            ) -> Any:
                ctx = PatchContext(index, primary, errors, cut)
                try:
                    return patch(item, ctx) if patch is not None else repair(item, primary)
                except Exception:  # noqa: BLE001 - a failing user patch is a failed patch
                    return item

            def settle(index: int, item: Any) -> None:
                found = match(item)
                if found is not None:
                    report(
                        ValidationReport(index, "valid", item, (), None, found.id, found.version)
                    )
                    observer.on_next(item)
                    return
                errors = tuple(primary.errors(item))
                if on_invalid == "skip":
                    report(ValidationReport(index, "skipped", item, errors))
                    return
                if on_invalid == "halt":
                    halt(index, item, errors)
                    return
                fixed = repaired(index, item, errors, False)
                found = match(fixed)
                if found is not None:
                    ops = tuple(diff(item, fixed))
                    report(
                        ValidationReport(
                            index, "patched", fixed, errors, ops, found.id, found.version
                        )
                    )
                    observer.on_next(fixed)
                    return
                after = tuple(primary.errors(fixed))
                if on_patch_fail == "halt":
                    halt(index, item, after)
                else:
                    report(ValidationReport(index, "skipped", item, after))

            def on_partial(mark: PartialItem) -> None:
                errors: list[tuple[str, str]] | None = None
                for s in schemas:
                    found = _early_errors(s, mark, early_cache)
                    if not found:
                        return  # some accepted version may still match
                    if errors is None:
                        errors = found
                halt(mark.index, copy.deepcopy(mark.value), errors or [], early=True)

            def complete() -> None:
                state["stopped"] = True
                observer.on_completed()

            def on_incomplete(mark: IncompleteItem) -> None:
                index, item = mark.index, mark.value
                if item is None:  # cut between items: every item was complete
                    if on_invalid == "halt":
                        stop(mark.error)
                    else:
                        complete()
                    return
                errors = tuple(primary.errors(item))
                if on_invalid == "skip":
                    report(ValidationReport(index, "skipped", item, errors, incomplete=True))
                    complete()
                    return
                if on_invalid == "halt":
                    report(ValidationReport(index, "halted", item, errors, incomplete=True))
                    stop(mark.error)
                    return
                # patch: the open containers are closed already; keep it only if it validates
                fixed = item
                found = match(item)
                if found is None:
                    fixed = repaired(index, item, errors, True)
                    found = match(fixed)
                if found is not None:
                    ops = tuple(diff(item, fixed))
                    report(
                        ValidationReport(
                            index,
                            "patched",
                            fixed,
                            errors,
                            ops,
                            found.id,
                            found.version,
                            incomplete=True,
                        )
                    )
                    observer.on_next(fixed)
                    if not state["stopped"]:
                        complete()
                elif on_patch_fail == "halt":
                    report(ValidationReport(index, "halted", item, errors, incomplete=True))
                    stop(mark.error)
                else:
                    report(ValidationReport(index, "skipped", item, errors, incomplete=True))
                    complete()

            def next_(value: Any) -> None:
                if state["stopped"]:
                    return
                cls = value.__class__
                if cls is PartialItem:
                    if early_on:
                        on_partial(value)
                    return
                if cls is IncompleteItem:
                    on_incomplete(value)
                    return
                index = state["index"]
                state["index"] = index + 1
                settle(index, value)

            def error(exc: Exception) -> None:
                if not state["stopped"]:
                    state["stopped"] = True
                    observer.on_error(exc)

            def completed() -> None:
                if not state["stopped"]:
                    state["stopped"] = True
                    observer.on_completed()

            upstream.disposable = upstream_source.subscribe(
                next_, error, completed, scheduler=scheduler
            )
            return upstream

        return Observable(subscribe)

    return operator


# --- early rejection ------------------------------------------------------------------------


def _nodes(
    compiled: CompiledSchema, cache: dict[int, list[Mapping[str, Any]]]
) -> list[Mapping[str, Any]]:
    """The subschemas that apply to the item unconditionally: the root, allOf, $ref."""
    key = id(compiled)
    found = cache.get(key)
    if found is not None:
        return found
    out: list[Mapping[str, Any]] = []
    todo: list[Any] = [compiled.schema]
    while todo and len(out) < 64:
        node = todo.pop()
        if not isinstance(node, Mapping) or any(node is n for n in out):
            continue
        out.append(node)
        todo.extend(node.get("allOf", ()) or ())
        ref = node.get("$ref")
        if isinstance(ref, str):
            try:
                todo.append(compiled.resolve(ref))
            except Exception:  # noqa: BLE001, S112 - unresolvable: no early verdict from it
                continue
    cache[key] = out
    return out


def _early_errors(
    compiled: CompiledSchema, mark: PartialItem, cache: dict[int, list[Mapping[str, Any]]]
) -> list[tuple[str, str]]:
    """Errors that the part of the item already written makes certain (else ``[]``)."""
    value = mark.value
    errors: list[tuple[str, str]] = []
    for node in _nodes(compiled, cache):
        if mark.key is None:
            types = node.get("type")
            if types is not None:
                allowed = [types] if isinstance(types, str) else list(types)
                kind = "object" if isinstance(value, dict) else "array"
                if kind not in allowed:
                    errors.append(("", f"the item is an {kind}, the schema wants {allowed}"))
            continue
        key = mark.key
        if isinstance(value, dict) and isinstance(key, str):
            props = node.get("properties") or {}
            patterns = node.get("patternProperties") or {}
            subs = [props[key]] if key in props else []
            subs += [s for p, s in patterns.items() if re.search(p, key)]
            extra = node.get("additionalProperties", True)
            if not subs:
                if extra is False:
                    errors.append(("", f"additional property {key!r} is not allowed"))
                    continue
                if isinstance(extra, Mapping):
                    subs = [extra]
            pointer = "/" + key.replace("~", "~0").replace("/", "~1")
        elif isinstance(value, list) and isinstance(key, int):
            prefix = node.get("prefixItems") or []
            sub = prefix[key] if key < len(prefix) else node.get("items")
            subs = [sub] if sub is not None else []
            pointer = f"/{key}"
        else:
            continue
        for sub in subs:
            for where, message in compiled.sub(sub).errors(value[key]):
                errors.append((pointer + where, message))
    return errors

"""The public types of ``validate``: reports, counters, the patch hook (cheap to import)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from rxllm.schema import CompiledSchema

__all__ = [
    "Action",
    "PatchContext",
    "PatchFunction",
    "SchemaSource",
    "ValidationReport",
    "ValidationStats",
]

Action: TypeAlias = Literal["valid", "skipped", "patched", "halted"]
SchemaSource: TypeAlias = (
    "Mapping[str, Any] | CompiledSchema | str | Sequence[Mapping[str, Any] | CompiledSchema]"
)


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """One outcome of ``validate``, given to ``on_report``.

    ``action`` is valid, skipped, patched or halted; ``errors`` are ``(json_pointer,
    message)`` pairs (for a patch, those of the original item); ``patch`` is the repair as
    RFC 6902 operations; ``schema_id``/``version`` name the schema the emitted item matched;
    ``early`` marks a rejection before the item closed, ``incomplete`` an item the text cut.
    """

    index: int
    action: Action
    item: Any
    errors: tuple[tuple[str, str], ...] = ()
    patch: tuple[dict[str, Any], ...] | None = None
    schema_id: str | None = None
    version: str | None = None
    early: bool = False
    incomplete: bool = False


@dataclass(slots=True)
class ValidationStats:
    """Counters a caller can read while and after the stream runs."""

    valid: int = 0
    skipped: int = 0
    patched: int = 0
    halted: int = 0
    by_version: dict[str, int] = field(default_factory=dict)

    def count(self, report: ValidationReport) -> None:
        """Add one report to the counters."""
        setattr(self, report.action, getattr(self, report.action) + 1)
        if report.action in ("valid", "patched") and report.version is not None:
            self.by_version[report.version] = self.by_version.get(report.version, 0) + 1


@dataclass(frozen=True, slots=True)
class PatchContext:
    """What a user patch function gets besides the item."""

    index: int
    schema: CompiledSchema
    errors: tuple[tuple[str, str], ...]
    incomplete: bool = False

    def builtin(self, item: Any) -> Any:
        """The built-in deterministic repair of ``item`` (a new object)."""
        from ._patch import repair

        return repair(item, self.schema)


PatchFunction: TypeAlias = Callable[[Any, PatchContext], Any]
"""``patch(item, context) -> repaired item``; call ``context.builtin(item)`` to extend."""

"""Type aliases shared across rxllm."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias, TypeVar

from reactivex import Observable

__all__ = ["Operator", "R", "T"]

T = TypeVar("T")
R = TypeVar("R")

Operator: TypeAlias = Callable[[Observable[T]], Observable[R]]
"""An Rx operator: a function from one observable to another, used with ``.pipe()``."""

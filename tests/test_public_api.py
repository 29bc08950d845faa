"""The public faces: sorted ``__all__`` lists whose names all exist."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = [
    "rxllm",
    "rxllm.aio",
    "rxllm.batch",
    "rxllm.chain",
    "rxllm.errors",
    "rxllm.events",
    "rxllm.hub",
    "rxllm.operators",
    "rxllm.pipeline",
    "rxllm.providers",
    "rxllm.request",
    "rxllm.response",
    "rxllm.sim",
    "rxllm.store",
    "rxllm.testing",
    "rxllm.transport",
    "rxllm.wire",
]


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then everything else.
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_sorted_and_complete(name: str) -> None:
    """Each public module's __all__ is sorted and every name in it can be imported."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr}"

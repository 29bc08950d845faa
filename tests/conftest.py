"""Shared fixtures: every test ends with the shared HTTP session closed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import rxllm


@pytest.fixture(autouse=True)
async def _close_shared_session() -> AsyncIterator[None]:
    yield
    await rxllm.aclose()

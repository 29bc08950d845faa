"""Stores: where a ``Hub`` keeps each stream's events, with ids, for replay and resume.

``Store`` is the contract (a ``Protocol`` of coroutines, so that a Redis Streams store can
follow); ``MemoryStore`` is the default. Every event gets an id whose string order is its
append order; a subscriber resumes after any id still inside the stream's bounded replay
window, an id trimmed from it raises ``ReplayWindowExceeded`` (never a silent gap) and an
id the stream never issued raises ``UnknownId``::

    store = MemoryStore(max_events=10_000, max_age=300.0)
    hub = Hub(store)
"""

from __future__ import annotations

from ._base import DEFAULT_PAGE, Page, Stamped, Store, StreamInfo
from ._memory import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_STREAMS,
    MemoryStore,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_PAGE",
    "MemoryStore",
    "Page",
    "Stamped",
    "Store",
    "StreamInfo",
]

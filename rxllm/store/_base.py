"""The store's contract (``Store``) and the values it hands out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from rxllm.events import Event

__all__ = ["DEFAULT_PAGE", "Page", "Stamped", "Store", "StreamInfo"]

DEFAULT_PAGE = 1024
"""How many events one ``Store.read`` returns at most, by default."""


@dataclass(frozen=True, slots=True)
class Stamped:
    """An event with the id the store gave it (``id`` is what SSE sends as ``id:``)."""

    id: str
    event: Event


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """One read from a store.

    Attributes:
        items: the events after the requested id, in order, at most ``limit`` of them.
        ended: the stream has ended *and* ``items`` reach its last event, so nothing
            follows (an ended stream read from further back gives ``ended=False`` until the
            page that holds its last event).
        error: with ``ended``, the error the stream ended with (``None``: it completed).
    """

    items: Sequence[Stamped]
    ended: bool = False
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInfo:
    """What a store knows about one stream.

    Attributes:
        stream_id: the stream.
        first_id: the oldest event still in the replay window (``None``: none is).
        last_id: the newest event ever appended (``None``: none was).
        ended: whether the stream has ended.
        error: the error it ended with, if any.
    """

    stream_id: str
    first_id: str | None
    last_id: str | None
    ended: bool
    error: BaseException | None = None


@runtime_checkable
class Store(Protocol):
    """Where a ``Hub`` keeps each stream's events for late joiners and resumes.

    The contract (``MemoryStore`` is the reference; a Redis Streams store follows it):

    - **Ids.** ``append`` gives each event an id: a string, unique within its stream, whose
      plain string order is the append order (fixed-width, zero-padded counters in memory;
      a Redis store zero-pads the ``ms-seq`` entry ids). Ids mean nothing across streams.
    - **Window.** Each stream keeps its newest events, bounded by count and by age; older
      ones are trimmed (``XADD ... MAXLEN`` / ``MINID`` in Redis). ``read(after=id)``
      returns exactly the events after ``id``, in order, and never silently skips one: an
      ``id`` older than the window raises ``ReplayWindowExceeded`` (carrying the oldest id
      still kept), an id the stream never issued raises ``UnknownId``.
    - **End.** ``close`` records how the stream ended, the error included, after its last
      event; readers see it with the page that holds that event. After ``max_age`` an ended
      stream is forgotten entirely (a Redis key TTL) and reads raise ``UnknownId``.
    - Methods are coroutines so that a networked store can implement them; the memory
      store never suspends. A store may be shared by several hubs; a stream has one
      writer (the hub that runs it).
    """

    async def create(self, stream_id: str) -> None:
        """Begin an empty stream; ``ConfigError`` if ``stream_id`` is already known."""

    async def append(self, stream_id: str, events: Sequence[Event]) -> Sequence[Stamped]:
        """Give ``events`` ids, keep them in the window (trimming it) and return them."""

    async def close(self, stream_id: str, error: BaseException | None = None) -> None:
        """Record that the stream ended (with ``error``, or completed); later appends fail."""

    async def read(
        self, stream_id: str, *, after: str | None = None, limit: int = DEFAULT_PAGE
    ) -> Page:
        """Events after ``after`` (``None``: from the oldest kept), at most ``limit``.

        Raises ``ReplayWindowExceeded`` if ``after`` was trimmed, ``UnknownId`` if the
        stream or ``after`` is unknown.
        """

    async def info(self, stream_id: str) -> StreamInfo:
        """The stream's window bounds and end; ``UnknownId`` if the stream is unknown."""

    async def forget(self, stream_id: str) -> None:
        """Drop the stream and its events now (unknown streams are ignored)."""

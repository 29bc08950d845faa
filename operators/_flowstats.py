"""``FlowStats``: the counters every flow-control operator reports into.

Kept apart from the operators so that ``rxllm.operators`` can export the class without
importing any implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FlowStats"]


@dataclass(slots=True)
class FlowStats:
    """What a flow-control operator did, counted as it happens (pass one to the operator).

    Once the stream has ended, ``received == emitted + merged + dropped``: every item that
    came in went out as itself, was folded into another one, or was dropped on request.

    Attributes:
        received: items that arrived from upstream.
        emitted: items sent downstream (``window``: batches).
        merged: items folded into another one (``coalesce``: deltas appended to an earlier
            delta; ``window``: items beyond the first of each batch).
        dropped: items discarded (``latest``, ``drop_oldest``); never the terminal event.
        pauses: how many times the operator asked its upstream to stop reading because its
            own bounded buffer was full.
    """

    received: int = 0
    emitted: int = 0
    merged: int = 0
    dropped: int = 0
    pauses: int = 0

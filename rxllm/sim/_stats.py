"""Counters and a bounded request log, for tests to assert on."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DEFAULT_LOG_LIMIT", "RequestRecord", "Stats"]

DEFAULT_LOG_LIMIT = 10_000
"""How many requests the log keeps (the oldest are dropped first)."""


@dataclass(slots=True)
class RequestRecord:
    """One request as the simulator saw it.

    Attributes:
        seq: its number since the simulator started (from 1; ``reset`` does not restart it).
        request_id: the ``x-request-id`` the simulator assigned.
        endpoint: the dialect served (``openai``, ``openai-responses``, ``anthropic``,
            ``gemini``, ``ollama``, ``ollama-generate``).
        model: the model asked for.
        arrival: ``time.monotonic()`` when the request arrived (before its body was read).
        arrival_wall: ``time.time()`` at the same moment.
        status: the HTTP status sent (0 until decided).
        body_bytes: the size of the request body.
        bytes_sent: response body bytes written so far.
        outcome: ``pending``, ``completed``, ``error_status``, ``bad_request``,
            ``disconnected`` or ``dropped``.
        faults: whether the scenario's faults applied (``False`` once ``fail_times`` ran out
            or when the scenario has none).
    """

    seq: int
    request_id: str
    endpoint: str
    arrival: float
    arrival_wall: float
    model: str = ""
    status: int = 0
    body_bytes: int = 0
    bytes_sent: int = 0
    outcome: str = "pending"
    faults: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return asdict(self)


class Stats:
    """The simulator's counters.

    Attributes:
        requests: requests received in total.
        by_endpoint_model: requests per ``(endpoint, model)``.
        disconnects: streams whose client went away before the stream ended.
        bytes_sent: response body bytes written in total.
        streams_completed: streams written to their scripted end (an in-band error or a
            missing terminator, when scripted, counts as completed).
        faults: how often each fault was injected (``status``, ``error``, ``drop``,
            ``stall``, ``malformed``, ``no_terminator``).
        active: requests being handled now; ``peak_active`` the most at once.
        log: the most recent ``RequestRecord`` objects, oldest first.
    """

    def __init__(self, *, log_limit: int = DEFAULT_LOG_LIMIT) -> None:
        self.log: deque[RequestRecord] = deque(maxlen=log_limit)
        self.requests = 0
        self.by_endpoint_model: Counter[tuple[str, str]] = Counter()
        self.disconnects = 0
        self.bytes_sent = 0
        self.streams_completed = 0
        self.faults: Counter[str] = Counter()
        self.active = 0
        self.peak_active = 0

    def reset(self) -> None:
        """Zero every counter and clear the log (``active`` keeps counting live requests)."""
        self.log.clear()
        self.requests = 0
        self.by_endpoint_model.clear()
        self.disconnects = 0
        self.bytes_sent = 0
        self.streams_completed = 0
        self.faults.clear()
        self.peak_active = self.active

    def arrive(self, seq: int, request_id: str, endpoint: str) -> RequestRecord:
        """Record a request's arrival (called first thing, so arrival times are exact)."""
        record = RequestRecord(
            seq=seq,
            request_id=request_id,
            endpoint=endpoint,
            arrival=time.monotonic(),
            arrival_wall=time.time(),
        )
        self.log.append(record)
        self.requests += 1
        self.active += 1
        if self.active > self.peak_active:
            self.peak_active = self.active
        return record

    def count(self, endpoint: str | None = None, model: str | None = None) -> int:
        """Requests for ``endpoint`` and/or ``model`` (``None`` matches any)."""
        return sum(
            n
            for (e, m), n in self.by_endpoint_model.items()
            if (endpoint is None or e == endpoint) and (model is None or m == model)
        )

    def snapshot(self, *, log_limit: int | None = None) -> dict[str, Any]:
        """The counters (and the last ``log_limit`` records, all if ``None``) as JSON."""
        records = list(self.log)
        if log_limit is not None:
            records = records[-log_limit:] if log_limit > 0 else []
        return {
            "requests": self.requests,
            "by_endpoint_model": [
                {"endpoint": e, "model": m, "count": n}
                for (e, m), n in sorted(self.by_endpoint_model.items())
            ],
            "disconnects": self.disconnects,
            "bytes_sent": self.bytes_sent,
            "streams_completed": self.streams_completed,
            "faults": dict(sorted(self.faults.items())),
            "active": self.active,
            "peak_active": self.peak_active,
            "log": [r.as_dict() for r in records],
        }

    async def wait_for(self, condition: Callable[[Stats], bool], *, within: float = 1.0) -> bool:
        """Wait until ``condition(self)`` holds; ``False`` if ``within`` seconds pass first.

        For example ``assert await sim.stats.wait_for(lambda s: s.disconnects == 1)``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not condition(self):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

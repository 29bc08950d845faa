"""Newline-delimited JSON (``application/x-ndjson``): a sans-IO, bounded decoder."""

from __future__ import annotations

from typing import Any

import orjson

from rxllm.errors import FrameTooLarge, MalformedFrame

from ._sse import DEFAULT_MAX_EVENT_BYTES

__all__ = ["NDJSONDecoder"]


class NDJSONDecoder:
    """Incremental NDJSON decoder: ``feed(bytes)`` returns the JSON values of complete lines.

    Lines end with LF (a CR before it is tolerated); blank lines are skipped; an unterminated
    last line is parsed by ``finish()``, since NDJSON writers may omit the final newline.
    A line longer than ``max_line_bytes`` raises ``FrameTooLarge`` with memory bounded; a line
    that is not JSON raises ``MalformedFrame``. Either error carries, in ``events``, the values
    completed in the same read before it.
    """

    __slots__ = ("_buf", "_failed", "max_line_bytes")

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_line_bytes <= 0:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes
        self._buf = b""
        self._failed = False

    @property
    def pending(self) -> bool:
        """True when an unterminated line is buffered."""
        return bool(self._buf.strip())

    def feed(self, data: bytes) -> list[Any]:
        """Decode one read; return the values of the lines it completed, in order."""
        if self._failed:
            raise MalformedFrame("the NDJSON decoder already failed")
        if not data:
            return []
        if self._buf:
            data = self._buf + data
        lines = data.split(b"\n")
        tail = lines.pop()
        self._buf = tail
        out: list[Any] = []
        for line in lines:
            self._parse(line, out)
        if len(tail) > self.max_line_bytes:
            self._failed = True
            self._buf = b""
            raise FrameTooLarge(
                f"an NDJSON line is longer than {self.max_line_bytes} bytes",
                limit=self.max_line_bytes,
                events=out,
            )
        return out

    def finish(self) -> list[Any]:
        """End of stream: parse a final line that had no newline."""
        tail, self._buf = self._buf, b""
        out: list[Any] = []
        if tail and not self._failed:
            self._parse(tail, out)
        return out

    def _parse(self, line: bytes, out: list[Any]) -> None:
        if len(line) > self.max_line_bytes:
            self._failed = True
            raise FrameTooLarge(
                f"an NDJSON line is longer than {self.max_line_bytes} bytes",
                limit=self.max_line_bytes,
                events=out,
            )
        if not line.strip():
            return
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            self._failed = True
            raise MalformedFrame(
                f"an NDJSON line is not JSON: {exc}",
                frame=line[:200].decode("utf-8", "replace"),
                events=out,
            ) from None

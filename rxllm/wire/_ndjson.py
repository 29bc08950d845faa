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
    A line longer than ``max_line_bytes`` raises ``FrameTooLarge`` as soon as it is seen,
    with memory held to about this bound plus one read; a line that is not JSON raises
    ``MalformedFrame``. Either error carries, in ``events``, the values completed in the same
    read before it, and the decoder refuses further input afterwards.

    An unterminated line is kept as a list of reads and joined once its LF arrives, so a
    long line costs linear time however finely it is split.
    """

    __slots__ = ("_failed", "_pieces", "_pieces_len", "max_line_bytes")

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_line_bytes <= 0:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes
        self._pieces: list[bytes] = []  # the unterminated tail: never contains LF
        self._pieces_len = 0
        self._failed = False

    @property
    def pending(self) -> bool:
        """True when an unterminated, non-blank line is buffered."""
        return any(piece.strip() for piece in self._pieces)

    def feed(self, data: bytes) -> list[Any]:
        """Decode one read; return the values of the lines it completed, in order."""
        if self._failed:
            raise MalformedFrame("the NDJSON decoder already failed")
        out: list[Any] = []
        if not data:
            return out
        if b"\n" not in data:
            self._pieces.append(data)
            self._pieces_len += len(data)
            if self._pieces_len > self.max_line_bytes:
                raise self._too_large(out)
            return out
        if self._pieces:
            self._pieces.append(data)
            data = b"".join(self._pieces)
            self._pieces = []
            self._pieces_len = 0
        lines = data.split(b"\n")
        tail = lines.pop()
        for line in lines:
            self._parse(line, out)
        if tail:
            self._pieces = [tail]
            self._pieces_len = len(tail)
            if len(tail) > self.max_line_bytes:
                raise self._too_large(out)
        return out

    def finish(self) -> list[Any]:
        """End of stream: parse a final line that had no newline, and reset the buffer."""
        pieces = self._pieces
        self._pieces = []
        self._pieces_len = 0
        out: list[Any] = []
        if pieces and not self._failed:
            self._parse(b"".join(pieces), out)
        return out

    def _parse(self, line: bytes, out: list[Any]) -> None:
        if len(line) > self.max_line_bytes:
            raise self._too_large(out)
        if not line.strip():
            return
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            self._fail()
            raise MalformedFrame(
                f"an NDJSON line is not JSON: {exc}",
                frame=line[:200].decode("utf-8", "replace"),
                events=out,
            ) from None

    def _too_large(self, out: list[Any]) -> FrameTooLarge:
        self._fail()
        return FrameTooLarge(
            f"an NDJSON line is longer than {self.max_line_bytes} bytes",
            limit=self.max_line_bytes,
            events=out,
        )

    def _fail(self) -> None:
        self._failed = True
        self._pieces = []
        self._pieces_len = 0

"""A streamed JSON array (Gemini's ``streamGenerateContent`` without ``alt=sse``).

The body is one JSON array written element by element, e.g. ``[{...}\\n,\\r\\n{...}\\n]``.
The decoder finds each element's end with a linear scan that tracks strings, escapes and
nesting, then parses the element once with orjson.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from rxllm.errors import FrameTooLarge, MalformedFrame

from ._sse import DEFAULT_MAX_EVENT_BYTES

__all__ = ["JSONArrayDecoder"]

_STRUCTURAL = re.compile(rb'["{}\[\]]')
_STRING_END = re.compile(rb'["\\]')
_WS = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


class JSONArrayDecoder:
    """Incremental decoder of one top-level JSON array: ``feed`` returns completed elements.

    ``done`` becomes true at the closing ``]``. An element larger than ``max_element_bytes``
    raises ``FrameTooLarge``; bytes that are not an array raise ``MalformedFrame``. Either
    error carries, in ``events``, the elements completed in the same read before it.
    """

    __slots__ = (
        "_buf",
        "_depth",
        "_esc",
        "_failed",
        "_in_str",
        "_pos",
        "_state",
        "done",
        "max_element_bytes",
    )

    # states: 0 before '[', 1 expecting an element or ']', 2 inside an element,
    # 3 after an element (expecting ',' or ']'), 4 after the closing ']'
    def __init__(self, *, max_element_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_element_bytes <= 0:
            raise ValueError("max_element_bytes must be positive")
        self.max_element_bytes = max_element_bytes
        self._buf = b""
        self._pos = 0  # scan position inside _buf while in state 2
        self._state = 0
        self._depth = 0
        self._in_str = False
        self._esc = False
        self._failed = False
        self.done = False

    @property
    def pending(self) -> bool:
        """True when part of an element is buffered."""
        return self._state == 2

    def feed(self, data: bytes) -> list[Any]:
        """Decode one read; return the elements it completed, in order."""
        if self._failed:
            raise MalformedFrame("the JSON array decoder already failed")
        out: list[Any] = []
        if not data:
            return out
        buf = self._buf + data if self._buf else data
        i = 0
        n = len(buf)
        try:
            while i < n:
                state = self._state
                if state == 2:
                    end = self._scan(buf, i)
                    if end < 0:  # the element continues in the next read
                        if n > self.max_element_bytes:
                            raise FrameTooLarge(
                                f"a JSON array element is larger than "
                                f"{self.max_element_bytes} bytes",
                                limit=self.max_element_bytes,
                                events=out,
                            )
                        self._buf = buf
                        return out
                    element = buf[:end]
                    try:
                        out.append(orjson.loads(element))
                    except orjson.JSONDecodeError as exc:
                        raise MalformedFrame(
                            f"a JSON array element is not JSON: {exc}",
                            frame=element[:200].decode("utf-8", "replace"),
                            events=out,
                        ) from None
                    buf = buf[end:]
                    n = len(buf)
                    i = 0
                    self._state = 3
                    continue
                c = buf[i]
                if c in _WS:
                    i += 1
                elif state == 0:
                    if buf.startswith(_BOM, i):
                        i += 3
                    elif c == 0x5B:  # [
                        self._state = 1
                        i += 1
                    else:
                        raise self._malformed(buf, i, "a JSON array", out)
                elif c == 0x5D and state in (1, 3):  # ]
                    self._state = 4
                    self.done = True
                    i += 1
                elif state == 3 and c == 0x2C:  # ,
                    self._state = 1
                    i += 1
                elif state == 1 and c in b'{["-0123456789tfn':
                    self._state = 2
                    buf = buf[i:]
                    n = len(buf)
                    i = 0
                    self._pos = 0
                    self._depth = 0
                    self._in_str = False
                    self._esc = False
                else:
                    raise self._malformed(
                        buf, i, "nothing after the array" if state == 4 else "',' or ']'", out
                    )
        except (FrameTooLarge, MalformedFrame):
            self._failed = True
            self._buf = b""
            raise
        self._buf = b""
        return out

    def finish(self) -> list[Any]:
        """End of stream; an unterminated element is dropped (check ``done`` and ``pending``)."""
        self._buf = b""
        return []

    def _scan(self, buf: bytes, start: int) -> int:
        """Return the end offset of the element that starts at ``buf[0]``, or -1."""
        pos = max(start, self._pos)
        depth, in_str, esc = self._depth, self._in_str, self._esc
        n = len(buf)
        if pos == 0 and buf[0] not in b'{["':
            # a scalar element ends at the first delimiter
            m = re.search(rb"[,\]\s]", buf)
            if m is None:
                self._pos = n
                return -1
            return m.start()
        while pos < n:
            if in_str:
                if esc:
                    esc = False
                    pos += 1
                    continue
                m = _STRING_END.search(buf, pos)
                if m is None:
                    pos = n
                    break
                pos = m.start()
                if buf[pos] == 0x5C:  # backslash
                    esc = True
                else:
                    in_str = False
                    if depth == 0:
                        self._reset_scan()
                        return pos + 1
                pos += 1
                continue
            m = _STRUCTURAL.search(buf, pos)
            if m is None:
                pos = n
                break
            pos = m.start()
            c = buf[pos]
            if c == 0x22:
                in_str = True
            elif c in b"{[":
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    self._reset_scan()
                    return pos + 1
            pos += 1
        self._pos, self._depth, self._in_str, self._esc = pos, depth, in_str, esc
        return -1

    def _reset_scan(self) -> None:
        self._pos = 0
        self._depth = 0
        self._in_str = False
        self._esc = False

    @staticmethod
    def _malformed(buf: bytes, i: int, expected: str, out: list[Any]) -> MalformedFrame:
        got = buf[i : i + 40].decode("utf-8", "replace")
        return MalformedFrame(f"expected {expected}, got {got!r}", frame=got, events=out)

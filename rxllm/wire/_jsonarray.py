"""A streamed JSON array (Gemini's ``streamGenerateContent`` without ``alt=sse``).

The body is one JSON array written element by element, e.g. ``[{...}\\n,\\r\\n{...}\\n]``.
The decoder finds each element's end with a scan that tracks strings, escapes and nesting,
then parses the element once with orjson. Each byte is scanned once and copied a constant
number of times: an element split over many reads is kept as a list of pieces and joined
once it closes, and a read holding many elements is walked by offset, never re-sliced.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from rxllm.errors import FrameTooLarge, MalformedFrame

from ._sse import DEFAULT_MAX_EVENT_BYTES

__all__ = ["JSONArrayDecoder"]

_NOT_WS = re.compile(rb"[^ \t\r\n]")  # JSON whitespace (RFC 8259, section 2)
# A bracket, or a whole string (escapes skipped in pairs); group 1 is its closing quote,
# absent when the string runs to the end of the read (the last byte may be a lone backslash).
_TOKEN = re.compile(rb'[{}\[\]]|"(?:[^"\\]++|\\.)*+(")?', re.DOTALL)
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+(")?', re.DOTALL)
_SCALAR_END = re.compile(rb"[,\] \t\r\n]")
_BOM = b"\xef\xbb\xbf"
_VALUE_START = frozenset(b'{["-0123456789tfn')
_CONTAINER_START = frozenset(b'{["')

# states
_BEFORE = 0  # before '['
_FIRST = 1  # after '[': an element or ']'
_ELEMENT = 2  # inside an element
_AFTER = 3  # after an element: ',' or ']'
_NEXT = 4  # after ',': an element
_DONE = 5  # after the closing ']'

_EXPECTED = {
    _BEFORE: "a JSON array",
    _FIRST: "a JSON value or ']'",
    _AFTER: "',' or ']'",
    _NEXT: "a JSON value",
    _DONE: "nothing after the array",
}


class JSONArrayDecoder:
    """Incremental decoder of one top-level JSON array: ``feed`` returns completed elements.

    Each element is returned as soon as its closing bracket (or quote, or delimiter for a
    scalar) arrives; ``done`` becomes true at the closing ``]``. One leading UTF-8 BOM is
    skipped, even when split across reads. An element larger than ``max_element_bytes``
    raises ``FrameTooLarge`` as soon as it is seen, with memory held to about this bound
    plus one read; bytes that are not an array (or a trailing comma, or anything after the
    closing ``]`` but whitespace) raise ``MalformedFrame``. Either error carries, in
    ``events``, the elements completed in the same read before it, and the decoder refuses
    further input afterwards.
    """

    __slots__ = (
        "_depth",
        "_esc",
        "_failed",
        "_head",
        "_in_str",
        "_pieces",
        "_scalar",
        "_size",
        "_started",
        "_state",
        "done",
        "max_element_bytes",
    )

    def __init__(self, *, max_element_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_element_bytes <= 0:
            raise ValueError("max_element_bytes must be positive")
        self.max_element_bytes = max_element_bytes
        self._state = _BEFORE
        self._pieces: list[bytes] = []  # the open element's bytes from earlier reads
        self._size = 0
        self._depth = 0
        self._in_str = False
        self._esc = False
        self._scalar = False
        self._head = b""  # bytes held while deciding whether the stream starts with a BOM
        self._started = False
        self._failed = False
        self.done = False

    @property
    def pending(self) -> bool:
        """True when part of an element is buffered."""
        return self._state == _ELEMENT

    def feed(self, data: bytes) -> list[Any]:
        """Decode one read; return the elements it completed, in order."""
        if self._failed:
            raise MalformedFrame("the JSON array decoder already failed")
        out: list[Any] = []
        if not data:
            return out
        i = 0
        if not self._started:
            data = self._head + data
            if len(data) < 3 and _BOM.startswith(data):
                self._head = data
                return out
            self._started = True
            self._head = b""
            if data.startswith(_BOM):
                i = 3
        n = len(data)
        try:
            while i < n:
                state = self._state
                if state == _ELEMENT:
                    end = self._scan(data, i)
                    if end < 0:  # the element continues in the next read
                        self._keep(data, i, out)
                        return out
                    self._element(data, i, end, out)
                    self._state = _AFTER
                    i = end
                    continue
                m = _NOT_WS.search(data, i)
                if m is None:
                    break
                i = m.start()
                c = data[i]
                if state == _BEFORE and c == 0x5B:  # [
                    self._state = _FIRST
                    i += 1
                elif c == 0x5D and state in (_FIRST, _AFTER):  # ]
                    self._state = _DONE
                    self.done = True
                    i += 1
                elif c == 0x2C and state == _AFTER:  # ,
                    self._state = _NEXT
                    i += 1
                elif state in (_FIRST, _NEXT) and c in _VALUE_START:
                    self._state = _ELEMENT
                    self._depth = 0
                    self._in_str = False
                    self._esc = False
                    self._scalar = c not in _CONTAINER_START
                else:
                    got = data[i : i + 40].decode("utf-8", "replace")
                    raise MalformedFrame(
                        f"expected {_EXPECTED[state]}, got {got!r}", frame=got, events=out
                    )
        except (FrameTooLarge, MalformedFrame):
            self._fail()
            raise
        return out

    def finish(self) -> list[Any]:
        """End of stream; an unterminated element is dropped (check ``done`` and ``pending``)."""
        self._pieces = []
        self._size = 0
        self._head = b""
        return []

    def _scan(self, data: bytes, pos: int) -> int:
        """Return the end offset in ``data`` of the open element, or -1 if it goes on.

        Scanning resumes from the state the previous read left (depth, inside a string,
        after a backslash), so no byte is looked at twice. Each string is skipped whole by
        one regex match, escapes included.
        """
        if self._scalar:
            # a number, true, false or null ends at the first delimiter
            m = _SCALAR_END.search(data, pos)
            return -1 if m is None else m.start()
        n = len(data)
        depth = self._depth
        if self._in_str:  # the previous read ended inside a string
            if self._esc:  # ... right after a backslash: skip the byte it escapes
                pos += 1
            m = _STRING_REST.match(data, pos)
            pos = m.end() if m is not None else n  # always matches; satisfies the type checker
            if m is None or m.lastindex is None:  # still open
                self._esc = pos < n  # the read ends with a lone backslash
                return -1
            self._in_str = self._esc = False
            if depth == 0:  # a string element
                return pos
        search = _TOKEN.search
        while True:
            m = search(data, pos)
            if m is None:
                break
            pos = m.end()
            c = data[m.start()]
            if c == 0x22:  # a string
                if m.lastindex is None:  # it goes on in the next read
                    self._in_str = True
                    self._esc = pos < n
                    break
                if depth == 0:  # a string element
                    return pos
            elif c == 0x7B or c == 0x5B:  # { [
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return pos
        self._depth = depth
        return -1

    def _keep(self, data: bytes, start: int, out: list[Any]) -> None:
        size = self._size + len(data) - start
        if size > self.max_element_bytes:
            raise self._too_large(out)
        self._pieces.append(data[start:] if start else data)
        self._size = size

    def _element(self, data: bytes, start: int, end: int, out: list[Any]) -> None:
        if self._size + end - start > self.max_element_bytes:
            raise self._too_large(out)
        element = data[start:end]
        if self._pieces:
            self._pieces.append(element)
            element = b"".join(self._pieces)
            self._pieces = []
            self._size = 0
        try:
            out.append(orjson.loads(element))
        except orjson.JSONDecodeError as exc:
            raise MalformedFrame(
                f"a JSON array element is not JSON: {exc}",
                frame=element[:200].decode("utf-8", "replace"),
                events=out,
            ) from None

    def _too_large(self, out: list[Any]) -> FrameTooLarge:
        return FrameTooLarge(
            f"a JSON array element is larger than {self.max_element_bytes} bytes",
            limit=self.max_element_bytes,
            events=out,
        )

    def _fail(self) -> None:
        self._failed = True
        self._pieces = []
        self._size = 0

"""Bounded, incremental JSON assembly over a text stream. Sans-IO: no asyncio, no Rx.

``JsonStream`` takes the text a model writes, piece by piece, and returns each JSON value
found under an ijson-style ``prefix`` (``"people.item"``, ``"item"``, ``""``) as soon as its
last character arrives. Every piece is read once, so the total cost is linear in the
stream's length (peers that re-parse the growing buffer per piece are quadratic).

Two stages, both incremental:

1. A pre-scanner (this module) walks the text with ``re`` jumping from one structural
   character to the next. It finds where a document starts (prose and a ```json fence
   before it are skipped) and where it ends, and it enforces the bounds *before* the
   parser sees the bytes: nesting depth, number-literal length, string length and item
   size. Those bounds matter: ijson 3.6's C backend crashes the process on an integer
   literal of 4,301+ digits, and its ``items`` builder needs memory quadratic in the depth.
2. ijson's push interface (the ``yajl2_c`` backend) parses the document bytes. By default
   its C ``items_coro`` builds the items; with ``partial=True`` its ``parse_coro`` events
   drive a Python builder that also exposes the item being written (``current``) and
   reports each completed top-level property of it (``PartialItem``), for early
   validation and live snapshots.

Document detection: outside a document the scanner looks for ``{`` or ``[``. A ``{`` starts
a document only if the next non-blank character is ``"`` or ``}``; a ``[`` only if it is a
JSON value's first character or ``]`` (``true``/``false``/``null`` spelled out), so prose
such as ``[see below]`` is skipped. A citation like ``[1]`` in prose does parse as a
document: avoid numeric prefixes such as ``"item"`` with chatty prompts, or ask for an
object. After a document ends the scanner returns to prose and picks up the next one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import ijson

from rxllm.errors import (
    DepthExceeded,
    IncompleteJson,
    InvalidJson,
    ItemTooLarge,
    JsonAssemblyError,
    NumberTooLong,
    StringTooLong,
)

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ITEM_BYTES",
    "DEFAULT_MAX_NUMBER_LENGTH",
    "DEFAULT_MAX_STRING_LENGTH",
    "IncompleteItem",
    "JsonStream",
    "PartialItem",
]

DEFAULT_MAX_DEPTH: Final = 64
"""Default bound on container nesting."""
DEFAULT_MAX_NUMBER_LENGTH: Final = 100
"""Default bound on one number literal, in characters."""
DEFAULT_MAX_STRING_LENGTH: Final = 1024 * 1024
"""Default bound on one string (key or value), in characters of its JSON text."""
DEFAULT_MAX_ITEM_BYTES: Final = 8 * 1024 * 1024
"""Default bound on one item under the prefix, in UTF-8 bytes of its JSON text."""

_MAX_TENTATIVE: Final = 256  # blank characters tolerated between a bracket and its content

_BACKEND = ijson.get_backend("yajl2_c")

_STRUCT = re.compile(r'["{}\[\],:]')
# inside an item: skip everything up to the next bracket or unterminated string, in C
_DEEP = re.compile(r'(?:[^"{}\[\]]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+')
_NUMCH: Final = "0123456789+-.eE"
_MAX_BATCH: Final = 16384  # characters fed ahead of the scanner at most
_STR_SPECIAL = re.compile(r'["\\]')
_OPEN = re.compile(r"[{\[]")
_NONBLANK = re.compile(r"\S")
_START_OK = re.compile(r'\{\s*["}]|\[\s*(?:[\[{"\]\-0-9]|true|false|null)')
_START_MAYBE = re.compile(r"\{\s*|\[\s*(?:t|tr|tru|f|fa|fal|fals|n|nu|nul)?")

# scanner modes
_PROSE: Final = 0  # outside any document, looking for one
_TENTATIVE: Final = 1  # a bracket was seen; waiting for the character that confirms it
_VALUE: Final = 2  # inside a document, outside strings
_STRING: Final = 3  # inside a string (a key or a value)
_TRAILING: Final = 4  # strict mode after its document: only blanks may follow
_FAILED: Final = 5

_SCALAR_EVENTS: Final = frozenset({"string", "number", "boolean", "null", "integer", "double"})
_COMPLETING_EVENTS: Final = _SCALAR_EVENTS | {"end_map", "end_array"}


@dataclass(slots=True)
class PartialItem:
    """Progress on the item being written (``JsonStream(partial=True)`` only).

    ``value`` is the item as built so far: the very object that will be returned when it
    completes, so read it, do not keep it. ``key`` is ``None`` when the item has just
    started, otherwise the property name (object item) or element index (array item) whose
    value just completed; ``value[key]`` will not change any more.
    """

    index: int
    value: Any
    key: str | int | None


@dataclass(slots=True)
class IncompleteItem:
    """The text ended inside a document (``JsonStream.finish(partial=True)`` reports it).

    ``value`` is the open item as built so far with its containers closed and the value
    that was being written left out, or ``None`` when the text ended between items;
    ``error`` is the ``IncompleteJson`` that plain ``finish`` would raise.
    """

    index: int
    value: Any
    error: IncompleteJson


class _Sink:
    """The ``send`` target ijson's push coroutines write to."""

    __slots__ = ("items", "send")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.send: Callable[[Any], None] = self.items.append


class JsonStream:
    """Incremental, bounded JSON assembly: ``feed`` text pieces, get completed values.

    Args:
        prefix: ijson prefix of the values to return: ``"people.item"`` for each element of
            the ``people`` array, ``"item"`` for each element of a top-level array, ``""``
            for whole documents.
        max_depth: containers nested deeper raise ``DepthExceeded``.
        max_number_length: a number literal longer than this raises ``NumberTooLong``.
        max_string_length: a string whose JSON text is longer raises ``StringTooLong``.
        max_item_bytes: a container item under ``prefix`` larger than this many UTF-8 bytes
            raises ``ItemTooLarge`` (scalar items are bounded by the two limits above).
        partial: build items in Python from parse events, so the item being written is
            readable (``current``) and ``feed`` also reports ``PartialItem`` progress.
        strict: the text must be exactly one JSON object or array (blanks around it):
            no prose, no second document (for tool-call arguments).

    ``feed`` and ``finish`` append to ``out`` when given (and return it), so when they
    raise, the values completed before the error are already in ``out``: nothing good is
    lost. Every error is a ``JsonAssemblyError`` with ``path`` (ijson prefix) and ``offset``
    (character offset in the whole text); after one, the stream stays failed.

    Numbers come out as ``int`` or ``float``, never ``Decimal``.

    Example::

        stream = JsonStream("people.item")
        for piece in pieces:
            for person in stream.feed(piece):
                handle(person)
        stream.finish()  # IncompleteJson if the text stopped inside the document
    """

    __slots__ = (
        "_after_value",
        "_base_depth",
        "_builder_keys",
        "_builder_stack",
        "_consumed",
        "_coro",
        "_coro_send",
        "_dbound",
        "_dead",
        "_depth",
        "_done",
        "_error",
        "_esc",
        "_events",
        "_in_item",
        "_is_key",
        "_isize",
        "_items",
        "_key_next",
        "_keybuf",
        "_last_event_path",
        "_lazy",
        "_mode",
        "_nrun",
        "_numlen",
        "_partial",
        "_path",
        "_pcap",
        "_pchars",
        "_pending",
        "_room",
        "_room0",
        "_sink",
        "_stack",
        "_strict",
        "_strlen",
        "_tent",
        "count",
        "documents",
        "max_depth",
        "max_item_bytes",
        "max_number_length",
        "max_string_length",
        "prefix",
    )

    def __init__(
        self,
        prefix: str = "item",
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_number_length: int = DEFAULT_MAX_NUMBER_LENGTH,
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        partial: bool = False,
        strict: bool = False,
    ) -> None:
        for name, value in (
            ("max_depth", max_depth),
            ("max_number_length", max_number_length),
            ("max_string_length", max_string_length),
            ("max_item_bytes", max_item_bytes),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        self.prefix = prefix
        self.max_depth = max_depth
        self.max_number_length = max_number_length
        self.max_string_length = max_string_length
        self.max_item_bytes = max_item_bytes
        self.count = 0
        """Values returned so far (the index of the next one)."""
        self.documents = 0
        """Documents completed so far."""
        self._partial = partial
        self._strict = strict
        self._base_depth = len(prefix.split(".")) if prefix else 0
        self._mode = _PROSE
        self._consumed = 0
        self._tent = ""
        self._pending: list[str] = []  # text given to ijson but not scanned yet (see _room)
        self._room = 0  # characters that may be batched with no further test (see _widen)
        self._room0 = 0
        self._lazy = False  # whether batching is allowed at all (inside a document)
        self._dbound = 0  # upper bound of the depth reached in the batch
        self._nrun = 0  # upper bound of the number literal ending the batch
        self._pchars = 0  # characters in the batch
        self._pcap = 0  # most characters the batch may hold
        self._depth = 0
        # per open container at depth <= the prefix's depth (deeper ones are only counted):
        self._stack: list[str] = []  # "{" or "["
        self._path: list[str | None] = []  # current key, or "item"
        self._done: list[str | None] = []  # the last child whose value completed
        self._after_value = False
        self._key_next = False
        self._is_key = False
        self._keybuf: list[str] = []
        self._esc = False
        self._strlen = 0
        self._numlen = 0
        self._in_item = False
        self._isize = 0
        self._sink = _Sink()
        self._coro: Any = None
        self._coro_send: Callable[[bytes], None] = _no_send
        self._items = self._sink.items
        self._dead: Exception | None = None  # ijson's error while fed ahead of the scanner
        self._error: JsonAssemblyError | None = None
        self._builder_stack: list[Any] = []
        self._builder_keys: list[Any] = []
        self._events = 0
        self._last_event_path: str | None = None

    # --- public --------------------------------------------------------------------------

    @property
    def offset(self) -> int:
        """Characters fed so far."""
        return self._consumed + sum(map(len, self._pending))

    @property
    def in_document(self) -> bool:
        """True while the text is inside a JSON document (as far as it was scanned)."""
        return self._mode in (_VALUE, _STRING)

    @property
    def current(self) -> Any:
        """The item being written, as built so far (``partial=True`` only), else ``None``."""
        return self._builder_stack[0] if self._builder_stack else None

    @property
    def changes(self) -> int:
        """Parse events applied by the Python builder so far (``partial=True`` only)."""
        return self._events

    @property
    def path(self) -> str:
        """The ijson prefix of the current position, down to the prefix's depth."""
        return _join(self._path)

    def last_complete_path(self) -> str | None:
        """The ijson prefix of the last value completed inside the open document.

        With ``partial=True`` it is exact (from the parser's events). Otherwise the scanner
        tracks keys only down to the prefix's depth, so inside an open item it names the
        last complete item (the prefix), or the enclosing value if there is none.
        """
        if self._partial:
            return self._last_event_path
        if self._after_value and self._depth <= self._base_depth:
            return _join(self._path)
        done = self._done
        for level in range(len(done) - 1, -1, -1):
            if done[level] is not None:
                return _join([*self._path[:level], done[level]])
        return None

    def feed(self, text: str, out: list[Any] | None = None) -> list[Any]:
        """Scan and parse one piece of text; append the values it completed to ``out``.

        Raises a ``JsonAssemblyError`` subclass for a broken bound or bad JSON, after
        appending the values completed before the offending character.
        """
        if out is None:
            out = []
        n = len(text)
        if not n:  # (an empty send would tell ijson the input ended)
            if self._error is not None:
                raise self._error
            return out
        if (n <= self._room and "{" not in text and "[" not in text) or (
            self._lazy and self._widen(text, n)
        ):
            # Inside a document and far from every bound: give the text to ijson now and
            # scan it later in one batch, so tiny deltas cost little each. (_room and
            # _lazy are zero after an error.)
            try:
                data = text.encode()
            except UnicodeEncodeError:
                self._room = 0
            else:
                if n <= self._room:  # not decided by _widen
                    self._room -= n
                self._pending.append(text)
                try:
                    self._coro_send(data)
                except ijson.JSONError as exc:
                    self._dead = exc
                    self._room = 0
                    text = ""
                    self._drain(out)
                else:
                    if self._items:
                        self._drain(out)
                    return out
        if self._error is not None:
            raise self._error
        try:
            self._catch_up(text, out)
        except JsonAssemblyError as exc:
            self._failed(exc)
            raise
        return out

    def finish(self, out: list[Any] | None = None) -> list[Any]:
        """End of text: raise ``IncompleteJson`` if it stopped inside a document.

        ``IncompleteJson.path`` names the last complete value (see ``last_complete_path``;
        ``None`` if there is none) and ``offset`` where the text ended. A strict stream with
        no document at all raises ``InvalidJson``.
        """
        if out is None:
            out = []
        if self._error is not None:
            raise self._error
        try:
            self._catch_up("", out)
        except JsonAssemblyError as exc:
            self._failed(exc)
            raise
        mode = self._mode
        if mode in (_VALUE, _STRING):
            last = self.last_complete_path()
            where = f"after {last!r}" if last is not None else "before any complete value"
            cut = IncompleteJson(
                f"the text ended inside a JSON document at {self.path!r}, {where} "
                f"({self.count} complete values before it)",
                path=last,
                offset=self._consumed,
            )
            self._failed(cut)
            raise cut
        if self._strict and self.documents == 0:
            empty = InvalidJson("the text holds no JSON document", path="", offset=self._consumed)
            self._failed(empty)
            raise empty
        self._tent = ""
        return out

    def _failed(self, exc: JsonAssemblyError) -> None:
        self._error = exc
        self._mode = _FAILED
        self._pending.clear()
        self._room = self._room0 = 0
        self._lazy = False

    def incomplete(self, error: IncompleteJson) -> IncompleteItem:
        """Describe the open item after ``finish`` raised ``error`` (``partial=True``)."""
        return IncompleteItem(self.count, self.current, error)

    # --- scanner -------------------------------------------------------------------------

    def _catch_up(self, text: str, out: list[Any]) -> None:
        """Scan the pending text (already given to ijson) and then ``text`` (not yet)."""
        pending = self._pending
        fed = 0
        if pending:
            head = "".join(pending)
            pending.clear()
            fed = len(head)
            text = head + text
        if text:
            self._scan(text, out, fed)
        if self._dead is not None:  # ijson failed on text the scanner still sees as JSON
            exc = self._dead
            self._dead = None
            raise self._invalid(exc)
        self._set_room()

    def _set_room(self) -> None:
        """After a scan: how much text may be batched before the next one (see ``_widen``)."""
        mode = self._mode
        if mode not in (_VALUE, _STRING):
            self._lazy = False
            self._room = self._room0 = 0
            return
        self._lazy = True
        self._dbound = self._depth
        self._nrun = self._numlen if mode == _VALUE else 0
        self._pchars = 0
        self._pcap = min(
            _MAX_BATCH,
            (self.max_item_bytes - (self._isize if self._in_item else 0)) // 4,
            self.max_string_length - (self._strlen if mode == _STRING else 0),
        )
        # the cheap test admits no bracket, so only numbers and sizes limit it
        self._room = self._room0 = max(0, min(self.max_number_length - self._nrun, self._pcap) - 1)

    def _widen(self, text: str, n: int) -> bool:
        """Tell whether ``text`` may join the batch, counting what it can do to each bound.

        The batch is scanned later, so this must be conservative: every ``{``/``[`` (even
        one inside a string) may deepen the nesting, every run of number characters may be
        a number literal, every character may belong to a string or to the open item. The
        cheaper test in ``feed`` (``_room``) admits only text without brackets and counts
        each of its characters as part of a number.
        """
        maxnum = self.max_number_length
        if n > maxnum:
            return False
        used = self._room0 - self._room  # characters batched by the cheap test (no brackets)
        dbound = self._dbound + text.count("{") + text.count("[")
        if dbound >= self.max_depth:
            return False
        lead = n - len(text.lstrip(_NUMCH))
        nrun = self._nrun + used
        if lead == n:
            nrun += n
            if nrun > maxnum:
                return False
        else:
            if nrun + lead > maxnum:
                return False
            nrun = n - len(text.rstrip(_NUMCH))
        pchars = self._pchars + used + n
        pcap = self._pcap
        if pchars > pcap:
            return False
        self._dbound = dbound
        self._nrun = nrun
        self._pchars = pchars
        room = min(maxnum - nrun, pcap - pchars) - 1
        self._room = self._room0 = room if room > 0 else 0
        return True

    def _scan(self, text: str, out: list[Any], fed: int = 0) -> None:
        """Walk ``text`` once, enforcing every bound; give ijson what it has not seen.

        ``text[:fed]`` was given to ijson already (by ``feed``'s batch path).
        """
        mode = self._mode
        base = self._consumed
        if mode == _TENTATIVE:
            tent = self._tent
            text = tent + text
            base -= len(tent)
            fed += len(tent) if fed else 0
            self._tent = ""
            mode = _PROSE
        self._consumed = base + len(text)
        n = len(text)
        asc = text.isascii()
        i = 0
        fs = fed  # where the bytes not yet given to the current ijson coroutine start
        istart = 0  # where the open item's text starts in this piece
        stack = self._stack
        path = self._path
        done = self._done
        depth = self._depth
        bdepth = self._base_depth
        maxnum = self.max_number_length
        maxstr = self.max_string_length
        deep_match = _DEEP.match
        struct_search = _STRUCT.search
        # numbers: the deep walk skips them, so check the longest digit run up front
        numlead = n - len(text.lstrip(_NUMCH))
        careful = self._numlen + numlead > maxnum or (
            n > maxnum and _long_number(maxnum).search(text) is not None
        )
        try:
            while i < n:
                if mode == _VALUE:
                    if depth > bdepth and not careful:
                        # inside an item: jump from bracket to bracket, strings skipped in C
                        j = deep_match(text, i).end()  # type: ignore[union-attr] # matches ""
                        if j - i > maxstr and _long_string(maxstr).search(text, i, j):
                            careful = True
                            continue
                        if j >= n:
                            i = n
                            break
                        c = text[j]
                        self._numlen = 0
                        if c == '"':
                            mode = _STRING
                            self._strlen = 0
                            self._is_key = False
                            i = j + 1
                            continue
                        if c == "{" or c == "[":
                            if depth >= self.max_depth:
                                self._mode = mode
                                self._depth = depth
                                self._fail_depth(text, fs, j, out)
                            depth += 1
                            i = j + 1
                            continue
                        depth -= 1
                        i = j + 1
                        if depth > bdepth:
                            continue
                        self._key_next = False
                        self._after_value = True
                        if self._in_item:
                            self._in_item = False
                            size = self._isize + _nbytes(text, istart, i, asc)
                            if size > self.max_item_bytes:
                                self._in_item = True
                                self._mode = mode
                                self._depth = depth
                                self._fail_item(text, fs, istart, out)
                        if depth == 0:
                            self._depth = 0
                            if i > fs:
                                self._send(_encode(text, fs, i, base), out)
                            fs = i
                            self._end_document(out, i <= fed)
                            mode = _TRAILING if self._strict else _PROSE
                        continue
                    # token by token: at or above the prefix's depth (keys matter there)
                    m = struct_search(text, i)
                    j = n if m is None else m.start()
                    if j > i:
                        gap = len(text[i:j].strip())
                        if gap:
                            numlen = self._numlen + gap
                            if numlen > maxnum:
                                self._mode = mode
                                self._depth = depth
                                self._fail_number(text, fs, i, out)
                            self._numlen = numlen
                            self._after_value = False
                    if m is None:
                        i = n
                        break
                    self._numlen = 0
                    c = text[j]
                    i = j + 1
                    if c == '"':
                        mode = _STRING
                        self._strlen = 0
                        self._is_key = self._key_next and depth <= bdepth
                        self._key_next = False
                        self._after_value = False
                    elif c == ",":
                        if depth <= bdepth and stack:
                            if stack[-1] == "{":
                                done[-1] = path[-1]
                                self._key_next = True
                            else:
                                done[-1] = "item"
                        self._after_value = False
                    elif c == ":":
                        self._after_value = False
                    elif c == "{" or c == "[":
                        if depth >= self.max_depth:
                            self._mode = mode
                            self._depth = depth
                            self._fail_depth(text, fs, j, out)
                        if depth < bdepth:
                            stack.append(c)
                            done.append(None)
                            path.append(None if c == "{" else "item")
                            self._key_next = c == "{"
                        elif depth == bdepth and not self._in_item and _join(path) == self.prefix:
                            self._in_item = True
                            self._isize = 0
                            istart = j
                        depth += 1
                        self._after_value = False
                    else:  # } or ]
                        depth -= 1
                        self._key_next = False
                        self._after_value = True
                        if depth < bdepth and stack:
                            stack.pop()
                            path.pop()
                            done.pop()
                        elif depth == bdepth and self._in_item:
                            self._in_item = False
                            size = self._isize + _nbytes(text, istart, i, asc)
                            if size > self.max_item_bytes:
                                self._in_item = True
                                self._mode = mode
                                self._depth = depth
                                self._fail_item(text, fs, istart, out)
                        if depth <= 0:
                            depth = 0
                            self._depth = 0
                            if i > fs:
                                self._send(_encode(text, fs, i, base), out)
                            fs = i
                            self._end_document(out, i <= fed)
                            mode = _TRAILING if self._strict else _PROSE
                    continue
                if mode == _STRING:
                    if self._esc:
                        self._esc = False
                        i += 1
                        self._strlen += 1
                        continue
                    m = _STR_SPECIAL.search(text, i)
                    if m is None:
                        if self._is_key:
                            self._keybuf.append(text[i:])
                        strlen = self._strlen + n - i
                        if strlen > maxstr:
                            self._mode = mode
                            self._depth = depth
                            self._fail_string(text, fs, i, out)
                        self._strlen = strlen
                        i = n
                        break
                    j = m.start()
                    if text[j] == "\\":
                        strlen = self._strlen + j + 1 - i
                        if strlen > maxstr:
                            self._mode = mode
                            self._depth = depth
                            self._fail_string(text, fs, i, out)
                        if j + 1 < n:
                            self._strlen = strlen + 1
                            if self._is_key:
                                self._keybuf.append(text[i : j + 2])
                            i = j + 2
                        else:
                            self._esc = True
                            self._strlen = strlen
                            if self._is_key:
                                self._keybuf.append(text[i:])
                            i = n
                        continue
                    strlen = self._strlen + j - i
                    if strlen > maxstr:
                        self._mode = mode
                        self._depth = depth
                        self._fail_string(text, fs, i, out)
                    if self._is_key:
                        buf = self._keybuf
                        if buf:
                            buf.append(text[i:j])
                            raw = "".join(buf)
                            buf.clear()
                        else:
                            raw = text[i:j]
                        path[-1] = _decode_key(raw) if "\\" in raw else raw
                        self._is_key = False
                    else:
                        self._after_value = True
                    mode = _VALUE
                    i = j + 1
                    continue
                if mode == _PROSE:
                    if self._strict:
                        m = _NONBLANK.search(text, i)
                        if m is None:
                            i = n
                            break
                        j = m.start()
                        if text[j] not in "{[":
                            raise InvalidJson(
                                f"expected a JSON object or array, got {text[j : j + 20]!r}",
                                path="",
                                offset=base + j,
                            )
                    else:
                        m = _OPEN.search(text, i)
                        if m is None:
                            i = n
                            break
                        j = m.start()
                        if _START_OK.match(text, j) is None:
                            if n - j <= _MAX_TENTATIVE and _START_MAYBE.fullmatch(text, j):
                                self._tent = text[j:]
                                mode = _TENTATIVE
                                i = n
                                break
                            i = j + 1
                            continue
                    self._start_document()
                    mode = _VALUE
                    fs = j
                    i = j
                    continue
                if mode == _TRAILING:
                    m = _NONBLANK.search(text, i)
                    if m is None:
                        i = n
                        break
                    j = m.start()
                    raise InvalidJson(
                        f"unexpected text after the JSON document: {text[j : j + 20]!r}",
                        path="",
                        offset=base + j,
                    )
                raise AssertionError(f"unknown scanner mode {mode}")  # pragma: no cover
        finally:
            self._depth = depth
        self._mode = mode
        if mode in (_VALUE, _STRING):
            if mode == _VALUE and depth > bdepth and not careful:
                self._numlen = n - len(text.rstrip(_NUMCH))
            if self._in_item:
                isize = self._isize + _nbytes(text, istart, n, asc)
                if isize > self.max_item_bytes:
                    self._fail_item(text, fs, istart, out)
                self._isize = isize
            if fs < n:
                self._send(_encode(text, fs, n, base), out)

    # --- failures: feed what came before the offending text, then raise -------------------

    def _feed_then_raise(
        self, text: str, fs: int, stop: int, out: list[Any], exc: JsonAssemblyError
    ) -> None:
        if self._mode in (_VALUE, _STRING) and stop > fs and self._dead is None:
            self._send(_encode(text, fs, stop, self._consumed - len(text)), out)
        self._mode = _FAILED
        raise exc

    def _fail_depth(self, text: str, fs: int, at: int, out: list[Any]) -> None:
        self._feed_then_raise(
            text,
            fs,
            at,
            out,
            DepthExceeded(
                f"JSON nested deeper than {self.max_depth} levels",
                path=_join(self._path),
                offset=self._consumed - len(text) + at,
            ),
        )

    def _fail_string(self, text: str, fs: int, at: int, out: list[Any]) -> None:
        offset = self._consumed - len(text) + at + max(0, self.max_string_length - self._strlen)
        self._feed_then_raise(
            text,
            fs,
            at,
            out,
            StringTooLong(
                f"a JSON string is longer than {self.max_string_length} characters",
                path=_join(self._path),
                offset=offset,
            ),
        )

    def _fail_number(self, text: str, fs: int, at: int, out: list[Any]) -> None:
        offset = self._consumed - len(text) + at + max(0, self.max_number_length - self._numlen)
        self._feed_then_raise(
            text,
            fs,
            at,
            out,
            NumberTooLong(
                f"a JSON number literal is longer than {self.max_number_length} characters",
                path=_join(self._path),
                offset=offset,
            ),
        )

    def _fail_item(self, text: str, fs: int, at: int, out: list[Any]) -> None:
        self._feed_then_raise(
            text,
            fs,
            at,
            out,
            ItemTooLarge(
                f"a JSON value at {self.prefix!r} is larger than {self.max_item_bytes} bytes",
                path=self.prefix,
                offset=self._consumed - len(text) + at,
            ),
        )

    # --- parser --------------------------------------------------------------------------

    def _start_document(self) -> None:
        sink = self._sink
        if self._partial:
            self._coro = _BACKEND.parse_coro(sink, use_float=True)
        else:
            self._coro = _BACKEND.items_coro(sink, self.prefix, use_float=True)
        self._coro_send = self._coro.send
        self._dead = None
        self._after_value = False
        self._key_next = False
        self._in_item = False
        self._numlen = 0

    def _end_document(self, out: list[Any], seen: bool) -> None:
        """The document closed; ``seen`` tells whether ijson was already given its end."""
        coro = self._coro
        self._coro = None
        dead = self._dead
        if dead is not None:
            self._dead = None
            if not (seen and "trailing garbage" in str(dead)):
                raise self._invalid(dead)
            # ijson was fed past the end (batch path) and refused what follows: that is the
            # scanner's business (prose, or the next document), not an error.
        else:
            try:
                coro.close()
            except ijson.JSONError as exc:
                raise self._invalid(exc) from None
            finally:
                self._drain(out)
        self.documents += 1

    def _send(self, data: bytes, out: list[Any]) -> None:
        if self._dead is not None:
            return
        try:
            self._coro_send(data)
        except ijson.JSONError as exc:
            self._drain(out)
            raise self._invalid(exc) from None
        if self._sink.items:
            self._drain(out)

    def _invalid(self, exc: Exception) -> InvalidJson:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InvalidJson(
            f"the model's JSON is malformed near {self.path!r}: {detail}",
            path=_join(self._path),
            offset=self._consumed,
        )

    def _drain(self, out: list[Any]) -> None:
        items = self._sink.items
        if not items:
            return
        if self._partial:
            self._build(items, out)
        else:
            self.count += len(items)
            out.extend(items)
        items.clear()

    def _build(self, events: list[Any], out: list[Any]) -> None:
        """Apply ijson parse events to the item under construction."""
        stack = self._builder_stack
        keys = self._builder_keys
        prefix = self.prefix
        self._events += len(events)
        for pfx, ev, val in events:
            if ev in _COMPLETING_EVENTS:
                self._last_event_path = pfx
            if stack:
                top = stack[-1]
                if ev == "map_key":
                    keys[-1] = val
                    continue
                if ev == "start_map" or ev == "start_array":
                    new: Any = {} if ev == "start_map" else []
                    if top.__class__ is dict:
                        top[keys[-1]] = new
                    else:
                        top.append(new)
                    stack.append(new)
                    keys.append(None)
                    continue
                if ev == "end_map" or ev == "end_array":
                    done = stack.pop()
                    keys.pop()
                    if not stack:
                        self.count += 1
                        out.append(done)
                        continue
                else:  # a scalar
                    if top.__class__ is dict:
                        top[keys[-1]] = val
                    else:
                        top.append(val)
                if len(stack) == 1:
                    root = stack[0]
                    out.append(
                        PartialItem(
                            self.count,
                            root,
                            keys[0] if root.__class__ is dict else len(root) - 1,
                        )
                    )
            elif pfx == prefix:
                if ev == "start_map" or ev == "start_array":
                    root = {} if ev == "start_map" else []
                    stack.append(root)
                    keys.append(None)
                    out.append(PartialItem(self.count, root, None))
                elif ev in _SCALAR_EVENTS:
                    self.count += 1
                    out.append(val)


@functools.lru_cache(maxsize=16)
def _long_number(limit: int) -> re.Pattern[str]:
    return re.compile("[0-9+\\-.eE]{" + str(limit + 1) + "}")


@functools.lru_cache(maxsize=16)
def _long_string(limit: int) -> re.Pattern[str]:
    return re.compile(r'"(?:[^"\\]|\\.){' + str(limit) + "}")


def _no_send(data: bytes) -> None:  # pragma: no cover - never called: _room is 0 then
    raise AssertionError("no JSON document is open")


def _join(path: list[str | None]) -> str:
    return ".".join([p for p in path if p is not None])


def _decode_key(raw: str) -> str:
    import orjson

    try:
        key = orjson.loads('"' + raw + '"')
    except orjson.JSONDecodeError:
        return raw  # ijson reports the bad escape
    return key if isinstance(key, str) else raw


def _nbytes(text: str, start: int, stop: int, asc: bool) -> int:
    if asc:
        return stop - start
    return len(text[start:stop].encode("utf-8", "surrogatepass"))


def _encode(text: str, start: int, stop: int, base: int) -> bytes:
    piece = text[start:stop] if start or stop != len(text) else text
    try:
        return piece.encode()
    except UnicodeEncodeError as exc:
        raise InvalidJson(
            "the text holds a lone surrogate that is not valid UTF-8",
            offset=base + start + exc.start,
        ) from None

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

Pieces are small (a model streams a few characters at a time), so both stages run per
batch, not per piece (``feed``):

* A piece that cannot complete a value is only kept: inside an item nothing completes
  before a ``}`` or ``]``, inside a string nothing before a ``"``. The piece that can is
  scanned with the batch and parsed at once, so a value still comes out with the piece
  that holds its last character. Each kept piece is checked against every bound
  conservatively (its length, its brackets, its number-character runs: ``_widen``), so
  a bomb is noticed at the piece that carries it. Scanned text that completes nothing
  either is held back from ijson until the next call that may (``_deep_scan``).
* A long piece (or any, with ``partial=True``) goes to ijson at once, checked the same
  conservative way, and is scanned later with others. When such a piece completes an
  item whose closing bracket is the only one of its kind in the piece, the state right
  after that bracket is known, and the text before it needs no scan at all
  (``_resync``).
* The scan itself jumps from bracket to bracket inside items and skips whole runs of
  complete items in one ``re`` match; ``push_handler`` gives push sources (an Rx
  ``on_next``) the batching of a piece in a single call.

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
# what the parser raises on bad input: yajl2_c lets a UnicodeDecodeError out for a string
# holding a lone surrogate escape ("\\ud800"), which is malformed JSON like any other
_PARSE_ERRORS: Final = (ijson.JSONError, UnicodeDecodeError)

_STRUCT = re.compile(r'["{}\[\],:]')
_NUMCH: Final = "0123456789+-.eE"
_MAX_BATCH: Final = 65536  # characters batched ahead of the scanner at most
_AHEAD_AT: Final = 32  # a piece this long goes to ijson at once, scanned later (feed)
_SKIP_LEVELS: Final = 8  # nesting up to which _scan skips a whole container in one match
_SKIP_AT: Final = 256  # text left from which _deep_scan tries that too
# inside an item: skip everything up to the next bracket or unterminated string, in C
_DEEP_WALK = re.compile(r'[^"{}\[\]]*+(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"[^"{}\[\]]*+)*+', re.DOTALL)
# the rest of a string's body: stops at its closing quote, or at a backslash that ends the text
_STR_BODY = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
# between two elements of an array: blanks, a comma, blanks (JSON's four blanks only)
_GAP = re.compile(r"[ \t\n\r]*+(,[ \t\n\r]*+)?")
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

# what wakes a batch of small pieces up (feed): until then nothing can complete
_WAKE_CLOSE: Final = 0  # inside a container below the prefix's depth: "}" or "]" (0: feed)
_WAKE_QUOTE: Final = 1  # inside a string: '"'
_WAKE_ANY: Final = 2  # at or above the prefix's depth: "}", "]", '"' or ","
_WAKE_AHEAD: Final = 3  # ijson is ahead of the scanner (partial=True, or a long piece)

_Matcher = Callable[[str, int], "re.Match[str] | None"]  # a compiled pattern's match

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
        "_held",
        "_in_item",
        "_is_key",
        "_isize",
        "_item_levels",
        "_items",
        "_key_next",
        "_keybuf",
        "_last_event_path",
        "_lazy",
        "_mode",
        "_nrun",
        "_numlen",
        "_odd",
        "_partial",
        "_parts",
        "_path",
        "_pcap",
        "_pchars",
        "_pending",
        "_room",
        "_room0",
        "_sink",
        "_skip",
        "_skip_run",
        "_stack",
        "_strict",
        "_strlen",
        "_tent",
        "_unfed",
        "_wake",
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
        self._parts: list[str | None] = list(prefix.split(".")) if prefix else []
        # ijson joins an empty key as nothing ({"": [1]} has 1 at "item") and a key may
        # hold a dot: then values at other depths than the prefix's may be items
        self._odd = "" in self._parts
        # levels where the prefix says "item": an array's elements, or a key "item"
        self._item_levels = [i for i, part in enumerate(self._parts) if part == "item"]
        levels = max_depth - self._base_depth  # nesting a container at the prefix may hold
        self._skip: _Matcher | None = None
        self._skip_run: _Matcher | None = None
        if levels > 0 and prefix:
            self._skip = _container(min(levels, _SKIP_LEVELS)).match
            self._skip_run = _elements(min(levels, _SKIP_LEVELS)).match
        self._mode = _PROSE
        self._consumed = 0
        self._tent = ""
        self._pending: list[str] = []  # text given to ijson but not scanned yet (see _room)
        self._unfed: list[str] = []  # text batched, neither scanned nor given to ijson yet
        self._held: list[bytes] = []  # text scanned, given to ijson with what follows
        self._wake = _WAKE_ANY  # which characters end the batch (see feed)
        self._room = -1  # characters that may be batched with no further test (see _widen)
        self._room0 = -1
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
        return self._consumed + sum(map(len, self._pending)) + sum(map(len, self._unfed))

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
        # The hot path. Inside a document and far from every bound (_room, _widen), a
        # piece that cannot complete anything (no character of the wake set, _set_room)
        # is only kept: neither scanned nor parsed. The piece that can is scanned with
        # the batch, then parsed, so a value still comes out with the piece that
        # completes it, and every bound holds before ijson sees the bytes. A long piece
        # (or any, with partial=True) goes to ijson at once and is scanned later, in a
        # long batch. (_room is -1 and _lazy False outside a document and after an error.)
        n = len(text)
        if n >= _AHEAD_AT and self._wake == _WAKE_AHEAD:
            # a long piece while the batch is ahead of the scanner (_wake is never
            # _WAKE_AHEAD outside a document or after an error): _widen's tests, inlined
            # for the usual case (anything else takes the general way below), then ijson
            used = self._room0 - self._room
            pchars = self._pchars + used + n
            dbound = self._dbound
            if "{" in text:
                dbound += text.count("{")
            if "[" in text:
                dbound += text.count("[")
            nrun = self._nrun + used
            maxnum = self.max_number_length
            rest = text.rstrip(_NUMCH)
            if (
                rest
                and n <= maxnum
                and pchars <= self._pcap
                and dbound < self.max_depth
                and (nrun + n <= maxnum or nrun + n - len(text.lstrip(_NUMCH)) <= maxnum)
            ):
                self._pchars = pchars
                self._dbound = dbound
                self._nrun = n - len(rest)
                self._room = self._room0 = 0  # (a short piece next: _widen decides)
                try:
                    data = text.encode()
                except UnicodeEncodeError:
                    return self._feed_slow(text, out)  # InvalidJson at the lone surrogate
                if self._held:
                    data = self._unhold(data)
                self._pending.append(text)
                try:
                    self._coro_send(data)
                except _PARSE_ERRORS as exc:
                    self._dead = exc
                    self._drain(out)
                    return self._feed_slow("", out)
                items = self._items
                if items:
                    if self._partial:
                        self._drain(out)
                        return out
                    self.count += len(items)  # (_drain inlined)
                    out.extend(items)
                    last = items[-1] if len(items) == 1 else None
                    items.clear()
                    if not self._odd:
                        if last is not None and self._resync(text, last):
                            return out
                        if dbound > self._base_depth + 16:
                            # an item completed in this piece, where the nesting was at
                            # most the prefix's depth: a tighter bound (no scan forced
                            # by the batch's brackets, in strings too, for a while)
                            dbound = self._base_depth + text.count("{") + text.count("[")
                            if dbound < self._dbound:
                                self._dbound = dbound
                return out
        if n <= self._room:
            if "{" in text or "[" in text:
                if self._wake == _WAKE_QUOTE and '"' not in text:
                    # still inside a string: its brackets are text, they nest nothing
                    self._room -= n
                    self._unfed.append(text)
                    return out
                # the room covers numbers and sizes (see _widen); count the brackets
                dbound = self._dbound + text.count("{") + text.count("[")
                if dbound >= self.max_depth:
                    return self._feed_slow(text, out)
                self._dbound = dbound
            self._room -= n
        elif not (self._lazy and self._widen(text, n)):
            return self._feed_slow(text, out)
        wake = self._wake
        if not wake:  # _WAKE_CLOSE
            if "}" not in text and "]" not in text:
                self._unfed.append(text)
                return out
        elif wake == _WAKE_QUOTE:
            if (
                '"' not in text
                or (
                    n < _AHEAD_AT
                    # a quote can be escaped only after a backslash, in this piece or at
                    # the batch's end (else the first quote ends the string: no call)
                    and (
                        "\\" in text
                        or (
                            text[0] == '"'
                            and (self._unfed[-1][-1:] == "\\" if self._unfed else self._esc)
                        )
                    )
                    and self._string_goes_on(text)
                )
            ):
                self._unfed.append(text)
                return out
            if (
                self._depth > self._base_depth
                and not self._odd
                and "}" not in text
                and "]" not in text
            ):
                # the string may have ended, yet nothing in the item completes before a
                # bracket does: wait for one (the scan resumes inside the string)
                self._wake = _WAKE_CLOSE
                self._unfed.append(text)
                return out
        elif wake == _WAKE_AHEAD:
            if n >= _AHEAD_AT or self._partial:
                # (_feed_ahead inlined; the batch is empty in this state)
                if not n:
                    return out  # an empty send would tell ijson the input ended
                try:
                    data = text.encode()
                except UnicodeEncodeError:
                    return self._feed_slow(text, out)  # InvalidJson at the lone surrogate
                if self._held:
                    data = self._unhold(data)
                self._pending.append(text)
                try:
                    self._coro_send(data)
                except _PARSE_ERRORS as exc:
                    self._dead = exc
                    self._drain(out)
                    return self._feed_slow("", out)
                if self._items:
                    self._drain(out)
                    if not self._partial and not self._odd:
                        # an item completed in this piece, where the nesting was at
                        # most the prefix's depth: a tighter bound, and no scan forced
                        # by the batch's brackets (in strings, too) for a while
                        dbound = self._base_depth + text.count("{") + text.count("[")
                        if dbound < self._dbound:
                            self._dbound = dbound
                return out
        elif "}" not in text and "]" not in text:
            if '"' not in text and "," not in text:
                self._unfed.append(text)
                return out
            if (
                self._dbound > self._depth == self._base_depth
                and not self._odd
                and "{" not in text
                and "[" not in text
            ):
                # a container opened (in an earlier piece) at the prefix's depth: what
                # follows is inside it, and only a bracket closes it
                self._wake = _WAKE_CLOSE
                self._unfed.append(text)
                return out
        try:
            if n >= _AHEAD_AT:
                self._wake = _WAKE_AHEAD  # until the next scan
                return self._feed_ahead(text, out)
            if not wake or (wake == _WAKE_QUOTE and self._depth > self._base_depth):
                # (_deep() holds: see _set_room and the switches above)
                unfed = self._unfed
                if unfed:
                    unfed.append(text)
                    text = "".join(unfed)
                    unfed.clear()
                self._deep_scan(text, out, 0)
                self._set_room()
            else:
                self._catch_up(text, out, checked=True)
        except JsonAssemblyError as exc:
            self._failed(exc)
            raise
        return out

    def push_handler(
        self,
        out: list[Any],
        on_values: Callable[[], None],
        on_error: Callable[[JsonAssemblyError], None],
        text_of: type | None = None,
    ) -> Callable[[Any], None]:
        """A one-argument callback that feeds this stream, for push sources (an Rx
        ``on_next``): one call per piece instead of two.

        It takes a ``str`` piece, or an instance of exactly ``text_of`` whose ``text`` it
        takes; anything else is ignored. Like ``feed(piece, out)``, then: when ``out``
        holds values, ``on_values()`` (which should empty it); on a
        ``JsonAssemblyError``, ``on_values()`` for the values completed before it, if
        any, then ``on_error(error)`` (again for each later piece: the error is sticky).
        """
        feed = self.feed
        unfed = self._unfed
        max_depth = self.max_depth
        stream = self

        def push(value: Any) -> None:
            cls = value.__class__
            if cls is str:
                text = value
            elif cls is text_of:
                text = value.text
            else:
                return
            # feed's two commonest cases, inlined (keep in step with feed): a piece that
            # cannot complete anything, inside an item or inside a string, is batched
            room = stream._room - len(text)  # (negative outside a document)
            if room >= 0:
                wake = stream._wake
                if not wake:  # _WAKE_CLOSE
                    if "}" not in text and "]" not in text:
                        if "{" not in text and "[" not in text:
                            stream._room = room
                            unfed.append(text)
                            return
                        dbound = stream._dbound + text.count("{") + text.count("[")
                        if dbound < max_depth:  # (else feed raises DepthExceeded below)
                            stream._dbound = dbound
                            stream._room = room
                            unfed.append(text)
                            return
                elif wake == _WAKE_QUOTE and '"' not in text:  # (its brackets are text)
                    stream._room = room
                    unfed.append(text)
                    return
            try:
                feed(text, out)
            except JsonAssemblyError as exc:
                if out:
                    on_values()
                on_error(exc)
                return
            if out:
                on_values()

        return push

    def _resync(self, text: str, item: Any) -> bool:
        """After ``text``, fed ahead, completed exactly one ``item``: if the piece holds
        a single bracket that can close it, that is where the item ends, so the state
        there is known without scanning: drop what came before it.

        The state after an item at the prefix's depth: a value just ended, nothing open
        below, the path is the prefix (ordinary keys: not ``_odd``). The containers above
        are the ones the scanner saw last; where the prefix says ``item`` (an array, or
        an object's key "item": JSON cannot tell them apart from the path) this is done
        only if the scanner saw an array there, so that a change of container in between
        (duplicate keys) can only make the scanner check more values as items, not fewer.
        """
        if not self._base_depth:
            return False  # the item is the document: _scan ends it
        cls = item.__class__
        if cls is dict:
            closer = "}"
        elif cls is list:
            closer = "]"
        else:
            return False
        if text.count(closer) != 1 or self._path != self._parts:
            return False
        stack = self._stack
        for level in self._item_levels:
            if stack[level] != "[":
                return False
        k = text.index(closer) + 1
        pending = self._pending
        rest = text[k:]
        self._consumed += sum(map(len, pending)) - len(rest)
        pending.clear()
        if rest:
            pending.append(rest)
        self._mode = _VALUE
        self._depth = self._base_depth
        self._after_value = True
        self._key_next = False
        self._in_item = False
        self._isize = 0
        self._numlen = 0
        self._esc = False
        self._is_key = False
        self._keybuf.clear()
        # the budgets, for the rest of the piece only (see _set_room and _widen)
        pcap = self.max_item_bytes >> 2
        if pcap > _MAX_BATCH:
            pcap = _MAX_BATCH
        if self.max_string_length < pcap:
            pcap = self.max_string_length
        self._pcap = pcap
        self._pchars = len(rest)
        self._dbound = self._base_depth + rest.count("{") + rest.count("[")
        self._nrun = len(rest) - len(rest.rstrip(_NUMCH))
        self._room = self._room0 = 0
        return True

    def _string_goes_on(self, text: str) -> bool:
        """Inside a string: tell whether every quote in ``text`` is escaped (``\\"``), so
        the string does not end in it."""
        # does the batch end with an unpaired backslash? (its pieces hold no quote that
        # ends the string, so only the run of backslashes at its end matters)
        run = 0
        for last in reversed(self._unfed):
            rest = last.rstrip("\\")
            run += len(last) - len(rest)
            if rest:
                break
        else:
            run += self._esc  # the scanned text's own unpaired backslash
        j = _STR_BODY.match(text, run & 1).end()  # type: ignore[union-attr]
        return j >= len(text) or text[j] != '"'

    def _feed_slow(self, text: str, out: list[Any]) -> list[Any]:
        """Scan the batch, then ``text``, now, checking every bound of ``text``."""
        if self._error is not None:
            raise self._error
        if text or self._dead is not None:  # (an empty send would tell ijson the input ended)
            try:
                if self._unfed or self._pending:
                    # the batch first (admitted by _widen: the cheaper scan), then ``text``
                    # anew, against bounds that are now exact
                    self._catch_up("", out, checked=True)
                    if text:
                        return self.feed(text, out)
                self._catch_up(text, out)
            except JsonAssemblyError as exc:
                self._failed(exc)
                raise
        return out

    def _feed_ahead(self, text: str, out: list[Any]) -> list[Any]:
        """Give the batch and ``text`` to ijson now and scan them later with others: with
        ``partial=True``, so that progress (``PartialItem``) is reported at the very event
        that makes it; otherwise for a long piece, which would wake a batch anyway."""
        unfed = self._unfed
        if unfed:
            unfed.append(text)
            text = "".join(unfed)
            unfed.clear()
        if not text:
            return out
        try:
            data = text.encode()
        except UnicodeEncodeError:
            return self._feed_slow(text, out)  # raises InvalidJson at the lone surrogate
        if self._held:
            data = self._unhold(data)
        self._pending.append(text)
        try:
            self._coro_send(data)
        except _PARSE_ERRORS as exc:
            self._dead = exc
            self._drain(out)
            return self._feed_slow("", out)
        if self._items:
            self._drain(out)
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
            self._catch_up("", out, checked=True)
            if self._held:  # ijson judges every character before the end is
                self._send(b"", out)
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
        self._unfed.clear()
        self._held.clear()
        self._room = self._room0 = -1
        self._lazy = False
        self._wake = _WAKE_ANY

    def incomplete(self, error: IncompleteJson) -> IncompleteItem:
        """Describe the open item after ``finish`` raised ``error`` (``partial=True``)."""
        return IncompleteItem(self.count, self.current, error)

    # --- scanner -------------------------------------------------------------------------

    def _catch_up(self, text: str, out: list[Any], *, checked: bool = False) -> None:
        """Scan the pending text (already given to ijson), the batch (not yet), then
        ``text`` (not yet). ``checked``: ``_widen`` admitted all of it (see ``_deep_scan``).
        """
        unfed = self._unfed
        if unfed:
            unfed.append(text)
            text = "".join(unfed)
            unfed.clear()
        pending = self._pending
        fed = 0
        if pending:
            head = "".join(pending)
            pending.clear()
            fed = len(head)
            text = head + text
        if text:
            if checked and self._deep():
                self._deep_scan(text, out, fed)
            else:
                self._scan(text, out, fed, checked=checked)
        if self._dead is not None:  # ijson failed on text the scanner still sees as JSON
            exc = self._dead
            self._dead = None
            raise self._invalid(exc)
        self._set_room()

    def _deep(self) -> bool:
        """Tell whether ``_deep_scan`` may scan from the current state (see there)."""
        depth = self._depth
        bdepth = self._base_depth
        mode = self._mode
        if depth > bdepth:
            return mode in (_VALUE, _STRING)
        return depth == bdepth > 0 and mode == _VALUE

    def _set_room(self) -> None:
        """After a scan: how much text may be batched before the next one (see ``_widen``),
        and which characters end the batch (``feed``)."""
        mode = self._mode
        depth = self._depth
        if mode == _VALUE:
            self._wake = (
                _WAKE_AHEAD
                if self._partial
                # inside a container item only a bracket closes it; at or above the
                # prefix's depth scalar items complete at "," "]" "}" or their quote
                else _WAKE_CLOSE
                if depth > self._base_depth and not self._odd
                else _WAKE_ANY
            )
            nrun = self._numlen
            cap = self.max_string_length
        elif mode == _STRING:
            # nothing completes before the string does
            self._wake = _WAKE_AHEAD if self._partial else _WAKE_QUOTE
            nrun = 0
            cap = self.max_string_length - self._strlen
        else:
            self._lazy = False
            self._wake = _WAKE_ANY
            self._room = self._room0 = -1
            return
        self._lazy = True
        self._dbound = depth
        self._nrun = nrun
        self._pchars = 0
        # (comparisons, not min(): this runs for every batch)
        pcap = (self.max_item_bytes - (self._isize if self._in_item else 0)) >> 2
        if pcap > _MAX_BATCH:
            pcap = _MAX_BATCH
        if cap < pcap:
            pcap = cap
        self._pcap = pcap
        # the cheap test admits no bracket, so only numbers and sizes limit it
        room = self.max_number_length - nrun
        if pcap < room:
            room = pcap
        self._room = self._room0 = room - 1 if room > 1 else 0

    def _widen(self, text: str, n: int) -> bool:
        """Tell whether ``text`` may join the batch, counting what it can do to each bound.

        The batch is scanned later, so this must be conservative: every ``{``/``[`` (even
        one inside a string) may deepen the nesting, every run of number characters may be
        a number literal, every character may belong to a string or to the open item. The
        cheaper test in ``feed`` (``_room``) admits only text without brackets and counts
        each of its characters as part of a number.
        """
        used = self._room0 - self._room  # characters batched by the cheap test (no brackets)
        pchars = self._pchars + used + n
        pcap = self._pcap
        if pchars > pcap:
            return False
        dbound = self._dbound + text.count("{") + text.count("[")
        if dbound >= self.max_depth:
            return False
        maxnum = self.max_number_length
        tail = n - len(text.rstrip(_NUMCH))
        nrun = self._nrun + used
        if tail == n:
            nrun += n
            if nrun > maxnum:
                return False
        else:
            if nrun + n > maxnum and (
                nrun + n - len(text.lstrip(_NUMCH)) > maxnum
                or (n > maxnum and _has_long_run(text, maxnum))
            ):
                return False
            nrun = tail
        self._dbound = dbound
        self._nrun = nrun
        self._pchars = pchars
        room = maxnum - nrun
        if pcap - pchars < room:
            room = pcap - pchars
        self._room = self._room0 = room - 1 if room > 1 else 0
        return True

    def _scan(
        self,
        text: str,
        out: list[Any],
        fed: int = 0,
        *,
        checked: bool = False,
        start: int = 0,
        istart: int = 0,
    ) -> None:
        """Walk ``text`` once, enforcing every bound; give ijson what it has not seen.

        ``text[:fed]`` was given to ijson already (by ``feed``'s batch path); ``checked``:
        ``_widen`` admitted the whole text, so no number literal in it can be too long;
        ``start``: ``_deep_scan`` walked ``text[:start]`` already (the state is after it;
        the open item, if any, starts at ``istart``).
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
        i = start
        fs = fed  # where the bytes not yet given to the current ijson coroutine start
        stack = self._stack
        path = self._path
        done = self._done
        depth = self._depth
        bdepth = self._base_depth
        maxnum = self.max_number_length
        maxstr = self.max_string_length
        deep_match = _DEEP_WALK.match
        struct_search = _STRUCT.search
        skip = self._skip
        skip_run = self._skip_run
        parts = self._parts
        maxitem = self.max_item_bytes
        # numbers: the deep walk skips them, so check the longest digit run up front
        careful = not checked and (
            self._numlen + n - len(text.lstrip(_NUMCH)) > maxnum
            or (n > maxnum and _has_long_run(text, maxnum))
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
                        elif depth == bdepth:
                            item = not self._in_item and (
                                path == parts or _join(path) == self.prefix
                            )
                            if skip is not None and skip_run is not None and not careful:
                                # a whole container in this text, bounds checked on its span
                                m = skip(text, j)
                                if m is not None:
                                    e = m.end()
                                    if e - j <= maxstr and (
                                        not item
                                        or 4 * (e - j) <= maxitem
                                        or _nbytes(text, j, e, asc) <= maxitem
                                    ):
                                        i = e
                                        self._after_value = True
                                        if stack and stack[-1] == "[":
                                            # and the complete elements after it, at once
                                            # (their total span is within every bound)
                                            e = skip_run(text, i).end()  # type: ignore[union-attr] # matches ""
                                            if e > i and (
                                                e - j <= maxstr
                                                and (
                                                    4 * (e - j) <= maxitem
                                                    or _nbytes(text, j, e, asc) <= maxitem
                                                )
                                            ):
                                                i = e
                                                done[-1] = "item"
                                        continue
                            if item:
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
                        key = _decode_key(raw) if "\\" in raw else raw
                        path[-1] = key
                        if not key or "." in key:
                            self._odd = True  # see _set_room
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
                run = n - len(text.rstrip(_NUMCH))
                self._numlen = run if run < n else self._numlen + n
            if self._in_item:
                isize = self._isize + _nbytes(text, istart, n, asc)
                if isize > self.max_item_bytes:
                    self._fail_item(text, fs, istart, out)
                self._isize = isize
            if fs < n:
                self._send(_encode(text, fs, n, base), out)

    def _deep_scan(self, text: str, out: list[Any], fed: int) -> None:
        """``_scan`` for a batch that ``_widen`` admitted, starting inside a container
        below the prefix's depth (in the middle of an item, typically), or between two
        elements of an array at the prefix's depth.

        No bound can break in such a batch, so only the state is followed: a C walk per
        bracket (strings skipped whole), none of the per-token work; between elements,
        one match for the comma and blanks. Anything else at the prefix's depth (the
        array's end, a scalar element, a key) hands the rest over to ``_scan``.
        """
        n = len(text)
        depth = self._depth
        bdepth = self._base_depth
        in_item = self._in_item
        istart = 0  # where the open item's bytes start in this text
        i = 0
        mode = self._mode
        # nothing can complete in text that stays below the prefix's depth: ijson may
        # get it later, with what follows (fewer calls); not when it reports progress
        hold = depth > bdepth and not self._partial and not self._odd
        if mode == _STRING:
            if self._esc:  # the previous piece ended with a backslash: skip what it escapes
                self._esc = False
                i = 1
            j = _STR_BODY.match(text, i).end()  # type: ignore[union-attr] # matches ""
            if j >= n or text[j] != '"':  # the string goes on (j < n: a final backslash)
                self._esc = j < n
                self._strlen += n
            else:
                mode = _VALUE
                i = j + 1
        if mode == _VALUE:
            walk = _DEEP_WALK.match
            while True:
                if depth == bdepth:
                    # between two elements of the array at the prefix's depth
                    hold = False
                    stack = self._stack
                    if stack[-1] != "[":
                        break  # an object's keys: _scan
                    m = _GAP.match(text, i)
                    k = m.end()  # type: ignore[union-attr] # matches ""
                    if m.start(1) >= 0:  # type: ignore[union-attr]
                        if not self._after_value:
                            break  # "[," or ",,": let the parser say so
                        self._done[-1] = "item"
                        self._after_value = False
                    i = k
                    if k >= n:
                        self._numlen = 0
                        break
                    c = text[k]
                    if (c != "{" and c != "[") or self._after_value:
                        break  # the array's end, a scalar element, bad JSON: _scan
                    skip = self._skip
                    skip_run = self._skip_run
                    if n - k >= _SKIP_AT and skip is not None and skip_run is not None:
                        # whole elements at once (_widen admitted them: no bound to check)
                        m = skip(text, k)
                        if m is not None:
                            i = m.end()
                            e = skip_run(text, i).end()  # type: ignore[union-attr] # matches ""
                            if e > i:
                                self._done[-1] = "item"
                                i = e
                            self._after_value = True
                            continue
                    if self._path == self._parts or _join(self._path) == self.prefix:
                        in_item = True
                        self._isize = 0
                        istart = k
                    depth += 1
                    i = k + 1
                    continue
                j = walk(text, i).end()  # type: ignore[union-attr] # matches ""
                if j >= n:
                    run = n - len(text.rstrip(_NUMCH))
                    self._numlen = run if run < n else self._numlen + n
                    i = n
                    break
                c = text[j]
                if c == '"':  # a string the text ends inside
                    mode = _STRING
                    k = _STR_BODY.match(text, j + 1).end()  # type: ignore[union-attr]
                    self._esc = k < n
                    self._strlen = n - j - 1
                    self._is_key = False
                    self._numlen = 0
                    i = n
                    break
                if c == "{" or c == "[":
                    depth += 1
                elif depth > bdepth + 1:
                    depth -= 1
                elif bdepth:  # an element closed (within every bound: _widen)
                    hold = False
                    depth = bdepth
                    self._key_next = False
                    self._after_value = True
                    in_item = False
                else:  # the document ends: _scan
                    i = j
                    break
                i = j + 1
            if i < n:  # stopped at the prefix's depth on something else: _scan goes on
                self._depth = depth
                self._mode = _VALUE
                self._in_item = in_item
                if i:  # (text[i - 1] is a blank, a comma, a bracket or a quote)
                    self._numlen = 0
                self._scan(text, out, fed, checked=True, start=i, istart=istart)
                return
        base = self._consumed
        self._consumed = base + n
        self._depth = depth
        self._mode = mode
        self._in_item = in_item
        if fed:
            if in_item:
                self._isize += _nbytes(text, istart, n, text.isascii())
            if fed < n:
                self._send(_encode(text, fed, n, base), out)
            return
        # (_encode and _send inlined: this runs for most batches)
        try:
            data = text.encode()
        except UnicodeEncodeError:
            data = _encode(text, 0, n, base)  # raises InvalidJson at the lone surrogate
        if in_item:
            self._isize += len(data) if not istart else _nbytes(text, istart, n, text.isascii())
        if hold:
            self._held.append(data)
            return
        if self._held:
            data = self._unhold(data)
        try:
            self._coro_send(data)
        except _PARSE_ERRORS as exc:
            self._drain(out)
            raise self._invalid(exc) from None
        if self._items:
            self._drain(out)

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
                if self._held:
                    coro.send(self._unhold(b""))
                coro.close()
            except _PARSE_ERRORS as exc:
                # the same, noticed only now: a number after the end is refused when the
                # input ends, for only then is the number complete
                if not (seen and "trailing garbage" in str(exc)):
                    raise self._invalid(exc) from None
            finally:
                self._drain(out)
        self.documents += 1

    def _send(self, data: bytes, out: list[Any]) -> None:
        if self._dead is not None:
            return
        if self._held:
            data = self._unhold(data)
        try:
            self._coro_send(data)
        except _PARSE_ERRORS as exc:
            self._drain(out)
            raise self._invalid(exc) from None
        if self._sink.items:
            self._drain(out)

    def _unhold(self, data: bytes) -> bytes:
        """``data`` after the text held back from ijson (see ``_deep_scan``)."""
        held = self._held
        held.append(data)
        data = b"".join(held)
        held.clear()
        return data

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
def _container(levels: int) -> re.Pattern[str]:
    """A complete ``{...}`` or ``[...]`` nesting at most ``levels`` containers (itself
    included), strings skipped whole. A ``}`` may close a ``[``: ijson judges the grammar.
    (Unrolled: one loop turn per string or inner container, not per token.)"""
    string = r'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
    plain = r'[^"{}\[\]]*+'
    body = plain + "(?:" + string + plain + ")*+"
    for _ in range(levels - 1):
        body = plain + "(?:(?:" + string + r"|[{\[]" + body + r"[}\]])" + plain + ")*+"
    return re.compile(r"[{\[]" + body + r"[}\]]", re.DOTALL)


@functools.lru_cache(maxsize=16)
def _elements(levels: int) -> re.Pattern[str]:
    """Complete array elements that are containers (see ``_container``), each after a
    comma: matches the empty string when there is none."""
    return re.compile(r"(?:\s*+,\s*+" + _container(levels).pattern + r")*+", re.DOTALL)


_NUMBYTES: Final = bytes(1 if chr(b) in _NUMCH else 0 for b in range(256))


def _has_long_run(text: str, limit: int) -> bool:
    """Tell whether ``text`` holds more than ``limit`` number characters in a row (in C:
    no regex attempt per position)."""
    return b"\x01" * (limit + 1) in text.encode("utf-8", "surrogatepass").translate(_NUMBYTES)


@functools.lru_cache(maxsize=16)
def _long_string(limit: int) -> re.Pattern[str]:
    # a string whose JSON text is longer than limit characters, counting an escape as one
    # unit (a unit is at most two characters): every such string matches, a few shorter
    # ones too (the exact walk then decides)
    return re.compile(r'"(?:[^"\\]|\\.){' + str(limit // 2 + 1) + "}")


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

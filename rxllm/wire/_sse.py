"""Server-Sent Events: a sans-IO decoder and a safe encoder.

The decoder follows the WHATWG "Server-sent events" parsing rules (HTML Living Standard,
section 9.2.6 "Interpreting an event stream"); the step each branch implements is cited in
its comment. It works on bytes and decodes UTF-8 per complete line: a line end (CR or LF) is
ASCII and never occurs inside a multi-byte sequence, so decoding whole lines with
replacement is exactly the stream's incremental UTF-8 decode, and a character split across
reads is never corrupted.
"""

from __future__ import annotations

from typing import NamedTuple, cast

from rxllm.errors import FrameTooLarge

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "Decoder", "SSEEvent", "encode"]

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
"""Default bound on one line and on one event's data, in bytes (1 MiB)."""

_BOM = b"\xef\xbb\xbf"


class SSEEvent(NamedTuple):
    """One dispatched event.

    ``id`` is the decoder's last event ID at dispatch time ("" if none was ever set): it
    persists across events until an ``id`` field changes it.
    """

    event: str
    data: str
    id: str


class Decoder:
    """Incremental SSE decoder: ``feed(bytes)`` returns the events completed so far.

    Args:
        max_event_bytes: bound on one line and on one event's accumulated data. A longer
            line or event raises ``FrameTooLarge`` as soon as it is seen, with memory held to
            about this bound plus one read. The error's ``events`` holds the events the same
            read completed before it, so nothing good is lost.

    Attributes:
        last_event_id: the last event ID string (``id:`` fields that contained no NUL).
        retry: the reconnection time in milliseconds from the last valid ``retry:`` field,
            or ``None``.
    """

    __slots__ = (
        "_data",
        "_data_size",
        "_event",
        "_failed",
        "_head",
        "_id",
        "_pieces",
        "_special",
        "_started",
        "last_event_id",
        "max_event_bytes",
        "retry",
    )

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes <= 0:
            raise ValueError("max_event_bytes must be positive")
        self.max_event_bytes = max_event_bytes
        self.last_event_id = ""
        self.retry: int | None = None
        self._pieces: list[bytes] = []  # the unterminated tail: never contains CR or LF
        self._head = b""  # bytes held while deciding whether the stream starts with a BOM
        self._started = False
        # True while the next read needs the slow prologue: before the BOM is decided, after
        # a read that ended with CR (a leading LF completes the CRLF), or after a failure.
        self._special = True
        # The data buffer: the data lines' values, uncopied. Past 64 lines all but the last
        # are folded into a bytearray at index 0, so memory follows the data's size, not its
        # line count. A single item is therefore always bytes; b"\n".join takes the bytearray.
        self._data: list[bytes] = []
        self._data_size = 0
        self._event = b""
        self._id = ""  # the last-event-ID buffer
        self._failed = False

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (they are dropped at EOF)."""
        return bool(self._pieces or self._data or self._event or self._head)

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Decode one read of the stream; return the events it completed, in order."""
        return self.feed_raw(data, False)  # type: ignore[return-value]

    def feed_raw(self, data: bytes, raw: bool = True) -> list[bytes | SSEEvent]:
        """Like ``feed``, but an event of the default type ("message") comes as its data,
        undecoded: the UTF-8 bytes that ``feed`` would decode with replacement.

        This is the dialects' fast path: ``orjson.loads`` validates UTF-8 itself, so
        decoding first would be wasted work. Events with an ``event:`` type still come as
        ``SSEEvent``. ``last_event_id`` is updated exactly as by ``feed``.
        """
        if self._special:
            data = self._prologue(data)
        if not data:
            return []
        if b"\r" in data:
            # "Lines must be separated by either a CRLF pair, a single LF, or a single CR."
            if data[-1] == 13:  # its LF may start the next read
                self._special = True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        pieces = self._pieces  # mutated in place, never replaced
        limit = self.max_event_bytes
        if b"\n" not in data:
            # No line end: keep the piece, and join the pieces once a line end arrives, so a
            # long line costs linear time however finely it is split.
            pieces.append(data)
            if sum(map(len, pieces)) > limit:
                self._fail()
                raise FrameTooLarge(f"an SSE line is longer than {limit} bytes", limit=limit)
            return []
        if pieces:
            pieces.append(data)
            data = b"".join(pieces)
            pieces.clear()
        if data[:6] != b"data: " or self._data or self._event:
            return self._lines(data, [], raw)
        # Fast path (OpenAI, Gemini, any data-only stream): split on the separator
        # "\n\ndata: " in C. If no piece before the last one holds a LF (one memchr over
        # their join), every such piece is one whole event of the default type whose data is
        # the piece. The last piece, with "data: " restored, takes the line rules, unless the
        # read ends exactly at an event's end (over a socket, the usual case).
        whole = data[-2:] == b"\n\n"
        parts = (data[:-2] if whole else data).split(b"\n\ndata: ")
        last = b"" if whole else parts.pop()
        if not parts or b"\n" in b"".join(parts):
            return self._lines(data, [], raw)
        if len(data) > limit and max(map(len, parts)) > limit - 6:
            return self._lines(data, [], raw)  # every line, "data: " included, in bounds
        parts[0] = parts[0][6:]
        self.last_event_id = last_id = self._id
        out: list[bytes | SSEEvent]
        if raw:
            out = parts  # type: ignore[assignment]
        else:
            out = [SSEEvent("message", p.decode("utf-8", "replace"), last_id) for p in parts]
        if whole:
            return out
        if b"\n" in last:
            # The read ended inside the blank line or the next "data: " prefix: when the
            # event itself is complete (one line, then a blank line), emit it and keep the
            # cut prefix as the tail; otherwise the line rules decide.
            event, blank, rest = last.partition(b"\n\n")
            if not blank or b"\n" in event or b"\n" in rest or len(event) > limit - 6:
                return self._lines(b"data: " + last, out, raw)
            out.append(
                event if raw else SSEEvent("message", event.decode("utf-8", "replace"), last_id)
            )
            if rest:
                pieces.append(rest)
            return out
        # The usual read end: the next event's line, unterminated. Keep it as pieces.
        if len(last) > limit - 6:
            return self._lines(b"data: " + last, out, raw)  # raises FrameTooLarge
        pieces.append(b"data: ")
        pieces.append(last)
        return out

    def _lines(self, data: bytes, out: list[bytes | SSEEvent], raw: bool) -> list[bytes | SSEEvent]:
        """The line-by-line rules for ``data``; its unterminated tail is kept for later."""
        if b"\n" in data:
            lines = data.split(b"\n")
            tail = lines.pop()
            try:
                if len(data) <= self.max_event_bytes:
                    for line in lines:
                        self._line(line, out, raw)
                else:  # a whole line in this read may be over the bound, like a long tail
                    for line in lines:
                        if len(line) > self.max_event_bytes:
                            self._fail()
                            raise FrameTooLarge(
                                f"an SSE line is longer than {self.max_event_bytes} bytes",
                                limit=self.max_event_bytes,
                            )
                        self._line(line, out, raw)
            except FrameTooLarge as exc:
                exc.events = out
                raise
        else:
            tail = data
        if tail:
            self._pieces.append(tail)
            if len(tail) > self.max_event_bytes:
                self._fail()
                raise FrameTooLarge(
                    f"an SSE line is longer than {self.max_event_bytes} bytes",
                    limit=self.max_event_bytes,
                    events=out,
                )
        return out

    def _prologue(self, data: bytes) -> bytes:
        if self._failed:
            raise FrameTooLarge(
                "the decoder already failed on an oversized frame", limit=self.max_event_bytes
            )
        if not data:
            return data
        if not self._started:
            # "The UTF-8 decode algorithm strips one leading BOM" - wait until three bytes
            # (or a mismatch) decide whether the stream starts with one.
            head = self._head + data
            if len(head) < 3 and _BOM.startswith(head):
                self._head = head
                return b""
            self._started = True
            self._special = False
            self._head = b""
            return head[3:] if head.startswith(_BOM) else head
        # The previous read ended with CR: a leading LF is the same CRLF line end.
        self._special = False
        return data[1:] if data[0] == 10 else data

    def _line(self, line: bytes, out: list[bytes | SSEEvent], raw: bool) -> None:
        if not line:
            # "If the line is empty (a blank line): dispatch the event."
            if self._data:
                out.append(self._dispatch(raw))
            else:
                # Dispatch step 1 copies the ID buffer even when nothing fires; step 2
                # then resets the data and event-type buffers.
                self.last_event_id = self._id
                self._event = b""
        elif line[0] == 58:
            # "If the line starts with a U+003A COLON character: ignore the line."
            return
        else:
            self._field(line)

    def _too_large(self) -> None:
        self._fail()
        raise FrameTooLarge(
            f"an SSE event's data is larger than {self.max_event_bytes} bytes",
            limit=self.max_event_bytes,
        )

    def finish(self) -> list[SSEEvent]:
        """End of stream: "any pending data must be discarded" (an unterminated event never
        fires). Returns no events; the decoder is reset for a new stream."""
        self._pieces.clear()
        self._head = b""
        self._data = []
        self._data_size = 0
        self._event = b""
        self._started = False
        self._special = True
        self._failed = False
        return []

    def _field(self, line: bytes) -> None:
        # "If the line contains a U+003A COLON character: collect the characters before it
        # as the field name and after it as the value; if the value starts with a U+0020
        # SPACE, remove it." Otherwise the whole line is the name and the value is "".
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name = line[:colon]
            value = line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        # Field names are compared literally; a name with invalid UTF-8 or a second BOM
        # matches none of them, exactly as the decoded string would not.
        if name == b"data":
            # "Append the field value to the data buffer, then append a single U+000A LF."
            self._data_size += len(value) + 1
            if self._data_size > self.max_event_bytes:
                self._too_large()
            data = self._data
            data.append(value)
            if len(data) > 64:
                # Fold all but the last line into a bytearray; two items stay, so that
                # _dispatch always joins (and returns bytes) once a fold has happened.
                first = data[0]
                head = bytearray(first) if first.__class__ is bytes else cast(bytearray, first)
                head += b"\n"  # in place
                head += b"\n".join(data[1:-1])
                self._data = [cast(bytes, head), value]
        elif name == b"event":
            self._event = value
        elif name == b"id":
            # WHATWG: "If the field value does not contain U+0000 NULL, set the last event
            # ID buffer to the field value. Otherwise, ignore the field."
            if b"\x00" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            # "If the field value consists of only ASCII digits, set the reconnection time
            # to that integer." bytes.isdigit() is ASCII-only.
            self.retry = int(value)
        # "Otherwise: the field is ignored."

    def _dispatch(self, raw: bool) -> bytes | SSEEvent:
        # 1. Set the last event ID string to the ID buffer. 3. Remove one trailing LF (the
        # join adds none). 4. Type defaults to "message". 6. Clear data and type buffers.
        self.last_event_id = self._id
        data = b"\n".join(self._data) if len(self._data) != 1 else self._data[0]
        event: bytes | SSEEvent
        if raw and not self._event:
            event = data
        else:
            event = SSEEvent(
                self._event.decode("utf-8", "replace") if self._event else "message",
                data.decode("utf-8", "replace"),
                self._id,
            )
        self._data = []
        self._data_size = 0
        self._event = b""
        return event

    def _fail(self) -> None:
        self._failed = True
        self._special = True
        self._pieces.clear()
        self._data = []
        self._data_size = 0


def encode(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """Encode one event so that any text, model output included, round-trips exactly.

    Every line of ``data`` (split on CRLF, CR and LF) becomes its own ``data:`` line, so a
    payload can never end the event early or forge an ``id:``/``event:`` field. SSE cannot
    carry a CR, so a decoder receives each CRLF or CR line break as LF. ``event`` and
    ``id`` must not contain line breaks (and ``id`` no NUL); ``ValueError`` otherwise.
    """
    parts: list[str] = []
    if event is not None:
        if _has_break(event):
            raise ValueError("an SSE event type cannot contain CR or LF")
        parts.append(f"event: {event}\n")
    if id is not None:
        if _has_break(id) or "\x00" in id:
            raise ValueError("an SSE id cannot contain CR, LF or NUL")
        parts.append(f"id: {id}\n")
    if retry is not None:
        if retry < 0:
            raise ValueError("retry must be non-negative")
        parts.append(f"retry: {int(retry)}\n")
    if "\r" in data:
        data = data.replace("\r\n", "\n").replace("\r", "\n")
    # "data: " with the space: a value that itself starts with a space keeps it.
    parts.extend(f"data: {line}\n" for line in data.split("\n"))
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def _has_break(value: str) -> bool:
    return "\n" in value or "\r" in value

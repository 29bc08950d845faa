"""A deliberately naive SSE decoder written straight from the WHATWG text.

It decodes the whole stream at once, character by character, and serves as the oracle
the real decoder is compared against.
"""

from __future__ import annotations


def reference_decode(stream: bytes) -> tuple[list[tuple[str, str, str]], str, int | None]:
    """Decode a complete stream: (events as (type, data, id), last event id, retry)."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: list[str] = []
    current: list[str] = []
    i = 0
    terminated = False
    while i < len(text):
        c = text[i]
        if c == "\r":
            lines.append("".join(current))
            current = []
            if i + 1 < len(text) and text[i + 1] == "\n":
                i += 1
            terminated = True
        elif c == "\n":
            lines.append("".join(current))
            current = []
            terminated = True
        else:
            current.append(c)
            terminated = False
        i += 1
    del terminated  # an unterminated last line is never processed
    events: list[tuple[str, str, str]] = []
    data: list[str] = []
    has_data = False
    etype = ""
    id_buffer = ""
    last_id = ""
    retry: int | None = None
    for line in lines:
        if line == "":
            last_id = id_buffer
            if not has_data:
                etype = ""
                continue
            events.append((etype or "message", "\n".join(data), last_id))
            data, has_data, etype = [], False, ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "data":
            data.append(value)
            has_data = True
        elif name == "event":
            etype = value
        elif name == "id":
            if "\x00" not in value:
                id_buffer = value
        elif name == "retry" and value and all(ch in "0123456789" for ch in value):
            retry = int(value)
    return events, last_id, retry

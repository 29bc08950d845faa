"""Wire codecs: bytes to frames and back. Sans-IO: no sockets, no asyncio.

- ``Decoder`` / ``SSEEvent`` / ``encode``: Server-Sent Events (WHATWG rules).
- ``NDJSONDecoder``: newline-delimited JSON (Ollama's native API).
- ``JSONArrayDecoder``: one JSON array streamed element by element (Gemini without SSE).
- ``JsonStream``: bounded incremental JSON assembly from model text (structured output).
"""

from ._jsonarray import JSONArrayDecoder
from ._jsonstream import IncompleteItem, JsonStream, PartialItem
from ._ndjson import NDJSONDecoder
from ._sse import DEFAULT_MAX_EVENT_BYTES, Decoder, SSEEvent, encode

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "Decoder",
    "IncompleteItem",
    "JSONArrayDecoder",
    "JsonStream",
    "NDJSONDecoder",
    "PartialItem",
    "SSEEvent",
    "encode",
]

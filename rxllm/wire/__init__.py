"""Wire codecs: bytes to frames and back. Sans-IO: no sockets, no asyncio.

- ``Decoder`` / ``SSEEvent`` / ``encode``: Server-Sent Events (WHATWG rules).
- ``NDJSONDecoder``: newline-delimited JSON (Ollama's native API).
- ``JSONArrayDecoder``: one JSON array streamed element by element (Gemini without SSE).
"""

from ._jsonarray import JSONArrayDecoder
from ._ndjson import NDJSONDecoder
from ._sse import DEFAULT_MAX_EVENT_BYTES, Decoder, SSEEvent, encode

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "Decoder",
    "JSONArrayDecoder",
    "NDJSONDecoder",
    "SSEEvent",
    "encode",
]

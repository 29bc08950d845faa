"""rxllm: reactive stream processing for LLM provider streams.

A provider's streaming response is an ``Observable`` of normalized events; operators in
``rxllm.operators`` add fallback, retries, structured-output assembly and flow control.
"""

from __future__ import annotations

from ._replay import replay
from .aio import collect
from .errors import RxllmError, StreamInterrupted
from .events import (
    Event,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .request import Message, Request, Tool
from .response import Response

__version__ = "0.1.0"

__all__ = [
    "Event",
    "Finished",
    "Message",
    "ReasoningDelta",
    "Request",
    "Response",
    "RxllmError",
    "Started",
    "StreamInterrupted",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "__version__",
    "collect",
    "replay",
]

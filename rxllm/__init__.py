"""rxllm: reactive stream processing for LLM provider streams.

A provider's streaming response is a cold ``Observable`` of normalized events
(``rxllm.events``); operators in ``rxllm.operators`` add fallback, retries, structured-output
assembly and flow control::

    import rxllm
    from rxllm import operators as ops

    gpt = rxllm.provider("openai/gpt-4o-mini")
    async for event in rxllm.to_aiter(gpt.stream(rxllm.Request.of("Hello"))):
        ...
"""

from __future__ import annotations

from ._replay import replay
from .aio import collect, from_aiter, to_aiter
from .chain import BreakerPolicy, Chain, CircuitBreaker, Hooks, RetryPolicy
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
from .roundtable import Panelist, roundtable
from .transport import Provider, Timeouts, aclose, provider, session

__version__ = "0.1.0"

__all__ = [
    "BreakerPolicy",
    "Chain",
    "CircuitBreaker",
    "Event",
    "Finished",
    "Hooks",
    "Message",
    "Panelist",
    "Provider",
    "ReasoningDelta",
    "Request",
    "Response",
    "RetryPolicy",
    "RxllmError",
    "Started",
    "StreamInterrupted",
    "TextDelta",
    "Timeouts",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "__version__",
    "aclose",
    "collect",
    "from_aiter",
    "provider",
    "replay",
    "roundtable",
    "session",
    "to_aiter",
]

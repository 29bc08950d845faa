"""OpenAI Chat Completions streaming (wire-formats.md section 2.1).

``data: {chat.completion.chunk}`` events: a role chunk, reasoning as
``delta.reasoning_content``, text deltas, tool-call deltas (the first of a call carries
``index``, ``id``, ``type``, ``function.name`` and ``arguments: ""``; later ones only ``index``
and an ``arguments`` fragment), a finish chunk with ``delta: {}``, an empty-choices usage chunk
when ``stream_options.include_usage`` is set, then ``data: [DONE]``. Each chunk is a
precomputed prefix, the delta and a precomputed suffix, so a token costs one ``dumps``.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._render import EPOCH, Ctx, Ev, Renderer, dumps, override, pretty, usage_numbers
from ._scenario import Scenario

__all__ = ["OpenAIRenderer", "openai_error"]

_FINISH = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
}

# status -> (type, code, message)
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: ("invalid_request_error", None, "You are not allowed to access this resource."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    408: ("timeout", None, "Request timed out."),
    409: ("conflict", None, "The request conflicts with another request."),
    413: ("invalid_request_error", None, "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} on requests per min (RPM): Limit 500, Used 500, "
        "Requested 1. Please try again shortly.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}
_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
# codes whose ``type`` is the code itself
_TYPED_CODES = frozenset({"insufficient_quota", "server_error", "invalid_request_error"})


def openai_error(status: int, scenario: Scenario, model: str) -> dict[str, object]:
    """The ``error`` object of an OpenAI error for ``status``, with the scenario's
    overrides (an ``error_code`` of ``insufficient_quota`` gets the quota message)."""
    default = _ERRORS.get(status) or (
        ("server_error", None, "The server had an error while processing your request.")
        if status >= 500
        else ("invalid_request_error", None, f"HTTP {status}.")
    )
    etype, code, message = default
    if scenario.error_code == "insufficient_quota":
        message = _QUOTA_MESSAGE
    code, message = override(scenario, code, message.replace("{model}", model))
    if code in _TYPED_CODES:
        etype = code
    return {"message": message, "type": etype, "param": None, "code": code}


class OpenAIRenderer(Renderer):
    """``POST /v1/chat/completions``."""

    dialect = "openai"
    retry_after_ms = True

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.chunk_id = "chatcmpl-" + ctx.uid
        head = (
            b'{"id":'
            + dumps(self.chunk_id)
            + b',"object":"chat.completion.chunk","created":'
            + str(EPOCH).encode()
            + b',"model":'
            + dumps(ctx.model)
            + b',"system_fingerprint":"fp_rxllm_sim"'
        )
        self._head = head
        self._pre = head + b',"choices":[{"index":0,"delta":'
        self._post = b',"logprobs":null,"finish_reason":null}]}'

    def _chunk(self, delta: bytes) -> bytes:
        return self._pre + delta + self._post

    def preamble(self) -> Iterator[Ev]:
        """The role chunk."""
        yield Ev(self._chunk(b'{"role":"assistant","content":""}'))

    def body(self) -> Iterator[Ev]:
        """Reasoning, text and tool-call deltas."""
        plan, feed = self.plan, self.feed
        if plan.reasoning is not None:
            pre = self._pre + b'{"reasoning_content":'
            post = b"}" + self._post
            while True:
                text, n = feed.take(plan.reasoning)
                if not n:
                    break
                self.reasoning_tokens += n
                yield Ev(pre + dumps(text) + post, n)
        if plan.text is not None:
            pre = self._pre + b'{"content":'
            post = b"}" + self._post
            while True:
                text, n = feed.take(plan.text)
                if not n:
                    break
                self.text_tokens += n
                yield Ev(pre + dumps(text) + post, n)
        for call in plan.tool_calls:
            index = str(call.index).encode()
            first = {
                "index": call.index,
                "id": call.id or "call_" + call.hex,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            yield Ev(self._chunk(b'{"tool_calls":[' + dumps(first) + b"]}"))
            pre = self._pre + b'{"tool_calls":[{"index":' + index + b',"function":{"arguments":'
            post = b"}}]}" + self._post
            tokens = iter(call.tokens)
            while True:
                text, n = feed.take(tokens)
                if not n:
                    break
                self.tool_tokens += n
                yield Ev(pre + dumps(text) + post, n)

    def closing(self) -> Iterator[Ev]:
        """The finish chunk, the usage chunk (if asked for) and ``[DONE]``."""
        finish = _FINISH[self.plan.finish]
        yield Ev(
            self._pre + b'{},"logprobs":null,"finish_reason":' + dumps(finish) + b"}]}",
        )
        if self.ctx.prompt.include_usage:
            u = usage_numbers(self)
            usage = {
                "prompt_tokens": u["prompt"],
                "completion_tokens": u["completion"],
                "total_tokens": u["total"],
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": self.reasoning_tokens,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            }
            yield Ev(self._head + b',"choices":[],"usage":' + dumps(usage) + b"}")
        yield Ev(b"[DONE]")

    def inband_error(self) -> Iterator[Ev]:
        """``data: {"error": {...}}`` (a ``server_error``) then ``data: [DONE]``."""
        yield Ev(dumps({"error": openai_error(500, self.ctx.scenario, self.ctx.model)}))
        yield Ev(b"[DONE]")

    @classmethod
    def error_response(
        cls, status: int, scenario: Scenario, *, model: str, request_id: str, array: bool = False
    ) -> tuple[bytes, str, dict[str, str]]:
        """``{"error": {"message", "type", "param", "code"}}``, pretty-printed as the API
        prints it."""
        body = pretty({"error": openai_error(status, scenario, model)}) + b"\n"
        return body, "application/json; charset=utf-8", {}

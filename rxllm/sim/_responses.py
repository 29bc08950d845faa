"""OpenAI Responses API streaming (wire-formats.md section 2.2).

Named events whose ``event:`` line equals ``data.type``, every payload with a
``sequence_number``: ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added`` ... ``response.output_item.done`` (a reasoning item with
summary text deltas, a message with ``response.output_text.delta`` events, function calls
with ``response.function_call_arguments.delta`` / ``.done``), then ``response.completed``
(or ``response.incomplete``) with the usage. An in-band error is ``event: error``
(``{"type":"error","sequence_number":n,"error":{...}}``, as recorded traffic shows) followed
by ``response.failed``.

The ``.done`` events and ``response.completed`` repeat the whole text, as the API does, so
this endpoint holds the answer in memory: stream huge answers from another endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._openai import openai_error
from ._render import EPOCH, Ctx, Ev, Renderer, dumps, pretty, usage_numbers
from ._scenario import Scenario

__all__ = ["ResponsesRenderer"]

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


class ResponsesRenderer(Renderer):
    """``POST /v1/responses``."""

    dialect = "openai-responses"
    retry_after_ms = True

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.response_id = "resp_" + ctx.uid
        self.seq = 0
        self.items: list[dict[str, Any]] = []
        self._open: tuple[str, str, dict[str, Any]] | None = None
        self._acc: list[str] = []  # the open item's text

    def _ev(self, kind: str, fields: dict[str, Any]) -> Ev:
        payload = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return Ev(dumps(payload), 0, kind)

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        response: dict[str, Any] = {
            "id": self.response_id,
            "object": "response",
            "created_at": EPOCH,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "max_output_tokens": None,
            "model": self.ctx.model,
            "output": [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": False,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": None,
            "user": None,
            "metadata": {},
        }
        response.update(extra)
        return response

    def preamble(self) -> Iterator[Ev]:
        """``response.created`` and ``response.in_progress``."""
        yield self._ev("response.created", {"response": self._response("in_progress")})
        yield self._ev("response.in_progress", {"response": self._response("in_progress")})

    def _deltas(
        self, kind: str, fields: bytes, tokens: Iterator[str], acc: list[str]
    ) -> Iterator[Ev]:
        """Per-token delta events: a precomputed template around the sequence number."""
        head = b'{"type":"' + kind.encode() + b'","sequence_number":'
        feed = self.feed
        while True:
            text, n = feed.take(tokens)
            if not n:
                return
            acc.append(text)
            payload = head + str(self.seq).encode() + fields + dumps(text)
            if kind == "response.output_text.delta":
                payload += b',"logprobs":[]}'
                self.text_tokens += n
            else:
                payload += b"}"
                if kind == "response.function_call_arguments.delta":
                    self.tool_tokens += n
                else:
                    self.reasoning_tokens += n
            self.seq += 1
            yield Ev(payload, n, kind)

    def _add(self, kind: str, item: dict[str, Any]) -> Iterator[Ev]:
        yield from self._close()
        index = len(self.items)
        self._acc = []
        self._open = (kind, item["id"], item)
        yield self._ev("response.output_item.added", {"output_index": index, "item": item})

    def body(self) -> Iterator[Ev]:
        """A reasoning item, a message item, then one function-call item per call."""
        plan, uid = self.plan, self.ctx.uid
        if plan.reasoning is not None:
            item_id = "rs_" + uid
            yield from self._add("reasoning", {"id": item_id, "type": "reasoning", "summary": []})
            index = len(self.items)
            summary = {"type": "summary_text", "text": ""}
            yield self._ev(
                "response.reasoning_summary_part.added",
                {"item_id": item_id, "output_index": index, "summary_index": 0, "part": summary},
            )
            fields = b',"item_id":"%s","output_index":%d,"summary_index":0,"delta":' % (
                item_id.encode(),
                index,
            )
            yield from self._deltas(
                "response.reasoning_summary_text.delta", fields, plan.reasoning, self._acc
            )
        if plan.text is not None:
            item_id = "msg_" + uid
            item = {
                "id": item_id,
                "type": "message",
                "status": "in_progress",
                "content": [],
                "role": "assistant",
            }
            yield from self._add("message", item)
            index = len(self.items)
            part: dict[str, Any] = {
                "type": "output_text",
                "annotations": [],
                "logprobs": [],
                "text": "",
            }
            yield self._ev(
                "response.content_part.added",
                {"item_id": item_id, "output_index": index, "content_index": 0, "part": part},
            )
            fields = b',"item_id":"%s","output_index":%d,"content_index":0,"delta":' % (
                item_id.encode(),
                index,
            )
            yield from self._deltas("response.output_text.delta", fields, plan.text, self._acc)
        for call in plan.tool_calls:
            item_id = "fc_" + call.hex
            item = {
                "id": item_id,
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": call.id or "call_" + call.hex,
                "name": call.name,
            }
            yield from self._add("function_call", item)
            index = len(self.items)
            fields = b',"item_id":"%s","output_index":%d,"delta":' % (item_id.encode(), index)
            yield from self._deltas(
                "response.function_call_arguments.delta", fields, iter(call.tokens), self._acc
            )

    def _close(self) -> Iterator[Ev]:
        """The ``.done`` events of the open item."""
        if self._open is None:
            return
        kind, item_id, item = self._open
        self._open = None
        index = len(self.items)
        text = "".join(self._acc)
        self._acc = []
        part: dict[str, Any]
        base: dict[str, Any]
        if kind == "reasoning":
            part = {"type": "summary_text", "text": text}
            base = {"item_id": item_id, "output_index": index, "summary_index": 0}
            yield self._ev("response.reasoning_summary_text.done", {**base, "text": text})
            yield self._ev("response.reasoning_summary_part.done", {**base, "part": part})
            done = {**item, "summary": [part]}
        elif kind == "message":
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            base = {"item_id": item_id, "output_index": index, "content_index": 0}
            yield self._ev("response.output_text.done", {**base, "text": text, "logprobs": []})
            yield self._ev("response.content_part.done", {**base, "part": part})
            done = {**item, "status": "completed", "content": [part]}
        else:
            yield self._ev(
                "response.function_call_arguments.done",
                {"item_id": item_id, "output_index": index, "arguments": text},
            )
            done = {**item, "status": "completed", "arguments": text}
        yield self._ev("response.output_item.done", {"output_index": index, "item": done})
        self.items.append(done)

    def closing(self) -> Iterator[Ev]:
        """The open item's ``.done`` events, then ``response.completed`` (or
        ``response.incomplete`` for a length or content-filter finish)."""
        yield from self._close()
        u = usage_numbers(self)
        usage = {
            "input_tokens": u["prompt"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": u["completion"],
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": u["total"],
        }
        reason = _INCOMPLETE.get(self.plan.finish)
        if reason is None:
            response = self._response("completed", output=self.items, usage=usage)
            yield self._ev("response.completed", {"response": response})
        else:
            response = self._response(
                "incomplete",
                output=self.items,
                usage=usage,
                incomplete_details={"reason": reason},
            )
            yield self._ev("response.incomplete", {"response": response})

    def inband_error(self) -> Iterator[Ev]:
        """``error`` then ``response.failed``."""
        error = openai_error(500, self.ctx.scenario, self.ctx.model)
        detail = {
            "type": error["type"],
            "code": error["code"] or "server_error",
            "message": error["message"],
            "param": None,
        }
        yield self._ev("error", {"error": detail})
        failed = self._response(
            "failed", error={"code": detail["code"], "message": detail["message"]}
        )
        yield self._ev("response.failed", {"response": failed})

    @classmethod
    def error_response(
        cls, status: int, scenario: Scenario, *, model: str, request_id: str, array: bool = False
    ) -> tuple[bytes, str, dict[str, str]]:
        """OpenAI's ``{"error": {...}}`` body."""
        body = pretty({"error": openai_error(status, scenario, model)}) + b"\n"
        return body, "application/json; charset=utf-8", {}

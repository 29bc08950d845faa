"""Schema-driven JSON answers: valid items, and exactly the predicted invalid ones."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

from rxllm.sim import Simulator, invalid_items, json_document

from ._wire import ENDPOINTS, call, streamed_text

PEOPLE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "people": {"type": "array", "items": {"$ref": "#/$defs/person"}},
    },
    "required": ["people"],
    "$defs": {
        "person": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 2},
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
                "email": {"type": "string", "format": "email"},
                "born": {"type": "string", "format": "date"},
                "role": {"enum": ["dev", "ops", "pm"]},
                "active": {"type": "boolean", "default": True},
            },
            "required": ["name", "age", "role"],
            "additionalProperties": False,
        }
    },
}


def schema_fields(endpoint: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Where each provider's request carries a response schema."""
    if endpoint == "openai":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "people", "schema": schema},
            }
        }
    if endpoint == "openai-responses":
        return {"text": {"format": {"type": "json_schema", "name": "people", "schema": schema}}}
    if endpoint == "anthropic":
        return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}
    if endpoint.startswith("gemini"):
        return {"generationConfig": {"responseJsonSchema": schema}}
    return {"format": schema}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_items_follow_the_request_schema(
    rxllm_sim: Simulator, http: aiohttp.ClientSession, endpoint: str
) -> None:
    """json_items=N streams a document whose array holds N items from the request's own
    schema field, invalid exactly at invalid_items(N, share, seed)."""
    scenario = {"json_items": 20, "invalid_share": 0.25, "seed": 7, "chunk_tokens": 3}
    _, _, data = await call(http, rxllm_sim, endpoint, scenario, **schema_fields(endpoint, PEOPLE))
    document = orjson.loads(streamed_text(endpoint, data))
    assert len(document["people"]) == 20
    item_validator = Draft202012Validator(
        {**PEOPLE["$defs"]["person"], "$defs": PEOPLE["$defs"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    bad = [i for i, item in enumerate(document["people"]) if not item_validator.is_valid(item)]
    assert bad == invalid_items(20, share=0.25, seed=7)
    assert len(bad) == 5


async def test_valid_document_and_determinism(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """With no invalid share the whole document validates, and it equals json_document."""
    _, _, data = await call(
        http, rxllm_sim, "openai", {"json_items": 6}, **schema_fields("openai", PEOPLE)
    )
    text = streamed_text("openai", data)
    Draft202012Validator(PEOPLE, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        orjson.loads(text)
    )
    assert text == json_document(PEOPLE, 6)


async def test_anthropic_beta_output_format(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Anthropic's beta output_format.schema is read too."""
    schema = {"type": "array", "items": {"type": "integer", "minimum": 5, "maximum": 9}}
    _, _, data = await call(
        http, rxllm_sim, "anthropic", {"json_items": 4}, output_format={"schema": schema}
    )
    items = orjson.loads(streamed_text("anthropic", data))
    assert len(items) == 4
    assert all(5 <= i <= 9 for i in items)


async def test_default_and_scenario_schema(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Without a request schema the scenario's json_schema, else a built-in one, is used."""
    _, _, data = await call(http, rxllm_sim, "ollama", {"json_items": 3})
    assert len(orjson.loads(streamed_text("ollama", data))["items"]) == 3
    schema = {"type": "array", "items": {"const": "x"}}
    _, _, data = await call(http, rxllm_sim, "ollama", {"json_items": 2, "json_schema": schema})
    assert orjson.loads(streamed_text("ollama", data)) == ["x", "x"]


async def test_unusable_schema_is_a_bad_request(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A schema with no single array to fill is answered 400 in the provider's shape."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    status, _, data = await call(
        http, rxllm_sim, "openai", {"json_items": 2}, **schema_fields("openai", schema)
    )
    assert status == 400
    assert "one array" in orjson.loads(data)["error"]["message"]

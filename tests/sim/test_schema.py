"""Deterministic instances of JSON Schemas, and the invalid-item choice."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

from rxllm.errors import ConfigError
from rxllm.sim import invalid_items, is_invalid_item, json_document, make_instance

SCHEMAS: list[dict[str, Any]] = [
    {"type": "string", "minLength": 30, "maxLength": 40},
    {"type": "string", "format": "date"},
    {"type": "string", "format": "email"},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "uuid"},
    {"type": "integer", "minimum": 10, "maximum": 12},
    {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3},
    {"type": "integer", "multipleOf": 5, "minimum": 1},
    {"type": "number", "minimum": -1.5, "maximum": -1.0},
    {"type": ["null", "boolean"]},
    {"enum": ["a", "b", 3]},
    {"const": {"k": [1]}},
    {"type": "string", "default": "dflt"},
    {"anyOf": [{"type": "integer"}, {"type": "string"}]},
    {"allOf": [{"properties": {"a": {"type": "string"}}}, {"required": ["a"]}]},
    {"type": "array", "items": {"type": "boolean"}, "minItems": 3, "maxItems": 3},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
    {
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/node"}},
        "$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"}}}},
    },
    {
        "type": "object",
        "properties": {"p": {"$ref": "#/definitions/p"}},
        "definitions": {"p": {"type": "string", "format": "date"}},
        "required": ["p"],
        "additionalProperties": False,
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_instances_are_valid(schema: dict[str, Any]) -> None:
    """Instances of every supported keyword validate (formats checked), at many indices."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for index in range(12):
        validator.validate(make_instance(schema, index=index))


def test_instances_vary_by_index_and_are_deterministic() -> None:
    """The same schema and index always give the same instance; indices differ."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
    }
    assert make_instance(schema, index=3) == make_instance(schema, index=3)
    assert len({orjson.dumps(make_instance(schema, index=i)) for i in range(5)}) == 5


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 99])
def test_invalid_share_is_exact(share: float, seed: int) -> None:
    """Among any first n items, floor or ceil of n * share are invalid."""
    for n in (1, 7, 50, 200):
        count = len(invalid_items(n, share=share, seed=seed))
        assert math.floor(n * share) <= count <= math.ceil(n * share)
    assert invalid_items(20, share=share, seed=seed) == [
        i for i in range(20) if is_invalid_item(i, share=share, seed=seed)
    ]


def test_invalid_items_fail_validation_and_others_pass() -> None:
    """Items chosen invalid break the item schema (a required property removed, or a wrong
    type); all others validate."""
    item = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "tags": {"type": "array"}},
        "required": ["id"],
    }
    schema = {"type": "array", "items": item}
    items = orjson.loads(json_document(schema, 40, seed=3, invalid_share=0.3))
    validator = Draft202012Validator(item)
    bad = [i for i, x in enumerate(items) if not validator.is_valid(x)]
    assert bad == invalid_items(40, share=0.3, seed=3)
    primitive = {"type": "array", "items": {"type": "string"}}
    values = orjson.loads(json_document(primitive, 10, invalid_share=0.5))
    assert [i for i, v in enumerate(values) if not isinstance(v, str)] == invalid_items(
        10, share=0.5
    )


def test_document_keeps_other_root_properties() -> None:
    """The root object's other properties surround the N-item array."""
    schema = {
        "type": "object",
        "properties": {
            "title": {"const": "T"},
            "rows": {"type": "array", "items": {"type": "integer"}},
            "done": {"type": "boolean"},
        },
    }
    doc = orjson.loads(json_document(schema, 5))
    assert doc["title"] == "T"
    assert doc["done"] is True
    assert len(doc["rows"]) == 5
    assert list(doc) == ["title", "rows", "done"]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "array"}, "b": {"type": "array"}}},
        {"type": "string"},
        {"type": "array", "items": {"$ref": "https://example.com/item.json"}},
        {"type": "array", "items": {"$ref": "#/$defs/missing"}},
    ],
)
def test_unusable_schemas_are_config_errors(schema: dict[str, Any]) -> None:
    """Schemas the simulator cannot fill raise ConfigError up front."""
    with pytest.raises(ConfigError):
        json_document(schema, 2)


def test_unbreakable_items_are_config_errors() -> None:
    """An invalid share needs items that can be made invalid."""
    with pytest.raises(ConfigError):
        json_document({"type": "array", "items": {}}, 2, invalid_share=0.5)

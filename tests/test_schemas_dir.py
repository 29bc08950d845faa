"""Every shipped schema is a valid Draft 2020-12 schema readable as package data."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

_FILES = sorted(p.name for p in (Path(__file__).parent.parent / "schemas").glob("*.json"))


def test_there_are_schemas() -> None:
    """The schemas directory ships at least the event schema."""
    assert "event.schema.json" in _FILES


@pytest.mark.parametrize("name", _FILES)
def test_schema_file(name: str) -> None:
    """Each schemas/*.json reads through importlib.resources and passes check_schema."""
    data = importlib.resources.files("rxllm.schemas").joinpath(name).read_bytes()
    schema = orjson.loads(data)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert isinstance(schema["$id"], str)
    Draft202012Validator.check_schema(schema)

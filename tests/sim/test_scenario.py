"""Scenario validation, merging and scenario files."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import orjson
import pytest

from rxllm.errors import ConfigError
from rxllm.sim import Scenario, load_scenarios, main


@pytest.mark.parametrize(
    "fields",
    [
        {"tokens": -1},
        {"tokens": "10"},
        {"tokens": 2.5},
        {"echo": 1},
        {"chunk_tokens": 0},
        {"invalid_share": 1.5},
        {"status": 200},
        {"finish_reason": "done"},
        {"tokens_per_second": 0},
        {"first_token_delay": float("inf")},
        {"tool_calls": [{"arguments": {}}]},
        {"tool_calls": [{"name": "f", "arguments": "[1]"}]},
        {"malformed_at": -1},
        {"unknown": True},
    ],
)
def test_bad_fields_are_config_errors(fields: dict[str, Any]) -> None:
    """Out-of-range values, wrong types and unknown names are ConfigError (a ValueError)."""
    with pytest.raises(ConfigError):
        Scenario.from_mapping(fields)


def test_merge_and_helpers() -> None:
    """merged() replaces named fields, as_dict() shows the non-defaults, without_faults()
    clears every fault."""
    base = Scenario(text="a", status=503, fail_times=2)
    merged = base.merged({"text": "b", "tool_calls": [{"name": "f", "arguments": '{"x": 1}'}]})
    assert merged.text == "b"
    assert merged.status == 503
    assert dict(merged.tool_calls[0]) == {"name": "f", "arguments": {"x": 1}}
    assert merged.as_dict() == {
        "text": "b",
        "tool_calls": [{"name": "f", "arguments": {"x": 1}}],
        "status": 503,
        "fail_times": 2,
    }
    assert base.has_faults
    assert not base.without_faults().has_faults
    assert Scenario.from_mapping(base.as_dict()) == base


def test_load_json_file(tmp_path: Path) -> None:
    """A JSON scenario file maps model names to scenarios."""
    path = tmp_path / "scenarios.json"
    path.write_bytes(orjson.dumps({"flaky": {"status": 503, "fail_times": 2}, "*": {"tokens": 4}}))
    assert load_scenarios(path) == {
        "flaky": Scenario(status=503, fail_times=2),
        "*": Scenario(tokens=4),
    }


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"m": {"nope": 1}}', b'{"m": 3}', b"[1]"],
)
def test_bad_json_files(tmp_path: Path, content: bytes) -> None:
    """Unreadable or invalid scenario files are ConfigError naming the file."""
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"bad\.json"):
        load_scenarios(path)


def test_yaml_file_uses_pyyaml_when_importable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .yaml file is read with PyYAML's safe_load (here a stand-in module)."""
    fake = types.ModuleType("yaml")
    fake.YAMLError = ValueError  # type: ignore[attr-defined]
    fake.safe_load = lambda raw: {"slow": {"tokens_per_second": 5}}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "yaml", fake)
    path = tmp_path / "s.yaml"
    path.write_text("slow:\n  tokens_per_second: 5\n")
    assert load_scenarios(path) == {"slow": Scenario(tokens_per_second=5)}


def test_yaml_without_pyyaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PyYAML a YAML file is a ConfigError that says what to install."""
    monkeypatch.setitem(sys.modules, "yaml", None)
    path = tmp_path / "s.yml"
    path.write_text("a: {}\n")
    with pytest.raises(ConfigError, match="PyYAML"):
        load_scenarios(path)


def test_main_reports_a_bad_scenario_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() returns 2 and explains when the scenario file is invalid."""
    path = tmp_path / "bad.json"
    path.write_text('{"m": {"tokens": -5}}')
    assert main(["--scenarios", str(path), "--port", "0"]) == 2
    assert "tokens" in capsys.readouterr().err

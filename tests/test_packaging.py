"""Packaging: the wheel's contents, the package list, and imports from an installed copy."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> tuple[set[str], dict[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"]), dict(config["package-dir"])


def _on_disk(package_dir: dict[str, str]) -> set[str]:
    found: set[str] = set()
    for package, folder in package_dir.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    return found


def test_package_list_matches_init_files() -> None:
    """Every folder with an __init__.py is in the setuptools package list, and vice versa."""
    declared, package_dir = _declared()
    assert declared == _on_disk(package_dir)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("rxllm-*.whl")
    return built


@pytest.mark.slow
def test_wheel_contents(wheel: Path) -> None:
    """The wheel carries rxllm.operators, the schemas and py.typed, and no tests or benchmarks."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "rxllm/__init__.py" in names
    assert "rxllm/operators/__init__.py" in names
    assert "rxllm/schemas/__init__.py" in names
    assert "rxllm/py.typed" in names
    assert any(n.startswith("rxllm/schemas/") and n.endswith(".json") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "operators/", "schemas/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_imports_outside_checkout(wheel: Path, tmp_path: Path) -> None:
    """An installed wheel imports rxllm.operators and reads a schema through importlib.resources."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    script = (
        "import importlib.resources, json, rxllm, rxllm.operators, rxllm.schemas\n"
        f"assert rxllm.__file__.startswith({str(target)!r}), rxllm.__file__\n"
        "files = [f for f in importlib.resources.files('rxllm.schemas').iterdir()"
        " if f.name.endswith('.json')]\n"
        "assert files, 'no schema files'\n"
        "json.loads(files[0].read_text())\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"

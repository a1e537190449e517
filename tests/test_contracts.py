"""Contract hygiene across the whole repository."""

from __future__ import annotations

import ast
from pathlib import Path

from arks_common import subjects

ROOT = Path(__file__).resolve().parent.parent


def _names() -> tuple[set[str], tuple[str, ...]]:
    exact = {
        value for name, value in vars(subjects).items() if name.isupper() and isinstance(value, str)
    }
    roots = tuple(
        value + "."
        for name, value in vars(subjects).items()
        if name.endswith("_ROOT") and isinstance(value, str)
    )
    return exact, roots


def _sources() -> list[Path]:
    dirs = [ROOT / "libs", ROOT / "services", ROOT / "cli", ROOT / "bench", ROOT / "examples"]
    files = []
    for base in dirs:
        for path in base.rglob("*.py"):
            relative = path.relative_to(ROOT)
            if "tests" in relative.parts or path.name == "subjects.py":
                continue
            if any(part.startswith(".") for part in relative.parts):
                continue  # virtualenvs and caches (bench/.litellm-venv)
            files.append(path)
    return files


def test_no_nats_name_is_spelled_outside_subjects() -> None:
    exact, roots = _names()
    offenders = []
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if value in exact or value.startswith(roots):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {value!r}")
    assert not offenders, "use arks_common.subjects instead of:\n" + "\n".join(offenders)

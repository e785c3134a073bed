"""The import rules docs/architecture.md states: stages talk through `formats/`, not each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "avatar_platform"

# (importer, what it must not import)
RULES = [
    ("pipelines/training", "avatar_platform.pipelines.inference"),
    ("pipelines/inference", "avatar_platform.pipelines.training"),
    ("pipelines/training", "avatar_platform.pipelines.datagen"),
    ("formats", "avatar_platform.pipelines.training"),
    ("formats", "avatar_platform.pipelines.inference"),
    ("formats", "avatar_platform.pipelines.datagen"),
    ("models", "avatar_platform.pipelines"),
    ("models", "ray"),
    ("core", "avatar_platform.pipelines"),
]


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("folder", "forbidden"), RULES)
def test_a_layer_does_not_import_what_it_must_not(folder, forbidden):
    files = sorted((PACKAGE / folder).rglob("*.py"))
    assert files, folder
    broken = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in files
        for name in sorted(imports(path))
        if name == forbidden or name.startswith(forbidden + ".")
    ]
    assert not broken, broken

"""The package direction holds: db imports neither api nor engine; api and engine are apart;
what every process shares at run time (`runtime`) stands below them all; the tools that set up
a machine (`tooling`) are imported by neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "db": {"api", "engine", "tooling"},
    "runtime": {"api", "engine", "tooling"},
    "api": {"engine", "tooling"},
    "engine": {"api", "tooling"},
    "tooling": {"api", "engine"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_direction(package: str) -> None:
    modules = sorted(
        path for path in (ROOT / package).rglob("*.py") if "node_modules" not in path.parts
    )
    assert modules, f"no modules found in {package}/"
    offenders = {
        str(module.relative_to(ROOT)): imported_packages(module) & FORBIDDEN[package]
        for module in modules
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}

"""The layering of STYLE.md, checked: imports point inward and protocol code stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "keyhall"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules_under(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in modules_under(package):
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    return bad


def test_the_checker_sees_imports() -> None:
    assert "sqlalchemy" in imports_of(SRC / "storage" / "engine.py")


def test_only_storage_imports_sqlalchemy() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "storage":
            continue
        bad += [f"{rel} imports {n}" for n in imports_of(path) if n == "sqlalchemy" or n.startswith("sqlalchemy.")]
    assert bad == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("core", ("fastapi", "starlette", "httpx", "sqlalchemy", "alembic", "keyhall.api", "keyhall.storage",
                  "keyhall.idp", "keyhall.app", "keyhall.runtime")),
        ("protocols", ("fastapi", "starlette", "httpx", "sqlalchemy", "keyhall.core", "keyhall.storage",
                       "keyhall.api", "keyhall.idp")),
        ("security", ("fastapi", "starlette", "sqlalchemy", "keyhall.core", "keyhall.storage", "keyhall.api")),
        ("storage", ("fastapi", "starlette", "httpx", "keyhall.api", "keyhall.idp")),
        ("api", ("sqlalchemy", "keyhall.storage")),
    ],
)
def test_layers_import_inward(package: str, forbidden: tuple[str, ...]) -> None:
    assert offenders(package, forbidden) == []


def test_modules_stay_small() -> None:
    too_long = [
        f"{p.relative_to(SRC)}: {n}"
        for p in SRC.rglob("*.py")
        if "migrations" not in p.parts and (n := len(p.read_text().splitlines())) > 450
    ]
    assert too_long == []

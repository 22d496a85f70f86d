"""The layering of STYLE.md, checked: imports point inward and protocol code stays pure; no lower
layer (core, storage, protocols, security, idp, login, provider) imports a surface (api/, web/,
app, cli); storage imports only core, errors and security; no top-level packages import each other
in a circle, nor do the modules of storage/; and an import inside a function says why on its line
(or the line above)."""

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
        ("storage", ("fastapi", "starlette", "httpx", "keyhall.api", "keyhall.web", "keyhall.idp", "keyhall.provider",
                     "keyhall.login", "keyhall.app", "keyhall.runtime", "keyhall.cli")),
        ("api", ("sqlalchemy", "keyhall.storage", "keyhall.web")),
        ("web", ("sqlalchemy", "keyhall.storage")),
        ("login", ("fastapi", "starlette", "sqlalchemy", "keyhall.storage", "keyhall.api", "keyhall.app",
                   "keyhall.runtime")),
        ("idp", ("fastapi", "starlette", "sqlalchemy", "keyhall.storage", "keyhall.api", "keyhall.login",
                 "keyhall.provider", "keyhall.runtime", "keyhall.settings")),
        ("provider", ("fastapi", "starlette", "sqlalchemy", "keyhall.storage", "keyhall.api", "keyhall.login",
                      "keyhall.idp", "keyhall.runtime")),
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


# --- The top layer: surfaces above login/ and provider/, and no circles ----------------------------

#: The web-facing surface: nothing below it may import it.
SURFACES = ("keyhall.api", "keyhall.web", "keyhall.app", "keyhall.cli", "keyhall.__main__")
LOWER_LAYERS = ("core", "storage", "protocols", "security", "idp", "login", "provider")
#: Leaf modules any layer may import; they import no Keyhall layer above ``errors``.
LEAVES = ("errors.py", "metrics.py", "context.py")


def keyhall_imports(path: Path) -> set[str]:
    return {name for name in imports_of(path) if name == "keyhall" or name.startswith("keyhall.")}


@pytest.mark.parametrize("package", LOWER_LAYERS)
def test_no_lower_layer_imports_a_surface(package: str) -> None:
    assert offenders(package, SURFACES) == []


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_modules_import_nothing_above_errors(leaf: str) -> None:
    assert {name for name in keyhall_imports(SRC / leaf) if name != "keyhall.errors"} == set()


def _unit(name: str) -> str:
    """The top-level package (or module) of ``keyhall`` a dotted name belongs to."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "keyhall"


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        source = rel.parts[0].removesuffix(".py")
        for name in keyhall_imports(path):
            target = _unit(name)
            if target not in (source, "keyhall"):
                graph.setdefault(source, set()).add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_no_import_cycles_between_top_level_packages() -> None:
    assert find_cycle(package_graph()) is None


def test_the_web_package_and_the_json_apis_are_apart() -> None:
    """The web package may use the shared request plumbing of ``api`` (``api.deps``, ``api.http``);
    ``api`` never imports the web package."""
    assert offenders("api", ("keyhall.web",)) == []
    shared = ("keyhall.api.deps", "keyhall.api.http")
    bad = [f"{path.relative_to(SRC)} imports {name}" for path in modules_under("web")
           for name in keyhall_imports(path) if name.startswith("keyhall.api") and name not in shared]
    assert bad == []


#: What storage may import of Keyhall: the core it implements, and the leaves (a SCIM filter, a
#: pure value of ``protocols.scim``, is translated to SQL here).
STORAGE_MAY_IMPORT = ("keyhall.core", "keyhall.errors", "keyhall.security", "keyhall.protocols", "keyhall.storage")


def test_storage_imports_only_core_the_leaves_and_itself() -> None:
    bad = [f"{path.relative_to(SRC)} imports {name}" for path in modules_under("storage")
           for name in keyhall_imports(path)
           if not any(name == allowed or name.startswith(allowed + ".") for allowed in STORAGE_MAY_IMPORT)]
    assert bad == []


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def module_graph(package: str) -> dict[str, set[str]]:
    """Module-level imports between the modules of one package (a package's ``__init__`` included)."""
    modules = {_module_name(path): path for path in modules_under(package)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for target in keyhall_imports(path):
            # ``from keyhall.storage import hot_queries`` names the package; the module is what is meant
            found = target if target in modules else None
            if found and found != name:
                graph.setdefault(name, set()).add(found)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module in modules and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if sub in modules and sub != name:
                        graph.setdefault(name, set()).add(sub)
    return graph


@pytest.mark.parametrize("package", ["storage", "core", "login", "provider", "web"])
def test_no_import_cycles_between_modules(package: str) -> None:
    assert find_cycle(module_graph(package)) is None


def _has_comment(lines: list[str], lineno: int) -> bool:
    here = lines[lineno - 1]
    above = lines[lineno - 2].strip() if lineno >= 2 else ""
    return "#" in here or above.startswith("#")


def in_function_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the imports inside a function or method body (nested ones too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found.append((node.lineno, ast.unparse(node)))
    return sorted(set(found))


def test_the_checker_sees_in_function_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f() -> None:\n    import json\n\n\ndef g() -> None:\n    # why\n    import os\n")
    lines = module.read_text().splitlines()
    assert [(n, _has_comment(lines, n)) for n, _ in in_function_imports(module)] == [(2, False), (7, True)]


#: In-function imports outside the modules this rule was written with, each with its reason (or the
#: lack of one, to fix in the module's own work): "path: import".
ALLOWED_IN_FUNCTION = {
    # CLI commands import what they run only when run: ``keyhall --help`` stays fast.
    "cli.py: from keyhall.logs import configure_logging",
    "cli.py: from keyhall.serving import address_problem, public_url_for",
    "cli.py: from keyhall.serving import serve as run_server",
    "cli.py: from keyhall.api.native.schemas import key_out",
    "cli.py: from keyhall.api.native.applications import application_out",
    "cli.py: from keyhall.core.application_service import list_applications",
    "cli.py: from keyhall.core.application_service import delete_application",
    "cli.py: from keyhall.api.native.schemas import organization_out",
    "cli.py: from keyhall.core.application_service import create_application",
    "cli.py: from keyhall.jobs import check_domains",
    "cli.py: from keyhall.jobs import purge as purge_once",
    "cli.py: from keyhall.provider.signing import rotate",
    # redis is an optional dependency, imported only when KEYHALL_REDIS_URL is set.
    "runtime.py: from keyhall.security.redis_counters import RedisCounterStore",
}


def test_in_function_imports_say_why() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        lines = path.read_text().splitlines()
        rel = path.relative_to(SRC)
        bad += [f"{rel}:{n}: {text}" for n, text in in_function_imports(path)
                if not _has_comment(lines, n) and f"{rel}: {text}" not in ALLOWED_IN_FUNCTION]
    assert bad == []


#: The modules that read or write a login transaction's stored ``data`` dict: the typed records and
#: the table's repository. Everywhere else a sign-in's state is a typed record.
TRANSACTION_DATA_READERS = ("login/records.py", "storage/repos/transactions.py")


def _handles_transactions(path: Path) -> bool:
    rel = path.relative_to(SRC)
    return rel.parts[0] in ("login", "web") or bool(
        keyhall_imports(path) & {"keyhall.core.transactions", "keyhall.login.records"})


def test_only_the_records_read_a_transactions_data() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel in TRANSACTION_DATA_READERS or not _handles_transactions(path):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        bad += [f"{rel}:{node.lineno}" for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and node.attr == "data"]
    assert bad == []

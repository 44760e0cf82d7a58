"""The house rules the import contract (``lint-imports``, pyproject.toml) cannot state: nothing
imports the two top-level modules, no module reads another's private names, and the tests
mirror the code's folders."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("web", "jobs", "schema", "resolvers", "commissions", "etl", "db", "demo", "bench")
OURS = {"app", "cli", *PACKAGES}


def sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) of each import of our own code in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in OURS:
                yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in OURS:
                    yield node.lineno, alias.name, []


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_nothing_imports_the_app_or_the_cli() -> None:
    found = [f"{p.relative_to(ROOT)}:{line} imports {module}"
             for p in sources() for line, module, _ in imports(p) if module.split(".")[0] in {"app", "cli"}]
    assert found == []


def private_reads(path: Path) -> list[str]:
    """Where ``path`` imports a private name of one of our modules or reads one off it."""
    found = []
    modules: dict[str, str] = {}  # local name -> one of our modules or its member
    for line, module, names in imports(path):
        found += [f"{path.name}:{line} from {module} import {n}" for n in names if private(n)]
        for name in names or [module.split(".")[0]]:
            modules[name] = module
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in modules):
            found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_module_reads_another_modules_private_names() -> None:
    found = [f for path in [*sources(), ROOT / "app.py", ROOT / "cli.py"] for f in private_reads(path)]
    assert found == []


def test_the_private_name_check_finds_a_violation(tmp_path: Path) -> None:
    offender = tmp_path / "offender.py"
    offender.write_text("from etl import runs\nfrom etl.sync import _X\nprint(runs._LOCK, runs.LAST_RUN)\n")
    assert private_reads(offender) == ["offender.py:2 from etl.sync import _X", "offender.py:3 runs._LOCK"]


def test_the_tests_mirror_the_code() -> None:
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    # cluster: the whole deployment as processes (issue 16), no one package's tests.
    assert folders - {"support", "cluster"} <= set(PACKAGES), folders - set(PACKAGES)

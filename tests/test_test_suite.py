"""The test suite's own structure: shared helpers live in support modules, so
that a test module can be moved, split or deleted without breaking another."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def imported_modules(source: str, package: str) -> list[str]:
    """Every module `source` imports, relative imports resolved against `package`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from tests import test_x` imports a module too.
            found += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return found


def package_of(source: Path) -> str:
    return ".".join(source.relative_to(TESTS.parent).parent.parts)


def forbidden(module: str) -> bool:
    """A test module, or conftest (whose fixtures pytest injects; nothing imports them)."""
    parts = module.split(".")
    return parts[0] == "tests" and any(p.startswith("test_") or p == "conftest" for p in parts[1:])


def test_no_test_module_imports_another_test_module_or_conftest() -> None:
    offenders = [
        (str(source.relative_to(TESTS)), module)
        for source in sorted(TESTS.rglob("*.py"))
        for module in imported_modules(source.read_text(encoding="utf-8"), package_of(source))
        if forbidden(module)
    ]
    assert offenders == [], "move shared helpers to tests/support.py (functions) or conftest.py (fixtures)"


def test_the_check_sees_every_import_form() -> None:
    # The check above must not pass for want of recognising an import.
    sample = (
        "import tests.test_a\nfrom tests.test_b import x\nfrom tests import test_c, seed\n"
        "def f():\n    from .test_d import y\n    from . import test_e\nfrom tests.conftest import z\n"
    )
    modules = imported_modules(sample, "tests")
    flagged = {m.split(".")[1] for m in modules if forbidden(m)}
    assert flagged == {"conftest", "test_a", "test_b", "test_c", "test_d", "test_e"}
    assert not forbidden("tests.support") and not forbidden("tests.seed")

"""The test suite's own rule: a test asserts something that could fail.

A test whose every assert sits inside a loop, an ``if`` or an ``all(...)`` over a collection passes when that
collection is empty, whatever the code does. Such a test must first assert that what it iterates is there.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
_BRANCHES = (ast.For, ast.AsyncFor, ast.While, ast.If)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _never_empty(node: ast.AST) -> bool:
    """A loop over a literal tuple, list or set of items runs every time."""
    return (
        isinstance(node, ast.For | ast.AsyncFor)
        and isinstance(node.iter, ast.Tuple | ast.List | ast.Set)
        and bool(node.iter.elts)
    )


def _vacuous(node: ast.Assert) -> bool:
    """``assert all(... for x in xs)`` holds for an empty ``xs``."""
    test = node.test
    return (
        isinstance(test, ast.Call)
        and isinstance(test.func, ast.Name)
        and test.func.id == "all"
        and bool(test.args)
        and isinstance(test.args[0], ast.GeneratorExp | ast.ListComp | ast.SetComp)
    )


def _asserts(node: ast.AST, conditional: bool = False) -> list[bool]:
    """For each assert of a function's own body: True when it may never run or holds vacuously."""
    found: list[bool] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _SCOPES):
            continue
        if isinstance(child, ast.Assert):
            found.append(conditional or _vacuous(child))
        inside = conditional or (isinstance(child, _BRANCHES) and not _never_empty(child))
        found += _asserts(child, inside)
    return found


def loose_tests(root: Path) -> list[str]:
    """``path:line:name`` of every test function whose asserts all depend on a collection not being empty."""
    found = []
    for path in sorted(root.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
                asserts = _asserts(node)
                if asserts and all(asserts):
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno}:{node.name}")
    return found


def test_no_test_asserts_only_over_a_collection_that_could_be_empty() -> None:
    assert len(list(TESTS.rglob("test_*.py"))) > 20  # the scan sees the suite
    assert loose_tests(TESTS) == []


def test_the_scan_finds_a_loop_only_test_and_accepts_a_guarded_one(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        "def test_loop(xs):\n    for x in xs:\n        assert x\n\n"
        "def test_if(x):\n    if x:\n        assert x\n\n"
        "def test_all(xs):\n    assert all(x for x in xs)\n\n"
        "def test_guarded(xs):\n    assert xs\n    for x in xs:\n        assert x\n\n"
        "def test_literal():\n    for x in (1, 2):\n        assert x\n"
    )
    found = [line.rsplit(":", 1)[1] for line in loose_tests(tmp_path)]
    assert found == ["test_loop", "test_if", "test_all"]

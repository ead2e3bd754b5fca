"""The layout the core's correctness rests on, checked by parsing gpool/ (no import, no server)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "gpool"
STATE_MODULE = ROOT / "_state.py"

# The pool's state: idle stack, in-use map, reserved slots, waiter queue, fork generation, orphans.
STATE_FIELDS = {"_idle", "_in_use", "_pending", "_waiters", "_gen", "_forked", "_orphans"}
# The closed flag too, in the core's own modules; the adapters wrap drivers (PyMySQL) that have an
# attribute of that name for their own connections.
CORE_ONLY_FIELDS = {"_closed"}
MUTATORS = {"append", "appendleft", "pop", "popleft", "popitem", "remove", "clear", "add", "discard", "insert",
            "extend", "update", "setdefault", "rotate", "move_to_end"}


def _writes(tree: ast.AST, fields: set[str]) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute) and sub.attr in fields:
                    found.append((node.lineno, sub.attr))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS:
            base = node.func.value
            if isinstance(base, ast.Attribute) and base.attr in fields:
                found.append((node.lineno, f"{base.attr}.{node.func.attr}()"))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p != STATE_MODULE)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_only_the_state_machine_writes_pool_state(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    fields = STATE_FIELDS | (CORE_ONLY_FIELDS if path.parent == ROOT else set())
    writes = _writes(tree, fields)
    assert not writes, f"{path.name} writes pool state (lines {writes}): add a transition to gpool/_state.py"


def test_the_guard_sees_a_write_when_there_is_one() -> None:
    sample = ast.parse("def f(pool):\n    pool._idle.append(1)\n    pool._pending += 1\n    del pool._in_use[3]\n")
    assert {field for _, field in _writes(sample, STATE_FIELDS)} == {"_idle.append()", "_pending", "_in_use"}


def test_state_machine_is_small_and_never_yields_or_reads_the_clock() -> None:
    """Transitions take ``now``; only the inlined fast path of acquire asks the pool's injected clock."""
    source = STATE_MODULE.read_text()
    assert source.count("\n") <= 400
    tree = ast.parse(source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for forbidden in ("monotonic", "time", "perf_counter", "sleep", "switch", "get_hub", "spawn", "wait"):
        assert forbidden not in names, f"gpool/_state.py uses {forbidden}"
    clock_readers = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                     and any(isinstance(n, ast.Attribute) and n.attr == "_now" for n in ast.walk(f))}
    assert clock_readers == {"acquire", "__init__"}, clock_readers
    assert source.count("# Critical section") >= 10


def test_no_module_over_700_lines_and_no_function_over_60() -> None:
    for path in ROOT.rglob("*.py"):
        source = path.read_text()
        assert source.count("\n") <= 700, path
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                assert length <= 60, f"{path.name}:{node.name} is {length} lines"

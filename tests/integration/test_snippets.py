"""Every ```python block in README.md and docs/**/*.md runs on its own, as pasted.

Each block runs in a fresh interpreter (``python -c``) with ``GPOOL_MYSQL_URL`` / ``GPOOL_REDIS_URL``
pointing at the session's servers, the way a reader runs it after ``python -m gpool.testing mysql|redis``.
A block whose first line is ``# not runnable: <why>`` is skipped; keep those few. New files under docs/
are picked up without touching this test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_MARK = "# not runnable:"
# A fence opens at the start of a line with ```python and closes at the next line that is only ```.
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the fence, code) for every ```python block in ``text``."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def _cases() -> list[Any]:
    cases = []
    for path in _documents():
        name = path.relative_to(ROOT).as_posix()
        for index, (line, code) in enumerate(python_blocks(path.read_text(encoding="utf-8"))):
            marks = []
            if code.lstrip().startswith(SKIP_MARK):
                why = code.lstrip().splitlines()[0][len(SKIP_MARK):].strip()
                marks.append(pytest.mark.skip(reason=f"{name}:{line}: not runnable: {why}"))
            cases.append(pytest.param(name, line, code, id=f"{name}-block{index}-line{line}", marks=marks))
    return cases


def test_block_parser_finds_fences_and_skip_marks() -> None:
    text = "x\n```python\nprint(1)\n```\n```\nnot python\n```\n```python\n# not runnable: partial\nf(\n```\n"
    assert python_blocks(text) == [(2, "print(1)\n"), (8, "# not runnable: partial\nf(\n")]


def _run(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=45)


def test_a_failing_block_is_seen_as_failing(tmp_path: Path) -> None:
    done = _run("import gpool, sys\nprint('out'); sys.exit(3)\n", dict(os.environ), tmp_path)
    assert (done.returncode, done.stdout) == (3, "out\n")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("document", "line", "code"), _cases())
def test_snippet_runs_as_pasted(document: str, line: int, code: str, mysql_server: Any, redis_server: Any,
                                tmp_path: Path) -> None:
    env = dict(os.environ, GPOOL_MYSQL_URL=mysql_server.url, GPOOL_REDIS_URL=redis_server.url)
    # A reader's shell has no PYTHONPATH pointing into the repo: gpool must come from the installed package.
    env.pop("PYTHONPATH", None)
    try:
        done = _run(code, env, tmp_path)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{document}:{line}: the block did not finish in {exc.timeout:.0f}s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"{document}:{line}: the block exited with {done.returncode}\n"
                    f"--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-4000:]}", pytrace=False)

"""Walking an exception chain: the one walker the adapters' error checks and the tests share.

Private; not the place to import from.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def exception_chain(exc: BaseException, *links: str) -> Iterator[BaseException]:
    """``exc`` and every exception chained to it, each once (a chain may loop).

    Follows ``__cause__`` and ``__context__``, and the attributes named in ``links`` (e.g. a driver's
    ``original_exception``) where they hold an exception.
    """
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, *(getattr(current, name, None) for name in links)]

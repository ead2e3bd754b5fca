"""Argument checks shared by the adapters: each error names the parameter and the value.

A secret's value is never shown (``secret=True``: only its type). Private; not the place to import from.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

Check = Callable[[str, Any], None]


def _shown(value: Any, secret: bool) -> str:
    return f"a {type(value).__name__}" if secret else repr(value)


def flag(allow_none: bool = False) -> Check:
    """A bool (or None when allowed); the ints 0 and 1 pass as well (old code passes them)."""
    def check(name: str, value: Any) -> None:
        if value is None and allow_none:
            return
        if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
            return
        raise TypeError(f"{name} must be a bool{' or None' if allow_none else ''}, got {value!r}")
    return check


def seconds(allow_none: bool = True, allow_zero: bool = False, maximum: float = math.inf) -> Check:
    """A number of seconds: positive (or >= 0), finite, at most ``maximum``; None when allowed."""
    def check(name: str, value: Any) -> None:
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            none = " or None" if allow_none else ""
            raise TypeError(f"{name} must be a number of seconds{none}, got {value!r}")
        if value != value or value < 0 or (value == 0 and not allow_zero) or value > maximum:
            bound = ">= 0" if allow_zero else "> 0"
            upper = f" and <= {maximum:g}" if maximum != math.inf else ""
            raise ValueError(f"{name} must be {bound}{upper} seconds, got {value!r}")
    return check


def integer(minimum: int = 0, allow_none: bool = False) -> Check:
    """An int >= ``minimum`` (not a bool); None when allowed."""
    def check(name: str, value: Any) -> None:
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer{' or None' if allow_none else ''}, got {value!r}")
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return check


def text(allow_none: bool = True, nonempty: bool = False, secret: bool = False, path: bool = False,
         allow_bytes: bool = False) -> Check:
    """A str (a path-like when ``path``, bytes when ``allow_bytes``); None when allowed."""
    kinds: tuple[type, ...] = (str,) + ((os.PathLike,) if path else ()) + ((bytes,) if allow_bytes else ())

    def check(name: str, value: Any) -> None:
        if value is None and allow_none:
            return
        if not isinstance(value, kinds):
            what = "a string" + (" or path" if path else "") + (" or bytes" if allow_bytes else "")
            raise TypeError(f"{name} must be {what}{' or None' if allow_none else ''}, got {_shown(value, secret)}")
        if nonempty and not value:
            raise ValueError(f"{name} must be a non-empty string, got ''")
    return check


def instance(kinds: tuple[type, ...], what: str, allow_none: bool = True, secret: bool = False) -> Check:
    """An instance of ``kinds`` (described as ``what``); None when allowed."""
    def check(name: str, value: Any) -> None:
        if value is None and allow_none:
            return
        if not isinstance(value, kinds):
            raise TypeError(f"{name} must be {what}{' or None' if allow_none else ''}, got {_shown(value, secret)}")
    return check


def callable_(allow_none: bool = True) -> Check:
    """A callable; None when allowed."""
    def check(name: str, value: Any) -> None:
        if value is None and allow_none:
            return
        if not callable(value):
            raise TypeError(f"{name} must be callable{' or None' if allow_none else ''}, got {value!r}")
    return check


def choice(options: tuple[Any, ...]) -> Check:
    """One of ``options`` (compared with ==, bools excluded unless listed)."""
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) and value not in [o for o in options if isinstance(o, bool)]:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
        if value not in options:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return check


def run_checks(table: dict[str, Check], kwargs: dict[str, Any]) -> None:
    """Check every keyword of ``kwargs`` that ``table`` knows (the driver checks the rest)."""
    for name, value in kwargs.items():
        check = table.get(name)
        if check is not None:
            check(name, value)

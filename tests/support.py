"""Helpers every test package shares."""

from __future__ import annotations

from time import monotonic
from typing import Any, Callable

import gevent
import pytest


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``predicate`` (yielding) until it is truthy and return its value; fail after ``timeout``
    seconds. For states no event announces: a bounded wait, never a fixed sleep."""
    deadline = monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        gevent.sleep(0.005)

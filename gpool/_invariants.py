"""The structural invariants of a pool (see :mod:`gpool._state`), checked by the test suites.

Private to gpool: the unit tests run it after every test, the hypothesis model after every step and
the fault suite after every test, on every pool still alive. It only reads.
"""

from __future__ import annotations

import math
from time import monotonic
from typing import Any

from . import _waiting

__all__ = ["check_invariants"]


def check_invariants(pool: Any) -> None:
    """Raise ``AssertionError`` naming the first invariant ``pool`` breaks."""
    idle_ids = [id(e.conn) for e in pool._idle]
    assert len(idle_ids) == len(set(idle_ids)), "a connection is idle twice"
    assert not set(idle_ids) & set(pool._in_use), "a connection is both idle and in use"
    assert pool._pending >= 0, f"pending is {pool._pending}"
    assert pool.size <= pool.max_connections, f"size {pool.size} over the cap {pool.max_connections}"
    assert all(w.state == _waiting.WAITING for w in pool._waiters), "a granted waiter is still queued"
    if pool._waiters:
        assert not pool._idle, "idle connections while greenlets wait"
    if pool._closed:
        assert not pool._idle and not pool._waiters, "a closed pool keeps idle connections or waiters"
    for key, entry in pool._in_use.items():
        assert id(entry.conn) == key, "an in-use record under another key"
    # The one deadline timer is armed no later than the earliest waiter's deadline, and only while
    # someone waits: an armed timer keeps the hub's loop (gevent.wait(), the process) alive.
    # (A waiter already due was woken by the timer's last fire and is about to leave the queue.)
    timer = pool._timer
    if timer.armed:
        assert pool._waiters, "deadline timer armed with nobody waiting"
    now = monotonic()
    upcoming = [t for w in pool._waiters if (t := w.wake_at()) > now]
    assert timer.at <= min(upcoming, default=math.inf), "a waiter's deadline is not covered by the timer"

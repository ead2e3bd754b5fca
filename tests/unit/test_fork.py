"""Fork safety: a child forgets inherited connections without closing them and starts fresh."""

from __future__ import annotations

import os

import gevent
import pytest

from gpool import Pool
from tests.fakes import FakeFactory

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _in_child(fn) -> int:
    """Run ``fn`` in a forked child; its return value (0-255) is the child's exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 99
        try:
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_child_forgets_inherited_connections_without_closing_them():
    factory = FakeFactory()
    pool = Pool(factory, None, 2, 4, True, 0.01)
    held = pool.acquire()  # in use in the parent at fork time
    inherited = [c.id for c in factory.created]

    def child():
        conn = pool.acquire()
        if conn.id in inherited:
            return 1  # handed out the parent's connection
        if any(c.closed for c in factory.created if c.id in inherited):
            return 2  # closed (said goodbye on) the parent's sockets
        if pool.size != 1 or pool.stats().created != 1:
            return 3
        pool.release(conn)
        pool.release(held)  # a parent's greenlet releasing its inherited connection: forgotten, no error
        if pool.size != 1 or any(c.closed for c in factory.created if c.id in inherited):
            return 4
        if pool._reaper is None or not pool._reaper.running:
            return 5  # the reaper is restarted in the child
        return 0

    assert _in_child(child) == 0
    # The parent is untouched and still works.
    assert pool.size == 2 and pool.stats().in_use == 1
    pool.release(held)
    assert pool.acquire() is held
    pool.release(held)
    assert not any(c.closed for c in factory.created)
    pool.close()


def test_fork_hook_is_a_no_op_in_the_same_process():
    pool = Pool(FakeFactory(), None, 1, 2, False)
    pool._forget_parent()  # as if called in the parent: same pid
    conn = pool.acquire()
    assert pool.stats().created == 1, "same pid: nothing forgotten"
    pool.release(conn)
    pool.close()


def _simulate_fork(pool):
    """What the at-fork hook does in a child, done in this process: the pid no longer matches."""
    pool._pid = -1
    pool._forget_parent()


def test_waiters_caught_by_a_fork_start_over_in_the_child():
    factory = FakeFactory()
    pool = Pool(factory, None, 0, 1, False, timeout=2)
    held = pool.acquire()
    waiters = [gevent.spawn(pool.acquire) for _ in range(3)]
    gevent.sleep(0)
    _simulate_fork(pool)
    first = pool.acquire()  # the child's first use forgets `held` and opens a fresh one
    assert first is not held and not held.closed
    pool.release(first)
    got = [g.get(timeout=1) for g in waiters[:1]]
    assert got[0] is first, "a waiter from before the fork was woken to start over and was served"
    pool.release(first)
    for g in waiters[1:]:
        pool.release(g.get(timeout=1))
    pool.release(held)  # the parent's connection: forgotten quietly
    assert pool.size == 1
    pool.close()


def test_connect_caught_by_a_fork_is_orphaned_and_retried():
    factory = FakeFactory(delay=0.02)
    pool = Pool(factory, None, 0, 1, False, timeout=2)
    g = gevent.spawn(pool.acquire)
    gevent.sleep(0.005)  # connecting
    _simulate_fork(pool)
    conn = g.get(timeout=1)
    assert conn is factory.created[1], "the connection opened across the fork was not used"
    assert not factory.created[0].closed, "nor closed: it belongs to the parent"
    assert pool.size == 1 and pool._pending == 0
    pool.release(conn)
    pool.close()


def test_grant_caught_by_a_fork_is_not_used():
    import gevent

    factory = FakeFactory()
    pool = Pool(factory, None, 0, 1, False, timeout=2)
    held = pool.acquire()
    waiter = gevent.spawn(pool.acquire)
    gevent.sleep(0)
    pool.release(held)  # granted, wake-up scheduled
    _simulate_fork(pool)
    conn = waiter.get(timeout=1)
    assert conn is not held and pool.size == 1
    pool.release(conn)
    pool.close()

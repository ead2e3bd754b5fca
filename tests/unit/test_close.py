"""close(): idempotent, wakes waiters, closes in-use connections on release, and refuses new work."""

from __future__ import annotations

import gevent
import pytest

from gpool import Pool, PoolClosedError


def test_close_is_idempotent_and_closes_idle(make_pool, factory):
    pool = make_pool(max_connections=3)
    conns = [pool.acquire() for _ in range(3)]
    for c in conns:
        pool.release(c)
    pool.close()
    pool.close()
    assert pool.closed and all(c.closed for c in conns) and pool.size == 0
    assert "closed" in repr(pool)


def test_acquire_after_close_raises(make_pool):
    pool = make_pool()
    pool.close()
    with pytest.raises(PoolClosedError, match="is closed"):
        pool.acquire()
    with pytest.raises(PoolClosedError), pool.connection():
        pass


def test_in_use_connection_is_closed_quietly_on_release_after_close(make_pool, factory):
    pool = make_pool()
    conn = pool.acquire()
    factory.reset_error = RuntimeError("must not even be called")
    pool.close()
    pool.release(conn)
    assert conn.closed and conn.reset_calls == 0 and pool.size == 0


def test_close_errors_are_swallowed(make_pool):
    class BadClose:
        def close(self):
            raise OSError("already gone")

    pool = make_pool(factory=BadClose)
    pool.release(pool.acquire())
    pool.close()
    assert pool.stats().closed == 1


def test_with_pool_closes_it(factory):
    with Pool(factory, None, 1, 2) as pool:
        pass
    assert pool.closed and factory.created[0].closed


def test_stats_still_work_after_close(make_pool):
    pool = make_pool()
    pool.release(pool.acquire())
    pool.close()
    assert pool.stats().closed == 1 and pool.stats().size == 0


def test_no_finalizer_does_io(factory):
    """A pool dropped without close() closes nothing from __del__ (no I/O from finalizers)."""
    import gc

    pool = Pool(factory, None, 1, 2, False)
    del pool
    gc.collect()
    gevent.sleep(0)
    assert not factory.created[0].closed

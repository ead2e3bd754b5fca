"""Connecting: retries with backoff inside the timeout, errors as causes, slots freed on failure."""

from __future__ import annotations

import time

import gevent
import pytest

from gpool import PoolClosedError, PoolExhaustedError
from gpool._invariants import check_invariants


def test_failing_connect_is_retried_then_succeeds(make_pool, factory):
    factory.fail = 2
    pool = make_pool(retry=3, retry_delay=0.001)
    conn = pool.acquire()
    assert factory.calls == 3 and conn is factory.created[0]
    assert pool.stats().connect_errors == 2
    pool.release(conn)


def test_connect_error_is_the_cause_after_retries_run_out(make_pool, factory):
    factory.fail = 10
    pool = make_pool(retry=2, retry_delay=0.001, name="db")
    with pytest.raises(PoolExhaustedError) as info:
        pool.acquire()
    assert factory.calls == 3  # one attempt and two retries
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert "last connect error: ConnectionRefusedError" in str(info.value)
    assert pool.size == 0 and pool.stats().connect_errors == 3
    check_invariants(pool)


def test_backoff_is_exponential_with_jitter(make_pool, factory, monkeypatch):
    pauses = []
    monkeypatch.setattr("gpool._connect.gevent.sleep", pauses.append)
    factory.fail = 10
    pool = make_pool(retry=4, retry_delay=0.1, timeout=None)
    with pytest.raises(PoolExhaustedError):
        pool.acquire()
    assert len(pauses) == 4
    for n, pause in enumerate(pauses):
        base = 0.1 * 2**n
        assert base * 0.5 <= pause <= base, pauses


def test_retries_stop_at_the_callers_deadline(make_pool, factory):
    factory.fail = 1000
    pool = make_pool(retry=1000, retry_delay=0.01)
    start = time.monotonic()
    with pytest.raises(PoolExhaustedError) as info:
        pool.acquire(timeout=0.2)
    elapsed = time.monotonic() - start
    assert elapsed < 0.5
    assert 3 <= factory.calls < 20, "backed off, not one attempt per millisecond"
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_a_hanging_connect_is_bounded_by_the_timeout(make_pool, factory):
    factory.delay = 10
    pool = make_pool(retry=0)
    start = time.monotonic()
    with pytest.raises(PoolExhaustedError) as info:
        pool.acquire(timeout=0.05)
    assert time.monotonic() - start < 0.5
    assert isinstance(info.value.__cause__, TimeoutError)
    assert pool.size == 0


def test_failed_connect_frees_the_slot_for_the_next_waiter(make_pool, factory):
    factory.delay = 0.01
    factory.fail = 1
    pool = make_pool(max_connections=1, retry=0)
    first = gevent.spawn(pool.acquire)
    second = gevent.spawn(pool.acquire)
    with pytest.raises(PoolExhaustedError):
        first.get(timeout=1)
    conn = second.get(timeout=1)
    assert conn is factory.created[0]
    pool.release(conn)


def test_connect_error_is_never_a_silent_none(make_pool):
    pool = make_pool(factory=lambda: None)
    assert pool.acquire() is None  # the factory's own None is a value, passed through as such
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("bad config")

    bad = make_pool(factory=broken, retry=0)
    with pytest.raises(PoolExhaustedError) as info:
        bad.acquire()
    assert isinstance(info.value.__cause__, ValueError)


def test_open_failure_closes_the_half_made_connection(make_pool):
    made = []

    class Conn:
        def __init__(self):
            self.closed = False
            made.append(self)

        def open(self):
            raise ConnectionRefusedError("nope")

        def close(self):
            self.closed = True

    pool = make_pool(factory=Conn, retry=1, retry_delay=0.001)
    with pytest.raises(PoolExhaustedError):
        pool.acquire()
    assert len(made) == 2 and all(c.closed for c in made)


def test_close_while_connecting_closes_the_new_connection(make_pool, factory):
    factory.delay = 0.02
    pool = make_pool()
    g = gevent.spawn(pool.acquire)
    gevent.sleep(0.001)
    pool.close()
    with pytest.raises(PoolClosedError):
        g.get(timeout=1)
    assert factory.created[0].closed


def test_concurrent_connects_never_exceed_the_cap_when_connects_fail(make_pool, factory):
    factory.delay = 0.005
    factory.fail = 5
    pool = make_pool(max_connections=3, retry=5, retry_delay=0.001)

    def worker():
        with pool.connection():
            assert pool.size <= 3
            gevent.sleep(0.001)

    gevent.joinall([gevent.spawn(worker) for _ in range(30)], raise_error=True)
    assert factory.max_concurrent <= 3 and len(factory.created) <= 3

"""Growth below the cap: connect, or wait for a connection that will come back sooner."""

from __future__ import annotations

import math
import time

import gevent

from gpool._invariants import check_invariants
from tests.support import wait_until


def burst(pool, n, hold):
    """n greenlets at once, each holding ``hold`` seconds; returns their waits."""
    waits = []

    def use():
        start = time.monotonic()
        conn = pool.acquire()
        waits.append(time.monotonic() - start)
        gevent.sleep(hold)
        pool.release(conn)

    gevent.joinall([gevent.spawn(use) for _ in range(n)], timeout=10, raise_error=True)
    return sorted(waits)


def warm_up(pool, n, hold):
    """A first burst on a cold pool: both averages (connect, hold) get measured."""
    burst(pool, n, hold)


def test_burst_on_warm_pool_is_served_by_returns_not_new_connections(make_pool, factory):
    factory.delay = 0.2  # connects are slow, uses are short: waiting for a return is faster
    pool = make_pool(max_connections=40)
    warm_up(pool, 4, hold=0.005)
    assert factory.calls == 4
    waits = burst(pool, 24, hold=0.005)
    assert factory.calls == 4, "a burst that returns could serve opened new connections"
    assert waits[-1] < 0.15, waits  # 20 waiters over 4 connections of 5 ms: ~25 ms, not a 200 ms connect
    check_invariants(pool)


def test_long_holds_make_a_burst_connect_at_once(make_pool, factory):
    factory.delay = 0.02  # connects are quick next to a 300 ms hold: connecting is faster
    pool = make_pool(max_connections=20)
    warm_up(pool, 2, hold=0.3)
    waits = burst(pool, 6, hold=0.3)
    assert factory.calls == 6  # 2 warm + 4 new, opened at once
    assert waits[-1] < 0.2, waits
    check_invariants(pool)


def test_cold_pool_connects_for_every_demand_at_once(make_pool, factory):
    factory.delay = 0.1
    pool = make_pool(max_connections=20)
    waits = burst(pool, 8, hold=0.005)  # nothing measured yet: no reason to wait
    assert factory.calls == 8 and factory.max_concurrent == 8
    assert waits[-1] < 0.19, waits
    check_invariants(pool)


def test_waiter_that_chose_to_wait_connects_after_one_connect_time(make_pool, factory):
    """The averages promised a quick return that never comes: the wait is bounded by a connect time."""
    factory.delay = 0.1
    pool = make_pool(max_connections=10, timeout=5)
    warm_up(pool, 2, hold=0.001)
    holders = [gevent.spawn(pool.acquire) for _ in range(2)]
    held = [g.get() for g in holders]  # held for good now
    start = time.monotonic()
    conn = gevent.spawn(pool.acquire).get(timeout=2)
    waited = time.monotonic() - start
    assert conn not in held and factory.calls == 3
    assert 0.15 <= waited < 0.6, waited  # ~one average connect (0.1 s) waiting, then a connect (0.1 s)
    assert not pool._timer.armed
    check_invariants(pool)
    for c in [*held, conn]:
        pool.release(c)


def test_waiter_whose_patience_ends_at_the_cap_keeps_its_place(make_pool, factory):
    factory.delay = 0.1
    pool = make_pool(max_connections=3, timeout=5)
    warm_up(pool, 2, hold=0.001)
    held = [gevent.spawn(pool.acquire).get() for _ in range(2)]
    patient = gevent.spawn(pool.acquire)  # chooses to wait (a return looks due in ~1 ms)
    gevent.sleep(0)
    assert pool.stats().waiting == 1 and next(iter(pool._waiters)).grow_at < math.inf  # queued by choice
    third = pool.acquire(timeout=0)  # timeout=0 never waits: it takes the last slot meanwhile
    # its patience (one average connect, ~0.1 s) runs out while the pool is at the cap: it waits on
    wait_until(lambda: pool._waiters and next(iter(pool._waiters)).grow_at == math.inf)
    assert not patient.ready() and pool.stats().waiting == 1
    check_invariants(pool)
    pool.release(held[0])
    assert patient.get(timeout=1) is held[0]
    assert factory.calls == 3
    for c in (held[1], third, held[0]):
        pool.release(c)
    check_invariants(pool)


def test_stats_show_the_averages_behind_the_choice(make_pool, factory):
    factory.delay = 0.05
    pool = make_pool(max_connections=10)
    assert (pool.stats().connect_time_avg, pool.stats().hold_time_avg) == (None, None)  # cold
    warm_up(pool, 2, hold=0.02)
    stats = pool.stats()
    assert 0.045 <= stats.connect_time_avg < 0.5
    assert 0.015 <= stats.hold_time_avg < 0.5
    assert stats.as_dict()["connect_time_avg"] == stats.connect_time_avg

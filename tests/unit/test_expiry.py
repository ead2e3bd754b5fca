"""Expiry at checkout and in the reaper, health checks, max_usage; time is a stepped clock."""

from __future__ import annotations

import gc
import logging
import weakref

import gevent
import pytest

from gpool import ConnectionReaper, Pool
from tests.fakes import FakeFactory


def test_idle_connection_past_idle_timeout_is_not_handed_out(make_pool, factory, clock):
    pool = make_pool(idle_timeout=60, check_interval=None, reap_expired_connections=False)
    old = pool.acquire()
    pool.release(old)
    clock.advance(59)
    assert pool.acquire() is old
    pool.release(old)
    clock.advance(60)
    new = pool.acquire()
    assert new is not old and old.closed
    assert pool.stats().reaped == 1
    pool.release(new)


def test_max_lifetime_has_negative_jitter_and_is_enforced_at_checkout(make_pool, factory, clock):
    pool = make_pool(max_connections=50, max_lifetime=100, idle_timeout=None, check_interval=None)
    conns = [pool.acquire() for _ in range(50)]
    for c in conns:
        pool.release(c)
    deadlines = sorted(e.expires_at - clock.now for e in pool._idle)
    assert all(96 <= d <= 100 for d in deadlines)
    assert deadlines[-1] - deadlines[0] > 0.5, "the batch does not expire together"
    clock.advance(100)
    fresh = pool.acquire()
    assert fresh not in conns
    assert all(c.closed for c in conns)
    pool.release(fresh)


def test_in_use_connection_past_lifetime_is_closed_on_release(make_pool, factory, clock):
    pool = make_pool(max_lifetime=10, check_interval=None)
    conn = pool.acquire()
    clock.advance(11)
    assert pool.drop_expired() == 0, "connections in use are never reaped"
    pool.release(conn)
    assert conn.closed and pool.size == 0


def test_is_expired_hook_is_asked_at_checkout(make_pool):
    pool = make_pool(check_interval=None)
    conn = pool.acquire()
    pool.release(conn)
    conn.expired = True
    fresh = pool.acquire()
    assert fresh is not conn and conn.closed
    pool.release(fresh)


def test_health_check_runs_only_after_check_interval(make_pool, clock):
    pool = make_pool(check_interval=5, idle_timeout=None)
    conn = pool.acquire()
    pool.release(conn)
    clock.advance(4)
    assert pool.acquire() is conn and conn.checks == 0
    pool.release(conn)
    clock.advance(5)
    assert pool.acquire() is conn and conn.checks == 1
    pool.release(conn)


@pytest.mark.parametrize("outcome", [False, RuntimeError("check raised")])
def test_failed_health_check_drops_and_acquisition_continues(make_pool, factory, clock, outcome):
    pool = make_pool(check_interval=1, idle_timeout=None)
    conn = pool.acquire()
    pool.release(conn)
    conn.healthy = outcome
    clock.advance(2)
    fresh = pool.acquire()
    assert fresh is not conn and conn.closed
    assert pool.stats().check_failures == 1
    pool.release(fresh)


def test_never_hands_out_a_connection_whose_check_failed(make_pool, factory, clock):
    pool = make_pool(max_connections=5, check_interval=1, idle_timeout=None)
    conns = [pool.acquire() for _ in range(5)]
    for c in conns:
        pool.release(c)
    for c in conns[1:]:
        c.healthy = False
    clock.advance(2)
    got = [pool.acquire() for _ in range(5)]
    assert all(g.healthy is True for g in got)
    assert sum(c.closed for c in conns) == 4
    for g in got:
        pool.release(g)


def test_max_usage_retires_after_that_many_checkouts(make_pool):
    pool = make_pool(max_usage=3)
    conn = pool.acquire()
    pool.release(conn)
    for _ in range(2):
        assert pool.acquire() is conn
        pool.release(conn)
    assert conn.closed
    assert pool.acquire() is not conn


def test_reaper_pass_closes_expired_idle_and_refills_to_initial(factory, clock):
    with Pool(factory, None, 2, 5, idle_timeout=30, check_interval=None) as pool:
        extra = [pool.acquire() for _ in range(4)]
        for c in extra:
            pool.release(c)
        assert pool.stats().idle == 4
        clock.advance(31)
        assert pool._reaper is not None
        closed = pool._reaper.reap(clock.now)
        assert closed == 4
        assert pool.stats().idle == 2 and pool.size == 2, "refilled to initial_connections"
        assert sum(c.closed for c in factory.created) == 4


def test_reaper_never_touches_connections_in_use(factory, clock):
    with Pool(factory, None, 0, 3, idle_timeout=1) as pool:
        held = pool.acquire()
        clock.advance(100)
        assert pool._reaper.reap(clock.now) == 0
        assert not held.closed
        pool.release(held)


def test_reaper_greenlet_runs_every_interval():
    factory = FakeFactory()
    with Pool(factory, None, 0, 3, True, 0.01, idle_timeout=0.02, check_interval=None) as pool:
        pool.release(pool.acquire())
        for _ in range(200):  # bounded wait for the background pass
            if pool.stats().reaped:
                break
            gevent.sleep(0.005)
        assert pool.stats().reaped == 1 and pool.size == 0


def test_reaper_survives_errors_and_logs_them(caplog):
    factory = FakeFactory()

    class Exploding(Pool):
        passes = 0

        def _reap(self, now):
            Exploding.passes += 1
            raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING, logger="gpool"), Exploding(factory, None, 0, 2, True, 0.005) as pool:
        pool.release(pool.acquire())
        for _ in range(200):
            if Exploding.passes >= 3:
                break
            gevent.sleep(0.005)
        assert Exploding.passes >= 3 and pool._reaper.running
    assert "reaper pass failed" in caplog.text


def test_reaper_holds_the_pool_weakly():
    factory = FakeFactory()
    pool = Pool(factory, None, 1, 2, True, 0.005)
    reaper = pool._reaper
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None
    for _ in range(200):
        if not reaper.running:
            break
        gevent.sleep(0.005)
    assert not reaper.running


def test_reaper_stops_at_close():
    with Pool(FakeFactory(), None, 1, 2, True, 0.005) as pool:
        reaper = pool._reaper
        assert reaper.running
    gevent.sleep(0)
    assert not reaper.running
    assert reaper.reap() == 0


def test_reaper_does_not_keep_gevent_wait_alive():
    import subprocess
    import sys

    code = (
        "import gevent, time\n"
        "from gpool import Pool\n"
        "pool = Pool(object, None, 1, 2, True, 30.0)\n"
        "assert pool._reaper.running\n"
        "t = time.monotonic(); gevent.wait(); print(round(time.monotonic() - t, 1))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 5


def test_reaper_repr_and_manual_start_stop():
    with Pool(FakeFactory(), None, 0, 2, False) as pool:
        reaper = ConnectionReaper(pool, 1.0)
        assert "every 1.0s" in repr(reaper)
        reaper.start()
        assert reaper.running
        reaper.stop()
        gevent.sleep(0)
        assert not reaper.running


def test_drop_expired_returns_how_many_it_closed(make_pool, clock):
    pool = make_pool(max_connections=3, idle_timeout=10, check_interval=None)
    conns = [pool.acquire() for _ in range(3)]
    pool.release(conns[0])
    clock.advance(5)
    pool.release(conns[1])
    pool.release(conns[2])
    clock.advance(6)
    assert pool.drop_expired() == 1 and conns[0].closed
    assert pool.stats().idle == 2

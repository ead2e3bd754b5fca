"""gevent.Timeout and kills at every yield point never lose capacity nor leave half-open connections."""

from __future__ import annotations

import gevent
import pytest

from gpool._invariants import check_invariants


def _kill_at_yield(pool, action, interrupt):
    """Run ``action`` in a greenlet and interrupt it at its first yield; return the greenlet."""
    g = gevent.spawn(action)
    gevent.sleep(0.001)  # it is now parked at the yield point under test
    assert not g.dead, "the action did not yield where the test expected"
    g.kill(gevent.GreenletExit if interrupt == "kill" else gevent.Timeout(), timeout=1)
    assert g.dead
    return g


def _capacity_is_whole(pool):
    check_invariants(pool)
    assert pool.stats().in_use == 0 and pool.stats().waiting == 0 and pool.stats().connecting == 0
    conns = [pool.acquire(timeout=1) for _ in range(pool.max_connections)]
    assert len({id(c) for c in conns}) == pool.max_connections
    for c in conns:
        pool.release(c)


@pytest.mark.parametrize("interrupt", ["kill", "timeout"])
def test_interrupted_connect_frees_the_slot(make_pool, factory, interrupt):
    factory.delay = 0.05
    pool = make_pool(max_connections=1)
    _kill_at_yield(pool, pool.acquire, interrupt)
    assert pool.size == 0 and factory.created == []
    factory.delay = 0
    _capacity_is_whole(pool)


@pytest.mark.parametrize("interrupt", ["kill", "timeout"])
def test_interrupted_open_closes_the_half_made_connection(make_pool, interrupt):
    made = []

    class Slow:
        def __init__(self):
            self.closed = False
            made.append(self)

        def open(self):
            gevent.sleep(0.05)

        def close(self):
            self.closed = True

    pool = make_pool(factory=Slow, max_connections=1)
    _kill_at_yield(pool, pool.acquire, interrupt)
    assert made[0].closed and pool.size == 0


@pytest.mark.parametrize("interrupt", ["kill", "timeout"])
def test_interrupted_health_check_drops_the_connection(make_pool, factory, clock, interrupt):
    pool = make_pool(max_connections=1, check_interval=1, idle_timeout=None)
    conn = pool.acquire()
    pool.release(conn)
    clock.advance(2)
    factory.check_delay = 0.05
    _kill_at_yield(pool, pool.acquire, interrupt)
    assert conn.closed and pool.size == 0
    factory.check_delay = 0
    _capacity_is_whole(pool)


@pytest.mark.parametrize("interrupt", ["kill", "timeout"])
def test_interrupted_reset_drops_the_connection(make_pool, factory, interrupt):
    pool = make_pool(max_connections=1)
    conn = gevent.spawn(pool.acquire).get()
    factory.reset_delay = 0.05
    _kill_at_yield(pool, lambda: pool.release(conn), interrupt)
    assert conn.closed and pool.size == 0
    factory.reset_delay = 0
    _capacity_is_whole(pool)


@pytest.mark.parametrize("interrupt", ["kill", "timeout"])
def test_interrupted_use_drops_the_connection(make_pool, interrupt):
    pool = make_pool(max_connections=1)
    seen = []

    def use():
        with pool.connection() as conn:
            seen.append(conn)
            gevent.sleep(1)

    _kill_at_yield(pool, use, interrupt)
    assert seen[0].closed
    _capacity_is_whole(pool)


@pytest.mark.parametrize("interrupt", ["kill", "timeout"])
def test_interrupted_close_on_release_keeps_accounting(make_pool, interrupt):
    class SlowClose:
        closed = False

        def close(self):
            gevent.sleep(0.05)
            self.closed = True

    pool = make_pool(factory=SlowClose, max_connections=1, max_usage=1)
    conn = gevent.spawn(pool.acquire).get()
    _kill_at_yield(pool, lambda: pool.release(conn), interrupt)  # max_usage=1: release closes it
    assert pool.size == 0
    _capacity_is_whole(pool)


@pytest.mark.parametrize("interrupt", ["kill", "timeout"])
def test_interrupted_waiter_leaves_no_ghost(make_pool, interrupt):
    pool = make_pool(max_connections=1)
    held = gevent.spawn(pool.acquire).get()
    _kill_at_yield(pool, pool.acquire, interrupt)
    assert pool.stats().waiting == 0
    pool.release(held)
    _capacity_is_whole(pool)


def test_kill_storm_at_random_points_keeps_every_invariant(make_pool, factory):
    import random

    rng = random.Random(7)
    factory.delay = 0.001
    factory.reset_delay = 0.0005
    pool = make_pool(max_connections=5, timeout=2)

    def worker():
        while True:
            with pool.connection():
                gevent.sleep(rng.random() * 0.002)

    greenlets = [gevent.spawn(worker) for _ in range(50)]
    for _ in range(300):
        gevent.sleep(rng.random() * 0.001)
        check_invariants(pool)
        victim = rng.choice(greenlets)
        victim.kill(gevent.GreenletExit if rng.random() < 0.5 else gevent.Timeout(), block=False)
        greenlets = [g for g in greenlets if not g.dead] + [gevent.spawn(worker)]
    gevent.killall(greenlets)
    check_invariants(pool)
    factory.reset_delay = 0
    factory.delay = 0
    _capacity_is_whole(pool)
    open_conns = [c for c in factory.created if not c.closed]
    assert len(open_conns) == pool.size, "every open connection is tracked and every tracked one is open"


@pytest.mark.parametrize("point", ["open", "check", "on_checkout", "use", "reset"])
def test_timeout_firing_during_cleanup_does_not_replace_a_kill(make_pool, factory, clock, point):
    """Killed at a yield point; its own Timeout fires while the connection closes in the kill's wake.

    The Timeout must not replace the GreenletExit: the ``with gevent.Timeout`` around the call would
    swallow its own Timeout, and a killed worker that loops (``except gevent.Timeout: continue``)
    would run on: ``killall`` would wait for it forever.
    """
    hook_delay = 0.0
    pool = make_pool(max_connections=1, check_interval=1, idle_timeout=None,
                     on_checkout=lambda conn: gevent.sleep(hook_delay))
    conn = pool.acquire()
    pool.release(conn)

    def use():
        with pool.connection():
            gevent.sleep(10)

    def take_and_return():
        with pool.connection():
            pass

    if point == "open":
        pool.drop(conn)
        factory.open_delay = 10
        action = pool.acquire
    elif point == "check":
        clock.advance(2)
        factory.check_delay = 10
        action = pool.acquire
    elif point == "on_checkout":
        hook_delay = 10
        action = pool.acquire
    elif point == "use":
        action = use
    else:
        factory.reset_delay = 10
        action = take_and_return
    factory.close_delay = 0.1
    outcome = []

    def worker():
        try:
            with gevent.Timeout(0.05):
                action()
        except gevent.Timeout:
            outcome.append("ran on after its kill")

    g = gevent.spawn(worker)
    gevent.sleep(0.01)  # parked at the yield point under test
    assert not g.dead
    g.kill(block=False)
    g.join(timeout=2)
    assert g.dead and isinstance(g.value, gevent.GreenletExit), g.value
    assert outcome == []
    assert pool.size == 0 and all(c.closed for c in factory.created)
    factory.close_delay = factory.open_delay = factory.check_delay = factory.reset_delay = hook_delay = 0
    _capacity_is_whole(pool)


def test_timeout_while_closing_a_granted_connection_after_a_kill_does_not_replace_the_kill(make_pool, factory):
    """A waiter is handed a connection and killed before it runs; the pool closes meanwhile, so its
    cancel closes the connection, slowly, and its own Timeout fires then: the kill still wins."""
    pool = make_pool(max_connections=1)
    held = pool.acquire()
    outcome = []

    def worker():
        try:
            with gevent.Timeout(0.05):
                pool.acquire()
        except gevent.Timeout:
            outcome.append("ran on after its kill")

    g = gevent.spawn(worker)
    gevent.sleep(0.01)
    assert pool.stats().waiting == 1
    factory.close_delay = 0.1
    g.kill(block=False)  # delivered before the hand-off's wake-up, which is scheduled after it
    pool.release(held)  # handed to the waiter, which has not run yet
    assert pool.stats().waiting == 0 and pool.stats().in_use == 1
    pool.close()  # the waiter's cancel will find the pool closed: it closes the connection
    g.join(timeout=2)
    assert g.dead and isinstance(g.value, gevent.GreenletExit), g.value
    assert outcome == []
    assert held.closed and pool.size == 0

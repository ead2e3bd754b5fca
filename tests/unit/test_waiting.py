"""The hard cap, FIFO hand-off, timeouts, max_waiting and the self-deadlock guard."""

from __future__ import annotations

import time

import gevent
import gevent.event
import pytest

from gpool import PoolClosedError, PoolExhaustedError, PoolQueueFullError, _waiting
from gpool._invariants import check_invariants


def test_cap_counts_connections_being_created(make_pool, factory):
    factory.delay = 0.02  # every connect yields: without a reserved slot all ten would connect
    pool = make_pool(max_connections=2)
    sizes = []

    def worker():
        with pool.connection():
            sizes.append(pool.size)
            gevent.sleep(0.001)

    gevent.joinall([gevent.spawn(worker) for _ in range(10)], raise_error=True)
    assert factory.calls == 2 and factory.max_concurrent == 2
    assert max(sizes) <= 2


def test_waiters_are_served_in_fifo_order(make_pool):
    pool = make_pool(max_connections=1)
    held = pool.acquire()
    order = []

    def waiter(i):
        with pool.connection():
            order.append(i)

    greenlets = []
    for i in range(20):
        greenlets.append(gevent.spawn(waiter, i))
        gevent.sleep(0)  # let each one queue before the next arrives
    assert pool.stats().waiting == 20
    pool.release(held)
    gevent.joinall(greenlets, raise_error=True)
    assert order == list(range(20))


def test_release_hands_connection_to_oldest_waiter_not_to_a_greedy_releaser(make_pool):
    """A greenlet that releases and re-acquires without yielding must queue behind the waiters."""
    pool = make_pool(max_connections=1)
    conn = pool.acquire()
    got = []
    others = [gevent.spawn(lambda i=i: got.append((i, pool.acquire()))) for i in range(3)]
    gevent.sleep(0)
    pool.release(conn)
    greedy = gevent.spawn(pool.acquire)  # arrives after the three, so it is served last
    gevent.sleep(0)
    assert [i for i, _ in got] == [0]
    assert not greedy.ready()
    for i in (1, 2):
        pool.release(got[-1][1])
        gevent.sleep(0)
        assert [i for i, _ in got][-1] == i
    pool.release(got[-1][1])
    assert greedy.get(timeout=1) is conn
    pool.release(conn)
    gevent.joinall(others)


def test_every_greenlet_is_served_under_contention(make_pool):
    pool = make_pool(max_connections=10, timeout=10)
    served = []
    max_wait = []

    def worker(i):
        for _ in range(5):
            start = time.monotonic()
            with pool.connection():
                max_wait.append(time.monotonic() - start)
                gevent.sleep(0)
        served.append(i)

    gevent.joinall([gevent.spawn(worker, i) for i in range(1000)], raise_error=True)
    assert sorted(served) == list(range(1000))
    s = pool.stats()
    assert s.acquired == 5000 and s.timeouts == 0 and s.created == 10


def test_timeout_raises_exhausted_with_counts_and_wait_time(make_pool):
    pool = make_pool(max_connections=1, name="db")
    held = gevent.spawn(pool.acquire).get()  # held by another greenlet, so waiting is no self-deadlock
    start = time.monotonic()
    with pytest.raises(PoolExhaustedError) as info:
        pool.acquire(timeout=0.05)
    elapsed = time.monotonic() - start
    assert 0.045 <= elapsed < 1.0
    message = str(info.value)
    assert message.startswith("pool 'db' exhausted: 1/1 in use, 0 idle")
    assert "0 waiting" in message and "waited 0.0" in message
    assert pool.stats().timeouts == 1 and pool.stats().waiting == 0
    pool.release(held)
    check_invariants(pool)


def test_pool_default_timeout_applies(make_pool):
    pool = make_pool(max_connections=1, timeout=0.02)
    held = pool.acquire()
    with pytest.raises(PoolExhaustedError):
        pool.acquire()
    pool.release(held)


def test_timeout_zero_tries_once_without_waiting(make_pool):
    pool = make_pool(max_connections=1)
    conn = pool.acquire(timeout=0)  # creating is allowed: nothing to wait for
    start = time.monotonic()
    with pytest.raises(PoolExhaustedError):
        pool.acquire(timeout=0)
    assert time.monotonic() - start < 0.05
    pool.release(conn)
    assert pool.acquire(timeout=0) is conn


def test_timed_out_waiter_leaves_no_ghost_and_connection_goes_to_next(make_pool):
    pool = make_pool(max_connections=1)
    held = pool.acquire()
    early = gevent.spawn(pool.acquire, timeout=0.01)
    late = gevent.spawn(pool.acquire, timeout=2)
    gevent.sleep(0)
    with pytest.raises(PoolExhaustedError):
        early.get()
    assert pool.stats().waiting == 1
    pool.release(held)
    assert late.get(timeout=1) is held


class DeferredWakeups:
    """Holds the pool's wake-ups back so a test can deliver a kill between a grant and the wake-up."""

    def __init__(self, pool, monkeypatch):
        self.held = []
        self.real = _waiting.wake
        monkeypatch.setattr("gpool._state.wake", self.held.append)

    def flush(self):
        held, self.held = self.held, []
        for waiter in held:
            self.real(waiter)


def test_later_waiter_with_shorter_timeout_leaves_at_its_own_deadline(make_pool):
    """One timer serves every deadline: a short one queued behind a long one must still fire on time."""
    pool = make_pool(max_connections=1)
    held = gevent.spawn(pool.acquire).get()  # held elsewhere: our own wait is no self-deadlock
    patient = gevent.spawn(pool.acquire, timeout=5)
    gevent.sleep(0)
    start = time.monotonic()
    with pytest.raises(PoolExhaustedError):
        pool.acquire(timeout=0.05)
    assert 0.045 <= time.monotonic() - start < 1.0
    check_invariants(pool)
    assert pool._timer.at == next(iter(pool._waiters)).deadline  # re-armed for the patient waiter
    pool.release(held)
    assert patient.get(timeout=1) is held
    assert not pool._timer.armed  # nobody waits: no timer keeps the loop alive
    check_invariants(pool)


def test_deadline_timer_firing_early_rearms_instead_of_stranding_the_waiter(make_pool):
    """libev may fire a timer a little before our monotonic deadline (its loop time is cached)."""
    pool = make_pool(max_connections=1)
    held = pool.acquire()
    waiter = gevent.spawn(pool.acquire, timeout=0.1)
    gevent.sleep(0)
    deadline = next(iter(pool._waiters)).deadline
    pool._timer._fire(gevent.get_hub().loop)  # an early fire: nobody is due yet
    gevent.sleep(0)
    assert not waiter.ready() and pool._timer.at == deadline
    with pytest.raises(PoolExhaustedError):
        waiter.get(timeout=2)  # and the re-armed timer still ends the wait
    assert not pool._timer.armed
    pool.release(held)
    check_invariants(pool)


def test_every_waiter_times_out_on_time_under_mixed_timeouts(make_pool):
    pool = make_pool(max_connections=1)
    held = pool.acquire()
    timeouts = [0.2, 0.05, 0.15, 0.1, 0.02]
    ended: dict[float, float] = {}
    start = time.monotonic()

    def wait(timeout):
        with pytest.raises(PoolExhaustedError):
            pool.acquire(timeout=timeout)
        ended[timeout] = time.monotonic() - start

    gevent.joinall([gevent.spawn(wait, t) for t in timeouts], timeout=5, raise_error=True)
    for timeout in timeouts:
        assert timeout - 0.005 <= ended[timeout] < timeout + 0.5, (timeout, ended[timeout])
    assert sorted(ended, key=ended.get) == sorted(timeouts)
    assert not pool._timer.armed
    pool.release(held)
    check_invariants(pool)


def test_waiter_killed_after_grant_passes_the_connection_on(make_pool, monkeypatch):
    """Granted but not yet resumed when killed: the connection must reach the next waiter."""
    pool = make_pool(max_connections=1)
    held = pool.acquire()
    first = gevent.spawn(pool.acquire)
    second = gevent.spawn(pool.acquire)
    gevent.sleep(0)
    wakeups = DeferredWakeups(pool, monkeypatch)
    pool.release(held)  # granted to `first`; its wake-up is held back
    first.kill()  # the kill lands first: `first` must pass the connection on to `second`
    wakeups.flush()
    assert second.get(timeout=1) is held
    assert first.dead and isinstance(first.value, gevent.GreenletExit)
    check_invariants(pool)
    assert pool.stats().in_use == 1
    pool.release(held)


def test_waiter_killed_after_slot_grant_frees_the_slot(make_pool, factory, monkeypatch):
    pool = make_pool(max_connections=1)
    held = pool.acquire()
    first = gevent.spawn(pool.acquire)
    second = gevent.spawn(pool.acquire)
    gevent.sleep(0)
    wakeups = DeferredWakeups(pool, monkeypatch)
    pool.drop(held)  # frees a slot: granted to `first`
    first.kill()
    wakeups.flush()
    conn = second.get(timeout=1)
    assert conn is not held and factory.calls == 2
    check_invariants(pool)
    pool.release(conn)


def test_outer_gevent_timeout_while_waiting_leaves_no_ghost(make_pool):
    pool = make_pool(max_connections=1)
    held = pool.acquire()

    def wait_with_outer_timeout():
        with gevent.Timeout(0.01):
            pool.acquire(timeout=5)

    g = gevent.spawn(wait_with_outer_timeout)
    g.join(timeout=2)
    assert isinstance(g.exception, gevent.Timeout)
    assert pool.stats().waiting == 0
    pool.release(held)
    assert pool.stats().idle == 1


def test_max_waiting_fails_fast(make_pool):
    pool = make_pool(max_connections=1, max_waiting=2)
    held = pool.acquire()
    waiters = [gevent.spawn(pool.acquire) for _ in range(2)]
    gevent.sleep(0)
    start = time.monotonic()
    with pytest.raises(PoolQueueFullError, match=r"2 waiting, max_waiting=2 reached"):
        pool.acquire(timeout=5)
    assert time.monotonic() - start < 0.1
    pool.release(held)
    for g in waiters:
        pool.release(g.get(timeout=1))


def test_max_waiting_zero_never_queues(make_pool):
    pool = make_pool(max_connections=1, max_waiting=0)
    held = pool.acquire()
    with pytest.raises(PoolExhaustedError, match="max_waiting=0"):
        pool.acquire(timeout=5)
    pool.release(held)


def test_greenlet_holding_every_connection_gets_an_error_not_a_hang(make_pool):
    pool = make_pool(max_connections=2)
    a, b = pool.acquire(), pool.acquire()
    start = time.monotonic()
    with pytest.raises(PoolExhaustedError, match="this greenlet already holds all 2 connections"):
        pool.acquire(timeout=10)
    assert time.monotonic() - start < 0.1
    pool.release(a)
    pool.release(b)


def test_holding_some_connections_still_waits_for_others(make_pool):
    pool = make_pool(max_connections=2)
    mine = pool.acquire()
    other = gevent.spawn(pool.acquire)
    theirs = other.get(timeout=1)
    gevent.spawn_later(0.01, pool.release, theirs)
    assert pool.acquire(timeout=2) is theirs
    pool.release(mine)
    pool.release(theirs)


def test_close_wakes_every_waiter_with_pool_closed_error(make_pool):
    pool = make_pool(max_connections=1)
    held = pool.acquire()
    waiters = [gevent.spawn(pool.acquire) for _ in range(5)]
    gevent.sleep(0)
    pool.close()
    gevent.joinall(waiters, timeout=1)
    assert all(isinstance(g.exception, PoolClosedError) for g in waiters)
    pool.release(held)  # quietly closed
    assert held.closed and pool.size == 0


def test_wait_statistics(make_pool):
    pool = make_pool(max_connections=1)
    held = pool.acquire()
    done = gevent.event.Event()

    def waiter():
        pool.release(pool.acquire())
        done.set()

    gevent.spawn(waiter)
    gevent.sleep(0.02)
    pool.release(held)
    done.wait(1)
    s = pool.stats()
    assert s.waits == 1 and 0.015 < s.wait_time_total < 1 and s.wait_time_max == s.wait_time_total

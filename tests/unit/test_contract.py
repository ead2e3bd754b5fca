"""The checkout contract, connects bounded by the deadline, errors per cause, misuse refused."""

from __future__ import annotations

import logging
import socket
import threading
import time

import gevent
import pytest

import gpool
from gpool import (
    ConnectFailedError,
    ConnectionHeldError,
    Pool,
    PoolDeadlockError,
    PoolExhaustedError,
    PoolOptions,
    PoolQueueFullError,
    PoolThreadError,
    PoolTimeoutError,
    TcpConnection,
)
from tests.fakes import FakeConn, FakeFactory
from tests.support import wait_until


class CleanConn(FakeConn):
    """A FakeConn with the checks of the contract, each scriptable."""

    def __init__(self, factory: FakeFactory) -> None:
        super().__init__(factory)
        self.clean = True
        self.clean_checks = 0
        self.check_timeouts: list[object] = []
        self.dirty_on_reset = False

    def reset(self) -> None:
        super().reset()
        if self.dirty_on_reset:
            self.clean = False

    def is_clean(self) -> bool:
        self.clean_checks += 1
        return self.clean

    def health_check(self, timeout: object) -> bool:
        self.check_timeouts.append(timeout)
        if self.factory.check_delay:
            gevent.sleep(self.factory.check_delay)
        return bool(self.healthy)


class CleanFactory(FakeFactory):
    def __init__(self, unclean_from_birth: bool = False) -> None:
        super().__init__()
        self.unclean_from_birth = unclean_from_birth

    def __call__(self, **options: object) -> CleanConn:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise self.error
        conn = CleanConn(self)
        conn.clean = not self.unclean_from_birth
        self.created.append(conn)
        return conn


# -- the checkout contract ----------------------------------------------------------------------------


def test_is_clean_runs_at_every_handout_and_an_unclean_connection_is_replaced(make_pool):
    factory = CleanFactory()
    pool = make_pool(factory=factory, max_connections=2)
    first = pool.acquire()
    pool.release(first)
    checks = first.clean_checks
    assert pool.acquire() is first and first.clean_checks == checks + 1  # the fast path checks too
    pool.release(first)
    first.clean = False  # a reply nobody asked for arrived while it was idle
    second = pool.acquire()
    assert second is not first and first.closed
    assert pool.stats().closed_check_failed == 1 and pool.size == 1


def test_a_connection_left_unclean_by_its_reset_is_not_kept(make_pool):
    factory = CleanFactory()
    pool = make_pool(factory=factory)
    conn = pool.acquire()
    conn.dirty_on_reset = True  # the reset's reply stays unread
    pool.release(conn)
    assert conn.closed and pool.size == 0 and pool.stats().closed_check_failed == 1


class SettlingConn(CleanConn):
    """Its reset leaves a reply on the wire (a ROLLBACK sent without waiting) that settle() reads."""

    def __init__(self, factory: FakeFactory) -> None:
        super().__init__(factory)
        self.owed = False
        self.settled: list[object] = []
        self.settle_result: object = True

    def reset(self) -> None:
        super().reset()
        self.owed = True

    def is_clean(self) -> bool:
        self.clean_checks += 1
        return self.clean and not self.owed

    def settle(self, timeout: object) -> object:
        self.settled.append(timeout)
        if self.factory.check_delay:
            if timeout == 0:
                return None  # the reply has not arrived: the pool must call again, waiting
            gevent.sleep(self.factory.check_delay)
        result, self.owed = self.settle_result, False
        return result


class SettlingFactory(CleanFactory):
    def __call__(self, **options: object) -> CleanConn:
        self.calls += 1
        conn = SettlingConn(self)
        self.created.append(conn)
        return conn


def test_settle_completes_the_reset_before_the_next_handout(make_pool):
    factory = SettlingFactory()
    pool = make_pool(factory=factory, max_connections=2, timeout=5.0)
    conn = pool.acquire()
    pool.release(conn)  # no is_clean() after its reset: settle() comes first, at the checkout
    assert conn.owed and not conn.closed and pool.stats().closed_check_failed == 0
    assert pool.acquire(timeout=3.0) is conn  # is_clean() said False: the slow path settled it
    assert conn.settled == [0.0] and not conn.owed  # the reply was there: settled without waiting
    pool.release(conn)
    factory.check_delay = 0.01  # the reply comes later: a second call waits, with the caller's deadline
    assert pool.acquire(timeout=3.0) is conn
    assert conn.settled == [0.0, 0.0, pytest.approx(3.0, abs=0.5)] and not conn.owed
    factory.check_delay = 0.0
    pool.release(conn)
    conn.settle_result = False  # e.g. the ROLLBACK failed, or the server closed: never handed out
    other = pool.acquire()
    assert other is not conn and conn.closed and pool.stats().closed_check_failed == 1


def test_settle_is_bounded_by_the_callers_deadline(make_pool):
    factory = SettlingFactory()
    factory.check_delay = 10.0  # the reply never comes
    pool = make_pool(factory=factory, max_connections=1, timeout=5.0)
    conn = pool.acquire()
    pool.release(conn)
    start = time.monotonic()
    with pytest.raises(gpool.PoolExhaustedError):
        pool.acquire(timeout=0.1)
    assert time.monotonic() - start < 1 and conn.closed and pool.size == 0


def test_health_check_gets_the_callers_remaining_deadline(make_pool, clock):
    factory = CleanFactory()
    pool = make_pool(factory=factory, check_interval=1.0, timeout=5.0)
    conn = pool.acquire()
    pool.release(conn)
    clock.advance(2)
    assert pool.acquire(timeout=3.0) is conn
    assert conn.check_timeouts == [pytest.approx(3.0)]


def test_frozen_health_check_ends_within_the_callers_timeout_and_says_so(make_pool):
    factory = CleanFactory()
    pool = make_pool(factory=factory, check_interval=0, timeout=5.0)
    pool.release(pool.acquire())
    factory.check_delay = 30  # a SIGSTOPped server: the PING never returns
    start = time.monotonic()
    with pytest.raises(PoolTimeoutError) as info:
        pool.acquire(timeout=0.3)
    assert time.monotonic() - start < 1.0
    assert "health check timed out" in str(info.value)
    assert pool.size == 0  # the connection that held half a check was dropped


def test_a_server_dropping_every_session_costs_few_connects_with_backoff(make_pool):
    factory = CleanFactory(unclean_from_birth=True)  # login succeeds, then the server hangs up
    pool = make_pool(factory=factory, timeout=1.0, retry_delay=0.05)
    start = time.monotonic()
    with pytest.raises(ConnectFailedError) as info:
        pool.acquire()
    took = time.monotonic() - start
    assert took < 1.5
    assert 3 <= factory.calls <= 12, factory.calls  # backoff, not a storm of thousands
    assert "closed the connection" in str(info.value)
    stats = pool.stats()
    assert stats.created - stats.closed == pool.size == 0  # every opened connection accounted for


# -- connects bounded by the deadline ---------------------------------------------------------------


def test_connects_are_retried_until_the_timeout_by_default(make_pool, factory):
    factory.fail = 6  # more than the old fixed 3 retries
    pool = make_pool(retry_delay=0.001, timeout=5.0)
    conn = pool.acquire()
    assert factory.calls == 7 and conn in factory.created


def test_a_set_retry_still_caps_the_attempts(make_pool, factory):
    factory.fail = 10
    pool = make_pool(retry=1, retry_delay=0.001)
    with pytest.raises(ConnectFailedError):
        pool.acquire()
    assert factory.calls == 2


@pytest.mark.parametrize("error", [TypeError("bad keyword"), ValueError("bad port"), PermissionError("denied")])
def test_errors_that_cannot_succeed_on_retry_fail_at_once(make_pool, error):
    factory = FakeFactory(fail=100, error=error)
    permanent = (lambda exc: isinstance(exc, PermissionError)) if isinstance(error, PermissionError) else None
    pool = make_pool(factory=factory, timeout=5.0, retry_delay=0.01,
                     **({"is_permanent_error": permanent} if permanent else {}))
    start = time.monotonic()
    with pytest.raises(ConnectFailedError) as info:
        pool.acquire()
    assert factory.calls == 1 and time.monotonic() - start < 0.5
    assert info.value.__cause__ is error
    assert f"{type(error).__name__}: {error}" in str(info.value)


def test_an_outage_is_logged_once_at_warning_and_its_end_at_info(make_pool, factory, caplog):
    caplog.set_level(logging.DEBUG, logger="gpool")
    factory.fail = 5
    pool = make_pool(retry_delay=0.001, name="db")
    pool.release(pool.acquire())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO and "connected again" in r.getMessage()]
    assert len(warnings) == 1 and "cannot connect: ConnectionRefusedError: refused" in warnings[0].getMessage()
    assert len(infos) == 1 and "5 failed attempts" in infos[0].getMessage()


def test_connect_error_text_loses_url_credentials(make_pool):
    factory = FakeFactory(fail=100, error=OSError("cannot reach mysql://app:s3cret@db:3306/shop"))
    pool = make_pool(factory=factory, retry=0)
    with pytest.raises(ConnectFailedError) as info:
        pool.acquire()
    assert "s3cret" not in str(info.value) and "mysql://***@db:3306/shop" in str(info.value)


# -- errors per cause ---------------------------------------------------------------------------------------


def test_each_cause_has_its_own_error_and_all_are_pool_exhausted(make_pool):
    for cls in (PoolTimeoutError, PoolQueueFullError, PoolDeadlockError, ConnectFailedError):
        assert issubclass(cls, PoolExhaustedError) and issubclass(cls, TimeoutError)
    pool = make_pool(max_connections=1, max_waiting=1)
    held = pool.acquire()
    with pytest.raises(PoolDeadlockError, match="already holds all 1 connections"):
        pool.acquire(timeout=5)
    waiter = gevent.spawn(pool.acquire, timeout=5)
    gevent.sleep(0)
    with pytest.raises(PoolQueueFullError, match="max_waiting=1"):
        gevent.spawn(pool.acquire, timeout=5).get()
    with pytest.raises(PoolTimeoutError, match="1/1 in use"):
        gevent.spawn(pool.acquire, timeout=0).get()
    pool.release(held)
    assert waiter.get(timeout=1) is held


# -- misuse refused -----------------------------------------------------------------------------------------


def test_second_release_after_someone_else_acquired_is_refused_and_changes_nothing(make_pool):
    pool = make_pool(max_connections=1)
    conn = pool.acquire()
    pool.release(conn)
    taken = gevent.event.Event()
    done = gevent.event.Event()

    def other():
        assert pool.acquire() is conn
        taken.set()
        done.wait()
        pool.release(conn)

    g = gevent.spawn(other)
    taken.wait(timeout=1)
    with pytest.raises(ConnectionHeldError, match="another live greenlet"):
        pool.release(conn)  # the bug: a second release of a connection someone else now holds
    with pytest.raises(ConnectionHeldError):
        pool.drop(conn)
    assert pool.stats().in_use == 1 and not conn.closed
    done.set()
    g.get(timeout=1)
    assert pool.stats().idle == 1


def test_transfer_hands_a_connection_to_another_greenlet(make_pool):
    pool = make_pool()
    conn = pool.acquire()
    worker = gevent.spawn(lambda: gevent.sleep(0) or pool.release(conn))
    pool.transfer(conn, worker)
    with pytest.raises(ConnectionHeldError):
        pool.release(conn)  # no longer ours
    worker.get(timeout=1)
    assert pool.stats().idle == 1 and pool.stats().in_use == 0
    with pytest.raises(TypeError, match="greenlet"):
        pool.transfer(pool.acquire(), "not a greenlet")


def test_a_dead_holders_connection_may_be_given_back_by_anyone(make_pool):
    pool = make_pool()
    conn = gevent.spawn(pool.acquire).get(timeout=1)
    pool.release(conn)
    assert pool.stats().idle == 1


def test_use_from_another_os_thread_is_refused_at_once(make_pool):
    pool = make_pool(max_connections=1)
    pool.release(pool.acquire())  # bound to this thread; one idle connection
    errors: list[BaseException] = []

    def in_thread(call):
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    idle = next(iter(pool._idle)).conn
    for call in (pool.acquire, lambda: pool.acquire(timeout=5), lambda: pool.drop(idle)):
        start = time.monotonic()
        thread = threading.Thread(target=in_thread, args=(call,))
        thread.start()
        thread.join(timeout=3)
        assert not thread.is_alive() and time.monotonic() - start < 1
    assert len(errors) == 3 and all(isinstance(e, PoolThreadError) for e in errors), errors
    assert pool.stats().idle == 1


@pytest.mark.parametrize("name", ["timeout", "max_lifetime", "idle_timeout", "check_interval", "retry_delay",
                                  "max_connections", "max_waiting", "leak_timeout", "reap_interval"])
def test_a_number_too_large_for_a_float_is_a_value_error_naming_the_parameter(name):
    with pytest.raises(ValueError, match=name):
        Pool(FakeFactory(), **{name: 10**400})


def test_acquire_timeout_too_large_or_not_finite_is_a_value_error(make_pool):
    pool = make_pool()
    for bad in (10**400, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            pool.acquire(timeout=bad)
    with pytest.raises(TypeError, match="timeout"):
        pool.connection(timeout="1")


def test_options_object_is_frozen_shared_and_validated_once():
    config = PoolOptions(max_connections=3, timeout=1.0)
    pool = Pool(FakeFactory(), config=config)
    assert pool.options is config and pool.max_connections == 3
    with pytest.raises(Exception):  # noqa: B017 - dataclasses.FrozenInstanceError
        config.timeout = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError, match="not both"):
        Pool(FakeFactory(), config=config, timeout=1.0)
    assert PoolOptions.split({"timeout": 1, "host": "h"}) == ({"timeout": 1}, {"host": "h"})
    pool.close()


def test_tcp_connection_detach_closes_only_this_process_copy():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    conn = TcpConnection("127.0.0.1", server.getsockname()[1], timeout=2)
    conn.open()
    peer, _ = server.accept()
    parked = gevent.spawn(conn.recv, 10)  # a parent greenlet awaiting a reply
    gevent.sleep(0)
    conn.detach()  # what the pool does in a forked child
    peer.sendall(b"the reply")
    with pytest.raises(OSError):
        parked.get(timeout=2)
    assert not conn.is_clean() and conn.socket is None
    peer.close()
    server.close()


def test_holder_that_died_holding_a_connection_is_reported_once(make_pool, caplog):
    caplog.set_level(logging.WARNING, logger="gpool")
    pool = make_pool()
    gevent.spawn(pool.acquire).join(timeout=1)
    pool._reap(None)
    pool._reap(None)
    dead = [r for r in caplog.records if "died without releasing" in r.getMessage()]
    assert len(dead) == 1 and pool.stats().dead_holders == 1
    assert pool.stats().in_use == 1  # reported, not reclaimed (that stays opt-in)


def test_public_errors_are_exported():
    for name in ("PoolTimeoutError", "PoolQueueFullError", "PoolDeadlockError", "ConnectFailedError",
                 "ConnectionHeldError", "PoolThreadError", "PoolOptions"):
        assert name in gpool.__all__


def test_a_waiter_timing_out_while_the_pools_connects_fail_gets_the_connect_error(make_pool):
    factory = FakeFactory(fail=1000)
    factory.delay = 0.05  # each connect attempt takes a while, so later callers queue behind them
    pool = make_pool(factory=factory, max_connections=1, timeout=0.4, retry_delay=0.01)
    first = gevent.spawn(pool.acquire)
    wait_until(lambda: pool.stats().connecting == 1, what="the first caller connecting")
    with pytest.raises(ConnectFailedError) as info:  # queued the whole time: it never connected itself
        pool.acquire(timeout=0.1)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert "the pool's last connect error: ConnectionRefusedError" in str(info.value)
    with pytest.raises(ConnectFailedError):
        first.get(timeout=2)

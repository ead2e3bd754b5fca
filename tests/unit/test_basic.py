"""Acquire, release, drop, the context manager, accounting, stats, repr and bad input."""

from __future__ import annotations

import logging

import gevent
import pytest

import gpool
from gpool import ConnectionNotFoundError, Pool, PoolClosedError, PoolError, PoolExhaustedError, PoolStats
from gpool._invariants import check_invariants
from tests.fakes import FakeFactory


def test_public_api_is_exported_and_sorted():
    assert gpool.__all__ == sorted(gpool.__all__)
    for name in gpool.__all__:
        assert hasattr(gpool, name)
    assert issubclass(PoolExhaustedError, PoolError) and issubclass(PoolExhaustedError, TimeoutError)
    assert issubclass(ConnectionNotFoundError, PoolError) and issubclass(ConnectionNotFoundError, ValueError)
    assert issubclass(PoolClosedError, PoolError)


def test_acquire_creates_then_release_makes_idle(make_pool, factory):
    pool = make_pool()
    conn = pool.acquire()
    assert factory.calls == 1 and pool.size == 1
    assert pool.stats().in_use == 1
    pool.release(conn)
    assert pool.stats().idle == 1 and pool.stats().in_use == 0
    assert pool.acquire() is conn, "an idle connection is reused before creating"
    assert factory.calls == 1


def test_factory_gets_options_as_keywords(make_pool, factory):
    pool = make_pool(options={"host": "h", "port": 1})
    pool.release(pool.acquire())
    assert factory.options == [{"host": "h", "port": 1}]


def test_open_is_called_when_the_object_has_it(make_pool):
    class Openable:
        opened = 0

        def open(self):
            Openable.opened += 1

    pool = make_pool(factory=Openable)
    pool.release(pool.acquire())
    assert Openable.opened == 1


def test_any_object_can_be_pooled(make_pool):
    pool = make_pool(factory=lambda: object())
    a = pool.acquire()
    pool.release(a)
    assert pool.acquire() is a
    pool.drop(a)
    assert pool.size == 0


def test_unhashable_objects_are_tracked(make_pool):
    pool = make_pool(factory=list)
    a, b = pool.acquire(), pool.acquire()
    assert a is not b
    pool.release(a)
    pool.release(b)
    assert pool.stats().idle == 2


def test_idle_reuse_is_lifo(make_pool):
    pool = make_pool(max_connections=3)
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    for conn in (a, b, c):
        pool.release(conn)
    assert pool.acquire() is c
    assert pool.acquire() is b
    assert pool.acquire() is a


def test_initial_connections_are_opened_by_the_constructor(factory):
    with Pool(factory, None, 3, 5) as pool:
        assert factory.calls == 3
        assert pool.stats().idle == 3 and pool.size == 3


def test_constructor_failure_closes_what_it_opened():
    factory = FakeFactory()
    factory.fail = 0

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) > 1:
            raise ConnectionRefusedError("down")
        return factory()

    with pytest.raises(PoolExhaustedError) as info:
        Pool(flaky, None, 2, 2, retry=0, timeout=1)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert factory.created[0].closed


def test_positional_signature_of_the_older_gevent_pools(factory):
    with Pool(factory, {"a": 1}, 1, 4, False, 5.0) as pool:
        assert pool.max_connections == 4 and pool.size == 1
        assert pool._reaper is None, "reap_expired_connections=False starts no reaper"


def test_release_twice_raises_and_changes_nothing(make_pool):
    pool = make_pool()
    conn = pool.acquire()
    pool.release(conn)
    before = pool.stats()
    with pytest.raises(ConnectionNotFoundError, match="already released"):
        pool.release(conn)
    assert pool.stats() == before


def test_release_or_drop_of_a_foreign_connection_raises(make_pool):
    pool = make_pool()
    other = make_pool()
    foreign = other.acquire()
    with pytest.raises(ConnectionNotFoundError):
        pool.release(foreign)
    with pytest.raises(ConnectionNotFoundError):
        pool.drop(foreign)
    with pytest.raises(ConnectionNotFoundError):
        pool.drop(object())
    other.release(foreign)


def test_drop_in_use_closes_and_frees_the_slot(make_pool, factory):
    pool = make_pool(max_connections=1)
    conn = pool.acquire()
    pool.drop(conn)
    assert conn.closed and pool.size == 0
    assert pool.stats().dropped == 1
    assert pool.acquire() is not conn


def test_drop_idle_closes_it(make_pool):
    pool = make_pool()
    conn = pool.acquire()
    pool.release(conn)
    pool.drop(conn)
    assert conn.closed and pool.size == 0 and pool.stats().idle == 0


def test_connection_context_releases_on_success(make_pool):
    pool = make_pool()
    with pool.connection() as conn:
        assert pool.stats().in_use == 1
    assert pool.stats().idle == 1 and not conn.closed


def test_user_error_propagates_unchanged_and_connection_is_reset_and_released(make_pool):
    pool = make_pool()
    error = KeyError("mine")
    with pytest.raises(KeyError) as info, pool.connection() as conn:
        raise error
    assert info.value is error
    assert conn.reset_calls == 1 and not conn.closed
    assert pool.stats().idle == 1


@pytest.mark.parametrize("exc", [ConnectionResetError("reset"), TimeoutError("socket timeout"), EOFError()])
def test_socket_errors_in_the_block_drop_the_connection(make_pool, exc):
    pool = make_pool()
    with pytest.raises(type(exc)), pool.connection() as conn:
        raise exc
    assert conn.closed and pool.size == 0 and pool.stats().dropped == 1


@pytest.mark.parametrize("exc", [gevent.Timeout(), KeyboardInterrupt(), gevent.GreenletExit()])
def test_base_exceptions_in_the_block_drop_the_connection(make_pool, exc):
    pool = make_pool()
    with pytest.raises(type(exc)), pool.connection() as conn:
        raise exc
    assert conn.closed and pool.size == 0


def test_is_fatal_hook_classifies_errors(make_pool):
    class Conn:
        def __init__(self):
            self.closed = False

        def close(self):
            self.closed = True

        def is_fatal(self, exc):
            return isinstance(exc, LookupError)

    pool = make_pool(factory=Conn)
    with pytest.raises(KeyError), pool.connection() as c1:
        raise KeyError
    assert c1.closed
    with pytest.raises(OSError), pool.connection() as c2:
        raise OSError("not fatal for this connection")
    assert not c2.closed and pool.stats().idle == 1


def test_is_fatal_that_raises_drops_the_connection(make_pool):
    class Conn:
        closed = False

        def close(self):
            self.closed = True

        def is_fatal(self, exc):
            raise RuntimeError("bug in hook")

    pool = make_pool(factory=Conn)
    with pytest.raises(ValueError), pool.connection() as conn:
        raise ValueError
    assert conn.closed


def test_block_that_released_its_connection_itself_keeps_its_own_error(make_pool):
    pool = make_pool()
    with pytest.raises(ZeroDivisionError), pool.connection() as conn:
        pool.release(conn)
        raise ZeroDivisionError
    check_invariants(pool)
    assert pool.stats().idle == 1


def test_failing_reset_drops_the_connection_without_raising(make_pool, factory, caplog):
    pool = make_pool()
    factory.reset_error = RuntimeError("reset broke")
    conn = pool.acquire()
    with caplog.at_level(logging.WARNING, logger="gpool"):
        pool.release(conn)
    assert conn.closed and pool.size == 0
    assert "reset on release failed" in caplog.text


def test_stats_are_a_frozen_snapshot(make_pool):
    pool = make_pool()
    conn = pool.acquire()
    snap = pool.stats()
    assert isinstance(snap, PoolStats)
    with pytest.raises(AttributeError):
        snap.size = 5  # type: ignore[misc]
    pool.release(conn)
    assert snap.in_use == 1 and pool.stats().in_use == 0
    fields = snap.as_dict()
    for key in ("name", "size", "idle", "in_use", "waiting", "max_connections", "created", "closed", "acquired",
                "released", "dropped", "reaped", "timeouts", "connect_errors", "wait_time_total"):
        assert key in fields


def test_counters_count(make_pool):
    pool = make_pool(max_connections=2)
    a = pool.acquire()
    b = pool.acquire()
    pool.release(a)
    pool.drop(b)
    s = pool.stats()
    assert (s.created, s.acquired, s.released, s.dropped, s.closed) == (2, 2, 1, 1, 1)


def test_repr_shows_name_and_counts_but_never_options(make_pool):
    pool = make_pool(name="db", options={"password": "hunter2"})
    conn = pool.acquire()
    text = repr(pool)
    assert "'db'" in text and "size=1/2" in text and "in_use=1" in text
    assert "hunter2" not in text and "password" not in text
    pool.release(conn)


def test_default_name_is_unique(make_pool):
    assert make_pool().name != make_pool().name


def test_checked_out_reports_holder_and_time(make_pool):
    pool = make_pool()
    conn = pool.acquire()
    [(c, holder, since)] = list(pool.checked_out())
    assert c is conn and holder is gevent.getcurrent() and since > 0
    pool.release(conn)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"max_connections": 0}, ValueError, "max_connections must be > 0, got 0"),
        ({"max_connections": -1}, ValueError, "max_connections"),
        ({"max_connections": 2.5}, TypeError, "max_connections must be an integer, got 2.5"),
        ({"max_connections": True}, TypeError, "max_connections"),
        ({"initial_connections": 3, "max_connections": 2}, ValueError, "initial_connections must be <= "),
        ({"initial_connections": -1}, ValueError, "initial_connections"),
        ({"timeout": -1}, ValueError, "timeout must be >= 0, got -1"),
        ({"timeout": "5"}, TypeError, "timeout must be a number or None, got '5'"),
        ({"timeout": float("nan")}, ValueError, "timeout"),
        ({"reap_interval": 0}, ValueError, "reap_interval must be > 0, got 0"),
        ({"reap_expired_connections": "yes"}, TypeError, "reap_expired_connections"),
        ({"max_lifetime": 0}, ValueError, "max_lifetime"),
        ({"idle_timeout": -5}, ValueError, "idle_timeout"),
        ({"max_waiting": -1}, ValueError, "max_waiting"),
        ({"max_usage": 0}, ValueError, "max_usage"),
        ({"check_interval": -1}, ValueError, "check_interval"),
        ({"retry": -1}, ValueError, "retry"),
        ({"retry": 1.5}, TypeError, "retry"),
        ({"retry_delay": -0.1}, ValueError, "retry_delay"),
        ({"name": 5}, TypeError, "name must be a string"),
        ({"options": [1, 2]}, TypeError, "options must be a mapping"),
        ({"factory": "not callable"}, TypeError, "factory must be callable, got 'not callable'"),
    ],
)
def test_bad_constructor_arguments_name_the_parameter_and_value(factory, kwargs, error, words):
    kwargs.setdefault("factory", factory)
    with pytest.raises(error) as info:
        Pool(**kwargs)
    assert words in str(info.value)
    assert factory.calls == 0


def test_bad_timeout_argument_to_acquire_and_connection(make_pool):
    pool = make_pool()
    with pytest.raises(ValueError, match="timeout must be >= 0, got -2"):
        pool.acquire(timeout=-2)
    with pytest.raises(TypeError, match="timeout"):
        pool.connection(timeout="1")
    assert pool.size == 0


def test_logger_has_a_null_handler():
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("gpool").handlers)


def test_import_gpool_does_not_import_the_adapters():
    import subprocess
    import sys

    code = "import sys, gpool; print('pymysql' in sys.modules, 'redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_reset_returning_false_drops_quietly(make_pool, caplog):
    class Conn:
        closed = False

        def close(self):
            self.closed = True

        def reset(self):
            return False

    pool = make_pool(factory=Conn)
    conn = pool.acquire()
    with caplog.at_level(logging.DEBUG, logger="gpool"):
        pool.release(conn)
    assert conn.closed and pool.size == 0 and pool.stats().closed_broken == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_drop_with_a_reason_is_counted_under_it(make_pool):
    pool = make_pool()
    pool.drop(pool.acquire(), reason="interrupted")
    assert pool.stats().closed_interrupted == 1 and pool.stats().closed_dropped == 0
    conn = pool.acquire()
    with pytest.raises(ValueError, match=r"reason must be one of .*got 'bogus'"):
        pool.drop(conn, reason="bogus")
    assert pool.stats().in_use == 1
    pool.release(conn)

"""Bad input: hypothesis drives the core pool with random call sequences and constructor arguments.

A ``RuleBasedStateMachine`` keeps a model of the pool (which connections are in use, which are idle in
what order, which are closed) and after every step compares it with the pool: the structural invariants
hold, the gauges and counters agree with the model, every connection the factory opened is either
tracked or closed (exactly once), and every invalid call raises the documented error and changes nothing.
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from gpool import ConnectionNotFoundError, Pool, PoolClosedError, PoolExhaustedError
from gpool._invariants import check_invariants
from tests.fakes import FakeConn, FakeFactory


class CountingFactory(FakeFactory):
    """A FakeFactory whose connections count close() calls (FakeConn's own assert would be swallowed
    by the pool, which logs errors from close())."""

    def __call__(self, **options: Any) -> FakeConn:
        conn = super().__call__(**options)
        conn.close_calls = 0  # type: ignore[attr-defined]

        def close() -> None:
            conn.close_calls += 1  # type: ignore[attr-defined]
            if not conn.closed:
                FakeConn.close(conn)

        conn.close = close  # type: ignore[method-assign]
        return conn


class PoolMachine(RuleBasedStateMachine):
    """The model: ``held`` (in use, by this greenlet), ``idle`` (LIFO: the pool hands out the last one),
    ``usage`` per connection, ``closed``."""

    held_conns = Bundle("held")
    gone_conns = Bundle("gone")  # released or dropped once: a second release/drop is invalid

    def __init__(self) -> None:
        super().__init__()
        self.pool: Optional[Pool[Any]] = None

    @initialize(
        max_connections=st.integers(1, 4),
        initial=st.integers(0, 4),
        max_usage=st.one_of(st.none(), st.integers(1, 3)),
        check=st.booleans(),
    )
    def build(self, max_connections: int, initial: int, max_usage: Optional[int], check: bool) -> None:
        initial = min(initial, max_connections)
        self.factory = CountingFactory()
        self.max = max_connections
        self.max_usage = max_usage
        self.check = check  # check_interval=0: every idle checkout asks is_connected()
        self.pool = Pool(self.factory, None, initial, max_connections, False, timeout=None,
                         max_lifetime=None, idle_timeout=None, max_usage=max_usage,
                         check_interval=0 if check else None)
        self.held: list[FakeConn] = []
        self.idle: list[FakeConn] = list(self.factory.created)
        self.usage: dict[int, int] = {}
        self.closed = False
        self.other = FakeFactory()  # foreign connections come from here

    # -- helpers

    def _fresh_idle(self) -> Optional[FakeConn]:
        """What acquire() must return from the idle stack, closing what fails expiry or the check."""
        while self.idle:
            conn = self.idle.pop()
            if conn.expired or (self.check and conn.healthy is False):
                continue  # the pool closes it and tries the next
            return conn
        return None

    def _retire_or_idle(self, conn: FakeConn) -> None:
        if self.closed or self.factory.reset_error is not None or conn.expired or (
                self.max_usage is not None and self.usage[conn.id] >= self.max_usage):
            return  # closed by release
        self.idle.append(conn)

    # -- valid calls

    @precondition(lambda self: not self.closed and len(self.held) < self.max)
    @rule(target=held_conns)
    def acquire(self) -> FakeConn:
        expected = self._fresh_idle()
        conn = self.pool.acquire(timeout=0)
        if expected is not None:
            assert conn is expected, "not the most recently released healthy idle connection"
        else:
            assert conn is self.factory.created[-1] and not conn.closed, "expected a new connection"
        self.held.append(conn)
        self.usage[conn.id] = self.usage.get(conn.id, 0) + 1
        return conn

    @rule(target=gone_conns, conn=consumes(held_conns))
    def release(self, conn: FakeConn) -> FakeConn:
        self.pool.release(conn)
        self.held.remove(conn)
        self._retire_or_idle(conn)
        return conn

    @rule(target=gone_conns, conn=consumes(held_conns))
    def drop_held(self, conn: FakeConn) -> FakeConn:
        self.pool.drop(conn)
        self.held.remove(conn)
        return conn

    @precondition(lambda self: bool(self.idle))
    @rule(data=st.data())
    def drop_idle(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(self.idle))
        self.pool.drop(conn)
        self.idle.remove(conn)

    @precondition(lambda self: bool(self.idle) or bool(self.held))
    @rule(data=st.data(), healthy=st.booleans())
    def expire_or_break(self, data: st.DataObject, healthy: bool) -> None:
        """The server side: a connection expires (is_expired) or its health check starts failing."""
        conn = data.draw(st.sampled_from(self.idle + self.held))
        if healthy:
            conn.expired = True
        else:
            conn.healthy = False

    @rule(failing=st.booleans())
    def reset_fails(self, failing: bool) -> None:
        self.factory.reset_error = RuntimeError("reset failed") if failing else None

    @rule()
    def drop_expired(self) -> None:
        expected = [c for c in self.idle if c.expired]
        assert self.pool.drop_expired() == len(expected)
        self.idle = [c for c in self.idle if not c.expired]

    @rule()
    def close(self) -> None:
        self.pool.close()
        self.closed = True
        self.idle.clear()

    # -- invalid calls: the documented error, and nothing changes

    @precondition(lambda self: not self.closed and len(self.held) == self.max)
    @rule()
    def acquire_when_all_held(self) -> None:
        before = self.pool.stats()
        with pytest.raises(PoolExhaustedError, match="exhausted"):
            self.pool.acquire(timeout=0)
        after = self.pool.stats()
        assert (after.size, after.in_use, after.timeouts) == (before.size, before.in_use, before.timeouts + 1)

    @precondition(lambda self: self.closed)
    @rule()
    def acquire_after_close(self) -> None:
        with pytest.raises(PoolClosedError, match="closed"):
            self.pool.acquire(timeout=0)
        with pytest.raises(PoolClosedError), self.pool.connection(timeout=0):
            pass  # pragma: no cover

    @rule(conn=gone_conns, how=st.sampled_from(["release", "drop"]))
    def release_or_drop_again(self, conn: FakeConn, how: str) -> None:
        assume(conn not in self.held and conn not in self.idle)  # it may have been handed out again
        with pytest.raises(ConnectionNotFoundError, match="does not track"):
            getattr(self.pool, how)(conn)

    @precondition(lambda self: bool(self.idle))
    @rule(data=st.data())
    def release_idle(self, data: st.DataObject) -> None:
        """An idle connection is not in use: releasing it is a double release."""
        conn = data.draw(st.sampled_from(self.idle))
        with pytest.raises(ConnectionNotFoundError):
            self.pool.release(conn)

    @rule(how=st.sampled_from(["release", "drop"]), kind=st.sampled_from(["fake", "object", "none"]))
    def foreign(self, how: str, kind: str) -> None:
        thing = {"fake": lambda: self.other(), "object": object, "none": lambda: None}[kind]()
        with pytest.raises(ConnectionNotFoundError):
            getattr(self.pool, how)(thing)

    @rule(timeout=st.one_of(st.floats(max_value=-1e-9), st.just(math.nan), st.sampled_from(["1", True, [], b"0"])))
    def acquire_bad_timeout(self, timeout: Any) -> None:
        error = TypeError if isinstance(timeout, (str, bool, list, bytes)) else ValueError
        with pytest.raises(error, match="timeout"):
            self.pool.acquire(timeout=timeout)
        with pytest.raises(error, match="timeout"):
            self.pool.connection(timeout=timeout)

    # -- after every step

    @invariant()
    def pool_matches_model(self) -> None:
        if self.pool is None:
            return
        pool = self.pool
        check_invariants(pool)
        stats = pool.stats()
        assert stats.in_use == len(self.held), (stats, self.held)
        assert stats.idle == len(self.idle), (stats, self.idle)
        assert stats.connecting == 0 and stats.waiting == 0
        assert pool.size == len(self.held) + len(self.idle) <= self.max
        assert [e.conn for e in pool._idle] == self.idle, "idle order differs from the model"
        tracked = {id(c) for c in self.held + self.idle}
        for conn in self.factory.created:
            assert conn.close_calls <= 1, f"{conn} closed {conn.close_calls} times"
            assert (id(conn) in tracked) != conn.closed, f"{conn}: tracked and closed, or neither (leak)"
        assert stats.created == len(self.factory.created)
        assert stats.closed == len(self.factory.closed)
        assert pool.closed == self.closed

    def teardown(self) -> None:
        if self.pool is not None:
            self.pool.close()
            for conn in list(self.held):
                self.pool.release(conn)  # closed quietly after close()
            assert all(c.closed for c in self.factory.created)
            assert self.pool.size == 0


TestPoolModel = PoolMachine.TestCase
TestPoolModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])


# -- known bug -------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, 1e-9])
def test_initial_connections_with_a_spent_deadline_do_not_hang(timeout: float) -> None:
    """``Pool(f, None, 1, 2, timeout=0)`` must construct (or raise), not spin forever.

    ``_fill`` treats ``_connect``'s ``(None, None)`` (no connection, no error: the deadline was spent
    before the first attempt) as "forked mid-connect, start over" and loops without yielding. Run in
    a subprocess: the spin never yields, so only a process timeout can stop it.
    """
    code = f"from gpool import Pool; p = Pool(object, None, 1, 2, timeout={timeout!r}); print(p.size)"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"Pool(..., initial_connections=1, timeout={timeout}) hung for 5 s (CPU spin in _fill)")
    assert (result.returncode == 0 and result.stdout.strip() == "1") or "gpool.errors.Pool" in result.stderr


# -- constructor arguments ------------------------------------------------------------------------

NUMBERS = st.one_of(st.integers(-3, 50), st.floats(allow_nan=True, allow_infinity=True, width=32))
JUNK = st.sampled_from(["3", b"3", [], True, False, object()])


def _valid(name: str, value: Any, args: dict[str, Any]) -> bool:
    """The documented rule for each parameter (bool is never a number; numbers are finite: None means no limit)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_num = (is_int or isinstance(value, float)) and not (isinstance(value, float) and not math.isfinite(value))
    if name == "max_connections":
        return is_int and value > 0
    if name == "initial_connections":
        return is_int and value >= 0
    if name in ("retry", "max_waiting"):
        return value is None or (is_int and value >= 0)
    if name == "max_usage":
        return value is None or (is_int and value > 0)
    if name in ("timeout", "check_interval"):
        return value is None or (is_num and value >= 0)
    if name in ("max_lifetime", "idle_timeout"):
        return value is None or (is_num and value > 0)
    if name == "reap_interval":
        return is_num and value > 0
    if name == "retry_delay":
        return is_num and value >= 0
    if name == "reap_expired_connections":
        return isinstance(value, bool)
    if name == "name":
        return value is None or isinstance(value, str)
    raise AssertionError(name)


PARAMS = {
    "max_connections": st.one_of(st.integers(-2, 6), JUNK, st.just(2.0)),
    "initial_connections": st.one_of(st.integers(-2, 6), JUNK, st.just(1.0)),
    "reap_expired_connections": st.one_of(st.booleans(), st.sampled_from([0, 1, "yes", None])),
    "reap_interval": st.one_of(NUMBERS, JUNK),
    "timeout": st.one_of(st.none(), NUMBERS, JUNK),
    "max_lifetime": st.one_of(st.none(), NUMBERS, JUNK),
    "idle_timeout": st.one_of(st.none(), NUMBERS, JUNK),
    "max_waiting": st.one_of(st.none(), st.integers(-2, 5), JUNK, st.just(1.5)),
    "max_usage": st.one_of(st.none(), st.integers(-2, 5), JUNK, st.just(1.5)),
    "check_interval": st.one_of(st.none(), NUMBERS, JUNK),
    "retry": st.one_of(st.none(), st.integers(-2, 5), JUNK, st.just(1.5)),
    "retry_delay": st.one_of(NUMBERS, JUNK),
    "name": st.one_of(st.none(), st.text(max_size=5), st.integers(0, 3), JUNK),
}


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional=PARAMS))
def test_constructor_accepts_valid_and_names_the_bad_parameter(kwargs: dict[str, Any]) -> None:
    bad = [name for name, value in kwargs.items() if not _valid(name, value, kwargs)]
    max_ok = kwargs.get("max_connections", 10)
    initial = kwargs.get("initial_connections", 0)
    if not {"max_connections", "initial_connections"} & set(bad) and initial > max_ok:
        bad.append("initial_connections")
    factory = FakeFactory()
    if bad:
        with pytest.raises((ValueError, TypeError)) as info:
            Pool(factory, **kwargs)
        message = str(info.value)
        assert any(name in message for name in bad), (bad, message)
        assert factory.calls == 0, "nothing is opened when an argument is bad"
        return
    pool = Pool(factory, **kwargs)
    try:
        assert pool.max_connections == max_ok
        assert pool.size == initial == len(factory.created)
        if kwargs.get("name"):
            assert pool.name == kwargs["name"]
        check_invariants(pool)
    finally:
        pool.close()
    assert all(c.closed for c in factory.created)


@settings(max_examples=100, deadline=None)
@given(factory=st.sampled_from([None, 3, "factory", object()]),
       options=st.sampled_from([None, {}, {"a": 1}, [("a", 1)], "a=1", 3]))
def test_constructor_rejects_bad_factory_and_options(factory: Any, options: Any) -> None:
    if factory is None or not callable(factory):
        with pytest.raises(TypeError, match="factory must be callable"):
            Pool(factory, options)
        return
    pytest.fail("unreachable")  # pragma: no cover


@settings(max_examples=50, deadline=None)
@given(options=st.sampled_from([[("a", 1)], "a=1", 3, b"x"]))
def test_constructor_rejects_options_that_are_not_a_mapping(options: Any) -> None:
    with pytest.raises(TypeError, match="options must be a mapping"):
        Pool(FakeFactory(), options)

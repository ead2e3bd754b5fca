"""Fake connections and helpers for the core pool's unit tests (no servers)."""

from __future__ import annotations

import itertools
import time
from typing import Any, Optional

import gevent
import pytest

from gpool import Pool, _entry


class FakeConn:
    """A connection with every optional hook, each scriptable per test."""

    ids = itertools.count(1)

    def __init__(self, factory: FakeFactory) -> None:
        self.id = next(self.ids)
        self.factory = factory
        self.closed = False
        self.healthy = True
        self.expired = False
        self.reset_calls = 0
        self.checks = 0

    def __repr__(self) -> str:
        return f"<FakeConn {self.id}{' closed' if self.closed else ''}>"

    def open(self) -> None:
        if self.factory.open_delay:
            gevent.sleep(self.factory.open_delay)  # a handshake

    def close(self) -> None:
        assert not self.closed, "closed twice"
        try:
            if self.factory.close_delay:
                gevent.sleep(self.factory.close_delay)  # a polite goodbye over a slow network
        finally:
            self.closed = True
            self.factory.closed.append(self)

    def is_connected(self) -> bool:
        self.checks += 1
        if self.factory.check_delay:
            gevent.sleep(self.factory.check_delay)
        if isinstance(self.healthy, BaseException):
            raise self.healthy
        return self.healthy

    def is_expired(self) -> bool:
        return self.expired

    def reset(self) -> None:
        self.reset_calls += 1
        if self.factory.reset_delay:
            gevent.sleep(self.factory.reset_delay)
        if self.factory.reset_error is not None:
            raise self.factory.reset_error


class FakeFactory:
    """``factory(**options)`` for the pool: counts creations, can be slow or fail."""

    def __init__(self, delay: float = 0.0, fail: int = 0, error: Optional[BaseException] = None) -> None:
        self.delay = delay
        self.fail = fail  # fail this many next calls
        self.error = error or ConnectionRefusedError("refused")
        self.created: list[FakeConn] = []
        self.closed: list[FakeConn] = []
        self.calls = 0
        self.concurrent = 0
        self.max_concurrent = 0
        self.check_delay = 0.0
        self.open_delay = 0.0
        self.close_delay = 0.0
        self.reset_delay = 0.0
        self.reset_error: Optional[BaseException] = None
        self.options: list[dict[str, Any]] = []

    def __call__(self, **options: Any) -> FakeConn:
        self.calls += 1
        self.options.append(options)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.delay:
                gevent.sleep(self.delay)
            if self.fail:
                self.fail -= 1
                raise self.error
            conn = FakeConn(self)
            self.created.append(conn)
            return conn
        finally:
            self.concurrent -= 1

    @property
    def open(self) -> list[FakeConn]:
        return [c for c in self.created if not c.closed]


def check_invariants(pool: Pool[Any]) -> None:
    """The structural invariants every test may assert after any step."""
    idle_ids = [id(e.conn) for e in pool._idle]
    assert len(idle_ids) == len(set(idle_ids)), "a connection is idle twice"
    assert not set(idle_ids) & set(pool._in_use), "a connection is both idle and in use"
    assert pool._pending >= 0
    assert pool.size <= pool.max_connections
    assert all(w.state == _entry.WAITING for w in pool._waiters), "a granted waiter is still queued"
    if pool._waiters:
        assert not pool._idle, "idle connections while greenlets wait"
    for key, entry in pool._in_use.items():
        assert id(entry.conn) == key
    # The one deadline timer is armed no later than the earliest waiter's deadline, and only while
    # someone waits: an armed timer keeps the hub's loop (gevent.wait(), the process) alive.
    # (A waiter already due was woken by the timer's last fire and is about to leave the queue.)
    if pool._timer is not None:
        assert pool._waiters, "deadline timer armed with nobody waiting"
    now = time.monotonic()
    upcoming = [t for w in pool._waiters if (t := min(w.deadline, w.grow_at)) > now]
    assert pool._timer_at <= min(upcoming, default=float("inf")), "a waiter's deadline is not covered"


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
def make_pool(factory: FakeFactory):
    pools: list[Pool[Any]] = []

    def make(**kwargs: Any) -> Pool[Any]:
        kwargs.setdefault("factory", factory)
        kwargs.setdefault("max_connections", 2)
        kwargs.setdefault("timeout", 2.0)
        pool = Pool(**kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        check_invariants(pool)
        pool.close()


class Clock:
    """A stand-in for time.monotonic that tests step by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("gpool.pool.monotonic", clock)
    return clock

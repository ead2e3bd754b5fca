"""Test fakes shared by the unit, fault and model suites: fake connections, a fake factory, a stepped clock."""

from __future__ import annotations

import itertools
from typing import Any, Optional

import gevent


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


class Clock:
    """A stand-in for time.monotonic that tests step by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

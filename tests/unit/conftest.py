"""Fixtures for the core pool's unit tests (no servers, no monkey-patching)."""

from __future__ import annotations

from typing import Any

import pytest

from gpool import Pool
from gpool._invariants import check_invariants
from gpool.pool import _live_pools
from tests.fakes import Clock, FakeFactory

# Every module of the core that reads the clock: a stepped clock replaces it in all of them.
_CLOCK_USERS = ("gpool.pool", "gpool._connect", "gpool._health", "gpool._waiting", "gpool._invariants")


@pytest.fixture(autouse=True)
def invariants_hold_after_every_test() -> Any:
    """Every pool still alive after a unit test is consistent, whoever built it."""
    yield
    for pool in list(_live_pools):
        check_invariants(pool)


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


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    for module in _CLOCK_USERS:
        monkeypatch.setattr(f"{module}.monotonic", clock)
    return clock

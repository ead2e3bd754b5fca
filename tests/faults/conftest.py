"""Fixtures of the fault tests: fault proxies in front of the test servers, greenlet leak checks."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any, Callable

import gevent
import pytest

from gpool._invariants import check_invariants
from gpool.pool import _live_pools

from .proxy import FaultProxy


@pytest.fixture(autouse=True)
def invariants_hold_after_every_test() -> Iterator[None]:
    """Every pool still alive after a fault test (adapters' core pools included) is consistent."""
    yield
    for pool in list(_live_pools):
        check_invariants(pool)


def running_greenlets() -> set[Any]:
    """Every ``gevent.Greenlet`` (spawned work, not the hub's own threads) that has not finished."""
    current = gevent.getcurrent()
    return {g for g in gc.get_objects() if isinstance(g, gevent.Greenlet) and not g.dead and g is not current}


@pytest.fixture
def no_greenlet_left() -> Iterator[None]:
    """Fail the test when a greenlet it started is still running once it is done (after a short grace)."""
    before = running_greenlets()
    yield
    deadline = 2.0
    left: set[Any] = set()
    for _ in range(int(deadline / 0.01)):
        left = running_greenlets() - before
        if not left:
            return
        gevent.sleep(0.01)
    pytest.fail(f"{len(left)} greenlets still running after the test: {sorted(map(repr, left))[:5]}")


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[tuple[str, int]], FaultProxy]]:
    """``make(target)``: a started :class:`FaultProxy`; each is stopped at the end and must leave nothing."""
    proxies: list[FaultProxy] = []

    def make(target: tuple[str, int], **kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(target, **kwargs).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()
        assert proxy.greenlets == 0 and proxy.active == 0, proxy


@pytest.fixture
def redis_proxy(redis_server: Any, proxy_factory: Callable[..., FaultProxy]) -> FaultProxy:
    """A fault proxy in front of the shared Redis."""
    return proxy_factory((redis_server.host, redis_server.port))


@pytest.fixture
def mysql_proxy(mysql_server: Any, proxy_factory: Callable[..., FaultProxy]) -> FaultProxy:
    """A fault proxy in front of the shared MariaDB."""
    return proxy_factory((mysql_server.host, mysql_server.port))

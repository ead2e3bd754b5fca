"""Kills and gevent.Timeouts at every yield point of the core pool, over a real network to Redis.

The connections speak RESP through the fault proxy, so each yield point is real I/O that a stalled or
blackholed network freezes: waiting (no I/O), connecting (handshake), checking (PING), using (a command),
resetting (SELECT 0 on release), releasing and dropping (a polite QUIT on close). After each interrupt:
size never exceeded ``max_connections``, nothing is left in use, the whole capacity can be held at once,
no connection is tracked twice, the interrupted connection is closed and never handed out again, and the
sockets really open (client and proxy side) are exactly those the pool tracks.
"""

from __future__ import annotations

import random
from collections import Counter
from time import monotonic
from typing import Any, Callable, Optional

import gevent
import pytest

from gpool import Pool, PoolExhaustedError

from .helpers import InvariantSampler, RespConnection, assert_capacity_whole, wait_until
from .proxy import FaultProxy

pytestmark = pytest.mark.usefixtures("no_greenlet_left")

SOCKET_TIMEOUT = 1.0  # bounds a polite close under a stall
MAX = 3


class QuitOnly(RespConnection):
    """No reset hook: with ``max_usage=1`` a release goes straight to the polite close."""

    reset = None  # type: ignore[assignment]


def make_pool(proxy: FaultProxy, ledger: Counter[str], cls: type = RespConnection, **kwargs: Any) -> Pool[Any]:
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("check_interval", None)
    options = {"host": "127.0.0.1", "port": proxy.port, "timeout": SOCKET_TIMEOUT, "ledger": ledger}
    return Pool(cls, options, 0, MAX, **kwargs)


def sockets_match_pool(pool: Pool[Any], ledger: Counter[str], proxy: FaultProxy) -> None:
    """Every socket open on either side is one the pool tracks, and the reverse."""
    wait_until(lambda: ledger["sockets"] == pool.size, what=f"client sockets == size ({dict(ledger)})")
    wait_until(lambda: proxy.active == pool.size, what=f"proxy links == size ({proxy.active})")


class Scenario:
    """Set up one yield point; ``action`` blocks there, ``ready`` says it is blocked there."""

    def __init__(self, pool: Pool[Any], action: Callable[[], Any], ready: Callable[[], bool],
                 victim: Optional[RespConnection] = None, held: Optional[list[Any]] = None) -> None:
        self.pool = pool
        self.action = action
        self.ready = ready
        self.victim = victim  # the connection that must be closed afterwards
        self.held = held or []


def setup_point(point: str, proxy: FaultProxy, ledger: Counter[str]) -> Scenario:
    if point == "waiting":
        pool = make_pool(proxy, ledger)
        held = [pool.acquire() for _ in range(MAX)]
        return Scenario(pool, pool.acquire, lambda: pool.stats().waiting == 1, held=held)
    if point == "connecting":
        pool = make_pool(proxy, ledger)
        proxy.mode = "blackhole"
        return Scenario(pool, pool.acquire, lambda: ledger["sent:PING"] == 1 and pool.stats().connecting == 1)
    if point == "checking":
        pool = make_pool(proxy, ledger, check_interval=0)
        victim = pool.acquire()
        pool.release(victim)
        proxy.mode = "stall"
        return Scenario(pool, pool.acquire, lambda: ledger["sent:PING"] == 2, victim=victim)
    if point == "using":
        pool = make_pool(proxy, ledger)
        victim = pool.acquire()
        pool.release(victim)
        proxy.mode = "stall"

        def use() -> None:
            with pool.connection() as conn:
                conn.command("ECHO", "lost")

        return Scenario(pool, use, lambda: ledger["sent:ECHO"] == 1, victim=victim)
    if point == "resetting":
        pool = make_pool(proxy, ledger)
        victim = _acquired_by_a_finished_greenlet(pool)
        proxy.mode = "stall"
        return Scenario(pool, lambda: pool.release(victim), lambda: ledger["sent:SELECT"] == 1, victim=victim)
    if point == "releasing":
        pool = make_pool(proxy, ledger, cls=QuitOnly, max_usage=1)
        victim = _acquired_by_a_finished_greenlet(pool)
        proxy.mode = "stall"
        return Scenario(pool, lambda: pool.release(victim), lambda: ledger["sent:QUIT"] == 1, victim=victim)
    if point == "dropping":
        pool = make_pool(proxy, ledger)
        victim = _acquired_by_a_finished_greenlet(pool)
        proxy.mode = "stall"
        return Scenario(pool, lambda: pool.drop(victim), lambda: ledger["sent:QUIT"] == 1, victim=victim)
    raise AssertionError(point)


def _acquired_by_a_finished_greenlet(pool):
    """A connection whose holder has exited, so the scenario's own greenlet may give it back."""
    return gevent.spawn(pool.acquire).get(timeout=5)


POINTS = ["waiting", "connecting", "checking", "using", "resetting", "releasing", "dropping"]


@pytest.mark.parametrize("interrupt", ["kill", "timeout"])
@pytest.mark.parametrize("point", POINTS)
def test_interrupt_at_yield_point_loses_nothing(redis_proxy: FaultProxy, point: str, interrupt: str) -> None:
    ledger: Counter[str] = Counter()
    scenario = setup_point(point, redis_proxy, ledger)
    pool = scenario.pool

    def real_sockets_within_cap() -> None:
        # The pool frees a slot before closing (decide, then do I/O), so a close in flight may overlap
        # a new connect: sockets beyond the cap are only ever ones being closed.
        assert ledger["sockets"] - ledger["closing"] <= pool.max_connections, dict(ledger)

    def run() -> Any:
        if interrupt == "timeout":
            with gevent.Timeout(0.3):
                return scenario.action()
        return scenario.action()

    with InvariantSampler(pool, extra=real_sockets_within_cap) as sampler:
        glet = gevent.spawn(run)
        wait_until(scenario.ready, what=f"blocked while {point}")
        assert not glet.dead
        start = monotonic()
        if interrupt == "kill":
            glet.kill(block=True, timeout=SOCKET_TIMEOUT + 2)
            assert isinstance(glet.value, gevent.GreenletExit)
        else:
            glet.join(timeout=SOCKET_TIMEOUT + 2)
            assert isinstance(glet.exception, gevent.Timeout), glet.exception
        assert glet.dead
        # Only a polite close under the stall can delay the end, and only up to its socket timeout.
        assert monotonic() - start < SOCKET_TIMEOUT + 1.0
        redis_proxy.mode = "pass"
        for conn in scenario.held:
            pool.release(conn)
        stats = pool.stats()
        assert (stats.in_use, stats.waiting, stats.connecting) == (0, 0, 0), stats
        sockets_match_pool(pool, ledger, redis_proxy)
        handed_out = assert_capacity_whole(pool)
        if scenario.victim is not None:
            assert scenario.victim.socket is None, "the interrupted connection was kept"
            assert all(c is not scenario.victim for c in handed_out)
        for conn in handed_out:  # every connection still answers its own request
            with pool.connection() as c:
                assert c.command("ECHO", f"c{conn.id}") == f"c{conn.id}"
    assert sampler.violations == [] and sampler.peak_size <= MAX
    assert sampler.samples >= 2
    sockets_match_pool(pool, ledger, redis_proxy)
    pool.close()
    assert ledger["sockets"] == 0
    wait_until(lambda: redis_proxy.active == 0, what="every connection closed on the proxy side")


def test_kill_and_timeout_storm_over_a_flapping_network(redis_proxy: FaultProxy) -> None:
    """50 greenlets ECHO their own tokens while the network stalls and greenlets die at random.

    Asserts outcomes: nobody ever reads another request's reply (an interrupted connection was
    reused), the cap holds at every sample, and afterwards nothing leaked on either side.
    """
    rng = random.Random(11)
    ledger: Counter[str] = Counter()
    pool = make_pool(redis_proxy, ledger, timeout=2.0)
    pool_max = pool.max_connections
    done = Counter()

    def worker(n: int) -> None:
        i = 0
        while True:
            i += 1
            token = f"w{n}-{i}"
            try:
                with gevent.Timeout(rng.uniform(0.005, 0.05)), pool.connection() as conn:
                    reply = conn.command("ECHO", token)
                    if reply != token:
                        done["wrong"] += 1
                    else:
                        done["ok"] += 1
            except gevent.Timeout:
                done["timeout"] += 1
            except PoolExhaustedError:
                done["exhausted"] += 1
            except (OSError, EOFError):
                done["io"] += 1  # the socket timeout under a long stall

    def within_cap() -> None:
        assert ledger["sockets"] - ledger["closing"] <= pool_max, dict(ledger)

    with InvariantSampler(pool, interval=0.002, extra=within_cap) as sampler:
        workers = [gevent.spawn(worker, n) for n in range(50)]
        deadline = monotonic() + 3.0
        kills = 0
        while monotonic() < deadline:
            gevent.sleep(rng.uniform(0.01, 0.05))
            redis_proxy.mode = rng.choice(["pass", "pass", "stall"])
            victim = rng.choice(workers)
            if rng.random() < 0.5:
                victim.kill(block=False)  # GreenletExit: the worker ends, a new one takes its place
                kills += 1
                workers.append(gevent.spawn(worker, 100 + kills))
            else:
                victim.kill(gevent.Timeout(), block=False)  # a foreign Timeout: the worker catches it
            workers = [g for g in workers if not g.dead]
        redis_proxy.mode = "pass"
        gevent.killall(workers, timeout=SOCKET_TIMEOUT + 2)
        assert all(g.dead for g in workers)
    assert sampler.violations == [] and sampler.peak_size <= pool_max
    assert done["wrong"] == 0, done
    assert done["ok"] > 100 and done["timeout"] > 10, done
    sockets_match_pool(pool, ledger, redis_proxy)
    assert_capacity_whole(pool)
    pool.close()
    assert ledger["sockets"] == 0

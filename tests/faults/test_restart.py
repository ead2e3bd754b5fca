"""Server stop/start under load: bounded failures during the outage, backed-off connects, fast recovery.

The workers do not pace themselves: they loop as fast as the pool lets them, so the pool alone must
keep connect attempts bounded. Asserted for each pool: during the outage every failing acquisition
ends within ``timeout`` (plus slack) with ``PoolExhaustedError``; the connect attempts stay under
the bound derived in ``attempt_bound``; after the server is back the first success comes within
``timeout``; nothing read back is wrong; afterwards the pool is whole.
"""

from gevent import monkey

monkey.patch_all()

from collections import Counter  # noqa: E402
from time import monotonic  # noqa: E402
from typing import Any, Callable, Optional  # noqa: E402

import gevent  # noqa: E402
import pymysql  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402
from gevent.event import Event  # noqa: E402

from gpool import Pool, PoolExhaustedError  # noqa: E402
from gpool.mysql import MySQLPool  # noqa: E402
from gpool.redis import RedisPool  # noqa: E402

from .helpers import InvariantSampler, RespConnection, RespError, assert_capacity_whole  # noqa: E402

pytestmark = [pytest.mark.usefixtures("no_greenlet_left"), pytest.mark.timeout(120)]

SLACK = 1.5
OUTAGE = 1.5  # seconds the server stays down
WORKERS = 50


def attempt_bound(max_connections: int, retry: int, retry_delay: float, seconds: float) -> int:
    """The most connect attempts a pool may make in ``seconds`` of outage with instant refusals.

    Only a greenlet holding one of the ``max_connections`` slots connects; the others wait. A slot
    holder makes at most ``retry + 1`` attempts, separated by jittered backoff pauses of at least
    ``retry_delay * 0.5 * (1 + 2 + ... + 2**(retry-1))`` in total, then gives the slot to the next
    waiter. So each slot runs at most ``seconds / min_cycle + 1`` such cycles:

        bound = max_connections * (retry + 1) * (seconds / min_cycle + 1)

    e.g. 5 slots, retry=2, retry_delay=0.05: min_cycle = 0.025 + 0.05 = 0.075 s; over 2.5 s that is
    5 * 3 * (33.3 + 1) = 515 attempts; one attempt per waiter per millisecond would be 125,000.
    """
    min_cycle = retry_delay * 0.5 * (2 ** retry - 1)
    return int(max_connections * (retry + 1) * (seconds / min_cycle + 1))


class Outage:
    """Runs the load, takes the server down for OUTAGE seconds, brings it back, records everything."""

    def __init__(self, op: Callable[[int, int], bool], timeout: float, op_timeout: float) -> None:
        self.op = op  # op(worker, i) -> True when the value read back is right
        self.timeout = timeout
        self.op_timeout = op_timeout  # the longest one operation may take (acquire + command)
        self.phase = "before"
        self.results: Counter[str] = Counter()
        self.errors: dict[str, list[BaseException]] = {"before": [], "down": [], "back": []}
        self.slowest = 0.0
        self.back_at: Optional[float] = None
        self.first_success_after: Optional[float] = None
        self.stop = Event()

    def worker(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            phase = self.phase
            start = monotonic()
            try:
                right = self.op(n, i)
                self.results[f"{phase}:{'ok' if right else 'wrong'}"] += 1
                if phase == "back" and self.first_success_after is None and self.back_at is not None:
                    self.first_success_after = monotonic() - self.back_at
            except Exception as exc:
                self.errors[phase].append(exc)
            finally:
                elapsed = monotonic() - start
                self.slowest = max(self.slowest, elapsed)

    def run(self, server: Any, pool: Pool[Any]) -> float:
        """Returns the outage's length (stop() called to start() returned)."""
        with InvariantSampler(pool, interval=0.01) as sampler:
            workers = [gevent.spawn(self.worker, n) for n in range(WORKERS)]
            deadline = monotonic() + 10
            while self.results["before:ok"] < 200:
                assert monotonic() < deadline, "no load before the outage"
                gevent.sleep(0.01)
            self.phase = "down"
            down_at = monotonic()
            server.stop()
            gevent.sleep(OUTAGE)  # the outage itself: a duration under test, not a synchronisation
            server.start()
            self.back_at = monotonic()
            self.phase = "back"
            deadline = monotonic() + self.timeout + 10
            while self.results["back:ok"] < 200:
                assert monotonic() < deadline, f"no recovery: {self.summary()}"
                gevent.sleep(0.01)
            self.stop.set()
            gevent.joinall(workers, timeout=self.op_timeout + 5)
            assert all(g.dead for g in workers), "a worker hung"
        assert sampler.violations == [] and sampler.peak_size <= pool.max_connections
        return self.back_at - down_at

    def summary(self) -> str:
        kinds = {phase: Counter(type(e).__name__ for e in errs) for phase, errs in self.errors.items()}
        causes = Counter(type(e.__cause__).__name__ for e in self.errors["down"] if isinstance(e, PoolExhaustedError))
        return (f"results={dict(self.results)} errors={kinds} causes during the outage={dict(causes)} "
                f"slowest={self.slowest:.2f}s recovered in {self.first_success_after}s")

    def check(self, pool: Pool[Any], attempts: int, bound: int) -> None:
        assert not [k for k in self.results if k.endswith(":wrong")], self.summary()
        # No operation hung: acquire is bounded by timeout, the command by its socket timeout.
        assert self.slowest < self.op_timeout + SLACK, self.summary()
        down = self.errors["down"]
        exhausted = [e for e in down if isinstance(e, PoolExhaustedError)]
        assert len(exhausted) >= WORKERS // 2, self.summary()
        # A freed slot goes to the next waiter, who connects itself: so (nearly) every waiter that
        # failed tried and carries the connect error (OSError or the driver's) as __cause__.
        with_cause = [e for e in exhausted if isinstance(e.__cause__, Exception)]
        assert len(with_cause) >= 0.8 * len(exhausted), self.summary()
        assert 0 < attempts <= bound, (attempts, bound, self.summary())
        # Recovery: the first success after the server is back comes within the pool's timeout.
        assert self.first_success_after is not None and self.first_success_after < self.timeout + SLACK, \
            self.summary()
        assert_capacity_whole(pool)


# -- the core pool over a driver-less Redis connection, counting every connect attempt


def test_core_pool_survives_a_redis_restart(restartable_redis_server: Any) -> None:
    server = restartable_redis_server
    attempts = Counter()

    def factory(**options: Any) -> RespConnection:
        attempts[outage.phase] += 1
        return RespConnection(**options)

    timeout, retry, retry_delay = 1.0, 2, 0.05
    pool: Pool[RespConnection] = Pool(factory, {"host": server.host, "port": server.port, "timeout": 1.0,
                                                "polite_close": False},
                                      0, 5, timeout=timeout, retry=retry, retry_delay=retry_delay,
                                      check_interval=0)

    def op(n: int, i: int) -> bool:
        token = f"{n}-{i}"
        with pool.connection() as conn:
            return bool(conn.command("ECHO", token) == token)

    outage = Outage(op, timeout, op_timeout=timeout + 1.0)
    try:
        length = outage.run(server, pool)
        bound = attempt_bound(5, retry, retry_delay, length + timeout)
        outage.check(pool, attempts["down"], bound)
        assert all(isinstance(e, (PoolExhaustedError, OSError, EOFError, RespError))
                   for e in outage.errors["down"]), outage.summary()
    finally:
        pool.close()


# -- gpool.redis


def test_redis_pool_survives_a_restart(restartable_redis_server: Any, closing: list[Any]) -> None:
    server = restartable_redis_server
    timeout, retry, retry_delay = 1.0, 2, 0.05
    pool = RedisPool(**server.connect_kwargs(), max_connections=5, timeout=timeout, connect_retries=retry,
                     retry_delay=retry_delay, socket_timeout=1.0, socket_connect_timeout=0.5)
    closing.append(pool)
    r = pool.client()

    def op(n: int, i: int) -> bool:
        token = f"{n}-{i}"
        return bool(r.echo(token) == token.encode())

    outage = Outage(op, timeout, op_timeout=timeout + 1.0)
    length = outage.run(server, pool.pool)
    bound = attempt_bound(5, retry, retry_delay, length + timeout)
    # Every failed attempt during the outage is a connect error (nothing listens).
    outage.check(pool.pool, pool.stats().connect_errors, bound)
    assert all(isinstance(e, (PoolExhaustedError, redis.ConnectionError, redis.TimeoutError))
               for e in outage.errors["down"]), outage.summary()


# -- gpool.mysql


def test_mysql_pool_survives_a_restart(restartable_mysql_server: Any, closing: list[Any]) -> None:
    server = restartable_mysql_server
    timeout, retry, retry_delay = 1.0, 2, 0.05
    pool = MySQLPool(**server.connect_kwargs(), max_connections=5, timeout=timeout, retry=retry,
                     retry_delay=retry_delay, connect_timeout=1, read_timeout=2, check_interval=0,
                     autocommit=True)
    closing.append(pool)

    def op(n: int, i: int) -> bool:
        token = f"{n}-{i}"
        return pool.query_one("SELECT %s AS v", (token,)) == {"v": token}

    outage = Outage(op, timeout, op_timeout=timeout + 2.0)
    length = outage.run(server, pool.pool)
    bound = attempt_bound(5, retry, retry_delay, length + timeout)
    outage.check(pool.pool, pool.stats().connect_errors, bound)
    assert all(isinstance(e, (PoolExhaustedError, pymysql.MySQLError)) for e in outage.errors["down"]), \
        outage.summary()

"""Stalled and blackholed networks in front of real Redis and MariaDB, through the adapters.

Redis: ``socket_timeout`` bounds a command, ``socket_connect_timeout`` (or, without one, the pool's
``timeout``) bounds a connect. MariaDB: ``read_timeout`` bounds a query and the greeting read,
``connect_timeout`` the TCP connect, the pool's ``timeout`` the whole acquisition. Each test asserts
an upper bound on the time taken (the timeout plus generous slack), that no greenlet is left running,
that the connection caught by the fault is dropped and that the pool works again once traffic passes.
"""

from gevent import monkey

monkey.patch_all()

import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from time import monotonic  # noqa: E402
from typing import Any, Callable  # noqa: E402

import gevent  # noqa: E402
import pymysql  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402

from gpool import PoolExhaustedError  # noqa: E402
from gpool.mysql import MySQLPool  # noqa: E402
from gpool.redis import RedisPool, RedisPoolExhaustedError  # noqa: E402

from .helpers import assert_capacity_whole, wait_until  # noqa: E402
from .proxy import FaultProxy  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_greenlet_left")

SLACK = 1.5


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    start = monotonic()
    try:
        return fn(*args), monotonic() - start
    except Exception as exc:
        return exc, monotonic() - start


# -- Redis -------------------------------------------------------------------------------------------


def redis_via(proxy: FaultProxy, closing: list[Any], **kwargs: Any) -> RedisPool:
    kwargs.setdefault("timeout", 1.0)
    kwargs.setdefault("connect_retries", 1)
    kwargs.setdefault("retry_delay", 0.05)
    pool = RedisPool(host="127.0.0.1", port=proxy.port, max_connections=3, **kwargs)
    closing.append(pool)
    return pool


def test_redis_stalled_command_ends_at_socket_timeout(redis_proxy: FaultProxy, closing: list[Any]) -> None:
    pool = redis_via(redis_proxy, closing, socket_timeout=0.5, socket_connect_timeout=0.5)
    r = pool.client()
    assert r.echo("warm") == b"warm"
    redis_proxy.mode = "stall"
    outcome, elapsed = timed(r.echo, "stalled")
    assert isinstance(outcome, redis.TimeoutError), outcome
    assert 0.45 <= elapsed < 0.5 + SLACK
    assert pool.size == 0, "the connection that timed out mid-command was kept"
    redis_proxy.mode = "pass"
    assert r.echo("after") == b"after"
    assert pool.stats().created == 2


def test_redis_stall_under_load_nobody_hangs(redis_proxy: FaultProxy, closing: list[Any]) -> None:
    pool = redis_via(redis_proxy, closing, socket_timeout=0.5, socket_connect_timeout=0.5, timeout=1.0)
    r = pool.client()
    assert r.echo("warm") == b"warm"
    redis_proxy.mode = "stall"
    outcomes: Counter[str] = Counter()
    slowest = [0.0]

    def user(i: int) -> None:
        outcome, elapsed = timed(r.echo, f"u{i}")
        slowest[0] = max(slowest[0], elapsed)
        outcomes[type(outcome).__name__] += 1

    greenlets = [gevent.spawn(user, i) for i in range(30)]
    gevent.joinall(greenlets, timeout=10)
    assert all(g.dead for g in greenlets)
    # Worst case: waited up to the pool timeout for a slot, then one socket timeout on it.
    assert slowest[0] < 1.0 + 0.5 + SLACK, slowest
    assert set(outcomes) <= {"TimeoutError", "RedisPoolTimeoutError"} and outcomes["TimeoutError"] >= 3, outcomes
    redis_proxy.mode = "pass"
    assert [r.echo(f"a{i}") for i in range(5)] == [f"a{i}".encode() for i in range(5)]
    assert_capacity_whole(pool.pool)


def test_redis_blackhole_without_handshake_fails_the_first_command(redis_proxy: FaultProxy,
                                                                    closing: list[Any]) -> None:
    """RESP2 without a name or password sends nothing on connect: the connect to a blackhole
    succeeds and the command is what times out."""
    pool = redis_via(redis_proxy, closing, socket_timeout=0.3, socket_connect_timeout=0.3)
    redis_proxy.mode = "blackhole"
    outcome, elapsed = timed(pool.client().echo, "x")
    assert isinstance(outcome, redis.TimeoutError), outcome
    assert elapsed < 0.3 + SLACK
    assert pool.size == 0


@pytest.mark.parametrize("connect_timeout", [0.3, None])
def test_redis_blackhole_handshake_is_bounded(redis_proxy: FaultProxy, closing: list[Any],
                                              connect_timeout: Any) -> None:
    """With a client name the connect waits for a reply: bounded by socket_connect_timeout per attempt
    or, with no socket timeouts at all, by the pool's own timeout; the error carries the cause."""
    pool = redis_via(redis_proxy, closing, client_name=f"bh-{uuid.uuid4().hex[:6]}", timeout=1.0,
                     socket_connect_timeout=connect_timeout, socket_timeout=connect_timeout)
    redis_proxy.mode = "blackhole"
    outcome, elapsed = timed(pool.client().echo, "x")
    assert isinstance(outcome, RedisPoolExhaustedError) and isinstance(outcome, PoolExhaustedError), outcome
    assert isinstance(outcome.__cause__, (redis.TimeoutError, redis.ConnectionError, TimeoutError)), \
        repr(outcome.__cause__)
    assert elapsed < 1.0 + SLACK
    assert pool.size == 0 and 1 <= redis_proxy.accepted <= 2  # connect_retries=1: two attempts at most
    redis_proxy.mode = "pass"
    assert pool.client().echo("back") == b"back"


# -- MariaDB -----------------------------------------------------------------------------------------


def mysql_via(proxy: FaultProxy, server: Any, closing: list[Any], **kwargs: Any) -> MySQLPool:
    kwargs.setdefault("timeout", 1.0)
    kwargs.setdefault("retry", 1)
    kwargs.setdefault("retry_delay", 0.05)
    connect = dict(server.connect_kwargs(), host="127.0.0.1", port=proxy.port)
    pool = MySQLPool(**connect, max_connections=3, autocommit=True, **kwargs)
    closing.append(pool)
    return pool


def test_mysql_stalled_query_ends_at_read_timeout(mysql_proxy: FaultProxy, mysql_server: Any,
                                                  closing: list[Any]) -> None:
    pool = mysql_via(mysql_proxy, mysql_server, closing, connect_timeout=1, read_timeout=0.5)
    assert pool.query_one("SELECT 1 AS one") == {"one": 1}
    mysql_proxy.mode = "stall"
    outcome, elapsed = timed(pool.query_one, "SELECT 2 AS two")
    assert isinstance(outcome, pymysql.err.OperationalError) and outcome.args[0] == 2013, outcome
    assert 0.45 <= elapsed < 0.5 + SLACK
    assert pool.size == 0, "the connection whose read timed out was kept"
    mysql_proxy.mode = "pass"
    assert pool.query_one("SELECT 3 AS three") == {"three": 3}


def test_mysql_stall_under_load_nobody_hangs(mysql_proxy: FaultProxy, mysql_server: Any,
                                             closing: list[Any]) -> None:
    pool = mysql_via(mysql_proxy, mysql_server, closing, connect_timeout=1, read_timeout=0.5, timeout=1.0)
    assert pool.query_one("SELECT 1 AS one") == {"one": 1}
    mysql_proxy.mode = "stall"
    outcomes: Counter[str] = Counter()
    slowest = [0.0]

    def user(i: int) -> None:
        outcome, elapsed = timed(pool.query_one, "SELECT %s AS v", (i,))
        slowest[0] = max(slowest[0], elapsed)
        outcomes[type(outcome).__name__] += 1

    greenlets = [gevent.spawn(user, i) for i in range(20)]
    gevent.joinall(greenlets, timeout=15)
    assert all(g.dead for g in greenlets)
    # A slot's connect reads the greeting for at most read_timeout; then one query's read_timeout.
    assert slowest[0] < 1.0 + 0.5 + SLACK, slowest
    # The idle connection's query fails at read_timeout; new connections never get the greeting, so
    # everyone else ends with PoolExhaustedError by the pool timeout.
    allowed = {"OperationalError", "PoolTimeoutError", "MySQLConnectFailedError"}  # the last: connects timed out
    assert set(outcomes) <= allowed and outcomes["OperationalError"] >= 1, outcomes
    mysql_proxy.mode = "pass"
    assert [pool.query_one("SELECT %s AS v", (i,)) for i in range(5)] == [{"v": i} for i in range(5)]
    assert_capacity_whole(pool.pool)


@pytest.mark.parametrize("read_timeout", [0.3, None])
def test_mysql_blackhole_connect_is_bounded(mysql_proxy: FaultProxy, mysql_server: Any, closing: list[Any],
                                            read_timeout: Any) -> None:
    """The server greeting never comes: each attempt ends at read_timeout or, with none, the pool's
    own deadline cuts it; acquisition fails with PoolExhaustedError carrying the cause."""
    pool = mysql_via(mysql_proxy, mysql_server, closing, connect_timeout=1, read_timeout=read_timeout,
                     timeout=1.0)
    mysql_proxy.mode = "blackhole"
    outcome, elapsed = timed(pool.query_one, "SELECT 1")
    assert isinstance(outcome, PoolExhaustedError), outcome
    assert isinstance(outcome.__cause__, (pymysql.err.OperationalError, TimeoutError)), repr(outcome.__cause__)
    assert elapsed < 1.0 + SLACK
    assert pool.size == 0 and 1 <= mysql_proxy.accepted <= 2
    mysql_proxy.mode = "pass"
    assert pool.query_one("SELECT 1 AS one") == {"one": 1}
    wait_until(lambda: mysql_proxy.active == pool.size, what="blackholed connections closed")

"""Stalled, blackholed and cut networks between the pool and a real Redis (through the fault proxy).

Core pool with ``gpool.TcpConnection`` (raw inline ``PING``) and with a handshaking RESP connection.
Every test bounds the time each acquisition and command took (its timeout plus generous slack for a
busy 2-core machine), checks that no greenlet is left running, and that the pool is whole afterwards.
"""

from __future__ import annotations

import socket
from collections import Counter
from time import monotonic
from typing import Any

import gevent
import pytest

from gpool import Pool, PoolExhaustedError, TcpConnection
from gpool.connection import socket_is_clean

from .helpers import RespConnection, assert_capacity_whole, wait_until
from .proxy import FaultProxy

pytestmark = pytest.mark.usefixtures("no_greenlet_left")

SLACK = 1.5  # seconds of scheduling slack on top of every timeout


def ping(conn: TcpConnection) -> bytes:
    conn.sendall(b"PING\r\n")
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = conn.recv(64)
        if not chunk:
            raise EOFError("closed")
        reply += chunk
    return reply


def tcp_pool(proxy: FaultProxy, sock_timeout: float = 0.5, **kwargs: Any) -> Pool[TcpConnection]:
    kwargs.setdefault("timeout", 1.0)
    return Pool(TcpConnection, {"host": "127.0.0.1", "port": proxy.port, "timeout": sock_timeout},
                0, kwargs.pop("max_connections", 3), **kwargs)


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = monotonic()
    try:
        return fn(*args), monotonic() - start
    except BaseException as exc:
        return exc, monotonic() - start


def test_stalled_command_fails_within_socket_timeout_and_drops_the_connection(redis_proxy: FaultProxy) -> None:
    pool = tcp_pool(redis_proxy)
    with pool.connection() as conn:
        assert ping(conn) == b"+PONG\r\n"
    first = conn
    redis_proxy.mode = "stall"

    def use() -> bytes:
        with pool.connection() as c:
            return ping(c)

    outcome, elapsed = timed(use)
    assert isinstance(outcome, socket.timeout) and not isinstance(outcome, PoolExhaustedError), outcome
    assert 0.4 <= elapsed < 0.5 + SLACK
    assert first.socket is None, "a connection whose command timed out was kept"
    assert pool.size == 0
    redis_proxy.mode = "pass"
    with pool.connection() as conn:
        assert conn is not first and ping(conn) == b"+PONG\r\n"
    assert_capacity_whole(pool)
    pool.close()


def test_stall_under_load_every_greenlet_ends_within_its_timeouts(redis_proxy: FaultProxy) -> None:
    """50 greenlets on 3 connections while the network is frozen: holders fail at the socket timeout,
    waiters with PoolExhaustedError at the pool timeout; nobody hangs."""
    pool = tcp_pool(redis_proxy, sock_timeout=0.5, timeout=1.0)
    redis_proxy.mode = "stall"
    outcomes: Counter[str] = Counter()
    elapsed: list[float] = []

    def worker() -> None:
        start = monotonic()
        try:
            with pool.connection() as conn:
                ping(conn)
            outcomes["ok"] += 1
        except PoolExhaustedError:  # first: it is a TimeoutError too, like socket.timeout
            outcomes["PoolExhaustedError"] += 1
        except socket.timeout:
            outcomes["socket.timeout"] += 1
        finally:
            elapsed.append(monotonic() - start)

    start = monotonic()
    greenlets = [gevent.spawn(worker) for _ in range(50)]
    gevent.joinall(greenlets, timeout=10)
    assert all(g.dead for g in greenlets), "a greenlet hung on the stalled network"
    # A waiter may get a connection freed at 0.5 s and then block 0.5 s on it: 1.0 s + slack at most.
    assert max(elapsed) < 1.0 + 0.5 + SLACK, max(elapsed)
    assert monotonic() - start < 1.5 + SLACK
    assert outcomes["ok"] == 0
    # Rounds of 0.5 s on 3 connections within the 1.0 s acquire timeout: 3 or 6 holders, the rest time out.
    assert 3 <= outcomes["socket.timeout"] <= 9 and outcomes["PoolExhaustedError"] >= 41, outcomes
    assert sum(outcomes.values()) == 50
    assert pool.size == 0, "every connection that timed out was dropped"
    redis_proxy.mode = "pass"
    assert_capacity_whole(pool)
    held = [pool.acquire() for _ in range(3)]
    assert all(ping(conn) == b"+PONG\r\n" for conn in held)  # every fresh connection answers
    for conn in held:
        pool.release(conn)
    pool.close()
    wait_until(lambda: redis_proxy.active == 0, what="proxy links closed")


def test_blackhole_tcp_connect_succeeds_but_first_command_times_out(redis_proxy: FaultProxy) -> None:
    """A raw TCP connect completes against a blackhole (the kernel accepts); the command is bounded."""
    pool = tcp_pool(redis_proxy, sock_timeout=0.3)
    redis_proxy.mode = "blackhole"
    conn, elapsed = timed(pool.acquire)
    assert isinstance(conn, TcpConnection) and elapsed < 0.3 + SLACK
    outcome, elapsed = timed(ping, conn)
    assert isinstance(outcome, socket.timeout) and elapsed < 0.3 + SLACK
    pool.drop(conn)
    redis_proxy.mode = "pass"
    assert_capacity_whole(pool)
    pool.close()


@pytest.mark.parametrize("sock_timeout", [None, 5.0])
def test_blackhole_handshake_is_bounded_by_the_acquire_timeout(redis_proxy: FaultProxy,
                                                                sock_timeout: Any) -> None:
    """A connection whose open() never gets an answer (no socket timeout at all, or a long one): the
    pool's own deadline cuts the connect and acquire raises PoolExhaustedError with the cause."""
    ledger: Counter[str] = Counter()
    pool = Pool(RespConnection, {"host": "127.0.0.1", "port": redis_proxy.port, "timeout": sock_timeout,
                                 "ledger": ledger, "polite_close": False},
                0, 2, timeout=0.5, retry=1, retry_delay=0.05)
    redis_proxy.mode = "blackhole"
    outcome, elapsed = timed(pool.acquire)
    assert isinstance(outcome, PoolExhaustedError), outcome
    assert isinstance(outcome.__cause__, TimeoutError), repr(outcome.__cause__)
    assert 0.45 <= elapsed < 0.5 + SLACK
    # What was tried: one connect per attempt, each cut; every half-open socket closed.
    assert 1 <= redis_proxy.accepted <= 2 and ledger["sockets"] == 0
    assert pool.size == 0 and pool.stats().connect_errors == redis_proxy.accepted
    redis_proxy.mode = "pass"
    assert_capacity_whole(pool)
    pool.close()
    wait_until(lambda: redis_proxy.active == 0, what="proxy links closed")


def test_cut_connections_are_never_handed_out(redis_proxy: FaultProxy) -> None:
    """After the network cut every idle connection, a checkout (check_interval=0) sees the EOF and
    hands out a fresh connection instead; nothing dead reaches the user."""
    pool = tcp_pool(redis_proxy, check_interval=0)
    old = [pool.acquire() for _ in range(3)]
    for conn in old:
        pool.release(conn)
    wait_until(lambda: redis_proxy.active == 3, what="the proxy accepted all three")
    assert redis_proxy.cut() == 3
    # gevent closes a socket other greenlets wait on from the hub's next turn: let the FINs arrive.
    wait_until(lambda: not any(socket_is_clean(c.socket) for c in old), what="the cut reached the clients")
    for _ in range(2):  # a second round reuses the fresh ones
        got = [pool.acquire(timeout=2) for _ in range(3)]
        for conn in got:
            assert conn not in old
            assert ping(conn) == b"+PONG\r\n"
            pool.release(conn)
    stats = pool.stats()
    assert stats.created == 6 and stats.check_failures == 3, stats
    assert all(c.socket is None for c in old)
    pool.close()


def test_pool_recovers_after_stall_ends(redis_proxy: FaultProxy) -> None:
    """Traffic held by a stall is delivered when it ends: a greenlet mid-command gets its own reply."""
    pool = tcp_pool(redis_proxy, sock_timeout=5.0)
    conn = pool.acquire()
    redis_proxy.mode = "stall"
    g = gevent.spawn(ping, conn)
    gevent.sleep(0.2)  # the stall lasts a while (what is tested is that the reply survives it)
    assert not g.dead
    redis_proxy.mode = "pass"
    assert g.get(timeout=2) == b"+PONG\r\n"
    pool.release(conn)
    assert_capacity_whole(pool)
    pool.close()

"""The fault proxy itself, in front of the real Redis: pass, stall, cut, blackhole, clean stop."""

from __future__ import annotations

import socket
from time import monotonic

import gevent
import pytest

from .helpers import RespConnection, wait_until
from .proxy import FaultProxy


def connect(proxy: FaultProxy, timeout: float = 2.0) -> RespConnection:
    conn = RespConnection("127.0.0.1", proxy.port, timeout=timeout, polite_close=False)
    conn.open()
    return conn


def test_pass_forwards_both_ways_and_counts(redis_proxy: FaultProxy) -> None:
    conns = [connect(redis_proxy) for _ in range(3)]
    for i, conn in enumerate(conns):
        assert conn.command("ECHO", f"hello {i}") == f"hello {i}"
    assert redis_proxy.accepted == 3 and redis_proxy.active == 3
    assert redis_proxy.forwarded > 0
    for conn in conns:
        conn.close()
    wait_until(lambda: redis_proxy.active == 0, what="links closed after the clients closed")
    assert redis_proxy.greenlets == 0


def test_stall_holds_bytes_until_pass(redis_proxy: FaultProxy) -> None:
    conn = connect(redis_proxy, timeout=0.3)
    redis_proxy.mode = "stall"
    start = monotonic()
    with pytest.raises(socket.timeout):
        conn.command("PING")
    assert 0.25 <= monotonic() - start < 1.5
    # A command sent during the stall is answered once the network flows again.
    conn2 = RespConnection("127.0.0.1", redis_proxy.port, timeout=5)
    opening = gevent.spawn(conn2.open)
    gevent.sleep(0.1)
    assert not opening.dead, "the handshake went through a stalled network"
    redis_proxy.mode = "pass"
    opening.get(timeout=5)
    assert conn2.command("ECHO", "after") == "after"
    conn.close()
    conn2.close()


def test_cut_closes_current_connections_and_new_ones_pass(redis_proxy: FaultProxy) -> None:
    old = [connect(redis_proxy) for _ in range(2)]
    assert redis_proxy.cut() == 2
    assert redis_proxy.active == 0
    for conn in old:
        with pytest.raises((EOFError, OSError)):
            conn.command("PING")
        assert not conn.is_connected()
    new = connect(redis_proxy)
    assert new.command("PING") == "PONG" and redis_proxy.mode == "pass"
    assert redis_proxy.cut(reset=True) == 1
    with pytest.raises(OSError):  # a reset, not an orderly EOF
        new.command("PING")
    for conn in [*old, new]:
        conn.close()


def test_blackhole_accepts_and_never_answers(redis_proxy: FaultProxy) -> None:
    before = connect(redis_proxy, timeout=0.3)
    redis_proxy.mode = "blackhole"
    conn = RespConnection("127.0.0.1", redis_proxy.port, timeout=0.3, polite_close=False)
    start = monotonic()
    with pytest.raises(socket.timeout):
        conn.open()  # the TCP connect succeeds; the handshake never gets an answer
    assert 0.25 <= monotonic() - start < 1.5
    assert redis_proxy.accepted == 2 and redis_proxy.upstream_errors == 0
    with pytest.raises(socket.timeout):
        before.command("PING")  # existing connections go silent too
    redis_proxy.mode = "pass"
    fresh = connect(redis_proxy)
    assert fresh.command("PING") == "PONG"
    for c in (conn, before, fresh):
        c.close()


def test_upstream_refusal_is_counted_and_closes_the_client(proxy_factory, redis_server) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    proxy = proxy_factory(("127.0.0.1", dead_port))
    conn = RespConnection("127.0.0.1", proxy.port, timeout=2, polite_close=False)
    with pytest.raises((EOFError, OSError)):
        conn.open()
    conn.close()
    assert proxy.upstream_errors == 1


def test_stop_ends_every_greenlet_and_socket(redis_server) -> None:
    proxy = FaultProxy((redis_server.host, redis_server.port)).start()
    conns = [connect(proxy, timeout=2) for _ in range(3)]
    proxy.mode = "blackhole"
    hung = RespConnection("127.0.0.1", proxy.port, timeout=2, polite_close=False)
    opening = gevent.spawn(hung.open)
    wait_until(lambda: proxy.accepted == 4, what="blackholed connection accepted")
    proxy.stop()
    assert proxy.greenlets == 0 and proxy.active == 0
    with pytest.raises((EOFError, OSError)):
        opening.get(timeout=2)
    for conn in conns:
        with pytest.raises((EOFError, OSError)):
            conn.command("PING")
        conn.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port or 1), timeout=1).close()


def test_mode_is_validated(redis_proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="mode must be one of pass, stall, blackhole, got 'cut'"):
        redis_proxy.mode = "cut"
    assert redis_proxy.mode == "pass"

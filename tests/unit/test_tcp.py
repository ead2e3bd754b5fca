"""TcpConnection against a real loopback echo server, pooled."""

from __future__ import annotations

import gevent
import gevent.server
import pytest

from gpool import Connection, Pool, TcpConnection


@pytest.fixture
def echo_server():
    def handle(sock, _addr):
        while True:
            data = sock.recv(1024)
            if not data:
                break
            sock.sendall(data)

    server = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    server.start()
    yield server
    server.stop(timeout=1)


def test_pooled_tcp_connections_echo_their_own_data(echo_server):
    port = echo_server.server_port
    with Pool(TcpConnection, {"host": "127.0.0.1", "port": port, "timeout": 2}, 0, 3) as pool:
        results = []

        def worker(i):
            for _ in range(5):
                with pool.connection() as conn:
                    msg = f"greenlet {i:04d}".encode()
                    conn.sendall(msg)
                    assert conn.recv(1024) == msg
            results.append(i)

        gevent.joinall([gevent.spawn(worker, i) for i in range(30)], raise_error=True)
        assert len(results) == 30 and pool.stats().created <= 3


def test_is_connected_sees_peer_close_and_unread_bytes(echo_server):
    conn = TcpConnection("127.0.0.1", echo_server.server_port, timeout=2)
    assert not conn.is_connected()
    conn.open()
    assert conn.is_connected()
    conn.sendall(b"x")
    gevent.sleep(0.05)
    assert not conn.is_connected(), "an unread reply makes the connection unsafe to hand out"
    assert conn.recv(1) == b"x"
    assert conn.is_connected()
    conn.close()
    conn.close()  # idempotent
    assert not conn.is_connected()
    with pytest.raises(OSError):
        conn.recv(1)
    assert "closed" in repr(conn)


def test_dead_peer_is_never_handed_out(echo_server):
    pool = Pool(TcpConnection, {"host": "127.0.0.1", "port": echo_server.server_port}, 0, 1, check_interval=0)
    conn = pool.acquire()
    pool.release(conn)
    echo_server.stop(timeout=1)  # closes the accepted socket
    gevent.sleep(0.05)
    replacement = gevent.server.StreamServer(("127.0.0.1", echo_server.server_port), lambda s, a: None)
    replacement.start()
    try:
        fresh = pool.acquire()
        assert fresh is not conn and conn.socket is None
        pool.release(fresh)
    finally:
        pool.close()
        replacement.stop()


def test_lifetime_expires_the_connection():
    conn = TcpConnection("127.0.0.1", 1, lifetime=5)
    assert not conn.is_expired()
    conn.created_at -= 6
    assert conn.is_expired()


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"host": "", "port": 1}, ValueError, "host"),
        ({"host": "h", "port": 0}, ValueError, "port must be an integer from 1 to 65535, got 0"),
        ({"host": "h", "port": "80"}, ValueError, "port"),
        ({"host": "h", "port": 1, "timeout": 0}, ValueError, "timeout"),
        ({"host": "h", "port": 1, "lifetime": -1}, ValueError, "lifetime"),
    ],
)
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        TcpConnection(**kwargs)


def test_connection_base_defaults():
    class Minimal(Connection):
        def open(self):
            pass

        def close(self):
            pass

        def is_connected(self):
            return True

    conn = Minimal()
    assert conn.is_fatal(ConnectionResetError()) and conn.is_fatal(EOFError())
    assert not conn.is_fatal(KeyError())
    assert not conn.is_expired()
    conn.reset()


def test_small_writes_bypass_gevent_only_on_a_plain_gevent_socket():
    # gpool.connection._os_socket: the adapters' one-send write path (issue 18) must never write
    # under TLS (bytes must go through the TLS layer) nor on a blocking socket (it could block).
    import _socket
    import socket
    import ssl

    import gevent.socket
    import gevent.ssl

    from gpool.connection import _os_socket

    with gevent.socket.socket() as plain:
        raw = _os_socket(plain)
        assert isinstance(raw, _socket.socket) and raw.gettimeout() == 0.0 and raw.fileno() == plain.fileno()
        context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        with gevent.socket.socket() as inner, context.wrap_socket(inner, server_hostname="x",
                                                                  do_handshake_on_connect=False) as tls:
            assert _os_socket(tls) is None
    with socket.socket() as stdlib:  # unpatched here: a blocking socket with no gevent layer
        assert _os_socket(stdlib) is None
    assert _os_socket(object()) is None

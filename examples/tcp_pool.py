"""A TCP proxy that forwards each line over a pool of ``TcpConnection`` to an echo service.

    python examples/tcp_pool.py          # echo service + proxy on loopback, 100 clients, stats

Three parts, all in this process on 127.0.0.1:

* an echo service (a ``gevent.server.StreamServer``) that counts the connections it accepts;
* the proxy, another ``StreamServer``: for every line a client sends, it borrows a pooled
  ``TcpConnection`` to the echo service, forwards the line, reads the reply and returns the
  connection, so 100 client connections share ``--max-connections`` upstream connections;
* 100 client greenlets that each send 10 lines through the proxy and check every reply.

A connection is returned to the pool only after its reply was read in full; an error or a timeout
in the ``with`` block drops it instead (the socket might hold half a reply).
"""

from gevent import monkey

monkey.patch_all()

# ruff: noqa: E402
import argparse
import socket
import sys
import time

import gevent
from gevent.server import StreamServer

from gpool import Pool, TcpConnection


def read_line(recv, limit: int = 65536) -> bytes:
    """Bytes up to and including the first newline (b"" when the peer closed first)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = recv(4096)
        if not chunk:
            return b""
        data += chunk
        if len(data) > limit:
            raise ValueError(f"line longer than {limit} bytes")
    return data


class EchoService:
    """Echoes every line back on the same connection; counts connections accepted."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server = StreamServer(("127.0.0.1", 0), self.handle)

    def handle(self, sock: socket.socket, address: tuple) -> None:
        self.accepted += 1
        while True:
            line = read_line(sock.recv)
            if not line:
                return
            sock.sendall(line)


def make_proxy(pool: Pool) -> StreamServer:
    def handle(client: socket.socket, address: tuple) -> None:
        while True:
            line = read_line(client.recv)
            if not line:
                return
            with pool.connection(timeout=5) as upstream:
                upstream.sendall(line)
                reply = read_line(upstream.recv)
                if not reply:
                    raise EOFError("the echo service closed the connection")  # fatal: dropped, not reused
            client.sendall(reply)

    return StreamServer(("127.0.0.1", 0), handle)


def main() -> int:
    parser = argparse.ArgumentParser(description="TcpConnection pooled in a gevent StreamServer proxy.")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--messages", type=int, default=10, help="lines per client")
    parser.add_argument("--max-connections", type=int, default=5)
    args = parser.parse_args()

    echo = EchoService()
    echo.server.start()
    pool = Pool(TcpConnection, {"host": "127.0.0.1", "port": echo.server.server_port, "timeout": 5},
                max_connections=args.max_connections, name="echo-upstream")
    proxy = make_proxy(pool)
    proxy.start()
    wrong = []

    def client(c: int) -> None:
        with socket.create_connection(("127.0.0.1", proxy.server_port), timeout=10) as sock:
            for m in range(args.messages):
                line = f"client {c} message {m}\n".encode()
                sock.sendall(line)
                reply = read_line(sock.recv)
                if reply != line:
                    wrong.append((line, reply))

    began = time.monotonic()
    clients = [gevent.spawn(client, c) for c in range(args.clients)]
    try:
        if len(gevent.joinall(clients, raise_error=True, timeout=60)) != len(clients):
            raise TimeoutError("the clients did not finish in 60s")
        elapsed = time.monotonic() - began
        stats = pool.stats()
    finally:
        gevent.killall(clients, timeout=2)
        proxy.stop(timeout=2)
        pool.close()
        echo.server.stop(timeout=2)

    total = args.clients * args.messages
    print(f"{args.clients} clients sent {total:,} lines through the proxy in {elapsed:.2f}s "
          f"({total / elapsed:,.0f} lines/s)")
    print(f"lines={total} correct={total - len(wrong)} client_connections={args.clients} "
          f"upstream_connections_accepted={echo.accepted} max_connections={args.max_connections}")
    print(f"pool {stats.name!r}: created={stats.created} acquired={stats.acquired} released={stats.released} "
          f"in_use={stats.in_use} waits={stats.waits} wait_time_p99={stats.wait_time_p99:.4f} "
          f"timeouts={stats.timeouts} dropped={stats.dropped}")
    return 0 if not wrong else 1


if __name__ == "__main__":
    sys.exit(main())

"""A plain gevent script: 100 greenlets share a MySQLPool of 10 connections through ``with pool.connection()``.

    python examples/script.py                      # starts a private, throwaway MariaDB (needs mariadbd)
    GPOOL_MYSQL_URL=mysql://user:pw@host:3306/db python examples/script.py

Each greenlet runs 10 queries; each query echoes a number through the server together with the
server's ``CONNECTION_ID()``, so the script can show that 1,000 queries went over at most 10
connections, and that every greenlet got its own answer back. Then it prints the pool's stats.
"""

from gevent import monkey

monkey.patch_all()  # first: PyMySQL's sockets must be gevent's

# ruff: noqa: E402
import argparse
import os
import sys
import time

import gevent

from gpool.mysql import MySQLPool

STATS = ("size", "idle", "in_use", "max_connections", "created", "closed", "acquired", "released",
         "waits", "wait_time_p50", "wait_time_p99", "wait_time_max", "timeouts", "connect_errors")


def run(url: str, greenlets: int, queries: int, max_connections: int) -> int:
    pool = MySQLPool.from_url(url, max_connections=max_connections, timeout=10)
    connections: set[int] = set()
    wrong: list[tuple[int, object]] = []

    def work(g: int) -> None:
        for q in range(queries):
            n = g * 1000 + q
            with pool.connection() as conn, conn.cursor() as cur:
                # SLEEP stands for real work: the server holds the connection for 2 ms
                cur.execute("SELECT %s, CONNECTION_ID(), SLEEP(0.002)", (n,))
                echoed, conn_id, _ = cur.fetchone()
            connections.add(conn_id)
            if echoed != n:
                wrong.append((n, echoed))

    began = time.monotonic()
    gevent.joinall([gevent.spawn(work, g) for g in range(greenlets)], raise_error=True)
    elapsed = time.monotonic() - began
    total = greenlets * queries
    stats = pool.stats()
    pool.close()

    print(f"{greenlets} greenlets ran {total:,} queries in {elapsed:.2f}s ({total / elapsed:,.0f} queries/s)")
    print(f"queries={total} correct={total - len(wrong)} server_connections={len(connections)} "
          f"max_connections={max_connections}")
    print(f"pool {stats.name!r} stats:")
    for name in STATS:
        value = getattr(stats, name)
        print(f"  {name:<16} {value:.4f}" if isinstance(value, float) else f"  {name:<16} {value}")
    return 0 if not wrong else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--greenlets", type=int, default=100)
    parser.add_argument("--queries", type=int, default=10, help="per greenlet")
    parser.add_argument("--max-connections", type=int, default=10)
    args = parser.parse_args()
    url = os.environ.get("GPOOL_MYSQL_URL")
    if url:
        return run(url, args.greenlets, args.queries, args.max_connections)
    from gpool.testing import MariaDBServer

    print("GPOOL_MYSQL_URL is not set: starting a private MariaDB (removed at exit)", file=sys.stderr)
    with MariaDBServer() as server:
        return run(server.url, args.greenlets, args.queries, args.max_connections)


if __name__ == "__main__":
    sys.exit(main())

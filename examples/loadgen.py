"""HTTP load against the example app, and server-side connection counts; used by demo.py and the tests.

The caller must have run ``gevent.monkey.patch_all()``: the clients are greenlets using ``http.client``,
the sampler a greenlet using PyMySQL and redis-py.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

import gevent
import gevent.lock
import pymysql
import redis

__all__ = ["Load", "LoadResult", "ServerSampler", "http_get", "mysql_connect_args"]


@dataclass
class LoadResult:
    """What one burst of requests did, seen from the clients."""

    requests: int = 0
    ok: int = 0
    #: why requests failed: "HTTP 503", "wrong token", "ConnectionResetError", ...
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    duration: float = 0.0
    #: requests served per server pid
    pids: Counter[int] = field(default_factory=Counter)
    #: distinct (pid, MySQL CONNECTION_ID()) pairs seen in /mysql answers
    conn_ids: set[tuple[int, int]] = field(default_factory=set)
    #: kept-alive client connections the server had closed, reopened once (not counted as errors)
    reconnects: int = 0
    #: one example message per error kind
    samples: dict[str, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Requests per second over the whole burst."""
        return self.requests / self.duration if self.duration > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Latency (seconds) below which ``q`` of the requests finished (nearest rank)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Load:
    """``total`` GET requests from ``concurrency`` greenlets, each with its own keep-alive connection.

    Request ``i`` goes to ``paths[i % len(paths)]`` with ``?token=<tag>-<i>``; it counts as ok when the
    answer is 200 and its JSON echoes that token. ``done`` counts finished requests while it runs
    (for a progress bar). :meth:`run` raises ``TimeoutError`` when the whole burst takes longer than
    ``deadline`` seconds.
    """

    def __init__(self, host: str, port: int, paths: Sequence[str], total: int, concurrency: int,
                 *, request_timeout: float = 30.0, deadline: float = 120.0, tag: Optional[str] = None) -> None:
        if total < 0 or concurrency < 1 or not paths:
            raise ValueError(f"need total >= 0, concurrency >= 1 and paths, got {total}, {concurrency}, {paths!r}")
        self.host, self.port = host, port
        self.paths = list(paths)
        self.total = total
        self.concurrency = concurrency
        self.request_timeout = request_timeout
        self.deadline = deadline
        self.tag = tag or f"t{os.getpid()}x{time.monotonic_ns() % 10**9}"
        self.done = 0
        self.result = LoadResult()
        self._next = itertools.count()

    def run(self) -> LoadResult:
        started = time.monotonic()
        workers = [gevent.spawn(self._client) for _ in range(min(self.concurrency, max(self.total, 1)))]
        try:
            finished = gevent.joinall(workers, timeout=self.deadline, raise_error=True)
            if len(finished) != len(workers):
                raise TimeoutError(f"{self.total} requests did not finish in {self.deadline:.0f}s "
                                   f"({self.done} done)")
        finally:
            gevent.killall(workers, timeout=5)
        self.result.duration = time.monotonic() - started
        return self.result

    def _client(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.request_timeout)
        used = False  # a kept-alive connection may have been closed by the server in the meantime
        result = self.result
        try:
            for i in self._next:
                if i >= self.total:
                    return
                path = self.paths[i % len(self.paths)]
                token = f"{self.tag}-{i}"
                begun = time.monotonic()
                status, body, kind, detail = 0, b"", "", ""
                for attempt in (0, 1):
                    try:
                        conn.request("GET", f"{path}?token={token}")
                        response = conn.getresponse()
                        status, body = response.status, response.read()
                        used = not response.will_close
                        if response.will_close:
                            conn.close()
                        break
                    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                        conn.close()
                        if attempt == 0 and used:
                            used = False
                            result.reconnects += 1
                            continue
                        kind, detail = type(exc).__name__, str(exc)
                        break
                    except (OSError, http.client.HTTPException) as exc:
                        conn.close()
                        used = False
                        kind, detail = type(exc).__name__, str(exc)
                        break
                result.latencies.append(time.monotonic() - begun)
                result.requests += 1
                if not kind:
                    result.statuses[status] += 1
                    kind, detail = self._check(status, body, token)
                if kind:
                    result.errors[kind] += 1
                    result.samples.setdefault(kind, detail[:300])
                else:
                    result.ok += 1
                self.done += 1
        finally:
            conn.close()

    def _check(self, status: int, body: bytes, token: str) -> tuple[str, str]:
        """("", "") for a correct answer, else (kind, detail); records pid and connection id."""
        if status != 200:
            return f"HTTP {status}", body.decode("utf-8", "replace").strip()
        try:
            data = json.loads(body)
        except ValueError:
            return "not JSON", body[:200].decode("utf-8", "replace")
        pid = data.get("pid")
        if isinstance(pid, int):
            self.result.pids[pid] += 1
            if isinstance(data.get("conn_id"), int):
                self.result.conn_ids.add((pid, data["conn_id"]))
        if data.get("token") != token:
            return "wrong token", f"sent {token!r}, got {data.get('token')!r}"
        return "", ""


def http_get(host: str, port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """One GET on a new connection: ``(status, body)``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def mysql_connect_args(url: str) -> dict[str, Any]:
    """``pymysql.connect`` arguments for ``mysql://user:password@host:port/database`` (query ignored)."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "localhost",
        "port": parts.port or 3306,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else "",
        "database": unquote(parts.path.lstrip("/")) or None,
        "ssl_disabled": True,
    }


class ServerSampler:
    """Counts connections on the servers themselves, from one connection each (counted in the baseline).

    A greenlet samples MySQL ``Threads_connected`` and Redis ``connected_clients`` every ``interval``
    seconds; :meth:`peaks` gives the highest counts since the last call, minus ``baseline``, the counts
    when the sampler started (its own two connections and whatever was connected before the app).
    :meth:`totals` reads the servers' cumulative connection counters (``Connections``,
    ``total_connections_received``), whose differences are the connections opened meanwhile.
    """

    def __init__(self, mysql_url: str, redis_url: str, interval: float = 0.02) -> None:
        self.interval = interval
        self._mysql = pymysql.connect(**mysql_connect_args(mysql_url), autocommit=True, connect_timeout=10)
        self._redis = redis.Redis.from_url(redis_url.split("?", 1)[0], socket_timeout=10)
        self._lock = gevent.lock.RLock()  # the sampler greenlet and the caller share the two connections
        self.baseline = self.current()
        self.samples = 0
        self._peak = (0, 0)
        self._greenlet: Optional[gevent.Greenlet] = None

    def current(self) -> tuple[int, int]:
        """(MySQL threads connected, Redis clients connected) now, the sampler's own included."""
        with self._lock, self._mysql.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
            mysql = int(cur.fetchone()[1])
            return mysql, int(self._redis.info("clients")["connected_clients"])

    def totals(self) -> tuple[int, int]:
        """(MySQL ``Connections``, Redis ``total_connections_received``): connections ever accepted."""
        with self._lock, self._mysql.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
            mysql = int(cur.fetchone()[1])
            return mysql, int(self._redis.info("stats")["total_connections_received"])

    def rebase(self) -> tuple[int, int]:
        """Make the connections open now the new baseline (and return it)."""
        self.baseline = self.current()
        return self.baseline

    def above_baseline(self) -> tuple[int, int]:
        """Connections now, minus the baseline."""
        mysql, rds = self.current()
        return mysql - self.baseline[0], rds - self.baseline[1]

    def start(self) -> ServerSampler:
        self._greenlet = gevent.spawn(self._run)
        return self

    def _run(self) -> None:
        while True:
            mysql, rds = self.current()
            self.samples += 1
            self._peak = (max(self._peak[0], mysql), max(self._peak[1], rds))
            gevent.sleep(self.interval)

    def peaks(self) -> tuple[int, int]:
        """The highest (MySQL, Redis) counts above the baseline since the last call."""
        peak, self._peak = self._peak, (0, 0)
        return max(0, peak[0] - self.baseline[0]), max(0, peak[1] - self.baseline[1])

    def stop(self) -> None:
        """Stop sampling (re-raising what made the sampler fail) and close its connections."""
        greenlet, self._greenlet = self._greenlet, None
        try:
            if greenlet is not None:
                if greenlet.dead:
                    greenlet.get()  # it failed: say why
                greenlet.kill()
        finally:
            self._mysql.close()
            self._redis.close()

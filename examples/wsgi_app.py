"""A WSGI app with one MySQLPool and one RedisPool per process, for gevent.pywsgi and gunicorn.

Run it with gevent's own server (it monkey-patches first, then serves)::

    GPOOL_MYSQL_URL=mysql://root@127.0.0.1:3306/test GPOOL_REDIS_URL=redis://127.0.0.1:6379/0 \\
        python examples/wsgi_app.py --port 8000

or with gunicorn's gevent workers (see examples/gunicorn.conf.py)::

    gunicorn -c examples/gunicorn.conf.py

Endpoints (all GET):

``/mysql?token=X``         ``SELECT X`` through the MySQL pool: ``{"token": X, "pid": ..., "conn_id": ...}``
``/redis?token=X``         ``SET`` a per-request key to X, then ``GET`` it, through the Redis pool
``/mysql-direct?token=X``  the same with a new PyMySQL connection per request (for contrast)
``/redis-direct?token=X``  the same with a new redis-py client per request (for contrast)
``/stats``                 this process's pid and both pools' ``stats().as_dict()`` as JSON
``/metrics``               Prometheus text for both pools (501 when prometheus-client is missing)

Configuration (environment): ``GPOOL_MYSQL_URL``, ``GPOOL_REDIS_URL`` (required),
``GPOOL_MYSQL_MAX_CONNECTIONS``, ``GPOOL_REDIS_MAX_CONNECTIONS`` (default 10 each) and
``GPOOL_POOL_TIMEOUT`` (seconds a request waits for a connection, default 5; then 503).

The pools are made per process, after gevent has monkey-patched it: :func:`get_pools` builds them on
first use, or gunicorn's ``post_worker_init`` hook calls it when the worker starts. Nothing here opens
a socket or builds a pool at import time, so the module is safe to import in gunicorn's master
(``--preload``), which has not been monkey-patched.
"""

from __future__ import annotations

if __name__ == "__main__":
    # Served by pywsgi: patch before anything imports socket, ssl or threading.
    from gevent import monkey

    monkey.patch_all()

import argparse
import json
import logging
import os
import re
import signal
import sys
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import gevent
import gevent.event
import pymysql
import redis
from gevent import monkey
from gevent.pywsgi import WSGIServer

from gpool import PoolClosedError, PoolExhaustedError
from gpool.mysql import MySQLPool
from gpool.redis import RedisPool

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from gpool.prometheus import PoolCollector
except ImportError:  # prometheus-client is optional: /metrics answers 501
    CollectorRegistry = None  # type: ignore[assignment,misc]

log = logging.getLogger("gpool.examples.wsgi_app")

_TOKEN = re.compile(r"\A[A-Za-z0-9_.:-]{1,100}\Z")


class Pools(NamedTuple):
    """What one process shares between its requests."""

    mysql: MySQLPool
    redis: RedisPool
    redis_client: redis.Redis  # one client for every greenlet: each command borrows a connection
    registry: Any  # a prometheus CollectorRegistry, or None
    created_by: str  # "lazy" or the gunicorn hook that built them


_pools: Optional[Pools] = None


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text) if text else default
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def _env_url(name: str) -> str:
    url = os.environ.get(name)
    if not url:
        raise RuntimeError(f"{name} is not set (make demo sets it, or starts private servers for you)")
    return url


def get_pools(created_by: str = "lazy") -> Pools:
    """This process's pools, built on the first call (in the worker, after monkey-patching).

    Building them does no I/O (connections open on first use), so no greenlet can slip in between
    the check and the assignment and build a second set.
    """
    global _pools
    if _pools is None:
        if not monkey.is_module_patched("socket"):
            # The --preload trap: code that runs in gunicorn's master runs before the worker patches.
            log.warning("pools built in pid %d, which gevent has not monkey-patched: build them in the "
                        "worker (lazily, or in post_worker_init), not at import time", os.getpid())
        timeout = float(os.environ.get("GPOOL_POOL_TIMEOUT", "5"))
        mysql = MySQLPool.from_url(_env_url("GPOOL_MYSQL_URL"),
                                   max_connections=_env_int("GPOOL_MYSQL_MAX_CONNECTIONS", 10), timeout=timeout)
        rpool = RedisPool.from_url(_env_url("GPOOL_REDIS_URL"),
                                   max_connections=_env_int("GPOOL_REDIS_MAX_CONNECTIONS", 10), timeout=timeout)
        registry = None
        if CollectorRegistry is not None:
            registry = CollectorRegistry()
            PoolCollector.register(mysql, rpool, registry=registry)
        _pools = Pools(mysql, rpool, rpool.client(), registry, created_by)
        log.info("pid %d: pools built (%s)", os.getpid(), created_by)
    return _pools


def close_pools() -> None:
    """Close this process's pools (idle connections now, the others when their request ends)."""
    global _pools
    pools, _pools = _pools, None
    if pools is not None:
        pools.mysql.close()
        pools.redis.close()


# -- endpoints ----------------------------------------------------------------------------------------

Response = tuple[str, str, bytes]  # status, content type, body


def _json(status: str, data: Any) -> Response:
    return status, "application/json", json.dumps(data).encode() + b"\n"


def _token(query: dict[str, list[str]]) -> str:
    token = query.get("token", [""])[0]
    if not _TOKEN.match(token):
        raise ValueError("token must be 1-100 characters from [A-Za-z0-9_.:-]")
    return token


def mysql_endpoint(query: dict[str, list[str]]) -> Response:
    token = _token(query)
    with get_pools().mysql.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT %s, CONNECTION_ID()", (token,))
        echoed, conn_id = cur.fetchone()
    return _json("200 OK", {"token": echoed, "pid": os.getpid(), "conn_id": conn_id})


def redis_endpoint(query: dict[str, list[str]]) -> Response:
    token = _token(query)
    r = get_pools().redis_client
    key = f"gpool:example:{token}"
    r.set(key, token, ex=60)
    echoed = r.get(key)
    return _json("200 OK", {"token": echoed.decode() if echoed is not None else None, "pid": os.getpid()})


def _mysql_connect_args() -> dict[str, Any]:
    parts = urlsplit(_env_url("GPOOL_MYSQL_URL"))
    return {
        "host": parts.hostname or "localhost",
        "port": parts.port or 3306,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else "",
        "database": unquote(parts.path.lstrip("/")) or None,
        # Without this PyMySQL builds a TLS context on every connect (30-60 ms of CPU that stalls
        # the whole worker): the contrast would look far worse than connecting really costs.
        "ssl_disabled": True,
    }


def mysql_direct_endpoint(query: dict[str, list[str]]) -> Response:
    token = _token(query)
    conn = pymysql.connect(**_mysql_connect_args(), connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT %s, CONNECTION_ID()", (token,))
            echoed, conn_id = cur.fetchone()
    finally:
        conn.close()
    return _json("200 OK", {"token": echoed, "pid": os.getpid(), "conn_id": conn_id})


def redis_direct_endpoint(query: dict[str, list[str]]) -> Response:
    token = _token(query)
    r = redis.Redis.from_url(_env_url("GPOOL_REDIS_URL").split("?", 1)[0], socket_connect_timeout=10)
    try:
        key = f"gpool:example:{token}"
        r.set(key, token, ex=60)
        echoed = r.get(key)
    finally:
        r.close()
    return _json("200 OK", {"token": echoed.decode() if echoed is not None else None, "pid": os.getpid()})


def stats_endpoint(query: dict[str, list[str]]) -> Response:
    pools = get_pools()
    return _json("200 OK", {
        "pid": os.getpid(),
        "created_by": pools.created_by,
        "mysql": pools.mysql.stats().as_dict(),
        "redis": pools.redis.stats().as_dict(),
    })


def metrics_endpoint(query: dict[str, list[str]]) -> Response:
    pools = get_pools()
    if pools.registry is None:
        return "501 Not Implemented", "text/plain", b"/metrics needs prometheus-client: pip install gpool[prometheus]\n"
    return "200 OK", CONTENT_TYPE_LATEST, generate_latest(pools.registry)


def index_endpoint(query: dict[str, list[str]]) -> Response:
    paths = " ".join(sorted(ROUTES))
    return "200 OK", "text/plain", f"gpool example app (pid {os.getpid()}): {paths}\n".encode()


ROUTES: dict[str, Callable[[dict[str, list[str]]], Response]] = {
    "/": index_endpoint,
    "/mysql": mysql_endpoint,
    "/redis": redis_endpoint,
    "/mysql-direct": mysql_direct_endpoint,
    "/redis-direct": redis_direct_endpoint,
    "/stats": stats_endpoint,
    "/metrics": metrics_endpoint,
}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The WSGI application."""
    handler = ROUTES.get(environ.get("PATH_INFO") or "/")
    if handler is None:
        status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
    else:
        try:
            status, ctype, body = handler(parse_qs(environ.get("QUERY_STRING", "")))
        except ValueError as exc:
            status, ctype, body = "400 Bad Request", "text/plain", f"{exc}\n".encode()
        except (PoolExhaustedError, PoolClosedError) as exc:
            # No connection within GPOOL_POOL_TIMEOUT: shed load instead of hanging the client.
            status, ctype, body = "503 Service Unavailable", "text/plain", f"{exc}\n".encode()
        except Exception as exc:
            log.exception("request %s failed", environ.get("PATH_INFO"))
            status, ctype, body = "500 Internal Server Error", "text/plain", f"{type(exc).__name__}\n".encode()
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


# -- served by gevent.pywsgi ------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the gpool example app with gevent.pywsgi.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port (printed on stdout)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("GPOOL_MYSQL_URL", "GPOOL_REDIS_URL"):
        if not os.environ.get(name):
            print(f"{name} is not set; `make demo` runs this app against private servers", file=sys.stderr)
            return 2
    # No access log: at thousands of requests per second it would cost more than the requests.
    server = WSGIServer((args.host, args.port), app, log=None, backlog=1024)
    server.start()
    print(f"serving on http://{args.host}:{server.server_port} (pid {os.getpid()})", flush=True)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    stop.wait()
    server.stop(timeout=5)  # lets requests in flight finish
    close_pools()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: the WSGI example under a burst of requests, pooled and then connect-per-request.

    python examples/demo.py                           # zero configuration: private MariaDB + Redis
    GPOOL_MYSQL_URL=mysql://... GPOOL_REDIS_URL=redis://... python examples/demo.py
    python examples/demo.py --requests 1000 --concurrency 100

What it does:

1. uses the servers named by ``GPOOL_MYSQL_URL`` / ``GPOOL_REDIS_URL``, or starts a private throwaway
   ``mariadbd`` and ``redis-server`` on free loopback ports (the test suite's launchers), removed at
   the end, Ctrl-C included;
2. starts examples/wsgi_app.py (gevent.pywsgi, one MySQLPool and one RedisPool) as a subprocess;
3. sends ``--requests`` requests from ``--concurrency`` client greenlets, half to ``/mysql`` and half to
   ``/redis``, one run each, then the same to ``/mysql-direct`` and ``/redis-direct``, which open a
   new connection per request; each request checks that its own token came back;
4. prints a table: throughput, latency, connections the servers accepted versus requests served,
   the peak of connections open on the servers, and the pools' waits and timeouts.

Progress goes to stderr (a live bar on a terminal, a line per second otherwise), the results to
stdout. Exits 0 when every pooled request was answered correctly, 1 otherwise.
"""

from gevent import monkey

monkey.patch_all()

# ruff: noqa: E402
import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Optional, TextIO

import gevent
import pymysql
import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from loadgen import Load, LoadResult, ServerSampler, http_get, mysql_connect_args

HOST = "127.0.0.1"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- servers and the app ---------------------------------------------------------------------------------


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str, dict[str, str]]]:
    """(mysql_url, redis_url, origin of each): the user's servers, or private ones removed on exit."""
    mysql_url, redis_url = os.environ.get("GPOOL_MYSQL_URL"), os.environ.get("GPOOL_REDIS_URL")
    origin = {"mysql": "GPOOL_MYSQL_URL", "redis": "GPOOL_REDIS_URL"}
    if mysql_url and redis_url:
        yield mysql_url, redis_url, origin
        return
    from gpool.testing import MariaDBServer, RedisServer, find_mariadbd, find_redis_server

    wanted: list[Any] = []
    if not mysql_url:
        if find_mariadbd() is None:
            raise SystemExit("mariadbd is not installed: run `make demo` (it installs mariadb-server) "
                             "or set GPOOL_MYSQL_URL")
        wanted.append(MariaDBServer())
    if not redis_url:
        if find_redis_server() is None:
            raise SystemExit("redis-server is not installed: run `make demo` (it installs redis-server) "
                             "or set GPOOL_REDIS_URL")
        wanted.append(RedisServer())
    names = ["MariaDB" if isinstance(s, MariaDBServer) else "Redis" for s in wanted]
    log(f"starting a private throwaway {' and '.join(names)} (removed at exit) ...")
    try:
        began = time.monotonic()
        gevent.joinall([gevent.spawn(s.start) for s in wanted], raise_error=True)
        log(f"servers ready in {time.monotonic() - began:.1f}s")
        for server in wanted:
            if isinstance(server, MariaDBServer):
                mysql_url, origin["mysql"] = server.url, "private"
            else:
                redis_url, origin["redis"] = server.url, "private"
        assert mysql_url and redis_url
        yield mysql_url, redis_url, origin
    finally:
        for server in wanted:
            server.cleanup()


class App:
    """examples/wsgi_app.py served by gevent.pywsgi in a subprocess of its own session."""

    def __init__(self, mysql_url: str, redis_url: str, max_connections: int) -> None:
        fd, self.log_path = tempfile.mkstemp(prefix="gpool-demo-app-", suffix=".log")
        env = dict(os.environ, GPOOL_MYSQL_URL=mysql_url, GPOOL_REDIS_URL=redis_url,
                   GPOOL_MYSQL_MAX_CONNECTIONS=str(max_connections),
                   GPOOL_REDIS_MAX_CONNECTIONS=str(max_connections))
        with os.fdopen(fd, "wb") as app_log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "wsgi_app.py"), "--host", HOST, "--port", "0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=app_log, env=env,
                start_new_session=True,  # Ctrl-C in the terminal reaches the demo, which stops the app itself
            )
        self.port = 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        with gevent.Timeout(timeout, TimeoutError(f"the app did not start in {timeout:.0f}s")):
            line = self.proc.stdout.readline().decode()
        if "serving on" not in line:
            raise RuntimeError(f"the app failed to start:\n{self.log_tail()}")
        self.port = int(line.split(f"{HOST}:", 1)[1].split()[0])

    def stats(self) -> dict[str, Any]:
        status, body = http_get(HOST, self.port, "/stats")
        if status != 200:
            raise RuntimeError(f"/stats answered {status}: {body[:300]!r}")
        return json.loads(body)  # type: ignore[no-any-return]

    def log_tail(self, lines: int = 20) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        os.unlink(self.log_path)


# -- progress ------------------------------------------------------------------------------------------


class Progress:
    """A live bar on a terminal (redrawn 10 times a second), a plain line per second otherwise."""

    def __init__(self, label: str, load: Load, stream: TextIO = sys.stderr) -> None:
        self.label, self.load, self.stream = label, load, stream
        self.tty = stream.isatty()
        self.began = time.monotonic()
        self.greenlet = gevent.spawn(self._loop)

    def _line(self) -> str:
        done, total = self.load.done, self.load.total
        elapsed = max(time.monotonic() - self.began, 1e-9)
        errors = sum(self.load.result.errors.values())
        width = 30
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        return (f"{self.label:<28} [{bar}] {done:>6,}/{total:,}  {done / elapsed:>7,.0f} req/s"
                f"  {errors} errors")

    def _loop(self) -> None:
        while True:
            gevent.sleep(0.1 if self.tty else 1.0)
            self._draw()

    def _draw(self) -> None:
        if self.tty:
            self.stream.write("\r" + self._line() + "\x1b[K")
        else:
            self.stream.write(self._line() + "\n")
        self.stream.flush()

    def finish(self) -> None:
        self.greenlet.kill()
        self._draw()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# -- one run ----------------------------------------------------------------------------------------------


class Run:
    def __init__(self, path: str, mode: str, pool: Optional[str]) -> None:
        self.path, self.mode, self.pool = path, mode, pool  # pool: the /stats key, None for direct
        self.result = LoadResult()
        self.opened = 0  # connections the server accepted during the run
        self.peak = 0  # connections open on the server at the peak, above the baseline
        self.waits: Optional[int] = None  # from the pool's stats; None for connect-per-request
        self.timeouts: Optional[int] = None

    @property
    def label(self) -> str:
        return f"{self.path} ({self.mode})"


def drive(run: Run, app: App, sampler: ServerSampler, requests: int, concurrency: int) -> None:
    before_totals = sampler.totals()
    before = app.stats() if run.pool else None
    sampler.rebase()  # the peak counts what this run adds, not the idle connections of earlier runs
    sampler.peaks()
    load = Load(HOST, app.port, [run.path], requests, concurrency, request_timeout=30, deadline=120)
    progress = Progress(run.label, load)
    try:
        run.result = load.run()
    finally:
        progress.finish()
    peaks = sampler.peaks()
    after_totals = sampler.totals()
    backend = 0 if run.path.startswith("/mysql") else 1
    run.opened = after_totals[backend] - before_totals[backend]
    run.peak = peaks[backend]
    if run.pool and before is not None:
        after = app.stats()
        for name in ("waits", "timeouts"):
            setattr(run, name, after[run.pool][name] - before[run.pool][name])


# -- report ----------------------------------------------------------------------------------------------


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(runs: list[Run]) -> str:
    header = ("run", "requests", "errors", "req/s", "p50 ms", "p99 ms", "conns opened", "peak conns",
              "waits", "timeouts")
    rows = [header]
    for run in runs:
        r = run.result
        rows.append((run.label, _num(r.requests), _num(r.requests - r.ok), _num(r.rate),
                     _num(r.percentile(0.5) * 1000), _num(r.percentile(0.99) * 1000), _num(run.opened),
                     _num(run.peak), _num(run.waits), _num(run.timeouts)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def default_connect_cost(mysql_url: str) -> Optional[float]:
    """Seconds of one PyMySQL connect with default arguments (the best of 3), or None if it fails."""
    kwargs = mysql_connect_args(mysql_url)
    del kwargs["ssl_disabled"]
    best = None
    for _ in range(3):
        began = time.monotonic()
        try:
            pymysql.connect(**kwargs, connect_timeout=5).close()
        except Exception:
            return None
        spent = time.monotonic() - began
        best = spent if best is None else min(best, spent)
    return best


def server_versions(mysql_url: str, redis_url: str) -> tuple[str, str]:
    """("MariaDB 10.11.6", "Redis 7.0.15"), read from the servers."""
    conn = pymysql.connect(**mysql_connect_args(mysql_url), connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = str(cur.fetchone()[0])
    finally:
        conn.close()
    mysql = f"{'MariaDB' if 'mariadb' in version.lower() else 'MySQL'} {version.split('-')[0]}"
    r = redis.Redis.from_url(redis_url.split("?", 1)[0], socket_timeout=5)
    try:
        return mysql, f"Redis {r.info('server')['redis_version']}"
    finally:
        r.close()


def summary(runs: list[Run], final_stats: dict[str, Any], cost: Optional[float]) -> list[str]:
    pooled = [r for r in runs if r.pool]
    direct = [r for r in runs if not r.pool]
    in_use = final_stats["mysql"]["in_use"] + final_stats["redis"]["in_use"]
    idle = final_stats["mysql"]["idle"] + final_stats["redis"]["idle"]
    lines = [f"pooled:      {sum(r.result.ok for r in pooled):,} requests served over "
             f"{sum(r.opened for r in pooled):,} server connections ({in_use} in use after the burst, {idle} idle)"]
    if direct:
        lines.append(f"per request: {sum(r.result.ok for r in direct):,} requests served over "
                     f"{sum(r.opened for r in direct):,} server connections")
        for p in pooled:
            twin = next((d for d in direct if d.path.startswith(p.path)), None)
            if twin is None or not twin.result.rate:
                continue
            p99, twin_p99 = p.result.percentile(0.99) * 1000, twin.result.percentile(0.99) * 1000
            lines.append(f"  {p.path:<7} pooled: {p.result.rate / twin.result.rate:.1f}x the requests/s, "
                         f"p99 {p99:,.0f} vs {twin_p99:,.0f} ms, peak {p.peak} vs {twin.peak} server connections")
    if cost is not None:
        lines.append(f"note: /mysql-direct connects with ssl_disabled=True. With PyMySQL's defaults a connect "
                     f"took {cost * 1000:.0f} ms here,")
        lines.append(f"mostly CPU building a TLS context: at most ~{1 / cost:,.0f} connects/s per process.")
    return lines


def next_steps(origin: dict[str, str]) -> list[str]:
    """Where a newcomer goes after the demo: the quick start, then this app with its /metrics page."""
    here = os.path.relpath(HERE)
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):  # an interpreter outside this directory: its full path reads better
        python = sys.executable
    if origin["mysql"] == origin["redis"] == "private":
        # The demo's servers are gone: start long-lived ones on the ports the README's examples default to.
        servers = [f"  servers      {python} -m gpool.testing redis --port 16379   (in a terminal of its own;",
                   f"               {python} -m gpool.testing mysql --port 13306    the same, in another)"]
        env = "GPOOL_MYSQL_URL=mysql://root@127.0.0.1:13306/test GPOOL_REDIS_URL=redis://127.0.0.1:16379/0 "
    else:
        servers, env = [], ""  # the user's own servers, named by the variables already set
    return [
        "where to look next:",
        '  quick start  README.md, "Quick start": 15 lines to paste, against the servers below',
        *servers,
        f"  this app     {env}{python} {os.path.join(here, 'wsgi_app.py')}",
        "               then http://127.0.0.1:8000/metrics (Prometheus), /stats (JSON), /mysql, /redis",
        "  the details  docs/configuration.md, docs/mysql.md, docs/redis.md, docs/gunicorn.md, "
        "docs/observability.md",
    ]


# -- main ------------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="gpool's demo: the WSGI example, pooled vs connect-per-request.")
    parser.add_argument("--requests", type=int, default=4000,
                        help="requests per mode, half to MySQL and half to Redis (default 4000)")
    parser.add_argument("--concurrency", type=int, default=200, help="client greenlets (default 200)")
    parser.add_argument("--max-connections", type=int, default=10, help="per pool (default 10)")
    parser.add_argument("--no-contrast", action="store_true", help="skip the connect-per-request runs")
    args = parser.parse_args(argv)
    if args.requests < 2 or args.concurrency < 1 or args.max_connections < 1:
        parser.error("--requests must be >= 2, --concurrency and --max-connections >= 1")
    # Ctrl-C and SIGTERM (CI cancelling the job) unwind the main greenlet, so its finally blocks stop
    # the app and remove the servers. Python's own handlers would raise in whichever greenlet runs at
    # that moment (a client, the sampler), and the main greenlet could miss its clean-up.
    main_greenlet = gevent.getcurrent()
    gevent.signal_handler(signal.SIGINT, gevent.kill, main_greenlet, KeyboardInterrupt)
    gevent.signal_handler(signal.SIGTERM, gevent.kill, main_greenlet, SystemExit(143))
    began = time.monotonic()
    per_run = args.requests // 2
    runs = [Run("/mysql", "pooled", "mysql"), Run("/redis", "pooled", "redis")]
    if not args.no_contrast:
        runs += [Run("/mysql-direct", "per request", None), Run("/redis-direct", "per request", None)]

    with servers() as (mysql_url, redis_url, origin):
        app = App(mysql_url, redis_url, args.max_connections)
        sampler = None
        try:
            app.wait_ready()
            sampler = ServerSampler(mysql_url, redis_url).start()
            versions = server_versions(mysql_url, redis_url)
            for run in runs:
                drive(run, app, sampler, per_run, args.concurrency)
            final_stats = app.stats()
            cost = default_connect_cost(mysql_url) if not args.no_contrast else None
        except BaseException:
            if app.proc.poll() is not None:
                log(f"the app exited with status {app.proc.returncode}:\n{app.log_tail()}")
            raise
        finally:
            try:
                if sampler is not None:
                    sampler.stop()
            finally:
                app.stop()

    print()
    if origin["mysql"] == origin["redis"] == "private":
        against = f"{versions[0]} and {versions[1]} (private servers, removed at exit)"
    else:
        against = " and ".join(f"{version} ({'private' if where == 'private' else 'from ' + where})"
                               for version, where in zip(versions, (origin["mysql"], origin["redis"])))
    print(f"gpool demo: examples/wsgi_app.py on gevent.pywsgi, {against}")
    print(f"{args.concurrency} concurrent clients, {per_run:,} requests per run, "
          f"pools of max_connections={args.max_connections}")
    print()
    print(table(runs))
    print()
    for line in summary(runs, final_stats, cost):
        print(line)
    failed = [r for r in runs if r.pool and r.result.ok != r.result.requests]
    for run in runs:
        for kind, count in run.result.errors.items():
            print(f"{run.label}: {count} x {kind}: {run.result.samples.get(kind, '')}")
    verdict = "FAILED: some pooled requests were not answered correctly" if failed else \
        "every pooled request got its own token back"
    print(f"{verdict}; demo took {time.monotonic() - began:.1f}s")
    print()
    for line in next_steps(origin):
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; servers removed")
        sys.exit(130)

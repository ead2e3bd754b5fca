"""The examples, end to end: each runs as is, and the WSGI app holds up under gunicorn and pywsgi.

The servers under test are real processes started like a user would: ``python examples/...`` and
``python -m gunicorn -k gevent``, each in its own session so the test can prove nothing is left behind.
Load comes from 200 client greenlets in this process; server-side connection counts come from the
servers themselves (MariaDB ``Threads_connected``, Redis ``connected_clients``), sampled every 20 ms.
"""

from gevent import monkey

monkey.patch_all()

# ruff: noqa: E402
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import gevent
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
from loadgen import Load, ServerSampler, http_get

HOST = "127.0.0.1"
MAX_CONNECTIONS = 5  # per pool and per process: 200 clients contend for them
REQUESTS = 2000
CONCURRENCY = 200


def _env(mysql_server: Any, redis_server: Any, **extra: str) -> dict[str, str]:
    return dict(os.environ, GPOOL_MYSQL_URL=mysql_server.url, GPOOL_REDIS_URL=redis_server.url,
                GPOOL_MYSQL_MAX_CONNECTIONS=str(MAX_CONNECTIONS), GPOOL_REDIS_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
                PYTHONUNBUFFERED="1", **extra)


def _run_example(argv: list[str], env: Optional[dict[str, str]] = None, timeout: float = 60) -> str:
    proc = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=EXAMPLES.parent)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def _children(pid: int) -> set[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


class ServedApp:
    """A server process in its own session, its output in a log file; port parsed from the log."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, port_pattern: str) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, *argv], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=EXAMPLES.parent, start_new_session=True)
        self.port = self._wait_port(port_pattern)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_port(self, pattern: str, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                port = int(match.group(1))
                while time.monotonic() < deadline:  # listening; now wait until requests are served
                    try:
                        if http_get(HOST, port, "/", timeout=2)[0] == 200:
                            return port
                    except OSError:
                        pass
                    gevent.sleep(0.05)
            if self.proc.poll() is not None:
                break
            gevent.sleep(0.05)
        self.kill()
        pytest.fail(f"the server did not become ready (exit status {self.proc.poll()}):\n{self.log()}")

    def stats_by_pid(self, pids: set[int], timeout: float = 15.0) -> dict[int, dict[str, Any]]:
        """``/stats`` of each pid in ``pids``: new connections until every worker answered (bounded)."""
        seen: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while set(seen) != pids and time.monotonic() < deadline:
            status, body = http_get(HOST, self.port, "/stats")
            assert status == 200, body
            data = json.loads(body)
            seen[data["pid"]] = data
        assert set(seen) == pids, f"/stats answered from {sorted(seen)}, expected every worker {sorted(pids)}"
        return seen

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM the session leader and wait; SIGKILL the whole group if it does not exit in time."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the server ignored SIGTERM for {timeout:.0f}s:\n{self.log()}")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def leftovers(self, timeout: float = 5.0) -> bool:
        """True while any process of the session's group is alive (bounded wait for it to go)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return False
            if time.monotonic() >= deadline:
                return True
            gevent.sleep(0.05)


def _wait_back_to_baseline(sampler: ServerSampler, timeout: float = 10.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        above = sampler.above_baseline()
        if max(above) <= 0 or time.monotonic() >= deadline:
            return above
        gevent.sleep(0.05)


# -- the scripts -----------------------------------------------------------------------------------------


def test_script_runs_1000_queries_from_100_greenlets_over_at_most_10_connections(mysql_server):
    out = _run_example(["examples/script.py"], env=dict(os.environ, GPOOL_MYSQL_URL=mysql_server.url))
    summary = re.search(r"queries=(\d+) correct=(\d+) server_connections=(\d+) max_connections=(\d+)", out)
    assert summary, out
    queries, correct, server_connections, cap = map(int, summary.groups())
    assert (queries, correct, cap) == (1000, 1000, 10)
    assert 1 <= server_connections <= 10
    stats = {k: float(v) for k, v in re.findall(r"^\s+(\w+)\s+([\d.]+)$", out, re.MULTILINE)}
    assert stats["acquired"] == stats["released"] == 1000
    assert stats["in_use"] == 0 and stats["timeouts"] == 0 and stats["connect_errors"] == 0
    assert stats["created"] == stats["size"] == server_connections
    assert stats["waits"] >= 900, "100 greenlets on 10 connections must queue"


def test_tcp_pool_proxy_forwards_1000_lines_over_at_most_5_upstream_connections():
    out = _run_example(["examples/tcp_pool.py"])
    line = re.search(r"lines=(\d+) correct=(\d+) client_connections=(\d+) "
                     r"upstream_connections_accepted=(\d+) max_connections=(\d+)", out)
    assert line, out
    lines, correct, clients, accepted, cap = map(int, line.groups())
    assert (lines, correct, clients, cap) == (1000, 1000, 100, 5)
    stats = dict(re.findall(r"(\w+)=(\d+)", out.splitlines()[2]))
    assert 1 <= accepted <= 5
    assert int(stats["created"]) == accepted, "every pooled connection is one the echo service accepted"
    assert int(stats["acquired"]) == int(stats["released"]) == 1000
    assert int(stats["in_use"]) == int(stats["timeouts"]) == int(stats["dropped"]) == 0


@pytest.mark.timeout(120)
def test_demo_starts_private_servers_prints_the_table_and_removes_them(mysql_server, redis_server):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name in ("GPOOL_MYSQL_URL", "GPOOL_REDIS_URL"):
        env.pop(name, None)
    if mysql_server.external or redis_server.external:  # no private servers here: use the given ones
        env.update(GPOOL_MYSQL_URL=mysql_server.url, GPOOL_REDIS_URL=redis_server.url)
    # A short private temp dir: the demo's servers live in it, and it must be empty afterwards.
    tmp = tempfile.mkdtemp(prefix="gd-")
    env["TMPDIR"] = tmp
    try:
        began = time.monotonic()
        out = _run_example(["examples/demo.py", "--requests", "400", "--concurrency", "50"], env=env, timeout=90)
        took = time.monotonic() - began
        left = os.listdir(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert left == [], f"the demo left {left} behind"
    assert took < 60
    rows = {}
    for line in out.splitlines():
        if re.match(r"/\S+ \((pooled|per request)\)  ", line):
            cells = re.split(r"\s{2,}", line.strip())
            rows[cells[0]] = [None if c == "-" else int(c.replace(",", "")) for c in cells[1:]]
    assert set(rows) == {"/mysql (pooled)", "/redis (pooled)", "/mysql-direct (per request)",
                         "/redis-direct (per request)"}, out
    for label, (requests, errors, rate, p50, p99, opened, peak, waits, timeouts) in rows.items():
        assert requests == 200 and rate > 0 and p99 >= p50, (label, out)
        if "pooled" in label:
            assert errors == 0 and timeouts == 0, (label, out)
            assert 1 <= opened <= 10 and 1 <= peak <= 10, (label, out)
            assert waits > 0, "50 clients on 10 connections must queue"
        else:
            assert errors == 0 and opened == 200, "connect-per-request opens one connection per request"
            assert waits is None and timeouts is None
    assert "(0 in use after the burst" in out
    assert "where to look next:" in out and "Quick start" in out and "http://127.0.0.1:8000/metrics" in out
    assert "every pooled request got its own token back" in out


# -- the WSGI app under load --------------------------------------------------------------------------------


def _load_and_check(app: ServedApp, workers: int, sampler: ServerSampler, created_by: str) -> dict[str, Any]:
    """2,000 requests at /mysql and /redis; assert answers, caps and stats. Returns the numbers."""
    cap = workers * MAX_CONNECTIONS
    if workers > 1:
        deadline = time.monotonic() + 10
        while len(pids := _children(app.proc.pid)) < workers and time.monotonic() < deadline:
            gevent.sleep(0.05)  # the master forks its workers one after the other
        assert len(pids) == workers, f"gunicorn should run {workers} workers, has {sorted(pids)}"
    else:
        pids = {app.proc.pid}
    before = app.stats_by_pid(pids)
    assert {s["created_by"] for s in before.values()} == {created_by}

    sampler.peaks()
    sampler.start()
    began = time.monotonic()
    result = Load(HOST, app.port, ["/mysql", "/redis"], REQUESTS, CONCURRENCY, deadline=60).run()
    duration = time.monotonic() - began
    peak_mysql, peak_redis = sampler.peaks()

    assert result.requests == REQUESTS
    assert result.ok == REQUESTS, f"errors: {dict(result.errors)}, e.g. {result.samples}"
    assert dict(result.statuses) == {200: REQUESTS}, "no 5xx, no 4xx"
    assert set(result.pids) == pids, f"every worker served requests: {dict(result.pids)}"
    assert sampler.samples >= 5, "the sampler must have seen the load"
    assert 1 <= peak_mysql <= cap, f"MariaDB saw {peak_mysql} connections at the peak, cap {cap}"
    assert 1 <= peak_redis <= cap, f"Redis saw {peak_redis} connections at the peak, cap {cap}"
    assert len(result.conn_ids) <= cap, "distinct MySQL CONNECTION_ID()s seen by the clients"

    after = app.stats_by_pid(pids)
    for pid, data in after.items():
        for pool in ("mysql", "redis"):
            s = data[pool]
            assert s["in_use"] == 0 and s["waiting"] == 0 and s["connecting"] == 0, (pid, pool, s)
            assert s["timeouts"] == 0 and s["connect_errors"] == 0, (pid, pool, s)
            assert 1 <= s["created"] <= MAX_CONNECTIONS and s["size"] <= MAX_CONNECTIONS, (pid, pool, s)
    # /mysql takes one connection per request; /redis one per command (SET, GET).
    assert sum(d["mysql"]["acquired"] for d in after.values()) == REQUESTS // 2
    assert sum(d["redis"]["acquired"] for d in after.values()) == REQUESTS
    return {"duration": duration, "rate": result.rate, "peak_mysql": peak_mysql, "peak_redis": peak_redis,
            "cap": cap, "p99": result.percentile(0.99), "reconnects": result.reconnects}


def _stop_and_check(app: ServedApp, sampler: ServerSampler) -> None:
    status = app.stop()
    assert status == 0, f"exit status {status}\n{app.log()}"
    assert not app.leftovers(), "a process of the server's session outlived it"
    assert _wait_back_to_baseline(sampler) <= (0, 0), "the servers still count connections from the app"


GUNICORN_CASES = {
    # name: (extra gunicorn arguments, GPOOL_POOLS, where the pools are built)
    "post_worker_init": ([], "post_worker_init"),
    "preload+lazy": (["--preload"], "lazy"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(GUNICORN_CASES))
def test_gunicorn_gevent_workers_serve_2000_requests_within_workers_x_max_connections(
        case, mysql_server, redis_server, tmp_path):
    extra, pools_at = GUNICORN_CASES[case]
    sampler = ServerSampler(mysql_server.url, redis_server.url)  # baseline: before the app exists
    app = ServedApp(
        ["-m", "gunicorn", "-c", "examples/gunicorn.conf.py", "-k", "gevent", "-w", "2", "-b", f"{HOST}:0", *extra],
        _env(mysql_server, redis_server, GPOOL_POOLS=pools_at), tmp_path / "gunicorn.log",
        r"Listening at: http://127\.0\.0\.1:(\d+)")
    try:
        numbers = _load_and_check(app, 2, sampler, pools_at)
        _stop_and_check(app, sampler)
    finally:
        if app.proc.poll() is None:
            app.kill()
        sampler.stop()
    log = app.log()
    assert "Traceback" not in log and "[ERROR]" not in log, log
    assert "not monkey-patched" not in log, "pools must be built in the worker, after gevent patched it"
    print(f"gunicorn {case}: {numbers}")


@pytest.mark.timeout(120)
def test_pywsgi_app_serves_2000_requests_within_max_connections(mysql_server, redis_server, tmp_path):
    sampler = ServerSampler(mysql_server.url, redis_server.url)
    app = ServedApp(["examples/wsgi_app.py", "--host", HOST, "--port", "0"], _env(mysql_server, redis_server),
                    tmp_path / "pywsgi.log", r"serving on http://127\.0\.0\.1:(\d+)")
    try:
        numbers = _load_and_check(app, 1, sampler, "lazy")
        status, body = http_get(HOST, app.port, "/metrics")
        assert status == 200
        text = body.decode()
        mysql_name = json.loads(http_get(HOST, app.port, "/stats")[1])["mysql"]["name"]
        assert f'gpool_acquisitions_total{{pool="{mysql_name}"}} {float(REQUESTS // 2)}' in text
        assert 'gpool_connections{pool="' in text and 'state="in_use"} 0.0' in text
        _stop_and_check(app, sampler)
    finally:
        if app.proc.poll() is None:
            app.kill()
        sampler.stop()
    assert "Traceback" not in app.log(), app.log()
    print(f"pywsgi: {numbers}")


def test_wsgi_app_endpoints_answer_errors_and_contrast_paths(mysql_server, redis_server, tmp_path):
    # Run as is without configuration: a clear message, exit status 2.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPOOL_")}
    proc = subprocess.run([sys.executable, "examples/wsgi_app.py", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=30, cwd=EXAMPLES.parent)
    assert proc.returncode == 2 and "GPOOL_MYSQL_URL is not set" in proc.stderr

    # Without prometheus-client (a stand-in package that fails to import), /metrics answers 501.
    fake = tmp_path / "no_prometheus"
    (fake / "prometheus_client").mkdir(parents=True)
    (fake / "prometheus_client" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = _env(mysql_server, redis_server, PYTHONPATH=str(fake))
    app = ServedApp(["examples/wsgi_app.py", "--port", "0"], env, tmp_path / "app.log",
                    r"serving on http://127\.0\.0\.1:(\d+)")
    try:
        status, body = http_get(HOST, app.port, "/metrics")
        assert status == 501 and b"prometheus-client" in body
        for path in ("/mysql-direct", "/redis-direct"):
            status, body = http_get(HOST, app.port, f"{path}?token=direct-1")
            assert status == 200 and json.loads(body)["token"] == "direct-1"
        assert http_get(HOST, app.port, "/mysql")[0] == 400, "a missing token is the client's error"
        assert http_get(HOST, app.port, "/redis?token=bad%20token")[0] == 400
        assert http_get(HOST, app.port, "/nope")[0] == 404
        stats = json.loads(http_get(HOST, app.port, "/stats")[1])
        assert stats["mysql"]["acquired"] == 0, "the direct endpoints do not touch the pools"
        assert app.stop() == 0
        assert not app.leftovers()
    finally:
        if app.proc.poll() is None:
            app.kill()

"""gpool.sqlalchemy.GeventPool against a real MariaDB, through SQLAlchemy's engine and ORM.

What is proven here: 500 greenlets on pool_size=10 get served with no error, never more than 10
server connections, and fairly (the slowest finishes within 3x the fastest; QueuePool, measured in the
same run, lets early greenlets barge); 200 greenlets killed or timed out while waiting or mid-query
leave nothing checked out and a working engine; pool_timeout raises sqlalchemy's TimeoutError within
its bound with gpool's numbers; a connection killed on the server is replaced (by the socket check,
or by pre-ping when the socket check cannot see it, then inside the same slot); pool_recycle
reconnects inside the slot; a record returned by another greenlet (a garbage-collected connection)
is handed over explicitly; dispose/recreate; fork; Prometheus; bad arguments.
"""

from gevent import monkey

monkey.patch_all()

# ruff: noqa: E402
import gc
import json
import os
import time
from collections.abc import Iterator
from typing import Any, Callable

import gevent
import pymysql
import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.pool import QueuePool

from gpool import PoolExhaustedError
from gpool.sqlalchemy import GeventPool, _Slot
from tests.support import wait_until

SSL_OFF = {"ssl_disabled": True}  # PyMySQL builds an SSLContext per connect otherwise (~30 ms of CPU each)


def sa_url(server: Any) -> str:
    kw = server.connect_kwargs()
    password = f":{kw['password']}" if kw.get("password") else ""
    return f"mysql+pymysql://{kw['user']}{password}@{kw['host']}:{kw['port']}/{kw['database']}"


@pytest.fixture
def make_engine(mysql_server: Any) -> Iterator[Callable[..., Any]]:
    """``make_engine(**create_engine kwargs)`` with GeventPool by default; all disposed afterwards."""
    engines: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("poolclass", GeventPool)
        kwargs.setdefault("connect_args", SSL_OFF)
        engine = create_engine(sa_url(mysql_server), **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def side(mysql_server: Any) -> Iterator[pymysql.connections.Connection]:
    """A plain PyMySQL connection outside any pool, to look at and act on the server."""
    conn = pymysql.connect(**mysql_server.connect_kwargs(), ssl_disabled=True, autocommit=True)
    yield conn
    conn.close()


def server_threads(side: pymysql.connections.Connection) -> set[int]:
    with side.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()")
        return {row[0] for row in cur.fetchall()}


def conn_id(engine: Any) -> int:
    with engine.connect() as c:
        return int(c.execute(text("SELECT CONNECTION_ID()")).scalar())


# -- fairness and the cap ----------------------------------------------------------------------------------


def _burst(engine: Any, greenlets: int, rounds: int, side: pymysql.connections.Connection) -> dict[str, Any]:
    """``greenlets`` greenlets, each ``rounds`` times through ``engine.connect()``; their finish times."""
    before = server_threads(side)
    finished: list[float] = []
    errors: list[BaseException] = []
    ids: set[int] = set()
    peak = 0

    def worker() -> None:
        try:
            for _ in range(rounds):
                with engine.connect() as c:
                    ids.add(c.execute(text("SELECT CONNECTION_ID()")).scalar())
            finished.append(time.monotonic() - start)
        except Exception as exc:
            errors.append(exc)

    def sampler() -> None:  # the server's own count, beside the clients' view
        nonlocal peak
        while True:
            peak = max(peak, len(server_threads(side) - before))
            gevent.sleep(0.02)

    start = time.monotonic()
    watch = gevent.spawn(sampler)
    gevent.joinall([gevent.spawn(worker) for _ in range(greenlets)], timeout=60)
    watch.kill()
    return {"errors": len(errors), "ids": len(ids), "peak": peak, "fastest": min(finished, default=0.0),
            "slowest": max(finished, default=0.0), "done": len(finished),
            "ratio": max(finished) / min(finished) if finished else float("inf"),
            "sample_error": repr(errors[0]) if errors else None}


@pytest.mark.timeout(60)
def test_500_greenlets_share_10_connections_fairly_where_queuepool_lets_early_ones_barge(make_engine, side):
    gp = make_engine(pool_size=10, pool_timeout=30)
    qp = make_engine(poolclass=QueuePool, pool_size=10, max_overflow=0, pool_timeout=30)
    g = _burst(gp, 500, 10, side)
    q = _burst(qp, 500, 10, side)
    print(f"\nGeventPool: {g}\nQueuePool:  {q}")

    assert g["errors"] == 0, g["sample_error"]
    assert g["done"] == 500
    assert 1 <= g["ids"] <= 10 and g["peak"] <= 10
    stats = gp.pool.stats()
    assert stats.created <= 10 and stats.size <= 10 and stats.max_connections == 10
    assert stats.acquired == stats.released == 5000 and stats.in_use == 0 and stats.timeouts == 0
    assert stats.waits > 4000, "500 greenlets on 10 connections queue"
    assert g["ratio"] <= 3.0, f"FIFO: the slowest greenlet finishes within 3x the fastest, got {g['ratio']:.2f}"
    # The contrast, loosely: QueuePool serves everyone too, but a greenlet that returns a connection and
    # asks again without yielding takes it back ahead of the waiters.
    assert q["errors"] == 0 and q["done"] == 500
    assert q["ratio"] > g["ratio"]


# -- interruptions ------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_200_greenlets_killed_or_timed_out_waiting_or_mid_query_leave_nothing_checked_out(make_engine, side):
    engine = make_engine(pool_size=10, pool_timeout=10)
    started = gevent.event.Event()
    outcomes: dict[str, int] = {"timeout": 0, "ok": 0}
    invalidated: list[Any] = []  # SQLAlchemy invalidates a connection interrupted mid-query
    event.listen(engine.pool, "invalidate", lambda dbapi, rec, exc: invalidated.append(exc))

    def query(i: int) -> None:
        with engine.connect() as c:
            started.set()
            c.execute(text("SELECT SLEEP(0.3)"))
        outcomes["ok"] += 1

    def timed(i: int) -> None:
        try:
            with gevent.Timeout(0.05 + (i % 10) * 0.01):
                query(i)
        except gevent.Timeout:
            outcomes["timeout"] += 1

    killed = [gevent.spawn(query, i) for i in range(100)]
    timing_out = [gevent.spawn(timed, i) for i in range(100)]
    assert started.wait(5)
    gevent.sleep(0.03)  # let the first ones get into their query: the kill lands mid-read
    gevent.killall(killed, timeout=5)
    gevent.joinall(timing_out, timeout=10)
    assert all(g.dead for g in killed + timing_out)
    assert outcomes["timeout"] >= 90 and outcomes["ok"] + outcomes["timeout"] == 100

    wait_until(lambda: engine.pool.checkedout() == 0, what="every record back")
    print(f"\n{outcomes}, {len(invalidated)} invalidated mid-query, {engine.pool.stats()}")
    assert len(invalidated) >= 10, "the kill and the first timeouts land in queries"
    stats = engine.pool.stats()
    assert stats.in_use == 0 and stats.waiting == 0 and stats.connecting == 0 and stats.size <= 10
    # ... and it works: 20 greenlets x 5 queries, right answers, still at most 10 connections.
    answers: list[int] = []

    def use(i: int) -> None:
        for j in range(5):
            with engine.connect() as c:
                answers.append(c.execute(text("SELECT :n"), {"n": i * 10 + j}).scalar() == i * 10 + j)

    gevent.joinall([gevent.spawn(use, i) for i in range(20)], timeout=10, raise_error=True)
    assert answers == [True] * 100
    assert engine.pool.checkedout() == 0 and engine.pool.stats().size <= 10
    wait_until(lambda: len(server_threads(side)) <= 10, what="the server to see at most 10 connections")


@pytest.mark.timeout(15)
def test_pool_timeout_raises_sqlalchemy_timeout_error_with_gpools_numbers_within_its_bound(make_engine):
    engine = make_engine(pool_size=2, pool_timeout=0.3)
    release = gevent.event.Event()
    holding = []

    def hold() -> None:
        with engine.connect():
            holding.append(1)
            release.wait()

    holders = [gevent.spawn(hold) for _ in range(2)]
    wait_until(lambda: len(holding) == 2, what="both connections held")
    try:
        began = time.monotonic()
        with pytest.raises(SATimeoutError) as info:
            engine.connect()
        took = time.monotonic() - began
    finally:
        release.set()
        gevent.joinall(holders, timeout=5)
    assert 0.3 <= took < 0.5
    message = str(info.value)
    assert "2/2 in use" in message and "pool_timeout 0.30" in message and "waited 0.3" in message, message
    assert isinstance(info.value.__cause__, PoolExhaustedError)
    assert engine.pool.checkedout() == 0 and conn_id(engine) > 0


def test_a_greenlet_holding_every_connection_gets_timeout_error_at_once_not_after_pool_timeout(make_engine):
    engine = make_engine(pool_size=2, pool_timeout=10)
    held = [engine.connect() for _ in range(2)]
    try:
        began = time.monotonic()
        with pytest.raises(SATimeoutError, match="this greenlet already holds all 2 connections"):
            engine.connect()
        assert time.monotonic() - began < 0.1
    finally:
        for c in held:
            c.close()
    assert engine.pool.checkedout() == 0


def test_connect_failure_raises_the_engines_operational_error(mysql_server):
    kw = mysql_server.connect_kwargs()
    url = f"mysql+pymysql://nobody_{os.getpid()}:wrong@{kw['host']}:{kw['port']}/{kw['database']}"
    engine = create_engine(url, poolclass=GeventPool, pool_size=2, pool_timeout=5, connect_args=SSL_OFF,
                           gpool_options={"retry": 1, "retry_delay": 0.01})
    with pytest.raises(sqlalchemy.exc.OperationalError, match="Access denied"):
        engine.connect()
    assert engine.pool.stats().connect_errors == 2 and engine.pool.checkedout() == 0
    engine.dispose()


# -- dead connections, recycle -----------------------------------------------------------------------------


def test_connection_killed_on_the_server_is_replaced_before_anyone_sees_it(make_engine, side):
    engine = make_engine(pool_size=1, pool_pre_ping=True)
    old = conn_id(engine)
    with side.cursor() as cur:
        cur.execute(f"KILL {old}")
    wait_until(lambda: old not in server_threads(side), what="the server to drop the killed connection")
    new = conn_id(engine)
    assert new != old
    assert engine.pool.stats().size == 1


def test_pre_ping_replaces_a_killed_connection_the_socket_check_cannot_see_inside_its_slot(
        make_engine, side, monkeypatch):
    # As on TLS or a driver without a socket to look at: only SQLAlchemy's pre-ping can tell.
    monkeypatch.setattr(_Slot, "is_clean", lambda self: True)
    engine = make_engine(pool_size=1, pool_pre_ping=True)
    invalidated: list[Any] = []
    event.listen(engine.pool, "invalidate", lambda dbapi, rec, exc: invalidated.append(exc))
    old = conn_id(engine)
    with side.cursor() as cur:
        cur.execute(f"KILL {old}")
    wait_until(lambda: old not in server_threads(side), what="the server to drop the killed connection")
    new = conn_id(engine)
    assert new != old and len(invalidated) == 1
    stats = engine.pool.stats()
    assert stats.created == 1 and stats.size == 1, "the record reconnected inside its slot: the cap holds"


def test_pool_recycle_reconnects_old_connections_inside_their_slots(make_engine, side):
    engine = make_engine(pool_size=2, pool_recycle=1)
    first = conn_id(engine)
    assert conn_id(engine) == first, "younger than pool_recycle: reused"
    time.sleep(1.1)  # pool_recycle is wall-clock age (SQLAlchemy compares time.time())
    second = conn_id(engine)
    assert second != first
    wait_until(lambda: first not in server_threads(side), what="the recycled connection to be closed")
    stats = engine.pool.stats()
    assert stats.created == 1 and stats.size == 1


# -- records returned by another greenlet, dispose, fork -------------------------------------------------


def test_a_garbage_collected_connection_is_returned_by_the_collecting_greenlet(make_engine):
    engine = make_engine(pool_size=1, pool_timeout=2)
    release = gevent.event.Event()

    def leak() -> None:
        raw = engine.raw_connection()  # never closed: SQLAlchemy's finalizer returns it
        raw.cursor().execute("SELECT 1")
        cycle: list[Any] = [raw]
        cycle.append(cycle)  # only the cycle collector frees it: later, in another greenlet
        del raw, cycle
        release.wait()  # and its holder is still alive then

    gc.disable()
    try:
        leaker = gevent.spawn(leak)
        wait_until(lambda: engine.pool.checkedout() == 1, what="the leak")
        gevent.sleep(0)
        gc.collect()  # here, in the test's greenlet
    finally:
        gc.enable()
        release.set()
    assert engine.pool.checkedout() == 0, "returned although its live holder never released it"
    leaker.join(timeout=5)
    assert conn_id(engine) > 0


def test_a_connection_checked_out_in_one_greenlet_may_be_closed_by_another(make_engine):
    engine = make_engine(pool_size=1, pool_timeout=2)
    got, done = gevent.event.AsyncResult(), gevent.event.Event()

    def opener() -> None:
        got.set(engine.connect())
        done.wait()

    g = gevent.spawn(opener)
    conn = got.get(timeout=5)
    assert conn.execute(text("SELECT 2")).scalar() == 2
    conn.close()  # here, while its opener lives: the pool takes it back (QueuePool does too)
    assert engine.pool.checkedout() == 0 and engine.pool.stats().in_use == 0
    assert conn_id(engine) > 0
    done.set()
    g.join(timeout=5)


def test_dispose_closes_idle_now_and_checked_out_on_return_and_the_pool_stays_usable(make_engine, side):
    engine = make_engine(pool_size=3)
    pool = engine.pool
    held = engine.connect()
    held_id = held.execute(text("SELECT CONNECTION_ID()")).scalar()
    idle_id = conn_id(engine)
    pool.dispose()
    wait_until(lambda: idle_id not in server_threads(side), what="the idle connection closed")
    assert held_id in server_threads(side) and held.execute(text("SELECT 1")).scalar() == 1
    held.close()
    wait_until(lambda: held_id not in server_threads(side), what="the returned connection closed")
    assert conn_id(engine) not in (held_id, idle_id) and engine.pool is pool

    engine.dispose()  # recreate(): a new GeventPool with the same settings and listeners
    assert engine.pool is not pool and isinstance(engine.pool, GeventPool)
    assert engine.pool.size() == 3 and engine.pool.timeout() == 30.0 and conn_id(engine) > 0


def test_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(make_engine):
    engine = make_engine(pool_size=2)
    parent = conn_id(engine)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 99
        try:
            child = conn_id(engine)
            code = 0 if child != parent else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child must not use the parent's connection"
    assert conn_id(engine) == parent, "the parent's connection survived the child"


# -- observability and arguments ---------------------------------------------------------------------------


def test_stats_status_and_prometheus_see_the_engines_pool(make_engine):
    from prometheus_client import CollectorRegistry, generate_latest

    from gpool.prometheus import PoolCollector

    engine = make_engine(pool_size=4, pool_logging_name="orders")
    for _ in range(3):
        conn_id(engine)
    registry = CollectorRegistry()
    PoolCollector.register(engine.pool, registry=registry)
    assert 'gpool_acquisitions_total{pool="orders"} 3.0' in generate_latest(registry).decode()
    assert engine.pool.stats().name == "orders" and engine.pool.checkedin() == 1
    assert engine.pool.status() == ("GeventPool 'orders': pool size 4, connections 1 (idle 1, checked out 0, "
                                    "connecting 0), waiting 0")


def test_bad_arguments_are_refused_naming_them(mysql_server):
    url = sa_url(mysql_server)
    with pytest.raises(ValueError, match=r"max_overflow must be 0 or None.*set pool_size=15"):
        create_engine(url, poolclass=GeventPool, pool_size=10, max_overflow=5)
    with pytest.raises(ValueError, match="pool_size must be > 0, got 0"):
        create_engine(url, poolclass=GeventPool, pool_size=0)
    with pytest.raises(ValueError, match="'max_connections' cannot be set here: use pool_size"):
        create_engine(url, poolclass=GeventPool, gpool_options={"max_connections": 3})
    with pytest.raises(TypeError, match=r"unknown gpool\.Pool option 'bogus'"):
        create_engine(url, poolclass=GeventPool, gpool_options={"bogus": 1})
    engine = create_engine(url, poolclass=GeventPool, max_overflow=0, gpool_options={"max_waiting": 5})
    assert engine.pool.size() == 5 and engine.pool.overflow() == 0


# -- the ORM in a gunicorn gevent worker, end to end --------------------------------------------------------


@pytest.mark.timeout(90)
def test_orm_sessions_under_gunicorn_gevent_workers_stay_within_workers_x_pool_size(mysql_server, tmp_path):
    from tests.integration.test_examples import Load, ServedApp, _children  # examples/loadgen.py's Load

    workers, pool_size, requests = 2, 5, 1000
    env = dict(os.environ, GPOOL_MYSQL_URL=sa_url(mysql_server).replace("mysql+pymysql://", "mysql://"),
               GPOOL_MYSQL_MAX_CONNECTIONS=str(pool_size), PYTHONUNBUFFERED="1")
    app = ServedApp(["-m", "gunicorn", "-k", "gevent", "-w", str(workers), "-b", "127.0.0.1:0",
                     "--pythonpath", "examples", "--graceful-timeout", "10", "sqlalchemy_app:app"],
                    env, tmp_path / "gunicorn.log", r"Listening at: http://127\.0\.0\.1:(\d+)")
    try:
        wait_until(lambda: len(_children(app.proc.pid)) == workers, timeout=10, what="both workers forked")
        result = Load("127.0.0.1", app.port, ["/orm"], requests, 200, deadline=60).run()
        assert result.ok == requests, f"errors: {dict(result.errors)}, e.g. {result.samples}"
        assert len(result.pids) == workers, "both workers served requests"
        assert len(result.conn_ids) <= workers * pool_size, "distinct (pid, CONNECTION_ID()) pairs"
        stats = app.stats_by_pid(set(result.pids))
        for pid, data in stats.items():
            s = data["pool"]
            assert s["in_use"] == 0 and s["timeouts"] == 0 and s["connect_errors"] == 0, (pid, s)
            assert 1 <= s["created"] <= pool_size and s["size"] <= pool_size, (pid, s)
        assert sum(d["pool"]["acquired"] for d in stats.values()) >= 2 * requests, "two sessions per request"
        assert app.stop() == 0
    finally:
        if app.proc.poll() is None:
            app.kill()
    log = app.log()
    assert "Traceback" not in log and "[ERROR]" not in log, log
    print(f"\ngunicorn ORM: {result.rate:.0f} req/s, p99 {result.percentile(0.99) * 1000:.0f} ms, "
          f"{len(result.conn_ids)} connections, {json.dumps({p: d['pool']['created'] for p, d in stats.items()})}")

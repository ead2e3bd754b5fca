"""Server-side kills (Redis ``CLIENT KILL``, MariaDB ``KILL``) of idle and in-use pooled connections.

Asserted outcomes: a connection the server killed while idle is never handed out (nobody sees an
error for it); a kill of a connection in use fails only the command running on it, with a driver
error; under load, driver errors never outnumber the in-use kills, every value read back is the one
written, the cap holds at every sample, and afterwards the pool is whole and the server sees exactly
the connections the pool tracks.
"""

from gevent import monkey

monkey.patch_all()

import random  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from time import monotonic  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import pymysql  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402
from gevent.event import Event  # noqa: E402

from gpool.mysql import MySQLPool  # noqa: E402
from gpool.redis import RedisPool  # noqa: E402

from .helpers import InvariantSampler, assert_capacity_whole, wait_until  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_greenlet_left", "pools")

_open_pools: list[Any] = []


@pytest.fixture
def pools() -> Iterator[None]:
    """Closes every pool a test made, even when it failed (so its reaper greenlet ends)."""
    yield
    while _open_pools:
        _open_pools.pop().close()


# -- Redis -------------------------------------------------------------------------------------------


@pytest.fixture
def rside(redis_server: Any) -> Iterator[redis.Redis]:
    """The test's own view of the server: a plain redis-py client outside any gpool pool."""
    client = redis.Redis(**redis_server.connect_kwargs())
    yield client
    client.close()


def redis_pool(server: Any, **kwargs: Any) -> tuple[RedisPool, str]:
    name = f"gpool-kill-{uuid.uuid4().hex[:8]}"
    kwargs.setdefault("timeout", 5.0)
    pool = RedisPool(**server.connect_kwargs(), client_name=name, **kwargs)
    _open_pools.append(pool)
    return pool, name


def redis_ids(side: redis.Redis, name: str) -> dict[int, int]:
    """Local port -> server-side client id, for the pool's connections (named ``name``)."""
    return {int(c["addr"].rsplit(":", 1)[1]): int(c["id"]) for c in side.client_list() if c.get("name") == name}


def redis_in_use_ports(pool: RedisPool) -> set[int]:
    ports = set()
    for slot, _, _ in pool.pool.checked_out():
        sock = slot.conn._sock
        if sock is not None:
            try:
                ports.add(sock.getsockname()[1])
            except OSError:
                pass
    return ports


def test_redis_idle_connections_killed_by_the_server_are_never_handed_out(redis_server: Any,
                                                                          rside: redis.Redis) -> None:
    pool, name = redis_pool(redis_server, max_connections=4)  # default check_interval: no PING within 1 s
    r = pool.client()
    gate = Event()

    def hold() -> None:
        with pool.connection() as c:
            c.ping()
            gate.wait()

    holders = [gevent.spawn(hold) for _ in range(4)]
    wait_until(lambda: pool.stats().in_use == 4, what="four connections in use")
    gate.set()
    gevent.joinall(holders, raise_error=True)
    victims = redis_ids(rside, name)
    assert len(victims) == 4 and pool.stats().idle == 4
    for client_id in victims.values():
        assert rside.execute_command("CLIENT", "KILL", "ID", client_id) == 1
    wait_until(lambda: not redis_ids(rside, name), what="the kills")

    errors: Counter[str] = Counter()

    def user(i: int) -> None:
        token = f"u{i}-{uuid.uuid4().hex[:6]}"
        try:
            assert r.echo(token) == token.encode()
        except redis.RedisError as exc:
            errors[type(exc).__name__] += 1

    gevent.joinall([gevent.spawn(user, i) for i in range(40)], raise_error=True)
    assert errors == Counter(), "a user got a connection the server had killed"
    assert not set(redis_ids(rside, name).values()) & set(victims.values())
    stats = pool.stats()
    assert stats.created == 8 and stats.check_failures == 4, stats
    pool.close()


def test_redis_kill_in_use_fails_only_the_command_on_it(redis_server: Any, rside: redis.Redis) -> None:
    pool, name = redis_pool(redis_server, max_connections=2)
    r = pool.client()
    key = f"gpool-kill:{uuid.uuid4().hex}"
    outcome: dict[str, Any] = {}

    def blocked() -> None:
        start = monotonic()
        try:
            with pool.connection() as c:
                outcome["port"] = c.connection_pool.get_connection()._sock.getsockname()[1]
                c.blpop([key], timeout=10)
        except redis.ConnectionError as exc:
            outcome["error"] = exc
        outcome["elapsed"] = monotonic() - start

    g = gevent.spawn(blocked)
    wait_until(lambda: any(c.get("cmd") == "blpop" for c in rside.client_list() if c.get("name") == name),
               what="BLPOP running")
    ok = Counter()

    def bystander() -> None:
        for i in range(50):
            token = f"b{i}"
            assert r.echo(token) == token.encode()
            ok["ok"] += 1

    b = gevent.spawn(bystander)
    victim = redis_ids(rside, name)[outcome["port"]]
    assert rside.execute_command("CLIENT", "KILL", "ID", victim) == 1
    gevent.joinall([g, b], raise_error=True, timeout=10)
    assert isinstance(outcome.get("error"), redis.ConnectionError), outcome
    assert outcome["elapsed"] < 5, "the killed BLPOP should fail at once, not at its 10 s timeout"
    assert ok["ok"] == 50, "the bystander saw an error"
    assert victim not in redis_ids(rside, name).values()
    assert pool.stats().in_use == 0
    assert r.echo("after") == b"after"
    pool.close()


def test_redis_kills_under_load(redis_server: Any, rside: redis.Redis) -> None:
    rng = random.Random(5)
    pool, name = redis_pool(redis_server, max_connections=5)
    r = pool.client()
    results: Counter[str] = Counter()
    kills: Counter[str] = Counter()
    stop = Event()

    def user(n: int) -> None:
        key = f"gpool-kill:{name}:{n}"
        i = 0
        while not stop.is_set():
            i += 1
            value = f"{n}-{i}"
            try:
                r.set(key, value)
                got = r.get(key)
                results["ok" if got == value.encode() else "wrong"] += 1
            except redis.ConnectionError as exc:
                results[f"error:{type(exc).__name__}"] += 1
                results["errors"] += 1

    def killer() -> None:
        while not stop.is_set():
            gevent.sleep(rng.uniform(0.01, 0.03))
            ids = redis_ids(rside, name)
            if not ids:
                continue
            in_use = redis_in_use_ports(pool)
            port = rng.choice(sorted(ids))
            kind = "in_use" if port in in_use else "idle"
            if rside.execute_command("CLIENT", "KILL", "ID", ids[port]) == 1:
                kills[kind] += 1

    def server_within_cap() -> None:
        assert pool.size <= pool.pool.max_connections

    with InvariantSampler(pool.pool, interval=0.005, extra=server_within_cap) as sampler:
        users = [gevent.spawn(user, n) for n in range(40)]
        k = gevent.spawn(killer)
        gevent.sleep(3.0)
        stop.set()
        gevent.joinall([*users, k], raise_error=True, timeout=10)
    assert sampler.violations == [] and sampler.peak_size <= 5
    assert results["wrong"] == 0, results
    assert kills["in_use"] + kills["idle"] >= 50, kills
    # Each kill of a connection in use can fail the one command running on it, no other.
    assert results["errors"] <= kills["in_use"], (results, kills)
    assert results["ok"] > 500, results
    # The whole capacity through the adapter's checkout, which drops what the server killed while idle.
    held = [pool.get_connection() for _ in range(5)]
    assert len({id(c) for c in held}) == 5 and all(c._sock is not None for c in held)
    for conn in held:
        pool.release(conn)
    assert pool.stats().in_use == 0
    wait_until(lambda: len(redis_ids(rside, name)) == pool.size, what="server clients == pool size")
    pool.close()
    wait_until(lambda: not redis_ids(rside, name), what="every connection closed on the server")


# -- MariaDB -----------------------------------------------------------------------------------------


@pytest.fixture
def mside(mysql_server: Any) -> Iterator[Any]:
    conn = pymysql.connect(**mysql_server.connect_kwargs(), autocommit=True)
    yield conn
    conn.close()


def mysql_pool(server: Any, ids: set[int], **kwargs: Any) -> MySQLPool:
    """A pool whose connections' server thread ids are kept in ``ids`` while they live."""
    kwargs.setdefault("timeout", 5.0)
    pool = MySQLPool(**server.connect_kwargs(), autocommit=True,
                     on_connect=lambda c: ids.add(c.thread_id()),
                     on_drop=lambda c, _reason: ids.discard(c.thread_id()), **kwargs)
    _open_pools.append(pool)
    return pool


def mysql_threads(side: Any) -> set[int]:
    with side.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST")
        return {row[0] for row in cur.fetchall()}


def mysql_kill(side: Any, thread_id: int) -> bool:
    try:
        with side.cursor() as cur:
            cur.execute(f"KILL {int(thread_id)}")
        return True
    except pymysql.err.OperationalError as exc:  # 1094: unknown thread (it ended meanwhile)
        if exc.args[0] != 1094:
            raise
        return False


def test_mysql_idle_connections_killed_by_the_server_are_never_handed_out(mysql_server: Any, mside: Any) -> None:
    ids: set[int] = set()
    pool = mysql_pool(mysql_server, ids, max_connections=3)  # default check_interval (1 s)
    gate = Event()

    def hold() -> None:
        with pool.connection() as c:
            c.ping(reconnect=False)
            gate.wait()

    holders = [gevent.spawn(hold) for _ in range(3)]
    wait_until(lambda: pool.stats().in_use == 3, what="three connections in use")
    gate.set()
    gevent.joinall(holders, raise_error=True)
    victims = set(ids)
    assert len(victims) == 3
    for thread_id in victims:
        assert mysql_kill(mside, thread_id)
    wait_until(lambda: not victims & mysql_threads(mside), what="the killed threads to end")

    errors: Counter[str] = Counter()

    def user(i: int) -> None:
        try:
            row = pool.query_one("SELECT %s AS v, CONNECTION_ID() AS id", (f"u{i}",))
            assert row is not None and row["v"] == f"u{i}" and row["id"] not in victims
        except pymysql.MySQLError as exc:
            errors[f"{type(exc).__name__}{exc.args[:1]}"] += 1

    gevent.joinall([gevent.spawn(user, i) for i in range(30)], raise_error=True)
    assert errors == Counter(), "a user got a connection the server had killed"
    pool.close()


def test_mysql_kill_in_use_fails_only_the_query_on_it(mysql_server: Any, mside: Any) -> None:
    ids: set[int] = set()
    pool = mysql_pool(mysql_server, ids, max_connections=2)
    outcome: dict[str, Any] = {}

    def sleeper() -> None:
        start = monotonic()
        try:
            with pool.connection() as c, c.cursor() as cur:
                outcome["id"] = c.thread_id()
                cur.execute("SELECT SLEEP(10)")
                outcome["rows"] = cur.fetchall()
        except pymysql.MySQLError as exc:
            outcome["error"] = exc
        outcome["elapsed"] = monotonic() - start

    g = gevent.spawn(sleeper)
    wait_until(lambda: "id" in outcome, what="the sleeper to start")
    ok = Counter()

    def bystander() -> None:
        for i in range(30):
            assert pool.query_one("SELECT %s AS v", (i,)) == {"v": i}
            ok["ok"] += 1

    b = gevent.spawn(bystander)
    assert mysql_kill(mside, outcome["id"])
    gevent.joinall([g, b], raise_error=True, timeout=15)
    assert isinstance(outcome.get("error"), pymysql.err.OperationalError), outcome
    assert outcome["error"].args[0] in (2013, 1927, 2006), outcome["error"]
    assert outcome["elapsed"] < 5, "the killed query should fail at once"
    assert ok["ok"] == 30
    assert outcome["id"] not in ids and pool.stats().in_use == 0
    assert pool.query_one("SELECT 1 AS one") == {"one": 1}
    pool.close()


def test_mysql_kills_under_load(mysql_server: Any, mside: Any) -> None:
    rng = random.Random(9)
    ids: set[int] = set()
    # check_interval=0 (a ping at every checkout from idle): this test is about load and in-use kills;
    # idle kills under the default check_interval are test_mysql_idle_connections_killed_...'s subject.
    pool = mysql_pool(mysql_server, ids, max_connections=5, check_interval=0)
    results: Counter[str] = Counter()
    kills: Counter[str] = Counter()
    stop = Event()

    def user(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            value = f"{n}-{i}"
            try:
                row = pool.query_one("SELECT %s AS v", (value,))
                results["ok" if row == {"v": value} else "wrong"] += 1
            except pymysql.MySQLError:
                results["errors"] += 1

    def killer() -> None:
        while not stop.is_set():
            gevent.sleep(rng.uniform(0.02, 0.05))
            live = sorted(ids)
            if not live:
                continue
            in_use = {c.thread_id() for c, _, _ in pool.pool.checked_out()}
            victim = rng.choice(live)
            kind = "in_use" if victim in in_use else "idle"
            if mysql_kill(mside, victim):
                kills[kind] += 1

    with InvariantSampler(pool.pool, interval=0.005) as sampler:
        users = [gevent.spawn(user, n) for n in range(30)]
        k = gevent.spawn(killer)
        gevent.sleep(3.0)
        stop.set()
        gevent.joinall([*users, k], raise_error=True, timeout=15)
    assert sampler.violations == [] and sampler.peak_size <= 5
    assert results["wrong"] == 0, results
    assert kills["in_use"] + kills["idle"] >= 30, kills
    assert results["errors"] <= kills["in_use"], (results, kills)
    assert results["ok"] > 300, results
    assert_capacity_whole(pool.pool)
    assert len(ids) == pool.size and ids <= mysql_threads(mside)
    pool.close()

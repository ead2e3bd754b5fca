"""The soak: 1,000 greenlets, kills, timeouts, server-side kills and one server restart, for a while.

``make test`` runs it for 20 seconds; ``make soak`` for ``GPOOL_SOAK_SECONDS`` (default 300) and shows
the report (a markdown block on stdout; run with ``-s``). What runs at once:

* 700 greenlets on a ``gpool.redis.RedisPool`` (20 connections) against a private Redis: ``ECHO`` of
  their own token, or ``SET``/``GET`` of their own key on one connection, checking every reply;
* 300 greenlets on a core ``gpool.Pool`` (10 connections) of fake connections that take time to open,
  reset and close, expire (``max_lifetime``, ``idle_timeout``, reaped in the background) and sometimes
  fail to open; each user marks the connection as its own and checks nobody else had it meanwhile;
* faults: random greenlet kills (the victim is replaced), ``gevent.Timeout`` thrown into random
  greenlets, random short timeouts around operations, ``CLIENT KILL`` of random pool connections,
  bursts of failing connects on the fake pool, and one Redis restart half-way;
* a checker greenlet that asserts both pools' invariants every 0.1 s (size <= max, no connection
  idle twice or idle and in use, no granted waiter still queued).

At the end: every greenlet stops, the whole capacity of each pool is held at once, the connections
open on the server (and the fake ones not closed) are compared with those the pool tracks (leaks),
the pools are closed and everything must be closed. Asserted: invariant violations = 0, leaks = 0,
data lost (a reply or value that was not the caller's) = 0, unexpected errors = 0.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import random  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from time import monotonic  # noqa: E402
from typing import Any, Optional  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402
from gevent.event import Event  # noqa: E402

from gpool import Pool, PoolClosedError, PoolExhaustedError  # noqa: E402
from gpool._invariants import check_invariants  # noqa: E402
from gpool.redis import RedisPool  # noqa: E402
from tests.fakes import FakeFactory  # noqa: E402

SOAK_SECONDS = float(os.environ.get("GPOOL_SOAK_SECONDS", "20"))
REDIS_USERS = 700
FAKE_USERS = 300
REDIS_MAX = 20
FAKE_MAX = 10

# What a user may legitimately see while faults are injected; anything else is a bug.
EXPECTED = (PoolExhaustedError, PoolClosedError, redis.ConnectionError, redis.TimeoutError, gevent.Timeout)


class Soak:
    def __init__(self, server: Any, seconds: float, seed: int = 20261122) -> None:
        self.server = server
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.name = f"gpool-soak-{uuid.uuid4().hex[:8]}"
        self.rpool = RedisPool(**server.connect_kwargs(), client_name=self.name, max_connections=REDIS_MAX,
                               timeout=2.0, socket_timeout=1.0, socket_connect_timeout=0.5,
                               connect_retries=2, retry_delay=0.05, check_interval=0.5)
        self.r = self.rpool.client()
        self.factory = FakeFactory(delay=0.002)
        self.factory.reset_delay = 0.0005
        self.fpool: Pool[Any] = Pool(self.factory, None, 2, FAKE_MAX, True, 0.5, timeout=1.0,
                                     max_lifetime=3.0, idle_timeout=1.0, check_interval=0.2, retry=2,
                                     retry_delay=0.01, name="soak-fake")
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.faults: Counter[str] = Counter()
        self.lost: list[str] = []
        self.violations: list[str] = []
        self.checks = 0
        self.peak = {"redis": 0, "fake": 0}
        self.stop = Event()
        self.users: list[gevent.Greenlet] = []
        self.died: list[str] = []
        self.restart_recovery: Optional[float] = None
        self.side = redis.Redis(**server.connect_kwargs(), socket_timeout=2.0)

    # -- users

    def _error(self, exc: BaseException) -> None:
        self.errors[type(exc).__name__] += 1
        if not isinstance(exc, EXPECTED) and len(self.unexpected) < 20:
            self.unexpected.append(repr(exc))

    def redis_user(self, n: int) -> None:
        rng = random.Random(n)
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                self.redis_op(rng, f"{self.name}:{n}", f"{n}-{i}")
            except gevent.GreenletExit:
                raise
            except BaseException as exc:  # gevent.Timeout is a BaseException
                self._error(exc)

    def redis_op(self, rng: random.Random, key: str, token: str) -> None:
        limit = rng.uniform(0.001, 0.02) if rng.random() < 0.05 else None
        if limit is not None:
            self.faults["operation timeouts set"] += 1
        try:
            with gevent.Timeout(limit):
                if rng.random() < 0.5:
                    if self.r.echo(token) != token.encode():
                        self.lost.append(f"echo {token}")
                    self.ops["redis echo"] += 1
                else:
                    with self.rpool.connection() as c:
                        c.set(key, token)
                        got = c.get(key)
                    if got != token.encode():
                        self.lost.append(f"get {key}: {got!r} != {token}")
                    self.ops["redis set+get"] += 1
        except (PoolExhaustedError, redis.ConnectionError) as exc:
            self._error(exc)
            gevent.sleep(rng.uniform(0, 0.05))  # a user backs off after an outage error

    def fake_user(self, n: int) -> None:
        rng = random.Random(-n)
        me = object()
        while not self.stop.is_set():
            limit = rng.uniform(0.001, 0.01) if rng.random() < 0.05 else None
            if limit is not None:
                self.faults["operation timeouts set"] += 1
            try:
                with gevent.Timeout(limit), self.fpool.connection() as conn:
                    if conn.closed:
                        self.lost.append(f"handed out closed {conn!r}")
                    conn.owner = me
                    gevent.sleep(rng.uniform(0, 0.002))
                    if conn.owner is not me:
                        self.lost.append(f"{conn!r} shared by two users")
                self.ops["fake use"] += 1
            except gevent.GreenletExit:
                raise
            except BaseException as exc:
                self._error(exc)

    def spawn_user(self, n: int, redis_side: bool) -> gevent.Greenlet:
        """A user numbered ``n`` (unique: its key and tokens are its own)."""
        glet = gevent.spawn(self.redis_user if redis_side else self.fake_user, n)
        glet.redis_side = redis_side
        return glet

    # -- faults

    def killer(self) -> None:
        n = REDIS_USERS + FAKE_USERS
        while not self.stop.is_set():
            gevent.sleep(self.rng.uniform(0.005, 0.02))
            i = self.rng.randrange(len(self.users))
            if not self.users[i]:
                continue  # not started yet: a kill would only keep it from starting
            if self.rng.random() < 0.5:
                victim = self.users[i]
                victim.kill(block=False)
                self.faults["greenlet kills"] += 1
                n += 1
                self.users[i] = self.spawn_user(n, victim.redis_side)  # the same kind of work
            else:
                self.users[i].kill(gevent.Timeout(), block=False)  # caught by the user, who goes on
                self.faults["gevent.Timeout thrown into greenlets"] += 1

    def server_killer(self) -> None:
        while not self.stop.is_set():
            gevent.sleep(self.rng.uniform(0.05, 0.15))
            try:
                ids = [int(c["id"]) for c in self.side.client_list() if c.get("name") == self.name]
                if ids and self.side.execute_command("CLIENT", "KILL", "ID", self.rng.choice(ids)) == 1:
                    self.faults["CLIENT KILL"] += 1
            except redis.RedisError:
                pass  # the server is restarting

    def connect_failures(self) -> None:
        while not self.stop.is_set():
            gevent.sleep(self.rng.uniform(0.2, 0.6))
            self.factory.fail = 3  # the next three fake connects fail
            self.faults["fake connect failure bursts"] += 1

    def restarter(self) -> None:
        gevent.sleep(self.seconds / 2)
        self.server.stop()
        gevent.sleep(1.0)  # the outage
        self.server.start()
        back = monotonic()
        self.faults["server restarts"] += 1
        before = self.ops["redis echo"] + self.ops["redis set+get"]
        while not self.stop.is_set() and self.ops["redis echo"] + self.ops["redis set+get"] < before + 100:
            gevent.sleep(0.01)
        self.restart_recovery = monotonic() - back

    # -- checks

    def check(self) -> None:
        self.checks += 1
        for label, pool in (("redis", self.rpool.pool), ("fake", self.fpool)):
            self.peak[label] = max(self.peak[label], pool.size)
            try:
                check_invariants(pool)
            except AssertionError as exc:
                self.violations.append(f"{label}: {exc}")

    def checker(self) -> None:
        while not self.stop.is_set():
            self.check()
            gevent.sleep(0.1)

    # -- run and report

    def run(self) -> None:
        self.users = [self.spawn_user(n, n < REDIS_USERS) for n in range(REDIS_USERS + FAKE_USERS)]
        helpers = [gevent.spawn(f) for f in (self.killer, self.server_killer, self.connect_failures,
                                             self.checker)]
        restart = gevent.spawn(self.restarter)
        started = monotonic()
        gevent.sleep(self.seconds)
        self.died = [repr(g.exception) for g in self.users if g.dead]  # users end only when killed
        self.stop.set()
        gevent.joinall([*helpers, restart], timeout=30)
        gevent.killall(self.users, timeout=10)
        self.elapsed = monotonic() - started
        assert all(g.dead for g in [*self.users, *helpers, restart]), "a greenlet hung"
        self.check()

    def redis_leaks(self) -> tuple[int, int]:
        """(open on the server but not tracked, tracked but not open), after a full checkout."""
        held = [self.rpool.get_connection() for _ in range(REDIS_MAX)]  # drops what the server killed
        assert len({id(c) for c in held}) == REDIS_MAX
        for conn in held:
            self.rpool.release(conn)
        tracked = {e.conn.conn._sock.getsockname()[1] for e in self.rpool.pool._idle
                   if e.conn.conn._sock is not None}
        dead = self.rpool.pool.size - len(tracked)
        server = {int(c["addr"].rsplit(":", 1)[1]) for c in self.side.client_list() if c.get("name") == self.name}
        return len(server - tracked), len(tracked - server) + dead

    def fake_leaks(self) -> tuple[int, int]:
        self.factory.fail = 0  # the last burst of failing connects is over
        held = [self.fpool.acquire(timeout=5) for _ in range(FAKE_MAX)]
        assert len({id(c) for c in held}) == FAKE_MAX
        for conn in held:
            self.fpool.release(conn)
        tracked = {id(e.conn) for e in self.fpool._idle} | set(self.fpool._in_use)
        open_ = {id(c) for c in self.factory.open}
        return len(open_ - tracked), len(tracked - open_)

    def finish(self) -> dict[str, Any]:
        rstats, fstats = self.rpool.stats(), self.fpool.stats()
        leaks = Counter()
        leaks["redis open, not tracked"], leaks["redis tracked, not open"] = self.redis_leaks()
        leaks["fake open, not tracked"], leaks["fake tracked, not open"] = self.fake_leaks()
        self.rpool.close()
        self.fpool.close()
        leaks["redis open after close"] = sum(1 for c in self.side.client_list() if c.get("name") == self.name)
        leaks["fake open after close"] = len(self.factory.open)
        self.side.close()
        return {
            "seconds": round(self.elapsed, 1),
            "greenlets": REDIS_USERS + FAKE_USERS,
            "operations": dict(self.ops),
            "operations total": sum(self.ops.values()),
            "errors by type": dict(self.errors.most_common()),
            "unexpected errors": self.unexpected,
            "users that died on their own": len(self.died),
            "faults injected": dict(self.faults),
            "redis pool": {k: getattr(rstats, k) for k in ("created", "closed", "dropped", "reaped", "timeouts",
                                                           "connect_errors", "check_failures")},
            "fake pool": {k: getattr(fstats, k) for k in ("created", "closed", "dropped", "reaped", "timeouts",
                                                          "connect_errors", "check_failures")},
            "peak size": dict(self.peak),
            "invariant checks": self.checks,
            "invariant violations": len(self.violations),
            "leaks": sum(leaks.values()),
            "leaks by kind": dict(leaks),
            "data lost": len(self.lost),
            "recovery after restart (s)": None if self.restart_recovery is None else round(self.restart_recovery, 2),
        }


def markdown(report: dict[str, Any]) -> str:
    lines = [f"## gpool soak: {report['seconds']} s, {report['greenlets']} greenlets", "", "| metric | value |",
             "|---|---|"]
    for key, value in report.items():
        if key in ("seconds", "greenlets"):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = "; ".join(value) or "none"
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 120)
def test_soak(restartable_redis_server: Any) -> None:
    soak = Soak(restartable_redis_server, SOAK_SECONDS)
    try:
        soak.run()
        report = soak.finish()
    finally:
        soak.stop.set()
        soak.rpool.close()
        soak.fpool.close()
    print("\n" + markdown(report) + "\n")
    assert report["invariant violations"] == 0, soak.violations[:10]
    assert report["leaks"] == 0, report["leaks by kind"]
    assert report["data lost"] == 0, soak.lost[:10]
    assert report["unexpected errors"] == [], report["unexpected errors"]
    assert report["users that died on their own"] == 0, soak.died[:5]
    assert report["peak size"]["redis"] <= REDIS_MAX and report["peak size"]["fake"] <= FAKE_MAX
    # It did work and it did inject every kind of fault.
    assert report["operations total"] > 100 * SOAK_SECONDS, report["operations"]
    for kind in ("greenlet kills", "gevent.Timeout thrown into greenlets", "operation timeouts set", "CLIENT KILL",
                 "fake connect failure bursts", "server restarts"):
        assert report["faults injected"].get(kind, 0) > 0, kind
    assert report["recovery after restart (s)"] is not None and report["recovery after restart (s)"] < 5

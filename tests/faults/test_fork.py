"""Fork with connections in use: the parent's keep working, the child gets fresh ones (real servers).

The parent holds one connection in use and one idle, then ``os.fork()``s. The child queries through
the pool and reports, through its exit status, whether the server saw a new client (not one of the
parent's). After the child's first use, and after it exited, the parent queries through the
connection it held and through the pool and gets its own answers on the same server-side sessions.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import uuid  # noqa: E402
from typing import Any, Callable  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402
from gevent.event import Event  # noqa: E402

from gpool.mysql import MySQLPool  # noqa: E402
from gpool.redis import RedisPool  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# Child exit statuses
OK, REUSED_PARENT_CONNECTION, WRONG_ANSWER, CRASHED = 0, 1, 2, 99


def in_child(fn: Callable[[], int]) -> int:
    """Run ``fn`` in a forked child and return its exit status.

    The child leaves with ``os._exit``: no atexit hooks (gpool.testing's would stop the test servers)
    and no finalizers that could touch the parent's sockets.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = CRASHED
        try:
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_redis_fork_with_a_connection_in_use(redis_server: Any, closing: list[Any]) -> None:
    pool = RedisPool(**redis_server.connect_kwargs(), max_connections=3, timeout=5)
    closing.append(pool)
    key = f"gpool-fork:{uuid.uuid4().hex}"
    r = pool.client()
    held_ready, release = Event(), Event()
    parent_ids: dict[str, int] = {}
    checks: dict[str, Any] = {}

    def holder() -> None:
        with pool.connection() as held:
            parent_ids["held"] = held.client_id()
            held_ready.set()
            release.wait()
            # After the child used the pool: the held connection still answers, on the same session.
            checks["held_id"] = held.client_id()
            checks["held_echo"] = held.echo("parent")
            checks["child_wrote"] = held.get(key)

    # One connection held by a greenlet across the fork, one idle in the pool.
    g = gevent.spawn(holder)
    held_ready.wait(timeout=5)
    parent_ids["idle"] = r.client_id()
    assert parent_ids["held"] != parent_ids["idle"]
    assert (pool.stats().in_use, pool.stats().idle) == (1, 1)

    def child() -> int:
        c = pool.client()
        my_id = c.client_id()
        if my_id in parent_ids.values():
            return REUSED_PARENT_CONNECTION
        if c.echo("child") != b"child" or not c.set(key, str(my_id)):
            return WRONG_ANSWER
        return OK

    assert in_child(child) == OK
    release.set()
    g.get(timeout=5)
    assert checks["held_id"] == parent_ids["held"], "the held connection's session changed"
    assert checks["held_echo"] == b"parent"
    child_id = int(checks["child_wrote"])
    assert child_id not in parent_ids.values()
    # Through the pool: the parent's idle connection, still the same session.
    assert r.client_id() in parent_ids.values()
    assert r.echo("again") == b"again"
    stats = pool.stats()
    assert stats.created == 2 and stats.in_use == 0 and stats.dropped == 0, stats


def test_mysql_fork_with_a_connection_in_use(mysql_server: Any, closing: list[Any]) -> None:
    pool = MySQLPool(**mysql_server.connect_kwargs(), max_connections=3, timeout=5, autocommit=True)
    closing.append(pool)
    held = pool.acquire()  # in use across the fork
    held_id = held.thread_id()
    idle_id = pool.query_one("SELECT CONNECTION_ID() AS id")["id"]  # type: ignore[index]
    parent_ids = {idle_id, held_id}
    assert len(parent_ids) == 2

    def child() -> int:
        row = pool.query_one("SELECT CONNECTION_ID() AS id, %s AS v", ("child",))
        if row is None or row["id"] in parent_ids:
            return REUSED_PARENT_CONNECTION
        return OK if row["v"] == "child" else WRONG_ANSWER

    assert in_child(child) == OK
    with held.cursor() as cur:  # the connection held across the fork, used after the child's first use
        cur.execute("SELECT CONNECTION_ID(), %s", ("parent",))
        assert cur.fetchone() == (held_id, "parent")
    pool.release(held)
    rows = [pool.query_one("SELECT CONNECTION_ID() AS id, %s AS v", (i,)) for i in range(5)]
    assert all(row is not None and row["id"] in parent_ids and row["v"] == i for i, row in enumerate(rows))
    stats = pool.stats()
    assert stats.created == 2 and stats.in_use == 0, stats


def test_redis_reply_in_flight_at_fork_stays_with_the_parent(redis_server: Any, closing: list[Any]) -> None:
    """A parent greenlet is parked reading a reply when the process forks.

    gevent runs that greenlet in the child too, on the child's copy of the same socket: whichever
    process reads first takes the reply. Here the parent's hub is busy while the reply arrives, so
    the child's copy of the greenlet gets it (and carries on sending on the parent's session) unless
    the child's copies of inherited sockets are closed at fork. The parent must get its own reply.
    """
    real_sleep = monkey.get_original("time", "sleep")
    name = f"gpool-fork-{uuid.uuid4().hex[:6]}"
    pool = RedisPool(**redis_server.connect_kwargs(), max_connections=2, timeout=5, socket_timeout=1.5,
                     client_name=name)
    closing.append(pool)
    side = pool.client()
    key = f"gpool-fork:{uuid.uuid4().hex}"
    result: dict[str, Any] = {}

    def parked() -> None:
        with pool.connection() as c:
            result["blpop"] = c.blpop([key], timeout=0.3)  # the server answers nil after 0.3 s
            result["echo"] = c.echo("parent")

    g = gevent.spawn(parked)
    while not any(c.get("cmd") == "blpop" for c in side.client_list() if c.get("name") == name):
        gevent.sleep(0.01)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: let its hub run the inherited greenlet for a while
        code = CRASHED
        try:
            gevent.sleep(1.0)
            code = OK
        finally:
            os._exit(code)
    real_sleep(0.6)  # the parent's hub is busy while the nil reply arrives
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == OK
    g.join(timeout=5)
    assert g.dead and g.exception is None, f"the parent lost its reply: {g.exception!r}"
    assert result == {"blpop": None, "echo": b"parent"}


def test_mysql_reply_in_flight_at_fork_stays_with_the_parent(mysql_server: Any, closing: list[Any]) -> None:
    """As the Redis test above, with a query parked in its read at the fork (see there)."""
    real_sleep = monkey.get_original("time", "sleep")
    pool = MySQLPool(**mysql_server.connect_kwargs(), max_connections=2, timeout=5, read_timeout=1.5,
                     autocommit=True)
    closing.append(pool)
    started = Event()
    result: dict[str, Any] = {}

    def parked() -> None:
        with pool.connection() as c, c.cursor() as cur:
            started.set()
            cur.execute("SELECT SLEEP(0.3), %s", ("first",))  # the server answers after 0.3 s
            result["first"] = cur.fetchone()
            cur.execute("SELECT %s", ("second",))
            result["second"] = cur.fetchone()

    g = gevent.spawn(parked)
    started.wait(timeout=5)
    gevent.sleep(0.05)  # the query is on the wire; its reply comes 0.3 s after it arrived
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: let its hub run the inherited greenlet for a while
        code = CRASHED
        try:
            gevent.sleep(1.0)
            code = OK
        finally:
            os._exit(code)
    real_sleep(0.6)  # the parent's hub is busy while the reply arrives
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == OK
    g.join(timeout=5)
    assert g.dead and g.exception is None, f"the parent lost its reply: {g.exception!r}"
    assert result == {"first": (0, "first"), "second": ("second",)}

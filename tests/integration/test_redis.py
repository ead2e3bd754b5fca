"""gpool.redis against a real redis-server: redis-py's client on the gpool core pool.

What is proven here: commands never read another command's reply after a gevent.Timeout or a kill;
connections come back reset (or are dropped) after pub/sub, MULTI, WATCH, SELECT; a connection the
server closed is never handed out; no command is re-sent by default; waiting at the cap is fair
and bounded; the pool recovers from a server restart; secrets stay out of reprs, logs and errors.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from time import monotonic  # noqa: E402
from typing import Any, Callable  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402
from gevent.event import Event  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

import gpool  # noqa: E402
from gpool.redis import PooledConnection, RedisPool, RedisPoolClosedError, RedisPoolExhaustedError  # noqa: E402
from tests.support import wait_until  # noqa: E402

SECRET = "s3cret-Pa55-" + uuid.uuid4().hex[:8]


# -- helpers -----------------------------------------------------------------------------------------


def key(name: str) -> str:
    return f"gpool-test:{name}:{uuid.uuid4().hex[:10]}"


def client_ids(side: redis.Redis) -> set[int]:
    return {int(c["id"]) for c in side.client_list()}


def stat(server_side: redis.Redis, command: str) -> int:
    return int(server_side.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def make_pool() -> Iterator[Callable[..., RedisPool]]:
    pools: list[RedisPool] = []

    def make(server: Any, **kwargs: Any) -> RedisPool:
        pool = RedisPool(**server.connect_kwargs(), **kwargs)
        pools.append(pool)
        return pool

    try:
        yield make
    finally:
        for pool in pools:
            pool.close()


@pytest.fixture
def side_factory() -> Iterator[Callable[[Any], redis.Redis]]:
    """A plain redis-py client, outside any gpool pool: the test's own view of the server."""
    clients: list[redis.Redis] = []

    def make(server: Any) -> redis.Redis:
        client = redis.Redis(**server.connect_kwargs(), socket_timeout=10, protocol=2, single_connection_client=True)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def stallable_redis(redis_server_factory: Callable[..., Any]) -> Any:
    """A private server that accepts DEBUG SLEEP (a server-wide stall)."""
    return redis_server_factory(extra_args=["--enable-debug-command", "yes"])


def stall(side: redis.Redis, server: Any, seconds: float) -> gevent.Greenlet:
    """Freeze the whole server for ``seconds``; returns once it is frozen (join the greenlet to resume)."""
    glet = gevent.spawn(side.execute_command, "DEBUG", "SLEEP", str(seconds))
    probe = redis.Redis(**server.connect_kwargs(), socket_timeout=0.05, protocol=2, retry=Retry(NoBackoff(), 0))

    def frozen() -> bool:
        try:
            probe.ping()
        except redis.TimeoutError:
            return True
        return False

    try:
        wait_until(frozen, 2.0, "the server to stall")
    finally:
        probe.close()
    return glet


# -- the client ----------------------------------------------------------------------------------------


def test_client_is_a_real_redis_on_the_pool(redis_server: Any, make_pool: Callable[..., RedisPool]) -> None:
    pool = make_pool(redis_server, max_connections=3)
    r = pool.client()
    assert isinstance(r, redis.Redis)
    assert isinstance(pool, redis.ConnectionPool)
    assert r.connection_pool is pool
    k = key("basic")

    assert r.set(k, "v") is True
    assert r.get(k) == b"v"
    assert r.incr(k + ":n") == 1
    with r.pipeline() as pipe:  # MULTI/EXEC transaction
        assert pipe.set(k, 1).get(k).incr(k).execute() == [True, b"1", 2]
    with r.pipeline(transaction=False) as pipe:
        assert pipe.echo("a").echo("b").execute() == [b"a", b"b"]
    with r.lock(k + ":lock", timeout=5):  # Lua scripts
        assert r.exists(k + ":lock") == 1

    sub = r.pubsub()
    sub.subscribe(k + ":ch")
    assert sub.get_message(timeout=2)["type"] == "subscribe"
    assert r.publish(k + ":ch", "hello") == 1
    message = wait_until(lambda: sub.get_message(timeout=0.1), 2, "the published message")
    assert (message["type"], message["data"]) == ("message", b"hello")
    sub.close()

    stats = pool.stats()
    assert stats.in_use == 0
    assert stats.size <= 3
    assert stats.timeouts == 0
    assert stats.dropped == 1  # only the subscribed connection: the others were reused
    info = r.client_info()
    assert (info["db"], info["multi"], info["sub"], info["resp"]) == (0, -1, 0, "2")


def test_connections_open_without_hello_or_client_setinfo(
    private_redis_server: Any, make_pool: Callable[..., RedisPool], side_factory: Callable[[Any], redis.Redis]
) -> None:
    side = side_factory(private_redis_server)
    hello, setinfo = stat(side, "hello"), stat(side, "client|setinfo")
    pool = make_pool(private_redis_server, max_connections=3, initial_connections=3)
    assert pool.client().ping() is True
    assert pool.stats().created == 3
    assert (stat(side, "hello"), stat(side, "client|setinfo")) == (hello, setinfo)

    plain = redis.Redis(**private_redis_server.connect_kwargs(), protocol=3)  # redis-py 8's default
    try:
        plain.ping()
    finally:
        plain.close()
    assert stat(side, "hello") == hello + 1  # the counter does see a RESP3 connection


def test_connection_block_binds_one_connection(
    redis_server: Any, make_pool: Callable[..., RedisPool], side_factory: Callable[[Any], redis.Redis]
) -> None:
    side = side_factory(redis_server)
    pool = make_pool(redis_server, max_connections=2)
    k, q = key("watched"), key("queue")
    side.set(k, 1)

    with pool.connection() as r:
        assert isinstance(r, redis.Redis)
        ids = {r.client_id() for _ in range(5)}
        assert len(ids) == 1
        with r.pipeline() as pipe:  # a pipeline in the block runs on the block's connection
            assert pipe.client_id().execute() == [next(iter(ids))]

        attempts = 0
        with r.pipeline() as pipe:
            while True:
                attempts += 1
                try:
                    pipe.watch(k)
                    value = int(pipe.get(k))
                    if attempts == 1:
                        side.incr(k)  # another client changes the key: EXEC must fail
                    pipe.multi()
                    pipe.set(k, value * 10)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        assert attempts == 2
        assert side.get(k) == b"20"

        gevent.spawn_later(0.05, side.rpush, q, "job")
        assert r.blpop(q, timeout=5) == (q.encode(), b"job")

    stats = pool.stats()
    assert (stats.in_use, stats.idle, stats.dropped, stats.created) == (0, 1, 0, 1)
    with pytest.raises(redis.ConnectionError, match="block that has ended"):
        r.ping()
    assert pool.client().client_id() in ids  # the block's connection went back and is reused


def test_what_a_block_made_fails_after_it_and_never_reaches_the_next_block(
    redis_server: Any, make_pool: Callable[..., RedisPool]
) -> None:
    pool = make_pool(redis_server, max_connections=1)
    with pool.connection() as r:
        me = r.client_id()
        late_pipe = r.pipeline(transaction=False)
        assert r.connection is not None  # redis-py uses the block's connection with no checkout per command
    assert r.connection is None
    with pool.connection() as again:  # the same connection, the only one
        assert again is not r and again.client_id() == me
        with pytest.raises(redis.ConnectionError, match="block that has ended"):
            r.client_id()
        with pytest.raises(redis.ConnectionError, match="block that has ended"):
            late_pipe.client_id().execute()
        assert again.echo("mine") == b"mine"
    assert pool.stats().created == 1


def test_a_connection_class_that_overrides_sending_is_used_for_every_command(
    redis_server: Any, make_pool: Callable[..., RedisPool]
) -> None:
    sent: list[Any] = []

    class Recording(redis.Connection):
        def send_command(self, *args: Any, **kwargs: Any) -> None:
            sent.append(args[0])
            super().send_command(*args, **kwargs)

    pool = make_pool(redis_server, max_connections=1, connection_class=Recording)
    r = pool.client()
    assert r.echo("a") == b"a"
    assert sent == ["ECHO"]
    r.execute_command("SELECT", 1)  # still tracked through the override: the connection is not reused
    assert sent == ["ECHO", "SELECT"]
    assert pool.stats().dropped == 1
    assert r.echo("b") == b"b" and pool.stats().created == 2


@pytest.mark.timeout(20)
def test_a_blocks_response_callbacks_stay_its_own(redis_server: Any, make_pool: Callable[..., RedisPool]) -> None:
    # The blocks of one connection share a copy of the callbacks until one changes it: a change stays in
    # its block, and a client whose block ended cannot change what the next block reads.
    pool = make_pool(redis_server, max_connections=1)
    k = key("callbacks")
    pool.client().set(k, "7")
    with pool.connection() as r:
        r.set_response_callback("GET", lambda value, **_: b"changed")
        assert r.get(k) == b"changed"
    with pool.connection() as r2:
        assert r2.get(k) == b"7"
        copy = r2.response_callbacks
        with pytest.raises(redis.ConnectionError, match="block that has ended"):
            r.set_response_callback("GET", lambda value, **_: b"stale")
        assert r2.get(k) == b"7"
    with pool.connection() as r3:
        assert r3.response_callbacks is copy  # unchanged: reused, not copied again
        with pytest.raises(redis.ConnectionError, match="block that has ended"):
            r2.response_callbacks["GET"] = None
        assert r3.get(k) == b"7"
    assert pool.stats().created == 1


def test_exhaustion_raises_an_error_both_redis_and_gpool_code_catch(
    redis_server: Any, make_pool: Callable[..., RedisPool]
) -> None:
    pool = make_pool(redis_server, max_connections=1, timeout=0.2)
    holder_ready = Event()
    release = Event()

    def holder() -> None:
        with pool.connection() as r:
            r.ping()
            holder_ready.set()
            release.wait(5)

    glet = gevent.spawn(holder)
    holder_ready.wait(5)
    started = monotonic()
    with pytest.raises(RedisPoolExhaustedError) as info:
        pool.client().ping()
    waited = monotonic() - started
    release.set()
    glet.get(timeout=5)
    assert isinstance(info.value, redis.ConnectionError)
    assert isinstance(info.value, gpool.PoolExhaustedError)
    assert 0.15 <= waited < 2.0
    assert "1/1 in use" in str(info.value)
    assert pool.stats().timeouts == 1
    assert pool.client().ping() is True

    with pool.connection(), pytest.raises(RedisPoolExhaustedError, match="already holds all"):
        pool.client().ping()  # waiting for itself would deadlock: refused at once


# -- never a stale reply ----------------------------------------------------------------------------


@pytest.mark.parametrize("interrupt", ["timeout", "kill"])
def test_interrupted_blpop_leaves_no_reply_for_the_next_user(
    interrupt: str, redis_server: Any, make_pool: Callable[..., RedisPool], side_factory: Callable[[Any], redis.Redis]
) -> None:
    side = side_factory(redis_server)
    pool = make_pool(redis_server, max_connections=1)  # the next user would get the same connection
    r = pool.client()
    q = key("blpop")
    interrupted_id = r.client_id()

    if interrupt == "timeout":
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.1):
            r.blpop(q, timeout=5)
    else:
        glet = gevent.spawn(r.blpop, q, timeout=5)
        wait_until(lambda: any(c.get("cmd") == "blpop" and int(c["id"]) == interrupted_id
                               for c in side.client_list()), 2, "BLPOP to block")
        glet.kill(block=True, timeout=2)
        assert glet.dead

    wait_until(lambda: interrupted_id not in client_ids(side), 2, "the server to see the connection closed")
    side.rpush(q, "late")  # the interrupted BLPOP, had it survived, would take this
    token = uuid.uuid4().hex
    assert r.echo(token) == token.encode()
    assert r.client_id() != interrupted_id
    assert side.lpop(q) == b"late"
    stats = pool.stats()
    assert (stats.dropped, stats.in_use, stats.size) == (1, 0, 1)


@pytest.mark.parametrize("interrupt", ["timeout", "kill"])
@pytest.mark.parametrize("command", ["get", "pipeline"])
def test_interrupted_read_leaves_no_reply_for_the_next_user(
    command: str, interrupt: str, stallable_redis: Any, make_pool: Callable[..., RedisPool],
    side_factory: Callable[[Any], redis.Redis],
) -> None:
    side = side_factory(stallable_redis)
    pool = make_pool(stallable_redis, max_connections=1)
    r = pool.client()
    k = key("stale")
    r.set(k, "the-old-value")

    def use() -> Any:
        if command == "get":
            return r.get(k)
        with r.pipeline(transaction=False) as pipe:
            return pipe.get(k).echo("p1").echo("p2").execute()

    frozen = stall(side, stallable_redis, 0.4)
    if interrupt == "timeout":
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.1):
            use()
    else:
        glet = gevent.spawn(use)
        # Checked out, then sent without yielding: once in use, the command waits for its reply.
        wait_until(lambda: pool.stats().in_use == 1, 2, "the command to be sent")
        glet.kill(block=True, timeout=2)
        assert glet.dead
    frozen.get(timeout=5)  # the server wakes and answers the interrupted command(s)

    for _ in range(3):
        token = uuid.uuid4().hex
        assert r.echo(token) == token.encode()
        with r.pipeline(transaction=False) as pipe:
            assert pipe.echo(token + "a").echo(token + "b").execute() == [(token + "a").encode(),
                                                                            (token + "b").encode()]
    stats = pool.stats()
    assert stats.dropped == 1
    assert stats.in_use == 0


def test_reply_still_owed_when_the_block_fails_is_not_left_for_the_next_user(
    redis_server: Any, make_pool: Callable[..., RedisPool]
) -> None:
    pool = make_pool(redis_server, max_connections=1)
    with pytest.raises(KeyError), pool.connection() as r:
        conn = r.connection_pool.get_connection()
        conn.send_command("BLPOP", key("never"), "0.3")  # its reply (nil) comes 0.3 s later
        raise KeyError("the caller's code fails before reading the reply")
    # Nothing unread on the socket yet, but a reply is owed: the connection is not reused.
    token = uuid.uuid4().hex
    assert pool.client().echo(token) == token.encode()
    assert pool.stats().dropped == 1


@pytest.mark.timeout(90)
def test_500_greenlets_on_10_connections_always_read_their_own_values(
    redis_server: Any, make_pool: Callable[..., RedisPool], side_factory: Callable[[Any], redis.Redis]
) -> None:
    side = side_factory(redis_server)
    pool = make_pool(redis_server, max_connections=10, timeout=30)
    r = pool.client()
    rng = random.Random(4)
    prefix = key("own")
    mismatches: list[tuple[int, Any, Any]] = []
    done = {"ok": 0, "interrupted": 0}
    peak = {"clients": 0}

    def run(client: redis.Redis, step: int, mine: str, token: str) -> tuple[list[Any], list[Any]]:
        if step == 0:
            return [client.echo(token)], [token.encode()]
        if step == 1:
            client.set(mine, token)
            return [client.get(mine)], [token.encode()]
        with client.pipeline(transaction=False) as pipe:
            return pipe.echo(token).set(mine, token).get(mine).execute(), [token.encode(), True, token.encode()]

    def worker(i: int) -> None:
        mine = f"{prefix}:{i}"
        for j in range(12):
            token = f"{i}:{j}:{rng.random()}"
            if rng.random() < 0.8:
                got, expected = run(r, j % 3, mine, token)  # a checkout per command or pipeline
            else:
                # Interrupt while the connection is held. Half the time in a BLPOP that the server
                # answers 50 ms later (the reply arrives after the interrupt: the stale-reply hazard),
                # else wherever the timer lands in the commands (or never).
                with pool.connection() as b:
                    slow = rng.random() < 0.5
                    timer = gevent.Timeout(rng.uniform(0.001, 0.02) if slow else rng.uniform(0.00002, 0.0005))
                    timer.start()
                    try:
                        if slow:
                            b.blpop(f"{prefix}:empty", timeout=0.05)
                        got, expected = run(b, j % 3, mine, token)
                    except gevent.Timeout as exc:
                        if exc is not timer:
                            raise
                        done["interrupted"] += 1
                        continue
                    finally:
                        timer.close()
            if got != expected:
                mismatches.append((i, expected, got))
            done["ok"] += 1

    def sample() -> None:
        while True:
            peak["clients"] = max(peak["clients"], int(side.info("clients")["connected_clients"]))
            gevent.sleep(0.01)

    baseline = int(side.info("clients")["connected_clients"])
    sampler = gevent.spawn(sample)
    started = monotonic()
    gevent.joinall([gevent.spawn(worker, i) for i in range(500)], raise_error=True)
    elapsed = monotonic() - started
    sampler.kill()

    assert mismatches == []
    assert done["ok"] + done["interrupted"] == 500 * 12
    assert done["interrupted"] > 200  # the run really interrupted commands mid-flight
    stats = pool.stats()
    assert stats.in_use == 0
    assert stats.size <= 10
    assert stats.dropped >= done["interrupted"]  # each interrupted connection was closed, not reused
    assert peak["clients"] > baseline  # the sampler saw the load
    assert elapsed < 60


# -- reset on return ----------------------------------------------------------------------------------


def _subscribe(r: redis.Redis, k: str) -> Any:
    return r.execute_command("SUBSCRIBE", k)


def _pubsub_left_open(r: redis.Redis, k: str) -> Any:
    sub = r.pubsub()
    sub.subscribe(k)
    assert sub.get_message(timeout=2)["type"] == "subscribe"
    return sub  # kept open by the test: the block ends subscribed


def _multi(r: redis.Redis, k: str) -> Any:
    assert r.execute_command("MULTI") in (b"OK", True)
    assert r.execute_command("RPUSH", k, "queued") == b"QUEUED"


def _watch(r: redis.Redis, k: str) -> Any:
    assert r.execute_command("WATCH", k) in (b"OK", True)


def _select(r: redis.Redis, k: str) -> Any:
    r.execute_command("SELECT", 9)
    r.set(k, "in-db-9")


def _lowercase_select(r: redis.Redis, k: str) -> Any:
    r.execute_command("select", b"9")
    r.set(k, "in-db-9")


def _client_setname(r: redis.Redis, k: str) -> Any:
    r.execute_command("CLIENT", "SETNAME", "changed")


@pytest.mark.parametrize("change", [_subscribe, _pubsub_left_open, _multi, _watch, _select, _lowercase_select,
                                    _client_setname], ids=lambda f: f.__name__.strip("_"))
def test_connection_left_in_another_state_is_not_reused(
    change: Callable[[redis.Redis, str], Any], redis_server: Any, make_pool: Callable[..., RedisPool],
    side_factory: Callable[[Any], redis.Redis],
) -> None:
    side = side_factory(redis_server)
    pool = make_pool(redis_server, max_connections=1)
    k = key("state")
    with pool.connection() as r:
        before = r.client_id()
        kept = change(r, k)

    r = pool.client()
    info = r.client_info()
    assert int(info["id"]) != before
    assert (info["db"], info["multi"], info["sub"], info["psub"], info["name"]) == (0, -1, 0, 0, "")
    assert r.exists(k) == 0  # nothing queued in MULTI ran, nothing written in db 9 shows in db 0
    assert pool.stats().dropped == 1
    del kept
    wait_until(lambda: before not in client_ids(side), 2, "the dropped connection to close")
    side.execute_command("SELECT", 9)
    side.delete(k)


def _select_and_back(r: redis.Redis, k: str) -> None:
    r.execute_command("SELECT", 9)
    r.execute_command("SELECT", 0)


def _multi_exec(r: redis.Redis, k: str) -> None:
    r.execute_command("MULTI")
    r.execute_command("SET", k, "x")
    r.execute_command("EXEC")


def _multi_discard(r: redis.Redis, k: str) -> None:
    r.execute_command("WATCH", k)
    r.execute_command("MULTI")
    r.execute_command("DISCARD")


def _watch_unwatch(r: redis.Redis, k: str) -> None:
    r.execute_command("WATCH", k)
    r.execute_command("UNWATCH")


def _transaction_pipeline(r: redis.Redis, k: str) -> None:
    with r.pipeline() as pipe:
        pipe.watch(k)
        pipe.multi()
        pipe.set(k, "y")
        pipe.execute()


def _response_error(r: redis.Redis, k: str) -> None:
    r.set(k, "text")
    with pytest.raises(redis.ResponseError):
        r.incr(k)


@pytest.mark.parametrize("change", [_select_and_back, _multi_exec, _multi_discard, _watch_unwatch,
                                    _transaction_pipeline, _response_error], ids=lambda f: f.__name__.strip("_"))
def test_connection_brought_back_to_its_state_is_reused(
    change: Callable[[redis.Redis, str], None], redis_server: Any, make_pool: Callable[..., RedisPool]
) -> None:
    pool = make_pool(redis_server, max_connections=1)
    k = key("clean")
    with pool.connection() as r:
        before = r.client_id()
        change(r, k)
    r = pool.client()
    info = r.client_info()
    assert int(info["id"]) == before
    assert (info["db"], info["multi"]) == (0, -1)
    stats = pool.stats()
    assert (stats.dropped, stats.created) == (0, 1)


def test_client_commands_that_change_state_drop_the_connection(
    redis_server: Any, make_pool: Callable[..., RedisPool]
) -> None:
    pool = make_pool(redis_server, max_connections=1)
    r = pool.client()
    first = r.client_id()
    r.execute_command("SELECT", 5)  # through client(): one checkout, returned on another db
    assert r.client_info()["db"] == 0
    second = r.client_id()
    assert second != first
    sub = r.pubsub()
    sub.subscribe(key("ch"))
    sub.close()  # redis-py disconnects it; the pool closes it and frees the slot
    assert r.client_id() not in (first, second)
    assert pool.stats().dropped == 2
    assert pool.stats().in_use == 0


# -- health checks ------------------------------------------------------------------------------------


def test_connection_killed_by_the_server_is_never_handed_out(
    redis_server: Any, make_pool: Callable[..., RedisPool], side_factory: Callable[[Any], redis.Redis]
) -> None:
    side = side_factory(redis_server)
    pool = make_pool(redis_server, max_connections=1, check_interval=None)  # no PING: only the socket check
    r = pool.client()
    victim = r.client_id()
    assert side.execute_command("CLIENT", "KILL", "ID", victim) == 1
    wait_until(lambda: victim not in client_ids(side), 2, "the kill")

    token = uuid.uuid4().hex
    assert r.echo(token) == token.encode()  # no error: the dead connection was noticed at checkout
    assert r.client_id() != victim
    stats = pool.stats()
    assert (stats.dropped, stats.check_failures, stats.created) == (0, 1, 2)  # refused by the checkout check


def test_connections_closed_by_the_server_timeout_are_never_handed_out(
    redis_server_factory: Callable[..., Any], make_pool: Callable[..., RedisPool],
    side_factory: Callable[[Any], redis.Redis],
) -> None:
    server = redis_server_factory()
    side = side_factory(server)
    pool = make_pool(server, max_connections=3, check_interval=None)  # no PING: only the socket check
    r = pool.client()
    taken = [pool.get_connection() for _ in range(3)]  # redis-py's pool API: three connections
    for conn in taken:
        conn.send_command("PING")
        assert conn.read_response() == b"PONG"
        pool.release(conn)
    assert pool.stats().idle == 3
    ids = client_ids(side)
    assert len(ids) == 4
    side.config_set("timeout", 1)
    try:
        wait_until(lambda: len(client_ids(side)) == 1, 10, "the server to close the idle connections")
    finally:
        side.config_set("timeout", 0)
    results = [gevent.spawn(r.echo, f"t{i}") for i in range(6)]
    gevent.joinall(results, raise_error=True)
    assert [g.value for g in results] == [f"t{i}".encode() for i in range(6)]
    stats = pool.stats()
    assert stats.check_failures == 3 and stats.dropped == 0
    assert stats.timeouts == 0


def test_connection_refused_by_a_full_server_is_a_connect_error(
    redis_server_factory: Callable[..., Any], make_pool: Callable[..., RedisPool],
    side_factory: Callable[[Any], redis.Redis],
) -> None:
    server = redis_server_factory(extra_args=["--maxclients", "1"])
    side = side_factory(server)
    assert side.ping() is True  # the one client the server accepts
    pool = make_pool(server, max_connections=2, timeout=5, connect_retries=2, retry_delay=0.01)
    for _ in range(5):
        started = monotonic()
        with pytest.raises(redis.ConnectionError) as info:
            pool.client().ping()
        assert monotonic() - started < 2  # not a reconnect loop until the 5 s deadline
        # The refusal is a connect error when it arrived before the checkout (RedisPoolExhaustedError,
        # after connect_retries), else the first command's error, as with redis-py's own pools.
        error = info.value.__cause__ if isinstance(info.value, RedisPoolExhaustedError) else info.value
        assert "max number of clients reached" in str(error)
    stats = pool.stats()
    assert (stats.in_use, stats.size) == (0, 0)
    side.close()
    wait_until(lambda: _pings(pool), 5, "the server to accept the pool again")


def _pings(pool: RedisPool) -> bool:
    try:
        return bool(pool.client().ping())
    except redis.ConnectionError:
        return False


def test_ping_only_after_check_interval_idle(
    redis_server_factory: Callable[..., Any], make_pool: Callable[..., RedisPool],
    side_factory: Callable[[Any], redis.Redis],
) -> None:
    server = redis_server_factory()
    side = side_factory(server)
    pool = make_pool(server, max_connections=1, check_interval=0.3)
    r = pool.client()
    r.get("x")
    pings = stat(side, "ping")
    for _ in range(50):
        r.get("x")
    assert stat(side, "ping") == pings  # busy: not one PING
    gevent.sleep(0.35)  # idle longer than check_interval (the behaviour under test, not a synchronisation)
    r.get("x")
    assert stat(side, "ping") == pings + 1
    r.get("x")
    assert stat(side, "ping") == pings + 1
    assert pool.stats().check_failures == 0


# -- no silent retries ------------------------------------------------------------------------------


def test_incr_is_not_sent_twice_when_the_server_stalls(
    stallable_redis: Any, make_pool: Callable[..., RedisPool], side_factory: Callable[[Any], redis.Redis]
) -> None:
    side = side_factory(stallable_redis)
    default = make_pool(stallable_redis, max_connections=1, socket_timeout=0.2)
    opted_in = make_pool(stallable_redis, max_connections=1, socket_timeout=0.3,
                         retry=Retry(NoBackoff(), 1), retry_on_timeout=True)
    n1, n2 = key("incr-default"), key("incr-retry")
    default.client().set(n1, 0)
    opted_in.client().set(n2, 0)

    incrs = stat(side, "incrby")  # redis-py sends INCR as INCRBY key 1
    frozen = stall(side, stallable_redis, 0.5)
    with pytest.raises(redis.TimeoutError):
        default.client().incr(n1)
    frozen.get(timeout=5)
    wait_until(lambda: side.get(n1) == b"1", 2, "the INCR sent before the timeout to run")
    side.ping()
    assert stat(side, "incrby") == incrs + 1  # sent once, run once when the server woke up; never re-sent
    assert side.get(n1) == b"1"
    assert default.stats().dropped == 1

    frozen = stall(side, stallable_redis, 0.5)
    assert opted_in.client().incr(n2) in (1, 2)  # redis-py's Retry, opted in: sent again after the timeout
    frozen.get(timeout=5)
    wait_until(lambda: side.get(n2) == b"2", 2, "both INCRs to run")
    assert stat(side, "incrby") == incrs + 3  # ...so a non-idempotent command ran twice: why it is not the default


# -- fairness at the cap ------------------------------------------------------------------------------


def test_200_greenlets_on_5_connections_are_served_in_fifo_order(
    redis_server_factory: Callable[..., Any], make_pool: Callable[..., RedisPool],
    side_factory: Callable[[Any], redis.Redis],
) -> None:
    server = redis_server_factory()  # its own: connected_clients counts only this test's connections
    side = side_factory(server)
    pool = make_pool(server, max_connections=5, initial_connections=5, timeout=30)
    r = pool.client()
    k = key("fair")
    order: list[int] = []
    peak = {"clients": 0}

    def sample() -> None:
        while True:
            peak["clients"] = max(peak["clients"], int(side.info("clients")["connected_clients"]))
            gevent.sleep(0.002)

    def block(i: int) -> None:
        with pool.connection() as b:
            order.append(i)
            b.incr(k)
            b.echo(str(i))

    def commands(i: int) -> None:
        for _ in range(10):
            r.incr(k)

    sampler = gevent.spawn(sample)
    gevent.joinall([gevent.spawn(block, i) for i in range(200)], raise_error=True)
    assert order == list(range(200))  # acquired in the order they asked
    gevent.joinall([gevent.spawn(commands, i) for i in range(200)], raise_error=True)  # none fails
    sampler.kill()

    assert side.get(k) == b"2200"
    stats = pool.stats()
    assert (stats.created, stats.size, stats.timeouts, stats.dropped) == (5, 5, 0, 0)
    assert stats.waits >= 195
    assert 1 < peak["clients"] <= 5 + 1  # the pool's five and the side connection
    assert int(side.info("clients")["connected_clients"]) == 6


# -- server restart ------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_pool_recovers_from_a_server_restart_under_load(
    restartable_redis_server: Any, make_pool: Callable[..., RedisPool]
) -> None:
    server = restartable_redis_server
    pool = make_pool(server, max_connections=10, timeout=2, socket_timeout=1, socket_connect_timeout=0.5,
                     connect_retries=2, retry_delay=0.05)
    r = pool.client()
    k = key("restart")
    ok = {"before": 0, "down": 0, "after": 0, "settled": 0}
    phase = {"name": "before"}
    errors: dict[str, list[BaseException]] = {name: [] for name in ok}
    stop = Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                r.incr(k)
                ok[phase["name"]] += 1
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                errors[phase["name"]].append(exc)
                gevent.sleep(0.01)

    workers = [gevent.spawn(worker) for _ in range(30)]
    wait_until(lambda: ok["before"] >= 300, 10, "load before the restart")
    phase["name"] = "down"
    server.stop()
    wait_until(lambda: len(errors["down"]) >= 30, 10, "commands to fail while the server is down")
    server.start()
    phase["name"] = "after"
    wait_until(lambda: ok["after"] >= 100, 20, "load after the restart")
    phase["name"] = "settled"  # from here on, not one command may fail
    wait_until(lambda: ok["settled"] >= 1000, 20, "load once recovered")
    stop.set()
    gevent.joinall(workers, raise_error=True)

    assert errors["before"] == []
    assert errors["settled"] == []
    assert all(isinstance(e, (redis.ConnectionError, redis.TimeoutError)) for e in errors["down"] + errors["after"])
    # afterwards every command succeeds, from many greenlets at once
    k2 = key("after")
    results = [gevent.spawn(lambda: [r.incr(k2) for _ in range(20)]) for _ in range(25)]
    gevent.joinall(results, raise_error=True)
    assert r.get(k2) == b"500"
    stats = pool.stats()
    assert stats.in_use == 0
    assert stats.size <= 10


class _Token:
    """A streaming-credentials token as redis-py's re_auth() reads it."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password

    def try_get(self, key: str) -> Any:
        return self.user if key == "oid" else None

    def get_value(self) -> str:
        return self.password


def test_reauthenticated_connection_is_kept_with_its_new_identity(
    redis_server: Any, make_pool: Callable[..., RedisPool], side_factory: Callable[[Any], redis.Redis],
) -> None:
    side = side_factory(redis_server)
    user = f"gpool-reauth-{os.getpid()}"
    side.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all")
    try:
        pool = make_pool(redis_server, max_connections=1)
        r = pool.client()
        assert r.ping() is True
        pool.re_auth_callback(_Token(user, "pw"))
        assert r.ping() is True  # the connection re-authenticates as it comes back from this one
        for _ in range(3):
            assert r.acl_whoami() == user
        stats = pool.stats()
        assert (stats.created, stats.dropped) == (1, 0), "the re-authenticated connection was dropped and replaced"
    finally:
        side.execute_command("ACL", "DELUSER", user)


# -- secrets, input, life cycle -----------------------------------------------------------------------


def test_password_never_appears_in_repr_logs_or_errors(
    redis_server_factory: Callable[..., Any], make_pool: Callable[..., RedisPool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = redis_server_factory()  # its own: requirepass is set on it (the launcher's readiness PING has none)
    setup = redis.Redis(**server.connect_kwargs(), protocol=2)
    setup.config_set("requirepass", SECRET)
    setup.close()
    pool = RedisPool(host=server.host, port=server.port, password=SECRET, max_connections=2)
    try:
        r = pool.client()
        assert r.ping() is True
        with pool.connection() as bound:
            texts = [repr(pool), str(pool), repr(r), repr(bound), repr(bound.connection_pool), repr(pool.pool),
                     str(pool.stats()), repr(next(iter(pool._get_in_use_connections())))]
    finally:
        pool.close()
    texts.append(repr(pool))

    wrong = RedisPool(host=server.host, port=server.port, password=SECRET + "-wrong", connect_retries=1,
                      retry_delay=0.01, timeout=2)
    try:
        with pytest.raises(RedisPoolExhaustedError) as info:
            wrong.client().ping()
    finally:
        wrong.close()
    assert isinstance(info.value.__cause__, redis.AuthenticationError)
    texts += [str(info.value), repr(info.value), str(info.value.__cause__), repr(info.value.__cause__)]

    url = f"redis://user:{SECRET}@127.0.0.1:{server.port}/0"
    for bad in (url + "?nope=1", url + "?max_connections=x", url.replace(f":{server.port}", ":99999"),
                url.replace("redis://", "http://")):
        with pytest.raises(ValueError) as bad_info:
            RedisPool.from_url(bad)
        texts.append(str(bad_info.value))
    with pytest.raises(TypeError) as type_info:
        RedisPool(password=987654321987)  # type: ignore[arg-type]
    texts.append(str(type_info.value))

    formatter = logging.Formatter("%(message)s")
    texts += [formatter.format(record) for record in caplog.records]
    assert any("auth" in text.lower() for text in texts)  # the failure was logged and reported...
    leaks = [text for text in texts if SECRET in text or "987654321987" in text]
    assert leaks == []  # ...without the password


def test_from_url_reads_pool_and_connection_options(redis_server: Any, make_pool: Callable[..., RedisPool]) -> None:
    url = (f"redis://{redis_server.host}:{redis_server.port}/3?max_connections=4&timeout=2.5&check_interval=none"
           f"&socket_timeout=1.5&client_name=gp-test&decode_responses=true&connect_retries=1")
    pool = RedisPool.from_url(url, idle_timeout=30)
    try:
        assert pool.max_connections == 4
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["socket_timeout"], kwargs["decode_responses"]) == (3, 1.5, True)
        r = pool.client()
        k = key("url")
        r.set(k, "text")
        assert r.get(k) == "text"  # decoded
        info = r.client_info()
        assert (info["db"], info["name"]) == (3, "gp-test")
        assert pool.stats().dropped == 0  # CLIENT SETNAME of the handshake is not a state change
        r.delete(k)
    finally:
        pool.close()

    pool = RedisPool.from_url("redis://alice:p%40ss@127.0.0.1:7000/0?max_connections=2", max_connections=3)
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["password"]) == ("alice", "p@ss")
    assert pool.max_connections == 3  # keyword arguments override the URL
    assert "p@ss" not in repr(pool)
    pool.close()
    secure = RedisPool.from_url("rediss://127.0.0.1:6380/1?ssl_cert_reqs=none")
    assert issubclass(secure.connection_class, redis.SSLConnection)
    assert secure.name == "rediss://127.0.0.1:6380/1"
    secure.close()
    unix = RedisPool.from_url("unix:///tmp/redis.sock?db=2")
    assert issubclass(unix.connection_class, redis.UnixDomainSocketConnection)
    assert unix.connection_kwargs["path"] == "/tmp/redis.sock"
    unix.close()


@pytest.mark.parametrize(("url", "message"), [
    ("redis://127.0.0.1/0?max_connectionz=3", "unknown option 'max_connectionz'"),
    ("redis://127.0.0.1/0?retry=3", "connect_retries"),
    ("redis://127.0.0.1/0?timeout=soon", "option timeout must be a number, got 'soon'"),
    ("redis://127.0.0.1/0?decode_responses=maybe", "option decode_responses must be true or false"),
    ("redis://127.0.0.1/0?db=1&db=2", "'db' given more than once"),
    ("redis://127.0.0.1/zero", "database number, got 'zero'"),
    ("redis://127.0.0.1:0/0", "port must be"),
    ("redis://127.0.0.1/0?ssl_ca_certs=/x", "needs a rediss:// URL"),
    ("mysql://127.0.0.1/0", "scheme must be redis://"),
    ("unix://", "socket's path"),
])
def test_from_url_rejects_bad_urls_naming_the_part(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        RedisPool.from_url(url)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"port": "6379"}, TypeError, "port must be an integer, got '6379'"),
    ({"port": 70000}, ValueError, "port must be from 1 to 65535"),
    ({"host": ""}, ValueError, "host must be a non-empty string"),
    ({"db": -1}, ValueError, "db must be >= 0"),
    ({"max_connections": 0}, ValueError, "max_connections must be > 0"),
    ({"timeout": -1}, ValueError, "timeout must be >= 0"),
    ({"connect_retries": 1.5}, TypeError, "connect_retries must be an integer"),
    ({"retry": 3}, TypeError, "retry must be a redis.retry.Retry"),
    ({"socket_timoeut": 1}, TypeError, "socket_timoeut"),
    ({"cache_config": object()}, ValueError, "client-side caching is not supported"),
])
def test_bad_arguments_name_the_parameter(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RedisPool(**kwargs)


def test_defaults_send_no_retries_and_use_resp2() -> None:
    pool = RedisPool(port=1)
    try:
        conn = pool.make_connection()
        assert isinstance(conn, PooledConnection) and isinstance(conn, redis.connection.Connection)
        retries = conn.retry.get_retries() if hasattr(conn.retry, "get_retries") else conn.retry._retries
        assert retries == 0
        assert conn.protocol == 2
        assert all(pool.connection_kwargs.get(name) is None for name in ("driver_info", "lib_name", "lib_version"))
        assert pool.name == "redis://127.0.0.1:1/0"
    finally:
        pool.close()


def test_disconnect_keeps_the_pool_usable_and_close_is_final(
    redis_server: Any, make_pool: Callable[..., RedisPool], side_factory: Callable[[Any], redis.Redis]
) -> None:
    side = side_factory(redis_server)
    pool = make_pool(redis_server, max_connections=3)
    r = pool.client()
    with pool.connection() as held:
        held_id = held.client_id()
        idle_id = r.client_id()  # a second connection, idle once the command is done
        assert idle_id != held_id
        pool.disconnect()  # redis-py's API: idle ones go now, the one in use when it comes back
        wait_until(lambda: idle_id not in client_ids(side), 2, "the idle connection to close")
        assert held.echo("still") == b"still"  # never closed under its user
    wait_until(lambda: held_id not in client_ids(side), 2, "the returned connection to close")
    assert r.ping() is True
    assert pool.stats().size == 1

    with pool.connection() as in_use:
        pool.close()
        assert in_use.ping() is True  # a connection in use keeps working until the block ends
    assert pool.stats().size == 0
    with pytest.raises(RedisPoolClosedError) as info:
        r.ping()
    assert isinstance(info.value, redis.ConnectionError)
    assert isinstance(info.value, gpool.PoolClosedError)

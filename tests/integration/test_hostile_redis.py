"""gpool.redis against hostile servers and with redis-py's own machinery.

Fake RESP servers send replies nobody asked for (after AUTH, after the pool's PING), answer PING
slowly or refuse the password; against the private Redis: blocking commands longer than
socket_timeout, redis_connect_func, packed batches, should_reconnect(), maintenance notifications,
retry= and protocol=None.
"""

from gevent import monkey

monkey.patch_all()

from time import monotonic  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402
from redis.backoff import ConstantBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

from gpool.redis import RedisPool  # noqa: E402
from tests.hostile_servers import FakeRedis, frozen  # noqa: E402

pytestmark = pytest.mark.timeout(20)


def fake_pool(server: FakeRedis, **kwargs: Any) -> RedisPool:
    return RedisPool(host="127.0.0.1", port=server.port, max_connections=1, timeout=2.0, **kwargs)


def test_reply_sent_with_the_auth_ok_never_reaches_a_caller() -> None:
    with FakeRedis("stale_after_auth") as server:
        server.data[b"k"] = b"real"
        pool = fake_pool(server, password="pw", connect_retries=0)
        try:
            with pytest.raises(redis.ConnectionError) as info:
                pool.client().get("k")
            assert b"STALE" not in repr(info.value).encode()
            assert "nobody asked for" in str(info.value) or "nobody asked for" in str(info.value.__cause__)
        finally:
            pool.close()


def test_reply_sent_after_the_pools_ping_never_reaches_a_caller() -> None:
    with FakeRedis("stale_after_ping") as server:
        server.data.update({b"a": b"1", b"b": b"2", b"c": b"3"})
        pool = fake_pool(server, check_interval=0.0)
        client = pool.client()
        try:
            for key, value in ((b"a", b"1"), (b"b", b"2"), (b"c", b"3")):
                gevent.sleep(0.01)  # idle >= check_interval: PINGed at the next checkout
                assert client.get(key) == value
            assert pool.stats().check_failures >= 1
        finally:
            pool.close()


def test_health_check_waits_the_callers_timeout_not_one_second() -> None:
    with FakeRedis("slow_pong", delay=1.3) as server:
        pool = fake_pool(server, socket_timeout=5.0)
        try:
            conn = pool.get_connection()
            slot = conn._gpool_slot
            pool.release(conn)
            began = monotonic()
            assert slot.health_check(3.0) is True
            assert 1.2 < monotonic() - began < 2.5
            assert slot.health_check(0.3) is False  # and a shorter deadline is kept
        finally:
            pool.close()


@pytest.mark.parametrize(("mode", "sessions"), [
    ("stale_after_auth", 2),  # a transient failure: the pool's two attempts, not 2 x 4
    ("wrong_password", 1),  # cannot succeed on retry: one attempt, however many are allowed
])
def test_user_retry_policy_does_not_multiply_connect_attempts(mode: str, sessions: int) -> None:
    with FakeRedis(mode) as server:
        pool = fake_pool(server, password="bad", connect_retries=1, retry_delay=0.01,
                         retry=Retry(ConstantBackoff(0.01), 3))
        try:
            with pytest.raises(redis.ConnectionError):
                pool.client().get("k")
            assert server.sessions == sessions
        finally:
            pool.close()


def test_blocking_command_longer_than_socket_timeout_works(redis_server: Any) -> None:
    pool = RedisPool(**redis_server.connect_kwargs(), socket_timeout=0.3)
    client = pool.client()
    try:
        client.delete("hostile:jobs")
        began = monotonic()
        assert client.blpop(["hostile:jobs"], timeout=1) is None  # waits 1 s on the server, no TimeoutError
        assert 0.9 < monotonic() - began < 1.5
        gevent.spawn_later(0.5, client.rpush, "hostile:jobs", "job")
        assert client.blpop(["hostile:jobs"], timeout=2) == (b"hostile:jobs", b"job")
        assert client.ping()  # the socket timeout is back to 0.3 s and the connection reused
        assert pool.stats().closed == 0
    finally:
        pool.close()


def test_redis_connect_func_commands_are_handshake(redis_server: Any) -> None:
    def connect_func(conn: Any) -> None:
        conn.on_connect()
        conn.send_command("CLIENT", "SETNAME", "hostile")
        assert conn.read_response() in (b"OK", "OK")

    pool = RedisPool(**redis_server.connect_kwargs(), redis_connect_func=connect_func)
    client = pool.client()
    try:
        for _ in range(20):
            client.get("hostile:k")
        assert pool.stats().created == 1 and client.client_getname() in (b"hostile", "hostile")
    finally:
        pool.close()


def test_packed_batch_counted_when_send_is_looked_up_before_packing(redis_server: Any) -> None:
    pool = RedisPool(**redis_server.connect_kwargs())
    try:
        for _ in range(5):
            conn = pool.get_connection()
            send = conn.send_packed_command  # the cluster pipeline's evaluation order
            send(conn.pack_commands([("SET", "hostile:p", "1"), ("GET", "hostile:p")]))
            assert conn.read_response() == b"OK" and conn.read_response() == b"1"
            pool.release(conn)
        assert pool.stats().created == 1 and pool.stats().closed == 0
    finally:
        pool.close()


def test_should_reconnect_honoured_on_return(redis_server: Any) -> None:
    pool = RedisPool(**redis_server.connect_kwargs())
    try:
        conn = pool.get_connection()
        if not hasattr(conn, "mark_for_reconnect"):
            pytest.skip("redis-py without should_reconnect()")
        conn.mark_for_reconnect()
        pool.release(conn)
        again = pool.get_connection()
        assert again is not conn and pool.stats().created == 2
        pool.release(again)
    finally:
        pool.close()


def test_default_maint_notifications_config_accepted_and_disabled(redis_server: Any) -> None:
    maint = pytest.importorskip("redis.maint_notifications")
    pool = RedisPool(**redis_server.connect_kwargs(), maint_notifications_config=maint.MaintNotificationsConfig())
    try:
        assert pool.client().ping()
        assert not pool.maint_notifications_enabled()
        pool.update_maint_notifications_config(maint.MaintNotificationsConfig())  # the cluster client's call
    finally:
        pool.close()
    with pytest.raises(ValueError, match="maint_notifications_config"):
        RedisPool(**redis_server.connect_kwargs(), maint_notifications_config=maint.MaintNotificationsConfig(
            enabled=True))


def test_protocol_none_means_resp2(redis_server: Any) -> None:
    pool = RedisPool(**redis_server.connect_kwargs(), protocol=None)
    try:
        assert pool.client().client_info()["resp"] == "2"
    finally:
        pool.close()


def test_connection_with_unread_bytes_in_the_parser_is_not_kept_on_return(
        redis_server: Any, closing: list[Any]) -> None:
    pool = RedisPool(**redis_server.connect_kwargs())
    closing.append(pool)
    conn = pool.get_connection()
    conn.send_command("PING")
    assert conn.read_response() in (b"PONG", "PONG")
    buffer = conn._parser._buffer._buffer  # redis-py's SocketBuffer: a reply nobody asked for, read ahead
    position = buffer.tell()
    buffer.seek(0, 2)
    buffer.write(b"+STALE\r\n")
    buffer.seek(position)
    pool.release(conn)
    stats = pool.stats()
    assert (stats.idle, stats.in_use, stats.closed) == (0, 0, 1)  # closed at once, not kept idle
    assert pool.client().echo("mine") == b"mine"


def test_commands_of_every_size_are_sent_whole(redis_server: Any) -> None:
    # Small commands go out in one non-blocking send (issue 18); what the kernel does not take at once
    # goes on through redis-py's sendall. Values up to 24 MB, alone and in a pipeline, stay in step.
    pool = RedisPool(**redis_server.connect_kwargs(), max_connections=1)
    try:
        r = pool.client()
        for size in (0, 1, 65_536, 3 * 1024 * 1024, 24 * 1024 * 1024):
            assert r.set("gpool:big", b"v" * size) is True
            assert r.strlen("gpool:big") == size and r.echo("after") == b"after"
        with r.pipeline(transaction=False) as pipe:
            values = [b"a" * (5 * 1024 * 1024), b"b" * 10, b"c" * (2 * 1024 * 1024)]
            for i, value in enumerate(values):
                pipe.set(f"gpool:big:{i}", value)
            pipe.strlen("gpool:big:0").strlen("gpool:big:1").strlen("gpool:big:2")
            assert pipe.execute() == [True, True, True, *map(len, values)]
        r.delete("gpool:big", "gpool:big:0", "gpool:big:1", "gpool:big:2")
        assert (pool.stats().created, pool.stats().dropped) == (1, 0)
    finally:
        pool.close()


def test_a_command_too_large_for_a_frozen_server_is_bounded_and_never_reused(
        restartable_redis_server: Any) -> None:
    server = restartable_redis_server
    pool = RedisPool(**server.connect_kwargs(), max_connections=1, socket_timeout=0.5)
    try:
        r = pool.client()
        assert r.ping() is True
        with frozen(server.pid):
            began = monotonic()
            with gevent.Timeout(6, AssertionError("the write never gave up")), pytest.raises(redis.TimeoutError):
                r.set("gpool:frozen", b"x" * (48 * 1024 * 1024))
            assert monotonic() - began < 3.0
        assert r.ping() is True
        stats = pool.stats()
        assert (stats.created, stats.dropped) == (2, 1)
    finally:
        pool.close()

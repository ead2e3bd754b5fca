"""gpool.redis.SentinelRedisPool against a real Sentinel deployment (1 master, 2 replicas, 3 sentinels).

What is proven here: after a failover is announced no acknowledged write is lost (and redis-py's
own Sentinel pool, in the same run, for contrast); a stalled master costs bounded errors and nothing
reaches it after it resumes; the pool follows one switch and never flips back; the cap holds under
200 greenlets through ``Sentinel.master_for``; replica pools spread, refuse writes and survive a
replica kill; sentinels down cost no error (one) or a bounded one (all); kills and Timeouts at the
new yield points leave the pool working; fork; the watcher never keeps ``gevent.wait()`` alive.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from time import monotonic  # noqa: E402
from typing import Any, Optional  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402
from gevent.event import Event  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402
from redis.sentinel import MasterNotFoundError, Sentinel  # noqa: E402

from gpool.redis import RedisPoolExhaustedError, SentinelRedisPool  # noqa: E402
from gpool.testing import SentinelCluster, find_redis_server  # noqa: E402
from gpool.testing.sentinel import resp_command  # noqa: E402
from tests.support import wait_until  # noqa: E402

pytestmark = pytest.mark.skipif(find_redis_server() is None, reason="needs redis-server")

SERVICE = "mymaster"


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[SentinelCluster]:
    """A deployment shared by the tests that leave it as they found it (no failover)."""
    with SentinelCluster(replicas=2) as deployment:
        yield deployment


def names_on(port: int, name: str) -> int:
    """How many clients called ``name`` the server on ``port`` has now."""
    reply = resp_command(port, "CLIENT", "LIST")
    assert isinstance(reply, bytes), reply
    return sum(1 for line in reply.decode().splitlines() if f" name={name} " in f" {line} ")


class SwitchClock:
    """Subscribes to ``+switch-master`` on every sentinel: the monotonic time of the first message."""

    def __init__(self, cluster: SentinelCluster) -> None:
        self.first: Optional[float] = None
        self.event = Event()
        self._subs = []
        for host, port in cluster.sentinel_addresses:
            ps = redis.Redis(host=host, port=port, socket_timeout=5).pubsub()
            ps.subscribe("+switch-master")
            ps.get_message(timeout=2)  # the confirmation
            self._subs.append(ps)
        self._greenlets = [gevent.spawn(self._listen, ps) for ps in self._subs]

    def _listen(self, ps: Any) -> None:
        while True:
            message = ps.get_message(timeout=1.0)
            if message and message["type"] == "message" and self.first is None:
                self.first = monotonic()
                self.event.set()

    def wait(self, timeout: float) -> float:
        assert self.event.wait(timeout), f"no +switch-master in {timeout}s"
        assert self.first is not None
        return self.first

    def close(self) -> None:
        gevent.killall(self._greenlets)
        for ps in self._subs:
            ps.close()


@dataclass
class Writers:
    """Greenlets writing unique keys; what was acknowledged and when."""

    client: Any
    prefix: str
    acked: list[tuple[str, float]] = field(default_factory=list)
    failures: list[tuple[float, float, BaseException]] = field(default_factory=list)
    stop: Event = field(default_factory=Event)
    greenlets: list[Any] = field(default_factory=list)

    def start(self, count: int) -> Writers:
        self.greenlets = [gevent.spawn(self._write, i) for i in range(count)]
        return self

    def _write(self, index: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            key = f"{self.prefix}:{index}:{n}"
            began = monotonic()
            try:
                self.client.set(key, "1")
            except Exception as exc:
                self.failures.append((began, monotonic(), exc))
                gevent.sleep(0.01)
                continue
            self.acked.append((key, monotonic()))

    def finish(self) -> None:
        self.stop.set()
        gevent.joinall(self.greenlets, timeout=10)
        gevent.killall(self.greenlets)

    def missing_on(self, port: int, after: float = -1.0) -> int:
        """How many keys acknowledged after ``after`` are not on the server at ``port``."""
        check = redis.Redis(port=port, socket_timeout=10)
        keys = [key for key, at in self.acked if at > after]
        missing = 0
        for start in range(0, len(keys), 5000):
            pipe = check.pipeline(transaction=False)
            for key in keys[start:start + 5000]:
                pipe.exists(key)
            missing += sum(1 for found in pipe.execute() if not found)
        check.close()
        return missing


# -- the headline ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_no_write_acknowledged_after_the_switch_is_lost(fresh_sentinel_cluster: SentinelCluster,
                                                        closing: list[Any]) -> None:
    cluster = fresh_sentinel_cluster
    pool = SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, max_connections=10, timeout=10,
                                         socket_timeout=2)
    closing.append(pool)
    redispy = Sentinel(cluster.sentinel_addresses, socket_timeout=2).master_for(SERVICE, socket_timeout=2)
    clock = SwitchClock(cluster)
    tag = uuid.uuid4().hex[:8]
    ours = Writers(pool.client(), f"gpool:{tag}").start(10)
    theirs = Writers(redispy, f"redispy:{tag}").start(10)
    try:
        old = cluster.master_port()
        wait_until(lambda: len(ours.acked) > 500 and len(theirs.acked) > 500, 10, "writes before the failover")
        history = [pool.master_address]

        def follow() -> None:
            while True:
                if pool.master_address != history[-1]:
                    history.append(pool.master_address)
                gevent.sleep(0.002)

        watch = gevent.spawn(follow)
        cluster.failover()
        switched = clock.wait(15)
        new = cluster.wait_for_new_master(old, 15)
        cluster.wait_role(old, "slave", 25)  # Sentinel demotes the old master ~10 s after the switch
        gevent.sleep(0.3)
    finally:
        ours.finish()
        theirs.finish()
        clock.close()
        watch.kill()
    lost_after = ours.missing_on(new, switched + 0.5)
    theirs_lost_after = theirs.missing_on(new, switched + 0.5)
    print(f"\nfailover: gpool {len(ours.acked)} acked, {ours.missing_on(new)} lost in all, "
          f"{ours.missing_on(new, switched)} of them acked after the first +switch-master, {lost_after} more "
          f"than 0.5 s after, {len(ours.failures)} errors; redis-py {len(theirs.acked)} acked, "
          f"{theirs.missing_on(new)} lost in all, {theirs.missing_on(new, switched)} after the switch, "
          f"{theirs_lost_after} more than 0.5 s after, {len(theirs.failures)} errors")
    times = sorted(at for _, at in ours.acked)
    gap, gap_at = max((b - a, a - switched) for a, b in zip(times, times[1:]))
    print(f"gpool: longest pause between two acknowledgements {gap:.3f}s, {gap_at:+.3f}s from the switch")
    assert lost_after == 0
    assert [address for address in history if address is not None] == [("127.0.0.1", old), ("127.0.0.1", new)]
    stats = pool.sentinel_stats()
    assert stats.master_switches == 1 and stats.master_address == ("127.0.0.1", new)
    assert stats.last_switch_at is not None and stats.config_epoch >= 1
    pool_stats = pool.stats()  # the pool's own snapshot carries them too
    assert pool_stats.master_switches == 1 and pool_stats.last_master_switch_at == stats.last_switch_at


# -- a stalled master -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_stalled_master_errors_are_bounded_and_it_gets_nothing_after_resuming(
        fresh_sentinel_cluster: SentinelCluster, closing: list[Any]) -> None:
    cluster = fresh_sentinel_cluster
    timeout = 3.0
    pool = SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, max_connections=10, timeout=timeout,
                                         socket_timeout=0.5, client_name="gpool-stall")
    closing.append(pool)
    clock = SwitchClock(cluster)
    writers = Writers(pool.client(), f"stall:{uuid.uuid4().hex[:8]}").start(10)
    old = cluster.master_port()
    server = cluster.server(old)
    try:
        wait_until(lambda: len(writers.acked) > 200, 10, "writes before the stall")
        server._signal(signal.SIGSTOP)
        switched = clock.wait(20)
        gevent.sleep(0.3)
    finally:
        server._signal(signal.SIGCONT)
    resumed = monotonic()
    try:
        seen_on_old = []
        for _ in range(8):
            gevent.sleep(0.2)
            seen_on_old.append(names_on(old, "gpool-stall"))
    finally:
        writers.finish()
        clock.close()
    assert seen_on_old == [0] * 8, seen_on_old
    assert writers.failures, "the stall caused no error at all: the test did not stall anything"
    for began, ended, exc in writers.failures:
        assert isinstance(exc, (redis.ConnectionError, redis.TimeoutError)), repr(exc)
        assert exc.__cause__ is not None or exc.__context__ is not None, repr(exc)
        assert ended - began <= timeout + 0.6, (ended - began, repr(exc))
    first_success = min(at for _, at in writers.acked if at > switched)
    assert first_success - switched < 1.0
    assert pool.master_address != ("127.0.0.1", old)
    assert not [f for f in writers.failures if f[0] > resumed]


# -- compatibility: Sentinel.master_for with the cap ---------------------------------------------


@pytest.mark.timeout(30)
def test_master_for_caps_connections_under_200_greenlets(cluster: SentinelCluster) -> None:
    manager = Sentinel(cluster.sentinel_addresses, socket_timeout=1)
    client = manager.master_for(SERVICE, connection_pool_class=SentinelRedisPool, max_connections=5,
                                client_name="gpool-cap")
    pool = client.connection_pool
    assert isinstance(pool, SentinelRedisPool) and pool.is_master
    key = f"cap:{uuid.uuid4().hex}"
    errors: list[BaseException] = []
    peak = [0]
    master = cluster.master_port()
    done = Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], names_on(master, "gpool-cap"))
            gevent.sleep(0.01)

    def work() -> None:
        for _ in range(20):
            try:
                client.incr(key)
            except Exception as exc:
                errors.append(exc)

    sampler = gevent.spawn(sample)
    gevent.joinall([gevent.spawn(work) for _ in range(200)], timeout=20)
    done.set()
    sampler.join()
    try:
        assert errors == []
        assert int(client.get(key)) == 4000
        assert 1 <= peak[0] <= 5
        assert pool.stats().max_connections == 5 and pool.size <= 5
        assert pool.master_address == ("127.0.0.1", master)
        assert SERVICE in repr(pool) and f"127.0.0.1:{master}" in repr(pool)
    finally:
        client.close()
        pool.close()


def test_from_url_is_master_setter_and_no_password_in_repr(cluster: SentinelCluster, closing: list[Any]) -> None:
    manager = Sentinel(cluster.sentinel_addresses, socket_timeout=1)
    pool = SentinelRedisPool.from_url("redis://:not-the-password@mymaster/0?max_connections=3",
                                      sentinel_manager=manager, password=None)
    closing.append(pool)
    assert pool.service_name == SERVICE and pool.max_connections == 3
    assert pool.client().ping()
    assert "not-the-password" not in repr(pool)
    pool.is_master = False  # django-redis does this after building the pool
    assert pool.client().get("nothing") is None
    with pytest.raises(redis.exceptions.ReadOnlyError):
        pool.client().set("x", 1)
    with pytest.raises(ValueError, match="role"):
        SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, role="primary")
    with pytest.raises(TypeError, match="sentinel_manager"):
        SentinelRedisPool.from_url("redis://mymaster/0")
    with pytest.raises(TypeError, match="host"):
        SentinelRedisPool(SERVICE, manager, host="127.0.0.1")


# -- replica pools --------------------------------------------------------------------------------


def test_replica_pool_spreads_and_refuses_writes(cluster: SentinelCluster, closing: list[Any]) -> None:
    pool = SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, role="replica", max_connections=4,
                                         client_name="gpool-rep", timeout=5)
    closing.append(pool)
    master = cluster.master_port()
    replicas = [port for port in cluster.ports if port != master]
    hold = Event()
    entered: list[int] = []

    def use() -> None:
        with pool.connection() as r:
            r.get("k")
            entered.append(1)
            hold.wait(5)

    greenlets = [gevent.spawn(use) for _ in range(4)]
    wait_until(lambda: len(entered) == 4, 5, "4 replica connections")
    counts = [names_on(port, "gpool-rep") for port in replicas]
    on_master = names_on(master, "gpool-rep")
    hold.set()
    gevent.joinall(greenlets)
    assert counts == [2, 2] and on_master == 0
    with pytest.raises(redis.exceptions.ReadOnlyError):
        pool.client().set("k", "v")
    assert names_on(master, "gpool-rep") == 0
    assert set(pool.sentinel_stats().replicas) == {("127.0.0.1", port) for port in replicas}


@pytest.mark.timeout(40)
def test_replica_killed_no_read_fails_with_retries_opted_in(cluster: SentinelCluster, closing: list[Any]) -> None:
    pool = SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, role="replica", max_connections=6,
                                         timeout=5, socket_timeout=1, retry=Retry(NoBackoff(), 2))
    closing.append(pool)
    client = pool.client()
    master = cluster.master_port()
    victim, survivor = [port for port in cluster.ports if port != master]
    reads = [0]
    failures: list[BaseException] = []
    stop = Event()

    def read() -> None:
        while not stop.is_set():
            try:
                client.get("k")
                reads[0] += 1
            except Exception as exc:
                failures.append(exc)
            gevent.sleep(0.001)

    greenlets = [gevent.spawn(read) for _ in range(10)]
    try:
        wait_until(lambda: reads[0] > 500, 10, "reads before the kill")
        cluster.server(victim).kill()
        before = reads[0]
        wait_until(lambda: reads[0] > before + 2000, 15, "reads after the kill")
        stop.set()
        gevent.joinall(greenlets, timeout=5)
        assert failures == [], [(repr(exc), repr(exc.__cause__ or exc.__context__)) for exc in failures]
        addresses = {slot.conn._gpool_address for slot in pool._live_slots()}
        assert ("127.0.0.1", victim) not in addresses and ("127.0.0.1", survivor) in addresses
    finally:
        stop.set()
        gevent.killall(greenlets)
        cluster.server(victim).start()
        cluster.wait_ready(20)


# -- sentinels down -------------------------------------------------------------------------------


@pytest.mark.timeout(40)
def test_one_sentinel_down_costs_no_error(cluster: SentinelCluster, closing: list[Any]) -> None:
    down = cluster.sentinels[0]
    down.kill()
    try:
        pool = SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, max_connections=3, timeout=5)
        closing.append(pool)
        r = pool.client()
        for i in range(30):
            assert r.set(f"one-down:{i}", i)
            pool.disconnect()  # the next command opens a new connection: a resolution each time
        assert pool.sentinel_stats().resolution_failures == 0
        assert pool.sentinel_stats().resolutions >= 30
    finally:
        down.start()
        cluster.wait_ready(20)


@pytest.mark.timeout(40)
def test_every_sentinel_frozen_or_dead_is_a_bounded_error(cluster: SentinelCluster, closing: list[Any]) -> None:
    dead = [("127.0.0.1", port) for port in (1, 2, 3)]  # nothing listens on these
    pool = SentinelRedisPool.for_service(dead, SERVICE, timeout=1.5)
    closing.append(pool)
    began = monotonic()
    with pytest.raises(RedisPoolExhaustedError) as info:
        pool.client().ping()
    assert monotonic() - began < 2.0
    assert isinstance(info.value, redis.ConnectionError)
    assert isinstance(info.value.__cause__, MasterNotFoundError)

    frozen = SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, timeout=2.0,
                                           sentinel_kwargs={"socket_timeout": 0.3})
    closing.append(frozen)
    for sentinel in cluster.sentinels:
        sentinel.pause()
    try:
        began = monotonic()
        with pytest.raises(RedisPoolExhaustedError) as info:
            frozen.client().ping()
        assert monotonic() - began < 2.6
        assert info.value.__cause__ is not None
    finally:
        for sentinel in cluster.sentinels:
            sentinel.resume()
    assert frozen.client().ping()


# -- kills and Timeouts at the new yield points ----------------------------------------------------


def _alive(name: str) -> list[Any]:
    return [g for g in gc.get_objects() if isinstance(g, gevent.Greenlet) and not g.dead and g.name == name]


@pytest.mark.timeout(30)
def test_kill_and_timeout_during_a_resolution(cluster: SentinelCluster, closing: list[Any]) -> None:
    pool = SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, timeout=5,
                                         sentinel_kwargs={"socket_timeout": 0.5})
    closing.append(pool)
    r = pool.client()
    for sentinel in cluster.sentinels:
        sentinel.pause()  # every resolution now lasts its whole bound
    try:
        victim = gevent.spawn(r.ping)
        wait_until(lambda: _alive("gpool-sentinel-resolve"), 2, "a resolution round")
        victim.kill(block=True, timeout=1)
        assert victim.dead and isinstance(victim.value, gevent.GreenletExit)
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
            r.ping()
    finally:
        for sentinel in cluster.sentinels:
            sentinel.resume()
    assert r.ping()
    assert pool.size == 1 and pool.stats().in_use == 0
    wait_until(lambda: not _alive("gpool-sentinel-query") and not _alive("gpool-sentinel-resolve"), 3,
               "the query greenlets to end")


@pytest.mark.timeout(30)
def test_killed_watcher_is_restarted_and_closing_stops_it(cluster: SentinelCluster) -> None:
    pool = SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, timeout=5)
    r = pool.client()
    assert r.ping()
    watcher = pool._watcher
    assert watcher is not None
    wait_until(lambda: watcher.subscribed == 3, 5, "3 subscriptions")
    watcher._greenlet.kill(gevent.Timeout())  # a Timeout escaping into the watcher
    assert not watcher.running and watcher.subscribed == 0
    pool.disconnect()
    assert r.ping()  # a new connection: the pool notices and restarts the watcher
    assert pool._watcher is watcher and watcher.running
    wait_until(lambda: watcher.subscribed == 3, 5, "3 subscriptions again")
    watcher._greenlet.kill()
    pool.disconnect()
    assert r.ping() and watcher.running
    pool.close()
    wait_until(lambda: not watcher.running and watcher.subscribed == 0, 3, "the watcher to stop at close()")


# -- fork and the hub -----------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_starts_its_own_watcher(cluster: SentinelCluster, closing: list[Any]) -> None:
    pool = SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, timeout=5)
    closing.append(pool)
    r = pool.client()
    assert r.ping()
    parent_watcher = pool._watcher
    assert parent_watcher is not None
    wait_until(lambda: parent_watcher.subscribed == 3, 5, "3 subscriptions")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            key = f"fork:{os.getpid()}"
            ok = r.set(key, "child") and r.get(key) == b"child"
            watcher = pool._watcher
            deadline = monotonic() + 5
            while watcher is not None and watcher.subscribed < 3 and monotonic() < deadline:
                gevent.sleep(0.01)
            code = 0 if ok and watcher is not parent_watcher and watcher is not None and watcher.subscribed == 3 \
                else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert r.ping() and pool._watcher is parent_watcher and parent_watcher.running
    assert parent_watcher.subscribed == 3


def test_watcher_does_not_keep_gevent_wait_alive(cluster: SentinelCluster) -> None:
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import sys, time, gevent\n"
        "from gpool.redis import SentinelRedisPool\n"
        "ports = [int(p) for p in sys.argv[1:]]\n"
        "pool = SentinelRedisPool.for_service([('127.0.0.1', p) for p in ports], 'mymaster')\n"
        "pool.client().ping()\n"
        "t = time.monotonic()\n"
        "while pool.sentinel_stats().sentinels_subscribed < 3 and time.monotonic() - t < 5: gevent.sleep(0.01)\n"
        "assert pool._watcher.running and pool.sentinel_stats().sentinels_subscribed == 3\n"
        "t = time.monotonic(); gevent.wait(); print(round(time.monotonic() - t, 1))\n"
    )
    ports = [str(port) for _, port in cluster.sentinel_addresses]
    out = subprocess.run([sys.executable, "-c", code, *ports], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 3

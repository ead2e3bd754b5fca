"""MySQLPool with a host list against real processes: a MariaDB primary with a GTID replica, and a
single-node Galera.

What is proven here: ``target`` puts every connection on a server in that role whatever the list
order (``@@server_id``); a demoted primary's warm connection fails the next write with 1290, which is
not re-run, and the pool lands on the new primary; a SIGSTOPped host costs about
``host_connect_timeout`` once, then nothing; a closed port costs a few connects per
``host_down_for``, not one per acquisition; ``prefer-replica`` falls back to the primary and comes
back; an old primary that resumes writable is split brain: refused, one ERROR; a desynced or
non-primary Galera node is refused. The failover times are printed (``pytest -s``) and bounded.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import math  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from time import monotonic  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import pymysql  # noqa: E402
import pytest  # noqa: E402

from gpool import PoolExhaustedError  # noqa: E402
from gpool.mysql import MySQLPool, NoHostAvailableError  # noqa: E402
from gpool.testing import GaleraNode, MariaDBReplicaSet, find_free_port, find_galera_provider, find_mariadbd  # noqa: E402
from gpool.testing.replication import run_sql  # noqa: E402
from tests.support import wait_until  # noqa: E402

PRIMARY_ID, REPLICA_ID = 1, 2  # server_id of servers[0] and servers[1]


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _replica_set() -> Iterator[MariaDBReplicaSet]:
    if find_mariadbd() is None:
        pytest.fail("mariadbd is not installed: run `make test`", pytrace=False)
    cluster = MariaDBReplicaSet(replicas=1)
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


@pytest.fixture
def cluster(_replica_set: MariaDBReplicaSet) -> Iterator[MariaDBReplicaSet]:
    """servers[0] the primary, servers[1] its replica, both running, at the start of each test."""
    _replica_set.reset()
    try:
        yield _replica_set
    finally:
        for server in _replica_set.servers:
            _replica_set.thaw(server)


def make_pool(closing: list[MySQLPool], cluster: Any, hosts: list[str], **kwargs: Any) -> MySQLPool:
    options: dict[str, Any] = dict(cluster.app_kwargs(), autocommit=True, timeout=10.0, connect_timeout=2)
    options.update(kwargs)
    pool = MySQLPool(hosts=hosts, **options)
    closing.append(pool)
    return pool


def server_id(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT @@server_id")
        return int(cur.fetchone()[0])


def hold(pool: MySQLPool, n: int) -> list[int]:
    """Acquire ``n`` connections at once (so ``n`` exist), return their server ids, release them."""
    conns = [pool.acquire() for _ in range(n)]
    try:
        return [server_id(c) for c in conns]
    finally:
        for conn in conns:
            pool.release(conn)


def fresh_server_id(pool: MySQLPool) -> int:
    """The server of a connection opened for this call (dropped after)."""
    conn = pool.acquire()
    try:
        return server_id(conn)
    finally:
        pool.drop(conn)


def host_stat(pool: MySQLPool, address: str) -> Any:
    stats = pool.host_stats()
    assert stats is not None
    return next(h for h in stats.hosts if h.address == address)


def count_rows(server: Any, table: str) -> int:
    return int(run_sql(server, f"SELECT COUNT(*) FROM test.{table}")[0][0])


# -- routing by role ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_primary_target_puts_every_connection_on_the_primary_listed_second(
        cluster: MariaDBReplicaSet, closing: list[MySQLPool]) -> None:
    replica, primary = cluster.hosts[1], cluster.hosts[0]
    pool = make_pool(closing, cluster, [replica, primary], target="primary")
    assert hold(pool, 5) == [PRIMARY_ID] * 5
    assert [fresh_server_id(pool) for _ in range(8)] == [PRIMARY_ID] * 8  # 5 pooled, then 3 new ones
    stats = pool.host_stats()
    assert stats is not None and stats.primary == primary
    # sticky: the replica was tried once, for the first connection only
    assert host_stat(pool, replica).role_mismatches == 1
    assert host_stat(pool, primary).connects == 8


@pytest.mark.timeout(30)
def test_replica_target_puts_every_connection_on_the_replica(
        cluster: MariaDBReplicaSet, closing: list[MySQLPool]) -> None:
    pool = make_pool(closing, cluster, cluster.hosts, target="replica", host_order="sequential")
    assert hold(pool, 5) == [REPLICA_ID] * 5
    assert [fresh_server_id(pool) for _ in range(5)] == [REPLICA_ID] * 5
    assert host_stat(pool, cluster.hosts[0]).role_mismatches == 1  # then known as the primary: tried last


# -- failover -----------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_demoted_primary_fails_the_next_write_once_then_pool_moves_to_new_primary(
        cluster: MariaDBReplicaSet, closing: list[MySQLPool]) -> None:
    old, new = cluster.servers
    run_sql(old, "DROP TABLE IF EXISTS test.demote", "CREATE TABLE test.demote (id INT PRIMARY KEY)",
            "INSERT INTO test.demote VALUES (1)")
    cluster.wait_replicated()
    # check_interval=None: warm connections are handed out without a probe, as between two checks
    pool = make_pool(closing, cluster, cluster.hosts, target="primary", check_interval=None, timeout=5.0)
    assert hold(pool, 3) == [PRIMARY_ID] * 3
    cluster.fence(old)
    cluster.promote(new)
    begun = monotonic()
    with pytest.raises(pymysql.err.MySQLError) as info:
        pool.execute("INSERT INTO test.demote VALUES (2)")
    assert info.value.args[0] == 1290
    failed = monotonic() - begun
    assert count_rows(old, "demote") == 1 and count_rows(new, "demote") == 1  # not applied, not re-run
    begun = monotonic()
    # the other two warm connections to the old primary are never handed out: no second 1290
    assert pool.execute("INSERT INTO test.demote VALUES (3)") == 1
    took = monotonic() - begun
    print(f"\ndemotion: the 1290 in {failed * 1000:.1f} ms, then a write on the new primary in {took * 1000:.1f} ms")
    assert took < 5.0
    assert [r[0] for r in run_sql(new, "SELECT id FROM test.demote ORDER BY id")] == [1, 3]
    assert hold(pool, 3) == [REPLICA_ID] * 3
    stats = pool.host_stats()
    assert stats is not None and stats.primary == cluster.hosts[1]
    assert host_stat(pool, cluster.hosts[0]).role_errors == 1


@pytest.mark.timeout(30)
def test_stopped_first_host_costs_about_host_connect_timeout_once(
        cluster: MariaDBReplicaSet, closing: list[MySQLPool]) -> None:
    frozen = cluster.servers[0]
    cold = make_pool(closing, cluster, cluster.hosts, host_connect_timeout=0.5, host_down_for=30.0)
    warm = make_pool(closing, cluster, cluster.hosts, host_connect_timeout=0.5, host_down_for=30.0,
                     check_interval=0)
    assert hold(warm, 3) == [PRIMARY_ID] * 3
    cluster.freeze(frozen)
    try:
        for name, pool in (("cold", cold), ("warm", warm)):
            begun = monotonic()
            first = pool.acquire(timeout=5.0)
            took = monotonic() - begun
            try:
                assert server_id(first) == REPLICA_ID
            finally:
                pool.release(first)
            print(f"\nSIGSTOPped first host, {name} pool: first connection on the other host in {took * 1000:.0f} ms")
            assert 0.45 < took < 1.5
            begun = monotonic()
            # the frozen host is denied: new connections do not wait for it
            assert [fresh_server_id(pool) for _ in range(5)] == [REPLICA_ID] * 5
            assert monotonic() - begun < 0.4
        assert host_stat(warm, cluster.hosts[0]).denials == 1
    finally:
        cluster.thaw(frozen)


@pytest.mark.timeout(30)
def test_closed_port_costs_a_few_connects_per_host_down_for(
        cluster: MariaDBReplicaSet, closing: list[MySQLPool]) -> None:
    closed = f"127.0.0.1:{find_free_port()}"
    pool = make_pool(closing, cluster, [closed, cluster.hosts[0]], host_down_for=0.3)
    acquisitions = 0
    begun = monotonic()
    while monotonic() - begun < 1.0:
        assert fresh_server_id(pool) == PRIMARY_ID
        acquisitions += 1
    stat = host_stat(pool, closed)
    assert acquisitions > 20
    # one attempt per deny period (1.0 / 0.3, rounded up), the first one included
    assert 2 <= stat.attempts <= math.ceil(1.0 / 0.3) + 1
    assert stat.failures == stat.attempts == stat.denials


@pytest.mark.timeout(40)
def test_prefer_replica_falls_back_to_the_primary_and_returns(
        cluster: MariaDBReplicaSet, closing: list[MySQLPool]) -> None:
    replica = cluster.servers[1]
    pool = make_pool(closing, cluster, cluster.hosts, target="prefer-replica", host_down_for=0.5)
    assert hold(pool, 2) == [REPLICA_ID] * 2
    replica.stop()
    assert hold(pool, 2) == [PRIMARY_ID] * 2  # the replica's pooled connections were closed by its shutdown
    replica.start()
    begun = monotonic()
    wait_until(lambda: fresh_server_id(pool) == REPLICA_ID, timeout=5.0, what="a connection on the replica again")
    print(f"\nprefer-replica: back on the replica {(monotonic() - begun) * 1000:.0f} ms after it started")
    # the fallback connections on the primary live host_down_for, then replicas are tried again
    wait_until(lambda: hold(pool, 2) == [REPLICA_ID] * 2, timeout=3.0, what="pooled connections on the replica")


@pytest.mark.timeout(40)
def test_old_primary_resuming_writable_is_split_brain_refused_with_one_error(
        cluster: MariaDBReplicaSet, closing: list[MySQLPool], caplog: pytest.LogCaptureFixture) -> None:
    old, new = cluster.servers
    pool = make_pool(closing, cluster, cluster.hosts, target="primary", host_down_for=0.3,
                     host_connect_timeout=0.5, check_interval=0)
    assert hold(pool, 2) == [PRIMARY_ID] * 2
    caplog.set_level(logging.WARNING, logger="gpool.mysql")
    cluster.freeze(old)
    try:
        cluster.promote(new, repoint=False)
        begun = monotonic()
        assert hold(pool, 2) == [REPLICA_ID] * 2
        print(f"\nSIGSTOPped primary, replica promoted: connections on the new primary in "
              f"{(monotonic() - begun) * 1000:.0f} ms")
    finally:
        cluster.thaw(old)
    assert run_sql(old, "SELECT @@global.read_only")[0][0] == 0  # nothing fenced it
    begun = monotonic()
    ids = []
    while monotonic() - begun < 1.2:  # several deny periods: the old primary is probed again each time
        ids.append(fresh_server_id(pool))
        gevent.sleep(0.02)
    assert set(ids) == {REPLICA_ID}
    stats = pool.host_stats()
    assert stats is not None and stats.primary == cluster.hosts[1]
    assert stats.split_brains >= 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "split brain" in errors[0].getMessage() and cluster.hosts[0] in errors[0].getMessage()


# -- Galera ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def galera() -> Iterator[GaleraNode]:
    if find_galera_provider() is None:
        pytest.skip("libgalera_smm.so not found: install the Debian package galera-4 for the Galera test")
    node = GaleraNode()
    try:
        yield node.start()
    finally:
        node.cleanup()


@pytest.mark.timeout(40)
def test_galera_desynced_or_non_primary_node_is_refused(galera: GaleraNode, closing: list[MySQLPool]) -> None:
    pool = make_pool(closing, galera, galera.hosts, target="primary", check_interval=0, host_down_for=0.2,
                     timeout=1.0)
    idle = hold(pool, 1)
    assert idle == [1]
    galera.desync()
    assert galera.status()["wsrep_local_state_comment"] == "Donor/Desynced"
    with pytest.raises(PoolExhaustedError) as info:
        pool.acquire()  # the idle connection fails its probe, a new one is refused
    assert isinstance(info.value.__cause__, NoHostAvailableError)
    assert "unavailable" in str(info.value.__cause__)
    assert host_stat(pool, galera.hosts[0]).role_mismatches >= 2
    galera.restore()
    assert hold(pool, 1) == [1]
    run_sql(galera.server, "CREATE TABLE IF NOT EXISTS test.g (id INT PRIMARY KEY)")
    unchecked = make_pool(closing, galera, galera.hosts, target="primary", check_interval=None, timeout=1.0)
    assert hold(unchecked, 1) == [1]
    galera.make_non_primary()
    try:
        assert galera.status()["wsrep_ready"] == "OFF"
        with pytest.raises(PoolExhaustedError) as info:
            pool.acquire()
        assert isinstance(info.value.__cause__, NoHostAvailableError)
        with pytest.raises(pymysql.err.MySQLError) as query_info:
            unchecked.query("SELECT * FROM test.g")  # a warm connection: 1047, dropped, host suspect
        assert query_info.value.args[0] == 1047
        assert host_stat(unchecked, galera.hosts[0]).role_errors == 1
        assert unchecked.size == 0
    finally:
        galera.restore()

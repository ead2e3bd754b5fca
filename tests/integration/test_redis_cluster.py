"""redis-py's own cluster client with RedisPool as its node pool, against a private 3-master cluster.

READONLY sent by the cluster's redis_connect_func is handshake (replica-read connections are reused),
and the cluster pipeline's batch (send_packed_command looked up before pack_commands) is counted.
"""

from gevent import monkey

monkey.patch_all()

import shutil  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
import redis  # noqa: E402
from redis.cluster import LoadBalancingStrategy  # noqa: E402

from gpool.redis import RedisPool  # noqa: E402
from gpool.testing import find_redis_server  # noqa: E402
from gpool.testing.cluster import RedisCluster  # noqa: E402

pytestmark = pytest.mark.timeout(40)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    if find_redis_server() is None or shutil.which("redis-cli") is None:
        pytest.fail("redis-server and redis-cli are needed: run `make test` (installs the OS packages)")
    with RedisCluster() as started:
        yield started


def totals(client: redis.RedisCluster) -> tuple[int, int]:
    stats = [node.redis_connection.connection_pool.stats() for node in client.get_nodes()]
    return sum(s.created for s in stats), sum(s.closed for s in stats)


def test_replica_reads_reuse_connections(cluster: RedisCluster) -> None:
    client = redis.RedisCluster(url=cluster.url, connection_pool_class=RedisPool,
                                load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN)
    try:
        for i in range(101):
            client.set(f"cl:{i}", i)
            assert client.get(f"cl:{i}") == str(i).encode()
        created, closed = totals(client)
        assert created <= len(cluster.nodes) and closed == 0
    finally:
        client.close()


def test_pipelines_drop_no_connection(cluster: RedisCluster) -> None:
    client = redis.RedisCluster(url=cluster.url, connection_pool_class=RedisPool)
    try:
        for i in range(50):
            pipe = client.pipeline()
            pipe.set(f"pl:{i}", i)
            pipe.incr(f"pl:{i}")
            assert pipe.execute() == [True, i + 1]
        created, closed = totals(client)
        assert created <= len(cluster.nodes) and closed == 0
    finally:
        client.close()

"""A failover soak for SentinelRedisPool (``make soak``): repeated SENTINEL FAILOVERs through every
sentinel in turn while greenlets write; after each, nothing acknowledged 0.5 s after the switch is lost.

Runs only when ``GPOOL_SOAK_SECONDS`` is set (each round takes ~12 s: Sentinel demotes the old master
~10 s after the switch).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import uuid  # noqa: E402
from time import monotonic  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from gpool.redis import SentinelRedisPool  # noqa: E402
from gpool.testing import SentinelCluster  # noqa: E402
from tests.integration.test_sentinel import SERVICE, SwitchClock, Writers  # noqa: E402
from tests.support import wait_until  # noqa: E402

pytestmark = pytest.mark.skipif("GPOOL_SOAK_SECONDS" not in os.environ, reason="set GPOOL_SOAK_SECONDS (make soak)")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_soak_repeated_failovers_lose_nothing_after_the_switch(fresh_sentinel_cluster: SentinelCluster,
                                                               closing: list[Any]) -> None:
    cluster = fresh_sentinel_cluster
    seconds = float(os.environ.get("GPOOL_SOAK_SECONDS", "60"))
    pool = SentinelRedisPool.for_service(cluster.sentinel_addresses, SERVICE, max_connections=10, timeout=10,
                                         socket_timeout=2)
    closing.append(pool)
    end = monotonic() + seconds
    rounds = 0
    while monotonic() < end:
        clock = SwitchClock(cluster)
        writers = Writers(pool.client(), f"soak:{uuid.uuid4().hex[:8]}").start(10)
        try:
            old = cluster.master_port()
            wait_until(lambda w=writers: len(w.acked) > 200, 10, "writes")
            cluster.failover(rounds % len(cluster.sentinels))
            switched = clock.wait(20)
            new = cluster.wait_for_new_master(old, 20)
            cluster.wait_role(old, "slave", 30)
        finally:
            writers.finish()
            clock.close()
        assert writers.missing_on(new, switched + 0.5) == 0
        rounds += 1
        cluster.wait_ready(30)
    assert pool.sentinel_stats().master_switches == rounds


"""The frozen snapshot returned by :meth:`gpool.Pool.stats`, and the small histogram behind it."""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left
from typing import Any, Optional

__all__ = ["BUCKETS", "CLOSE_REASONS", "PoolStats"]

#: Upper bounds (seconds) of the fixed histogram buckets for wait and usage times; the last is +inf.
#: Prometheus-style, so the exporter can publish them as they are.
BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf,
)  # fmt: skip

#: Why the pool closed (or forgot) a connection; each has a ``closed_<reason>`` field in PoolStats.
CLOSE_REASONS: tuple[str, ...] = (
    "broken",  # the block raised an error the connection calls fatal, or reset()/a hook failed
    "expired_lifetime",  # past max_lifetime, or is_expired() said so
    "expired_idle",  # idle longer than idle_timeout
    "max_usage",  # checked out max_usage times
    "check_failed",  # is_connected() said no (or raised) before a checkout
    "interrupted",  # a gevent.Timeout, kill or KeyboardInterrupt hit while it was in use or being checked
    "dropped",  # pool.drop()
    "reclaimed",  # its holder greenlet died without releasing it (reclaim_dead_holders)
    "pool_closed",  # pool.close()
)


class Histogram:
    """Counts per fixed bucket plus total and max: O(log buckets) to record, no allocation."""

    __slots__ = ("counts", "max", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def percentile(self, q: float, zeros: int = 0) -> float:
        """The bucket bound below which ``q`` of the samples fall (capped at the max seen).

        ``zeros`` counts extra samples of 0 s that were not recorded (acquisitions that never waited).
        """
        n = sum(self.counts) + zeros
        if n == 0:
            return 0.0
        rank = q * n
        if rank <= zeros:
            return 0.0
        seen = zeros
        for bound, count in zip(BUCKETS, self.counts):
            seen += count
            if seen >= rank:
                return min(bound, self.max)
        return self.max  # pragma: no cover - the last bucket is +inf


@dataclasses.dataclass(frozen=True)
class PoolStats:
    """A consistent snapshot of one pool, taken without yielding.

    Gauges describe the pool now; counters count since the pool was created (or since the last
    ``stats(reset=True)``). Times are in seconds.
    """

    name: str
    #: idle + in use + being created
    size: int
    idle: int
    in_use: int
    #: connects under way (slots reserved for them)
    connecting: int
    waiting: int
    max_connections: int
    #: connections opened successfully
    created: int
    #: connections closed by the pool, for any reason (the ``closed_*`` fields add up to this)
    closed: int
    acquired: int
    released: int
    #: connections discarded by :meth:`Pool.drop` or by a poisoned ``with pool.connection()`` block
    dropped: int
    #: connections closed because they expired (idle, lifetime, is_expired()) or reached max_usage
    reaped: int
    #: acquisitions that ended with :class:`PoolExhaustedError`
    timeouts: int
    #: failed connect attempts (each retry counts)
    connect_errors: int
    #: checkouts whose health check failed
    check_failures: int
    #: acquisitions that had to queue
    waits: int
    #: time spent queued, summed over all acquisitions
    wait_time_total: float
    wait_time_max: float
    #: acquisition wait percentiles over all acquisitions (those that did not queue count as 0)
    wait_time_p50: float
    wait_time_p99: float
    #: how long connections were held (checkout to release); zeros when ``timing_stats`` is off
    usage_count: int
    usage_time_total: float
    usage_time_max: float
    usage_time_p50: float
    usage_time_p99: float
    #: connections held longer than ``leak_timeout`` (each counted once)
    leaks: int
    closed_broken: int
    closed_expired_lifetime: int
    closed_expired_idle: int
    closed_max_usage: int
    closed_check_failed: int
    closed_interrupted: int
    closed_dropped: int
    closed_reclaimed: int
    closed_pool_closed: int
    #: running averages behind the choice to wait for a return rather than connect (see the README's
    #: "Wait or connect?"); None until measured. Hold times are sampled while no connection is idle.
    connect_time_avg: Optional[float]
    hold_time_avg: Optional[float]
    #: per-bucket counts (bounds in :data:`BUCKETS`) of queued waits, for exporters; the
    #: ``acquired - waits`` acquisitions that never queued are not in it
    wait_buckets: tuple[int, ...] = ()
    usage_buckets: tuple[int, ...] = ()
    #: holder greenlets that died without releasing their connection (each reported once, at WARNING)
    dead_holders: int = 0

    @classmethod
    def of(cls, pool: Any) -> PoolStats:
        """The snapshot of a :class:`gpool.Pool` now (never yields)."""
        closes = pool._closes
        waited, used = pool._wait_hist, pool._use_hist
        zeros = max(pool._acquired + pool._timeouts - pool._waits, 0)  # acquisitions that never queued
        return cls(
            name=pool.name, size=pool.size, idle=len(pool._idle), in_use=len(pool._in_use),
            connecting=pool._pending, waiting=len(pool._waiters), max_connections=pool.max_connections,
            created=pool._created, closed=sum(closes.values()), acquired=pool._acquired, released=pool._released,
            dropped=closes["dropped"] + closes["broken"] + closes["interrupted"] + closes["reclaimed"],
            reaped=closes["expired_lifetime"] + closes["expired_idle"] + closes["max_usage"],
            timeouts=pool._timeouts, connect_errors=pool._connect_errors, check_failures=closes["check_failed"],
            waits=pool._waits, wait_time_total=waited.total, wait_time_max=waited.max,
            wait_time_p50=waited.percentile(0.5, zeros), wait_time_p99=waited.percentile(0.99, zeros),
            usage_count=sum(used.counts), usage_time_total=used.total, usage_time_max=used.max,
            usage_time_p50=used.percentile(0.5), usage_time_p99=used.percentile(0.99), leaks=pool._leaks,
            connect_time_avg=None if pool._connect_avg == math.inf else pool._connect_avg,
            hold_time_avg=None if pool._hold_avg == math.inf else pool._hold_avg,
            wait_buckets=tuple(waited.counts), usage_buckets=tuple(used.counts), dead_holders=pool._dead_holders,
            **{f"closed_{reason}": count for reason, count in closes.items()},
        )

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a plain dict (for JSON, logs, metrics)."""
        return dataclasses.asdict(self)

"""Prometheus metrics for gpool pools (``pip install gpool[prometheus]``).

::

    from gpool.prometheus import PoolCollector
    collector = PoolCollector.register(pool_a, pool_b)   # on prometheus_client's default REGISTRY
    collector.add(pool_c)

Every scrape takes one :meth:`~gpool.Pool.stats` snapshot per pool (no yield, no I/O). Pools are held
weakly: a pool that is garbage collected disappears from the metrics.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from .stats import BUCKETS, CLOSE_REASONS

__all__ = ["PoolCollector"]


class PoolCollector(Collector):
    """A custom collector exposing each pool's gauges, counters and acquire-wait histogram.

    Metrics (label ``pool`` is the pool's name): ``gpool_connections{state="idle|in_use|connecting"}``,
    ``gpool_max_connections``, ``gpool_waiting``, ``gpool_acquire_wait_seconds`` (histogram over every
    acquisition; those that never queued count in the lowest bucket), ``gpool_acquisitions_total``,
    ``gpool_connections_created_total``, ``gpool_connections_closed_total{reason}``,
    ``gpool_acquire_timeouts_total``, ``gpool_connect_errors_total``, ``gpool_leaks_total``,
    ``gpool_average_seconds{of="connect|hold"}`` (once measured).
    """

    def __init__(self, pools: Iterable[Any] = ()) -> None:
        self._pools: weakref.WeakSet[Any] = weakref.WeakSet()
        for pool in pools:
            self.add(pool)

    @classmethod
    def register(cls, *pools: Any, registry: Optional[CollectorRegistry] = None) -> PoolCollector:
        """Create a collector for ``pools`` and register it (default: the global REGISTRY)."""
        collector = cls(pools)
        (REGISTRY if registry is None else registry).register(collector)
        return collector

    def add(self, pool: Any) -> None:
        """Export one more pool (anything with ``stats()``: a core Pool or an adapter)."""
        if not callable(getattr(pool, "stats", None)):
            raise TypeError(f"pool must have a stats() method, got {type(pool).__name__}")
        self._pools.add(pool)

    def remove(self, pool: Any) -> None:
        """Stop exporting ``pool``."""
        self._pools.discard(pool)

    def describe(self) -> list[Any]:
        return []  # metrics are produced at scrape time only

    def collect(self) -> Iterator[Any]:
        connections = GaugeMetricFamily("gpool_connections", "Connections by state", labels=["pool", "state"])
        maximum = GaugeMetricFamily("gpool_max_connections", "The pool's cap", labels=["pool"])
        waiting = GaugeMetricFamily("gpool_waiting", "Greenlets waiting for a connection", labels=["pool"])
        wait = HistogramMetricFamily("gpool_acquire_wait_seconds", "Time acquisitions spent queued",
                                     labels=["pool"])
        acquired = CounterMetricFamily("gpool_acquisitions", "Connections handed out", labels=["pool"])
        created = CounterMetricFamily("gpool_connections_created", "Connections opened", labels=["pool"])
        closed = CounterMetricFamily("gpool_connections_closed", "Connections closed, by reason",
                                     labels=["pool", "reason"])
        timeouts = CounterMetricFamily("gpool_acquire_timeouts", "Acquisitions that ended in PoolExhaustedError",
                                       labels=["pool"])
        errors = CounterMetricFamily("gpool_connect_errors", "Failed connect attempts", labels=["pool"])
        leaks = CounterMetricFamily("gpool_leaks", "Connections held past leak_timeout", labels=["pool"])
        averages = GaugeMetricFamily("gpool_average_seconds", "Running averages of connect and hold times",
                                     labels=["pool", "of"])
        for pool in list(self._pools):
            s = pool.stats()
            name = s.name
            for state, value in (("idle", s.idle), ("in_use", s.in_use), ("connecting", s.connecting)):
                connections.add_metric([name, state], value)
            maximum.add_metric([name], s.max_connections)
            waiting.add_metric([name], s.waiting)
            never_queued = max(s.acquired + s.timeouts - s.waits, 0)
            cumulative, buckets = never_queued, []
            for bound, count in zip(BUCKETS, s.wait_buckets):
                cumulative += count
                buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
            wait.add_metric([name], buckets, s.wait_time_total)
            acquired.add_metric([name], s.acquired)
            created.add_metric([name], s.created)
            for reason in CLOSE_REASONS:
                closed.add_metric([name, reason], getattr(s, f"closed_{reason}"))
            timeouts.add_metric([name], s.timeouts)
            errors.add_metric([name], s.connect_errors)
            leaks.add_metric([name], s.leaks)
            for of, value in (("connect", s.connect_time_avg), ("hold", s.hold_time_avg)):
                if value is not None:
                    averages.add_metric([name, of], value)
        yield from (connections, maximum, waiting, wait, acquired, created, closed, timeouts, errors, leaks,
                    averages)

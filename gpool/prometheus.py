"""Prometheus metrics for gpool pools (``pip install gpool[prometheus]``).

::

    from gpool.prometheus import PoolCollector
    collector = PoolCollector.register(pool_a, pool_b)   # on prometheus_client's default REGISTRY
    collector.add(pool_c)

Every scrape takes one :meth:`~gpool.Pool.stats` snapshot per pool (no yield, no I/O). Pools are held
weakly: a pool that is garbage collected disappears from the metrics. Each pool name is exported once
(a second copy of a series makes the exposition invalid): :meth:`PoolCollector.add` refuses a pool it
already exports or a second open pool of the same name, and a registry refuses a second PoolCollector.
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

_POOL = ("pool",)

#: key in collect() -> (family class, metric name, help, labels)
_FAMILIES: dict[str, tuple[Any, str, str, tuple[str, ...]]] = {
    "connections": (GaugeMetricFamily, "gpool_connections", "Connections by state", ("pool", "state")),
    "maximum": (GaugeMetricFamily, "gpool_max_connections", "The pool's cap", _POOL),
    "waiting": (GaugeMetricFamily, "gpool_waiting", "Greenlets waiting for a connection", _POOL),
    "wait": (HistogramMetricFamily, "gpool_acquire_wait_seconds", "Time acquisitions spent queued", _POOL),
    "acquired": (CounterMetricFamily, "gpool_acquisitions", "Connections handed out", _POOL),
    "created": (CounterMetricFamily, "gpool_connections_created", "Connections opened", _POOL),
    "closed": (CounterMetricFamily, "gpool_connections_closed", "Connections closed, by reason", ("pool", "reason")),
    "timeouts": (CounterMetricFamily, "gpool_acquire_timeouts", "Acquisitions that ended in PoolExhaustedError",
                 _POOL),
    "errors": (CounterMetricFamily, "gpool_connect_errors", "Failed connect attempts", _POOL),
    "leaks": (CounterMetricFamily, "gpool_leaks", "Connections held past leak_timeout", _POOL),
    "dead_holders": (CounterMetricFamily, "gpool_dead_holders",
                     "Holder greenlets that died without releasing their connection", _POOL),
    "averages": (GaugeMetricFamily, "gpool_average_seconds", "Running averages of connect and hold times",
                 ("pool", "of")),
}


class PoolCollector(Collector):
    """A custom collector exposing each pool's gauges, counters and acquire-wait histogram.

    Metrics (label ``pool`` is the pool's name): ``gpool_connections{state="idle|in_use|connecting"}``,
    ``gpool_max_connections``, ``gpool_waiting``, ``gpool_acquire_wait_seconds`` (histogram over every
    acquisition; those that never queued count in the lowest bucket), ``gpool_acquisitions_total``,
    ``gpool_connections_created_total``, ``gpool_connections_closed_total{reason}``,
    ``gpool_acquire_timeouts_total``, ``gpool_connect_errors_total``, ``gpool_leaks_total``,
    ``gpool_dead_holders_total``, ``gpool_average_seconds{of="connect|hold"}`` (once measured).
    """

    def __init__(self, pools: Iterable[Any] = ()) -> None:
        self._pools: weakref.WeakSet[Any] = weakref.WeakSet()
        for pool in pools:
            self.add(pool)

    @classmethod
    def register(cls, *pools: Any, registry: Optional[CollectorRegistry] = None) -> PoolCollector:
        """Create a collector for ``pools`` and register it (default: the global REGISTRY).

        Raises ``ValueError`` when ``registry`` already has a PoolCollector (its metric names are
        taken): add the pools to that one with :meth:`add`.
        """
        collector = cls(pools)
        target = REGISTRY if registry is None else registry
        try:
            target.register(collector)
        except ValueError as exc:
            raise ValueError("this registry already has a gpool PoolCollector: add the pools to it with "
                             f"collector.add(pool) (pools: {', '.join(repr(n) for n in collector._names())})"
                             ) from exc
        return collector

    def add(self, pool: Any) -> None:
        """Export one more pool (anything with ``stats()``: a core Pool or an adapter).

        Raises ``ValueError`` if this collector already exports ``pool``, or another open pool with
        the same name (their series would collide and make the exposition invalid). A closed pool of
        that name is replaced.
        """
        if not callable(getattr(pool, "stats", None)):
            raise TypeError(f"pool must have a stats() method, got {type(pool).__name__}")
        name = pool.stats().name
        if pool in self._pools:
            raise ValueError(f"pool {name!r} is already exported by this collector")
        for other in list(self._pools):
            if other.stats().name == name:
                if not getattr(other, "closed", False):
                    raise ValueError(f"another pool named {name!r} is already exported by this collector: "
                                     "give each pool its own name (name=...)")
                self._pools.discard(other)
        self._pools.add(pool)

    def remove(self, pool: Any) -> None:
        """Stop exporting ``pool``."""
        self._pools.discard(pool)

    def _names(self) -> list[str]:
        return sorted(pool.stats().name for pool in list(self._pools))

    @staticmethod
    def _families() -> dict[str, Any]:
        return {key: kind(name, doc, labels=list(labels)) for key, (kind, name, doc, labels) in _FAMILIES.items()}

    def describe(self) -> list[Any]:
        """The metric families without samples, so a registry refuses a second PoolCollector."""
        return list(self._families().values())

    def collect(self) -> Iterator[Any]:
        f = self._families()
        # Open pools first: should a closed pool share a name with an open one, the open one is exported.
        pools = sorted(self._pools, key=lambda pool: bool(getattr(pool, "closed", False)))
        exported: set[str] = set()
        for pool in pools:
            s = pool.stats()
            name = s.name
            if name in exported:
                continue  # a duplicate series would make the whole exposition invalid
            exported.add(name)
            for state, value in (("idle", s.idle), ("in_use", s.in_use), ("connecting", s.connecting)):
                f["connections"].add_metric([name, state], value)
            f["maximum"].add_metric([name], s.max_connections)
            f["waiting"].add_metric([name], s.waiting)
            never_queued = max(s.acquired + s.timeouts - s.waits, 0)
            cumulative, buckets = never_queued, []
            for bound, count in zip(BUCKETS, s.wait_buckets):
                cumulative += count
                buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
            f["wait"].add_metric([name], buckets, s.wait_time_total)
            f["acquired"].add_metric([name], s.acquired)
            f["created"].add_metric([name], s.created)
            for reason in CLOSE_REASONS:
                f["closed"].add_metric([name, reason], getattr(s, f"closed_{reason}"))
            f["timeouts"].add_metric([name], s.timeouts)
            f["errors"].add_metric([name], s.connect_errors)
            f["leaks"].add_metric([name], s.leaks)
            f["dead_holders"].add_metric([name], s.dead_holders)
            for of, value in (("connect", s.connect_time_avg), ("hold", s.hold_time_avg)):
                if value is not None:
                    f["averages"].add_metric([name, of], value)
        yield from f.values()

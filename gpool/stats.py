"""The frozen snapshot returned by :meth:`gpool.Pool.stats`, and the small histogram behind it."""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left, bisect_right
from itertools import accumulate
from math import frexp
from typing import Any, Generic, Optional, TypeVar

__all__ = ["BUCKETS", "CLOSE_REASONS", "FOLD_AT", "PERCENTILE_ERROR", "Histogram", "PoolStats"]

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


# The fine, log-linear layout behind the percentiles: each power of two from 2**_EMIN s (60 ns) to
# 2**_EMAX s (9 h) is split into _SUB equal sub-buckets, so a sub-bucket is at most 1/_SUB of the
# values in it wide, and its midpoint is within 1/(2*_SUB) = 1.6 % of any of them. Slot 0 holds values
# below 2**_EMIN (reported as 0); values from 2**_EMAX up share the last slot (reported as the max seen).
_SUB = 32
_EMIN, _EMAX = -24, 15
_LOWEST = 2.0**_EMIN
_FINE_SLOTS = (_EMAX - _EMIN) * _SUB + 1
_FINE_TOP = _FINE_SLOTS - 1
# frexp(v) = (m, e) with 0.5 <= m < 1: slot = e * _SUB + int(m * 2 * _SUB) + _FINE_OFFSET, which is 1 at v = 2**_EMIN.
_FINE_OFFSET = 1 - (_EMIN + 2) * _SUB
#: Relative error bound of :meth:`Histogram.percentile` for values between 60 ns and 9 h.
PERCENTILE_ERROR = 1 / (2 * _SUB)


def _fine_lower(slot: int) -> float:
    """The lower bound (seconds) of fine slot ``slot`` >= 1."""
    octave, sub = divmod(slot - 1, _SUB)
    base = _LOWEST * 2.0**octave
    return base + base * sub / _SUB


# BUCKETS index of the lowest value of each fine slot (slot 0: every value below 60 ns is in bucket 0).
_SLOT_BUCKET = [0] + [bisect_left(BUCKETS, _fine_lower(slot)) for slot in range(1, _FINE_SLOTS)]
# The lowest value of each fine slot, for the bulk count of Histogram.fold().
_FINE_LOWER = [0.0] + [_fine_lower(slot) for slot in range(1, _FINE_SLOTS)]

#: How many samples :attr:`Histogram.pending` may hold before the pool folds them in (memory bound).
FOLD_AT = 1024


def _slot(seconds: float) -> int:
    """The fine slot of ``seconds`` (>= 0)."""
    if seconds < _LOWEST:
        return 0
    m, e = frexp(seconds)
    slot = e * _SUB + int(m * (2 * _SUB)) + _FINE_OFFSET
    return slot if slot < _FINE_TOP else _FINE_TOP


V = TypeVar("V")


class _Folded(Generic[V]):
    """A :class:`Histogram` figure, read (or set) once the samples still pending are counted."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, histogram: Optional[Histogram], owner: Optional[type] = None) -> V:
        if histogram is None:
            return self  # type: ignore[return-value]  # looked up on the class (help(), docs)
        histogram.fold()
        return getattr(histogram, self.slot)  # type: ignore[no-any-return]

    def __set__(self, histogram: Histogram, value: V) -> None:
        histogram.fold()
        setattr(histogram, self.slot, value)


class Histogram:
    """Wait or hold times: Prometheus bucket counts, fine log-linear counts, total and max.

    ``counts[i]`` counts the samples ``<= BUCKETS[i]`` (and above the bucket before): what the
    Prometheus exporter publishes. The percentiles come from the fine counts instead: 1,248 log-linear
    slots (32 per power of two from 60 ns to 9 h), so :meth:`percentile` is within
    :data:`PERCENTILE_ERROR` (1.6 %) of the exact order statistic; below 60 ns it reports 0, above 9 h
    the max seen. :meth:`record` allocates nothing.

    The pool's hot paths append samples to :attr:`pending` instead (a list append, ~0.1 us against
    ~1.2 us for :meth:`record` with its call), and :meth:`fold` counts them in bulk: every reader of
    the counts calls it first, and the pool does at :data:`FOLD_AT` samples.
    """

    __slots__ = ("_counts", "_fine", "_max", "_total", "pending")

    def __init__(self) -> None:
        self._counts = [0] * len(BUCKETS)
        self._fine = [0] * _FINE_SLOTS
        self._total = 0.0
        self._max = 0.0
        #: samples (seconds) not counted yet; :meth:`fold` counts them
        self.pending: list[float] = []

    #: per-bucket counts, bounds in :data:`BUCKETS` (``counts[i]``: samples ``<= BUCKETS[i]``)
    counts: _Folded[list[int]] = _Folded()
    #: the fine log-linear slot counts behind :meth:`percentile`
    fine: _Folded[list[int]] = _Folded()
    #: the sum of all samples (seconds)
    total: _Folded[float] = _Folded()
    #: the largest sample (seconds; 0 before any)
    max: _Folded[float] = _Folded()

    def fold(self) -> None:
        """Count the samples in :attr:`pending`, as :meth:`record` would: sorted once, then a bisection
        per bucket bound and per fine slot between the lowest and the highest sample."""
        if not self.pending:
            return
        values = sorted(self.pending)
        self.pending.clear()
        n = len(values)
        self._total += sum(values)
        if values[-1] > self._max:
            self._max = values[-1]
        counts, done = self._counts, 0
        for bucket, bound in enumerate(BUCKETS):  # exact: as many as bisect_left(BUCKETS, v) puts there
            upto = bisect_right(values, bound, done)
            counts[bucket] += upto - done
            done = upto
            if done == n:
                break
        fine, done = self._fine, 0
        first, last = _slot(values[0]), _slot(values[-1])
        for slot in range(first, last):
            upto = bisect_left(values, _FINE_LOWER[slot + 1], done)
            fine[slot] += upto - done
            done = upto
        fine[last] += n - done

    def record(self, seconds: float) -> None:
        """Count one sample (seconds >= 0) now: one frexp and two table look-ups, no allocation."""
        self._total += seconds
        if seconds > self._max:
            self._max = seconds
        slot = _slot(seconds)
        self._fine[slot] += 1
        # A slot is narrower than the gap between two BUCKETS bounds, so at most one bound lies inside
        # it: the slot's bucket, or the next one. Same answer as bisect_left(BUCKETS, seconds).
        bucket = _SLOT_BUCKET[slot]
        if seconds > BUCKETS[bucket]:
            bucket += 1
        self._counts[bucket] += 1

    def percentile(self, q: float, zeros: int = 0) -> float:
        """The value below which ``q`` (0..1) of the samples fall, within 1.6 % (capped at the max seen).

        ``zeros`` counts extra samples of 0 s that were not recorded (acquisitions that never waited).
        Samples added to :attr:`counts` without :meth:`record` make it fall back to the coarse
        :data:`BUCKETS` bounds.
        """
        recorded = sum(self.counts)
        n = recorded + zeros
        if n == 0:
            return 0.0
        rank = q * n
        if rank <= zeros:
            return 0.0
        if sum(self.fine) != recorded:
            seen = zeros
            for bound, count in zip(BUCKETS, self.counts):
                seen += count
                if seen >= rank:
                    return min(bound, self.max)
            return self.max  # pragma: no cover - the last bucket is +inf
        slot = bisect_left(list(accumulate(self.fine)), rank - zeros)
        if slot == 0:
            return 0.0
        if slot == _FINE_TOP:
            return self.max  # the overflow slot: its values are only known to be >= 2**_EMAX
        lower = _fine_lower(slot)
        return min(lower + (_fine_lower(slot + 1) - lower) / 2, self.max)


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} us" if seconds else "0"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


@dataclasses.dataclass(frozen=True, repr=False)
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
    #: Sentinel pools only: how many times the master changed, and when the last change was seen
    #: (``time.time()``); 0 and None elsewhere
    master_switches: int = 0
    last_master_switch_at: Optional[float] = None

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

    def __repr__(self) -> str:
        return (f"<PoolStats {self.name!r} {self.size}/{self.max_connections} (idle={self.idle} "
                f"in_use={self.in_use} connecting={self.connecting}) waiting={self.waiting} "
                f"acquired={self.acquired} timeouts={self.timeouts} wait_p99={_duration(self.wait_time_p99)}>")

    def __str__(self) -> str:
        """A table for people: one line per group of fields (``as_dict()`` has them all)."""
        reasons = ", ".join(f"{r} {getattr(self, 'closed_' + r):,}" for r in CLOSE_REASONS
                            if getattr(self, "closed_" + r))
        if self.usage_count:
            held = (f"p50 {_duration(self.usage_time_p50)}  p99 {_duration(self.usage_time_p99)}  "
                    f"max {_duration(self.usage_time_max)}  over {self.usage_count:,}")
        else:
            held = "not recorded (timing_stats=False)"
        rows = [
            ("connections", f"{self.size}/{self.max_connections}: {self.idle} idle, {self.in_use} in use, "
                            f"{self.connecting} connecting; {self.waiting} waiting"),
            ("checkouts", f"{self.acquired:,} acquired, {self.released:,} released, {self.waits:,} waited, "
                          f"{self.timeouts:,} timeouts"),
            ("wait", f"p50 {_duration(self.wait_time_p50)}  p99 {_duration(self.wait_time_p99)}  "
                     f"max {_duration(self.wait_time_max)}  total {_duration(self.wait_time_total)}"),
            ("held", held),
            ("connects", f"{self.created:,} created, {self.connect_errors:,} failed, "
                         f"avg {_duration(self.connect_time_avg)} (hold avg {_duration(self.hold_time_avg)})"),
            ("closed", f"{self.closed:,}" + (f" ({reasons})" if reasons else "")),
            ("problems", f"{self.check_failures:,} failed checks, {self.leaks:,} leaks"),
        ]
        return "\n".join([f"pool {self.name!r}"] + [f"  {label:<12} {text}" for label, text in rows])

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a plain dict (for JSON, logs, metrics)."""
        return dataclasses.asdict(self)

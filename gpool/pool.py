"""The core pool: the only code that changes pool state.

Rule of the house: every decision about pool state (take an idle connection, reserve a slot, queue a
waiter, hand off, choose what to close) is made between two lines that cannot yield to the hub.
Connecting, checking, resetting and closing happen after the decision, and whatever they may raise,
``gevent.Timeout`` and ``GreenletExit`` included, is undone in ``finally``.

Invariant the fast paths rely on: while any greenlet waits, no connection is idle (every connection
that becomes available goes to the oldest waiter first), and a closed pool has no idle connection.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import random
import traceback
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator, Mapping
from time import monotonic
from typing import Any, Callable, Generic, Optional, TypeVar

import gevent
from gevent import getcurrent
from gevent.hub import get_hub

from . import _entry
from ._entry import _Entry, _Waiter, wake
from .errors import ConnectionNotFoundError, PoolClosedError, PoolExhaustedError
from .reaper import ConnectionReaper
from .stats import BUCKETS, CLOSE_REASONS, Histogram, PoolStats

__all__ = ["Pool"]

log = logging.getLogger("gpool")

T = TypeVar("T")

# Exceptions that end a greenlet. A Timeout firing while a connection closes in their wake must not
# replace them: the caller's `with gevent.Timeout` would swallow its own Timeout and the killed
# greenlet would run on.
_KILLS = (gevent.GreenletExit, KeyboardInterrupt, SystemExit)

#: weight of the newest sample in the running averages of connect and hold times (see _grow_at)
EWMA_WEIGHT = 0.2

#: max_lifetime is shortened by up to this fraction per connection, so a batch opened together
#: does not expire together
LIFETIME_JITTER = 0.04

_names = itertools.count(1)
_live_pools: weakref.WeakSet[Pool[Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_live_pools):
        pool._forget_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _number(name: str, value: Any, *, minimum: float = 0, allow_none: bool = False,
            integer: bool = False, positive: bool = False) -> Any:
    """Validate a numeric argument; the error names the parameter and the value."""
    if value is None and allow_none:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {kind}{' or None' if allow_none else ''}, got {value!r}")
    if math.isnan(value) or (positive and value <= 0) or value < minimum:
        bound = "> 0" if positive else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def _hook(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")
    return value


class _Checkout(Generic[T]):
    """``with pool.connection() as conn``: release on success, drop when the block poisoned it."""

    __slots__ = ("conn", "pool", "timeout")

    def __init__(self, pool: Pool[T], timeout: Optional[float]) -> None:
        self.pool = pool
        self.timeout = timeout

    def __enter__(self) -> T:
        self.conn = self.pool.acquire(self.timeout)
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        pool, conn = self.pool, self.conn
        if exc_type is None:
            pool.release(conn)
            return
        entry = pool._in_use.get(id(conn))
        if entry is None:
            return  # the block released or dropped it itself; its own error matters more
        reason = pool._poison_reason(entry, exc)
        if reason is None:
            pool.release(conn)
        else:
            pool._discard_in_use(entry, reason, exc)


class Pool(Generic[T]):
    """A gevent-cooperative pool of connections built by ``factory(**options)``.

    Idle connections are reused most-recently-released first, so a surplus goes idle and expires.
    When all ``max_connections`` are in use, callers wait in FIFO order and a released connection is
    handed straight to the oldest waiter. Connects are retried with backoff inside the caller's
    timeout. A :class:`~gpool.ConnectionReaper` greenlet closes expired idle connections, refills
    to ``initial_connections`` and, when asked, reports leaks and reclaims connections of dead holders.

    The constructor opens ``initial_connections`` before returning (raising :class:`PoolExhaustedError`
    with the connect error as cause when it cannot). After :meth:`close`, every method that hands out
    a connection raises :class:`PoolClosedError`; connections still in use are closed when they come
    back.

    Hooks (each optional, each called with the connection): ``on_connect`` after it is opened,
    ``on_checkout`` before it is handed out, ``on_checkin`` when it comes back, ``on_drop(conn,
    reason)`` before the pool closes it. An exception in the first three drops that connection (and
    is logged); the pool stays consistent. ``on_drop`` errors are logged.
    """

    def __init__(
        self,
        factory: Callable[..., T],
        options: Optional[Mapping[str, Any]] = None,
        initial_connections: int = 0,
        max_connections: int = 10,
        reap_expired_connections: bool = True,
        reap_interval: float = 10.0,
        *,
        timeout: Optional[float] = 30.0,
        max_lifetime: Optional[float] = 3600.0,
        idle_timeout: Optional[float] = 600.0,
        max_waiting: Optional[int] = None,
        max_usage: Optional[int] = None,
        check_interval: Optional[float] = 1.0,
        retry: int = 3,
        retry_delay: float = 0.1,
        name: Optional[str] = None,
        leak_timeout: Optional[float] = None,
        reclaim_dead_holders: bool = False,
        timing_stats: bool = False,
        on_connect: Optional[Callable[[T], Any]] = None,
        on_checkout: Optional[Callable[[T], Any]] = None,
        on_checkin: Optional[Callable[[T], Any]] = None,
        on_drop: Optional[Callable[[T, str], Any]] = None,
    ) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {factory!r}")
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"options must be a mapping of keyword arguments or None, got {type(options).__name__}")
        self._max: int = _number("max_connections", max_connections, integer=True, positive=True)
        self._min = _number("initial_connections", initial_connections, integer=True)
        if self._min > self._max:
            raise ValueError(
                f"initial_connections must be <= max_connections ({max_connections}), got {initial_connections!r}"
            )
        for flag, value in (("reap_expired_connections", reap_expired_connections),
                            ("reclaim_dead_holders", reclaim_dead_holders), ("timing_stats", timing_stats)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be a bool, got {value!r}")
        _number("reap_interval", reap_interval, positive=True)
        self._timeout = _number("timeout", timeout, allow_none=True)
        self._max_lifetime = _number("max_lifetime", max_lifetime, allow_none=True, positive=True)
        self._idle_timeout = _number("idle_timeout", idle_timeout, allow_none=True, positive=True)
        self._max_waiting = _number("max_waiting", max_waiting, allow_none=True, integer=True)
        self._max_usage = _number("max_usage", max_usage, allow_none=True, integer=True, positive=True)
        self._check_interval = _number("check_interval", check_interval, allow_none=True)
        self._retry = _number("retry", retry, integer=True)
        self._retry_delay = _number("retry_delay", retry_delay)
        self._leak_timeout = _number("leak_timeout", leak_timeout, allow_none=True, positive=True)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")
        self._on_connect = _hook("on_connect", on_connect)
        self._on_checkout = _hook("on_checkout", on_checkout)
        self._on_checkin = _hook("on_checkin", on_checkin)
        self._on_drop = _hook("on_drop", on_drop)

        self.name: str = name or f"pool-{next(_names)}"
        self._factory = factory
        self._options: dict[str, Any] = dict(options or {})
        self._reclaim = reclaim_dead_holders
        self._timing = timing_stats
        # For this long after a release, a checkout needs no health check nor idle-expiry test. With
        # checkout hooks, leak tracking or max_usage, never: every checkout takes the slow path, which
        # runs them, so the fast path pays nothing for features that are off.
        self._fresh_for = min(
            math.inf if check_interval is None else check_interval,
            math.inf if idle_timeout is None else idle_timeout,
        )
        if on_checkout is not None or leak_timeout is not None or max_usage is not None:
            self._fresh_for = -math.inf
        self._plain_checkout = on_checkout is None and leak_timeout is None  # no checkout hooks to run

        self._idle: deque[_Entry] = deque()
        self._in_use: dict[int, _Entry] = {}  # id(conn) -> entry: O(1) and works for unhashable objects
        self._pending = 0  # slots reserved by connects under way
        self._waiters: deque[_Waiter] = deque()
        # One timer for every waiter's deadline, armed for the earliest (see _arm): a wait costs no
        # timer of its own; a fire with nobody due (early, or its waiter served) just re-arms.
        self._timer: Any = None
        self._timer_at = math.inf
        # Running averages behind the choice to wait for a return rather than connect (_grow_at); inf
        # until measured. Hold times are sampled only while no connection is idle: then it matters.
        self._connect_avg = math.inf
        self._hold_avg = math.inf
        self._closed = False
        self._pid = os.getpid()
        self._gen = 0  # bumped at fork: records of another generation belong to the parent
        self._forked = False  # set in a forked child until its first slow-path call finishes the job
        self._orphans: dict[int, Any] = {}  # connections inherited across fork: kept, never closed
        self._reaper: Optional[ConnectionReaper] = None
        self._reap_interval = reap_interval
        if leak_timeout is not None:
            self._reap_interval = min(reap_interval, leak_timeout / 2)
        self._reap_enabled = reap_expired_connections
        self._reset_counters()
        _live_pools.add(self)

        if self._min:
            deadline = None if timeout is None else monotonic() + timeout
            try:
                self._fill(self._min, deadline)
            except BaseException:
                self.close()
                raise
        log.debug("pool %r created: max_connections=%d initial_connections=%d", self.name, self._max, self._min)

    def _reset_counters(self) -> None:
        self._created = self._acquired = self._released = 0
        self._timeouts = self._connect_errors = self._waits = self._leaks = 0
        self._closes = dict.fromkeys(CLOSE_REASONS, 0)
        self._wait_hist = Histogram()
        self._use_hist = Histogram()

    # -- public API --------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Connections the pool accounts for: idle + in use + being created."""
        return len(self._idle) + len(self._in_use) + self._pending

    @property
    def max_connections(self) -> int:
        """The hard cap on :attr:`size`."""
        return self._max

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def acquire(self, timeout: Optional[float] = None) -> T:
        """Take a connection; the caller must :meth:`release` or :meth:`drop` it.

        Waits at most ``timeout`` seconds (``None``: the pool's default; ``0``: do not wait) for the
        whole acquisition: waiting, connecting with retries, health checks. Raises
        :class:`PoolExhaustedError` when that runs out (with the last connect error as ``__cause__``),
        when ``max_waiting`` greenlets already wait, or when this greenlet already holds every
        connection; :class:`PoolClosedError` after :meth:`close`.
        """
        if timeout is not None:
            _number("timeout", timeout)
        idle = self._idle
        if idle:  # implies: nobody waits, the pool is open
            entry = idle.pop()
            now = monotonic()
            if now < entry.fast_until:  # fresh: no expiry test, no health check, no hooks due
                entry.holder = getcurrent()
                entry.checked_out_at = now
                self._in_use[entry.key] = entry
                self._acquired += 1
                return entry.conn  # type: ignore[no-any-return]
            idle.append(entry)
        return self._acquire_slow(timeout)

    def release(self, conn: T) -> None:
        """Return a connection taken with :meth:`acquire`.

        Calls its ``reset()`` when it has one (a failing reset drops the connection, logged); closes
        it instead when it outlived ``max_lifetime`` or ``max_usage``, or when the pool is closed.
        Never raises for those. Raises :class:`ConnectionNotFoundError` for a connection the pool does
        not track (foreign, or already released), changing nothing.
        """
        key = id(conn)
        entry = self._in_use.pop(key, None)
        if entry is None:
            if self._orphans.pop(key, None) is not None:
                return  # inherited from the parent process: forget it, its socket is the parent's
            raise ConnectionNotFoundError(self._not_tracked(conn))
        if entry.reset is not None and not self._closed:
            self._in_use[key] = entry  # still counted, and droppable, while the reset may yield
            self._reset(entry)
            if self._in_use.pop(key, None) is not entry:
                return  # the reset failed and dropped it, or another greenlet dropped it meanwhile
        now = monotonic()
        self._released += 1
        entry.holder = None
        entry.last_used_at = now
        if not self._idle:  # busy: keep the hold-time average that growth decisions use
            held, avg = now - entry.checked_out_at, self._hold_avg
            self._hold_avg = held if avg == math.inf else avg + (held - avg) * EWMA_WEIGHT
        if self._timing:  # inlined Histogram.record: this is the hot path
            held = now - entry.checked_out_at
            hist = self._use_hist
            hist.counts[bisect_left(BUCKETS, held)] += 1
            hist.total += held
            if held > hist.max:
                hist.max = held
        if entry.native:
            conn.last_used_at = now  # type: ignore[attr-defined]
        if now >= entry.retire_at:  # past max_lifetime, at max_usage, or the pool closed
            self._discard(entry, self._retire_reason(entry, now))
            return
        if entry.is_expired is not None and entry.is_expired():
            self._discard(entry, "expired_lifetime")
            return
        fresh_until = now + entry.fresh_for
        entry.fast_until = fresh_until if fresh_until < entry.expires_at else entry.expires_at
        if self._waiters:
            self._hand_off(entry)
        else:
            self._idle.append(entry)

    def drop(self, conn: T, reason: str = "dropped") -> None:
        """Close a connection and forget it, whether it is idle or in use; its slot is freed at once.

        ``reason`` (one of :data:`gpool.stats.CLOSE_REASONS`) is what stats and ``on_drop`` report;
        adapters that know better than "dropped" say "broken" or "interrupted". Raises
        :class:`ConnectionNotFoundError` for a connection the pool does not track.
        """
        if reason not in self._closes:
            raise ValueError(f"reason must be one of {', '.join(CLOSE_REASONS)}, got {reason!r}")
        entry = self._in_use.get(id(conn))
        if entry is not None:
            self._discard_in_use(entry, reason)
            return
        for entry in self._idle:
            if entry.conn is conn:
                self._idle.remove(entry)
                self._discard(entry, reason)
                return
        if self._orphans.pop(id(conn), None) is not None:
            return
        raise ConnectionNotFoundError(self._not_tracked(conn))

    def drop_expired(self) -> int:
        """Close idle connections that are past ``idle_timeout``, ``max_lifetime`` or ``is_expired()``.

        Returns how many it closed. Connections in use are left alone (they are checked on release).
        """
        return self._drop_expired(monotonic())

    def connection(self, timeout: Optional[float] = None) -> _Checkout[T]:
        """``with pool.connection() as conn:`` acquire, then release on exit.

        When the block raises a ``BaseException`` that is not an ``Exception`` (``gevent.Timeout``, a
        kill, ``KeyboardInterrupt``) or an error the connection calls fatal (``is_fatal(exc)``; socket
        errors by default), the connection is closed and dropped, never reused. Other errors propagate
        unchanged after the connection is released. Timeouts and errors as in :meth:`acquire`.
        """
        if timeout is not None:
            _number("timeout", timeout)
        return _Checkout(self, timeout)

    def stats(self, reset: bool = False) -> PoolStats:
        """A frozen snapshot of gauges and counters (see :class:`PoolStats`). Works after close().

        With ``reset=True`` the counters and histograms start again from zero after the snapshot
        (gauges such as ``size`` are never reset).
        """
        closes = self._closes
        waited, used = self._wait_hist, self._use_hist
        zeros = max(self._acquired + self._timeouts - self._waits, 0)  # acquisitions that never queued
        snapshot = PoolStats(
            name=self.name,
            size=self.size,
            idle=len(self._idle),
            in_use=len(self._in_use),
            connecting=self._pending,
            waiting=len(self._waiters),
            max_connections=self._max,
            created=self._created,
            closed=sum(closes.values()),
            acquired=self._acquired,
            released=self._released,
            dropped=closes["dropped"] + closes["broken"] + closes["interrupted"] + closes["reclaimed"],
            reaped=closes["expired_lifetime"] + closes["expired_idle"] + closes["max_usage"],
            timeouts=self._timeouts,
            connect_errors=self._connect_errors,
            check_failures=closes["check_failed"],
            waits=self._waits,
            wait_time_total=waited.total,
            wait_time_max=waited.max,
            wait_time_p50=waited.percentile(0.5, zeros),
            wait_time_p99=waited.percentile(0.99, zeros),
            usage_count=sum(used.counts),
            usage_time_total=used.total,
            usage_time_max=used.max,
            usage_time_p50=used.percentile(0.5),
            usage_time_p99=used.percentile(0.99),
            leaks=self._leaks,
            connect_time_avg=None if self._connect_avg == math.inf else self._connect_avg,
            hold_time_avg=None if self._hold_avg == math.inf else self._hold_avg,
            wait_buckets=tuple(waited.counts),
            usage_buckets=tuple(used.counts),
            **{f"closed_{reason}": count for reason, count in closes.items()},
        )
        if reset:
            self._reset_counters()
        return snapshot

    def close(self) -> None:
        """Close the pool (idempotent).

        Closes idle connections, wakes every waiter with :class:`PoolClosedError`, stops the reaper;
        connections in use are closed when they are released (quietly). Later :meth:`acquire` calls
        raise :class:`PoolClosedError`.
        """
        if self._closed:
            return
        self._closed = True
        idle = list(self._idle)
        self._idle.clear()
        waiters = list(self._waiters)
        self._waiters.clear()
        self._disarm()
        for waiter in waiters:
            waiter.state = _entry.CLOSED
            self._wake(waiter)
        for entry in self._in_use.values():
            entry.retire_at = -math.inf  # closed quietly when released
        reaper, self._reaper = self._reaper, None
        # Decisions are made; now the I/O.
        if reaper is not None:
            reaper.stop()
        for entry in idle:
            self._discard(entry, "pool_closed")
        log.info("pool %r closed: %d idle closed, %d in use to close on release, %d waiters woken",
                 self.name, len(idle), len(self._in_use), len(waiters))

    def __enter__(self) -> Pool[T]:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (f"<{type(self).__name__} {self.name!r}{state} size={self.size}/{self._max} "
                f"idle={len(self._idle)} in_use={len(self._in_use)} waiting={len(self._waiters)}>")

    def checked_out(self) -> Iterator[tuple[T, Any, float]]:
        """``(connection, holder greenlet, checkout time)`` for each connection in use, now."""
        return iter([(e.conn, e.holder, e.checked_out_at) for e in self._in_use.values()])

    # -- acquisition -----------------------------------------------------------------------------

    def _acquire_slow(self, timeout: Optional[float]) -> T:
        if timeout is None:
            timeout = self._timeout
        start = monotonic()
        deadline = None if timeout is None else start + timeout
        cause: Optional[BaseException] = None
        while True:
            if self._forked:
                self._after_fork()
            if self._closed:
                raise PoolClosedError(f"pool {self.name!r} is closed")
            entry: Optional[_Entry] = None
            fresh = False
            if self._idle:
                entry = self._idle.pop()
                self._take(entry)
            else:
                grow_at = math.inf  # full: wait for a connection to come back
                if len(self._in_use) + self._pending < self._max:  # size, with no idle connection
                    grow_at = self._grow_at(timeout == 0)
                if grow_at == -math.inf:
                    self._pending += 1  # reserve the slot before connecting: the cap holds while we yield
                    state = _entry.GOT_SLOT
                else:
                    waiter = self._wait(start, deadline, cause, grow_at)
                    if waiter.gen != self._gen:
                        continue  # granted by the parent process before a fork: start over
                    state, entry = waiter.state, waiter.entry
                if state == _entry.GOT_SLOT:
                    entry, cause = self._connect(deadline, timeout == 0, cause)
                    if entry is None:
                        if cause is not None or (deadline is not None and monotonic() >= deadline):
                            raise self._exhausted(start, cause)
                        continue  # forked mid-connect: start over
                    self._take(entry)
                    fresh = True
                elif state != _entry.GOT_ENTRY:
                    continue  # CLOSED or RETRY: the loop head decides
            assert entry is not None
            if (
                (fresh or entry.checked_out_at < entry.fast_until or self._vet(entry))
                and (self._plain_checkout or self._checkout_hooks(entry))
            ):
                entry.usage += 1
                if self._max_usage is not None and entry.usage >= self._max_usage:
                    entry.retire_at = -math.inf
                self._acquired += 1
                return entry.conn  # type: ignore[no-any-return]

    def _grow_at(self, once: bool) -> float:
        """Below the cap with no idle connection: when this demand should connect (-inf: now).

        When the connections in use will likely come back sooner than a connect takes (by the
        running averages of hold and connect times, for this demand's place in the queue), it
        queues instead, for at most one average connect time, then connects if still unserved: a
        burst on a warm pool is served by the connections it has, not by one new connection per
        demand. Unmeasured (a cold pool), nothing in use, or ``timeout=0``: connect now.
        """
        busy = len(self._in_use)
        connect, held = self._connect_avg, self._hold_avg
        if once or not busy or connect == math.inf or held == math.inf:
            return -math.inf
        if self._max_waiting is not None and len(self._waiters) >= self._max_waiting:
            return -math.inf
        if (len(self._waiters) + 1) * held / busy >= connect:
            return -math.inf
        return monotonic() + connect

    def _take(self, entry: _Entry) -> None:
        """Track ``entry`` as in use by the current greenlet (it must be in no other structure)."""
        entry.holder = getcurrent()
        entry.checked_out_at = monotonic()
        self._in_use[entry.key] = entry

    def _vet(self, entry: _Entry) -> bool:
        """Expiry and health checks of a connection just taken (tracked as ours). False: discarded."""
        now = entry.checked_out_at
        if now < entry.fast_until:
            return True
        reason = self._expiry_reason(entry, now)
        if reason is not None:
            self._discard_in_use(entry, reason)
            return False
        if (
            entry.is_connected is not None
            and self._check_interval is not None
            and now - entry.last_used_at >= self._check_interval
        ):
            try:
                healthy = bool(entry.is_connected())
            except Exception:
                healthy = False
                log.debug("pool %r: health check raised", self.name, exc_info=True)
            except BaseException as exc:  # interrupted: the connection may hold half a check
                self._drop_held(entry, "interrupted", exc)
                raise
            if not healthy:
                self._drop_held(entry, "check_failed")
            return healthy
        return True

    def _checkout_hooks(self, entry: _Entry) -> bool:
        """Leak tracking and ``on_checkout`` for a connection about to be handed out. False: dropped."""
        if self._leak_timeout is not None:
            entry.stack = traceback.extract_stack(limit=16)[:-3]  # minus gpool's own frames
            entry.leak_reported = False
        if self._on_checkout is None:
            return True
        try:
            self._on_checkout(entry.conn)
        except Exception:
            log.warning("pool %r: on_checkout hook failed; connection dropped", self.name, exc_info=True)
            self._drop_held(entry, "broken")
            return False
        except BaseException as exc:
            self._drop_held(entry, "broken", exc)
            raise
        return True

    def _wait(
        self, start: float, deadline: Optional[float], cause: Optional[BaseException], grow_at: float,
    ) -> _Waiter:
        """Queue the current greenlet and park it until it is granted something, or raise.

        A waiter queued by choice (``grow_at``, see :meth:`_grow_at`) still unserved at ``grow_at``
        takes a slot and leaves the queue to connect, when the pool is still below the cap.

        Whatever ends the wait abnormally (our deadline, an outer Timeout, a kill) gives back what
        may have been granted in the meantime, in ``finally``.
        """
        now = monotonic()
        if self._max_waiting is not None and len(self._waiters) >= self._max_waiting:
            raise self._exhausted(start, cause, f"{len(self._waiters)} waiting (max_waiting={self._max_waiting})")
        if deadline is not None and now >= deadline:
            raise self._exhausted(start, cause)
        me = getcurrent()
        if not self._pending and len(self._in_use) == self._max and self._holds_all(me):
            raise self._exhausted(start, cause, f"this greenlet already holds all {self._max} connections")
        hub = get_hub()
        waiter = _Waiter(me, self._gen, hub.loop, math.inf if deadline is None else deadline, grow_at)
        self._waiters.append(waiter)
        self._waits += 1
        granted = False
        interrupted: Optional[BaseException] = None
        try:
            wake_at = grow_at if grow_at < waiter.deadline else waiter.deadline  # not min(): hot path
            if wake_at < self._timer_at:
                self._arm(hub.loop, wake_at)
            while waiter.state == _entry.WAITING:
                waiter.blocked = True
                try:
                    hub.switch()
                finally:
                    waiter.blocked = False
                if waiter.state == _entry.WAITING:
                    now_ = monotonic()
                    if now_ >= waiter.deadline:
                        break
                    if now_ >= waiter.grow_at:
                        self._grow(waiter)
            granted = waiter.state != _entry.WAITING
        except BaseException as exc:
            interrupted = exc
            raise
        finally:
            waited = monotonic() - now
            hist = self._wait_hist  # inlined Histogram.record: every contended checkout comes here
            hist.counts[bisect_left(BUCKETS, waited)] += 1
            hist.total += waited
            if waited > hist.max:
                hist.max = waited
            if not granted:
                self._cancel(waiter, interrupted)
        if waiter.state == _entry.CLOSED:
            raise PoolClosedError(f"pool {self.name!r} was closed while waiting")
        if not granted:
            raise self._exhausted(start, cause)
        return waiter

    def _grow(self, waiter: _Waiter) -> None:
        """A waiter's patience (``grow_at``) ran out: give it a slot, or let it wait on when full."""
        waiter.grow_at = math.inf
        # (nothing is idle while anyone waits; a waiter from before a fork gets RETRY instead)
        if waiter.gen == self._gen and len(self._in_use) + self._pending < self._max:
            self._waiters.remove(waiter)
            if not self._waiters:
                self._disarm()
            self._pending += 1
            waiter.state = _entry.GOT_SLOT
        elif waiter.deadline < self._timer_at:
            self._arm(waiter.loop, waiter.deadline)  # the timer's last fire was for its grow_at

    def _arm(self, loop: Any, at: float) -> None:
        """(Re)start the deadline timer to fire at ``at`` (monotonic)."""
        if self._timer is not None:
            self._timer.close()
        self._timer = loop.timer(max(at - monotonic(), 0.0))
        self._timer_at = at
        self._timer.start(self._deadlines_due, loop)

    def _disarm(self) -> None:
        """No waiter has a deadline any more: stop the timer (an armed one keeps the hub's loop alive)."""
        timer, self._timer, self._timer_at = self._timer, None, math.inf
        if timer is not None:
            timer.close()

    def _deadlines_due(self, loop: Any) -> None:
        """Deadline timer callback (in the hub): wake the waiters with a deadline or grow_at due; re-arm."""
        self._disarm()
        now = monotonic()
        following = math.inf
        for waiter in self._waiters:
            wake_at = min(waiter.deadline, waiter.grow_at)
            if wake_at <= now:
                waiter.loop.run_callback(wake, waiter)  # it sees what is due: leaves, or connects
            elif wake_at < following:
                following = wake_at
        if following < math.inf:
            self._arm(loop, following)

    def _holds_all(self, me: Any) -> bool:
        """Whether ``me`` holds every connection in use (stops at the first other holder: cheap)."""
        for entry in self._in_use.values():  # noqa: SIM110 - a loop, not all(genexpr): no generator per wait
            if entry.holder is not me:
                return False
        return True

    def _cancel(self, waiter: _Waiter, during: Optional[BaseException]) -> None:
        """The waiter leaves: take it off the queue, or pass on what it was granted and never used.

        ``during``: what interrupted the wait, if anything (see :meth:`_discard`).
        """
        state, waiter.state = waiter.state, _entry.GONE
        if state == _entry.WAITING:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass  # the queue was reset by a fork
            if not self._waiters:
                self._disarm()
        elif state == _entry.GOT_ENTRY and waiter.gen == self._gen:
            entry = waiter.entry
            assert entry is not None
            if self._in_use.get(entry.key) is entry:
                del self._in_use[entry.key]
                entry.holder = None
                self._put_back(entry, during)
        elif state == _entry.GOT_SLOT and waiter.gen == self._gen:
            self._pending -= 1
            self._slot_freed()

    def _connect(
        self,
        deadline: Optional[float],
        once: bool,
        cause: Optional[BaseException],
    ) -> tuple[Optional[_Entry], Optional[BaseException]]:
        """Open a connection in a slot already reserved (``_pending``), retrying with backoff.

        Returns ``(entry, None)`` with the entry untracked (the caller tracks it before yielding), or
        ``(None, last_error)`` after the slot was freed for the next waiter.
        """
        gen = self._gen
        attempt = 0
        delay = self._retry_delay
        entry = None
        try:
            while True:
                remaining = None if deadline is None else deadline - monotonic()
                if remaining is not None and remaining <= 0 and not (once and attempt == 0):
                    return None, cause
                began = monotonic()
                try:
                    conn = self._open(None if once else remaining)
                except Exception as exc:
                    self._connect_errors += 1
                    cause = exc
                    attempt += 1
                    log.debug("pool %r: connect attempt %d failed: %r", self.name, attempt, exc)
                    if attempt > self._retry or self._closed or once:
                        return None, cause
                    pause = delay * random.uniform(0.5, 1.0)  # jitter: waiters retrying together drift apart
                    delay *= 2
                    if remaining is not None and pause >= deadline - monotonic():  # type: ignore[operator]
                        return None, cause
                    gevent.sleep(pause)
                    continue
                now = monotonic()
                took, avg = now - began, self._connect_avg
                self._connect_avg = took if avg == math.inf else avg + (took - avg) * EWMA_WEIGHT
                if gen != self._gen:
                    self._orphans[id(conn)] = conn  # opened by the parent's greenlet before the fork
                    return None, None
                lifetime = self._max_lifetime
                expires_at = math.inf if lifetime is None else now + lifetime * (
                    1 - LIFETIME_JITTER * random.random())
                entry = _Entry(conn, now, expires_at, gen)
                # is_expired() must be asked at every checkout: such a connection is never "fresh"
                entry.fresh_for = -math.inf if entry.is_expired is not None else self._fresh_for
                if self._on_checkin is not None or self._leak_timeout is not None:
                    entry.reset = functools.partial(self._checkin, entry, entry.reset)
                self._pending -= 1
                self._created += 1
                if self._reaper is None and (self._reap_enabled or self._leak_timeout or self._reclaim):
                    self._start_reaper()
                if self._closed:
                    self._discard(entry, "pool_closed")
                    raise PoolClosedError(f"pool {self.name!r} was closed while connecting")
                return entry, None
        finally:
            if entry is None and gen == self._gen:
                self._pending -= 1
                self._slot_freed()

    def _open(self, timeout: Optional[float]) -> Any:
        """``factory(**options)``, ``open()``, ``on_connect``, bounded by ``timeout``.

        A half-made connection is closed whatever interrupts it.
        """
        conn = None
        timer = gevent.Timeout(timeout)  # None: never fires
        timer.start()
        try:
            conn = self._factory(**self._options)
            opener = getattr(conn, "open", None)
            if callable(opener):
                opener()
            if self._on_connect is not None:
                try:
                    self._on_connect(conn)
                except Exception:
                    log.warning("pool %r: on_connect hook failed; connection closed", self.name, exc_info=True)
                    raise
            return conn
        except BaseException as exc:
            closer = getattr(conn, "close", None)
            if callable(closer):
                self._close_quietly(closer, exc)
            if exc is timer:  # our own bound, not an outer Timeout: a connect error like any other
                raise TimeoutError(f"connect timed out after {timeout:.3f}s") from None
            raise
        finally:
            timer.close()

    def _fill(self, target: int, deadline: Optional[float]) -> None:
        """Open connections until ``size`` reaches ``target`` and make them idle (or hand them off)."""
        while not self._closed and self.size < target:
            self._pending += 1
            # timeout=0 ("do not wait"): one attempt per connection, as acquire(timeout=0) makes
            entry, cause = self._connect(deadline, self._timeout == 0, None)
            if entry is None:
                if cause is not None or (deadline is not None and monotonic() >= deadline):
                    why = (f"{type(cause).__name__} after {self._retry + 1} attempts" if cause is not None
                           else f"timed out after {self._timeout}s")
                    raise PoolExhaustedError(
                        f"pool {self.name!r} could not open its initial connections: {why}") from cause
                continue  # forked mid-connect: start over
            entry.fast_until = min(entry.created_at + entry.fresh_for, entry.expires_at)
            self._put_back(entry)

    # -- returning and closing -----------------------------------------------------------------

    def _put_back(self, entry: _Entry, during: Optional[BaseException] = None) -> None:
        """Hand a healthy connection to the oldest waiter, or make it idle (close it, once closed)."""
        if self._closed:
            self._discard(entry, "pool_closed", during)
        elif self._waiters:
            self._hand_off(entry)
        else:
            self._idle.append(entry)

    def _hand_off(self, entry: _Entry) -> None:
        """Grant ``entry`` to the oldest waiter: tracked as its own from now on, woken soon."""
        waiter = self._waiters.popleft()
        if not self._waiters and self._timer is not None:
            self._disarm()
        entry.holder = waiter.greenlet
        entry.checked_out_at = monotonic()
        self._in_use[entry.key] = entry
        waiter.entry = entry
        waiter.state = _entry.GOT_ENTRY
        self._wake(waiter)

    def _slot_freed(self) -> None:
        """Capacity went down by one: give the slot to the oldest waiter, who will connect."""
        if self._waiters and not self._closed:
            waiter = self._waiters.popleft()
            if not self._waiters:
                self._disarm()
            self._pending += 1
            waiter.state = _entry.GOT_SLOT
            self._wake(waiter)

    def _wake(self, waiter: _Waiter) -> None:
        waiter.loop.run_callback(wake, waiter)

    def _discard(self, entry: _Entry, reason: str, during: Optional[BaseException] = None) -> None:
        """Forget an untracked entry, free its slot, then close it (the only I/O, last).

        ``during``: the exception being handled, if any; a kill there is not replaced (see ``_KILLS``).
        """
        self._closes[reason] += 1
        self._slot_freed()
        if self._on_drop is not None:
            try:
                self._on_drop(entry.conn, reason)
            except Exception:
                log.warning("pool %r: on_drop hook failed", self.name, exc_info=True)
        log.debug("pool %r: closing a connection (%s)", self.name, reason)
        if entry.close is not None:
            self._close_quietly(entry.close, during)

    def _discard_in_use(self, entry: _Entry, reason: str, during: Optional[BaseException] = None) -> None:
        del self._in_use[entry.key]
        entry.holder = None
        self._discard(entry, reason, during)

    def _drop_held(self, entry: _Entry, reason: str, during: Optional[BaseException] = None) -> None:
        """Discard ``entry`` unless a hook that yielded let another greenlet drop it meanwhile."""
        if self._in_use.get(entry.key) is entry:
            self._discard_in_use(entry, reason, during)

    def _reset(self, entry: _Entry) -> None:
        """Run the connection's reset(); drop it when that fails (re-raising only BaseExceptions).

        ``reset()`` returning ``False`` asks for a quiet drop: the connection knows it is unusable
        (closed by its user, a result left unread) and nothing went wrong worth a warning.
        """
        try:
            keep = entry.reset()  # type: ignore[misc]
        except Exception:
            log.warning("pool %r: reset on release failed; connection dropped", self.name, exc_info=True)
            keep = False
        except BaseException as exc:
            self._drop_held(entry, "interrupted", exc)
            raise
        if keep is False:
            self._drop_held(entry, "broken")

    def _checkin(self, entry: _Entry, reset: Optional[Callable[[], Any]]) -> Any:
        """Release-time work when hooks or leak tracking are on; runs as the entry's ``reset``."""
        if entry.leak_reported:
            log.info("pool %r: connection held past leak_timeout came back after %.1fs", self.name,
                     monotonic() - entry.checked_out_at)
        if self._on_checkin is not None:
            self._on_checkin(entry.conn)
        return None if reset is None else reset()

    def _close_quietly(self, close: Callable[[], Any], during: Optional[BaseException] = None) -> None:
        """Call ``close``, logging its errors; a Timeout is re-raised unless it would replace a kill."""
        try:
            close()
        except Exception:
            log.debug("pool %r: close() raised", self.name, exc_info=True)
        except gevent.Timeout:
            if not isinstance(during, _KILLS):
                raise

    def _poison_reason(self, entry: _Entry, exc: BaseException) -> Optional[str]:
        """Why the error that ended a ``with`` block makes the connection unusable, or None."""
        if not isinstance(exc, Exception):
            return "interrupted"
        if entry.is_fatal is not None:
            try:
                return "broken" if entry.is_fatal(exc) else None
            except Exception:
                log.warning("pool %r: is_fatal() raised; connection dropped", self.name, exc_info=True)
                return "broken"
        return "broken" if isinstance(exc, (OSError, EOFError)) else None

    # -- expiry, reaping, leaks, fork ------------------------------------------------------------

    def _expiry_reason(self, entry: _Entry, now: float) -> Optional[str]:
        if now >= entry.expires_at:
            return "expired_lifetime"
        if self._idle_timeout is not None and now - entry.last_used_at >= self._idle_timeout:
            return "expired_idle"
        if entry.is_expired is not None and entry.is_expired():
            return "expired_lifetime"
        return None

    def _retire_reason(self, entry: _Entry, now: float) -> str:
        if self._closed:
            return "pool_closed"
        return "expired_lifetime" if now >= entry.expires_at else "max_usage"

    def _drop_expired(self, now: float) -> int:
        expired = [(e, r) for e in self._idle if (r := self._expiry_reason(e, now)) is not None]
        if not expired:
            return 0
        gone = {id(e) for e, _ in expired}
        keep = [e for e in self._idle if id(e) not in gone]
        self._idle.clear()
        self._idle.extend(keep)
        for entry, reason in expired:
            self._discard(entry, reason)
        log.debug("pool %r: closed %d expired idle connections", self.name, len(expired))
        return len(expired)

    def _reap(self, now: Optional[float]) -> int:
        """One reaper pass: leaks and dead holders, expired idle connections, then refill."""
        now = monotonic() if now is None else now
        if self._leak_timeout is not None or self._reclaim:
            self._check_holders(now)
        if not self._reap_enabled:
            return 0
        closed = self._drop_expired(now)
        if self._min and self.size < self._min:
            deadline = None if self._timeout is None else monotonic() + self._timeout
            try:
                self._fill(self._min, deadline)
            except PoolExhaustedError as exc:
                log.warning("pool %r: could not refill to %d connections: %r", self.name, self._min,
                            exc.__cause__)
        return closed

    def _check_holders(self, now: float) -> None:
        """Report connections held past ``leak_timeout``; reclaim those whose holder died."""
        for entry in list(self._in_use.values()):
            holder = entry.holder
            if self._reclaim and holder is not None and holder.dead:
                log.warning("pool %r: holder %r died without releasing its connection; reclaimed",
                            self.name, holder)
                if self._in_use.get(entry.key) is entry:
                    self._discard_in_use(entry, "reclaimed")
                continue
            if (
                self._leak_timeout is not None
                and not entry.leak_reported
                and now - entry.checked_out_at >= self._leak_timeout
            ):
                entry.leak_reported = True
                self._leaks += 1
                where = "".join(traceback.format_list(entry.stack)) if entry.stack else "(not captured)\n"
                log.warning("pool %r: connection held for %.1fs (leak_timeout=%ss) by %r, acquired at:\n%s",
                            self.name, now - entry.checked_out_at, self._leak_timeout, holder, where.rstrip())

    def _start_reaper(self) -> None:
        self._reaper = ConnectionReaper(self, self._reap_interval)
        self._reaper.start()

    def _forget_parent(self) -> None:
        """In a forked child, right after fork: forget (never close) what the parent owns.

        No I/O and no hub here; waking the parent's waiters is left to the child's first call.
        """
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid
        self._gen += 1
        for entry in itertools.chain(self._idle, self._in_use.values()):
            self._orphans[entry.key] = entry.conn
            # Close the child's copy of the parent's socket (no goodbye on the wire): a parent greenlet
            # that gevent also runs in the child could otherwise read the parent's replies from it.
            detach = getattr(entry.conn, "detach", None)
            if callable(detach):
                try:
                    detach()
                except Exception:
                    log.debug("pool %r: detach() after fork raised", self.name, exc_info=True)
        self._idle.clear()
        self._in_use.clear()
        self._pending = 0
        self._reaper = None  # the parent's reaper greenlet, copied here, sees it was replaced and ends
        self._reset_counters()
        self._forked = True

    def _after_fork(self) -> None:
        """The child's first slow-path call: send the parent's waiters back to start over."""
        self._forked = False
        waiters = list(self._waiters)
        self._waiters.clear()
        self._disarm()
        for waiter in waiters:
            waiter.state = _entry.RETRY
            self._wake(waiter)
        log.info("pool %r: forked (pid %d); forgot %d inherited connections", self.name, self._pid,
                 len(self._orphans))

    def _exhausted(self, start: float, cause: Optional[BaseException], why: str = "") -> PoolExhaustedError:
        self._timeouts += 1
        waited = monotonic() - start
        detail = why or f"waited {waited:.3f}s"
        message = (
            f"pool {self.name!r} exhausted: {len(self._in_use)}/{self._max} in use, "
            f"{len(self._idle)} idle, {self._pending} connecting, {len(self._waiters)} waiting, {detail}"
        )
        if why:
            message += f", waited {waited:.3f}s"
        if cause is not None:
            message += f"; last connect error: {type(cause).__name__}"
        error = PoolExhaustedError(message)
        error.__cause__ = cause
        return error

    def _not_tracked(self, conn: Any) -> str:
        return (f"pool {self.name!r} does not track this {type(conn).__name__} (0x{id(conn):x}): "
                f"it was already released or dropped, or belongs to another pool")

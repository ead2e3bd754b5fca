"""The core pool: the only code that changes pool state.

Rule of the house: every decision about pool state (take an idle connection, reserve a slot, queue a
waiter, hand off, choose what to close) is made between two lines that cannot yield to the hub.
Connecting, checking, resetting and closing happen after the decision, and whatever they may raise,
``gevent.Timeout`` and ``GreenletExit`` included, is undone in ``finally``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import random
import weakref
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
from .stats import PoolStats

__all__ = ["Pool"]

log = logging.getLogger("gpool")

T = TypeVar("T")

#: max_lifetime is shortened by up to this fraction per connection, so a batch opened together
#: does not expire together
LIFETIME_JITTER = 0.04

_names = itertools.count(1)
_live_pools: weakref.WeakSet[Pool[Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_live_pools):
        pool._forked = True


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
        if entry is None or entry.conn is not conn:
            return  # the block released or dropped it itself; its own error matters more
        if pool._is_poisoned(entry, exc):
            pool._discard_in_use(entry, "interrupted")
        else:
            pool.release(conn)


class Pool(Generic[T]):
    """A gevent-cooperative pool of connections built by ``factory(**options)``.

    Idle connections are reused most-recently-released first, so a surplus goes idle and expires.
    When all ``max_connections`` are in use, callers wait in FIFO order and a released connection is
    handed straight to the oldest waiter. Connects are retried with backoff inside the caller's
    timeout. A :class:`~gpool.ConnectionReaper` greenlet closes expired idle connections and refills
    to ``initial_connections``.

    The constructor opens ``initial_connections`` before returning (raising what the last connect
    raised when it cannot). After :meth:`close`, every method that hands out a connection raises
    :class:`PoolClosedError`; connections still in use are closed when they come back.
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
    ) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {factory!r}")
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"options must be a mapping of keyword arguments or None, got {type(options).__name__}")
        self._max = _number("max_connections", max_connections, integer=True, positive=True)
        self._min = _number("initial_connections", initial_connections, integer=True)
        if self._min > self._max:
            raise ValueError(
                f"initial_connections must be <= max_connections ({max_connections}), got {initial_connections!r}"
            )
        if not isinstance(reap_expired_connections, bool):
            raise TypeError(f"reap_expired_connections must be a bool, got {reap_expired_connections!r}")
        _number("reap_interval", reap_interval, positive=True)
        self._timeout = _number("timeout", timeout, allow_none=True)
        self._max_lifetime = _number("max_lifetime", max_lifetime, allow_none=True, positive=True)
        self._idle_timeout = _number("idle_timeout", idle_timeout, allow_none=True, positive=True)
        self._max_waiting = _number("max_waiting", max_waiting, allow_none=True, integer=True)
        self._max_usage = _number("max_usage", max_usage, allow_none=True, integer=True, positive=True)
        self._check_interval = _number("check_interval", check_interval, allow_none=True)
        self._retry = _number("retry", retry, integer=True)
        self._retry_delay = _number("retry_delay", retry_delay)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")

        self.name: str = name or f"pool-{next(_names)}"
        self._factory = factory
        self._options: dict[str, Any] = dict(options or {})
        # Until this much idle time, a checkout needs no health check nor idle-expiry test.
        self._fresh_for = min(
            math.inf if check_interval is None else check_interval,
            math.inf if idle_timeout is None else idle_timeout,
        )

        self._idle: deque[_Entry] = deque()
        self._in_use: dict[int, _Entry] = {}  # id(conn) -> entry: O(1) and works for unhashable objects
        self._pending = 0  # slots reserved by connects under way
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        self._pid = os.getpid()
        self._gen = 0  # bumped at fork: records of another generation belong to the parent
        self._forked = False
        self._orphans: dict[int, Any] = {}  # connections inherited across fork: kept, never closed
        self._reaper: Optional[ConnectionReaper] = None
        self._reap_interval = reap_interval
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
        self._created = self._closed_count = self._acquired = self._released = 0
        self._dropped = self._reaped = self._timeouts = self._connect_errors = 0
        self._check_failures = self._waits = 0
        self._wait_total = self._wait_max = 0.0

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
        if self._forked:
            self._after_fork()
        idle = self._idle
        if idle and not self._waiters and not self._closed:
            # The fast path: no waiter to serve first, and a connection fresh enough to need no check.
            entry = idle[-1]
            now = monotonic()
            if now < entry.fast_until and entry.is_expired is None:
                idle.pop()
                entry.holder = getcurrent()
                entry.checked_out_at = now
                entry.usage += 1
                self._in_use[id(entry.conn)] = entry
                self._acquired += 1
                return entry.conn  # type: ignore[no-any-return]
        return self._acquire_slow(timeout)

    def release(self, conn: T) -> None:
        """Return a connection taken with :meth:`acquire`.

        Calls its ``reset()`` when it has one (a failing reset drops the connection, logged); closes
        it instead when it outlived ``max_lifetime`` or ``max_usage``, or when the pool is closed.
        Never raises for those. Raises :class:`ConnectionNotFoundError` for a connection the pool does
        not track (foreign, or already released), changing nothing.
        """
        if self._forked:
            self._after_fork()
        key = id(conn)
        entry = self._in_use.get(key)
        if entry is None or entry.conn is not conn:
            if self._orphans.pop(key, None) is not None:
                return  # inherited from the parent process: forget it, its socket is the parent's
            raise ConnectionNotFoundError(self._not_tracked(conn))
        if entry.reset is not None and not self._closed:
            self._reset(entry)
            if self._in_use.get(key) is not entry:
                return  # the reset failed and dropped it, or another greenlet dropped it meanwhile
        now = monotonic()
        del self._in_use[key]
        self._released += 1
        entry.holder = None
        entry.last_used_at = now
        if entry.native:
            conn.last_used_at = now  # type: ignore[attr-defined]
        if (
            self._closed
            or now >= entry.expires_at
            or (self._max_usage is not None and entry.usage >= self._max_usage)
            or (entry.is_expired is not None and entry.is_expired())
        ):
            if not self._closed:
                self._reaped += 1
            self._discard(entry)
            return
        entry.fast_until = min(now + self._fresh_for, entry.expires_at)
        self._put_back(entry)

    def drop(self, conn: T) -> None:
        """Close a connection and forget it, whether it is idle or in use; its slot is freed at once.

        Raises :class:`ConnectionNotFoundError` for a connection the pool does not track.
        """
        if self._forked:
            self._after_fork()
        entry = self._in_use.get(id(conn))
        if entry is not None and entry.conn is conn:
            self._discard_in_use(entry, "dropped")
            return
        for entry in self._idle:
            if entry.conn is conn:
                self._idle.remove(entry)
                self._dropped += 1
                self._discard(entry)
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

    def stats(self) -> PoolStats:
        """A frozen snapshot of gauges and counters (see :class:`PoolStats`). Works after close()."""
        return PoolStats(
            name=self.name,
            size=self.size,
            idle=len(self._idle),
            in_use=len(self._in_use),
            connecting=self._pending,
            waiting=len(self._waiters),
            max_connections=self._max,
            created=self._created,
            closed=self._closed_count,
            acquired=self._acquired,
            released=self._released,
            dropped=self._dropped,
            reaped=self._reaped,
            timeouts=self._timeouts,
            connect_errors=self._connect_errors,
            check_failures=self._check_failures,
            waits=self._waits,
            wait_time_total=self._wait_total,
            wait_time_max=self._wait_max,
        )

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
        for waiter in waiters:
            waiter.state = _entry.CLOSED
            self._wake(waiter)
        reaper, self._reaper = self._reaper, None
        self._closed_count += len(idle)
        # Decisions are made; now the I/O.
        if reaper is not None:
            reaper.stop()
        for entry in idle:
            self._close_conn(entry)
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
            if self._closed:
                raise PoolClosedError(f"pool {self.name!r} is closed")
            if self._forked:
                self._after_fork()
            entry: Optional[_Entry] = None
            if self._idle and not self._waiters:
                entry = self._idle.pop()
                self._take(entry)
            else:
                if self.size < self._max and not self._waiters:
                    self._pending += 1  # reserve the slot before connecting: the cap holds while we yield
                    state = _entry.GOT_SLOT
                else:
                    waiter = self._wait(start, deadline, cause)
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
                    entry.usage += 1
                    self._acquired += 1
                    return entry.conn  # type: ignore[no-any-return]
                if state != _entry.GOT_ENTRY:
                    continue  # CLOSED or RETRY: the loop head decides
                assert entry is not None
            if self._vet(entry):
                entry.usage += 1
                self._acquired += 1
                return entry.conn  # type: ignore[no-any-return]

    def _take(self, entry: _Entry) -> None:
        """Track ``entry`` as in use by the current greenlet (it must be in no other structure)."""
        entry.holder = getcurrent()
        entry.checked_out_at = monotonic()
        self._in_use[id(entry.conn)] = entry

    def _vet(self, entry: _Entry) -> bool:
        """Expiry and health checks of a connection just taken (tracked as ours). False: discarded."""
        now = entry.checked_out_at
        if now < entry.fast_until and entry.is_expired is None:
            return True
        if self._is_expired(entry, now):
            self._reaped += 1
            self._discard_in_use(entry, None)
            return False
        if (
            entry.is_connected is not None
            and self._check_interval is not None
            and now - entry.last_used_at >= self._check_interval
        ):
            healthy = False
            try:
                healthy = bool(entry.is_connected())
            except Exception:
                log.debug("pool %r: health check raised", self.name, exc_info=True)
            finally:
                # Interrupted or failed: either way the connection may hold half a check.
                if not healthy:
                    self._check_failures += 1
                    self._discard_in_use(entry, None)
            return healthy
        return True

    def _wait(self, start: float, deadline: Optional[float], cause: Optional[BaseException]) -> _Waiter:
        """Queue the current greenlet and park it until it is granted something, or raise.

        Whatever ends the wait abnormally (our deadline, an outer Timeout, a kill) gives back what
        may have been granted in the meantime, in ``finally``.
        """
        now = monotonic()
        if self._max_waiting is not None and len(self._waiters) >= self._max_waiting:
            raise self._exhausted(start, cause, f"{len(self._waiters)} waiting (max_waiting={self._max_waiting})")
        if deadline is not None and now >= deadline:
            raise self._exhausted(start, cause)
        me = getcurrent()
        if not self._pending and len(self._in_use) == self._max and all(
            e.holder is me for e in self._in_use.values()
        ):
            raise self._exhausted(start, cause, f"this greenlet already holds all {self._max} connections")
        hub = get_hub()
        waiter = _Waiter(me, self._gen)
        self._waiters.append(waiter)
        self._waits += 1
        timer = None
        granted = False
        try:
            if deadline is not None:
                timer = hub.loop.timer(max(deadline - now, 0.0))
                timer.start(wake, waiter)
            while waiter.state == _entry.WAITING:
                waiter.blocked = True
                try:
                    hub.switch()
                finally:
                    waiter.blocked = False
                if waiter.state == _entry.WAITING and deadline is not None and monotonic() >= deadline:
                    break
            granted = waiter.state != _entry.WAITING
        finally:
            if timer is not None:
                timer.close()
            waited = monotonic() - now
            self._wait_total += waited
            if waited > self._wait_max:
                self._wait_max = waited
            if not granted:
                self._cancel(waiter)
        if waiter.state == _entry.CLOSED:
            raise PoolClosedError(f"pool {self.name!r} was closed while waiting")
        if not granted:
            raise self._exhausted(start, cause)
        return waiter

    def _cancel(self, waiter: _Waiter) -> None:
        """The waiter leaves: take it off the queue, or pass on what it was granted and never used."""
        state, waiter.state = waiter.state, _entry.GONE
        if state == _entry.WAITING:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass  # the queue was reset by a fork
        elif state == _entry.GOT_ENTRY and waiter.gen == self._gen:
            entry = waiter.entry
            assert entry is not None
            if self._in_use.get(id(entry.conn)) is entry:
                del self._in_use[id(entry.conn)]
                entry.holder = None
                self._put_back(entry)
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
                if gen != self._gen:
                    self._orphans[id(conn)] = conn  # opened by the parent's greenlet before the fork
                    return None, None
                lifetime = self._max_lifetime
                expires_at = math.inf if lifetime is None else now + lifetime * (
                    1 - LIFETIME_JITTER * random.random())
                entry = _Entry(conn, now, expires_at, gen)
                self._pending -= 1
                self._created += 1
                if self._reaper is None and self._reap_enabled:
                    self._start_reaper()
                if self._closed:
                    self._closed_count += 1
                    self._close_conn(entry)
                    raise PoolClosedError(f"pool {self.name!r} was closed while connecting")
                return entry, None
        finally:
            if entry is None and gen == self._gen:
                self._pending -= 1
                self._slot_freed()

    def _open(self, timeout: Optional[float]) -> Any:
        """``factory(**options)`` then ``open()``, bounded by ``timeout``; a half-made connection is closed."""
        conn = None
        timer = gevent.Timeout(timeout)  # None: never fires
        timer.start()
        try:
            conn = self._factory(**self._options)
            opener = getattr(conn, "open", None)
            if callable(opener):
                opener()
            return conn
        except BaseException as exc:
            if conn is not None:
                self._quiet_close(conn)
            if exc is timer:  # our own bound, not an outer Timeout: a connect error like any other
                raise TimeoutError(f"connect timed out after {timeout:.3f}s") from None
            raise
        finally:
            timer.close()

    def _fill(self, target: int, deadline: Optional[float]) -> None:
        """Open connections until ``size`` reaches ``target`` and make them idle (or hand them off)."""
        while not self._closed and self.size < target:
            self._pending += 1
            entry, cause = self._connect(deadline, False, None)
            if entry is None:
                if cause is not None:
                    raise PoolExhaustedError(
                        f"pool {self.name!r} could not open its initial connections: "
                        f"{type(cause).__name__} after {self._retry + 1} attempts") from cause
                continue
            entry.fast_until = min(entry.created_at + self._fresh_for, entry.expires_at)
            self._put_back(entry)

    # -- returning and closing -----------------------------------------------------------------

    def _put_back(self, entry: _Entry) -> None:
        """Hand a healthy connection to the oldest waiter, or make it idle (close it, once closed)."""
        if self._closed:
            self._discard(entry)
        elif self._waiters:
            waiter = self._waiters.popleft()
            entry.holder = waiter.greenlet
            entry.checked_out_at = monotonic()
            self._in_use[id(entry.conn)] = entry
            waiter.entry = entry
            waiter.state = _entry.GOT_ENTRY
            self._wake(waiter)
        else:
            self._idle.append(entry)

    def _slot_freed(self) -> None:
        """Capacity went down by one: give the slot to the oldest waiter, who will connect."""
        if self._waiters and not self._closed:
            waiter = self._waiters.popleft()
            self._pending += 1
            waiter.state = _entry.GOT_SLOT
            self._wake(waiter)

    def _wake(self, waiter: _Waiter) -> None:
        get_hub().loop.run_callback(wake, waiter)

    def _discard(self, entry: _Entry) -> None:
        """Forget an untracked entry, free its slot, then close it (the only I/O, last)."""
        self._closed_count += 1
        self._slot_freed()
        self._close_conn(entry)

    def _discard_in_use(self, entry: _Entry, counter: Optional[str]) -> None:
        del self._in_use[id(entry.conn)]
        entry.holder = None
        if counter == "dropped" or counter == "interrupted":
            self._dropped += 1
        self._discard(entry)

    def _reset(self, entry: _Entry) -> None:
        """Run the connection's reset(); on any failure drop it (re-raising only BaseExceptions)."""
        ok = False
        try:
            entry.reset()  # type: ignore[misc]
            ok = True
        except Exception:
            log.warning("pool %r: reset failed; connection dropped", self.name, exc_info=True)
        finally:
            if not ok and self._in_use.get(id(entry.conn)) is entry:
                self._discard_in_use(entry, "dropped")

    def _close_conn(self, entry: _Entry) -> None:
        if entry.close is not None:
            try:
                entry.close()
            except Exception:
                log.debug("pool %r: close() raised", self.name, exc_info=True)

    def _quiet_close(self, conn: Any) -> None:
        closer = getattr(conn, "close", None)
        if callable(closer):
            try:
                closer()
            except Exception:
                log.debug("pool %r: close() raised", self.name, exc_info=True)

    def _is_poisoned(self, entry: _Entry, exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            return True
        if entry.is_fatal is not None:
            try:
                return bool(entry.is_fatal(exc))
            except Exception:
                log.warning("pool %r: is_fatal() raised; connection dropped", self.name, exc_info=True)
                return True
        return isinstance(exc, (OSError, EOFError))

    # -- expiry, reaping, fork -----------------------------------------------------------------

    def _is_expired(self, entry: _Entry, now: float) -> bool:
        return (
            now >= entry.expires_at
            or (self._idle_timeout is not None and now - entry.last_used_at >= self._idle_timeout)
            or (entry.is_expired is not None and bool(entry.is_expired()))
        )

    def _drop_expired(self, now: float) -> int:
        expired = [e for e in self._idle if self._is_expired(e, now)]
        if not expired:
            return 0
        gone = {id(e) for e in expired}
        keep = [e for e in self._idle if id(e) not in gone]
        self._idle.clear()
        self._idle.extend(keep)
        self._reaped += len(expired)
        self._closed_count += len(expired)
        for _ in expired:
            self._slot_freed()
        for entry in expired:
            self._close_conn(entry)
        log.debug("pool %r: closed %d expired idle connections", self.name, len(expired))
        return len(expired)

    def _reap(self, now: Optional[float]) -> int:
        """One reaper pass: expire idle connections, then refill to ``initial_connections``."""
        closed = self._drop_expired(monotonic() if now is None else now)
        if self._min and self.size < self._min:
            deadline = None if self._timeout is None else monotonic() + self._timeout
            try:
                self._fill(self._min, deadline)
            except PoolExhaustedError as exc:
                log.warning("pool %r: could not refill to %d connections: %r", self.name, self._min,
                            exc.__cause__)
        return closed

    def _start_reaper(self) -> None:
        self._reaper = ConnectionReaper(self, self._reap_interval)
        self._reaper.start()

    def _after_fork(self) -> None:
        """First use in a forked child: forget (never close) what the parent owns and start afresh."""
        self._forked = False
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid
        self._gen += 1
        inherited = list(self._idle) + list(self._in_use.values())
        for entry in inherited:
            self._orphans[id(entry.conn)] = entry.conn
        self._idle.clear()
        self._in_use.clear()
        self._pending = 0
        waiters = list(self._waiters)
        self._waiters.clear()
        for waiter in waiters:
            waiter.state = _entry.RETRY
            self._wake(waiter)
        self._reaper = None  # the parent's reaper greenlet, copied here, sees it was replaced and ends
        self._reset_counters()
        log.info("pool %r: forked (pid %d); forgot %d inherited connections", self.name, pid, len(inherited))

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

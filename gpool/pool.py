"""The core pool: the public API, and the I/O between the state machine's transitions.

Every decision about pool state is a transition of :class:`gpool._state.PoolState` (which never
yields); connecting, checking, resetting and closing happen here, after the decision, and whatever
they may raise (``gevent.Timeout`` and ``GreenletExit`` included) is undone in ``finally``. Every
connection the pool closes, for any reason, goes through :meth:`Pool._close_conn`.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import sys
import weakref
from collections.abc import Iterator, Mapping
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, TypeVar

from gevent import getcurrent
from gevent.hub import get_hub

from . import _connect, _health, _waiting
from ._entry import _Entry, close_quietly
from ._state import PoolState, _thread_id
from ._waiting import _Waiter
from .errors import (
    ConnectFailedError,
    ConnectionHeldError,
    ConnectionNotFoundError,
    PoolClosedError,
    PoolDeadlockError,
    PoolExhaustedError,
    PoolQueueFullError,
    PoolThreadError,
    PoolTimeoutError,
)
from .options import PoolOptions, check_number
from .reaper import ConnectionReaper
from .stats import CLOSE_REASONS, FOLD_AT, PoolStats

__all__ = ["Pool"]

log = logging.getLogger("gpool")

T = TypeVar("T")



_names = itertools.count(1)
_live_pools: weakref.WeakSet[Pool[Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_live_pools):
        pool._forget_parent_process()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
        if entry is None or entry.holder is not getcurrent():
            return  # the block released, dropped or handed it on itself; its own error matters more
        reason = _health.poison_reason(entry, exc, pool.name)
        if reason is None:
            pool.release(conn)
        else:
            pool._drop_held(entry, reason)


class Pool(PoolState, Generic[T]):
    """A gevent-cooperative pool of connections built by ``factory(**options)``.

    Idle connections are reused most-recently-released first, so a surplus goes idle and expires.
    When all ``max_connections`` are in use, callers wait in FIFO order and a released connection is
    handed straight to the oldest waiter. Connects are retried with backoff inside the caller's
    timeout. A :class:`~gpool.ConnectionReaper` greenlet closes expired idle connections, refills
    to ``initial_connections``, reports holders that died without releasing and, when asked, leaks.

    Pool options are the fields of :class:`gpool.options.PoolOptions` (``max_connections``,
    ``timeout``, ``max_lifetime``, ``idle_timeout``, ``check_interval``, ``retry``, the ``on_*``
    hooks...), given as keywords (the first four also by position, after ``options``) or as one
    ``config=PoolOptions(...)``. ``options`` is the mapping of keyword arguments for ``factory``.

    The constructor opens ``initial_connections`` before returning (raising
    :class:`~gpool.ConnectFailedError` when it cannot). After :meth:`close`, every method that hands
    out a connection raises :class:`PoolClosedError`; connections still in use are closed when they
    come back. A pool belongs to the OS thread that first uses it; any other raises
    :class:`~gpool.PoolThreadError`.

    The connection protocol (every method optional): ``open()`` after the factory, ``is_clean()``
    (non-yielding: nothing unread, peer not closed) before every handout and after ``reset()``,
    ``health_check(timeout)`` (or ``is_connected()``) when it sat idle ``check_interval``, ``reset()``
    when it comes back, ``settle(timeout)`` when it has one and is not clean at a handout (it reads what
    ``reset()`` sent without waiting, e.g. a ROLLBACK's reply; ``is_clean()`` says False meanwhile, so
    the fast path never hands it out; the check after ``reset()`` moves to the checkout; it is first
    called with timeout 0, which must not wait and returns None when it would have to),
    ``is_fatal(exc)`` when the user's block raised, ``is_expired()``, ``close()`` once, ``detach()`` in a
    forked child.
    """

    def __init__(self, factory: Callable[..., T], options: Optional[Mapping[str, Any]] = None, *args: Any,
                 config: Optional[PoolOptions] = None, **kwargs: Any) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {factory!r}")
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"options must be a mapping of keyword arguments or None, got {type(options).__name__}")
        if config is None:
            config = PoolOptions(*args, **kwargs)
        elif args or kwargs:
            raise TypeError("give pool options either as keywords or as config=PoolOptions(...), not both")
        elif not isinstance(config, PoolOptions):
            raise TypeError(f"config must be a gpool.options.PoolOptions, got {type(config).__name__}")
        super().__init__(config.max_connections)
        self._opts = config
        self.name: str = config.name or f"pool-{next(_names)}"
        self._factory = factory
        self._factory_kwargs: dict[str, Any] = dict(options or {})
        self._timeout = config.timeout
        self._min = config.initial_connections
        self._now = monotonic  # the clock of the state machine's inlined fast path (tests step it)
        # For this long after a release, a checkout needs no health check nor idle-expiry test. With
        # checkout hooks, leak tracking or max_usage, never: every checkout takes the slow path, which
        # runs them, so the fast path pays nothing for features that are off.
        self._fresh_for = min(math.inf if config.check_interval is None else config.check_interval,
                              math.inf if config.idle_timeout is None else config.idle_timeout)
        if config.on_checkout is not None or config.leak_timeout is not None or config.max_usage is not None:
            self._fresh_for = -math.inf
        self._plain_checkout = config.on_checkout is None and config.leak_timeout is None
        self._timing = config.timing_stats
        self._max_usage = config.max_usage
        # Running averages behind the choice to wait for a return rather than connect (_grow_at); inf
        # until measured. Hold times are sampled only while no connection is idle: then it matters.
        self._connect_avg = math.inf
        self._outage = _connect.Outage(self.name)
        self._pid = os.getpid()
        self._reaper: Optional[ConnectionReaper] = None
        self._reap_interval = config.reap_interval
        if config.leak_timeout is not None:
            self._reap_interval = min(config.reap_interval, config.leak_timeout / 2)
        _live_pools.add(self)
        if self._min:
            self._bind_thread()
            try:
                self._fill(self._min, None if self._timeout is None else monotonic() + self._timeout)
            except BaseException:
                self.close()
                raise
        log.debug("pool %r created: max_connections=%d initial_connections=%d", self.name, self._max, self._min)

    # -- public API --------------------------------------------------------------------------

    @property
    def options(self) -> PoolOptions:
        """The pool's options (frozen)."""
        return self._opts

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

    if TYPE_CHECKING:  # defined (inlined) in the state machine, for speed: see PoolState.acquire
        def acquire(self, timeout: Optional[float] = None) -> T: ...

    if TYPE_CHECKING:  # defined (inlined) in the state machine, for speed: see PoolState.release
        def release(self, conn: T) -> None: ...

    def _release_unheld(self, conn: Any) -> Optional[_Entry]:
        """release() of a connection the caller does not hold: the record, or None (after raising)."""
        return self._held_entry(conn, "release")

    def _prepare_return(self, entry: _Entry) -> bool:
        """The return's I/O and checks before the check-in: ``reset()``, ``is_expired()``. False: dropped."""
        if entry.reset is not None and not self._closed:
            if entry.settle is not None:  # _health.reset's common case, inlined: no is_clean() after it
                try:
                    keep = entry.reset()
                except BaseException as exc:
                    return _health.reset_failed(self, entry, exc)
                if keep is False:
                    self._drop_held(entry, "broken")
                    return False
                if self._in_use.get(entry.key) is not entry:
                    return False  # another greenlet dropped it meanwhile
            elif not _health.reset(self, entry) or self._in_use.get(entry.key) is not entry:
                return False  # the reset failed and dropped it, or another greenlet dropped it meanwhile
        if entry.native:
            entry.conn.last_used_at = monotonic()
        if entry.is_expired is not None and entry.is_expired():
            self._drop_held(entry, "expired_lifetime")
            return False
        return True

    def _retire(self, entry: _Entry, now: float) -> None:
        """A connection came back past its retirement (lifetime, max_usage, the pool closed): close it."""
        self._drop_held(entry, _health.return_reason(entry, now, self._closed) or "expired_lifetime")

    def drop(self, conn: T, reason: str = "dropped") -> None:
        """Close a connection and forget it, whether it is idle or in use; its slot is freed at once.

        ``reason`` (one of :data:`gpool.stats.CLOSE_REASONS`) is what stats and ``on_drop`` report.
        Raises :class:`ConnectionNotFoundError` for a connection the pool does not track and
        :class:`~gpool.ConnectionHeldError` for one another live greenlet holds.
        """
        if reason not in self._closes:
            raise ValueError(f"reason must be one of {', '.join(CLOSE_REASONS)}, got {reason!r}")
        self._bind_thread()
        if id(conn) not in self._in_use:
            entry = self._untrack_idle(conn)
            if entry is not None:
                self._close_conn(entry, reason)
                return
        entry = self._held_entry(conn, "drop")
        if entry is not None:
            self._drop_held(entry, reason)

    def transfer(self, conn: T, to: Any) -> None:
        """Hand a connection you hold to the greenlet ``to``, which may then release or drop it.

        The one way to pass a checked-out connection between greenlets (a release or drop by anyone
        but the live holder raises :class:`~gpool.ConnectionHeldError`). Raises the same errors as
        :meth:`release`, changing nothing.
        """
        if not callable(getattr(to, "switch", None)):
            raise TypeError(f"to must be a greenlet, got {to!r}")
        entry = self._held_entry(conn, "transfer")
        if entry is not None:
            self._transfer(entry, to)

    def _adopt(self, conn: T) -> None:
        """The calling greenlet becomes the holder of ``conn`` (a no-op for one the pool does not hold).

        For adapters whose driver's API lets any greenlet give a connection back (redis-py's
        ``ConnectionPool.release``, SQLAlchemy's record check-in): the driver, not the greenlet, owns
        the checkout there, and refuses a double return itself. Not for users: they call
        :meth:`transfer` from the holder.
        """
        entry = self._in_use.get(id(conn))
        if entry is not None:
            me = getcurrent()
            if entry.holder is not me:  # the common case (the holder gives it back) needs no call
                self._transfer(entry, me)

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
            check_number("timeout", timeout)
        return _Checkout(self, timeout)

    def stats(self, reset: bool = False) -> PoolStats:
        """A frozen snapshot of gauges and counters (see :class:`PoolStats`). Works after close().

        With ``reset=True`` the counters and histograms start again from zero after the snapshot
        (gauges such as ``size`` are never reset).
        """
        snapshot = PoolStats.of(self)
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
        idle, waiters = self._shut()
        reaper, self._reaper = self._reaper, None
        # Decisions are made; now the I/O.
        if reaper is not None:
            reaper.stop()
        for entry in idle:
            self._close_conn(entry, "pool_closed")
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
        else:
            check_number("timeout", timeout)
        if self._thread != _thread_id():
            self._bind_thread()
        start = monotonic()
        attempt = _connect.Attempt(self, start, None if timeout is None else start + timeout, timeout == 0)
        now = start  # one clock read per pass: the first pass needs none of its own
        while True:
            if self._forked:
                self._after_fork()
            if self._closed:
                raise PoolClosedError(f"pool {self.name!r} is closed")
            entry = self._take(attempt, now)
            if entry is None:
                now = monotonic()
                continue  # woken with nothing (closed, forked): the loop head decides
            # A handed-over connection still fresh, with no hooks to run, needs only its is_clean()
            # (called here: a False or a raise goes through _health.checkout, which drops it).
            # (A connection with settle() that is clean owes nothing: it needs no settling either.)
            fast = entry.checked_out_at < entry.fast_until and self._plain_checkout
            unclean = False  # is_clean() just said no: the checkout does not ask again before settling
            if fast and entry.is_clean is not None:
                try:
                    fast = bool(entry.is_clean())
                except Exception:
                    fast = False
                unclean = not fast
            if fast or _health.checkout(self, entry, entry.created_at >= start, attempt, unclean):
                if self._max_usage is not None:
                    entry.usage += 1
                    if entry.usage >= self._max_usage:
                        entry.retire_at = -math.inf
                self._acquired += 1
                if attempt.cause is not None:
                    self._outage.recovered()
                return entry.conn  # type: ignore[no-any-return]
            now = monotonic()  # it was dropped: another pass

    def _take(self, attempt: _connect.Attempt, now: float) -> Optional[_Entry]:
        """One try at a connection tracked as ours: idle, handed over by a waiter's grant, or new.

        None: woken with nothing to take (the pool closed, the process forked); the caller looks again.
        """
        if self._idle:
            taken = self._idle[-1]
            self._lease(taken, now, getcurrent())
            return taken
        grow_at = math.inf  # full: wait for a connection to come back
        if len(self._in_use) + self._pending < self._max:
            grow_at = self._grow_at(attempt.once, now)
        if grow_at != -math.inf or not self._reserve():
            waiter = self._wait(attempt, grow_at, now)
            if waiter.gen != self._gen:
                return None  # granted by the parent process before a fork: start over
            if waiter.state != _waiting.GOT_SLOT:
                return waiter.entry if waiter.state == _waiting.GOT_ENTRY else None
        entry = _connect.connect(self, attempt, getcurrent())
        if entry is None:
            remaining = attempt.remaining()
            if attempt.cause is not None or (remaining is not None and remaining <= 0):
                raise self._exhausted(attempt)
        return entry

    def _grow_at(self, once: bool, now: float) -> float:
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
        waiting = len(self._waiters)
        if self._opts.max_waiting is not None and waiting >= self._opts.max_waiting:
            return -math.inf
        if (waiting + 1) * held / busy >= connect:
            return -math.inf
        return now + connect

    def _wait(self, attempt: _connect.Attempt, grow_at: float, now: float) -> _Waiter:
        """Queue the current greenlet and park it until it is granted something, or raise.

        A waiter queued by choice (``grow_at``, see :meth:`_grow_at`) still unserved at ``grow_at``
        takes a slot and leaves the queue to connect, when the pool is still below the cap. Whatever
        ends the wait abnormally (our deadline, an outer Timeout, a kill) gives back what may have
        been granted in the meantime, in ``finally``. ``now``: the clock read just before.
        """
        if attempt.deadline is not None and now >= attempt.deadline:
            raise self._exhausted(attempt)
        limit = self._opts.max_waiting
        if limit is not None and len(self._waiters) >= limit:
            raise self._exhausted(attempt, PoolQueueFullError, f"max_waiting={limit} reached")
        me = getcurrent()
        if not self._pending and len(self._in_use) == self._max:
            # Whether ``me`` holds them all; stops at the first other holder (a loop, not a call).
            for held in self._in_use.values():
                if held.holder is not me:
                    break
            else:
                why = f"this greenlet already holds all {self._max} connections"
                raise self._exhausted(attempt, PoolDeadlockError, why)
        hub = get_hub()
        waiter = _Waiter(me, self._gen, hub.loop, math.inf if attempt.deadline is None else attempt.deadline,
                         grow_at)
        granted = False
        try:
            self._enqueue(waiter)
            while waiter.state == _waiting.WAITING:
                waiter.blocked = True  # while parked only: a late wake-up must not resume us elsewhere
                try:
                    hub.switch()
                finally:
                    waiter.blocked = False
                if waiter.state == _waiting.WAITING:
                    now_ = monotonic()
                    if now_ >= waiter.deadline:
                        break
                    if now_ >= waiter.grow_at:
                        self._grow(waiter)
            granted = waiter.state != _waiting.WAITING
        finally:
            waits = self._wait_hist.pending  # counted in bulk by the histogram's fold(): a call saved per wait
            waits.append(monotonic() - now)
            if len(waits) >= FOLD_AT:
                self._wait_hist.fold()
            if not granted:
                leftover = self._leave(waiter, monotonic())
                if leftover is not None:
                    self._close_conn(leftover, "pool_closed")
        if waiter.state == _waiting.CLOSED:
            raise PoolClosedError(f"pool {self.name!r} was closed while waiting")
        if not granted:
            raise self._exhausted(attempt)
        return waiter

    def _fill(self, target: int, deadline: Optional[float]) -> None:
        """Open connections until ``size`` reaches ``target`` and make them available."""
        attempt = _connect.Attempt(self, monotonic(), deadline, once=self._timeout == 0)
        while not self._closed and self._reserve_up_to(target):
            if _connect.connect(self, attempt, None) is not None:
                continue
            if attempt.cause is not None or (deadline is not None and monotonic() >= deadline):
                raise self._exhausted(attempt, why=f"could not open its {target} initial connections")
            # otherwise a fork interrupted the connect: the loop head decides

    # -- returning and closing -----------------------------------------------------------------

    def _held_entry(self, conn: Any, action: str) -> Optional[_Entry]:
        """The in-use record of ``conn`` when the caller may release, drop or transfer it; else raise.

        None: ``conn`` was inherited from the parent process (forgotten now). A holder that died
        without releasing it no longer counts: anyone may give back a dead greenlet's connection.
        """
        self._bind_thread()
        entry = self._in_use.get(id(conn))
        if entry is None:
            if self._forget_orphan(conn):
                return None
            raise ConnectionNotFoundError(
                f"pool {self.name!r} does not track this {type(conn).__name__} (0x{id(conn):x}): "
                f"it was already released or dropped, or belongs to another pool")
        holder = entry.holder
        if holder is not None and holder is not getcurrent() and not holder.dead:
            raise ConnectionHeldError(
                f"pool {self.name!r}: {action}() of a connection held by another live greenlet "
                f"({holder!r}); nothing changed. Was it released twice? To hand it on, its holder "
                f"calls pool.transfer(conn, greenlet)")
        return entry

    def _drop_held(self, entry: _Entry, reason: str) -> None:
        """Close a connection in use, unless a hook that yielded let another greenlet drop it meanwhile."""
        if self._untrack(entry):
            self._close_conn(entry, reason)

    def _close_conn(self, entry: _Entry, reason: str) -> None:
        """The one way the pool closes a connection: already forgotten (its slot is free), closed last.

        The exception being handled, if any, is the one in flight (see :func:`close_quietly`).
        """
        during = sys.exc_info()[1]
        self._closes[reason] += 1
        on_drop = self._opts.on_drop
        if on_drop is not None:
            try:
                on_drop(entry.conn, reason)
            except Exception:
                log.warning("pool %r: on_drop hook failed", self.name, exc_info=True)
        log.debug("pool %r: closing a connection (%s)", self.name, reason)
        if entry.close is not None:
            close_quietly(entry.close, self.name, during)

    def _drop_expired(self, now: float) -> int:
        expired = self._take_expired(lambda entry: _health.expiry_reason(self, entry, now))
        for entry, reason in expired:
            self._close_conn(entry, reason)
        if expired:
            log.debug("pool %r: closed %d expired idle connections", self.name, len(expired))
        return len(expired)

    def _exhausted(self, attempt: _connect.Attempt, kind: Optional[type[PoolExhaustedError]] = None,
                   why: str = "") -> PoolExhaustedError:
        """The error for an acquisition that failed; the class says whose fault it is."""
        self._timeouts += 1
        if kind is None and attempt.cause is None and self._outage.last is not None and not self._in_use:
            # Waited out its timeout while the pool's own connects kept failing (nothing in use, so no
            # return was coming): the connect error is why, not a busy pool.
            attempt.cause, attempt.connect_failed = self._outage.last, True
        cause = attempt.cause
        if kind is None:
            kind = ConnectFailedError if attempt.connect_failed else PoolTimeoutError
        waited = monotonic() - attempt.start
        head = "could not connect" if kind is ConnectFailedError else "exhausted"
        message = (f"pool {self.name!r} {head}: {len(self._in_use)}/{self._max} in use, {len(self._idle)} idle, "
                   f"{self._pending} connecting, {len(self._waiters)} waiting, {why + ', ' if why else ''}"
                   f"waited {waited:.3f}s")
        if cause is not None:
            message += f"; {attempt.describe()}"
        error = kind(message)
        error.__cause__ = cause
        return error

    # -- reaping, thread, fork -----------------------------------------------------------------------

    def _reap(self, now: Optional[float]) -> int:
        """One reaper pass: dead holders and leaks, expired idle connections, then refill."""
        now = monotonic() if now is None else now
        _health.check_holders(self, now)
        if not self._opts.reap_expired_connections:
            return 0
        closed = self._drop_expired(now)
        if self._min and self.size < self._min:
            try:
                self._fill(self._min, None if self._timeout is None else monotonic() + self._timeout)
            except PoolExhaustedError as exc:
                log.warning("pool %r: could not refill to %d connections: %s", self.name, self._min, exc)
        return closed

    def _start_reaper(self) -> None:
        self._reaper = ConnectionReaper(self, self._reap_interval)
        self._reaper.start()

    def _bind_thread(self) -> None:
        """The first use binds the pool to its OS thread (its hub); any other thread is refused."""
        current = _thread_id()
        if self._thread != current:
            if self._thread is not None:
                raise PoolThreadError(
                    f"pool {self.name!r} belongs to OS thread {self._thread} and was used from thread "
                    f"{current}: a gevent pool serves the greenlets of one hub; make one pool per thread")
            self._thread = current

    def _forget_parent_process(self) -> None:
        """At fork, in the child: forget (never close) what the parent owns; close our copies of its sockets."""
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid
        self._thread = _thread_id()
        self._reaper = None  # the parent's reaper greenlet, copied here, sees it was replaced and ends
        for entry in self._forget_parent():
            # No goodbye on the wire: a parent greenlet that gevent also runs in the child could
            # otherwise read the parent's replies from our copy of the socket.
            detach = getattr(entry.conn, "detach", None)
            if callable(detach):
                try:
                    detach()
                except Exception:
                    log.debug("pool %r: detach() after fork raised", self.name, exc_info=True)

    def _after_fork(self) -> list[_Waiter]:
        waiters = super()._after_fork()
        log.info("pool %r: forked (pid %d); forgot %d inherited connections, restarted %d waiters",
                 self.name, self._pid, len(self._orphans), len(waiters))
        return waiters

"""The pool's state machine: the only code that writes the pool's state.

Private to gpool: not the place to import from. :class:`gpool.Pool` derives from :class:`PoolState`
and does the I/O (connect, check, reset, close) between these transitions.

The state is the idle stack, the in-use map, the count of slots reserved by connects under way, the
queue of waiters, the closed flag and the fork generation. Every transition here is a critical
section: it never yields to the hub (no I/O, no ``gevent.sleep``, no hooks of the user or the
connection) and never reads the clock (it takes ``now``). So a decision and its effect on the state
are one atomic step for every other greenlet; the I/O that follows a decision happens outside.

Invariants (checked after every unit test by :func:`gpool._invariants.check_invariants`):

1. a connection is in at most one of idle / in use, and ``idle + in use + pending <= max``;
2. while any greenlet waits, nothing is idle: a connection that becomes available goes to the
   oldest waiter first, so the fast path may take an idle connection without looking at the queue;
3. every queued waiter is still ``WAITING``; granted or gone, it has left the queue;
4. a closed pool has no idle connection and no waiter; the deadline timer is armed only while
   someone waits, for no later than the earliest waiter's deadline.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from typing import Any, Callable, Optional

from gevent import getcurrent
from gevent.monkey import get_original
from greenlet import greenlet

from . import _waiting
from ._entry import _Entry
from ._waiting import DeadlineTimer, _Waiter, wake
from .stats import CLOSE_REASONS, FOLD_AT, Histogram

# The OS thread's id even under monkey-patching (where threading.get_ident names the greenlet).
_thread_id: Callable[[], int] = get_original("_thread", "get_ident")


#: weight of the newest sample in the running averages of connect and hold times (see Pool._grow_at)
EWMA_WEIGHT = 0.2


def _no_clock() -> float:
    raise RuntimeError("the pool's clock (_now) was not set")


class PoolState:
    """The state of a pool of at most ``max_connections`` connections, and its transitions."""

    def __init__(self, max_connections: int) -> None:
        self._max = max_connections
        self._idle: deque[_Entry] = deque()  # newest last: reused first, so a surplus goes idle and expires
        self._in_use: dict[int, _Entry] = {}  # id(conn) -> entry: O(1) and works for unhashable objects
        self._pending = 0  # slots reserved by connects under way
        self._waiters: OrderedDict[_Waiter, None] = OrderedDict()  # oldest first; O(1) removal
        self._closed = False
        self._gen = 0  # bumped at fork: records of another generation belong to the parent
        self._forked = False  # set in a forked child until its first slow-path call finishes the job
        self._orphans: dict[int, Any] = {}  # connections inherited across fork: forgotten, never closed
        self._timer = DeadlineTimer(self._deadlines_due)
        self._thread: Optional[int] = None  # the OS thread that uses the pool: bound at first use
        self._now: Callable[[], float] = _no_clock
        self._timing = False  # whether releases record hold times
        self._hold_avg = math.inf  # the running average of hold times (see gpool.Pool._grow_at)
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._created = self._acquired = self._released = 0
        self._timeouts = self._connect_errors = self._waits = self._leaks = self._dead_holders = 0
        self._closes = dict.fromkeys(CLOSE_REASONS, 0)
        self._wait_hist = Histogram()
        self._use_hist = Histogram()

    # -- checkout ------------------------------------------------------------------------------

    def acquire(self, timeout: Optional[float] = None) -> Any:
        """Take a connection; the caller must :meth:`release` or :meth:`drop` it.

        Waits at most ``timeout`` seconds (``None``: the pool's ``timeout``; ``0``: do not wait) for
        the whole acquisition: waiting, connecting with retries, health checks. Raises a
        :class:`PoolExhaustedError` when that fails: :class:`~gpool.PoolTimeoutError` (every
        connection stayed in use), :class:`~gpool.ConnectFailedError` (connecting failed, cause in
        ``__cause__``), :class:`~gpool.PoolQueueFullError` (``max_waiting`` reached) or
        :class:`~gpool.PoolDeadlockError` (this greenlet holds them all); :class:`PoolClosedError`
        after :meth:`close`; :class:`~gpool.PoolThreadError` from another OS thread.
        """
        # The fast path, inlined here, the one place it is: a fresh idle connection becomes the
        # caller's in one call from the user's code (a call to _lease would cost ~70 ns, a tenth of a
        # checkout and return). The clock is the pool's own, injected (``_now``) so tests can step it.
        idle = self._idle
        if idle and self._thread == _thread_id():  # nothing idle while anyone waits: no queue to jump
            entry = idle[-1]
            now = self._now()
            if now < entry.fast_until and (entry.is_clean is None or entry.is_clean()):
                # Critical section: no expiry test nor health check due; the lease, as in _lease.
                idle.pop()
                entry.holder = getcurrent()
                entry.checked_out_at = now
                self._in_use[entry.key] = entry
                self._acquired += 1
                return entry.conn
        return self._acquire_slow(timeout)

    def _acquire_slow(self, timeout: Optional[float]) -> Any:
        raise NotImplementedError  # gpool.Pool's: waiting, connecting, checking

    def _lease(self, entry: _Entry, now: float, me: greenlet) -> None:
        """``entry``, the newest idle connection, becomes ``me``'s."""
        # Critical section: off the idle stack and into the in-use map in one step.
        self._idle.pop()
        entry.holder = me
        entry.checked_out_at = now
        self._in_use[entry.key] = entry

    def _reserve(self) -> bool:
        """Reserve a slot for a connect when nothing is idle and the pool is below its cap."""
        # Critical section: counted before the connect yields, so the cap holds.
        if self._idle or len(self._in_use) + self._pending >= self._max:
            return False
        self._pending += 1
        return True

    def _reserve_up_to(self, target: int) -> bool:
        """Reserve a slot for a connect that fills the pool up to ``target`` connections."""
        # Critical section: as _reserve, but idle connections do not stop it.
        if len(self._idle) + len(self._in_use) + self._pending >= min(target, self._max):
            return False
        self._pending += 1
        return True

    def _connected(self, entry: _Entry, now: float, me: Optional[greenlet]) -> Optional[str]:
        """A connect in a reserved slot succeeded: ``me``'s connection (None: make it available).

        Returns None, or why the caller must close it instead: ``"pool_closed"`` (its slot is freed)
        or ``"forked"`` (opened by the parent's greenlet before a fork: kept as an orphan, never closed).
        """
        # Critical section: the reserved slot becomes a tracked connection.
        if entry.gen != self._gen:
            self._orphans[entry.key] = entry.conn
            return "forked"
        self._pending -= 1
        self._created += 1
        if self._closed:
            return "pool_closed"
        if me is None:
            self._make_available(entry, now)
        else:
            entry.holder = me
            entry.checked_out_at = now
            self._in_use[entry.key] = entry
        return None

    def _connect_failed(self, gen: int) -> None:
        """A connect in a reserved slot gave up: the slot goes to the oldest waiter."""
        if gen == self._gen:  # else the fork already forgot the parent's reservations
            self._pending -= 1
            self._grant_slot()

    # -- return ----------------------------------------------------------------------------------

    def release(self, conn: Any) -> None:
        """Return a connection taken with :meth:`acquire`.

        Calls its ``reset()`` when it has one (a failing reset, or a connection left unclean, drops
        it, logged); closes it instead when it outlived ``max_lifetime`` or ``max_usage``, or when
        the pool is closed. Never raises for those. Raises :class:`ConnectionNotFoundError` for a
        connection the pool does not track (foreign, or already released) and
        :class:`~gpool.ConnectionHeldError` when another live greenlet holds it, changing nothing.
        """
        # Inlined here, the one place it is (see acquire): the check-in of a connection its holder
        # gives back. The steps that may do I/O are gpool.Pool's (_prepare_return, _retire).
        entry = self._in_use.get(id(conn))
        # One identity test for the common case (a holder is of the pool's own thread, so that is
        # checked too); anything else (not ours, another holder) takes the checks that explain it.
        if entry is None or entry.holder is not getcurrent():
            entry = self._release_unheld(conn)
            if entry is None:
                return  # inherited from the parent process: forgotten
        if not entry.plain and not self._prepare_return(entry):
            return
        now = self._now()
        held = now - entry.checked_out_at
        self._released += 1
        if not self._idle:  # busy: keep the hold-time average that wait-or-connect decisions use
            avg = self._hold_avg
            self._hold_avg = held if avg == math.inf else avg + (held - avg) * EWMA_WEIGHT
        if self._timing:
            holds = self._use_hist.pending  # counted in bulk by the histogram's fold()
            holds.append(held)
            if len(holds) >= FOLD_AT:
                self._use_hist.fold()
        if now >= entry.retire_at:
            self._retire(entry, now)
            return
        # Critical section: on to its next user in one step (the oldest waiter, else the idle stack).
        entry.last_used_at = now
        fresh_until = now + entry.fresh_for
        entry.fast_until = fresh_until if fresh_until < entry.expires_at else entry.expires_at
        if self._waiters:
            self._hand_over(entry, now)  # it stays in the in-use map: only its holder changes
            return
        del self._in_use[entry.key]
        entry.holder = None
        self._idle.append(entry)

    def _release_unheld(self, conn: Any) -> Optional[_Entry]:
        raise NotImplementedError

    def _prepare_return(self, entry: _Entry) -> bool:
        raise NotImplementedError

    def _retire(self, entry: _Entry, now: float) -> None:
        raise NotImplementedError

    def _make_available(self, entry: _Entry, now: float) -> None:
        # Critical section (called from one): hand off to the oldest waiter, never via the idle stack.
        if not self._waiters:
            self._idle.append(entry)
            return
        self._in_use[entry.key] = entry
        self._hand_over(entry, now)

    def _hand_over(self, entry: _Entry, now: float) -> None:
        # Critical section (called from one): ``entry``, in the in-use map, becomes the oldest waiter's.
        waiter = self._waiters.popitem(last=False)[0]
        if not self._waiters:
            self._timer.disarm()
        entry.holder = waiter.greenlet
        entry.checked_out_at = now
        waiter.entry = entry
        waiter.state = _waiting.GOT_ENTRY
        wake(waiter)

    def _untrack(self, entry: _Entry) -> bool:
        """Forget a connection in use (to close it): False when it was no longer ours (dropped meanwhile)."""
        # Critical section: its slot is free the moment it is forgotten, before any close I/O.
        if self._in_use.get(entry.key) is not entry:
            return False
        del self._in_use[entry.key]
        entry.holder = None
        self._grant_slot()
        return True

    def _untrack_idle(self, conn: Any) -> Optional[_Entry]:
        """Forget the idle record of ``conn`` (to close it), or None when it is not idle."""
        for entry in self._idle:
            if entry.conn is conn:
                # Critical section: found and removed without a yield in between.
                self._idle.remove(entry)
                self._grant_slot()
                return entry
        return None

    def _take_expired(self, reason_of: Callable[[_Entry], Optional[str]]) -> list[tuple[_Entry, str]]:
        """Forget every idle connection ``reason_of`` (non-yielding) finds expired; the caller closes them."""
        # Critical section: the choice and the removal are one step.
        expired = [(entry, reason) for entry in self._idle if (reason := reason_of(entry)) is not None]
        if expired:
            gone = {id(entry) for entry, _ in expired}
            keep = [entry for entry in self._idle if id(entry) not in gone]
            self._idle.clear()
            self._idle.extend(keep)
            for _ in expired:
                self._grant_slot()
        return expired

    def _grant_slot(self) -> None:
        """Capacity went down by one: the oldest waiter gets the slot and will connect."""
        if self._waiters and not self._closed:
            waiter = self._waiters.popitem(last=False)[0]
            if not self._waiters:
                self._timer.disarm()
            self._pending += 1
            waiter.state = _waiting.GOT_SLOT
            wake(waiter)

    def _transfer(self, entry: _Entry, to: greenlet) -> None:
        entry.holder = to

    # -- waiting ---------------------------------------------------------------------------------

    def _enqueue(self, waiter: _Waiter) -> None:
        # Critical section: queued and covered by the deadline timer in one step.
        self._waiters[waiter] = None
        self._waits += 1
        at = waiter.grow_at if waiter.grow_at < waiter.deadline else waiter.deadline  # wake_at(), inlined
        if at < self._timer.at:
            self._timer.arm(waiter.loop, at)

    def _leave(self, waiter: _Waiter, now: float) -> Optional[_Entry]:
        """The waiter stops waiting (its deadline, an outer Timeout, a kill): pass on what it got.

        A slot goes to the next waiter; a connection to the next waiter or back to idle. Returns a
        connection the caller must close (the pool was closed meanwhile), else None.
        """
        # Critical section: whatever was granted and will not be used is passed on in one step.
        state, waiter.state = waiter.state, _waiting.GONE
        if state == _waiting.WAITING:
            self._waiters.pop(waiter, None)  # absent when a fork reset the queue
            if not self._waiters:
                self._timer.disarm()
        elif waiter.gen != self._gen:
            pass  # granted by the parent process: nothing of it is ours
        elif state == _waiting.GOT_ENTRY:
            entry = waiter.entry
            assert entry is not None
            if self._in_use.get(entry.key) is entry:
                del self._in_use[entry.key]
                entry.holder = None
                if self._closed:
                    return entry
                self._make_available(entry, now)
        elif state == _waiting.GOT_SLOT:
            self._pending -= 1
            self._grant_slot()
        return None

    def _grow(self, waiter: _Waiter) -> None:
        """A waiter's patience (``grow_at``) ran out: give it a slot, or let it wait on when full."""
        # Critical section: nothing is idle while anyone waits, so below the cap means a free slot.
        waiter.grow_at = math.inf
        if waiter.gen == self._gen and len(self._in_use) + self._pending < self._max:
            del self._waiters[waiter]
            if not self._waiters:
                self._timer.disarm()
            self._pending += 1
            waiter.state = _waiting.GOT_SLOT
        else:
            self._timer.arm_if_sooner(waiter.loop, waiter.deadline)  # its last fire was for grow_at

    def _deadlines_due(self, now: float) -> float:
        """Deadline timer callback (in the hub): wake the waiters that are due; return the next moment."""
        following = math.inf
        for waiter in self._waiters:
            at = waiter.wake_at()
            if at <= now:
                wake(waiter)  # it sees what is due: leaves, or connects
            elif at < following:
                following = at
        return following

    # -- the end, and fork -------------------------------------------------------------------------

    def _shut(self) -> tuple[list[_Entry], list[_Waiter]]:
        """Close the pool: returns the idle connections to close and the waiters woken (with CLOSED)."""
        # Critical section: from here on nothing is handed out.
        self._closed = True
        idle = list(self._idle)
        self._idle.clear()
        waiters = self._dismiss_waiters(_waiting.CLOSED)
        for entry in self._in_use.values():
            entry.retire_at = -math.inf  # closed when released
        return idle, waiters

    def _forget_parent(self) -> list[_Entry]:
        """In a forked child, right after fork: forget what the parent owns; returns it (to detach)."""
        # Critical section: no hub here at all; waking the parent's waiters waits for _after_fork.
        self._gen += 1
        inherited = [*self._idle, *self._in_use.values()]
        for entry in inherited:
            self._orphans[entry.key] = entry.conn
        self._idle.clear()
        self._in_use.clear()
        self._pending = 0
        self._forked = True
        self._reset_counters()
        return inherited

    def _after_fork(self) -> list[_Waiter]:
        """The child's first slow-path call: send the parent's waiters back to start over."""
        self._forked = False
        return self._dismiss_waiters(_waiting.RETRY)

    def _dismiss_waiters(self, state: int) -> list[_Waiter]:
        # Critical section (called from one): every waiter leaves the queue with ``state`` and is woken.
        waiters = list(self._waiters)
        self._waiters.clear()
        self._timer.disarm()
        for waiter in waiters:
            waiter.state = state
            wake(waiter)
        return waiters

    def _forget_orphan(self, conn: Any) -> bool:
        """Forget a connection inherited from the parent process; False when it is none of those."""
        return self._orphans.pop(id(conn), None) is not None

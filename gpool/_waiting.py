"""Waiting for a connection: the waiter record, waking it, the pool's one deadline timer.

Private to gpool: not the place to import from. The queue of waiters itself belongs to the state
machine (:mod:`gpool._state`), which alone decides who is granted what; this module holds the waiter
record (the pool parks it in ``Pool._wait``), wakes it, and keeps the one deadline timer.
"""

from __future__ import annotations

import math
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Optional

from greenlet import greenlet

if TYPE_CHECKING:
    from ._entry import _Entry

# Waiter states. A waiter is granted exactly once, by the greenlet that takes it off the queue,
# without yielding; the waiter then wakes and takes what it was given.
WAITING = 0
GOT_ENTRY = 1  # ``entry`` is the connection handed over, already tracked as in use by this waiter
GOT_SLOT = 2  # a slot was reserved for this waiter (pending += 1): it must connect or give it back
CLOSED = 3  # the pool was closed
RETRY = 4  # the process forked: start the acquisition again
GONE = 5  # left the queue (timed out, killed); nothing was granted


class _Waiter:
    """One parked acquisition. Hashable by identity: the queue is an ordered dict (O(1) removal)."""

    __slots__ = ("blocked", "deadline", "entry", "gen", "greenlet", "grow_at", "loop", "state")

    def __init__(self, glet: greenlet, gen: int, loop: Any, deadline: float, grow_at: float) -> None:
        self.greenlet = glet
        self.gen = gen
        #: the event loop of the waiting greenlet's hub: wake-ups are scheduled on it
        self.loop = loop
        #: when the wait gives up (monotonic); inf for none
        self.deadline = deadline
        #: when a waiter that queued by choice, below the cap, stops waiting and connects; inf for none
        self.grow_at = grow_at
        self.state = WAITING
        self.entry: Optional[_Entry] = None
        #: True only while the greenlet is parked in hub.switch(); a late wake-up must not resume
        #: the greenlet somewhere else
        self.blocked = False

    def wake_at(self) -> float:
        """The earliest moment this waiter must look at the clock again."""
        return self.grow_at if self.grow_at < self.deadline else self.deadline


def _resume(waiter: _Waiter) -> None:
    """Hub callback: resume a parked waiter (a no-op when it already resumed for another reason)."""
    if waiter.blocked:
        waiter.greenlet.switch()


def wake(waiter: _Waiter) -> None:
    """Schedule ``waiter`` to resume on its own hub's loop (never switches now: safe in a decision)."""
    waiter.loop.run_callback(_resume, waiter)


class DeadlineTimer:
    """One libev timer per pool, armed for the earliest waiter's deadline (or patience, ``grow_at``).

    A wait costs no timer of its own. When it fires, ``on_due(now)`` wakes whoever is due and returns
    the next moment to fire at (inf: nobody left), so a fire that finds nobody due (early, or its
    waiter already served) just re-arms.
    """

    __slots__ = ("_watcher", "at", "on_due")

    def __init__(self, on_due: Callable[[float], float]) -> None:
        self.on_due = on_due
        self.at = math.inf
        self._watcher: Any = None

    def arm(self, loop: Any, at: float) -> None:
        """(Re)start to fire at ``at`` (monotonic)."""
        if self._watcher is not None:
            self._watcher.close()
        self._watcher = loop.timer(max(at - monotonic(), 0.0))
        self.at = at
        self._watcher.start(self._fire, loop)

    def arm_if_sooner(self, loop: Any, at: float) -> None:
        """Arm for ``at`` unless already armed for that moment or sooner."""
        if at < self.at:
            self.arm(loop, at)

    def disarm(self) -> None:
        """Stop (an armed timer keeps the hub's loop, gevent.wait() and the process alive)."""
        watcher, self._watcher, self.at = self._watcher, None, math.inf
        if watcher is not None:
            watcher.close()

    @property
    def armed(self) -> bool:
        """Whether the timer will fire."""
        return self._watcher is not None

    def _fire(self, loop: Any) -> None:
        self.disarm()
        following = self.on_due(monotonic())
        if following < math.inf:
            self.arm(loop, following)

"""Private records the pool keeps: one per connection, one per waiting greenlet."""

from __future__ import annotations

from typing import Any, Callable, Optional

from greenlet import greenlet

from .connection import Connection


def _hook(conn: Any, name: str) -> Optional[Callable[..., Any]]:
    hook = getattr(conn, name, None)
    return hook if callable(hook) else None


class _Entry:
    """What the pool knows about one connection: timestamps, usage and its optional hooks.

    The hooks are looked up once, at creation, so checkout and release pay no ``getattr``.
    """

    __slots__ = (
        "checked_out_at",
        "close",
        "conn",
        "created_at",
        "expires_at",
        "fast_until",
        "fresh_for",
        "gen",
        "holder",
        "is_connected",
        "is_expired",
        "is_fatal",
        "key",
        "last_used_at",
        "leak_reported",
        "native",
        "reset",
        "retire_at",
        "stack",
        "usage",
    )

    def __init__(self, conn: Any, now: float, expires_at: float, gen: int) -> None:
        self.conn = conn
        #: the pool's key for it while in use: id(conn), computed once
        self.key = id(conn)
        self.created_at = now
        self.last_used_at = now
        self.checked_out_at = now
        #: the moment max_lifetime (with its jitter) is reached; inf when unlimited
        self.expires_at = expires_at
        #: a release at or after this moment closes the connection (lifetime, max_usage, pool closed)
        self.retire_at = expires_at
        #: until then a checkout needs neither an expiry nor a health check (the fast path)
        self.fast_until = now
        #: how long after a release the connection counts as fresh (set by the pool)
        self.fresh_for = 0.0
        #: where it was acquired and whether its leak was reported (leak_timeout only)
        self.stack: Any = None
        self.leak_reported = False
        self.gen = gen
        self.usage = 0
        self.holder: Optional[greenlet] = None
        self.native = isinstance(conn, Connection)
        self.close = _hook(conn, "close")
        self.is_connected = _hook(conn, "is_connected")
        self.reset = _hook(conn, "reset")
        if self.native and type(conn).reset is Connection.reset:
            self.reset = None  # the base no-op: skip the call on every release
        self.is_fatal = _hook(conn, "is_fatal")
        is_expired = _hook(conn, "is_expired")
        if (
            self.native
            and getattr(conn, "lifetime", None) is None
            and type(conn).is_expired is Connection.is_expired
        ):
            is_expired = None  # the base implementation with no lifetime can never say yes
        self.is_expired = is_expired


# Waiter states. A waiter is granted exactly once, by the greenlet that pops it from the queue,
# without yielding; the waiter then wakes and takes what it was given.
WAITING = 0
GOT_ENTRY = 1  # ``entry`` is the connection handed over, already tracked as in use by this waiter
GOT_SLOT = 2  # a slot was reserved for this waiter (pending += 1): it must connect or give it back
CLOSED = 3  # the pool was closed
RETRY = 4  # the process forked: start the acquisition again
GONE = 5  # left the queue (timed out, killed); nothing was granted


class _Waiter:
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


def wake(waiter: _Waiter) -> None:
    """Hub callback: resume a parked waiter (a no-op when it already resumed for another reason)."""
    if waiter.blocked:
        waiter.greenlet.switch()

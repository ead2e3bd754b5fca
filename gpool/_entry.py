"""The pool's private record of one connection: timestamps, usage, holder and its optional hooks.

Private to gpool: not the place to import from.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import gevent
from greenlet import greenlet

from .connection import Connection

log = logging.getLogger("gpool")

# Exceptions that end a greenlet. A Timeout firing while a connection closes in their wake must not
# replace them: the caller's `with gevent.Timeout` would swallow its own Timeout and the killed
# greenlet would run on.
_KILLS = (gevent.GreenletExit, KeyboardInterrupt, SystemExit)


def close_quietly(close: Callable[[], Any], name: str, during: Optional[BaseException]) -> None:
    """Call a connection's ``close``: errors are logged; a Timeout firing meanwhile is re-raised unless
    it would replace ``during``, a kill in flight (see ``_KILLS``). The kill guard lives only here."""
    try:
        close()
    except Exception:
        log.debug("pool %r: close() raised", name, exc_info=True)
    except gevent.Timeout:
        if not isinstance(during, _KILLS):
            raise


def _hook(conn: Any, name: str) -> Optional[Callable[..., Any]]:
    hook = getattr(conn, name, None)
    return hook if callable(hook) else None


class _Entry:
    """What the pool knows about one connection.

    The hooks are looked up once, at creation, so checkout and release pay no ``getattr``; a hook the
    connection does not have (or the base class's no-op) is None and costs one truth test.
    """

    __slots__ = (
        "checked_out_at",
        "close",
        "conn",
        "created_at",
        "dead_reported",
        "expires_at",
        "fast_until",
        "fresh_for",
        "gen",
        "health_check",
        "holder",
        "is_clean",
        "is_expired",
        "is_fatal",
        "key",
        "last_used_at",
        "leak_reported",
        "native",
        "plain",
        "reset",
        "retire_at",
        "settle",
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
        #: until then a checkout needs neither an expiry test nor a health check (the fast path)
        self.fast_until = now
        #: how long after a release the connection counts as fresh (set by the pool)
        self.fresh_for = 0.0
        #: where it was acquired and whether its leak (or its holder's death) was reported
        self.stack: Any = None
        self.leak_reported = False
        self.dead_reported = False
        self.gen = gen
        self.usage = 0
        self.holder: Optional[greenlet] = None
        self.native = isinstance(conn, Connection)
        #: nothing to run when it comes back (set by the pool once its hooks are known)
        self.plain = False
        self.close = _hook(conn, "close")
        self.is_clean = _hook(conn, "is_clean")
        # The yielding check, given the caller's remaining deadline; is_connected() is the older form.
        check = _hook(conn, "health_check")
        if check is None:
            connected = _hook(conn, "is_connected")
            if connected is not None:
                check = lambda timeout: connected()  # noqa: E731 - bounded by the pool's own Timeout
        self.health_check: Optional[Callable[[Optional[float]], Any]] = check
        self.reset = _hook(conn, "reset")
        #: completes, at checkout, what reset() left on the wire (see gpool.Pool's connection protocol)
        self.settle: Optional[Callable[[Optional[float]], Any]] = _hook(conn, "settle")
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

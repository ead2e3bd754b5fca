"""``GeventPool``: a SQLAlchemy pool class whose connection records live in a gpool core pool.

``pip install gpool[sqlalchemy]`` (SQLAlchemy >= 2.0), then::

    engine = create_engine("mysql+pymysql://...", poolclass=GeventPool, pool_size=10, pool_timeout=30)

The division of labour: SQLAlchemy keeps its connection records (``_ConnectionRecord``) and does
what it does with them: ``pool_pre_ping``, ``pool_recycle``, reset on return, pool events,
invalidation (an invalidated record reconnects inside its slot on its next checkout, so the cap
holds). The gpool core holds one slot per record and decides who gets which: FIFO hand-off, the
``pool_timeout`` deadline, safety against ``gevent.Timeout`` and kills while waiting, the
zero-round-trip socket check, idle expiry, fork safety, stats and Prometheus.

Not the place to import gevent-unaware code from: this module is imported only by users of
SQLAlchemy; ``import gpool`` never imports it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Optional

from gevent import getcurrent

# Absolute imports (Python 3): this is SQLAlchemy, not this module.
from sqlalchemy import exc as _sa_exc
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.pool import Pool as _SAPool

from .connection import socket_is_clean
from .errors import ConnectionNotFoundError, PoolClosedError, PoolError, PoolExhaustedError
from .options import PoolOptions, check_number
from .pool import Pool
from .stats import PoolStats

__all__ = ["GeventPool"]

log = logging.getLogger("gpool.sqlalchemy")

# gpool.Pool keywords that GeventPool sets itself, from SQLAlchemy's own arguments, or that make no
# sense for records SQLAlchemy manages (its pool events are the hooks here).
_OWN_OPTIONS = {
    "max_connections": "use pool_size",
    "timeout": "use pool_timeout",
    "on_connect": "use SQLAlchemy's 'connect' pool event",
    "on_checkout": "use SQLAlchemy's 'checkout' pool event",
    "on_checkin": "use SQLAlchemy's 'checkin' pool event",
    "on_drop": "use SQLAlchemy's 'close' pool event",
}
_CORE_OPTIONS = frozenset(field.name for field in dataclasses.fields(PoolOptions)) - set(_OWN_OPTIONS)


class _Slot:
    """What the core pool holds: one SQLAlchemy connection record, and the hooks the core calls.

    Built by the core's factory, so the record connects inside the slot the core reserved for it.
    """

    __slots__ = ("core", "detached", "holder", "owner", "record")

    def __init__(self, owner: GeventPool, core: Pool[_Slot]) -> None:
        self.owner = owner
        self.core = core  # the core that holds it: dispose() replaces the pool's core
        self.holder: Any = None  # the greenlet _do_get handed the record to
        self.detached = False
        self.record = owner._create_connection()  # connects: SQLAlchemy's creator and 'connect' events
        owner._slots[id(self.record)] = self

    def is_clean(self) -> bool:
        """The zero-round-trip check the core makes at every handout: nothing unread, peer not gone. Never yields.

        True for a record without a connection (invalidated: it reconnects at checkout, in this
        slot) and for drivers and TLS connections where the check cannot be made. PyMySQL only.
        """
        dbapi = self.record.dbapi_connection
        if dbapi is None:
            return True
        try:
            sock = dbapi._sock  # PyMySQL: None once it closed the connection itself
        except AttributeError:
            return True  # another driver: no socket to look at without a round trip
        if sock is None:
            return False
        return hasattr(sock, "getpeercert") or socket_is_clean(sock)

    def close(self) -> None:
        """The core discards the slot: close the record's connection (SQLAlchemy's 'close' event fires)."""
        self.owner._slots.pop(id(self.record), None)
        self.record.close()

    def detach(self) -> None:
        """In a forked child: close this process's copy of the socket, with no goodbye on the wire."""
        self.detached = True
        dbapi: Any = self.record.dbapi_connection
        sock, rfile = getattr(dbapi, "_sock", None), getattr(dbapi, "_rfile", None)
        if sock is None:
            return
        dbapi._sock = dbapi._rfile = None
        if rfile is not None:
            rfile.raw.close()  # else the socket's fd stays open: makefile() holds a reference to it
        sock.close()


class GeventPool(_SAPool):
    """A ``sqlalchemy.pool.Pool`` for gevent: ``create_engine(url, poolclass=GeventPool, pool_size=10)``.

    ``pool_size`` is the hard cap on connections (there is no overflow: ``max_overflow`` other than
    0 raises ``ValueError``); connections open on demand and close after gpool's ``idle_timeout``
    (600 s) idle. Callers wait in FIFO order and a returned connection goes straight to the oldest
    waiter. A checkout waits at most ``pool_timeout`` seconds (``None``: forever) in all, then raises
    ``sqlalchemy.exc.TimeoutError`` whose message carries the pool's numbers and whose cause is
    gpool's :class:`~gpool.PoolExhaustedError`. When connecting failed (after gpool's connect
    retries), the driver's error is raised instead, which the engine wraps as
    ``sqlalchemy.exc.OperationalError`` as with any pool.

    ``pool_recycle``, ``pool_pre_ping``, ``pool_reset_on_return``, ``echo_pool``,
    ``pool_logging_name`` and pool events work as SQLAlchemy documents them. ``gpool_options`` passes
    :class:`gpool.Pool` keywords (``idle_timeout``, ``max_lifetime``, ``max_waiting``, ``name``,
    ``initial_connections``, ``leak_timeout``, ``timing_stats``, ``retry``...; not
    ``max_connections``, ``timeout`` or the hooks, which have SQLAlchemy equivalents).

    :meth:`dispose` closes idle connections now and those checked out when they come back; the pool
    stays usable (a fresh core). :meth:`stats` is gpool's :class:`~gpool.PoolStats`; a
    :class:`gpool.prometheus.PoolCollector` takes this pool as it is. Works only under gevent
    (monkey-patched processes, gunicorn ``-k gevent``): its waits are greenlet waits.
    """

    _is_asyncio = False

    def __init__(
        self,
        creator: Any,
        pool_size: int = 5,
        max_overflow: Optional[int] = None,
        timeout: Optional[float] = 30.0,
        gpool_options: Optional[dict[str, Any]] = None,
        **kw: Any,
    ) -> None:
        check_number("pool_size", pool_size, integer=True, positive=True)
        if max_overflow not in (None, 0):
            total = pool_size + max_overflow if isinstance(max_overflow, int) and max_overflow > 0 else None
            hint = f"pool_size={total}" if total is not None else "a larger pool_size"
            raise ValueError(
                f"max_overflow must be 0 or None with GeventPool, got {max_overflow!r}: pool_size is its one "
                f"hard cap, and connections opened above it under load and closed on return are the connect "
                f"churn this pool avoids; set {hint} instead (connections beyond the ones in use close after "
                f"gpool's idle_timeout)")
        check_number("timeout", timeout, allow_none=True)
        options = dict(gpool_options or {})
        for key in options:
            if key in _OWN_OPTIONS:
                raise ValueError(f"gpool_options: {key!r} cannot be set here: {_OWN_OPTIONS[key]}")
            if key not in _CORE_OPTIONS:
                raise TypeError(f"gpool_options: unknown gpool.Pool option {key!r}")
        # pool_recycle is the lifetime here: SQLAlchemy recycles a record inside its slot.
        options.setdefault("max_lifetime", None)
        super().__init__(creator, **kw)
        if "name" not in options:
            options["name"] = self._orig_logging_name or f"sqlalchemy-{id(self):x}"
        self._pool_size = pool_size
        self._timeout = timeout
        self._gpool_options = options
        self._slots: dict[int, _Slot] = {}  # id(record) -> its slot, for every record a core may hold
        self._core = self._new_core()

    def _new_core(self) -> Pool[_Slot]:
        core: Pool[_Slot]

        def factory() -> _Slot:
            return _Slot(self, core)

        core = Pool(factory, max_connections=self._pool_size, timeout=self._timeout, **self._gpool_options)
        return core

    # -- sqlalchemy.pool.Pool API ---------------------------------------------------------------------

    def _do_get(self) -> ConnectionPoolEntry:
        """Take a record from the core: FIFO, within ``pool_timeout``, connecting in a reserved slot."""
        start = time.monotonic()
        timeout = self._timeout
        while True:
            core = self._core
            failed: Optional[BaseException] = None
            try:
                slot = core.acquire(timeout)
            except PoolExhaustedError as exc:
                cause = exc.__cause__
                if cause is None or isinstance(cause, (PoolError, TimeoutError)):
                    limit = "none" if self._timeout is None else f"{self._timeout:.2f}"
                    raise _sa_exc.TimeoutError(f"GeventPool {exc} (pool_timeout {limit})", code="3o7r") from exc
                failed = cause
            except PoolClosedError:
                if core is self._core:
                    raise
                # dispose() replaced the core while we waited on the old one: wait on the new one.
                if timeout is not None:
                    timeout = max(0.0, self._timeout - (time.monotonic() - start))  # type: ignore[operator]
                continue
            if failed is not None:
                # Connecting failed (after gpool's retries): the driver's error, raised here outside the
                # except block so that its own chain stays as it is; the engine wraps it as
                # OperationalError, as with any pool.
                raise failed
            slot.holder = getcurrent()
            return slot.record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        """Give the record's slot back to its core (SQLAlchemy reset it already)."""
        slot = self._slots.get(id(record))
        if slot is None or slot.record is not record:
            log.warning("pool %r: a connection record it does not hold came back: closed", self.name)
            record.close()
            return
        if slot.detached:  # the parent's, returned in a forked child: the core forgets it
            del self._slots[id(record)]
        core, me = slot.core, getcurrent()
        holder = slot.holder
        if holder is not None and holder is not me and not holder.dead:
            # Returned by another greenlet than the live one that checked it out: a Connection or Session
            # closed by another greenlet, or SQLAlchemy's finalizer of a garbage-collected connection,
            # which runs wherever the collection happens. SQLAlchemy's fairy, not the greenlet, owns a
            # record (it refuses a double checkin itself), so the returning greenlet takes it over.
            # Pool.transfer() is for the holder to call; this is the holder's claim made void.
            entry = core._in_use.get(id(slot))
            if entry is not None:
                core._transfer(entry, me)
        slot.holder = None
        try:
            core.release(slot)
        except ConnectionNotFoundError:
            log.warning("pool %r: a connection record was returned twice: ignored", self.name)

    def dispose(self) -> None:
        """Close idle connections now and checked-out ones when they come back; the pool stays usable.

        Greenlets waiting for a connection go on waiting, on the pool's new, empty core.
        """
        old, self._core = self._core, self._new_core()
        old.close()
        self.logger.info("Pool disposed. %s", self.status())

    def recreate(self) -> GeventPool:
        """A new, empty GeventPool with the same arguments and event listeners (``engine.dispose()``)."""
        self.logger.info("Pool recreating")
        options = dict(self._gpool_options)
        if self._orig_logging_name is None:
            del options["name"]  # the new pool gets its own default name
        return self.__class__(
            self._creator,
            pool_size=self._pool_size,
            timeout=self._timeout,
            gpool_options=options,
            recycle=self._recycle,
            echo=self.echo,
            logging_name=self._orig_logging_name,
            reset_on_return=self._reset_on_return,
            pre_ping=self._pre_ping,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )

    def status(self) -> str:
        """One line: the cap, the connections by state and the waiters."""
        s = self._core.stats()
        return (f"GeventPool {s.name!r}: pool size {s.max_connections}, connections {s.size} "
                f"(idle {s.idle}, checked out {s.in_use}, connecting {s.connecting}), waiting {s.waiting}")

    def size(self) -> int:
        """The cap (``pool_size``), as ``QueuePool.size()``."""
        return self._pool_size

    def timeout(self) -> Optional[float]:
        """``pool_timeout``, as ``QueuePool.timeout()``."""
        return self._timeout

    def checkedin(self) -> int:
        """Idle connections."""
        return self._core.stats().idle

    def checkedout(self) -> int:
        """Connections checked out now."""
        return self._core.stats().in_use

    def overflow(self) -> int:
        """Always 0: there is no overflow (as ``QueuePool.overflow()`` for monitoring code)."""
        return 0

    # -- gpool API --------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name in gpool's errors, logs and metrics (``pool_logging_name`` when given)."""
        return self._core.name

    @property
    def pool(self) -> Pool[Any]:
        """The gpool core :class:`~gpool.Pool` in use now (:meth:`dispose` replaces it)."""
        return self._core

    def stats(self, reset: bool = False) -> PoolStats:
        """gpool's frozen :class:`~gpool.PoolStats` snapshot; ``reset=True`` restarts the counters after it."""
        return self._core.stats(reset)

    def __repr__(self) -> str:
        s = self._core.stats()
        return (f"<{type(self).__module__}.{type(self).__name__} {s.name!r} size={s.size}/{s.max_connections} "
                f"idle={s.idle} in_use={s.in_use} waiting={s.waiting}>")

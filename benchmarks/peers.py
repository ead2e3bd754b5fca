"""Thin ``acquire()``/``release()`` adapters over gpool and the pools users would pick instead.

Cases 1, 2 and 5 run every pool over the same no-op resource; only the shape of that resource
changes (each peer calls different hooks on it), never what the hooks cost: they all do nothing,
apart from the connect delay of case 5. Each adapter counts the resources it had to create.

Import this module only after ``monkey.patch_all()``: several peers build their locks from the
``threading`` module at construction.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from importlib import metadata
from typing import Any, Callable, Optional

import gevent

#: acquire timeout given to every pool that has one: longer than any measurement window, so a
#: timeout is a real failure to serve and not an artefact of the set-up
ACQUIRE_TIMEOUT = 10.0


class Adapter:
    """One pool under test: ``acquire()`` returns a resource, ``release(r)`` gives it back."""

    #: the name in tables and JSON
    name = ""
    #: distributions whose versions the report shows
    dists: tuple[str, ...] = ()
    #: what a reader must know to read its figures
    note = ""

    def __init__(self, size: int, connect_delay: float = 0.0, prefill: bool = True) -> None:
        self.size = size
        self.connect_delay = connect_delay
        self.created = 0
        self.acquire: Callable[[], Any]
        self.release: Callable[[Any], None]
        self._build()
        if prefill:
            self._prefill()

    def _build(self) -> None:
        raise NotImplementedError

    def _connected(self) -> None:
        """Called by every resource constructor: count it and pay the connect delay."""
        self.created += 1
        if self.connect_delay:
            gevent.sleep(self.connect_delay)

    def _prefill(self) -> None:
        # Cases 1 and 2 measure hand-outs, not connects: open all M first, through the pool itself.
        taken = [self.acquire() for _ in range(self.size)]
        for r in taken:
            self.release(r)

    def close(self) -> None:
        pass


class _Plain:
    """The no-op resource for pools that call no hooks; only ``close()``, which gpool looks up once."""

    __slots__ = ()

    def close(self) -> None:
        pass


# -- floors and bare primitives --------------------------------------------------------------------


class QueueFloor(Adapter):
    """``gevent.queue.Queue`` of M resources: the floor of cases 1 and 2.

    With ``prefill`` (cases 1-2) the bound methods of the queue are the whole pool. Without (case 5)
    it holds M ``None`` placeholders, replaced by a connect on first use, the way redis-py does.
    """

    name = "gevent.queue.Queue"
    dists = ("gevent",)
    note = "floor (cases 1-2); no fairness"
    queue_class_name = "Queue"

    def _build(self) -> None:
        import gevent.queue

        cls = getattr(gevent.queue, self.queue_class_name)
        q = cls()
        self._queue = q
        for _ in range(self.size):
            q.put(None)

        def acquire() -> Any:
            r = q.get()
            if r is None:
                try:
                    r = self._make()
                except BaseException:
                    q.put(None)
                    raise
            return r

        self.acquire = acquire
        self.release = q.put

    def _make(self) -> _Plain:
        self._connected()
        return _Plain()

    def _prefill(self) -> None:
        q = self._queue
        while q.qsize():
            q.get()
        for _ in range(self.size):
            q.put(self._make())
        self.acquire = q.get  # no placeholders left: the bare queue


class LifoQueuePeer(QueueFloor):
    name = "gevent.queue.LifoQueue"
    note = "no fairness"
    queue_class_name = "LifoQueue"


class SemaphoreList(Adapter):
    """``gevent.lock.BoundedSemaphore(M)`` guarding a list of idle resources."""

    name = "BoundedSemaphore+list"
    dists = ("gevent",)
    note = ""

    def _build(self) -> None:
        from gevent.lock import BoundedSemaphore

        sem = BoundedSemaphore(self.size)
        idle: list[Any] = []
        make = self._make

        def acquire() -> Any:
            sem.acquire()
            if idle:
                return idle.pop()
            try:
                return make()
            except BaseException:
                sem.release()
                raise

        def release(r: Any) -> None:
            idle.append(r)
            sem.release()

        self.acquire = acquire
        self.release = release

    def _make(self) -> _Plain:
        self._connected()
        return _Plain()


class FifoHandOff:
    """The least a fair pool must do: a released resource goes to the oldest waiter, through the hub.

    A reference, not a usable pool (no timeouts, no cancellation, no creation): it shows what part
    of a fair pool's cost under contention is the hand-off itself and what part is bookkeeping.
    """

    def __init__(self, resources: list[Any]) -> None:
        from collections import deque

        from gevent import getcurrent
        from gevent.hub import get_hub

        idle: Any = deque(resources)
        waiters: Any = deque()
        hub = get_hub()
        run_callback = hub.loop.run_callback

        def acquire() -> Any:
            if idle:  # never idle while someone waits: release hands over first
                return idle.pop()
            slot = [getcurrent(), None]
            waiters.append(slot)
            while slot[1] is None:
                hub.switch()
            return slot[1]

        def release(r: Any) -> None:
            if waiters:
                slot = waiters.popleft()
                slot[1] = r
                run_callback(slot[0].switch)
            else:
                idle.append(r)

        self.acquire = acquire
        self.release = release


class FairReference(Adapter):
    name = "reference: minimal FIFO hand-off"
    dists = ("gevent",)
    note = "not a pool: the least a fair hand-off costs, in pure Python"

    def _build(self) -> None:
        fifo = FifoHandOff([self._make() for _ in range(self.size)])
        self.acquire = fifo.acquire
        self.release = fifo.release

    def _make(self) -> _Plain:
        self._connected()
        return _Plain()

    def _prefill(self) -> None:
        pass  # built full


# -- gpool ---------------------------------------------------------------------------------------------


class GPool(Adapter):
    name = "gpool"
    dists = ("gpool",)
    note = "defaults apart from max_connections and timeout"

    def _build(self) -> None:
        from gpool import Pool

        self._pool: Any = Pool(self._make, max_connections=self.size, timeout=ACQUIRE_TIMEOUT, name="bench")
        self.acquire = self._pool.acquire
        self.release = self._pool.release

    def _make(self) -> _Plain:
        self._connected()
        return _Plain()

    def close(self) -> None:
        self._pool.close()


# -- peers ---------------------------------------------------------------------------------------------


class GSocketPool(Adapter):
    name = "gsocketpool"
    dists = ("gsocketpool",)
    note = "polls sleep(0.1) x10 then raises"

    def _build(self) -> None:
        from gsocketpool import Pool
        from gsocketpool.connection import Connection

        adapter = self

        class Conn(Connection):
            def __init__(self) -> None:
                self._open = False

            def open(self) -> None:
                adapter._connected()
                self._open = True

            def close(self) -> None:
                self._open = False

            def is_connected(self) -> bool:
                return self._open

            def is_expired(self) -> bool:
                return False

        self._pool = Pool(Conn, {}, initial_connections=0, max_connections=self.size,
                          reap_expired_connections=False)
        self.acquire = self._pool.acquire
        self.release = self._pool.release


class SocketPool(Adapter):
    name = "socketpool"
    dists = ("socketpool",)
    note = "never waits: connects past max_size, caps only idle"

    def _build(self) -> None:
        from socketpool import ConnectionPool
        from socketpool.conn import Connector

        adapter = self

        class Conn(Connector):
            def __init__(self, backend_mod: Any = None, pool: Any = None, **_: Any) -> None:
                adapter._connected()
                self._life = time.time()
                self._connected = True

            def matches(self, **_: Any) -> bool:
                return True

            def is_connected(self) -> bool:
                return self._connected

            def handle_exception(self, exception: BaseException) -> None:
                pass

            def get_lifetime(self) -> float:
                return self._life

            def invalidate(self) -> None:
                self._connected = False

            def __lt__(self, other: Any) -> bool:  # the priority queue compares equal lifetimes' items
                return id(self) < id(other)

        self._pool = ConnectionPool(Conn, max_size=self.size, backend="gevent", reap_connections=False,
                                    max_lifetime=3600.0)
        self.acquire = self._pool.get
        self.release = self._pool.release_connection


class _FakeDBAPIError(Exception):
    pass


class _FakeDBAPIConnection:
    """What DBUtils and SQLAlchemy call on a DB-API connection, as no-ops."""

    __slots__ = ()

    def close(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def ping(self, reconnect: bool = False) -> bool:
        return True

    def cursor(self) -> Any:
        raise NotImplementedError


class DBUtilsPooledDB(Adapter):
    name = "DBUtils PooledDB"
    dists = ("DBUtils",)
    note = "blocking=True; defaults (ping on checkout, rollback on return)"

    def _build(self) -> None:
        from dbutils.pooled_db import PooledDB

        def creator() -> _FakeDBAPIConnection:
            self._connected()
            return _FakeDBAPIConnection()

        creator.threadsafety = 1  # type: ignore[attr-defined]  # what a DB-API module would declare
        self._pool = PooledDB(creator, maxconnections=self.size, maxcached=self.size, blocking=True,
                              failures=(_FakeDBAPIError,))
        self.acquire = self._pool.connection

        def release(con: Any) -> None:
            con.close()

        self.release = release

    def close(self) -> None:
        self._pool.close()


class SQLAlchemyQueuePool(Adapter):
    name = "SQLAlchemy QueuePool"
    dists = ("SQLAlchemy",)
    note = "pool_size=M, max_overflow=0; defaults (rollback on return)"

    def _build(self) -> None:
        from sqlalchemy.pool import QueuePool

        def creator() -> _FakeDBAPIConnection:
            self._connected()
            return _FakeDBAPIConnection()

        self._pool = QueuePool(creator, pool_size=self.size, max_overflow=0, timeout=ACQUIRE_TIMEOUT)
        self.acquire = self._pool.connect

        def release(fairy: Any) -> None:
            fairy.close()

        self.release = release

    def close(self) -> None:
        self._pool.dispose()


class RedisBlockingPool(Adapter):
    name = "redis-py BlockingConnectionPool"
    dists = ("redis",)
    note = "its checkout mechanics over a no-op connection class"

    def _build(self) -> None:
        import redis

        adapter = self

        class Conn:
            """The part of ``redis.Connection`` the pool calls on checkout and release."""

            def __init__(self, **_: Any) -> None:
                self.pid = os.getpid()
                self._sock: Any = None

            def connect(self) -> None:
                if self._sock is None:
                    adapter._connected()
                    self._sock = True

            def can_read(self, timeout: float = 0) -> bool:
                return False

            def disconnect(self, *args: Any) -> None:
                self._sock = None

            def should_reconnect(self) -> bool:
                return False

            def __getattr__(self, name: str) -> Any:  # maintenance-notification hooks and the like
                raise AttributeError(name)

        self._pool = redis.BlockingConnectionPool(max_connections=self.size, timeout=ACQUIRE_TIMEOUT,
                                                  connection_class=Conn)
        self.acquire = self._pool.get_connection
        self.release = self._pool.release


class GenericConnectionPool(Adapter):
    name = "generic-connection-pool"
    dists = ("generic-connection-pool",)
    note = "threading flavour (monkey-patched locks)"

    def _build(self) -> None:
        from generic_connection_pool.threading import BaseConnectionManager, ConnectionPool

        adapter = self

        class Manager(BaseConnectionManager[str, Any]):
            def create(self, endpoint: str, timeout: Optional[float] = None) -> Any:
                adapter._connected()
                return _Plain()

            def dispose(self, endpoint: str, conn: Any, timeout: Optional[float] = None) -> None:
                pass

        self._pool: Any = ConnectionPool(Manager(), acquire_timeout=ACQUIRE_TIMEOUT, min_idle=self.size,
                                         max_size=self.size, total_max_size=max(self.size, 100),
                                         idle_timeout=600.0)
        pool = self._pool

        def acquire() -> Any:
            return pool.acquire("noop")

        def release(conn: Any) -> None:
            pool.release(conn, "noop")

        self.acquire = acquire
        self.release = release

    def close(self) -> None:
        self._pool.close(timeout=1.0)


class ConnectPerRequest(Adapter):
    """No pool: connect on every acquire, close on release. The reference of case 5."""

    name = "connect per request"
    dists = ()
    note = "reference of case 5: every demand connects at once"

    def _build(self) -> None:
        def acquire() -> _Plain:
            self._connected()
            return _Plain()

        self.acquire = acquire
        self.release = _Plain.close

    def _prefill(self) -> None:
        pass


#: every pool of cases 1, 2 and 5, the floor first
ADAPTERS: dict[str, type[Adapter]] = {
    cls.name: cls
    for cls in (
        QueueFloor,
        FairReference,
        LifoQueuePeer,
        SemaphoreList,
        GPool,
        GSocketPool,
        SocketPool,
        DBUtilsPooledDB,
        SQLAlchemyQueuePool,
        RedisBlockingPool,
        GenericConnectionPool,
        ConnectPerRequest,
    )
}
FLOOR = QueueFloor.name


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def all_dists() -> Iterator[str]:
    seen = set()
    for cls in ADAPTERS.values():
        for dist in cls.dists:
            if dist not in seen:
                seen.add(dist)
                yield dist

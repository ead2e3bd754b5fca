"""``SentinelRedisPool``: a :class:`RedisPool` whose server is whatever Redis Sentinel says it is."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from time import monotonic
from typing import Any, Optional

import gevent

# Absolute imports (Python 3): this is redis-py, not this module.
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as _RedisConnectionError
from redis.retry import Retry
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
    SlaveNotFoundError,
)

from ..errors import ConnectionNotFoundError
from ..options import check_number
from ..stats import PoolStats
from ._pool import RedisPool
from ._sentinel_watch import (
    DEFAULT_SENTINEL_TIMEOUT,
    Address,
    _Answer,
    _ask_sentinels,
    _MasterView,
    _Round,
    _SwitchWatcher,
    watcher_for,
)
from ._url import _parse_url

log = logging.getLogger("gpool.redis")



@dataclass(frozen=True)
class SentinelStats:
    """What :meth:`SentinelRedisPool.sentinel_stats` reports (a snapshot; the pool's own gauges and
    counters are in :meth:`~SentinelRedisPool.stats`)."""

    #: the Sentinel service name
    service_name: str
    #: ``"master"`` or ``"replica"``
    role: str
    #: where the pool writes (the current master), None before the first resolution
    master_address: Optional[Address]
    #: the config epoch of the master the pool believes in (-1 before the first resolution)
    config_epoch: int
    #: the replicas a replica pool spreads its connections over
    replicas: tuple[Address, ...]
    #: how many times the master changed under the pool (announced or found by a resolution)
    master_switches: int
    #: ``time.time()`` of the last switch, None if none
    last_switch_at: Optional[float]
    #: seconds since the last switch, None if none
    seconds_since_switch: Optional[float]
    #: resolution rounds (every sentinel asked at once) and those where no sentinel gave a usable answer
    resolutions: int
    resolution_failures: int
    #: sentinels the pool hears ``+switch-master`` from, out of ``sentinels``
    sentinels_subscribed: int
    sentinels: int


class _SentinelConnection:
    """Mixed into redis-py's ``SentinelManagedConnection``: every socket open asks the pool where to.

    redis-py's own ``connect()`` goes through ``connect_to(address)``; a reconnect redis-py makes by
    itself (a lazy one in ``send_packed_command``, a ``Retry``) calls ``_connect()`` with the old
    ``host``/``port`` (redis-py#3874): here it resolves too. The address is recorded once the socket
    is open, for the pool's one-compare check at every checkout.
    """

    connection_pool: SentinelRedisPool
    _gpool_target: Optional[Address] = None
    #: where the socket was opened (None before the first connect)
    _gpool_address: Optional[Address] = None

    def connect_to(self, address: Address) -> None:
        self._gpool_target = address
        try:
            super().connect_to(address)  # type: ignore[misc]
        finally:
            self._gpool_target = None

    def _connect(self) -> Any:
        target = self._gpool_target
        if target is not None:
            sock = super()._connect()  # type: ignore[misc]
            self._gpool_address = target
            return sock
        # A reconnect redis-py makes by itself: the replicas in turn, as connect() would.
        error: Optional[OSError] = None
        for address in self.connection_pool._reconnect_addresses():
            self.host, self.port = address
            try:
                sock = super()._connect()  # type: ignore[misc]
            except OSError as exc:
                error = exc
                continue
            self._gpool_address = address
            return sock
        raise error if error is not None else OSError("no address to connect to")


_sentinel_classes: dict[type, type] = {}


def _sentinel_class(cls: Any) -> type:
    if not (isinstance(cls, type) and issubclass(cls, SentinelManagedConnection)):
        raise TypeError(f"connection_class must be a redis.sentinel.SentinelManagedConnection subclass, "
                        f"got {cls!r}")
    if issubclass(cls, _SentinelConnection):
        return cls
    made = _sentinel_classes.get(cls)
    if made is None:
        made = type(cls.__name__, (_SentinelConnection, cls), {"__module__": "gpool.redis"})
        _sentinel_classes[cls] = made
    return made


def _role_of(reply: Any) -> str:
    role = reply[0] if isinstance(reply, (list, tuple)) and reply else reply
    if isinstance(role, bytes):
        role = role.decode("ascii", "replace")
    return str(role)


class SentinelRedisPool(RedisPool):
    """A :class:`RedisPool` for a Redis Sentinel service: the master (or its replicas) follows failovers.

    The constructor is redis-py's ``SentinelConnectionPool``'s, so
    ``redis.sentinel.Sentinel([...]).master_for("mymaster", connection_pool_class=SentinelRedisPool,
    max_connections=10)`` returns a ``redis.Redis`` on a gpool pool (and ``slave_for`` a replica one).
    ``sentinel_manager`` is that ``Sentinel``; every other keyword is :class:`RedisPool`'s, except
    ``host``/``port``, which the sentinels give.

    * Every socket open resolves the address: every sentinel is asked at once (bounded by the
      sentinels' ``socket_timeout``, 1 s when they have none); answers rank by config epoch, settled
      above failover-in-progress; the pool never goes back to a lower epoch. After the handshake,
      ``ROLE`` must say ``master`` (``slave`` for a replica pool), else the connect failed and is
      retried with backoff within the caller's ``timeout``.
    * A watcher (one per ``Sentinel``, shared by its pools) listens to ``+switch-master`` on every
      sentinel: at the first message idle connections to the old master are closed, those in use
      when they come back, and no connection to another address than the current master is handed
      out. Without pub/sub it re-resolves at most every ``check_interval``.
    * While no master is known (an election: ``MasterNotFoundError``; every sentinel down),
      commands wait and retry until ``timeout``, then raise :class:`RedisPoolExhaustedError` (a
      ``redis.ConnectionError``) with the last ``MasterNotFoundError`` as cause.
    * A replica pool (``is_master=False``) spreads its connections round robin over the healthy
      replicas; a replica promoted to master leaves it; it uses the master only with
      ``fallback_to_master=True``. Writes through it raise redis-py's ``ReadOnlyError``.
    * No command is retried unless you pass redis-py's ``retry``; a retry's reconnect resolves the
      address again. Pub/sub subscriptions are not re-made on the new master.

    ``check_connection`` is accepted for redis-py compatibility (a ``PING`` after connecting; the
    ``ROLE`` check already makes a round trip). After :meth:`close` commands raise
    :class:`RedisPoolClosedError` and the watcher stops once no pool of its ``Sentinel`` is left.
    """

    def __init__(
        self,
        service_name: str,
        sentinel_manager: Any,
        *,
        is_master: bool = True,
        check_connection: bool = False,
        fallback_to_master: bool = False,
        connection_class: Optional[type] = None,
        name: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(service_name, str) or not service_name:
            raise (TypeError if not isinstance(service_name, str) else ValueError)(
                f"service_name must be a non-empty string, got {service_name!r}")
        if not isinstance(getattr(sentinel_manager, "sentinels", None), list):
            raise TypeError(f"sentinel_manager must be a redis.sentinel.Sentinel, "
                            f"got {type(sentinel_manager).__name__}")
        for key in ("host", "port", "path"):
            if key in kwargs:
                raise TypeError(f"{key}: a SentinelRedisPool connects where the sentinels say")
        ssl = kwargs.pop("ssl", False)
        if not isinstance(ssl, bool):
            raise TypeError(f"ssl must be a bool, got {ssl!r}")
        if connection_class is None:
            connection_class = SentinelManagedSSLConnection if ssl else SentinelManagedConnection
        connection_class = _sentinel_class(connection_class)
        check_interval = kwargs.get("check_interval", 1.0)
        if check_interval is not None:
            check_number("check_interval", check_interval)
        kwargs.setdefault("connect_retries", None)  # an election takes seconds: retry until ``timeout``

        self.service_name = service_name
        self.sentinel_manager = sentinel_manager
        self.check_connection = bool(check_connection)
        self.fallback_to_master = bool(fallback_to_master)
        self._is_master = bool(is_master)
        self._poll_interval = float(check_interval) if check_interval else 1.0
        self._view = _MasterView()
        self._current: Optional[Address] = None  # == self._view.address, kept for the checkout compare
        self._replicas: tuple[Address, ...] = ()
        self._replica_set: frozenset[Address] = frozenset()
        self._replicas_at = -math.inf
        self._rr = random.randrange(1 << 16)  # where the replica rotation starts: pools do not all pick the same
        self._round: Optional[gevent.Greenlet] = None
        self._round_done_at = -math.inf
        self._watcher: Optional[_SwitchWatcher] = None
        self._owns_manager = False
        self._switches = 0
        self._last_switch_at: Optional[float] = None
        self._last_switch_mono: Optional[float] = None
        self._rounds = 0
        self._round_failures = 0
        role = "master" if self._is_master else "replica"
        super().__init__(connection_class=connection_class,
                         name=name if name is not None else f"sentinel:{service_name}:{role}", **kwargs)

    # -- constructors --------------------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, *, service_name: Optional[str] = None, sentinel_manager: Any = None,
                 **kwargs: Any) -> SentinelRedisPool:
        """A pool from ``redis://[[username]:password@]service[/db][?option=value&...]``.

        The host part names the service unless ``service_name`` is given; ``sentinel_manager`` (a
        ``redis.sentinel.Sentinel``) is required. Options as in :meth:`RedisPool.from_url`; ``kwargs``
        add to or override them. ``rediss://`` connects to the servers with TLS. Raises ``ValueError``
        naming what is wrong, never quoting the URL.
        """
        if sentinel_manager is None:
            raise TypeError("sentinel_manager: from_url needs the redis.sentinel.Sentinel to ask")
        options = _parse_url(url)
        if "path" in options:
            raise ValueError("url: a Sentinel service URL is redis://service/db, not unix://")
        host = options.pop("host", None)
        options.pop("port", None)
        if service_name is None:
            service_name = host
        if not service_name:
            raise ValueError("url: name the service as the host part (redis://mymaster/0) or pass service_name")
        options.update(kwargs)
        return cls(service_name, sentinel_manager, **options)

    @classmethod
    def for_service(cls, sentinels: Any, service_name: str, *, role: str = "master",
                    sentinel_kwargs: Optional[dict[str, Any]] = None, **kwargs: Any) -> SentinelRedisPool:
        """A pool for ``service_name`` as the sentinels at ``sentinels`` (``[(host, port), ...]``) see it.

        ``role`` is ``"master"`` or ``"replica"``. ``sentinel_kwargs`` are the sentinel connections'
        options (password, TLS...); by default they take the ``socket_*`` options of ``kwargs``, with
        1 s timeouts when none are given, and never retry. The pool closes its sentinel connections
        at :meth:`close`. ``kwargs`` are the pool's (as for the constructor).
        """
        if role not in ("master", "replica"):
            raise ValueError(f"role must be 'master' or 'replica', got {role!r}")
        try:
            addresses = [(str(host), int(port)) for host, port in sentinels]
        except (TypeError, ValueError):
            raise TypeError(f"sentinels must be a list of (host, port) pairs, got {sentinels!r}") from None
        if not addresses:
            raise ValueError("sentinels must name at least one sentinel, got an empty list")
        if sentinel_kwargs is None:
            sentinel_kwargs = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
        else:
            sentinel_kwargs = dict(sentinel_kwargs)
        for key in ("socket_timeout", "socket_connect_timeout"):
            if sentinel_kwargs.get(key) is None:
                sentinel_kwargs[key] = DEFAULT_SENTINEL_TIMEOUT
        sentinel_kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        manager = Sentinel(addresses, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        pool = cls(service_name, manager, is_master=role == "master", **kwargs)
        pool._owns_manager = True
        return pool

    # -- public attributes ----------------------------------------------------------------------------

    @property
    def is_master(self) -> bool:
        """True for a master pool; settable (django-redis sets it): connections of the other role go."""
        return self._is_master

    @is_master.setter
    def is_master(self, value: bool) -> None:
        value = bool(value)
        if value != self._is_master:
            self._is_master = value
            self._replicas_at = -math.inf
            self.disconnect()

    @property
    def master_address(self) -> Optional[Address]:
        """``(host, port)`` of the current master: None until the first connect, then follows every switch."""
        return self._current

    def stats(self, reset: bool = False) -> PoolStats:
        """:meth:`RedisPool.stats`, with ``master_switches`` and ``last_master_switch_at`` filled in."""
        return dataclasses.replace(super().stats(reset), master_switches=self._switches,
                                   last_master_switch_at=self._last_switch_at)

    def sentinel_stats(self) -> SentinelStats:
        """A :class:`SentinelStats` snapshot: service, address, switches and when, resolutions."""
        current = self._view.current
        watcher = self._watcher
        mono = self._last_switch_mono
        return SentinelStats(
            service_name=self.service_name,
            role="master" if self._is_master else "replica",
            master_address=self._current,
            config_epoch=-1 if current is None else current.epoch,
            replicas=self._replicas,
            master_switches=self._switches,
            last_switch_at=self._last_switch_at,
            seconds_since_switch=None if mono is None else monotonic() - mono,
            resolutions=self._rounds,
            resolution_failures=self._round_failures,
            sentinels_subscribed=0 if watcher is None else watcher.subscribed,
            sentinels=len(self.sentinel_manager.sentinels),
        )

    def close(self) -> None:
        """Close the pool (see :meth:`RedisPool.close`); the watcher stops when no pool needs it."""
        super().close()
        watcher = self._watcher
        if watcher is not None:
            watcher.discard(self)
        if self._owns_manager:
            self._owns_manager = False
            try:
                self.sentinel_manager.close()
            except Exception:
                log.debug("pool %r: closing the sentinel connections raised", self.name, exc_info=True)

    def __repr__(self) -> str:
        pool = self._pool
        stats = pool.stats()
        address = self._current
        where = "unresolved" if address is None else f"{address[0]}:{address[1]}"
        role = "master" if self._is_master else "replica"
        state = " closed" if pool.closed else ""
        return (f"<{type(self).__module__}.{type(self).__name__} {pool.name!r}{state} "
                f"service={self.service_name!r} {role} master={where} "
                f"size={stats.size}/{stats.max_connections} idle={stats.idle} in_use={stats.in_use}>")

    # -- redis-py's SentinelConnectionPool API (what SentinelManagedConnection calls) -----------------

    def make_connection(self) -> Any:
        """A new, unconnected ``SentinelManagedConnection`` that asks this pool where to connect."""
        return self.connection_class(connection_pool=self, **self.connection_kwargs)

    def get_master_address(self) -> Address:
        """Resolve the master now (every sentinel asked at once); ``MasterNotFoundError`` if none is known.

        Waits at most the sentinel timeout; a ``gevent.Timeout`` or kill of the caller ends only its
        wait (the round finishes for the others).
        """
        outcome = self._resolve()
        address = self._current
        if outcome.best_index is None or address is None:
            detail = "; ".join(outcome.errors) or "no sentinel answered"
            raise MasterNotFoundError(f"pool {self.name!r}: no master found for {self.service_name!r}: {detail}")
        return address

    def rotate_slaves(self) -> Iterator[Address]:
        """The replicas, round robin from the next one, then the master if ``fallback_to_master``."""
        if not self._replicas or monotonic() - self._replicas_at >= self._poll_interval:
            self._resolve()
        replicas = self._replicas
        start, self._rr = self._rr, self._rr + 1
        for i in range(len(replicas)):
            yield replicas[(start + i) % len(replicas)]
        if self.fallback_to_master:
            try:
                yield self.get_master_address()
            except MasterNotFoundError:
                pass
        raise SlaveNotFoundError(f"pool {self.name!r}: no replica found for {self.service_name!r}")

    rotate_replicas = rotate_slaves

    # -- RedisPool hooks -------------------------------------------------------------------------------

    def _slot_is_current(self, slot: Any) -> bool:
        """At every checkout and return: is the connection's address the master (a replica) now?"""
        address = slot.conn._gpool_address
        if self._is_master:
            return address == self._current  # type: ignore[no-any-return]
        return address in self._replica_set or (self.fallback_to_master and address == self._current)

    def _after_connect(self, conn: Any) -> None:
        """After the handshake: ``ROLE`` must match the pool's role, else this connect failed."""
        conn.send_command("ROLE", check_health=False)
        role = _role_of(conn.read_response())
        address = conn._gpool_address
        if self._is_master:
            if role == "master":
                return
        elif role == "slave":
            return
        elif role == "master":
            if self.fallback_to_master and address == self._current:
                return
            self._forget_replica(address)
        want = "master" if self._is_master else "replica"
        raise _RedisConnectionError(
            f"pool {self.name!r}: {conn._host_error()} is a {role}, not a {want} of {self.service_name!r}")

    # -- resolution ------------------------------------------------------------------------------------

    def _reconnect_addresses(self) -> Iterator[Address]:
        """Where a reconnect redis-py makes on its own goes (outside ``connect_to``), in order."""
        if self._is_master:
            yield self.get_master_address()
            return
        rotation = self.rotate_slaves()
        while True:
            try:
                yield next(rotation)
            except SlaveNotFoundError:
                return

    def _ensure_watcher(self) -> _SwitchWatcher:
        watcher = self._watcher
        if watcher is None or watcher.pid != os.getpid() or not watcher.running:
            if watcher is not None and watcher.pid != os.getpid():
                self._round = None  # the parent's round: gevent may run it here, on the parent's sockets
            watcher = watcher_for(self.sentinel_manager)
            self._watcher = watcher
            if not self.closed:
                watcher.add(self)
        return watcher

    def _resolve(self) -> _Round:
        """Join the round in flight or start one; its outcome (already applied to the pool)."""
        glet = self._start_round()
        glet.join()
        outcome = glet.value
        if not isinstance(outcome, _Round):  # the round was killed
            return _Round([], {}, ["the resolution was interrupted"])
        return outcome

    def _start_round(self) -> gevent.Greenlet:
        watcher = self._ensure_watcher()
        glet = self._round
        if glet is None or glet.ready():
            glet = self._round = gevent.spawn(self._run_round, watcher)
            glet.name = "gpool-sentinel-resolve"
        return glet

    def _refresh(self, force: bool = False) -> None:
        """Re-resolve in the background unless a round is running or (not ``force``) just ran."""
        if self.closed:
            return
        glet = self._round
        if glet is not None and not glet.ready():
            return
        if force or monotonic() - self._round_done_at >= self._poll_interval:
            self._start_round()

    def _run_round(self, watcher: _SwitchWatcher) -> _Round:
        try:
            outcome = _ask_sentinels(watcher.clients, self.sentinel_manager, self.service_name,
                                     not self._is_master, watcher.timeout)
        except Exception as exc:  # a bug or an odd reply: the caller gets MasterNotFoundError
            log.warning("pool %r: resolving %r failed", self.name, self.service_name, exc_info=True)
            outcome = _Round([], {}, [f"{type(exc).__name__}: {exc}"])
        self._apply_round(outcome)
        return outcome

    def _apply_round(self, outcome: _Round) -> None:
        """Adopt what the round found (no yield between the decision and its bookkeeping)."""
        self._rounds += 1
        self._round_done_at = monotonic()
        index = outcome.best_index
        if index is None:
            self._round_failures += 1
            return
        best: _Answer = outcome.answers[index]  # type: ignore[assignment]
        before = self._current
        if self._view.offer(best):
            self._current = self._view.address
        replicas = outcome.replicas.get(index)
        if replicas is not None:
            self._set_replicas(replicas)
        if before is not None and self._current != before:
            self._switched(before, "a resolution")

    def _switch_announced(self, old: Address, new: Address) -> None:
        """The watcher heard ``+switch-master`` (non-yielding; closes idle connections to the old master)."""
        before = self._current
        if self._view.announce(new):
            self._current = new
            if before is not None and before != new:
                self._switched(before, "+switch-master")
        if not self._is_master and new in self._replica_set:
            self._set_replicas([a for a in self._replicas if a != new])
        self._refresh(force=True)  # learn the new epoch (and the replicas) from every sentinel

    def _switched(self, old: Address, how: str) -> None:
        self._switches += 1
        self._last_switch_at = time.time()
        self._last_switch_mono = monotonic()
        log.info("pool %r: master of %r moved from %s:%d to %s by %s", self.name, self.service_name,
                 old[0], old[1], "unknown" if self._current is None else f"{self._current[0]}:{self._current[1]}", how)
        if self._is_master:
            self._drop_idle()

    def _set_replicas(self, replicas: list[Address]) -> None:
        master = self._current
        replicas = [a for a in replicas if a != master]
        gone = self._replica_set.difference(replicas)
        self._replicas = tuple(replicas)
        self._replica_set = frozenset(replicas)
        self._replicas_at = monotonic()
        if gone:
            self._drop_idle()

    def _forget_replica(self, address: Optional[Address]) -> None:
        if address in self._replica_set:
            self._set_replicas([a for a in self._replicas if a != address])

    def _drop_idle(self) -> None:
        """Close the idle connections that are no longer current (those in use go when returned)."""
        in_use = {id(slot) for slot, _, _ in self._pool.checked_out()}
        stale = [slot for slot in self._live_slots()
                 if id(slot) not in in_use and slot.conn._sock is not None and not self._slot_is_current(slot)]
        for slot in stale:
            try:
                self._pool.drop(slot)
            except ConnectionNotFoundError:
                pass  # being opened (not the core's yet) or closed meanwhile

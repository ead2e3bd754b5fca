"""Sentinel resolution and the ``+switch-master`` watcher behind :class:`SentinelRedisPool`.

Not the place to import from: use ``gpool.redis``. Three pieces, none of which touches pool state
(the pool's methods called from here make their decisions without yielding):

* :class:`_MasterView` ranks what the sentinels say by config epoch, settled answers above
  failover-in-progress ones, and never goes back to a lower epoch;
* :func:`_ask_sentinels` asks every sentinel at once, bounded by the sentinel timeout;
* :class:`_SwitchWatcher`, one per ``redis.sentinel.Sentinel`` manager and shared by its pools,
  subscribes to ``+switch-master`` on every sentinel and tells the pools at the first message.
  Like the reaper it holds its pools weakly, waits on unreferenced watchers only (so it never keeps
  ``gevent.wait()`` or the process alive), ends when its last pool closes or goes away, and ends in
  a forked child at its first wake-up (the child's pools start their own).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any, Optional

import gevent

# Absolute imports (Python 3): this is redis-py, not this module.
import redis as _redis
from gevent.hub import Waiter, get_hub
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

if TYPE_CHECKING:
    from ._sentinel import SentinelRedisPool

log = logging.getLogger("gpool.redis")

Address = tuple[str, int]

#: the bound of one resolution round and of a subscription attempt when the sentinel connections have
#: no ``socket_timeout`` of their own
DEFAULT_SENTINEL_TIMEOUT = 1.0
#: the longest pause between two subscription attempts on a sentinel that failed or refused
MAX_RESUBSCRIBE_DELAY = 5.0

# Answer levels, lowest first: a sentinel leading a failover still reports the old master (with the
# new epoch) for about a second after the others switched; an announced switch beats both at its epoch.
IN_PROGRESS, SETTLED, ANNOUNCED = 0, 1, 2


# -- ranking --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    """What one sentinel said about the master, or what a ``+switch-master`` announced."""

    epoch: int
    level: int
    address: Address

    @property
    def rank(self) -> tuple[int, int]:
        return (self.epoch, self.level)


def _answer_of(state: dict[str, Any], manager: Any, service_name: str) -> Optional[_Answer]:
    """A ``SENTINEL MASTER`` reply (parsed by redis-py) as an answer; None when redis-py's checks reject it."""
    if not manager.check_master_state(state, service_name):  # not a master, s_down/o_down, too few peers
        return None
    flags = state.get("flags", "")
    if isinstance(flags, str):
        flags = flags.split(",")
    level = IN_PROGRESS if "failover_in_progress" in flags else SETTLED
    ip = getattr(manager, "_force_master_ip", None) or state["ip"]
    return _Answer(int(state.get("config-epoch", 0)), level, (str(ip), int(state["port"])))


def best_answer(answers: Iterable[Optional[_Answer]]) -> Optional[_Answer]:
    """The highest-ranked answer (the first of equals), or None."""
    best: Optional[_Answer] = None
    for answer in answers:
        if answer is not None and (best is None or answer.rank > best.rank):
            best = answer
    return best


class _MasterView:
    """The master a pool believes in: changes only to an answer that outranks it.

    A failover-in-progress answer never moves the view to another address (that sentinel is about to
    change its mind); an announced switch ranks above every answer of the epoch it replaced and below
    any answer with a higher epoch. Non-yielding: callers decide on the result without I/O.
    """

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: Optional[_Answer] = None

    @property
    def address(self) -> Optional[Address]:
        current = self.current
        return None if current is None else current.address

    def offer(self, answer: Optional[_Answer]) -> bool:
        """Adopt ``answer`` if it supersedes the view; True when it was adopted."""
        current = self.current
        if answer is None:
            return False
        if current is not None:
            if answer.rank <= current.rank:
                return False
            if answer.level == IN_PROGRESS and answer.address != current.address:
                return False
        self.current = answer
        return True

    def announce(self, address: Address) -> bool:
        """A ``+switch-master`` to ``address``; True when the view moved (ignored before any answer)."""
        current = self.current
        if current is None or (current.address == address and current.level >= SETTLED):
            return False
        self.current = _Answer(current.epoch, ANNOUNCED, address)
        return True


# -- asking the sentinels -------------------------------------------------------------------------


def _query_client(client: Any, timeout: float) -> _redis.Redis:
    """A client to the same sentinel as ``client`` (a manager's) that never retries: the round retries."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    for key in ("socket_timeout", "socket_connect_timeout"):
        if kwargs.get(key) is None:
            kwargs[key] = timeout
    return _redis.Redis(connection_pool=_redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


def _sentinel_timeout(manager: Any) -> float:
    for client in getattr(manager, "sentinels", ()):
        timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        if timeout is not None:
            return float(timeout)
    return DEFAULT_SENTINEL_TIMEOUT


def _where(client: Any) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


@dataclass
class _Round:
    """The outcome of asking every sentinel once."""

    answers: list[Optional[_Answer]]
    replicas: dict[int, list[Address]]  # sentinel index -> its healthy replicas (replica pools only)
    errors: list[str]
    best_index: Optional[int] = None


def _ask_sentinels(clients: list[Any], manager: Any, service_name: str, replicas: bool,
                   timeout: float) -> _Round:
    """Ask every sentinel concurrently, at most ``timeout`` seconds in all; a sentinel that did not
    answer in time counts as an error. Raises only what interrupts the caller (Timeout, kill)."""

    def ask(client: Any) -> Any:
        try:
            state = client.execute_command("SENTINEL MASTER", service_name)
            found = client.execute_command("SENTINEL SLAVES", service_name) if replicas else None
        except Exception as exc:  # returned, not raised: gevent would print every refused sentinel
            return exc
        return state, found

    greenlets = [gevent.spawn(ask, client) for client in clients]
    for glet in greenlets:
        glet.name = "gpool-sentinel-query"
    result = _Round([None] * len(clients), {}, [])
    try:
        gevent.joinall(greenlets, timeout=timeout)
    finally:
        for glet in greenlets:
            if not glet.dead:
                glet.kill(block=False)  # redis-py closes its connection when a kill interrupts a read
    for index, (client, glet) in enumerate(zip(clients, greenlets)):
        if not glet.ready():
            result.errors.append(f"{_where(client)}: no answer in {timeout:.3f}s")
        elif not glet.successful() or isinstance(glet.value, BaseException):
            exc = glet.value if glet.successful() else glet.exception
            result.errors.append(f"{_where(client)}: {type(exc).__name__}: {exc}")
        else:
            state, found = glet.value
            answer = _answer_of(state, manager, service_name)
            if answer is None:
                result.errors.append(f"{_where(client)}: flags {state.get('flags')!r}")
            result.answers[index] = answer
            if found is not None:
                result.replicas[index] = [(str(ip), int(port)) for ip, port in manager.filter_slaves(found)]
    best = best_answer(result.answers)
    if best is not None:
        result.best_index = result.answers.index(best)
    return result


# -- waiting without keeping the hub alive --------------------------------------------------------


def _wait_readable(fds: list[int], seconds: float) -> list[int]:
    """Park until one of ``fds`` is readable or ``seconds`` passed; the readable ones (maybe none).

    Every watcher is unreferenced: a process waiting in ``gevent.wait()`` does not wait for this.
    """
    loop = get_hub().loop
    waiter = Waiter()
    ready: list[int] = []
    watchers = []

    def wake(fd: int) -> None:
        ready.append(fd)
        waiter.switch(None)

    try:
        timer = loop.timer(max(0.0, seconds), ref=False)
        watchers.append(timer)
        timer.start(wake, -1)
        for fd in fds:
            io = loop.io(fd, 1, ref=False)
            watchers.append(io)
            io.start(wake, fd)
        waiter.get()
    finally:
        for watcher in watchers:
            watcher.stop()
            watcher.close()
    return [fd for fd in ready if fd >= 0]


# -- the watcher ----------------------------------------------------------------------------------


class _Subscription:
    """One sentinel's ``+switch-master`` channel: its pub/sub client and when to try again."""

    __slots__ = ("client", "delay", "pubsub", "retry_at")

    def __init__(self, client: _redis.Redis) -> None:
        self.client = client
        self.pubsub: Any = None
        self.retry_at = 0.0
        self.delay = 0.1

    def fileno(self) -> Optional[int]:
        conn = getattr(self.pubsub, "connection", None)
        sock = getattr(conn, "_sock", None)
        return None if sock is None else int(sock.fileno())

    def close(self) -> None:
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()  # in a forked child redis-py closes only this process's copy
            except Exception:
                log.debug("closing a sentinel subscription raised", exc_info=True)

    def failed(self, now: float) -> None:
        self.close()
        self.retry_at = now + self.delay
        self.delay = min(self.delay * 2, MAX_RESUBSCRIBE_DELAY)


class _SwitchWatcher:
    """The ``+switch-master`` listener shared by the pools of one sentinel manager (see the module)."""

    def __init__(self, manager: Any) -> None:
        self.pid = os.getpid()
        self.timeout = _sentinel_timeout(manager)
        self.clients = [_query_client(client, self.timeout) for client in manager.sentinels]
        self._subs = [_Subscription(_query_client(client, self.timeout)) for client in manager.sentinels]
        self._pools: weakref.WeakSet[SentinelRedisPool] = weakref.WeakSet()
        self._greenlet: Optional[gevent.Greenlet] = None
        self.messages = 0

    def __repr__(self) -> str:
        return f"<gpool.redis sentinel watcher {self.subscribed}/{len(self._subs)} subscribed>"

    @property
    def subscribed(self) -> int:
        """How many sentinels we hear ``+switch-master`` from now."""
        return sum(1 for sub in self._subs if sub.pubsub is not None)

    @property
    def running(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    def add(self, pool: SentinelRedisPool) -> None:
        self._pools.add(pool)
        if not self.running:
            self._greenlet = gevent.spawn(self._run)
            self._greenlet.name = "gpool-sentinel-watcher"

    def discard(self, pool: SentinelRedisPool) -> None:
        self._pools.discard(pool)
        if not self._live_pools():
            self.stop()

    def stop(self) -> None:
        """End the greenlet without waiting (its ``finally`` closes the subscriptions)."""
        glet, self._greenlet = self._greenlet, None
        if glet is not None and glet is not gevent.getcurrent():
            glet.kill(block=False)

    def _live_pools(self) -> list[SentinelRedisPool]:
        return [pool for pool in list(self._pools) if not pool.closed]

    def _run(self) -> None:
        try:
            while self.pid == os.getpid():
                pools = self._live_pools()
                if not pools or self._greenlet is not gevent.getcurrent():
                    return
                interval = min(pool._poll_interval for pool in pools)
                del pools  # hold the pools only while working for them
                now = monotonic()
                for sub in self._subs:
                    if sub.pubsub is None and now >= sub.retry_at:
                        self._subscribe(sub)
                by_fd = {fd: sub for sub in self._subs if (fd := sub.fileno()) is not None}
                if not by_fd:  # nobody to listen to: poll instead, at most every check_interval
                    self._refresh_all()
                wait = interval
                pending = [sub.retry_at for sub in self._subs if sub.pubsub is None]
                if pending:
                    wait = min(wait, max(0.01, min(pending) - monotonic()))
                ready = _wait_readable(list(by_fd), wait)
                if self.pid != os.getpid():
                    return  # forked: the parent reads these sockets; the child's pools start a new watcher
                for fd in ready:
                    self._drain(by_fd[fd])
        finally:
            for sub in self._subs:
                sub.close()

    def _subscribe(self, sub: _Subscription) -> None:
        """Subscribe on one sentinel, bounded by the sentinel timeout; a refusal is retried later."""
        pubsub = sub.client.pubsub()  # type: ignore[no-untyped-call]
        try:
            with gevent.Timeout(self.timeout, False):
                pubsub.subscribe("+switch-master")
                reply = pubsub.get_message(timeout=self.timeout)
                if reply is not None and reply.get("type") in ("subscribe", b"subscribe"):
                    sub.pubsub, sub.delay = pubsub, 0.1
                    log.debug("sentinel watcher: subscribed on %s", _where(sub.client))
                    self._refresh_all()  # a switch may have happened while we were not listening
                    return
        except (RedisError, OSError) as exc:
            log.debug("sentinel watcher: cannot subscribe on %s: %r", _where(sub.client), exc)
        except BaseException:
            pubsub.close()
            raise
        pubsub.close()
        sub.failed(monotonic())

    def _drain(self, sub: _Subscription) -> None:
        """Read every message waiting on ``sub`` (the socket is readable: this does not block)."""
        try:
            while sub.pubsub is not None:
                message = sub.pubsub.get_message(timeout=0)
                if message is None:
                    return
                if message.get("type") in ("message", b"message"):
                    self.messages += 1
                    self._announce(message.get("data"))
        except (RedisError, OSError) as exc:
            log.info("sentinel watcher: lost the subscription on %s: %r", _where(sub.client), exc)
            sub.failed(monotonic())

    def _announce(self, data: Any) -> None:
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        parts = str(data).split()
        if len(parts) != 5:
            log.warning("sentinel watcher: unexpected +switch-master message %r", data)
            return
        name, old_ip, old_port, new_ip, new_port = parts
        try:
            old, new = (old_ip, int(old_port)), (new_ip, int(new_port))
        except ValueError:
            log.warning("sentinel watcher: unexpected +switch-master message %r", data)
            return
        for pool in self._live_pools():
            if pool.service_name == name:
                pool._switch_announced(old, new)

    def _refresh_all(self) -> None:
        for pool in self._live_pools():
            pool._refresh()


_watchers: weakref.WeakKeyDictionary[Any, _SwitchWatcher] = weakref.WeakKeyDictionary()


def watcher_for(manager: Any) -> _SwitchWatcher:
    """The watcher of ``manager`` in this process (a new one in a forked child)."""
    watcher = _watchers.get(manager)
    if watcher is None or watcher.pid != os.getpid():
        watcher = _watchers[manager] = _SwitchWatcher(manager)
    return watcher

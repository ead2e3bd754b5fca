"""``RedisPool``: a redis-py ``ConnectionPool`` whose connections live in a gpool core pool."""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Optional

# Absolute imports (Python 3): this is redis-py, not this module.
import redis as _redis
import redis.connection as _rconn
from gevent import getcurrent
from redis.backoff import NoBackoff
from redis.client import CaseInsensitiveDict as _CaseInsensitiveDict
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as _RedisConnectionError
from redis.exceptions import TimeoutError as _RedisTimeoutError
from redis.retry import Retry

from .._adapter import PoolFacade
from ..errors import ConnectionHeldError, ConnectionNotFoundError, PoolClosedError, PoolError, PoolExhaustedError
from ..options import PoolOptions, _default_permanent, check_number
from ..pool import Pool
from ._connection import PooledConnection, _pooled_class, _Slot
from ._errors import _convert
from ._url import _parse_url
from ._validate import check_connection_kwargs

log = logging.getLogger("gpool.redis")

# -- the pool ----------------------------------------------------------------------------------------

def _accepts(cls: Any, name: str) -> bool:
    try:
        return name in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover - a C-level or odd signature
        return False


# redis-py 8 replaced lib_name/lib_version (still accepted, with a DeprecationWarning) by driver_info.
_HAS_DRIVER_INFO = _accepts(_rconn.AbstractConnection, "driver_info")
_HAS_MAINT_NOTIFICATIONS = _accepts(_redis.ConnectionPool, "maint_notifications_config")
_DRIVER_KEYS = ("driver_info", "lib_name", "lib_version")
_RETRY_KEYS = ("retry", "retry_on_timeout", "retry_on_error")
# Exceptions after which a connection used in `with pool.connection()` is not reused.
_FATAL = (_RedisConnectionError, _RedisTimeoutError, OSError, EOFError)


def _is_permanent(exc: BaseException) -> bool:
    """Connect errors no retry cures: bad arguments, a wrong password, an error reply to the handshake
    (``SELECT`` of a database out of range, ``HELLO`` with an unknown protocol)."""
    return isinstance(exc, (TypeError, ValueError, AuthenticationError, ResponseError))


def _slot_hooks(pool_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The user's ``on_*`` hooks get the redis-py connection; the core holds its ``_Slot``."""
    wrapped = dict(pool_kwargs)
    for name in ("on_connect", "on_checkout", "on_checkin"):
        hook = wrapped.get(name)
        if callable(hook):
            wrapped[name] = lambda slot, _hook=hook: _hook(slot.conn)
    on_drop = wrapped.get("on_drop")
    if callable(on_drop):
        wrapped["on_drop"] = lambda slot, reason, _hook=on_drop: _hook(slot.conn, reason)
    return wrapped


def _connection_class(cls: Optional[type], kwargs: dict[str, Any], host: Any, port: Any) -> tuple[type, bool]:
    """The pooled connection class for the arguments (validated), and whether it is a Unix socket."""
    ssl = kwargs.pop("ssl", False)
    if not isinstance(ssl, bool):
        raise TypeError(f"ssl must be a bool, got {ssl!r}")
    path = kwargs.get("path")
    if cls is None:
        cls = (_rconn.UnixDomainSocketConnection if path is not None
               else _rconn.SSLConnection if ssl else _rconn.Connection)
    cls = _pooled_class(cls)
    unix = issubclass(cls, _rconn.UnixDomainSocketConnection)
    if unix:
        if not isinstance(path, str) or not path:
            raise ValueError(f"path must be the Unix socket's path, got {path!r}")
    else:
        if not isinstance(host, str) or not host:
            raise (TypeError if not isinstance(host, str) else ValueError)(
                f"host must be a non-empty string, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an integer, got {port!r}")
        if not 0 < port < 65536:
            raise ValueError(f"port must be from 1 to 65535, got {port!r}")
    return cls, unix


def _connection_kwargs(connection_kwargs: dict[str, Any], **address: Any) -> dict[str, Any]:
    """redis-py's connection keywords, with gpool's lean and no-silent-retry defaults."""
    for key in ("cache", "cache_config"):
        if connection_kwargs.get(key) is not None:
            raise ValueError(f"{key}: client-side caching is not supported by gpool.redis")
    if "connection_pool" in connection_kwargs:
        raise TypeError("connection_pool: RedisPool is the connection pool")
    retry = connection_kwargs.get("retry")
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"retry must be a redis.retry.Retry (redis-py's command retries) or None, got {retry!r}; "
                        f"the pool's connect attempts are set with connect_retries")
    kwargs: dict[str, Any] = dict(connection_kwargs, **address)
    # No silent retries: redis-py would re-send a command after a timeout or a lost connection.
    if not any(kwargs.get(key) for key in _RETRY_KEYS):
        kwargs["retry"] = Retry(NoBackoff(), 0)
    # Lean connects: RESP2 needs no HELLO; no driver info means no CLIENT SETINFO and no package
    # metadata read per connection (redis-py 8.1: ~0.4 ms of CPU for each new Connection).
    if kwargs.get("protocol") is None:  # None: the README's default, RESP2 (redis-py 8 would pick 3)
        kwargs["protocol"] = 2
    if not any(key in kwargs for key in _DRIVER_KEYS):
        if _HAS_DRIVER_INFO:
            kwargs["driver_info"] = None
        else:
            kwargs.update(lib_name=None, lib_version=None)
    # Maintenance notifications (redis-py 7+, RESP3) move and close connections behind the pool.
    maint_config = kwargs.pop("maint_notifications_config", None)
    if maint_config is not None and getattr(maint_config, "enabled", False) is True:  # "auto": disabled
        raise ValueError("maint_notifications_config: maintenance notifications are not supported by gpool.redis")
    if _HAS_MAINT_NOTIFICATIONS:
        from redis.maint_notifications import MaintNotificationsConfig
        kwargs["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    return kwargs


class RedisPool(PoolFacade, _redis.ConnectionPool):
    """A ``redis.ConnectionPool`` backed by a gevent-cooperative gpool :class:`~gpool.Pool`.

    Pool keywords are those of :class:`gpool.Pool` with its defaults, except that its ``retry``
    (connect attempts) is called ``connect_retries`` here: ``retry`` is redis-py's command
    :class:`~redis.retry.Retry`. Every other keyword (``socket_timeout``, ``socket_connect_timeout``,
    ``username``, ``client_name``, ``decode_responses``, ``ssl_*``, ``protocol``...) goes to the
    redis-py connection class. Nothing connects before the first command unless
    ``initial_connections`` > 0.

    Commands (through :meth:`client` or any ``redis.Redis(connection_pool=pool)``) and
    :meth:`connection` wait at most ``timeout`` seconds for a connection, including connect retries,
    then raise :class:`RedisPoolExhaustedError` (a :class:`gpool.PoolExhaustedError` and a
    ``redis.ConnectionError``; the last connect error is ``__cause__``). Errors of the commands
    themselves pass through unchanged and are never retried unless you configure redis-py's
    ``retry``. After :meth:`close` they raise :class:`RedisPoolClosedError`.

    Bad arguments raise ``TypeError``/``ValueError`` naming the parameter. The password never
    appears in ``repr()``, logs or error messages.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        password: Optional[str] = None,
        connection_class: Optional[type] = None,
        **kwargs: Any,
    ) -> None:
        # ``retry`` here is redis-py's command Retry, not the pool's connect-retry count.
        command_retry = {"retry": kwargs.pop("retry")} if "retry" in kwargs else {}
        pool_kwargs, connection_kwargs = PoolOptions.split(kwargs)
        connection_kwargs.update(command_retry)
        check_connection_kwargs(connection_kwargs)
        if "connect_retries" in connection_kwargs:
            pool_kwargs["retry"] = check_number("connect_retries", connection_kwargs.pop("connect_retries"),
                                                integer=True, allow_none=True)
        connection_class, unix = _connection_class(connection_class, connection_kwargs, host, port)
        if isinstance(db, bool) or not isinstance(db, int):
            raise TypeError(f"db must be an integer, got {db!r}")
        if db < 0:
            raise ValueError(f"db must be >= 0, got {db!r}")
        if password is not None and not isinstance(password, str):
            raise TypeError(f"password must be a string or None, got {type(password).__name__}")  # never its value
        config = PoolOptions(**_slot_hooks(pool_kwargs))  # validated before redis-py sees anything
        conn_kwargs = _connection_kwargs(connection_kwargs, db=db, password=password,
                                         **({} if unix else {"host": host, "port": port}))
        super().__init__(connection_class=connection_class, max_connections=config.max_connections, **conn_kwargs)
        probe = self.make_connection()  # let redis-py reject unknown or bad keywords now (no I/O)
        del probe
        if unix:
            target = f"unix://{connection_kwargs['path']}?db={db}"
        else:
            scheme = "rediss" if issubclass(connection_class, _rconn.SSLConnection) else "redis"
            target = f"{scheme}://{host}:{port}/{db}"
        self._target = target
        self._slots: dict[int, _Slot] = {}  # id(slot) -> slot: every connection the core may still hold
        self._slots_pid = os.getpid()
        self._epoch = 0  # bumped by disconnect(): older connections are dropped instead of reused
        # The checkout's hook (_Slot.is_clean), or None when no subclass overrides it: no call then.
        self._slot_check = None if type(self)._slot_is_current is RedisPool._slot_is_current else self._slot_is_current
        self._timeout = config.timeout
        if config.is_permanent_error is _default_permanent:
            config = config.replace(is_permanent_error=_is_permanent)
        self._pool: Pool[_Slot] = Pool(self._new_slot, None, config=config.replace(name=config.name or target))
        # A template for the clients of connection() blocks: redis.Redis() costs ~100 us (it builds
        # its response-callback table), a copy of this one ~2 us.
        self._template = _BlockClient(connection_pool=self)
        # What an ended block's client is left with: its callbacks, shared with the next blocks on its
        # connection, are out of its reach (changing these raises, as its commands do).
        self._ended_callbacks = _BlockCallbacks({}, self._pool.name)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisPool:
        """A pool from ``redis://[[username]:password@]host[:port][/db][?option=value&...]``.

        Also ``rediss://`` (TLS) and ``unix://[[username]:password@]/path/to/redis.sock?db=0``.
        Username and password are percent-decoded. Query options are the pool keywords
        (``max_connections``, ``timeout``, ``idle_timeout``, ``max_lifetime``, ``check_interval``,
        ``connect_retries``, ``retry_delay``...) and the redis-py connection options that have a text
        form (``socket_timeout``, ``socket_connect_timeout``, ``health_check_interval``,
        ``client_name``, ``decode_responses``, ``protocol``, ``ssl_*``...): numbers, booleans as
        ``true``/``false``/``1``/``0``, ``none`` where None is allowed. ``kwargs`` add to or override
        them. Raises ``ValueError`` naming the part or option that is wrong; the URL itself is never
        put in a message.
        """
        options = _parse_url(url)
        options.update(kwargs)
        return cls(**options)

    # -- gpool API -----------------------------------------------------------------------------------

    def client(self) -> _redis.Redis:
        """A new ``redis.Redis`` on this pool: each command borrows a connection and returns it.

        Everything in redis-py works: pipelines and transactions (a pipeline holds one connection
        while it executes), ``pubsub()`` (holds one until it is closed; then the connection is
        dropped, not unsubscribed), locks, scripts. Share one client across greenlets. Raises, per
        command, what :meth:`get_connection` raises.
        """
        return _redis.Redis(connection_pool=self)

    def connection(self, timeout: Optional[float] = None) -> _Binding:
        """``with pool.connection() as r:`` a ``redis.Redis`` bound to one connection for the block.

        For what needs one connection: ``WATCH``/``MULTI`` (``r.pipeline()`` in the block uses the
        same connection), blocking commands, several commands in a row without a checkout each.
        Waits at most ``timeout`` seconds (``None``: the pool's) like :meth:`get_connection`. On exit
        the connection goes back to the pool, or is closed when the block was interrupted
        (``gevent.Timeout``, a kill), the connection failed, or it is left in a state the next
        user must not see. Using ``r`` after the block raises ``redis.ConnectionError``. The client
        is for the greenlet that opened the block.
        """
        if timeout is not None:
            check_number("timeout", timeout)
        return _Binding(self, timeout)

    def close(self) -> None:
        """Close the pool for good (idempotent).

        Idle connections are closed now, waiters get :class:`RedisPoolClosedError`, connections in
        use are closed when they come back, and later commands raise :class:`RedisPoolClosedError`.
        Unlike redis-py's pools, where ``close()`` only disconnects: use :meth:`disconnect` for that.
        """
        self._pool.close()

    def __repr__(self) -> str:
        pool = self._pool
        state = " closed" if pool.closed else ""
        stats = pool.stats()
        return (f"<{type(self).__module__}.{type(self).__name__} {pool.name!r}{state} "
                f"size={stats.size}/{stats.max_connections} idle={stats.idle} in_use={stats.in_use} "
                f"waiting={stats.waiting}>")

    # -- redis.ConnectionPool API ----------------------------------------------------------------------

    def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """Take a connected, clean connection (redis-py calls this for each command or pipeline).

        Waits at most the pool's ``timeout``; raises :class:`RedisPoolExhaustedError` then, or
        :class:`RedisPoolClosedError` after :meth:`close`. The arguments are ignored (redis-py < 5.3
        passes the command name).
        """
        try:  # _checkout, inlined: this runs for every command
            return self._pool.acquire(None).conn
        except PoolExhaustedError as exc:
            raise _convert(exc) from exc.__cause__
        except PoolClosedError as exc:
            raise _convert(exc) from None

    def release(self, connection: Any) -> None:
        """Give a connection back: reused when clean, else closed and its slot freed at once.

        Never raises for a connection that is not ours or already returned (redis-py's contract):
        that is logged. Any greenlet may give a connection back here, as with redis-py's own pools
        (``pubsub.run_in_thread()`` releases from its own greenlet): redis-py, not the greenlet, owns
        the checkout.
        """
        slot = connection._gpool_slot if isinstance(connection, PooledConnection) else None
        if slot is None or slot.owner is not self:
            log.warning("pool %r: release() of a connection it does not own: ignored", self._pool.name)
            return
        pool = self._pool
        entry = pool._in_use.get(id(slot))  # _adopt, inlined: the common case (its holder) needs no call
        if entry is not None and entry.holder is not getcurrent():
            pool._adopt(slot)
        # slot.is_clean(False) inlined for the common case: a socket already watched, no reconnect
        # asked for, and nothing unread in the parser's buffer (the next checkout also polls the socket).
        sock = connection._sock
        buf = slot.rbuf
        if (sock is None or sock is not slot.polled or buf is None or connection._gpool_replies
                or connection._gpool_state or slot.epoch != self._epoch or slot.reconnect is not None
                or getattr(connection, "_should_reconnect", False)
                or getattr(connection, "_re_auth_token", None) is not None):
            self._give_back(slot, False)  # dropped (closed, a session change...), or re-authenticated
            return
        pos = buf.tell()
        if buf.seek(0, 2) != pos:  # bytes nobody asked for, read with a reply: never kept
            buf.seek(pos)
            self._give_back(slot, True)
            return
        try:  # the common case of _give_back, inlined: this runs for every command
            pool.release(slot)
        except (ConnectionNotFoundError, ConnectionHeldError):
            self._give_back(slot, False)  # says what happened (logged), changes nothing

    def make_connection(self) -> Any:
        """A new, unconnected connection built from ``connection_kwargs`` (no cap: the pool counts)."""
        return self.connection_class(**self.connection_kwargs)

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close idle connections now and those in use when they come back; the pool stays usable.

        Unlike redis-py, connections in use are never closed under their user, whatever
        ``inuse_connections`` says.
        """
        self._epoch += 1
        in_use = {id(slot) for slot, _, _ in self._pool.checked_out()}
        for slot in self._live_slots():
            if id(slot) not in in_use:
                try:
                    self._pool.drop(slot)
                except ConnectionNotFoundError:
                    pass  # closed meanwhile

    def reset(self) -> None:
        """redis-py's "start afresh" (used after fork): here, :meth:`disconnect`; gpool handles forks."""
        if "_pool" not in self.__dict__:  # redis.ConnectionPool.__init__ calls it
            super().reset()
            return
        self.disconnect()

    def _checkpid(self) -> None:
        """The core pool detects forks itself (a new generation of connections in the child)."""

    def owns_connection(self, connection: Any) -> bool:
        slot = getattr(connection, "_gpool_slot", None)
        return slot is not None and slot.owner is self and slot.conn is connection

    def set_retry(self, retry: Retry) -> None:
        """redis-py's ``Redis.set_retry``: every connection, now and later, uses ``retry``."""
        self.connection_kwargs["retry"] = retry
        for slot in self._live_slots():
            slot.conn.retry = retry

    def update_maint_notifications_config(self, maint_notifications_config: Any, *args: Any, **kwargs: Any) -> None:
        """redis-py's (the cluster client calls it under its RESP3 default): notifications stay disabled.

        Raises ``ValueError`` for a config that explicitly enables them (``enabled=True``).
        """
        if getattr(maint_notifications_config, "enabled", False) is True:
            raise ValueError("maint_notifications_config: maintenance notifications are not supported by gpool.redis")

    def re_auth_callback(self, token: Any) -> None:
        """Streaming credentials: each connection re-authenticates when it is next returned."""
        for slot in self._live_slots():
            slot.conn.set_re_auth_token(token)

    def _get_free_connections(self) -> list[Any]:
        in_use = {id(slot) for slot, _, _ in self._pool.checked_out()}
        return [slot.conn for slot in self._live_slots() if id(slot) not in in_use]

    def _get_in_use_connections(self) -> set[Any]:
        return {slot.conn for slot, _, _ in self._pool.checked_out()}

    # -- hooks for subclasses (SentinelRedisPool) ------------------------------------------------------

    def _slot_is_current(self, slot: _Slot) -> bool:
        """At every checkout and return, no round trip: may this connection still be used?"""
        return True

    def _after_connect(self, conn: Any) -> None:
        """After every handshake, inside it (not counted as the user's commands); raise to refuse."""

    # -- internals --------------------------------------------------------------------------------------

    def _new_slot(self) -> _Slot:
        """The core pool's factory."""
        slot = _Slot(self, self.make_connection(), self._epoch)
        if self._slots_pid != os.getpid():
            self._slots_pid = os.getpid()
            self._slots.clear()  # the parent's: the core forgot them
        self._slots[id(slot)] = slot
        return slot

    def _live_slots(self) -> list[_Slot]:
        if self._slots_pid != os.getpid():
            self._slots_pid = os.getpid()
            self._slots.clear()
        return list(self._slots.values())

    def _checkout(self, timeout: Optional[float]) -> Any:
        """A connection from the core pool, which checks it (see gpool's checkout contract)."""
        try:
            return self._pool.acquire(timeout).conn
        except PoolExhaustedError as exc:
            raise _convert(exc) from exc.__cause__
        except PoolClosedError as exc:
            raise _convert(exc) from None

    def _give_back(self, slot: _Slot, poisoned: bool) -> None:
        """Release a clean connection, drop any other (never raises for one already returned)."""
        conn = slot.conn
        try:
            # A connection is not kept with bytes nobody asked for already read into the parser: checked
            # here too, not only at the next handout, whose poll also finds what is still in the kernel.
            if (poisoned or conn._sock is None or conn._gpool_replies or conn._gpool_state
                    or slot.epoch != self._epoch or not slot.is_clean(False)):
                self._pool.drop(slot)
                return
            if getattr(conn, "_re_auth_token", None) is not None:
                # The pool's own AUTH with the configured credentials, like the connect handshake: not
                # the user's session change, so it must not make the connection sticky (dropped).
                conn._gpool_handshake = True
                authed = False
                try:
                    conn.re_auth()
                    authed = True
                except Exception:
                    log.warning("pool %r: re-authentication failed; connection dropped", self._pool.name,
                                exc_info=True)
                finally:
                    conn._gpool_handshake = False
                    if not authed:  # failed or interrupted (Timeout, kill): half an AUTH may be on the wire
                        self._pool.drop(slot)
                if not authed:
                    return
            self._pool.release(slot)
        except ConnectionNotFoundError:
            log.warning("pool %r: a connection was returned twice: ignored", self._pool.name)
        except ConnectionHeldError:  # redis-py's release() never raises; nothing changed
            log.warning("pool %r: release() of a connection another live greenlet holds: ignored "
                        "(its holder gives it back, or hands it on with pool.pool.transfer())", self._pool.name)

    def _bound_client(self, bound: _BoundPool, slot: _Slot) -> tuple[_redis.Redis, _BlockCallbacks]:
        template = self._template
        client = object.__new__(type(template))
        client.__dict__.update(template.__dict__)
        # A copy of the response callbacks the block may change (set_response_callback): made once per
        # connection (~1 us for 170 keys) and reused by its next block unless one changed it.
        callbacks = slot.callbacks
        if callbacks is None or callbacks.changed:
            callbacks = slot.callbacks = _BlockCallbacks(template.response_callbacks, self.name)
        callbacks.live = True
        client.response_callbacks = callbacks
        client.connection_pool = bound
        client.connection = bound._conn  # redis-py then skips the pool's checkout and release per command
        return client, callbacks


class _BlockClient(_redis.Redis):
    """The ``redis.Redis`` of a ``connection()`` block (copied from the pool's template, per block)."""

    def __del__(self) -> None:
        # redis.Redis.__del__ calls close(), which has nothing to do here (the block gives the
        # connection back and the pool is the parent's): ~7k instructions a block, saved.
        pass


class _BlockCallbacks(_CaseInsensitiveDict):
    """The response callbacks of ``connection()`` blocks on one connection; changing them ends their reuse.

    Changed through a client whose block has ended, they raise ``redis.ConnectionError``, as its
    commands do (the next block on the connection reads them).
    """

    def __init__(self, template: dict[str, Any], name: str) -> None:  # no super().__init__: keys are upper case
        dict.update(self, template)
        self.live = False  # a block is using them
        self.changed = False
        self.name = name

    def _change(self) -> None:
        if not self.live:
            raise _RedisConnectionError(
                f"pool {self.name!r}: this client was bound to a connection by a `with pool.connection()` "
                f"block that has ended")
        self.changed = True

    def __setitem__(self, k: Any, v: Any) -> None:
        self._change()
        dict.__setitem__(self, k.upper(), v)

    def __delitem__(self, k: Any) -> None:
        self._change()
        dict.__delitem__(self, k.upper())

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._change()
        for k, v in dict(*args, **kwargs).items():
            dict.__setitem__(self, k.upper(), v)

    def pop(self, *args: Any) -> Any:
        self._change()
        return super().pop(*args)

    def popitem(self) -> Any:
        self._change()
        return super().popitem()

    def setdefault(self, *args: Any) -> Any:
        self._change()
        return super().setdefault(*args)

    def clear(self) -> None:
        self._change()
        super().clear()

    def __ior__(self, other: Any) -> Any:  # type: ignore[misc]
        self._change()
        return super().__ior__(other)


class _BoundPool(_redis.ConnectionPool):
    """The connection pool of a ``connection()`` block's client: always the same connection.

    Built per block without redis-py's ``__init__``: everything but checkout and release (encoder,
    ``connection_kwargs``, protocol...) is read from the parent pool.
    """

    def __init__(self, parent: RedisPool, conn: Any) -> None:  # no super().__init__: see above
        self.__dict__["_parent"] = parent
        self.__dict__["_conn"] = conn

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["_parent"], name)

    def __repr__(self) -> str:
        state = "ended" if self._conn is None else "active"
        return f"<gpool.redis connection() block of {self._parent.name!r} {state}>"

    def __del__(self) -> None:
        pass

    def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        conn = self._conn
        if conn is None:
            raise _RedisConnectionError(
                f"pool {self._parent.name!r}: this client was bound to a connection by a "
                f"`with pool.connection()` block that has ended")
        return conn

    def release(self, connection: Any) -> None:
        pass  # the block gives it back

    def disconnect(self, inuse_connections: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def owns_connection(self, connection: Any) -> bool:
        return connection is self._conn

    def _get_free_connections(self) -> list[Any]:
        return []

    def _get_in_use_connections(self) -> set[Any]:
        return set() if self._conn is None else {self._conn}


class _Binding:
    """``with pool.connection() as r``."""

    __slots__ = ("bound", "callbacks", "client", "pool", "timeout")

    def __init__(self, pool: RedisPool, timeout: Optional[float]) -> None:
        self.pool = pool
        self.timeout = timeout
        self.bound: Optional[_BoundPool] = None
        self.callbacks: Optional[_BlockCallbacks] = None
        self.client: Optional[_redis.Redis] = None

    def __enter__(self) -> _redis.Redis:
        pool = self.pool
        conn = pool._checkout(self.timeout)
        try:
            bound = _BoundPool(pool, conn)
            client, self.callbacks = pool._bound_client(bound, conn._gpool_slot)
        except BaseException:
            pool._give_back(conn._gpool_slot, True)
            raise
        self.bound = bound
        self.client = client
        return client

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        bound, self.bound = self.bound, None
        if bound is None:
            return
        conn = bound.__dict__["_conn"]
        bound.__dict__["_conn"] = None
        if self.callbacks is not None:
            self.callbacks.live = False
            if self.client is not None:
                self.client.response_callbacks = self.pool._ended_callbacks
                self.client.connection = None
            self.client = self.callbacks = None
        # As in gpool.Pool.connection(): an interruption or a connection error poisons it; an error
        # of the pool itself (a nested checkout timed out) says nothing about this connection.
        poisoned = exc is not None and (
            not isinstance(exc, Exception) or (isinstance(exc, _FATAL) and not isinstance(exc, PoolError)))
        self.pool._give_back(conn._gpool_slot, poisoned)

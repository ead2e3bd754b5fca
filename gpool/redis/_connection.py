"""redis-py connections as the pool keeps them: reply counting, session-state tracking, the slot record."""

from __future__ import annotations

import logging
import select
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Optional

# Absolute imports (Python 3): this is redis-py, not this module.
import redis.connection as _rconn
from gevent.monkey import get_original
from redis.exceptions import ConnectionError as _RedisConnectionError
from redis.exceptions import ResponseError as _ResponseError

from ..connection import socket_is_clean

if TYPE_CHECKING:
    from ._pool import RedisPool

log = logging.getLogger("gpool.redis")

#: the longest a health-check PING may take (capped by the connection's socket_timeout)
HEALTH_CHECK_TIMEOUT = 1.0

# The zero-round-trip check at checkout polls the socket with timeout 0 through the original (not
# gevent's) poll object, kept per socket: ~0.5 us, where recv(MSG_PEEK) raising BlockingIOError
# (gpool.connection.socket_is_clean) costs ~2.5 us. Readable means unread bytes or the peer closed.
try:
    _poll: Optional[Callable[[], Any]] = get_original("select", "poll")
    _POLL_MASK = select.POLLIN | select.POLLPRI
except (AttributeError, ImportError):  # pragma: no cover - no poll() on this platform
    _poll = None
    _POLL_MASK = 0


# -- connection state tracking -------------------------------------------------------------------

# State bits a returned connection must not carry to the next user.
_MULTI = 1
_WATCH = 2
_DB = 4  # SELECTed another database than the configured one
_STICKY = 8  # a state only a new connection undoes (subscribed, MONITOR, CLIENT REPLY OFF, AUTH...)

# What a command does to the state. Keys are redis-py's own spellings, so the common case is one
# dict lookup; other spellings ("multi", b"SELECT", "CLIENT", "setname") go through _kind_of().
_K_MULTI, _K_EXEC, _K_WATCH, _K_UNWATCH, _K_SELECT, _K_CLIENT, _K_STICKY = range(7)
_STICKY_COMMANDS = ("SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SYNC", "PSYNC", "RESET",
                    "HELLO", "AUTH", "QUIT", "READONLY", "READWRITE")
_STICKY_CLIENT = ("REPLY", "TRACKING", "SETNAME", "NO-EVICT", "NO-TOUCH", "CACHING")
_COMMAND_KINDS: dict[str, int] = {
    "MULTI": _K_MULTI, "EXEC": _K_EXEC, "DISCARD": _K_EXEC, "WATCH": _K_WATCH, "UNWATCH": _K_UNWATCH,
    "SELECT": _K_SELECT, "CLIENT": _K_CLIENT,
    **{name: _K_STICKY for name in _STICKY_COMMANDS},
    **{f"CLIENT {sub}": _K_STICKY for sub in _STICKY_CLIENT},
}

# Names (exact str) _gpool_track() found to change no state, so that GET costs a set lookup instead of
# a call. Bounded: execute_command() takes any string, and a name left out only takes the slow path.
_NEUTRAL_NAMES: set[str] = set()
_NEUTRAL_NAMES_MAX = 1024


def _word(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("latin-1")
    return value.upper() if isinstance(value, str) else ""


def _kind_of(args: tuple[Any, ...]) -> Optional[int]:
    """The state effect of a command, for any spelling of its name (the slow path)."""
    words = _word(args[0]).split()
    if not words:
        return None
    kind = _COMMAND_KINDS.get(words[0])
    if kind == _K_CLIENT:
        sub = words[1] if len(words) > 1 else _word(args[1]) if len(args) > 1 else ""
        return _K_STICKY if sub in _STICKY_CLIENT else None
    return kind


class PooledConnection:
    """Mixed into redis-py's connection classes: counts replies owed and tracks session state.

    ``RedisPool`` uses ``PooledConnection`` subclasses of ``redis.connection.Connection``,
    ``SSLConnection`` and ``UnixDomainSocketConnection`` (or of your ``connection_class``), so
    ``isinstance(conn, redis.connection.Connection)`` holds and everything redis-py does with a
    connection works. The bookkeeping wraps ``send_command`` and ``read_response`` (and a pipeline's
    send): about 0.7 us per command on CPython 3.11, most of it the two extra calls; what the
    handshake sends (``AUTH``, ``HELLO``, ``SELECT`` of the configured db) is not counted.
    """

    #: replies owed: commands sent minus replies read (0 when the connection can be reused)
    _gpool_replies = 0
    #: _MULTI | _WATCH | _DB | _STICKY bits
    _gpool_state = 0
    _gpool_handshake = False
    #: commands packed by pack_commands(), counted once send_packed_command() sent them
    _gpool_batch: Optional[list[Any]] = None
    #: the pool's record of this connection (set by the pool that made it)
    _gpool_slot: Optional[_Slot] = None

    def _gpool_track(self, args: tuple[Any, ...]) -> None:
        name = args[0]
        kind = _COMMAND_KINDS.get(name) if isinstance(name, str) else None
        if kind is None:
            if isinstance(name, str) and name.isupper() and " " not in name:
                # redis-py's spelling of a command that changes no connection state
                if name.__class__ is str and len(_NEUTRAL_NAMES) < _NEUTRAL_NAMES_MAX:
                    _NEUTRAL_NAMES.add(name)
                return
            kind = _kind_of(args)
            if kind is None:
                return
        elif kind == _K_CLIENT:
            kind = _kind_of(args)
            if kind is None:
                return
        state = self._gpool_state
        if kind == _K_MULTI:
            state |= _MULTI
        elif kind == _K_EXEC:
            state &= ~(_MULTI | _WATCH)
        elif kind == _K_WATCH:
            state |= _WATCH
        elif kind == _K_UNWATCH:
            if not state & _MULTI:  # inside MULTI it is only queued
                state &= ~_WATCH
        elif kind == _K_SELECT:
            try:
                same = int(args[1]) == self.db  # type: ignore[attr-defined]
            except (IndexError, TypeError, ValueError):
                same = False
            # Queued inside MULTI, a SELECT may or may not run: never count it as a way back.
            state = state & ~_DB if same and not state & _MULTI else state | _DB
        else:
            state |= _STICKY
        self._gpool_state = state

    # -- redis-py overrides ------------------------------------------------------------------------

    def on_connect(self, *args: Any, **kwargs: Any) -> Any:
        outer, self._gpool_handshake = self._gpool_handshake, True
        try:
            result = super().on_connect(*args, **kwargs)  # type: ignore[misc]
            if not outer and self._gpool_slot is not None:
                self._gpool_slot.owner._after_connect(self)
            return result
        finally:
            self._gpool_handshake = outer
            if not outer:  # a new session: nothing owed, nothing changed
                self._gpool_replies = 0
                self._gpool_state = 0

    def on_connect_check_health(self, *args: Any, **kwargs: Any) -> Any:  # redis-py >= 6
        outer, self._gpool_handshake = self._gpool_handshake, True
        try:
            result = super().on_connect_check_health(*args, **kwargs)  # type: ignore[misc]
            if not outer and self._gpool_slot is not None:
                self._gpool_slot.owner._after_connect(self)
            return result
        finally:
            self._gpool_handshake = outer
            if not outer:
                self._gpool_replies = 0
                self._gpool_state = 0

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        super().send_command(*args, **kwargs)  # type: ignore[misc]
        # Counted once sent: a lazy reconnect inside the send starts a new session (counters cleared).
        if not self._gpool_handshake:
            self._gpool_replies += 1  # first: a reply is owed even if the tracking below failed
            name = args[0]
            if name.__class__ is not str or name not in _NEUTRAL_NAMES:
                self._gpool_track(args)

    def pack_commands(self, commands: Any) -> Any:
        commands = list(commands)
        packed = super().pack_commands(commands)  # type: ignore[misc]
        # Until this batch is sent, an instance attribute routes send_packed_command() through the
        # counting below; single commands (counted by send_command()) never pay for that extra call.
        self._gpool_batch = commands
        self.__dict__["send_packed_command"] = self._gpool_send_batch
        return packed

    def _gpool_send_batch(self, command: Any, check_health: bool = True) -> None:
        batch, self._gpool_batch = self._gpool_batch, None
        self.__dict__.pop("send_packed_command", None)  # before the send: a reconnect's handshake must not see it
        super().send_packed_command(command, check_health)  # type: ignore[misc]
        if batch is not None and not self._gpool_handshake:
            for args in batch:
                self._gpool_track(args)
            self._gpool_replies += len(batch)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)  # type: ignore[misc]
        except _ResponseError:
            if not self._gpool_handshake:
                self._gpool_replies -= 1  # an error reply is a reply
            raise
        if not self._gpool_handshake:
            self._gpool_replies -= 1
        return response


_pooled_classes: dict[type, type] = {}


def _pooled_class(cls: Any) -> type:
    """``cls`` with :class:`PooledConnection` mixed in (one subclass per class, cached)."""
    if not (isinstance(cls, type) and issubclass(cls, _rconn.AbstractConnection)):
        raise TypeError(f"connection_class must be a redis.connection.AbstractConnection subclass, got {cls!r}")
    if issubclass(cls, PooledConnection):
        return cls
    pooled = _pooled_classes.get(cls)
    if pooled is None:
        pooled = type(f"Pooled{cls.__name__}", (PooledConnection, cls), {"__module__": "gpool.redis"})
        _pooled_classes[cls] = pooled
    return pooled


def _parser_is_clean(conn: Any) -> bool:
    """No bytes read from the socket and left unparsed (redis-py's pure-Python parser; hiredis: assumed)."""
    try:
        unread = conn._parser._buffer.unread_bytes
    except AttributeError:  # hiredis (its buffer is a bytearray), or no buffer yet
        return True
    return not unread()


class _Slot:
    """What the core pool holds: a redis-py connection plus the hooks the core calls.

    A wrapper rather than hooks on the connection itself, because redis-py already uses the name
    ``is_connected`` (a property) on its connections.
    """

    __slots__ = ("conn", "created", "epoch", "owner", "polled", "poller")

    def __init__(self, owner: RedisPool, conn: Any, epoch: int) -> None:
        self.owner = owner
        self.conn = conn
        self.epoch = epoch
        self.created = monotonic()
        self.polled: Any = None  # the socket object the poller watches
        self.poller: Any = None
        conn._gpool_slot = self

    def socket_is_clean(self) -> bool:
        """Connected, the server has not closed the socket and no unread bytes wait: no round trip."""
        sock = self.conn._sock
        if sock is None:
            return False
        if _poll is None:  # pragma: no cover
            return socket_is_clean(sock)
        if sock is not self.polled:  # a new socket (reconnected): its own registration
            try:
                poller = _poll()
                poller.register(sock.fileno(), _POLL_MASK)
            except (OSError, ValueError):  # closed meanwhile
                return False
            self.poller, self.polled = poller, sock
        return not self.poller.poll(0)

    def is_clean(self) -> bool:
        """The pool's check before every handout: no round trip, no yield.

        False for a connection of an older epoch (``disconnect()`` was called) or that its pool no longer
        wants (``_slot_is_current``: Sentinel's old master), a closed socket, one
        the server closed or with unread bytes in the socket or in the parser's buffer.
        """
        return (self.epoch == self.owner._epoch and self.owner._slot_is_current(self) and self.socket_is_clean()
                and _parser_is_clean(self.conn))

    def __repr__(self) -> str:
        return f"<gpool.redis slot {self.conn!r}>"

    def open(self) -> None:
        self.conn.connect()
        if not self.socket_is_clean():
            raise self.refusal()

    def refusal(self) -> Exception:
        """The error of a new connection the server closed or answered before any command.

        Redis accepts, writes ``-ERR max number of clients reached`` and closes when it is full.
        """
        conn = self.conn
        reason = "closed the connection"
        try:
            if conn._sock is not None:
                conn._sock.settimeout(0.1)  # the bytes are there already; the connection is discarded
                conn.read_response()
        except (_ResponseError, _RedisConnectionError) as exc:  # redis-py raises "max number of clients..."
            reason = f"refused the connection: {exc}"
        except Exception:
            pass
        return _RedisConnectionError(f"{conn._host_error()}: the server {reason}")

    def close(self) -> None:
        self.owner._slots.pop(id(self), None)
        self.conn.disconnect()  # redis-py does not shut down a socket inherited across fork

    def detach(self) -> None:
        """In a forked child: close this process's copy of the socket only (no shutdown, no QUIT)."""
        self.conn.disconnect()

    def is_connected(self) -> bool:
        """Zero-round-trip checks, then ``PING`` (the core calls this after ``check_interval`` idle)."""
        conn = self.conn
        sock = conn._sock
        if sock is None or not self.socket_is_clean() or not _parser_is_clean(conn):
            return False
        timeout = conn.socket_timeout
        sock.settimeout(HEALTH_CHECK_TIMEOUT if timeout is None else min(timeout, HEALTH_CHECK_TIMEOUT))
        try:
            conn.send_command("PING", check_health=False)
            reply = conn.read_response()
        finally:
            if conn._sock is sock:
                sock.settimeout(timeout)
        return reply in (b"PONG", "PONG") and conn._gpool_replies == 0

"""redis-py connections as the pool keeps them: reply counting, session-state tracking, the slot record."""

from __future__ import annotations

import io
import logging
import select
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Optional

# Absolute imports (Python 3): this is redis-py, not this module.
import redis.connection as _rconn
from gevent.monkey import get_original
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as _RedisConnectionError
from redis.exceptions import ResponseError as _ResponseError
from redis.retry import Retry

from ..connection import _os_socket, socket_is_clean

if TYPE_CHECKING:
    from ._pool import RedisPool

log = logging.getLogger("gpool.redis")

#: the longest the legacy health check (is_connected(), no deadline given) may wait for PONG
HEALTH_CHECK_TIMEOUT = 1.0

# One attempt: the pool's connect is retried by the pool (with backoff, within the caller's deadline),
# never also by redis-py's Retry inside Connection.connect() (which a user's retry= would configure).
_ONCE = Retry(NoBackoff(), 0)
_HAS_SHOULD_RECONNECT = hasattr(_rconn.AbstractConnection, "should_reconnect")
# redis-py's own send_command only packs and calls send_packed_command: inlined when not overridden.
_BASE_SEND_COMMAND = _rconn.AbstractConnection.send_command
# redis-py's own should_reconnect() returns the attribute _should_reconnect: read inline at checkout.
_BASE_SHOULD_RECONNECT = getattr(_rconn.AbstractConnection, "should_reconnect", None)

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
_K_MULTI, _K_EXEC, _K_WATCH, _K_UNWATCH, _K_SELECT, _K_CLIENT, _K_STICKY, _K_BLOCK = range(8)
_STICKY_COMMANDS = ("SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SYNC", "PSYNC", "RESET",
                    "HELLO", "AUTH", "QUIT", "READONLY", "READWRITE")
_STICKY_CLIENT = ("REPLY", "TRACKING", "SETNAME", "NO-EVICT", "NO-TOUCH", "CACHING")
_COMMAND_KINDS: dict[str, int] = {
    "MULTI": _K_MULTI, "EXEC": _K_EXEC, "DISCARD": _K_EXEC, "WATCH": _K_WATCH, "UNWATCH": _K_UNWATCH,
    "SELECT": _K_SELECT, "CLIENT": _K_CLIENT,
    **{name: _K_STICKY for name in _STICKY_COMMANDS},
    **{f"CLIENT {sub}": _K_STICKY for sub in _STICKY_CLIENT},
}

# Commands that wait on the server for their own timeout: where that timeout is, in seconds or ms.
# Their reply may legitimately take longer than socket_timeout (BLPOP jobs 5 with the 5 s default).
_BLOCKING: dict[str, tuple[str, float]] = {
    **{name: ("last", 1.0) for name in ("BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BZPOPMIN", "BZPOPMAX")},
    "BLMPOP": ("first", 1.0), "BZMPOP": ("first", 1.0),
    "WAIT": ("last", 0.001), "WAITAOF": ("last", 0.001),
    "XREAD": ("BLOCK", 0.001), "XREADGROUP": ("BLOCK", 0.001),
}
_COMMAND_KINDS.update({name: _K_BLOCK for name in _BLOCKING})

# Names (exact str) _gpool_track() found to change no state, so that GET costs a set lookup instead of
# a call. Bounded: execute_command() takes any string, and a name left out only takes the slow path.
_NEUTRAL_NAMES: set[str] = set()
_NEUTRAL_NAMES_MAX = 1024


def _word(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("latin-1")
    return value.upper() if isinstance(value, str) else ""


def _blocking_timeout(args: tuple[Any, ...]) -> Optional[float]:
    """Seconds a blocking command may wait on the server (0: forever), or None when it does not block."""
    where, unit = _BLOCKING[_word(args[0])]
    try:
        if where == "last":
            value = float(args[-1])
        elif where == "first":
            value = float(args[1])
        else:
            words = [_word(arg) for arg in args[1:]]
            words = words[:words.index("STREAMS")] if "STREAMS" in words else words  # keys may say BLOCK
            if "BLOCK" not in words:
                return None
            value = float(args[1 + words.index("BLOCK") + 1])
    except (IndexError, TypeError, ValueError):
        return None  # malformed: the server answers with an error at once
    return max(value, 0.0) * unit


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
    send); what the handshake sends (``AUTH``, ``HELLO``, ``SELECT`` of the configured db) is not
    counted. Under gevent, a command the kernel takes at once is written with one non-blocking
    ``send()`` rather than gevent's ``sendall`` (see ``_gpool_write``), which more than pays for it.
    """

    #: replies owed: commands sent minus replies read (0 when the connection can be reused)
    _gpool_replies = 0
    #: _MULTI | _WATCH | _DB | _STICKY bits
    _gpool_state = 0
    _gpool_handshake = False
    #: (packed, commands) of the last pack_commands(): counted once send_packed_command() sent it
    _gpool_batch: Optional[tuple[Any, list[Any]]] = None
    #: whether the next class's send_command is redis-py's own (pack, then send_packed_command)
    _gpool_inline_send = False
    #: whether its send_packed_command is redis-py's own (see _gpool_write)
    _gpool_own_send = False
    _gpool_raw_for: Any = None  # the socket _gpool_raw was looked up for
    _gpool_raw: Any = None  # the non-blocking OS socket under it, or None (TLS, not gevent's)
    #: the pool's record of this connection (set by the pool that made it)
    _gpool_slot: Optional[_Slot] = None
    #: the server-side timeout (s; 0: none) of the blocking command whose reply is read next
    _gpool_block: Optional[float] = None
    retry: Any  # redis-py's

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
        if kind == _K_BLOCK:
            self._gpool_block = _blocking_timeout(args)
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

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        """redis-py's ``connect``, tried once: the pool retries connects, with backoff, in its deadline.

        Everything sent while connecting is handshake, not the user's session: ``AUTH``, ``HELLO``,
        ``SELECT``, ``CLIENT SETINFO`` and whatever a ``redis_connect_func`` sends (the cluster
        client's ``READONLY``).
        """
        retry = self.retry
        self.retry = _ONCE
        try:
            return self._gpool_handshaking(super().connect, args, kwargs)  # type: ignore[misc]
        finally:
            self.retry = retry

    def connect_check_health(self, *args: Any, **kwargs: Any) -> Any:  # redis-py >= 6: also lazy reconnects
        return self._gpool_handshaking(super().connect_check_health, args, kwargs)  # type: ignore[misc]

    def _gpool_handshaking(self, call: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        fresh = self._sock is None  # type: ignore[attr-defined]
        outer, self._gpool_handshake = self._gpool_handshake, True
        try:
            result = call(*args, **kwargs)
            if fresh and not outer and self._gpool_slot is not None:
                self._gpool_slot.owner._after_connect(self)  # inside the handshake: ROLE is not the user's
            return result
        finally:
            self._gpool_handshake = outer
            if fresh and not outer:  # a new session: nothing owed, nothing changed
                self._gpool_replies = 0
                self._gpool_state = 0
                self._gpool_block = None

    # The next class's send_command, read_response and send_packed_command: _pooled_class() sets them
    # per class to the base's functions (a super() per command costs ~0.1 us); these defaults serve
    # other subclasses.
    def _gpool_send(self, *args: Any, **kwargs: Any) -> Any:
        return super().send_command(*args, **kwargs)  # type: ignore[misc]

    def _gpool_read(self, *args: Any, **kwargs: Any) -> Any:
        return super().read_response(*args, **kwargs)  # type: ignore[misc]

    def _gpool_send_packed(self, *args: Any, **kwargs: Any) -> Any:
        return super().send_packed_command(*args, **kwargs)  # type: ignore[misc]

    def _gpool_write(self, command: Any, check_health: bool) -> None:
        """redis-py's send_packed_command, in non-blocking sends when the kernel takes it all at once.

        Only for redis-py's own send_packed_command on a plain socket, with no health check due
        (``health_check_interval``); anything else, or what the kernel does not take at once (its
        buffer full, an error), goes through redis-py's, which waits, times out or raises as usual.
        """
        sock = self._sock  # type: ignore[attr-defined]
        raw = None
        if (sock is not None and self._gpool_own_send and not isinstance(command, str)
                and not (check_health and self.health_check_interval)):  # type: ignore[attr-defined]
            if sock is not self._gpool_raw_for:
                self._gpool_raw_for, self._gpool_raw = sock, _os_socket(sock)
            raw = self._gpool_raw
        if raw is None:
            self._gpool_send_packed(command, check_health)
            return
        for i, item in enumerate(command):
            try:
                sent = raw.send(item)
            except OSError:
                sent = 0
            if sent != len(item):
                self._gpool_send_packed([item[sent:], *command[i + 1:]], False)
                return

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        if self._gpool_inline_send:  # redis-py's own send_command, inlined: pack, then send (2 calls less)
            self._gpool_write(self._command_packer.pack(*args),  # type: ignore[attr-defined]
                              kwargs.get("check_health", True))
        else:
            self._gpool_send(*args, **kwargs)
        # Counted once sent: a lazy reconnect inside the send starts a new session (counters cleared).
        if not self._gpool_handshake:
            self._gpool_replies += 1  # first: a reply is owed even if the tracking below failed
            name = args[0]
            if name.__class__ is not str or name not in _NEUTRAL_NAMES:
                self._gpool_track(args)

    def pack_commands(self, commands: Any) -> Any:
        commands = list(commands)
        packed = super().pack_commands(commands)  # type: ignore[misc]
        # Counted when this very object is sent: callers may look up send_packed_command before
        # calling pack_commands (the cluster pipeline does), so no per-instance rerouting.
        self._gpool_batch = (packed, commands)
        return packed

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        batch = self._gpool_batch
        if batch is None or batch[0] is not command:
            self._gpool_write(command, check_health)
            return
        self._gpool_batch = None
        self._gpool_write(command, check_health)
        if not self._gpool_handshake:
            for args in batch[1]:
                self._gpool_track(args)
            self._gpool_replies += len(batch[1])
            self._gpool_block = None  # inside a batch (MULTI) nothing blocks

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        block = self._gpool_block
        try:
            if block is None:
                response = self._gpool_read(*args, **kwargs)
            else:
                self._gpool_block = None
                response = self._gpool_read_blocking(block, args, kwargs)
        except _ResponseError:
            if not self._gpool_handshake:
                self._gpool_replies -= 1  # an error reply is a reply
            raise
        if not self._gpool_handshake:
            self._gpool_replies -= 1
        return response

    def _gpool_read_blocking(self, block: float, args: Any, kwargs: Any) -> Any:
        """The reply of a blocking command: socket_timeout counts from the end of its own timeout."""
        sock = self._sock  # type: ignore[attr-defined]
        base = self.socket_timeout  # type: ignore[attr-defined]
        if sock is None or base is None:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        sock.settimeout(None if block == 0 else block + base)
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        finally:
            if self._sock is sock:  # type: ignore[attr-defined]
                sock.settimeout(base)


_pooled_classes: dict[type, type] = {}


def _pooled_class(cls: Any) -> type:
    """``cls`` with :class:`PooledConnection` mixed in (one subclass per class, cached)."""
    if not (isinstance(cls, type) and issubclass(cls, _rconn.AbstractConnection)):
        raise TypeError(f"connection_class must be a redis.connection.AbstractConnection subclass, got {cls!r}")
    if issubclass(cls, PooledConnection):
        return cls
    pooled = _pooled_classes.get(cls)
    if pooled is None:
        pooled = type(f"Pooled{cls.__name__}", (PooledConnection, cls), {
            "__module__": "gpool.redis", "_gpool_send": cls.send_command, "_gpool_read": cls.read_response,
            "_gpool_send_packed": cls.send_packed_command,
            "_gpool_inline_send": cls.send_command is _BASE_SEND_COMMAND,
            "_gpool_own_send": cls.send_packed_command is _rconn.AbstractConnection.send_packed_command})
        _pooled_classes[cls] = pooled
    return pooled


def _parser_is_clean(conn: Any) -> bool:
    """No bytes read from the socket and left unparsed, in redis-py's parser (Python or hiredis)."""
    parser = conn._parser
    try:
        return not parser._buffer.unread_bytes()  # the pure-Python RESP2/RESP3 parsers
    except AttributeError:  # hiredis, or not connected (no buffer)
        pass
    if getattr(parser, "_next_response", False) is not False:  # hiredis: a reply can_read() parsed
        return False
    reader = getattr(parser, "_reader", None)
    has_data = getattr(reader, "has_data", None)  # hiredis >= 3
    return not (has_data is not None and has_data())


class _Slot:
    """What the core pool holds: a redis-py connection plus the hooks the core calls.

    A wrapper rather than hooks on the connection itself, because redis-py already uses the name
    ``is_connected`` (a property) on its connections.
    """

    __slots__ = ("callbacks", "conn", "created", "epoch", "owner", "polled", "poller", "rbuf", "reconnect")

    def __init__(self, owner: RedisPool, conn: Any, epoch: int) -> None:
        self.owner = owner
        self.conn = conn
        self.epoch = epoch
        self.created = monotonic()
        self.polled: Any = None  # the socket object the poller watches
        self.poller: Any = None
        self.rbuf: Any = None  # the BytesIO of redis-py's pure-Python parser for that socket, if it has one
        #: redis-py's should_reconnect(), or None when it is the base one that reads _should_reconnect
        self.reconnect: Optional[Callable[[], Any]] = None
        if _HAS_SHOULD_RECONNECT and (type(conn).should_reconnect is not _BASE_SHOULD_RECONNECT
                                      or not hasattr(conn, "_should_reconnect")):
            self.reconnect = conn.should_reconnect
        #: a connection() block's copy of the response callbacks, reused while no block changed it
        self.callbacks: Any = None
        conn._gpool_slot = self

    def is_clean(self, poll: bool = True) -> bool:
        """Nothing unread, the server has not closed, redis-py wants no reconnect: no round trip.

        False when the connection is closed, when its socket is readable (unread bytes or the
        server's goodbye), when redis-py's parser holds bytes already read from the socket (a reply
        nobody asked for that came in the same segment as a real one), or when redis-py marked it
        for reconnection (``should_reconnect()``, maintenance notifications), and for a connection
        of an older epoch (``disconnect()`` was called since it was opened). ``poll=False`` (the
        pool's return-time check) skips the socket's poll: bytes still in the kernel are found by
        the poll at the next checkout, before anyone can read them.
        """
        # Run at every checkout: what does not change while the socket stays the same is looked up
        # once per socket (its poll registration, the parser's buffer), the rest inline (~0.6 us).
        conn = self.conn
        sock = conn._sock
        owner = self.owner
        if sock is None or self.epoch != owner._epoch:
            return False  # closed, or of an older epoch
        if owner._slot_check is not None and not owner._slot_check(self):
            return False  # no longer wanted (Sentinel: not the master now)
        if sock is not self.polled and not self._watch(sock):
            return False
        if poll:
            if _poll is None:  # pragma: no cover
                if not socket_is_clean(sock):
                    return False
            elif self.poller.poll(0):
                return False
        buf = self.rbuf
        if buf is None:
            if not _parser_is_clean(conn):  # hiredis, or a parser of another shape
                return False
        else:
            pos = buf.tell()  # redis-py's SocketBuffer.unread_bytes(), without its two calls
            if buf.seek(0, 2) != pos:
                buf.seek(pos)
                return False
        reconnect = self.reconnect
        if reconnect is None:
            return not (_HAS_SHOULD_RECONNECT and conn._should_reconnect)
        return not reconnect()

    def _watch(self, sock: Any) -> bool:
        """A new socket (connected, reconnected): its poll registration and parser buffer. False: closed."""
        try:
            if _poll is not None:
                poller = _poll()
                poller.register(sock.fileno(), _POLL_MASK)
                self.poller = poller
        except (OSError, ValueError):  # closed meanwhile
            return False
        buffer = getattr(getattr(self.conn._parser, "_buffer", None), "_buffer", None)
        self.rbuf = buffer if isinstance(buffer, io.BytesIO) else None
        self.polled = sock
        return True

    #: the name RedisPool's checkout used
    socket_is_clean = is_clean

    def __repr__(self) -> str:
        return f"<gpool.redis slot {self.conn!r}>"

    def open(self) -> None:
        self.conn.connect()
        if not self.is_clean():
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
                conn._gpool_handshake = True  # not a reply the user owes
                conn.read_response()
                reason = "sent a reply nobody asked for after the handshake"
        except (_ResponseError, _RedisConnectionError) as exc:  # redis-py raises "max number of clients..."
            reason = f"refused the connection: {exc}"
        except Exception:
            pass
        finally:
            conn._gpool_handshake = False
        return _RedisConnectionError(f"{conn._host_error()}: the server {reason}")

    def close(self) -> None:
        self.owner._slots.pop(id(self), None)
        self.conn.disconnect()  # redis-py does not shut down a socket inherited across fork

    def detach(self) -> None:
        """In a forked child: close this process's copy of the socket only (no shutdown, no QUIT)."""
        self.conn.disconnect()

    def health_check(self, timeout: Optional[float] = None) -> bool:
        """``PING`` within ``timeout`` seconds (None: ``socket_timeout``); False when it fails.

        :meth:`is_clean` before and after: a reply nobody asked for that came with the PONG fails
        it too. The socket timeout is restored afterwards; a PING that fails or times out
        disconnects (redis-py does). Never raises for a failure.
        """
        conn = self.conn
        sock = conn._sock
        if sock is None or (timeout is not None and timeout <= 0) or not self.is_clean():
            return False
        base = conn.socket_timeout
        sock.settimeout(base if timeout is None else timeout if base is None else min(timeout, base))
        try:
            conn.send_command("PING", check_health=False)
            reply = conn.read_response()
        except Exception:
            log.debug("pool %r: health check failed", self.owner._pool.name, exc_info=True)
            return False
        finally:
            if conn._sock is sock:
                sock.settimeout(base)
        return reply in (b"PONG", "PONG") and conn._gpool_replies == 0 and self.is_clean()

    def is_connected(self) -> bool:
        """:meth:`health_check` bounded by :data:`HEALTH_CHECK_TIMEOUT` (for a core that gives no deadline)."""
        base = self.conn.socket_timeout
        return self.health_check(HEALTH_CHECK_TIMEOUT if base is None else min(base, HEALTH_CHECK_TIMEOUT))

"""MySQL and MariaDB for gevent servers: a gpool :class:`~gpool.Pool` of PyMySQL connections.

PyMySQL is pure Python, so under ``gevent.monkey.patch_all()`` every query yields to the hub instead of
blocking the process. ``import gpool`` does not import this module (nor PyMySQL)::

    from gpool.mysql import MySQLPool

    pool = MySQLPool.from_url("mysql://app:secret@127.0.0.1:3306/shop?max_connections=20")
    rows = pool.query("SELECT id, name FROM item WHERE price < %s", (10,))
    with pool.transaction() as conn:
        with conn.cursor() as cur:
            cur.execute("UPDATE stock SET n = n - 1 WHERE id = %s", (7,))

What the pool does with each connection (see :class:`MySQLConnection`):

* on return, rolls back a transaction that may be open and restores autocommit: with
  ``autocommit=True`` that costs no round trip unless the user began a transaction; after a statement
  that changes the session (``SET``, ``USE``, ``LOCK TABLES``, ``CREATE TEMPORARY``, ``PREPARE``) it
  resets the session and runs the configured set-up again;
* drops it, never reusing it, when a query was interrupted (``gevent.Timeout``, a kill) or the
  connection was lost (errors 2006, 2013, 2014, 2055, server shutdown or kill); SQL errors keep it;
* pings it (``ping(reconnect=False)``) before handing it out after it sat idle longer than
  ``check_interval``, and never re-runs a statement.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import re
import select
import struct
from collections.abc import Iterator, Mapping, Sequence
from time import monotonic
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
import pymysql.connections
import pymysql.cursors
from gevent import monkey
from pymysql import err as _err
from pymysql.charset import charset_by_name
from pymysql.constants import CLIENT, COMMAND, CR, ER, SERVER_STATUS

from ._adapter import POOL_URL_OPTIONS, PoolFacade, url_bool, url_float, url_int, url_none, url_str
from .connection import socket_is_clean
from .pool import Pool

__all__ = ["MySQLConnection", "MySQLPool"]

log = logging.getLogger("gpool.mysql")

_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
_AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
_COM_RESET_CONNECTION = 0x1F  # MariaDB 10.2.4+, MySQL 5.7.3+; PyMySQL has no constant for it
_COM_QUIT_PACKET = struct.pack("<iB", 1, COMMAND.COM_QUIT)

#: Error codes after which the connection cannot be used again: the client lost the connection
#: (2006 gone away, 2013 lost during query, 2055 lost at system error), the protocol is out of
#: step (2014), or the server is closing it (1053 shutdown, 1927 MariaDB's "connection was killed",
#: 4031 MySQL 8's idle disconnect).
_FATAL_CODES = frozenset({
    CR.CR_SERVER_GONE_ERROR,
    CR.CR_SERVER_LOST,
    CR.CR_COMMANDS_OUT_OF_SYNC,
    CR.CR_SERVER_LOST_EXTENDED,
    ER.SERVER_SHUTDOWN,
    1927,
    4031,
})

# A statement that changes session state the pool cannot see in the protocol's status flags. Leading
# blanks and comments are skipped; the server runs what is inside /*! ... */, so that opener is
# skipped too. Linear: every loop iteration must consume a comment opener.
_SESSION_SQL = (
    r"\A\s*(?:(?:/\*(?!!).*?\*/|(?:--[ \t]|\#)[^\n]*(?:\n|\Z))\s*)*(?:/\*!\d*\s*)?"
    r"(SET|USE|LOCK|PREPARE|CREATE\s+(?:OR\s+REPLACE\s+)?TEMPORARY)\b"
)
_SESSION_STR = re.compile(_SESSION_SQL, re.IGNORECASE | re.DOTALL)
_SESSION_BYTES = re.compile(_SESSION_SQL.encode(), re.IGNORECASE | re.DOTALL)

# The first three characters of the everyday statements, in every mix of case. The pattern above
# can only match a statement that starts with a blank, a comment or one of its keywords, so one of
# these heads rules it out: a set lookup (~40 ns) instead of the regex (~170 ns) on each query.
_ORDINARY_HEADS = ("SEL", "INS", "UPD", "DEL", "REP", "WIT", "CAL", "SHO")
_ORDINARY_STR = frozenset(
    "".join(chars) for head in _ORDINARY_HEADS for chars in itertools.product(*((c, c.lower()) for c in head))
)
_ORDINARY_BYTES = frozenset(head.encode() for head in _ORDINARY_STR)

# Every TLS-related argument of pymysql.connect: they decide one SSLContext per pool (see _TLS).
_SSL_KEYS = ("ssl", "ssl_ca", "ssl_cert", "ssl_disabled", "ssl_key", "ssl_key_password",
             "ssl_verify_cert", "ssl_verify_identity")


_Connection = pymysql.connections.Connection

# The real poll even under monkey-patching, as in gpool.connection: no hub switch for a zero timeout.
_real_poll = monkey.get_original("select", "poll")


def _session_keyword(sql: Any) -> Any:
    """The keyword (``SET``, ``USE``...) of a statement that changes the session, or None."""
    match: Any
    if isinstance(sql, str):
        if sql[:3] in _ORDINARY_STR:
            return None
        match = _SESSION_STR.match(sql)
    else:
        if isinstance(sql, bytes) and sql[:3] in _ORDINARY_BYTES:  # not bytearray: unhashable
            return None
        match = _SESSION_BYTES.match(sql)
    return None if match is None else match.group(1)


class MySQLConnection(pymysql.connections.Connection):
    """A real PyMySQL connection plus the hooks :class:`gpool.Pool` calls.

    ``isinstance(conn, pymysql.connections.Connection)`` holds; everything PyMySQL offers works as
    usual. What it adds:

    * ``setsession``: SQL statements run after every connect (after PyMySQL's ``init_command``);
    * :meth:`reset` (on return to the pool), :meth:`is_connected` (health check), :meth:`is_fatal`
      (which errors poison it), :meth:`reset_session`, and a :meth:`close` that never blocks.

    It may be used without a pool: ``MySQLConnection(host=..., setsession=[...])`` connects like
    ``pymysql.connect``.
    """

    _result: Any  # PyMySQL's; declared for type checkers

    def __init__(self, *, setsession: Sequence[str] = (), _tls: Optional[_TLS] = None, **kwargs: Any) -> None:
        # Set before PyMySQL's __init__, which calls connect() and so our override.
        self._gpool_setsession = _statements("setsession", setsession)
        self._gpool_autocommit = False  # the autocommit the session had once set up: restored on reset
        self._gpool_session_changed = False  # a statement changed session state since the set-up
        self._gpool_db_changed = False  # ... and it selected another database
        self._gpool_used = False  # a statement ran since the set-up, the last reset, commit or rollback
        # What connect() learned about its socket, for _socket_is_clean(): the socket when it is plain
        # TCP, its fd and a poll() registered on it; or the socket when it is TLS.
        self._gpool_tcp_sock: Any = None
        self._gpool_tcp_fd = -1
        self._gpool_tcp_poll: Any = None
        self._gpool_tls_sock: Any = None
        if _tls is None:
            super().__init__(**kwargs)
            return
        defer = kwargs.pop("defer_connect", False)
        for key in _SSL_KEYS:
            kwargs.pop(key, None)
        super().__init__(ssl_disabled=True, defer_connect=True, **kwargs)  # builds no SSLContext
        _tls.apply(self)
        if not defer:
            self.connect()

    # -- PyMySQL overrides -----------------------------------------------------------------------

    def connect(self, sock: Any = None) -> None:
        """Connect (PyMySQL), then run ``setsession``. On failure the socket is closed and the error raised."""
        super().connect(sock)
        try:
            self._run_setsession()
        except BaseException:
            self._force_close()
            raise
        self._gpool_autocommit = self.get_autocommit()
        self._gpool_session_changed = self._gpool_db_changed = self._gpool_used = False
        # Once per socket rather than at every checkout: hasattr() on a gevent socket that lacks the
        # attribute goes through a failing __getattr__ (~0.8 µs), and building and registering a
        # poll object per check costs 0.2-0.5 µs more than keeping one (see _socket_is_clean).
        sock = self._sock
        if hasattr(sock, "getpeercert"):
            self._gpool_tls_sock = sock
            self._gpool_tcp_sock, self._gpool_tcp_fd, self._gpool_tcp_poll = None, -1, None
        else:
            fd = sock.fileno()
            poller = _real_poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            self._gpool_tls_sock = None
            self._gpool_tcp_sock, self._gpool_tcp_fd, self._gpool_tcp_poll = sock, fd, poller.poll

    def query(self, sql: Any, unbuffered: bool = False) -> int:
        """PyMySQL's ``query``, noting that the connection was used and whether the session changed."""
        self._gpool_used = True
        keyword = _session_keyword(sql)
        if keyword is not None:
            self._gpool_session_changed = True
            if keyword[:1] in ("U", "u", b"U", b"u"):
                self._gpool_db_changed = True
        # The base class named directly, here and in _write_bytes: super() costs ~0.1 µs per query.
        return _Connection.query(self, sql, unbuffered)  # type: ignore[no-any-return]

    def commit(self) -> None:
        """PyMySQL's ``commit``."""
        super().commit()
        self._gpool_used = False

    def rollback(self) -> None:
        """PyMySQL's ``rollback``."""
        super().rollback()
        self._gpool_used = False

    def _write_bytes(self, data: bytes) -> None:
        try:
            _Connection._write_bytes(self, data)
        except BaseException:
            # PyMySQL closes the socket when a read is interrupted (gevent.Timeout, a kill) but not a
            # write: half a packet would stay on the wire, and the server would take the next command
            # as its rest. Closing here makes the connection unusable even if the caller swallows
            # the Timeout inside its ``with`` block.
            self._force_close()
            raise

    def select_db(self, db: str) -> None:
        """PyMySQL's ``select_db``; the pool selects the configured database again on return."""
        self._gpool_session_changed = self._gpool_db_changed = True
        super().select_db(db)

    def set_character_set(self, charset: str, collation: Optional[str] = None) -> None:
        """PyMySQL's ``set_character_set``; the pool restores the configured one on return."""
        self._gpool_session_changed = True
        super().set_character_set(charset, collation)

    def detach(self) -> None:
        """In a forked child: close this process's copy of the socket, without ``COM_QUIT``."""
        sock, rfile = getattr(self, "_sock", None), getattr(self, "_rfile", None)
        self._sock = None
        self._rfile = None
        if rfile is not None:
            rfile.raw.close()  # not rfile.close(): a greenlet parked in rfile.read() holds its lock
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Close now: a best-effort ``COM_QUIT`` that never waits, then the socket.

        Unlike PyMySQL's ``close`` it never blocks (a stalled server or a half-written packet cannot
        hold the caller) and never raises; calling it again does nothing.
        """
        self._closed = True
        result = self._result
        if result is not None:
            result.unbuffered_active = False  # else its __del__ would read the rest from a closed socket
        sock = self._sock
        if sock is None:
            return
        try:
            sock.settimeout(0.0)  # a full send buffer means a stalled peer: skip the goodbye
            sock.send(_COM_QUIT_PACKET)
        except Exception:
            pass
        finally:
            self._force_close()

    # -- pool hooks --------------------------------------------------------------------------------

    def is_connected(self) -> bool:
        """``ping(reconnect=False)``; False when it fails. Called by the pool on connections idle > check_interval.

        On plain TCP a zero-round-trip check comes first: unread bytes on an idle connection (a reply
        nobody read, the server's goodbye) or a closed peer mean it is unusable.
        """
        if not self._socket_is_clean():
            return False
        try:
            self.ping(reconnect=False)
        except Exception:
            return False
        return True

    def is_fatal(self, exc: BaseException) -> bool:
        """True when ``exc`` (raised while the connection was checked out) leaves it unusable.

        Lost or closed connections and protocol errors are fatal: PyMySQL closed the socket, an
        ``OSError``, or one of the codes 2006, 2013, 2014, 2055, 1053, 1927, 4031, or
        ``InterfaceError(0)`` (closed). SQL errors (syntax, duplicate key, deadlock, lock wait
        timeout, ``KILL QUERY``) are not.
        """
        if self._sock is None:
            return True
        if isinstance(exc, (OSError, EOFError)):
            return True
        if isinstance(exc, _err.MySQLError) and exc.args:
            code = exc.args[0]
            return code in _FATAL_CODES or (code == 0 and isinstance(exc, _err.InterfaceError))
        return False

    def reset(self) -> None:
        """Make the session what the pool configured for the next user; raise when it cannot.

        Rolls back a transaction that may be open and restores autocommit. With autocommit on, only
        an explicit ``BEGIN`` opens one and the server flags it (``SERVER_STATUS_IN_TRANS``), so the
        common case costs no round trip. With autocommit off, any statement opens one and MariaDB
        does not flag read-only ones (not even ``SELECT ... FOR UPDATE``, which holds locks): a
        ``ROLLBACK`` follows any statement not followed by ``commit()``/``rollback()``. After a
        session-changing statement it runs :meth:`reset_session` instead.
        Raising makes the pool drop the connection: a closed connection, or an unbuffered result
        left unread (reading it all could take long).
        """
        if self._sock is None:
            raise _err.InterfaceError(0, "the connection was closed while checked out")
        result = self._result
        if result is not None:
            if result.unbuffered_active:
                raise _err.ProgrammingError("an unbuffered result was left unread; connection discarded")
            if not result.has_next:
                self._result = None  # the next user should not read our insert_id or rows
        if self._gpool_session_changed:
            self.reset_session()
            return
        status = self.server_status
        if status & _IN_TRANS or (self._gpool_used and not status & _AUTOCOMMIT):
            self.rollback()
            status = self.server_status
        self._gpool_used = False
        if bool(status & _AUTOCOMMIT) != self._gpool_autocommit:
            self.autocommit(self._gpool_autocommit)

    def reset_session(self) -> None:
        """Reset the session on the server and set it up again, as after connect.

        ``COM_RESET_CONNECTION`` rolls back, drops temporary tables, releases ``LOCK TABLES`` and
        ``GET_LOCK()`` locks, clears user variables and prepared statements and restores session
        variables; then the character set, ``sql_mode``, ``init_command``, ``setsession``, the
        database and autocommit are applied again (1 + n round trips). The pool calls it on return
        after a session-changing statement it noticed; call it yourself after changes it cannot see
        (inside stored procedures, ``SELECT @v := ...``, multi-statements). Raises on failure (a pool
        then drops the connection), e.g. on servers older than MariaDB 10.2 / MySQL 5.7.
        """
        self._execute_command(_COM_RESET_CONNECTION, "")
        self._read_ok_packet()
        super().set_character_set(self.charset, self.collation)
        with pymysql.cursors.Cursor(self) as cur:
            if self.sql_mode is not None:
                cur.execute("SET sql_mode=%s", (self.sql_mode,))
            if self.init_command is not None:
                cur.execute(self.init_command)
        self._run_setsession()
        if self._gpool_db_changed:
            if not self.db:
                raise _err.ProgrammingError("a database was selected but none is configured; connection discarded")
            super().select_db(self.db)
        if bool(self.server_status & _AUTOCOMMIT) != self._gpool_autocommit:
            self.autocommit(self._gpool_autocommit)
        self._gpool_session_changed = self._gpool_db_changed = self._gpool_used = False

    def _socket_is_clean(self) -> bool:
        """The zero-round-trip check (:func:`gpool.connection.socket_is_clean`), made at every checkout.

        False when the socket is closed, the peer closed it, or unread bytes wait on it. True without
        looking on TLS: the peer may legitimately send session tickets, and the ping after
        ``check_interval`` covers TLS connections.
        """
        sock = self._sock
        if sock is None:
            return False
        if sock is self._gpool_tcp_sock:
            # Same fd: the socket was not closed behind our back, whose number another socket may reuse
            return sock.fileno() == self._gpool_tcp_fd and not self._gpool_tcp_poll(0)
        if sock is self._gpool_tls_sock:
            return True
        return hasattr(sock, "getpeercert") or socket_is_clean(sock)  # a socket connect() did not see

    def _run_setsession(self) -> None:
        if self._gpool_setsession:
            with pymysql.cursors.Cursor(self) as cur:  # not the user's cursorclass: SSCursor would need draining
                for statement in self._gpool_setsession:
                    cur.execute(statement)


class _TLS:
    """The TLS decision PyMySQL makes from the connect arguments, made once, with one SSLContext.

    PyMySQL builds a new ``SSLContext`` (``ssl.create_default_context()``, ~30 ms of CPU that stalls
    the hub) on every connect unless TLS is disabled, including in its default "preferred" mode where
    the server may not even offer TLS. Here PyMySQL itself decides from the user's arguments (on a
    connection object that never connects), and each pooled connection reuses its context with the
    same mode: required stays required, preferred stays preferred, disabled builds nothing.
    """

    __slots__ = ("ctx", "flags", "required", "use_ssl")

    def __init__(self, template: pymysql.connections.Connection) -> None:
        self.use_ssl = bool(template.ssl)
        self.ctx = getattr(template, "ctx", None) if self.use_ssl else None
        # False in the "preferred" mode of recent PyMySQL; absent in versions without that mode
        self.required = getattr(template, "_ssl_required", None)
        self.flags = template.client_flag & CLIENT.SSL

    def apply(self, conn: pymysql.connections.Connection) -> None:
        conn.ssl = self.use_ssl
        if self.use_ssl:
            conn.ctx = self.ctx
            conn.client_flag |= self.flags
        if self.required is not None:
            conn._ssl_required = self.required


class _Secret:
    """Holds the password so that no repr (debuggers, error reporters dumping locals) shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "'***'" if self._value else "''"

    def reveal(self) -> Any:
        return self._value


def _statements(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of SQL statements, got {type(value).__name__}")
    for statement in value:
        if not isinstance(statement, str) or not statement.strip():
            raise ValueError(f"{name} must hold non-empty SQL strings, got {statement!r}")
    return tuple(value)


# pymysql.connect() arguments the caller may pass through MySQLPool(**connect_kwargs).
_CONNECT_ARGS = frozenset(
    name for name, p in inspect.signature(pymysql.connections.Connection.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
) - {"host", "port", "user", "password", "database", "init_command", "autocommit", "defer_connect",
     "passwd", "db"}

# Every other keyword of gpool.Pool (max_waiting, max_usage, retry, retry_delay, name, leak_timeout,
# on_checkout...) passes through MySQLPool(**kwargs) unchanged.
_POOL_ARGS = frozenset(inspect.signature(Pool.__init__).parameters) - {"self", "factory", "options"}


_pool_acquire = Pool.acquire


class _CorePool(Pool[MySQLConnection]):
    """The core pool, plus a zero-round-trip check of every connection it hands out."""

    def acquire(self, timeout: Optional[float] = None) -> MySQLConnection:
        # The core pings only connections idle longer than check_interval; one the server closed
        # sooner (KILL, restart, wait_timeout) has a readable socket: drop it and take the next.
        # The first attempt passes timeout through unchanged; only a retry pays for the arithmetic
        # (a number instead of None would also make the core validate it on every call).
        start = monotonic()
        conn = _pool_acquire(self, timeout)
        while True:
            if conn._socket_is_clean():
                return conn
            self.drop(conn, "check_failed")
            if timeout is None:
                timeout = self._timeout
            conn = _pool_acquire(self, None if timeout is None else max(0.0, start + timeout - monotonic()))


class MySQLPool(PoolFacade):
    """A gevent-cooperative pool of PyMySQL connections (:class:`MySQLConnection`).

    Pool keywords are those of :class:`gpool.Pool`, with its defaults (``max_waiting``, ``max_usage``,
    ``retry``, ``retry_delay``, ``name``, ``reap_interval``, ``leak_timeout``, the ``on_*`` hooks...
    pass through ``**kwargs``); ``init_command``, ``autocommit`` and every other keyword (``charset``,
    ``connect_timeout``, ``read_timeout``, ``ssl_ca``, ``cursorclass``...) go to ``pymysql.connect``;
    ``setsession`` is a list of statements run on each new connection. Nothing connects before the
    first use unless ``initial_connections`` > 0.

    Acquisitions (``connection()``, ``transaction()`` and the helpers) wait at most ``timeout``
    seconds, including connect retries, then raise :class:`gpool.PoolExhaustedError` (with the last
    connect error as ``__cause__``). Driver errors from queries pass through unchanged. After
    :meth:`close` they raise :class:`gpool.PoolClosedError`.

    Raises ``TypeError`` (wrong type, unknown keyword) or ``ValueError`` (bad value) naming the
    parameter. The password never appears in ``repr()``, logs or error messages.
    """

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 3306,
        user: Optional[str] = None,
        password: str = "",
        database: Optional[str] = None,
        max_connections: int = 10,
        initial_connections: int = 0,
        timeout: Optional[float] = 30.0,
        idle_timeout: Optional[float] = 600.0,
        max_lifetime: Optional[float] = 3600.0,
        check_interval: Optional[float] = 1.0,
        init_command: Optional[str] = None,
        setsession: Optional[Sequence[str]] = None,
        autocommit: Optional[bool] = False,
        **kwargs: Any,
    ) -> None:
        pool_kwargs: dict[str, Any] = {}
        connect_kwargs: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in _POOL_ARGS:
                pool_kwargs[key] = value
            elif key in _CONNECT_ARGS:
                connect_kwargs[key] = value
            elif key in ("passwd", "db"):
                instead = "password" if key == "passwd" else "database"
                raise TypeError(f"{key} is a deprecated PyMySQL alias: use {instead}")
            elif key == "defer_connect":
                raise TypeError("defer_connect is not supported: the pool connects when a connection is needed")
            else:
                raise TypeError(
                    f"unknown keyword argument {key!r}: neither a pool option nor a pymysql.connect() argument")
        if not isinstance(host, str):
            raise TypeError(f"host must be a string, got {host!r}")
        if not host:
            raise ValueError("host must be a non-empty string, got ''")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an integer, got {port!r}")
        if not 0 < port < 65536:
            raise ValueError(f"port must be from 1 to 65535, got {port!r}")
        if user is not None and not isinstance(user, str):
            raise TypeError(f"user must be a string or None, got {type(user).__name__}")
        if not isinstance(password, (str, bytes)):
            raise TypeError(f"password must be a string, got {type(password).__name__}")  # never its value
        if database is not None and not isinstance(database, str):
            raise TypeError(f"database must be a string or None, got {database!r}")
        if database == "":
            raise ValueError("database must be a non-empty string or None, got ''")
        if init_command is not None and not isinstance(init_command, str):
            raise TypeError(f"init_command must be a string or None, got {type(init_command).__name__}")
        if autocommit is not None and not isinstance(autocommit, bool):
            raise TypeError(f"autocommit must be a bool or None, got {autocommit!r}")
        self._setsession = _statements("setsession", setsession)
        self._password = _Secret(password)
        self._kwargs: dict[str, Any] = dict(
            connect_kwargs, host=host, port=port, user=user, database=database,
            init_command=init_command, autocommit=autocommit,
        )
        _check_connect_args(self._kwargs)
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self._tls: Optional[_TLS] = None  # built at the first connect: after monkey-patching, in the worker
        target = connect_kwargs.get("unix_socket") or f"{host}:{port}"
        self._target = f"{user or ''}@{target}/{database or ''}"
        name = pool_kwargs.pop("name", None)
        self._pool: Pool[MySQLConnection] = _CorePool(
            self._connect,
            None,
            initial_connections=initial_connections,
            max_connections=max_connections,
            timeout=timeout,
            idle_timeout=idle_timeout,
            max_lifetime=max_lifetime,
            check_interval=check_interval,
            name=name if name is not None else f"mysql://{self._target}",
            **pool_kwargs,
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> MySQLPool:
        """A pool from ``mysql://user:password@host:port/database?option=value&...``.

        Schemes ``mysql://`` and ``mysql+pymysql://``; user and password are percent-decoded. Query
        options are the pool keywords and ``pymysql.connect`` arguments that have a text form
        (numbers, booleans as ``true``/``false``/``1``/``0``, ``none`` where None is allowed,
        ``cursorclass=DictCursor``; ``setsession`` may repeat). ``kwargs`` add to or override them.
        Raises ``ValueError`` naming the part or option that is wrong; the URL itself is never put
        in a message.
        """
        if not isinstance(url, str):
            raise TypeError(f"url must be a string, got {type(url).__name__}")
        try:
            parts = urlsplit(url)
        except ValueError:  # its message may quote the netloc, password included
            raise ValueError("url: malformed (expected mysql://user:password@host:port/database)") from None
        if parts.scheme not in ("mysql", "mysql+pymysql"):
            raise ValueError(f"url: scheme must be mysql:// or mysql+pymysql://, got {parts.scheme + '://'!r}")
        if parts.fragment:
            raise ValueError("url: a fragment (#...) is not allowed")
        try:
            port = parts.port
        except ValueError:
            text = parts.netloc.rpartition("@")[2].rpartition(":")[2]
            raise ValueError(f"url: port must be an integer from 1 to 65535, got {text!r}") from None
        options: dict[str, Any] = {}
        if parts.hostname:
            options["host"] = unquote(parts.hostname)
        if port is not None:
            if port == 0:
                raise ValueError("url: port must be an integer from 1 to 65535, got '0'")
            options["port"] = port
        if parts.username:
            options["user"] = unquote(parts.username)
        if parts.password is not None:
            options["password"] = unquote(parts.password)
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        if "/" in path:
            raise ValueError(f"url: database must be a single path segment, got {path!r}")
        if path:
            options["database"] = path
        try:
            pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise ValueError("url: the query string is malformed (expected option=value&...)") from None
        setsession: list[str] = []
        for key, text in pairs:
            if key == "setsession":
                setsession.append(text)
                continue
            if key not in _URL_OPTIONS:
                raise ValueError(f"url: unknown option {key!r}")
            if key in options:
                raise ValueError(f"url: option {key!r} given more than once")
            options[key] = _URL_OPTIONS[key](key, text)
        if setsession:
            options["setsession"] = setsession
        options.update(kwargs)
        return cls(**options)

    # -- the pool ------------------------------------------------------------------------------------

    @property
    def max_connections(self) -> int:
        """The hard cap on :attr:`size`."""
        return self._pool.max_connections

    def connection(self, timeout: Optional[float] = None) -> contextlib.AbstractContextManager[MySQLConnection]:
        """``with pool.connection() as conn:`` a :class:`MySQLConnection`, returned (reset) on exit.

        An interrupted block (``gevent.Timeout``, a kill) or a fatal error (:meth:`MySQLConnection.is_fatal`)
        closes the connection instead of returning it; other errors propagate after the reset. Waits
        at most ``timeout`` (default: the pool's) then raises :class:`gpool.PoolExhaustedError`;
        :class:`gpool.PoolClosedError` after :meth:`close`.
        """
        return self._pool.connection(timeout)

    def acquire(self, timeout: Optional[float] = None) -> MySQLConnection:
        """Take a connection; give it back with :meth:`release` (or :meth:`drop`). Prefer :meth:`connection`."""
        return self._pool.acquire(timeout)

    def release(self, conn: MySQLConnection) -> None:
        """Return a connection from :meth:`acquire` (reset; closed when the reset fails)."""
        self._pool.release(conn)

    def drop(self, conn: MySQLConnection) -> None:
        """Close a connection from :meth:`acquire` and forget it (after an error you cannot classify)."""
        self._pool.drop(conn)

    @contextlib.contextmanager
    def transaction(self, timeout: Optional[float] = None) -> Iterator[MySQLConnection]:
        """``with pool.transaction() as conn:`` ``BEGIN``; ``COMMIT`` when the block succeeds.

        On an exception the transaction is rolled back and the exception re-raised: with an explicit
        ``ROLLBACK`` for errors, by closing the connection (the server rolls back) when the block was
        interrupted (``gevent.Timeout``, a kill) or the connection is lost. A failing ``COMMIT``
        raises; nothing is retried. Acquisition as in :meth:`connection`.
        """
        with self._pool.connection(timeout) as conn:
            conn.begin()
            try:
                yield conn
            except Exception:
                if conn.open:
                    try:
                        conn.rollback()
                    except Exception:
                        # The block's error is the one to report; the broken connection is dropped by
                        # is_fatal() (PyMySQL closed it) or by the reset that retries the rollback.
                        log.debug("pool %r: rollback after an error failed", self.name, exc_info=True)
                raise
            conn.commit()

    # -- helpers: one statement, one unit of work --------------------------------------------------

    def query(self, sql: str, args: Any = None) -> list[dict[str, Any]]:
        """Run ``sql`` and return every row as a dict (column name -> value).

        Each helper is one unit of work on one pooled connection: it commits when the statement left
        a transaction open (autocommit off), so it behaves the same under either autocommit setting,
        and it never retries. Acquisition waits at most the pool's ``timeout`` then raises
        :class:`gpool.PoolExhaustedError`; driver errors propagate (the connection is dropped when
        they are fatal); :class:`gpool.PoolClosedError` after :meth:`close`.
        """
        with self._pool.connection() as conn:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute(sql, args)
                rows = list(cur.fetchall())
            _commit_if_open(conn)
        return rows

    def query_one(self, sql: str, args: Any = None) -> Optional[dict[str, Any]]:
        """Run ``sql`` and return its first row as a dict, or None when there is none. Errors as in :meth:`query`."""
        with self._pool.connection() as conn:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute(sql, args)
                row = cur.fetchone()
            _commit_if_open(conn)
        return row  # type: ignore[no-any-return]

    def execute(self, sql: str, args: Any = None) -> int:
        """Run one statement, commit, and return the number of affected rows. Errors as in :meth:`query`."""
        with self._pool.connection() as conn:
            with conn.cursor() as cur:
                count = cur.execute(sql, args)
            _commit_if_open(conn)
        return int(count)

    def executemany(self, sql: str, seq_of_args: Sequence[Any]) -> int:
        """Run ``sql`` once per item of ``seq_of_args`` (one multi-row ``INSERT`` when possible), commit,
        and return the total of affected rows (0 for an empty sequence). Errors as in :meth:`query`."""
        with self._pool.connection() as conn:
            with conn.cursor() as cur:
                count = cur.executemany(sql, seq_of_args)
            _commit_if_open(conn)
        return int(count or 0)

    def insert(self, sql: str, args: Any = None) -> int:
        """Run an ``INSERT``, commit, and return ``lastrowid`` (the AUTO_INCREMENT id; 0 when none).

        Errors as in :meth:`query`.
        """
        with self._pool.connection() as conn:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                rowid = cur.lastrowid
            _commit_if_open(conn)
        return int(rowid or 0)

    # -- state ------------------------------------------------------------------------------------

    def __enter__(self) -> MySQLPool:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        pool = self._pool
        state = " closed" if pool.closed else ""
        stats = pool.stats()
        target = "" if pool.name == f"mysql://{self._target}" else f" {self._target}"
        return (f"<MySQLPool {pool.name!r}{target}{state} size={pool.size}/{pool.max_connections} "
                f"idle={stats.idle} in_use={stats.in_use} waiting={stats.waiting}>")

    # -- internals ----------------------------------------------------------------------------------

    def _connect(self) -> MySQLConnection:
        """The pool's factory."""
        tls = self._tls
        if tls is None:
            # PyMySQL makes the TLS decision from the same arguments; without a password, no I/O.
            self._tls = tls = _TLS(pymysql.connections.Connection(defer_connect=True, **self._kwargs))
            mode = "off" if not tls.use_ssl else "preferred" if tls.required is False else "required"
            log.debug("pool %r: TLS %s, one SSLContext shared by its connections", self.name, mode)
        return MySQLConnection(setsession=self._setsession, _tls=tls, password=self._password.reveal(),
                               **self._kwargs)


def _commit_if_open(conn: MySQLConnection) -> None:
    # With autocommit off every statement opens a transaction, flagged or not (see reset()).
    status = conn.server_status
    if status & _IN_TRANS or not status & _AUTOCOMMIT:
        conn.commit()


def _check_connect_args(kwargs: Mapping[str, Any]) -> None:
    """Let PyMySQL validate the arguments now (no I/O: it does not connect nor build an SSLContext)."""
    probe = {k: v for k, v in kwargs.items() if k not in _SSL_KEYS}
    charset = probe.get("charset")
    if charset:
        try:
            known = charset_by_name(charset)
        except KeyError:  # older PyMySQL
            known = None
        if known is None:
            raise ValueError(f"charset: unknown character set {charset!r}")
    try:
        pymysql.connections.Connection(defer_connect=True, ssl_disabled=True, **probe)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"invalid pymysql.connect() argument: {exc}") from None


# -- from_url option parsing -----------------------------------------------------------------------


def _url_secret(key: str, text: str) -> str:
    return text  # never echoed


def _url_cursorclass(key: str, text: str) -> Any:
    cls = getattr(pymysql.cursors, text, None)
    if not (isinstance(cls, type) and issubclass(cls, pymysql.cursors.Cursor)):
        raise ValueError(f"url: option cursorclass must name a pymysql.cursors class (e.g. DictCursor), got {text!r}")
    return cls


_URL_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    **POOL_URL_OPTIONS,
    "retry": url_int,
    # session
    "autocommit": url_none(url_bool),
    "init_command": url_str,
    # pymysql.connect
    "charset": url_str,
    "collation": url_str,
    "sql_mode": url_str,
    "connect_timeout": url_float,
    "read_timeout": url_none(url_float),
    "write_timeout": url_none(url_float),
    "unix_socket": url_str,
    "local_infile": url_bool,
    "max_allowed_packet": url_int,
    "bind_address": url_str,
    "binary_prefix": url_bool,
    "program_name": url_str,
    "use_unicode": url_bool,
    "client_flag": url_int,
    "read_default_file": url_str,
    "read_default_group": url_str,
    "cursorclass": _url_cursorclass,
    "ssl_ca": url_str,
    "ssl_cert": url_str,
    "ssl_key": url_str,
    "ssl_key_password": _url_secret,
    "ssl_disabled": url_bool,
    "ssl_verify_cert": url_bool,
    "ssl_verify_identity": url_bool,
}

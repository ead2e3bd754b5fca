"""``MySQLPool``: a gpool core pool of :class:`MySQLConnection`."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

import pymysql
import pymysql.connections
import pymysql.cursors
from pymysql.charset import charset_by_name

from .._adapter import PoolFacade
from ..errors import ConnectFailedError, PoolExhaustedError
from ..options import PoolOptions
from ..pool import Pool
from ._connection import _AUTOCOMMIT, _IN_TRANS, _SSL_KEYS, _TLS, MySQLConnection, _Secret, _statements
from ._hosts import HostList, HostListStats, make_host_list
from ._url import parse_url
from ._validate import check_connect_kwargs

log = logging.getLogger("gpool.mysql")

# pymysql.connect() arguments the caller may pass through MySQLPool(**connect_kwargs).
_CONNECT_ARGS = frozenset(
    name for name, p in inspect.signature(pymysql.connections.Connection.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
) - {"host", "port", "user", "password", "database", "init_command", "autocommit", "defer_connect",
     "passwd", "db"}

#: Connect errors no retry cures: access denied (1044, 1045), unknown database (1049), an
#: authentication plugin the client cannot use (1251, 2059), and bad arguments.
_PERMANENT_CODES = frozenset({1044, 1045, 1049, 1251, 2059})


def _is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, (TypeError, ValueError)):
        return True
    return isinstance(exc, pymysql.err.MySQLError) and bool(exc.args) and exc.args[0] in _PERMANENT_CODES


class MySQLConnectFailedError(ConnectFailedError, pymysql.err.OperationalError):
    """:class:`gpool.ConnectFailedError` that is also PyMySQL's ``OperationalError``, with the driver's
    error code as ``args[0]`` (1045 access denied, 2003 cannot connect...), so code written against
    PyMySQL catches it unchanged."""

    def __str__(self) -> str:
        return str(self.args[1]) if len(self.args) == 2 else super().__str__()  # not OSError's "[Errno N] ..."


class _CorePool(Pool[MySQLConnection]):
    """The core pool; its connect failures are also PyMySQL's ``OperationalError``."""

    def _exhausted(self, attempt: Any, kind: Optional[type[PoolExhaustedError]] = None,
                   why: str = "") -> PoolExhaustedError:
        error = super()._exhausted(attempt, kind, why)
        if not isinstance(error, ConnectFailedError):
            return error
        cause = error.__cause__
        code = cause.args[0] if isinstance(cause, pymysql.err.MySQLError) and cause.args else 2003
        converted = MySQLConnectFailedError(code if isinstance(code, int) else 2003, str(error))
        converted.__cause__ = cause
        return converted


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

    Several servers: ``hosts=["db1:3306", "db2:3306", "db3"]`` (instead of ``host``; ``port`` is the
    default port of entries without one) and ``target``: ``"any"`` (default), ``"primary"``
    (writable), ``"replica"`` (read-only) or ``"prefer-replica"``. A role probe runs on each new
    connection and as the idle health check; ``host_order`` ``"sequential"`` or ``"random"``
    (default: sequential for primary/any, random for the replica targets); a host that failed is
    skipped for ``host_down_for`` seconds; each host gets ``host_connect_timeout`` (default:
    ``connect_timeout``) for connect, greeting, authentication and probe. See docs/multihost.md and
    :meth:`host_stats`.

    Raises ``TypeError`` (wrong type, unknown keyword, ``host`` with ``hosts``) or ``ValueError``
    (bad value) naming the parameter. The password never appears in ``repr()``, logs or error messages.
    """

    def __init__(
        self,
        *,
        host: Optional[str] = None,
        port: int = 3306,
        hosts: Optional[Sequence[str]] = None,
        target: str = "any",
        host_order: Optional[str] = None,
        host_down_for: float = 5.0,
        host_connect_timeout: Optional[float] = None,
        user: Optional[str] = None,
        password: str = "",
        database: Optional[str] = None,
        init_command: Optional[str] = None,
        setsession: Optional[Sequence[str]] = None,
        autocommit: Optional[bool] = False,
        **kwargs: Any,
    ) -> None:
        pool_kwargs, rest = PoolOptions.split(kwargs)
        connect_kwargs: dict[str, Any] = {}
        for key, value in rest.items():
            if key in _CONNECT_ARGS:
                connect_kwargs[key] = value
            elif key in ("passwd", "db"):
                instead = "password" if key == "passwd" else "database"
                raise TypeError(f"{key} is a deprecated PyMySQL alias: use {instead}")
            elif key == "defer_connect":
                raise TypeError("defer_connect is not supported: the pool connects when a connection is needed")
            else:
                raise TypeError(
                    f"unknown keyword argument {key!r}: neither a pool option nor a pymysql.connect() argument")
        self._hosts: Optional[HostList] = make_host_list(
            hosts=hosts, host=host, port=port, target=target, host_order=host_order, host_down_for=host_down_for,
            host_connect_timeout=host_connect_timeout, connect_timeout=connect_kwargs.get("connect_timeout"),
            name=lambda: self.name, unix_socket=connect_kwargs.get("unix_socket"))
        if hosts is not None and self._hosts is not None:
            host, port = self._hosts.hosts[0].host, self._hosts.hosts[0].port  # .host/.port: the first server
        host = "localhost" if host is None else host
        _check_session_args(host=host, port=port, user=user, password=password, database=database,
                            init_command=init_command, autocommit=autocommit)
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
        target = connect_kwargs.get("unix_socket") or (
            ",".join(self._hosts.addresses) if self._hosts is not None else f"{host}:{port}")
        self._target = f"{user or ''}@{target}/{database or ''}"
        if pool_kwargs.get("name") is None:
            pool_kwargs["name"] = f"mysql://{self._target}"
        pool_kwargs.setdefault("is_permanent_error", _is_permanent)
        self._pool: Pool[MySQLConnection] = _CorePool(self._connect, None, config=PoolOptions(**pool_kwargs))

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
        options = parse_url(url)
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

    def transfer(self, conn: MySQLConnection, to: Any) -> None:
        """Hand a connection you hold to the greenlet ``to``, which then releases it (see ``Pool.transfer``).

        A release or drop by any greenlet but the live holder raises :class:`gpool.ConnectionHeldError`.
        """
        self._pool.transfer(conn, to)

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
        if self._hosts is not None:
            return self._hosts.connect(self._open_host)  # type: ignore[no-any-return]
        return MySQLConnection(setsession=self._setsession, _tls=tls, password=self._password.reveal(),
                               **self._kwargs)

    def _open_host(self, host: str, port: int, timeout: float) -> MySQLConnection:
        """One connection to one host of the list (the host list bounds the whole attempt by ``timeout``)."""
        kwargs = dict(self._kwargs, host=host, port=port, connect_timeout=timeout)
        return MySQLConnection(setsession=self._setsession, _tls=self._tls, password=self._password.reveal(), **kwargs)

    def host_stats(self) -> Optional[HostListStats]:
        """Per-host counters (attempts, connects, denials, role mismatches...) and the sticky primary,
        for a pool with ``hosts`` or a ``target``; None for a single server with ``target="any"``."""
        return self._hosts.stats() if self._hosts is not None else None


def _check_session_args(*, host: Any, port: Any, user: Any, password: Any, database: Any, init_command: Any,
                        autocommit: Any) -> None:
    """The session arguments MySQLPool names itself: TypeError/ValueError naming the parameter."""
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


def _commit_if_open(conn: MySQLConnection) -> None:
    # With autocommit off every statement opens a transaction, flagged or not (see reset()).
    status = conn.server_status
    if status & _IN_TRANS or not status & _AUTOCOMMIT:
        conn.commit()


def _check_connect_args(kwargs: Mapping[str, Any]) -> None:
    """Let PyMySQL validate the arguments now (no I/O: it does not connect nor build an SSLContext)."""
    check_connect_kwargs(dict(kwargs))
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

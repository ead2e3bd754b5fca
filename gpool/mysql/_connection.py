"""``MySQLConnection``: a PyMySQL connection plus the hooks the pool calls."""

from __future__ import annotations

import itertools
import logging
import re
import select
import socket
import struct
from collections.abc import Sequence
from time import monotonic
from typing import Any, Optional

import pymysql
import pymysql.connections
import pymysql.cursors
from gevent import monkey
from pymysql import err as _err
from pymysql.constants import CLIENT, COMMAND, CR, ER, SERVER_STATUS

from .._chain import exception_chain
from .._secret import quotes_secret, secret_forms
from ..connection import _os_socket, socket_is_clean
from ._reader import _ReadAhead

log = logging.getLogger("gpool.mysql")

_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
_AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
_COM_RESET_CONNECTION = 0x1F  # MariaDB 10.2.4+, MySQL 5.7.3+; PyMySQL has no constant for it
_COM_QUIT_PACKET = struct.pack("<iB", 1, COMMAND.COM_QUIT)
_ROLLBACK_PACKET = struct.pack("<iB", 9, COMMAND.COM_QUERY) + b"ROLLBACK"

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

#: the longest the legacy health check (is_connected(), no deadline given) may wait for the ping
HEALTH_CHECK_TIMEOUT = 1.0

# Client-side error codes (CR_*, 2000-2999): raised by PyMySQL itself, not read from an error packet.
_CLIENT_CODES = range(2000, 3000)

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


class MySQLConnection(_ReadAhead, pymysql.connections.Connection):
    """A real PyMySQL connection plus the hooks :class:`gpool.Pool` calls.

    ``isinstance(conn, pymysql.connections.Connection)`` holds; everything PyMySQL offers works as
    usual. What it adds:

    * ``setsession``: SQL statements run after every connect (after PyMySQL's ``init_command``);
    * :meth:`reset` (on return to the pool), :meth:`is_connected` (health check), :meth:`is_fatal`
      (which errors poison it), :meth:`reset_session`, and a :meth:`close` that never blocks.

    It may be used without a pool: ``MySQLConnection(host=..., setsession=[...])`` connects like
    ``pymysql.connect``.
    """

    #: Set by a MySQLPool with a host list (gpool.mysql._hosts._Binding): its host's state and role probe.
    _gpool_host: Any = None
    # PyMySQL's; declared for type checkers
    _read_timeout: Optional[float]
    _write_timeout: Optional[float]
    _closed: bool
    _gpool_deadline: Optional[float] = None
    #: what connect() is doing (for the error when it times out or fails); "" once connected
    _gpool_step = ""

    def __init__(self, *, setsession: Sequence[str] = (), _tls: Optional[_TLS] = None, **kwargs: Any) -> None:
        password = kwargs.get("password")
        if isinstance(password, str):
            # PyMySQL encodes a str password as Latin-1 and raises a UnicodeEncodeError holding the
            # whole password otherwise; UTF-8 is what the server's utf8mb4 clients send for the rest.
            try:
                password.encode("latin-1")
            except UnicodeEncodeError:
                kwargs["password"] = password.encode("utf-8", "surrogatepass")
        self._gpool_secrets = secret_forms(password)
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
        self._gpool_tcp_raw: Any = None  # gevent's non-blocking OS socket under it, when it is one
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
        """Connect (PyMySQL), then run ``setsession``; all of it within ``connect_timeout``.

        PyMySQL bounds only the TCP connect by ``connect_timeout``; here the greeting, the
        authentication and the session set-up share that deadline too. On failure the socket is
        closed and a ``pymysql.err.OperationalError`` names the step (2013 when it timed out); an
        error whose text would show the password is replaced by one that does not.
        """
        self._gpool_owed = False  # a new session owes nothing
        started = monotonic()
        limit = self.connect_timeout
        self._gpool_step = "connecting"
        saved = self._read_timeout, self._write_timeout
        if limit is not None:
            self._gpool_deadline = started + limit
            self._read_timeout = self._write_timeout = limit  # PyMySQL applies these to the handshake's I/O
        else:
            self._gpool_deadline = None
        error: Optional[Exception] = None
        try:
            super().connect(sock)
            self._gpool_step = "running setsession"
            self._run_setsession()
            if not self.is_clean():  # the server sent what nobody asked for, or closed after the login
                raise _err.OperationalError(
                    CR.CR_SERVER_LOST, f"{self._gpool_where()}: the server sent unrequested data or closed "
                    f"the connection after the handshake")
        except Exception as exc:
            self._force_close()
            error = self._connect_error(exc, monotonic() - started)
            if error is exc:
                raise
        except BaseException:
            self._force_close()
            raise
        finally:
            self._read_timeout, self._write_timeout = saved
            self._gpool_deadline = None
            reader = self._gpool_reader
            if reader is not None:
                reader.deadline = None
            self._gpool_step = ""
        if error is not None:
            raise error  # outside the except block: no implicit __context__ (it may show the password)
        if self._sock is not None:
            self._sock.settimeout(self._read_timeout)
            self._current_timeout = self._read_timeout
        self._gpool_autocommit = self.get_autocommit()
        self._gpool_session_changed = self._gpool_db_changed = self._gpool_used = False
        self._classify_socket()

    def _classify_socket(self) -> None:
        """Once per socket rather than at every checkout: hasattr() on a gevent socket that lacks the
        attribute goes through a failing __getattr__ (~0.8 µs), and building and registering a poll
        object per check costs 0.2-0.5 µs more than keeping one (see is_clean)."""
        sock: Any = self._sock
        if hasattr(sock, "getpeercert"):
            self._gpool_tls_sock = sock
            self._gpool_tcp_sock, self._gpool_tcp_fd, self._gpool_tcp_poll = None, -1, None
            self._gpool_tcp_raw = None
        else:
            fd = sock.fileno()
            poller = _real_poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            self._gpool_tls_sock = None
            self._gpool_tcp_sock, self._gpool_tcp_fd, self._gpool_tcp_poll = sock, fd, poller.poll
            self._gpool_tcp_raw = _os_socket(sock)  # for _write_bytes

    def _get_server_information(self) -> None:
        self._gpool_step = "reading the server's greeting"
        reader = self._gpool_reader
        if reader is not None:
            reader.deadline = self._gpool_deadline
        _Connection._get_server_information(self)

    def _request_authentication(self) -> None:
        self._gpool_step = "authenticating"
        _Connection._request_authentication(self)
        self._gpool_step = "setting up the session"
        reader = self._gpool_reader  # a new one after a TLS handshake
        if reader is not None:
            reader.deadline = self._gpool_deadline

    def _gpool_where(self) -> str:
        target = self.unix_socket or f"{self.host}:{self.port}"
        return f"connect to {target}"

    def _connect_error(self, exc: Exception, took: float) -> Exception:
        """The error connect() raises for ``exc``: names the step, never shows the password."""
        step = self._gpool_step or "connecting"
        where = self._gpool_where()
        error: Exception
        if quotes_secret(exc, self._gpool_secrets):
            # No cause: the original would show it.
            error = _err.OperationalError(
                CR.CR_CONN_HOST_ERROR, f"{where} failed {step}: {type(exc).__name__} (its message is "
                f"withheld: it shows the password)")
            return error
        if _timed_out(exc) or (self._gpool_deadline is not None and monotonic() >= self._gpool_deadline):
            error = _err.OperationalError(
                CR.CR_SERVER_LOST, f"{where}: timed out after {took:.3f}s {step} (connect_timeout="
                f"{self.connect_timeout})")
        elif isinstance(exc, _err.MySQLError) and exc.args and isinstance(exc.args[0], int) \
                and exc.args[0] not in _CLIENT_CODES:
            error = exc  # the server's own error (access denied, unknown database...): as it is
            return error
        elif isinstance(exc, _err.MySQLError) and exc.args and isinstance(exc.args[0], int):
            error = _err.OperationalError(exc.args[0], f"{where}: {step}: {exc.args[-1]}")
        else:  # a greeting or reply PyMySQL could not parse (IndexError, struct.error, bad sequence...)
            error = _err.OperationalError(
                CR.CR_SERVER_HANDSHAKE_ERR, f"{where}: bad reply from the server {step}: {type(exc).__name__}: "
                f"{exc}")
        error.__cause__ = exc
        return error

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

    def _read_query_result(self, unbuffered: bool = False) -> int:
        try:
            return _Connection._read_query_result(self, unbuffered)  # type: ignore[no-any-return]
        except BaseException as exc:
            # An error packet from the server ends its reply: the connection is in step. Anything
            # else while a result is read (a conv= converter or a decode raising, gevent.Timeout, a
            # kill) leaves the rest of the reply unread, for the next user: close the connection.
            if not (isinstance(exc, _err.MySQLError) and exc.args and isinstance(exc.args[0], int)
                    and exc.args[0] not in _CLIENT_CODES):
                self._force_close()
            raise

    def _write_bytes(self, data: bytes) -> None:
        raw = self._gpool_tcp_raw
        if raw is not None and self._sock is self._gpool_tcp_sock:
            # A packet the kernel takes at once goes out in one non-blocking send(): gevent's sendall
            # asks the kernel for the send buffer's size first (a getsockopt), on every call. Anything
            # else (the buffer full, an error) takes PyMySQL's way for the rest, which waits or raises.
            try:
                sent = raw.send(data)
            except OSError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
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
        sock = getattr(self, "_sock", None)
        self._sock = None
        self._rfile = None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Close now: a best-effort ``COM_QUIT`` that never waits, then the socket.

        Unlike PyMySQL's ``close`` it never blocks (a stalled server or a half-written packet cannot
        hold the caller). As in PyMySQL (and DB-API 2.0), calling it again raises
        ``pymysql.err.Error("Already closed")``.
        """
        if self._closed:
            raise _err.Error("Already closed")
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

    def is_clean(self) -> bool:
        """True when nothing unread waits and the peer has not closed: no round trip, no hub switch.

        False when the connection is closed, when PyMySQL's reader holds bytes read ahead, when an
        unbuffered result is still being read, or (plain TCP) when the socket is readable: unread
        bytes or the server's goodbye. On TLS the socket itself is not polled (the server may send
        session tickets at any time); the TLS layer's own buffer is checked.
        """
        sock = self._sock
        if sock is None:
            return False
        if self._gpool_owed and not self._gpool_settled_now(sock):
            return False  # the reply of the ROLLBACK sent at return is still to read: settle() waits for it
        if self._gpool_host is not None and not self._gpool_host.usable():
            return False  # its host was denied, demoted or found split since: no I/O needed to know
        reader = self._gpool_reader
        if reader is None or reader.pos != len(reader.buf):
            return False
        result = self._result
        if result is not None and result.unbuffered_active:
            return False
        if sock is self._gpool_tcp_sock:
            # Same fd: the socket was not closed behind our back, whose number another socket may reuse
            return sock.fileno() == self._gpool_tcp_fd and not self._gpool_tcp_poll(0)
        if sock is self._gpool_tls_sock or hasattr(sock, "getpeercert"):
            return not sock.pending()
        return socket_is_clean(sock)  # a socket connect() did not see

    def health_check(self, timeout: Optional[float] = None) -> bool:
        """``COM_PING`` within ``timeout`` seconds (None: ``read_timeout``); False when it fails.

        Checks :meth:`is_clean` before and after the ping: a reply nobody asked for that came with
        the ping's own OK fails it too. The socket timeout is restored afterwards. A ping that times
        out closes the connection (PyMySQL does on any failed read). Never raises for a failure.
        """
        if timeout is not None and timeout <= 0:
            return False
        if not self.is_clean():
            return False
        if self._gpool_host is not None:  # the role probe, bounded by host_connect_timeout and timeout
            return bool(self._gpool_host.health_check(self, timeout)) and self.is_clean()
        saved = self._read_timeout, self._write_timeout
        if timeout is not None:
            self._read_timeout = timeout if saved[0] is None else min(timeout, saved[0])
            self._write_timeout = timeout if saved[1] is None else min(timeout, saved[1])
        try:
            self.ping(reconnect=False)
        except Exception:
            return False
        finally:
            self._read_timeout, self._write_timeout = saved
        return self.is_clean()

    def is_connected(self) -> bool:
        """:meth:`health_check` bounded by :data:`HEALTH_CHECK_TIMEOUT` (for pools that give no deadline)."""
        return self.health_check(HEALTH_CHECK_TIMEOUT)

    def is_fatal(self, exc: BaseException) -> bool:
        """True when ``exc`` (raised while the connection was checked out) leaves it unusable.

        Lost or closed connections and protocol errors are fatal: PyMySQL closed the socket, an
        ``OSError``, or one of the codes 2006, 2013, 2014, 2055, 1053, 1927, 4031, or
        ``InterfaceError(0)`` (closed). SQL errors (syntax, duplicate key, deadlock, lock wait
        timeout, ``KILL QUERY``) are not.
        """
        if self._sock is None:
            return True
        if self._gpool_host is not None and self._gpool_host.role_error(exc):
            return True  # read-only or not-ready host (1290, 1836, 1047): dropped, its host suspect
        if isinstance(exc, (OSError, EOFError)):
            return True
        if isinstance(exc, _err.MySQLError) and exc.args:
            code = exc.args[0]
            return code in _FATAL_CODES or (code == 0 and isinstance(exc, _err.InterfaceError))
        return False

    def reset(self) -> Optional[bool]:
        """Make the session what the pool configured for the next user; raise when it cannot.

        Rolls back a transaction that may be open and restores autocommit. With autocommit on, only
        an explicit ``BEGIN`` opens one and the server flags it (``SERVER_STATUS_IN_TRANS``), so the
        common case costs no round trip. With autocommit off, any statement opens one and MariaDB
        does not flag read-only ones (not even ``SELECT ... FOR UPDATE``, which holds locks): a
        ``ROLLBACK`` follows any statement not followed by ``commit()``/``rollback()``. That
        ``ROLLBACK`` is sent without waiting for its reply, which :meth:`settle` reads when the pool
        next hands the connection out (before its next user can send anything; until then
        :meth:`is_clean` is False). After a session-changing statement it runs :meth:`reset_session`
        instead. Raising makes the pool drop the connection: a closed connection, or an unbuffered
        result left unread (reading it all could take long). The pool checks :meth:`is_clean` at the
        next checkout.
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
            return None
        status = self.server_status
        if status & _IN_TRANS or (self._gpool_used and not status & _AUTOCOMMIT):
            if self._result is None and bool(status & _AUTOCOMMIT) == self._gpool_autocommit:
                # Sent now, its reply read by settle() before the next user gets the connection
                # (the pool's checkout): the round trip is off this caller's path, never skipped.
                self._write_bytes(_ROLLBACK_PACKET)
                self._next_seq_id = 1
                self._gpool_owed = True
                self._gpool_used = False
                return None
            self.rollback()
            status = self.server_status
        self._gpool_used = False
        if bool(status & _AUTOCOMMIT) != self._gpool_autocommit:
            self.autocommit(self._gpool_autocommit)
        # The pool checks it clean at the next checkout (after settle()): no second poll here.
        return None

    def settle(self, timeout: Optional[float] = None) -> Optional[bool]:
        """Read the reply of the ``ROLLBACK`` :meth:`reset` sent at return (the pool calls it at checkout).

        True when nothing was owed or the rollback succeeded and no transaction is open; None for
        ``timeout=0`` when the reply has not all arrived (nothing waited for); an error
        reply, a lost connection or a timeout raise (or return False), and the pool drops the
        connection. The pool bounds it by the caller's deadline (``timeout``, with a ``gevent.Timeout``);
        ``read_timeout`` bounds each read as for any query. PyMySQL closes the connection when a read
        fails or is interrupted, so a half-read reply is never reused.
        """
        if not self._gpool_owed:
            return True
        sock = self._sock
        reader = self._gpool_reader
        if sock is None or reader is None:
            return False
        if timeout == 0:
            # Never waits: None when the reply is not all there yet (or not a plain OK), and the pool
            # calls again with its deadline.
            return True if self._gpool_settled_now(sock) else None
        # Nothing of it read yet: read (no poll first: the recv returns at once when it has arrived, else
        # waits), then try the short way.
        if reader.pos == len(reader.buf):
            self._gpool_fill(reader)
        if self._gpool_settled_now(sock):
            return True
        self._read_ok_packet()  # the long way: a partial reply, an error, a transaction still open
        self._gpool_owed = False
        return not self.server_status & _IN_TRANS

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
        """:meth:`is_clean` (the name the MySQL pool's checkout used)."""
        return self.is_clean()

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


def _timed_out(exc: BaseException) -> bool:
    """A socket timeout anywhere in the chain (PyMySQL wraps it in OperationalError 2013 or 2003)."""
    return any(isinstance(e, (socket.timeout, TimeoutError)) for e in exception_chain(exc, "original_exception"))

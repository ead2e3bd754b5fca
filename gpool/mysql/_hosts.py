"""A list of MySQL/MariaDB hosts with a target role: host choice, deny list, role probe, sticky primary.

This is the factory side of ``MySQLPool(hosts=[...], target=...)``: the core pool still decides how
many connections exist and who waits; :meth:`HostList.connect` only decides *where* the next one is
opened. Each connection it returns carries a :class:`_Binding` (``conn._gpool_host``) through which
the connection's own checks ask, without I/O, whether its host fell out of favour since (denied,
demoted, split brain), run the role probe as the idle health check, and report read-only errors.

Import rule: only :mod:`gpool.mysql._pool`, ``_url`` and ``_connection`` (for the binding's duck
type) use this module; it is not part of the public API beyond the names ``gpool.mysql`` re-exports.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from time import monotonic
from typing import Any, Callable, Optional

import gevent
import pymysql.cursors
from pymysql import err as _err

log = logging.getLogger("gpool.mysql")

TARGETS = ("any", "primary", "replica", "prefer-replica")
HOST_ORDERS = ("sequential", "random")

#: Roles the probe tells apart. UNAVAILABLE: a Galera node not ready for clients (not Synced,
#: non-primary component); no target but ``any`` takes it.
PRIMARY, REPLICA, UNAVAILABLE = "primary", "replica", "unavailable"

# What a role means for each target: taken, taken only when nothing better answers, refused.
_ACCEPT, _FALLBACK, _REJECT = 0, 1, 2
_VERDICTS = {
    "primary": {PRIMARY: _ACCEPT, REPLICA: _REJECT, UNAVAILABLE: _REJECT},
    "replica": {PRIMARY: _REJECT, REPLICA: _ACCEPT, UNAVAILABLE: _REJECT},
    "prefer-replica": {PRIMARY: _FALLBACK, REPLICA: _ACCEPT, UNAVAILABLE: _REJECT},
}

#: Errors on a pooled connection that say its host is not in the role the pool wants: 1290 (running
#: with --read-only), 1836 (read-only mode, MySQL's super_read_only), 1047 (WSREP not ready).
ROLE_ERROR_CODES = frozenset({1290, 1836, 1047})
_UNKNOWN_VARIABLE = 1193  # MySQL without Galera has no @@wsrep_on

_PROBE_SQL = "SELECT @@global.read_only, @@global.innodb_read_only, @@global.wsrep_on"
_PROBE_SQL_NO_WSREP = "SELECT @@global.read_only, @@global.innodb_read_only, 0"
_WSREP_SQL = "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state_comment')"

DEFAULT_PORT = 3306


class NoHostAvailableError(_err.OperationalError):
    """No host of the list gave a connection in the target role (code 2003, as PyMySQL's "can't connect").

    The message says what each host tried did; the last connect error is ``__cause__``.
    """


class HostTimeoutError(_err.OperationalError):
    """One host did not complete connect, greeting, authentication and role probe in ``host_connect_timeout``."""


# -- parsing -------------------------------------------------------------------------------------


def parse_host(text: Any, default_port: int = DEFAULT_PORT, *, name: str = "hosts") -> tuple[str, int]:
    """``"db1:3306"``, ``"db3"``, ``"[::1]:3307"`` or ``"::1"`` -> ``(host, port)``. Errors name ``name``."""
    if not isinstance(text, str):
        raise TypeError(f"{name} entries must be strings like 'db1:3306', got {type(text).__name__}")
    entry = text.strip()
    host, port_text = entry, ""
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0 or (close + 1 < len(entry) and entry[close + 1] != ":"):
            raise ValueError(f"{name}: malformed IPv6 entry {text!r} (expected '[addr]:port')")
        host, port_text = entry[1:close], entry[close + 2:]
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    if not host or any(c in host for c in " ,/@?#"):
        raise ValueError(f"{name}: malformed host {text!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{name}: port must be an integer from 1 to 65535, got {port_text!r} in {text!r}")
    return host, int(port_text)


def parse_url_hosts(text: str, default_port: int = DEFAULT_PORT) -> list[str]:
    """The host part of a multi-host URL (``db1:3306,db2,db3:3307``, no credentials) -> entries, checked."""
    entries = text.split(",")
    for entry in entries:
        if not entry:
            raise ValueError("url: empty entry in the host list")
        parse_host(entry, default_port, name="url")
    return entries


def _url_choice(choices: Sequence[str]) -> Callable[[str, str], str]:
    def parse(key: str, text: str) -> str:
        if text not in choices:
            raise ValueError(f"url: option {key} must be one of {', '.join(choices)}, got {text!r}")
        return text
    return parse


def _url_seconds(key: str, text: str) -> Optional[float]:
    if text.lower() in ("none", "null", ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"url: option {key} must be a number, got {text!r}") from None


#: The host-list options of ``MySQLPool.from_url`` (the host list itself is the URL's netloc).
HOST_URL_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "target": _url_choice(TARGETS),
    "host_order": _url_choice(HOST_ORDERS),
    "host_down_for": _url_seconds,
    "host_connect_timeout": _url_seconds,
}


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- per-host state ------------------------------------------------------------------------------


class _Host:
    """One server of the list: where it is, what the pool last learned about it, its counters."""

    __slots__ = ("address", "attempts", "connects", "denials", "denied_at", "down_until", "epoch", "failures",
                 "host", "mismatches", "port", "recheck_at", "rogue", "role", "role_errors")

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.address = _address(host, port)
        self.down_until = -math.inf  # on the deny list until then
        self.denied_at = -math.inf
        # Bumped whenever connections made earlier should stop being handed out: the host was denied,
        # answered in a role the pool refuses, or a pooled connection hit a read-only error.
        self.epoch = 0
        self.role: Optional[str] = None  # as last seen
        self.rogue = False  # writable while another host is the sticky primary (split brain)
        self.recheck_at = math.inf  # probe it again then, even though another host serves (see connect)
        self.attempts = self.connects = self.failures = self.denials = self.mismatches = self.role_errors = 0


@dataclass(frozen=True)
class HostStats:
    """Counters and state of one host of a :class:`gpool.mysql.MySQLPool` host list."""

    #: ``host:port``
    address: str
    #: connection attempts (connect, greeting, authentication, role probe)
    attempts: int
    #: attempts that connected (in whatever role)
    connects: int
    #: attempts that failed or timed out
    failures: int
    #: times the host was put on the deny list (failed connect, timed-out check)
    denials: int
    #: connections (new or pooled) refused because the host was in another role
    role_mismatches: int
    #: read-only / not-ready errors (1290, 1836, 1047) on pooled connections
    role_errors: int
    #: ``"primary"``, ``"replica"``, ``"unavailable"`` as last seen, or None (never probed)
    role: Optional[str]
    #: seconds it stays on the deny list (0.0 when it is not on it)
    denied_for: float


@dataclass(frozen=True)
class HostListStats:
    """What :meth:`gpool.mysql.MySQLPool.host_stats` returns."""

    #: the pool's ``target``
    target: str
    #: ``host:port`` of the sticky primary (the host that last matched ``primary``), or None
    primary: Optional[str]
    #: second writable hosts seen while a primary was sticky (each refused; one ERROR per episode)
    split_brains: int
    #: one entry per host, in list order
    hosts: tuple[HostStats, ...]


# -- the list ------------------------------------------------------------------------------------


def make_host_list(
    *, hosts: Any, host: Optional[str], port: int, target: Any, host_order: Any, host_down_for: Any,
    host_connect_timeout: Any, connect_timeout: Any, name: Callable[[], str], unix_socket: Any = None,
) -> Optional[HostList]:
    """The :class:`HostList` for MySQLPool's arguments, or None for one host with ``target="any"``
    (the plain single-server path). Raises TypeError/ValueError naming the argument."""
    if hosts is not None and host is not None:
        raise TypeError("host and hosts cannot be given together: put every server in hosts")
    if hosts is not None and unix_socket:
        raise TypeError("unix_socket and hosts cannot be given together")
    if not isinstance(target, str) or target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(repr(t) for t in TARGETS)}, got {target!r}")
    if host_order is not None and (not isinstance(host_order, str) or host_order not in HOST_ORDERS):
        raise ValueError(f"host_order must be 'sequential', 'random' or None, got {host_order!r}")
    host_down_for = _seconds("host_down_for", host_down_for, allow_none=False)
    host_connect_timeout = _seconds("host_connect_timeout", host_connect_timeout, allow_none=True)
    if hosts is None:
        if target == "any" and host_order is None:
            return None
        entries = [(host or "localhost", port)]
    else:
        if isinstance(hosts, (str, bytes)) or not isinstance(hosts, Sequence):
            raise TypeError(f"hosts must be a list of 'host:port' strings, got {type(hosts).__name__}")
        if not hosts:
            raise ValueError("hosts must name at least one server, got an empty list")
        entries = [parse_host(entry, port) for entry in hosts]
    if len(set(entries)) != len(entries):
        raise ValueError(f"hosts: a server is listed twice in {[_address(*e) for e in entries]}")
    if host_order is None:
        host_order = "random" if target in ("replica", "prefer-replica") else "sequential"
    if host_connect_timeout is None:
        host_connect_timeout = float(connect_timeout) if connect_timeout is not None else 10.0  # PyMySQL's
    return HostList(entries, target=target, host_order=host_order, host_down_for=host_down_for,
                    host_connect_timeout=host_connect_timeout, name=name)


def _seconds(key: str, value: Any, *, allow_none: bool) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key} must be a number of seconds{' or None' if allow_none else ''}, got {value!r}")
    if not value >= 0 or value == math.inf or (key == "host_connect_timeout" and value == 0):
        raise ValueError(f"{key} must be a finite number of seconds {'> 0' if allow_none else '>= 0'}, "
                         f"got {value!r}")
    return float(value)


class HostList:
    """Where :class:`MySQLPool` opens its next connection (see the module docstring).

    Every decision (the order to try, the verdict on a role, deny and sticky bookkeeping) is made
    without yielding; the only I/O is opening and probing in :meth:`_attempt` and :func:`probe_role`.
    """

    def __init__(self, entries: Sequence[tuple[str, int]], *, target: str, host_order: str,
                 host_down_for: float, host_connect_timeout: float, name: Callable[[], str],
                 rng: Optional[random.Random] = None) -> None:
        self.hosts = tuple(_Host(h, p) for h, p in entries)
        self.target = target
        self.host_order = host_order
        self.host_down_for = host_down_for
        self.host_connect_timeout = host_connect_timeout
        self._name = name  # the pool's name, for log messages
        self._rng = rng or random.Random()
        self.sticky: Optional[_Host] = None  # target primary: the host that last matched
        self.split_brains = 0
        self._checker: Optional[gevent.Greenlet] = None  # the running _recheck, if any

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of every host, in list order."""
        return [h.address for h in self.hosts]

    # -- decisions (no I/O) ----------------------------------------------------------------------

    def plan(self, now: float) -> tuple[list[_Host], list[_Host]]:
        """The hosts to try, in order, and the denied ones kept as a last resort (least recently denied first).

        Sticky primary first; hosts last seen in a role the target refuses after the others (their
        role may have changed: they are still tried); denied hosts only as a last resort.
        """
        order = list(self.hosts)
        if self.host_order == "random":
            self._rng.shuffle(order)
        sticky = self.sticky
        if sticky is not None:
            order.remove(sticky)
            order.insert(0, sticky)
        live = [h for h in order if h.down_until <= now]
        if self.target != "any":
            verdicts = _VERDICTS[self.target]
            live.sort(key=lambda h: _ACCEPT if h.role is None else verdicts[h.role])  # stable
        denied = sorted((h for h in order if h.down_until > now), key=lambda h: h.denied_at)
        return live, denied

    def verdict(self, host: _Host, role: Optional[str], now: float, *, pooled: bool) -> int:
        """Take, take as a fallback, or refuse a connection to ``host`` that answered ``role``.

        Keeps the sticky primary: a second writable host while the sticky one is not denied and was
        last seen writable is split brain, refused and logged at ERROR once per episode (the episode
        ends when that host is seen in another role or becomes the primary after a failover).
        """
        if role is None:  # target "any": no probe
            return _ACCEPT
        previous, host.role = host.role, role
        verdict = _VERDICTS[self.target][role]
        sticky = self.sticky
        if role != PRIMARY:
            host.rogue = False
            if sticky is host:
                self.sticky = None
                log.warning("pool %r: primary %s is now %s", self._name(), host.address, role)
        elif self.target == "primary" and sticky is not host:
            if sticky is not None and sticky.down_until <= now and sticky.role == PRIMARY:
                self.split_brains += 1
                host.recheck_at = now + self.host_down_for  # keep watching it
                if not host.rogue:
                    host.rogue = True
                    log.error("pool %r: split brain: %s is writable while %s is the primary; staying on %s",
                              self._name(), host.address, sticky.address, sticky.address)
                verdict = _REJECT
            else:
                host.rogue = False
                self.sticky = host
                if sticky is not None:
                    log.warning("pool %r: primary moved from %s to %s", self._name(), sticky.address, host.address)
        if verdict == _REJECT:
            host.mismatches += 1
            if pooled or previous != role:
                host.epoch += 1  # the host's other pooled connections are in the same wrong role
        elif host.recheck_at != math.inf and not host.rogue:
            host.recheck_at = math.inf
        return verdict

    def deny(self, host: _Host, now: float, why: str) -> None:
        """Put ``host`` on the deny list for ``host_down_for``; its pooled connections are no longer handed out."""
        host.down_until = now + self.host_down_for
        host.denied_at = now
        host.denials += 1
        host.epoch += 1
        host.recheck_at = host.down_until
        log.info("pool %r: host %s denied for %.1fs: %s", self._name(), host.address, self.host_down_for, why)

    def role_error(self, host: _Host, code: int) -> None:
        """A pooled connection to ``host`` failed with a read-only/not-ready error: ``host`` is suspect."""
        host.role_errors += 1
        host.epoch += 1
        host.role = UNAVAILABLE if code == 1047 else REPLICA
        host.rogue = False
        if self.sticky is host:
            self.sticky = None
        log.warning("pool %r: host %s answered error %d: dropping its connections, finding the %s again",
                    self._name(), host.address, code, self.target)

    # -- connecting ------------------------------------------------------------------------------

    def connect(self, open_one: Callable[[str, int, float], Any]) -> Any:
        """A connection in the target role: try the planned hosts in turn, each bounded by
        ``host_connect_timeout``; raise :class:`NoHostAvailableError` when none gives one.

        ``open_one(host, port, timeout)`` opens a :class:`MySQLConnection`. For prefer-replica a
        primary is kept as the fallback while the remaining hosts are tried.
        """
        live, denied = self.plan(monotonic())
        outcomes: list[str] = []
        fallback: Optional[tuple[_Host, Any]] = None
        cause: Optional[BaseException] = None
        chosen: Optional[tuple[_Host, Any]] = None
        try:
            # The least recently denied host is the last resort, when no live host served.
            for index, host in enumerate(live + denied[:1]):
                if index == len(live) and fallback is not None:
                    break
                if index < len(live) and host.down_until > monotonic():  # denied meanwhile by another greenlet
                    outcomes.append(f"{host.address} denied")
                    continue
                conn, verdict, cause = self._attempt(host, open_one, outcomes, cause)
                if verdict == _ACCEPT:
                    chosen = (host, conn)
                    break
                if verdict == _FALLBACK and fallback is None:
                    fallback = (host, conn)
                elif conn is not None:
                    conn.close()
            if chosen is None:
                chosen, fallback = fallback, None
        finally:
            if fallback is not None:
                fallback[1].close()
        if chosen is None:
            raise NoHostAvailableError(
                2003, f"no host gave a connection (target={self.target}): {'; '.join(outcomes)}") from cause
        host, conn = chosen
        conn._gpool_host = _Binding(self, host, fallback=host.role == PRIMARY and self.target == "prefer-replica")
        if self.target == "primary":
            self._recheck(host, open_one)
        return conn

    def _attempt(self, host: _Host, open_one: Callable[[str, int, float], Any], outcomes: list[str],
                 cause: Optional[BaseException]) -> tuple[Any, int, Optional[BaseException]]:
        """Open and probe one host: ``(conn or None, verdict, last error)``; failures deny it."""
        try:
            conn, role, verdict = self._try_host(host, open_one)
        except Exception as exc:
            outcomes.append(f"{host.address} {_describe(exc)}")
            return None, _REJECT, exc
        if verdict == _REJECT:
            outcomes.append(f"{host.address} is {'a rogue primary' if host.rogue else role}")
        return conn, verdict, cause

    def _try_host(self, host: _Host, open_one: Callable[[str, int, float], Any]) -> tuple[Any, Optional[str], int]:
        """Open and probe ``host``, counted in its stats: ``(conn, role, verdict)``; a failure denies it."""
        host.attempts += 1
        try:
            conn, role = self._open_and_probe(host, open_one)
        except Exception as exc:
            host.failures += 1
            self.deny(host, monotonic(), _describe(exc))
            raise
        host.connects += 1
        return conn, role, self.verdict(host, role, monotonic(), pooled=False)

    def _open_and_probe(self, host: _Host, open_one: Callable[[str, int, float], Any]) -> tuple[Any, Optional[str]]:
        """Connect, greet, authenticate and probe within ``host_connect_timeout`` (gevent.Timeout: PyMySQL's
        connect_timeout covers only the TCP connect, and a stopped server still completes that)."""
        timeout = self.host_connect_timeout
        conn = None
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            conn = open_one(host.host, host.port, timeout)
            role = probe_role(conn) if self.target != "any" else None
            return conn, role
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if exc is timer:
                raise HostTimeoutError(2013, f"no answer in {timeout:.3g}s (host_connect_timeout)") from None
            raise
        finally:
            timer.close()

    def _recheck(self, serving: _Host, open_one: Callable[[str, int, float], Any]) -> None:
        """Probe, once, each other host whose deny period (or rogue watch) is over: a host that came back
        writable while another is the primary is split brain, and the pool should say so.

        In a greenlet of its own, one at a time: a blackholed host would otherwise add up to
        ``host_connect_timeout`` to an acquisition every ``host_down_for``. Each probe is bounded by
        that timeout, so the greenlet ends on its own.
        """
        checker = self._checker
        if checker is not None and not checker.dead:
            return
        now = monotonic()
        due = [h for h in self.hosts if h is not serving and h.recheck_at <= now and h.down_until <= now]
        if not due:
            return
        for host in due:
            host.recheck_at = math.inf  # decided now: a concurrent connect does not pick them again
        self._checker = gevent.spawn(self._probe_hosts, due, open_one)

    def _probe_hosts(self, due: list[_Host], open_one: Callable[[str, int, float], Any]) -> None:
        for host in due:
            try:
                conn, _, _ = self._try_host(host, open_one)
            except Exception:  # denied and counted by _try_host
                continue
            conn.close()

    # -- stats -----------------------------------------------------------------------------------

    def stats(self) -> HostListStats:
        """A frozen snapshot of every host's state and counters."""
        now = monotonic()
        return HostListStats(
            target=self.target,
            primary=self.sticky.address if self.sticky is not None else None,
            split_brains=self.split_brains,
            hosts=tuple(HostStats(
                address=h.address, attempts=h.attempts, connects=h.connects, failures=h.failures,
                denials=h.denials, role_mismatches=h.mismatches, role_errors=h.role_errors, role=h.role,
                denied_for=max(0.0, h.down_until - now)) for h in self.hosts),
        )


class _Binding:
    """What a connection knows of its host: set as ``conn._gpool_host`` by :meth:`HostList.connect`.

    ``MySQLConnection`` calls :meth:`usable` in its zero-round-trip check (every checkout),
    :meth:`health_check` instead of a bare ping (idle connections), and :meth:`role_error` from
    ``is_fatal``.
    """

    __slots__ = ("epoch", "expires_at", "host", "hosts")

    def __init__(self, hosts: HostList, host: _Host, *, fallback: bool) -> None:
        self.hosts = hosts
        self.host = host
        self.epoch = host.epoch
        # prefer-replica: a connection on the primary lives host_down_for, then replicas are tried again
        self.expires_at = monotonic() + hosts.host_down_for if fallback else math.inf

    @property
    def address(self) -> str:
        """``host:port`` of the connection's server."""
        return self.host.address

    def usable(self) -> bool:
        """False when the host fell out of favour since this connection was made. No I/O."""
        if self.host.epoch != self.epoch:
            return False
        return self.expires_at == math.inf or monotonic() < self.expires_at

    def health_check(self, conn: Any, timeout: Optional[float] = None) -> bool:
        """The idle check: the role probe (a ping for target any), bounded by ``host_connect_timeout``
        (or ``timeout``, the caller's remaining deadline, when shorter).

        A timeout denies the host (a frozen server answers no ping) and closes the connection.
        """
        hosts, host = self.hosts, self.host
        timeout = hosts.host_connect_timeout if timeout is None else min(timeout, hosts.host_connect_timeout)
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            if hosts.target == "any":
                conn.ping(reconnect=False)
                return True
            role = probe_role(conn)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            conn.close()
            hosts.deny(host, monotonic(), f"health check: no answer in {timeout:.3g}s")
            return False
        except Exception:
            return False
        finally:
            timer.close()
        return hosts.verdict(host, role, monotonic(), pooled=True) != _REJECT and self.usable()

    def role_error(self, exc: BaseException) -> bool:
        """True (the connection must be dropped, the host is suspect) for 1290/1836 when the target is
        primary, and 1047 for any target but any; the statement is not re-run, the error reaches the
        caller. (On a replica a read-only error is the caller's mistake, not news about the host.)"""
        target = self.hosts.target
        if target == "any" or not isinstance(exc, _err.MySQLError) or not exc.args:
            return False
        code = exc.args[0]
        if code not in ROLE_ERROR_CODES or (code != 1047 and target != "primary"):
            return False
        self.hosts.role_error(self.host, code)
        return True


def probe_role(conn: Any) -> str:
    """One round trip (two on Galera): primary, replica or unavailable. Leaves the session as it was."""
    used = getattr(conn, "_gpool_used", False)
    try:
        with pymysql.cursors.Cursor(conn) as cur:
            try:
                cur.execute(_PROBE_SQL)
            except _err.MySQLError as exc:
                if not exc.args or exc.args[0] not in (_UNKNOWN_VARIABLE, 1047):
                    raise
                if exc.args[0] == 1047:
                    return UNAVAILABLE
                cur.execute(_PROBE_SQL_NO_WSREP)
            read_only, innodb_read_only, wsrep_on = cur.fetchone()
            status: dict[str, str] = {}
            if wsrep_on:
                cur.execute(_WSREP_SQL)
                status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
    finally:
        conn._gpool_used = used  # the probe opened no transaction: reset() owes no ROLLBACK for it
    return interpret_role(read_only, innodb_read_only, wsrep_on, status)


def interpret_role(read_only: Any, innodb_read_only: Any, wsrep_on: Any, status: dict[str, str]) -> str:
    """The role the probe's answers stand for.

    A Galera node (``wsrep_on``) serves only when ``wsrep_ready=ON`` and its state is ``Synced``
    (a desynced donor or a non-primary component is UNAVAILABLE); otherwise ``read_only`` or
    ``innodb_read_only`` make it a REPLICA, and a writable server is the PRIMARY.
    """
    if _truthy(wsrep_on) and (status.get("wsrep_ready", "").upper() != "ON"
                              or status.get("wsrep_local_state_comment", "") != "Synced"):
        return UNAVAILABLE
    if _truthy(read_only) or _truthy(innodb_read_only):
        return REPLICA
    return PRIMARY


def _truthy(value: Any) -> bool:
    if isinstance(value, (bytes, str)):
        return value.strip().upper() in (b"1", b"ON", "1", "ON")
    return bool(value)


def _describe(exc: BaseException) -> str:
    """An error, short: its class and code/message (PyMySQL's never hold the password)."""
    return f"{type(exc).__name__}: {exc}"

"""gpool.mysql against hostile servers: no reply reaches the wrong caller, every wait is bounded.

Fake MySQL servers (tests/hostile_servers.py) send result sets nobody asked for (with a real reply,
after the pool's ping, after the login), stall, send a broken greeting or drop every session after
login; a real private MariaDB is SIGSTOPped under an idle connection due for its health check, and a
user converter fails in the middle of a result. Secrets: a password outside Latin-1 never shows in
any log record (DEBUG on the root logger), message, repr or chained exception.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import select  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from time import monotonic  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import pymysql  # noqa: E402
import pytest  # noqa: E402
from pymysql.constants import FIELD_TYPE  # noqa: E402

from gpool import PoolExhaustedError  # noqa: E402
from gpool._chain import exception_chain  # noqa: E402
from gpool.mysql import MySQLConnection, MySQLPool  # noqa: E402
from tests.hostile_servers import FakeMySQL, frozen  # noqa: E402
from tests.support import wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(20)

PASSWORD = "pässwörd€🔑"  # outside Latin-1: PyMySQL cannot encode it


@contextmanager
def fake_pool(mode: str, **kwargs: Any) -> Iterator[tuple[FakeMySQL, MySQLPool]]:
    """A :class:`FakeMySQL` in ``mode`` and a one-connection pool on it (``kwargs`` override); both
    closed after the block."""
    with FakeMySQL(mode) as server:
        options: dict[str, Any] = dict(host="127.0.0.1", port=server.port, user="app", password="pw",
                                       max_connections=1, autocommit=True, ssl_disabled=True, timeout=3.0)
        options.update(kwargs)
        pool = MySQLPool(**options)
        try:
            yield server, pool
        finally:
            pool.close()


def texts(exc: BaseException) -> list[str]:
    """Every message and repr in the exception chain."""
    return [text for current in exception_chain(exc) for text in (str(current), repr(current), repr(current.args))]


@pytest.fixture
def root_debug() -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger at DEBUG, formatted with its traceback."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            self.format(record)  # fills exc_text
            records.append(record)

    handler, root = Keep(logging.DEBUG), logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def assert_never_shown(secret: str, records: list[logging.LogRecord], *more: str) -> None:
    forms = [secret, repr(secret)[1:-1], repr(secret.encode())[2:-1], secret[:4] + secret[-3:]]
    shown = [r.getMessage() + (r.exc_text or "") for r in records] + list(more)
    for text in shown:
        for form in forms:
            assert form not in text, text


# -- replies nobody asked for -----------------------------------------------------------------------


def test_result_set_sent_with_a_real_reply_never_reaches_the_next_caller() -> None:
    with fake_pool("stale_with_reply", check_interval=None) as (_, pool):
        assert pool.query("SELECT 'first'") == [{"v": "first"}]
        assert pool.query("SELECT 'second'") == [{"v": "second"}]
        assert pool.query("SELECT 'third'") == [{"v": "third"}]
        # every session's first reply carries STALE: each connection, its reader holding it, was dropped
        assert pool.stats().created == 3


def test_result_set_sent_after_the_pools_ping_never_reaches_a_caller() -> None:
    with fake_pool("stale_after_ping", check_interval=0.0) as (_, pool):
        for word in ("first", "second", "third", "fourth"):
            gevent.sleep(0.01)  # idle >= check_interval: pinged at the next checkout
            assert pool.query(f"SELECT '{word}'") == [{"v": word}]
        assert pool.stats().check_failures >= 1


def test_result_set_sent_after_the_login_fails_the_connect() -> None:
    with fake_pool("stale_after_auth", timeout=1.0) as (_, pool):
        with pytest.raises(PoolExhaustedError) as info:
            pool.query("SELECT 'first'")
        # Out of step after the login: the connect fails, naming the step; never a reply to a user.
        assert isinstance(info.value.__cause__, pymysql.err.OperationalError)
        assert "connect to 127.0.0.1" in str(info.value.__cause__)


# -- broken and frozen servers -------------------------------------------------------------------------


@pytest.mark.parametrize("mode, step", [
    ("silent", "greeting"),
    ("stall_after_greeting", "authenticating"),
    ("truncated_greeting", "greeting"),
    ("garbage_greeting", "greeting"),
])
def test_connect_is_bounded_by_connect_timeout_and_names_the_step(mode: str, step: str) -> None:
    with FakeMySQL(mode) as server:
        began = monotonic()
        with gevent.Timeout(5, AssertionError("connect not bounded")), \
                pytest.raises(pymysql.err.OperationalError) as info:
            MySQLConnection(host="127.0.0.1", port=server.port, user="app", password="pw",
                            connect_timeout=0.5, ssl_disabled=True)
        took = monotonic() - began
    assert took < 1.5
    assert step in str(info.value) and "127.0.0.1" in str(info.value)


def test_server_dropping_every_session_after_login_costs_few_connects() -> None:
    # A connection that is not clean right after it was opened is a connect failure, retried with
    # backoff (the core's checkout contract): a handful of sessions, never thousands per second.
    with fake_pool("drop_after_login", timeout=1.0) as (server, pool):
        began = monotonic()
        with gevent.Timeout(5, AssertionError("query never returned")), \
                pytest.raises((PoolExhaustedError, pymysql.err.MySQLError)):
            for _ in range(3):
                pool.query("SELECT 'x'")
        assert monotonic() - began < 2.0
        assert server.sessions <= 20


def test_frozen_server_ends_acquire_within_its_timeout(restartable_mysql_server: Any) -> None:
    server = restartable_mysql_server
    pool = MySQLPool(**server.connect_kwargs(), max_connections=1, check_interval=0.0, ssl_disabled=True)
    try:
        assert pool.query_one("SELECT 1 AS one") == {"one": 1}
        gevent.sleep(0.01)
        with frozen(server.pid):
            began = monotonic()
            with gevent.Timeout(6, AssertionError("acquire(timeout=1) still blocked")), \
                    pytest.raises(PoolExhaustedError):
                pool.acquire(timeout=1.0)
            assert monotonic() - began < 2.5
        assert pool.query_one("SELECT 2 AS two") == {"two": 2}
    finally:
        pool.close()


def test_a_query_too_large_for_a_frozen_server_is_bounded_and_never_reused(restartable_mysql_server: Any) -> None:
    # A packet the kernel does not take at once (issue 18 sends small ones in one non-blocking send)
    # goes on through PyMySQL's write, bounded by write_timeout; the half-sent connection is dropped.
    server = restartable_mysql_server
    pool = MySQLPool(**server.connect_kwargs(), max_connections=1, write_timeout=0.5, ssl_disabled=True)
    try:
        assert pool.query_one("SELECT 1 AS one") == {"one": 1}
        with frozen(server.pid):
            began = monotonic()
            with gevent.Timeout(6, AssertionError("the write never gave up")), \
                    pytest.raises(pymysql.err.OperationalError):
                pool.query("SELECT LENGTH(%s)", ("x" * (48 * 1024 * 1024),))
            assert monotonic() - began < 3.0
        assert pool.query_one("SELECT 2 AS two") == {"two": 2}
        stats = pool.stats()
        assert (stats.created, stats.dropped) == (2, 1)
    finally:
        pool.close()


def test_health_check_honours_the_callers_timeout(restartable_mysql_server: Any) -> None:
    server = restartable_mysql_server
    conn = MySQLConnection(**server.connect_kwargs(), ssl_disabled=True)
    try:
        assert conn.is_clean() and conn.health_check(1.0)
        with frozen(server.pid):
            began = monotonic()
            assert conn.health_check(0.3) is False
            assert 0.25 < monotonic() - began < 1.0
        assert not conn.is_clean()  # the timed-out ping closed it
    finally:
        conn._force_close()


# -- one caller's failure -------------------------------------------------------------------------------


def test_converter_failing_mid_result_leaves_nothing_for_the_next_user(mysql_server: Any) -> None:
    def picky(value: Any) -> int:
        if value in (b"150", "150"):
            raise ValueError("converter refuses 150")
        return int(value)

    conv = dict(pymysql.converters.conversions)
    conv[FIELD_TYPE.LONGLONG] = picky
    pool = MySQLPool(**mysql_server.connect_kwargs(), max_connections=1, conv=conv, autocommit=True,
                     ssl_disabled=True)  # autocommit: nothing to roll back, the return sends nothing
    try:
        # The whole reply (~2 kB) sits in the driver's read-ahead: the socket itself looks clean.
        with pytest.raises(ValueError, match="refuses 150"):
            pool.query("SELECT seq FROM seq_1_to_300")
        for n in (1, 2, 3):
            assert pool.query_one(f"SELECT {n} AS n") == {"n": n}
        assert pool.stats().created == 2
    finally:
        pool.close()


# -- secrets ---------------------------------------------------------------------------------------------


def test_non_latin1_password_connects(mysql_server: Any) -> None:
    admin = pymysql.connect(**mysql_server.connect_kwargs())
    try:
        with admin.cursor() as cur:
            cur.execute("DROP USER IF EXISTS 'u8'@'%'")
            cur.execute("CREATE USER 'u8'@'%%' IDENTIFIED BY %s", (PASSWORD,))
        kwargs = dict(mysql_server.connect_kwargs(), user="u8", password=PASSWORD)
        kwargs.pop("database", None)
        pool = MySQLPool(**kwargs, ssl_disabled=True)
        try:
            assert pool.query_one("SELECT CURRENT_USER() AS u") == {"u": "u8@%"}
        finally:
            pool.close()
    finally:
        admin.close()


@pytest.mark.parametrize("where", ["wrong_password", "refused", "truncated_greeting", "stall_after_greeting"])
def test_password_never_shown_by_failing_connects(where: str, mysql_server: Any,
                                                   root_debug: list[logging.LogRecord]) -> None:
    fake = FakeMySQL(where) if where not in ("wrong_password", "refused") else None
    if fake is not None:
        fake.__enter__()
    try:
        if where == "wrong_password":
            target = dict(host=mysql_server.host, port=mysql_server.port)
        elif where == "refused":
            target = dict(host="127.0.0.1", port=1)
        else:
            assert fake is not None
            target = dict(host="127.0.0.1", port=fake.port)
        pool = MySQLPool(**target, user="app", password=PASSWORD, timeout=1.0, connect_timeout=0.3,
                         ssl_disabled=True)
        try:
            with pytest.raises(PoolExhaustedError) as info:
                pool.query("SELECT 1")
            assert_never_shown(PASSWORD, root_debug, repr(pool), *texts(info.value))
        finally:
            pool.close()
    finally:
        if fake is not None:
            fake.__exit__()


@pytest.mark.parametrize("mode", ["in_trans_after_rollback", "stale_after_rollback"])
def test_a_rollback_reply_that_is_not_a_plain_ok_drops_the_connection(mode: str) -> None:
    """The ROLLBACK sent at return (autocommit off) is read before the next checkout, whether its reply
    arrived before the next user asks (read by the checkout check) or after (settle() waits): an OK
    that leaves a transaction open, or a reply with more behind it, drops the connection."""
    with fake_pool(mode, autocommit=False) as (server, pool):
        for arrived_first in (True, False):
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT 'mine'")
                assert cur.fetchall() == (("mine",),)
            sessions = server.sessions
            assert conn._gpool_owed  # sent at return, its reply not yet read
            if arrived_first:
                wait_until(lambda: select.select([conn._sock], [], [], 0)[0], what="the ROLLBACK's reply")
            with pool.connection() as fresh, fresh.cursor() as cur:
                assert fresh is not conn and server.sessions == sessions + 1  # dropped, a new session
                cur.execute("SELECT 'own'")
                assert cur.fetchall() == (("own",),)

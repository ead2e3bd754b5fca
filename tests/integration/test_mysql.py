"""gpool.mysql against a real MariaDB: PyMySQL connections on the gpool core pool.

What is proven here: connections come back clean (no open transaction, autocommit and the session as
configured) and that costs no round trip when there is nothing to undo; a connection interrupted in a
read or a write, or lost, is closed and never handed out, while SQL errors keep it; the health check
pings only connections idle longer than check_interval and catches server-side kills and wait_timeout;
nothing is re-executed; 500 greenlets on 10 connections never read another greenlet's reply and the
server never sees more than 10 connections; the pool recovers from a server restart; one SSLContext
per pool with PyMySQL's TLS modes kept; secrets stay out of reprs, logs and errors; bad URLs and
parameters are rejected naming the parameter.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import traceback  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from time import monotonic  # noqa: E402
from typing import Any, Callable  # noqa: E402
from urllib.parse import quote  # noqa: E402

import gevent  # noqa: E402
import pymysql  # noqa: E402
import pytest  # noqa: E402
from gevent.event import Event  # noqa: E402
from pymysql.constants import CR  # noqa: E402

from gpool import PoolClosedError, PoolExhaustedError  # noqa: E402
from gpool.mysql import MySQLConnection, MySQLPool  # noqa: E402
from tests.support import wait_until  # noqa: E402

LOST = {CR.CR_SERVER_GONE_ERROR, CR.CR_SERVER_LOST, 1927}  # what a lost or killed connection raises


# -- helpers -----------------------------------------------------------------------------------------


def scalar(cur: Any, sql: str, args: Any = None) -> Any:
    cur.execute(sql, args)
    return cur.fetchone()[0]


def server_threads(side: pymysql.connections.Connection) -> set[int]:
    with side.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST")
        return {row[0] for row in cur.fetchall()}


def status(side: pymysql.connections.Connection, name: str) -> int:
    with side.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
        return int(cur.fetchone()[1])


@pytest.fixture
def make_pool(mysql_server: Any) -> Iterator[Callable[..., MySQLPool]]:
    pools: list[MySQLPool] = []

    def make(server: Any = None, **kwargs: Any) -> MySQLPool:
        pool = MySQLPool(**{**(server or mysql_server).connect_kwargs(), **kwargs})
        pools.append(pool)
        return pool

    try:
        yield make
    finally:
        for pool in pools:
            pool.close()


@pytest.fixture
def side(mysql_server: Any) -> Iterator[pymysql.connections.Connection]:
    """A plain PyMySQL connection outside any pool: the test's own view of the server."""
    conn = pymysql.connect(**mysql_server.connect_kwargs(), autocommit=True, ssl_disabled=True)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def table(side: pymysql.connections.Connection) -> Iterator[str]:
    """A fresh InnoDB table ``(id AUTO_INCREMENT, v INT UNIQUE, b LONGBLOB)`` dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with side.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id INT AUTO_INCREMENT PRIMARY KEY, v INT UNIQUE, b LONGBLOB) ENGINE=InnoDB")
    try:
        yield name
    finally:
        with side.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")


def count_rows(side: pymysql.connections.Connection, table: str) -> int:
    with side.cursor() as cur:
        return int(scalar(cur, f"SELECT COUNT(*) FROM {table}"))


# -- the API ---------------------------------------------------------------------------------------------


def test_helpers_and_connection_return_real_pymysql_results(
        mysql_server: Any, make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    pool = make_pool(max_connections=2)
    assert pool.name == f"mysql://root@{mysql_server.host}:{mysql_server.port}/test"

    with pool.connection() as conn:
        assert isinstance(conn, pymysql.connections.Connection)
        with conn.cursor() as cur:
            assert scalar(cur, "SELECT %s", (1,)) == 1

    assert pool.insert(f"INSERT INTO {table} (v) VALUES (%s)", (10,)) == 1
    assert pool.insert(f"INSERT INTO {table} (v) VALUES (%s)", (20,)) == 2
    assert pool.executemany(f"INSERT INTO {table} (v) VALUES (%s)", [(30,), (40,), (50,)]) == 3
    assert pool.executemany(f"INSERT INTO {table} (v) VALUES (%s)", []) == 0
    assert pool.execute(f"UPDATE {table} SET v = v + 1 WHERE v >= %s", (30,)) == 3
    assert pool.query(f"SELECT id, v FROM {table} ORDER BY id") == [
        {"id": 1, "v": 10}, {"id": 2, "v": 20}, {"id": 3, "v": 31}, {"id": 4, "v": 41}, {"id": 5, "v": 51}]
    assert pool.query_one(f"SELECT v FROM {table} WHERE id = %s", (2,)) == {"v": 20}
    assert pool.query_one(f"SELECT v FROM {table} WHERE id = %s", (99,)) is None
    # autocommit is off by default: the helpers committed, the side connection sees every row
    assert count_rows(side, table) == 5

    stats = pool.stats()
    assert stats.created == 1 and stats.dropped == 0 and stats.acquired == stats.released == 9

    alone = MySQLConnection(**mysql_server.connect_kwargs(), setsession=["SET @alone = 1"], ssl_disabled=True)
    with alone.cursor() as cur:  # usable without a pool, like pymysql.connect()
        assert scalar(cur, "SELECT @alone") == 1
    alone.close()
    with pytest.raises(pymysql.err.Error, match="Already closed"):  # as PyMySQL documents (DB-API 2.0)
        alone.close()
    assert not alone.open
    pool.close()
    assert pool.closed
    with pytest.raises(PoolClosedError):
        pool.query("SELECT 1")


def test_from_url_decodes_credentials_and_converts_options(mysql_server: Any, side: Any) -> None:
    with side.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'gpool_url'@'127.0.0.1' IDENTIFIED BY 'p@ss/w:rd%'")
        cur.execute("GRANT ALL ON test.* TO 'gpool_url'@'127.0.0.1'")
    url = (f"mysql+pymysql://gpool_url:{quote('p@ss/w:rd%', safe='')}@{mysql_server.host}:{mysql_server.port}"
           "/test?charset=utf8mb4&max_connections=3&timeout=5&idle_timeout=none&check_interval=0.5"
           "&autocommit=true&connect_timeout=2.5&read_timeout=10&cursorclass=DictCursor&name=orders"
           "&setsession=SET+SESSION+time_zone%3D%27%2B01%3A00%27&setsession=SET+@tag%3D7")
    with MySQLPool.from_url(url) as pool:
        assert pool.name == "orders" and pool.max_connections == 3
        core = pool.pool
        assert core.options.timeout == 5.0 and core.options.idle_timeout is None and core.options.check_interval == 0.5
        with pool.connection() as conn:
            assert conn.get_autocommit() is True
            assert conn.connect_timeout == 2.5 and conn._read_timeout == 10.0
            with conn.cursor() as cur:  # the URL's cursorclass
                cur.execute("SELECT CURRENT_USER() AS u, @@time_zone AS tz, @tag AS tag, @@character_set_client AS cs")
                assert cur.fetchone() == {"u": "gpool_url@127.0.0.1", "tz": "+01:00", "tag": 7, "cs": "utf8mb4"}
    with MySQLPool.from_url(f"mysql://root@{mysql_server.host}:{mysql_server.port}/test", max_connections=4) as pool:
        assert pool.max_connections == 4 and pool.query_one("SELECT DATABASE() AS db") == {"db": "test"}
    side.query("DROP USER 'gpool_url'@'127.0.0.1'")


# -- transactions and reset on return ----------------------------------------------------------------


def test_transaction_commits_on_success_and_rolls_back_on_error(
        make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    pool = make_pool(max_connections=1, autocommit=True)
    with pool.transaction() as conn:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (1), (2)")
        assert count_rows(side, table) == 0  # not visible before COMMIT
    assert count_rows(side, table) == 2

    with pytest.raises(pymysql.err.IntegrityError), pool.transaction() as conn:
        first = conn.thread_id()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (3)")
            cur.execute(f"INSERT INTO {table} (v) VALUES (1)")  # duplicate key
    with pytest.raises(KeyError), pool.transaction() as conn:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (4)")
        raise KeyError("user error")
    assert count_rows(side, table) == 2
    with pool.connection() as conn:  # the same connection, kept: an SQL error does not poison it
        assert conn.thread_id() == first and not conn.server_status & 1  # not in a transaction
    assert pool.stats().dropped == 0


def test_transaction_interrupted_by_timeout_is_rolled_back_by_closing(
        make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    pool = make_pool(max_connections=1)
    started = monotonic()
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.2), pool.transaction() as conn:
        victim = conn.thread_id()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (1)")
            cur.execute("SELECT SLEEP(1)")
    assert monotonic() - started < 0.9
    assert pool.stats().closed_interrupted == 1 and pool.size == 0
    with pool.connection() as conn:
        assert conn.thread_id() != victim
    # the server rolls back when it notices the disconnect (after the SLEEP statement ends)
    wait_until(lambda: victim not in server_threads(side), 10.0, "the interrupted thread to end")
    assert count_rows(side, table) == 0


def test_uncommitted_writes_never_reach_the_next_user(
        make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    for autocommit in (False, True):
        pool = make_pool(max_connections=1, autocommit=autocommit)
        with pool.connection() as conn:
            first = conn.thread_id()
            with conn.cursor() as cur:
                if autocommit:
                    conn.begin()
                cur.execute(f"INSERT INTO {table} (v) VALUES (1), (2)")
                assert scalar(cur, f"SELECT COUNT(*) FROM {table}") == 2  # visible to its writer
        with side.cursor() as cur:  # no row lock left behind: this would wait for it
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
            cur.execute(f"INSERT INTO {table} (v) VALUES (1)")
            cur.execute(f"DELETE FROM {table}")
        with pool.connection() as conn:
            assert conn.thread_id() == first  # the same connection, handed to the next user
            with conn.cursor() as cur:
                assert scalar(cur, f"SELECT COUNT(*) FROM {table}") == 0
        # an error packet carries no status flags: the failed first statement's transaction is rolled back too
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (5)")
            conn.commit()
            if not autocommit:
                with pytest.raises(pymysql.err.IntegrityError):
                    cur.execute(f"INSERT INTO {table} (v) VALUES (5)")
        assert count_rows(side, table) == 1
        with side.cursor() as cur:
            cur.execute(f"DELETE FROM {table}")
        assert pool.stats().dropped == 0 and pool.stats().created == 1


def test_read_snapshots_and_row_locks_never_reach_the_next_user(
        make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    """With autocommit off a SELECT opens a transaction that MariaDB does not flag in the protocol
    (not even SELECT ... FOR UPDATE, which locks rows): the reset must end it all the same."""
    side.query(f"INSERT INTO {table} (v) VALUES (1)")
    pool = make_pool(max_connections=1, autocommit=False)
    with pool.connection() as conn, conn.cursor() as cur:
        assert scalar(cur, f"SELECT COUNT(*) FROM {table}") == 1  # a REPEATABLE READ snapshot
        cur.execute(f"SELECT v FROM {table} WHERE v = 1 FOR UPDATE")  # a row lock
        assert not conn.server_status & 1  # ... and no SERVER_STATUS_IN_TRANS to say so
    with side.cursor() as cur:
        cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
        cur.execute(f"UPDATE {table} SET v = 2 WHERE v = 1")  # would wait 1 s and fail on a leaked lock
        cur.execute(f"INSERT INTO {table} (v) VALUES (3)")
    with pool.connection() as conn, conn.cursor() as cur:
        assert scalar(cur, f"SELECT COUNT(*) FROM {table}") == 2  # a fresh snapshot
        assert scalar(cur, f"SELECT MAX(v) FROM {table}") == 3
    assert pool.stats().created == 1 and pool.stats().dropped == 0


@pytest.mark.timeout(30)
def test_the_rollback_sent_at_return_is_read_by_the_pool_before_the_next_user(
        make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    """The ROLLBACK of a return goes out without waiting; its reply is read at the next checkout, by the
    pool (settle()), never by the next user, and a connection that cannot complete it is not handed out."""
    pool = make_pool(max_connections=1, autocommit=False)
    with pool.connection() as conn, conn.cursor() as cur:
        first = conn.thread_id()
        cur.execute(f"INSERT INTO {table} (v) VALUES (1)")
    assert conn._gpool_owed  # sent, its reply not read (is_clean() reads it once it has all arrived)
    with pool.connection() as conn, conn.cursor() as cur:
        assert conn.thread_id() == first and not conn._gpool_owed
        assert scalar(cur, "SELECT 42") == 42  # its own reply, not the ROLLBACK's
        assert scalar(cur, f"SELECT COUNT(*) FROM {table}") == 0  # rolled back
    # Killed on the server between the return and the next checkout: dropped, another one handed out.
    side.query(f"KILL {first}")
    wait_until(lambda: first not in server_threads(side), what="the kill")
    with pool.connection() as conn, conn.cursor() as cur:
        assert conn.thread_id() != first and scalar(cur, "SELECT 7") == 7
    stats = pool.stats()
    assert (stats.created, stats.check_failures, stats.dropped) == (2, 1, 0)

    # Contended: every return hands over a connection that owes a reply; each greenlet reads its own.
    busy = make_pool(max_connections=2, autocommit=False)
    wrong: list[tuple[int, Any]] = []

    def worker(n: int) -> None:
        for i in range(30):
            with busy.connection() as c, c.cursor() as cur:
                got = scalar(cur, "SELECT %s", (n * 1000 + i,))
                if got != n * 1000 + i:
                    wrong.append((n * 1000 + i, got))

    gevent.joinall([gevent.spawn(worker, n) for n in range(20)], raise_error=True)
    assert wrong == [] and busy.stats().dropped == 0 and busy.stats().created <= 2


def test_reset_restores_autocommit_and_costs_no_round_trip_when_clean(
        make_pool: Callable[..., MySQLPool], table: str) -> None:
    pool = make_pool(max_connections=1, autocommit=True)
    commands: list[int] = []
    with pool.connection() as conn:
        original = conn._execute_command

        def spy(command: int, sql: Any) -> Any:
            commands.append(command)
            return original(command, sql)

        conn._execute_command = spy  # type: ignore[method-assign]
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        commands.clear()
    assert commands == []  # released clean: no ROLLBACK, no SET AUTOCOMMIT, no ping

    with pool.connection() as conn:
        conn.autocommit(False)
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {table}")  # opens a transaction now that autocommit is off
        commands.clear()
    assert len(commands) == 2  # ROLLBACK, then SET AUTOCOMMIT = 1
    with pool.connection() as conn, conn.cursor() as cur:
        assert conn.get_autocommit() is True and scalar(cur, "SELECT @@autocommit") == 1

    off = make_pool(max_connections=1, autocommit=False)
    with off.connection() as conn:
        conn.autocommit(True)
    with off.connection() as conn, conn.cursor() as cur:
        assert conn.get_autocommit() is False and scalar(cur, "SELECT @@autocommit") == 0


def test_session_changes_are_undone_for_the_next_user(
        make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    with side.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS gpool_other")
    pool = make_pool(max_connections=1, autocommit=True,
                     init_command="SET SESSION sql_mode='ANSI_QUOTES'",
                     setsession=["SET SESSION time_zone='+02:00'", "SET @configured = 42"])
    with pool.connection() as conn:
        first = conn.thread_id()
        with conn.cursor() as cur:
            assert scalar(cur, "SELECT @@time_zone") == "+02:00" and scalar(cur, "SELECT @configured") == 42
            cur.execute("/* a comment */ SET time_zone = '-05:00'")
            cur.execute("set session sql_mode = ''")
            cur.execute("SET @mine = 'secret of user 1'")
            cur.execute("CREATE TEMPORARY TABLE scratch (a INT)")
            cur.execute(f"LOCK TABLES test.{table} WRITE")
            cur.execute("USE gpool_other")
            cur.execute("BEGIN")
    with pool.connection() as conn, conn.cursor() as cur:
        assert conn.thread_id() == first
        cur.execute("SELECT @@time_zone, @@sql_mode, @configured, @mine, DATABASE(), @@autocommit")
        assert cur.fetchone() == ("+02:00", "ANSI_QUOTES", 42, None, "test", 1)
        with pytest.raises(pymysql.err.ProgrammingError):
            cur.execute("SELECT * FROM scratch")
    assert count_rows(side, table) == 0  # LOCK TABLES released: the side connection can read it

    # changes the pool cannot see (inside other statements) are undone by reset_session()
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT @hidden := 1")
        conn.reset_session()
        assert scalar(cur, "SELECT @hidden") is None and scalar(cur, "SELECT @configured") == 42
    assert pool.stats().created == 1 and pool.stats().dropped == 0
    with side.cursor() as cur:
        cur.execute("DROP DATABASE gpool_other")


@pytest.mark.parametrize(("sql", "changes_session"), [
    ("SELECT 1", False),
    ("UPDATE t SET a = 1", False),
    ("CREATE TABLE t (a INT)", False),
    ("select * from settings", False),
    ("/* unterminated SET", False),
    ("-- \n" * 1000 + "SELECT 1", False),
    ("set time_zone = '+00:00'", True),
    ("  -- why\n  SET @a = 1", True),
    ("# why\nLOCK TABLES t WRITE", True),
    ("/* why */ USE other", True),
    ("/*!40101 SET NAMES utf8mb4 */", True),
    ("create or replace temporary table t (a INT)", True),
    ("PREPARE s FROM 'SELECT 1'", True),
    ("sElEcT 1", False),
    ("Insert INTO t VALUES (1)", False),
    ("WITH x AS (SELECT 1) SELECT * FROM x", False),
    ("SHOW VARIABLES", False),
    ("CALL p()", False),
    ("Set @a = 1", True),
    ("uSe other", True),
    ("\u017fET @a = 1", True),  # (long s: the regex's IGNORECASE takes it for "s")
    ("\tSET @a = 1", True),
    ("SETX", False),
    ("", False),
])
def test_statements_that_change_the_session_are_recognised(sql: str, changes_session: bool) -> None:
    from gpool.mysql._connection import _SESSION_BYTES, _SESSION_STR, _session_keyword

    assert (_SESSION_STR.match(sql) is not None) is changes_session
    assert (_session_keyword(sql) is not None) is changes_session  # the query() path: a cheap test first
    if sql.isascii():
        assert (_SESSION_BYTES.match(sql.encode()) is not None) is changes_session
        assert (_session_keyword(sql.encode()) is not None) is changes_session
        assert (_session_keyword(bytearray(sql.encode())) is not None) is changes_session


# -- poisoned connections are dropped, SQL errors are not ----------------------------------------------


def test_timeout_during_a_read_drops_the_connection(make_pool: Callable[..., MySQLPool]) -> None:
    pool = make_pool(max_connections=1)
    started = monotonic()
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.2):
        pool.query("SELECT SLEEP(1)")
    assert monotonic() - started < 0.9
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.2), pool.connection() as conn:
        victim = conn.thread_id()
        with conn.cursor() as cur:
            cur.execute("SELECT SLEEP(1)")
    stats = pool.stats()
    assert stats.closed_interrupted == 2 and stats.created == 2 and pool.size == 0
    with pool.connection() as conn, conn.cursor() as cur:
        assert conn.thread_id() != victim
        assert scalar(cur, "SELECT %s", (42,)) == 42
    assert pool.query_one("SELECT 7 AS n") == {"n": 7}


def test_timeout_during_a_write_drops_the_half_written_connection(
        make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    """PyMySQL leaves the socket open when a write is interrupted; the server would read the next
    command as the rest of the interrupted packet. The connection must be closed, even when the
    Timeout is swallowed inside the block."""
    pool = make_pool(max_connections=1, autocommit=True)
    payload = b"x" * (6 << 20)  # 6 MiB: the server must read it in many pieces

    def stall_writes(conn: MySQLConnection) -> list[type]:
        """A tiny send buffer, so the write must wait for the server; returns what interrupts writes."""
        conn._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        seen: list[type] = []
        original = conn._write_bytes

        def spy(data: bytes) -> None:
            try:
                original(data)
            except BaseException as exc:
                seen.append(type(exc))
                raise

        conn._write_bytes = spy  # type: ignore[method-assign]
        return seen

    with pool.connection() as conn:
        first = conn.thread_id()
        seen = stall_writes(conn)
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.001), conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (b) VALUES (%s)", (payload,))
        assert seen == [gevent.Timeout]  # interrupted in the write, half a packet sent
        assert not conn.open  # closed by the interrupted write itself
    stats = pool.stats()
    assert stats.dropped == 1 and pool.size == 0  # the reset saw it closed: dropped, not reused
    assert pool.query_one("SELECT 5 AS n") == {"n": 5}

    with pool.connection() as conn:  # the helpers go through connection(): the same applies
        assert conn.thread_id() != first
        seen = stall_writes(conn)
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.001):
        pool.execute(f"INSERT INTO {table} (b) VALUES (%s)", (payload,))
    assert seen == [gevent.Timeout]
    assert pool.stats().closed_interrupted == 1 and pool.size == 0
    assert pool.query_one(f"SELECT COUNT(*) AS n FROM {table}") == {"n": 0}  # no half packet executed
    assert count_rows(side, table) == 0


def test_lost_connections_are_dropped_and_nothing_is_re_executed(
        make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    pool = make_pool(max_connections=1, autocommit=True, check_interval=60.0)  # no ping: use it as it is

    # killed during a query
    with pool.connection() as conn:
        victim = conn.thread_id()
    killer = gevent.spawn_later(0.2, side.query, f"KILL {victim}")
    with pytest.raises(pymysql.err.OperationalError) as info:
        pool.query("SELECT SLEEP(5)")
    killer.get()
    assert info.value.args[0] in LOST
    assert pool.stats().closed_broken == 1

    # killed while idle, before check_interval: the checkout's zero-round-trip socket check sees the
    # server's FIN, so the INSERT runs once, on a fresh connection
    with pool.connection() as conn:
        victim = conn.thread_id()
    side.query(f"KILL {victim}")
    wait_until(lambda: victim not in server_threads(side), 5.0, "the killed thread to end")
    assert pool.insert(f"INSERT INTO {table} (v) VALUES (2)") == 1
    assert pool.stats().closed_check_failed == 1 and pool.stats().closed_broken == 1
    assert count_rows(side, table) == 1

    # a connection the user closed
    with pytest.raises(pymysql.err.InterfaceError), pool.connection() as conn:
        conn.close()
        conn.cursor().execute("SELECT 1")
    assert pool.stats().closed_broken == 2 and pool.size == 0
    assert pool.query_one("SELECT 1 AS one") == {"one": 1}


def test_sql_errors_keep_the_connection(make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    pool = make_pool(max_connections=1, autocommit=True)
    pool.insert(f"INSERT INTO {table} (v) VALUES (1)")
    with pool.connection() as conn:
        first = conn.thread_id()
    with pytest.raises(pymysql.err.ProgrammingError):
        pool.query("SELEC 1")
    with pytest.raises(pymysql.err.IntegrityError):
        pool.insert(f"INSERT INTO {table} (v) VALUES (1)")
    killer = gevent.spawn_later(0.2, side.query, f"KILL QUERY {first}")
    with pytest.raises(pymysql.err.OperationalError) as info:
        pool.query("SELECT SLEEP(5)")
    killer.get()
    assert info.value.args[0] == 1317  # query interrupted; the connection lives on
    with pool.connection() as conn, conn.cursor() as cur:
        assert conn.thread_id() == first and scalar(cur, "SELECT 3") == 3
    assert pool.stats().dropped == 0 and pool.stats().created == 1


def test_replies_of_every_size_are_read_whole_and_in_order(
        make_pool: Callable[..., MySQLPool], side: Any, table: str) -> None:
    # The reader takes packets from its read-ahead buffer (issue 18): replies that end mid-packet,
    # rows larger than one recv(), packets of 16 MB and over (continued in the next packet), errors
    # after a result and multi-statement results must read exactly as through PyMySQL's own reader.
    with side.cursor() as cur:
        saved = scalar(cur, "SELECT @@GLOBAL.max_allowed_packet")
        cur.execute("SET GLOBAL max_allowed_packet = 67108864")
    try:
        _read_replies_of_every_size(make_pool, table)
    finally:
        with side.cursor() as cur:
            cur.execute("SET GLOBAL max_allowed_packet = %s", (saved,))


def _read_replies_of_every_size(make_pool: Callable[..., MySQLPool], table: str) -> None:
    pool = make_pool(max_connections=1, autocommit=True, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
                     max_allowed_packet=67108864)
    sizes = [0, 1, 250, 251, 65535, 65536, 100_000, 16 * 1024 * 1024 - 5, 16 * 1024 * 1024 + 3]
    with pool.connection() as conn, conn.cursor() as cur:
        for size in sizes:
            cur.execute(f"INSERT INTO {table} (v, b) VALUES (%s, REPEAT('a', %s))", (size, size))
        cur.execute(f"SELECT v, LENGTH(b), b FROM {table} ORDER BY v")
        rows = cur.fetchall()
        assert [(r[0], r[1], len(r[2]), r[2][:1], r[2][-1:]) for r in rows] == [
            (n, n, n, b"a"[:n], b"a"[:n]) for n in sizes]
        cur.execute("SELECT seq FROM seq_1_to_5000")
        assert [r[0] for r in cur.fetchall()] == list(range(1, 5001))
        with pytest.raises(pymysql.err.ProgrammingError):
            cur.execute("SELECT 1; SELEC 2")
            while cur.nextset():
                pass
        cur.execute("SELECT 7; SELECT 8")
        assert cur.fetchall() == ((7,),) and cur.nextset() and cur.fetchall() == ((8,),) and not cur.nextset()
        with pytest.raises(pymysql.err.ProgrammingError):
            cur.execute("SELECT * FROM no_such_table_here")
        assert scalar(cur, "SELECT 9") == 9
        # Queries of every size are sent whole: small ones in one send, larger ones in parts (the
        # kernel's send buffer full), those of 16 MB and over in several packets.
        for size in (0, 1, 100_000, 5 * 1024 * 1024, 16 * 1024 * 1024 + 3):
            assert scalar(cur, "SELECT LENGTH(%s)", ("q" * size,)) == size
            assert scalar(cur, "SELECT 10") == 10
    assert pool.stats().dropped == 0 and pool.stats().created == 1


def test_unread_unbuffered_result_drops_the_connection(make_pool: Callable[..., MySQLPool]) -> None:
    pool = make_pool(max_connections=1)
    with pool.connection() as conn:
        cur = conn.cursor(pymysql.cursors.SSCursor)
        cur.execute("SELECT seq FROM seq_1_to_100000")
        assert cur.fetchone() == (1,)  # the rest is left unread on the socket
    assert pool.stats().dropped == 1
    assert pool.query_one("SELECT 9 AS n") == {"n": 9}


# -- health check -----------------------------------------------------------------------------------------


def test_health_check_pings_only_after_check_interval(
        make_pool: Callable[..., MySQLPool], monkeypatch: pytest.MonkeyPatch) -> None:
    pings: list[bool] = []
    original = MySQLConnection.ping

    def spy(self: MySQLConnection, reconnect: bool = False) -> Any:
        pings.append(reconnect)
        return original(self, reconnect)

    monkeypatch.setattr(MySQLConnection, "ping", spy)
    pool = make_pool(max_connections=1, check_interval=0.3)
    for _ in range(20):
        assert pool.query_one("SELECT 1 AS one") == {"one": 1}
    assert pings == []
    gevent.sleep(0.35)  # the time the check waits for, not a synchronisation
    assert pool.query_one("SELECT 1 AS one") == {"one": 1}
    assert pings == [False]  # one ping, never with reconnect


def test_connection_killed_on_the_server_is_never_handed_out(
        make_pool: Callable[..., MySQLPool], side: Any) -> None:
    pool = make_pool(max_connections=1, check_interval=0.1)
    with pool.connection() as conn:
        victim = conn.thread_id()
    side.query(f"KILL {victim}")
    wait_until(lambda: victim not in server_threads(side), 5.0, "the killed thread to end")
    gevent.sleep(0.1)  # idle longer than check_interval
    with pool.connection() as conn, conn.cursor() as cur:
        assert conn.thread_id() != victim
        assert scalar(cur, "SELECT CONNECTION_ID()") == conn.thread_id()
    stats = pool.stats()
    assert stats.check_failures == 1 and stats.created == 2


def test_connection_closed_by_wait_timeout_is_never_handed_out(
        make_pool: Callable[..., MySQLPool], side: Any) -> None:
    pool = make_pool(max_connections=2, check_interval=0.5, setsession=["SET SESSION wait_timeout = 1"])
    with pool.connection() as a, pool.connection() as b:
        victims = {a.thread_id(), b.thread_id()}
    wait_until(lambda: not victims & server_threads(side), 10.0, "wait_timeout to close both connections")
    for _ in range(3):
        row = pool.query_one("SELECT CONNECTION_ID() AS id, @@wait_timeout AS wt")
        assert row is not None and row["id"] not in victims and row["wt"] == 1
    stats = pool.stats()
    assert stats.check_failures == 2 and stats.created == 3


def test_socket_closed_behind_the_pools_back_is_never_handed_out(
        make_pool: Callable[..., MySQLPool], side: Any) -> None:
    """The checkout check keeps a poll() registered on the socket's fd; a socket closed without PyMySQL
    knowing must fail it even when another socket now has that fd number."""
    pool = make_pool(max_connections=1, autocommit=True, check_interval=60.0)
    with pool.connection() as conn:
        first = conn.thread_id()
    fd = conn._sock.fileno()
    conn._sock.close()  # while idle: a socket closed on return is already dropped by reset()
    os.dup2(side._sock.fileno(), fd)  # the fd number now names a healthy, idle socket
    try:
        with pool.connection() as conn, conn.cursor() as cur:
            assert conn.thread_id() != first
            assert scalar(cur, "SELECT CONNECTION_ID()") == conn.thread_id()
    finally:
        os.close(fd)
    stats = pool.stats()
    assert stats.check_failures == 1 and stats.created == 2
    with side.cursor() as cur:
        assert scalar(cur, "SELECT 1") == 1  # its dup was closed, not it


def test_reconnected_connection_is_checked_on_its_new_socket(
        make_pool: Callable[..., MySQLPool], side: Any) -> None:
    pool = make_pool(max_connections=1, autocommit=True, check_interval=60.0)
    with pool.connection() as conn:
        old = conn.thread_id()
        side.query(f"KILL {old}")
        wait_until(lambda: old not in server_threads(side), 5.0, "the killed thread to end")
        with pytest.raises(pymysql.err.OperationalError):
            conn.ping(reconnect=False)  # PyMySQL sees the loss and closes the socket
        conn.connect()  # the user's own choice: the same object on a new socket
        new = conn.thread_id()
        assert new != old
    with pool.connection() as conn:
        assert conn.thread_id() == new  # the new socket passes the checkout check
    side.query(f"KILL {new}")
    wait_until(lambda: new not in server_threads(side), 5.0, "the killed thread to end")
    with pool.connection() as conn, conn.cursor() as cur:
        assert conn.thread_id() not in (old, new)  # ... and its close is seen
        assert scalar(cur, "SELECT 1") == 1
    stats = pool.stats()
    assert stats.check_failures == 1 and stats.created == 2


# -- concurrency ------------------------------------------------------------------------------------------


def test_500_greenlets_on_10_connections_always_read_their_own_reply(
        make_pool: Callable[..., MySQLPool], side: Any) -> None:
    greenlets, rounds, cap = 500, 20, 10
    with side.cursor() as cur:  # the pool's own user: its server threads can be told apart
        cur.execute("CREATE USER IF NOT EXISTS 'gpool_xtalk'@'127.0.0.1'")
        cur.execute("GRANT SELECT ON test.* TO 'gpool_xtalk'@'127.0.0.1'")
    # Start quiet if we can: threads of earlier tests' interrupted queries may still be ending.
    deadline = monotonic() + 5.0
    while server_threads(side) - {side.thread_id()} and monotonic() < deadline:
        gevent.sleep(0.05)
    side.query("FLUSH STATUS")  # Max_used_connections := Threads_connected
    baseline = status(side, "Threads_connected")
    pool = make_pool(user="gpool_xtalk", max_connections=cap, autocommit=True)
    wrong: list[tuple[int, Any]] = []
    peak = [0]
    peak_ours = [0]
    done = Event()

    def monitor() -> None:
        with side.cursor() as cur:
            while not done.is_set():
                peak[0] = max(peak[0], status(side, "Threads_connected"))
                ours = scalar(cur, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'gpool_xtalk'")
                peak_ours[0] = max(peak_ours[0], ours)
                gevent.sleep(0.002)

    def worker(gid: int) -> None:
        for i in range(rounds):
            if i % 2:
                row = pool.query_one("SELECT %s AS id", (gid,))
                got = row["id"] if row else None
            else:
                with pool.connection() as conn, conn.cursor() as cur:
                    got = scalar(cur, "SELECT %s", (gid,))
            if got != gid:
                wrong.append((gid, got))

    watcher = gevent.spawn(monitor)
    started = monotonic()
    gevent.joinall([gevent.spawn(worker, gid) for gid in range(greenlets)], raise_error=True)
    elapsed = monotonic() - started
    done.set()
    watcher.get()
    stats = pool.stats()
    print(f"\n{greenlets * rounds} queries by {greenlets} greenlets on {cap} connections in {elapsed:.2f}s "
          f"({greenlets * rounds / elapsed:.0f} q/s); Threads_connected peak {peak[0]} - baseline {baseline}, "
          f"Max_used_connections {status(side, 'Max_used_connections')}, the pool's user's threads {peak_ours[0]}")
    pool.close()
    side.query("DROP USER 'gpool_xtalk'@'127.0.0.1'")
    assert wrong == []
    assert stats.acquired == greenlets * rounds and stats.created == cap and stats.dropped == 0
    assert peak_ours[0] == cap  # all ten in use at once, never more
    assert 0 < peak[0] - baseline <= cap
    assert status(side, "Max_used_connections") - baseline <= cap


def test_random_interrupts_never_hand_a_stale_reply_to_anyone(make_pool: Callable[..., MySQLPool]) -> None:
    pool = make_pool(max_connections=5, autocommit=True)
    rng = random.Random(7)
    wrong: list[tuple[int, Any]] = []
    interrupted = [0]

    def worker(gid: int) -> None:
        for _ in range(10):
            try:
                with pool.connection() as conn, gevent.Timeout(rng.uniform(0.0, 0.003)), conn.cursor() as cur:
                    got = scalar(cur, "SELECT %s, SLEEP(0.001)", (gid,))
                if got != gid:
                    wrong.append((gid, got))
            except gevent.Timeout:
                interrupted[0] += 1

    gevent.joinall([gevent.spawn(worker, gid) for gid in range(200)], raise_error=True)
    stats = pool.stats()
    assert wrong == []
    assert 0 < interrupted[0] < 2000 and stats.closed_interrupted == interrupted[0]
    assert pool.size <= 5 and stats.in_use == 0
    for gid in range(20):  # whatever is left idle answers its own question
        assert pool.query_one("SELECT %s AS id", (gid,)) == {"id": gid}


# -- server restart ---------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_pool_recovers_from_a_server_restart_under_load(
        restartable_mysql_server: Any, make_pool: Callable[..., MySQLPool]) -> None:
    server = restartable_mysql_server
    timeout = 5.0
    pool = make_pool(server, max_connections=5, timeout=timeout, retry=2, retry_delay=0.05,
                     check_interval=0.5, connect_timeout=2)
    log: list[tuple[float, Any]] = []  # (start time, None or the error)
    stop = Event()

    def worker(gid: int) -> None:
        while not stop.is_set():
            begun = monotonic()
            try:
                assert pool.query_one("SELECT %s AS id", (gid,)) == {"id": gid}
                log.append((begun, None))
            except (PoolExhaustedError, pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
                log.append((begun, exc))
                gevent.sleep(0.02)  # pace the retries while the server is down
            gevent.sleep(0.001)

    workers = [gevent.spawn(worker, gid) for gid in range(10)]
    wait_until(lambda: sum(1 for _, e in log if e is None) >= 100, 10.0, "load before the restart")
    server.stop()
    down_since = monotonic()
    wait_until(lambda: sum(1 for t, e in log if e is not None and t > down_since) >= 10, 10.0, "errors while down")
    server.start()
    up_at = monotonic()
    first_ok = wait_until(lambda: min((t for t, e in log if e is None and t >= up_at), default=None),
                          timeout, "the first query after the restart")
    wait_until(lambda: sum(1 for t, e in log if e is None and t >= up_at) >= 200, 10.0, "load after the restart")
    stop.set()
    gevent.joinall(workers, raise_error=True)

    errors = [e for _, e in log if e is not None]
    kinds = sorted({f"{type(e).__name__}({(e.__cause__ or e).args[0]})" for e in errors})
    print(f"\nrestart: {len(errors)} errors while down ({', '.join(kinds)}); first query after the restart "
          f"succeeded {first_ok - up_at:.3f}s after it; {sum(1 for t, e in log if t >= up_at)} queries after, all ok")
    assert first_ok - up_at < timeout
    after = [e for t, e in log if t >= up_at]
    assert errors and all(e is None for e in after), [e for e in after if e is not None][:3]
    for exc in errors:  # clear errors: the driver's, or the pool's with the connect error as cause
        if isinstance(exc, PoolExhaustedError):
            assert isinstance(exc.__cause__, pymysql.err.OperationalError), repr(exc.__cause__)
            assert exc.__cause__.args[0] in LOST | {CR.CR_CONN_HOST_ERROR, 1053}, exc.__cause__
            assert "last connect error: OperationalError" in str(exc)
        else:
            assert exc.args[0] in LOST | {0, 1053}, exc
    assert any(isinstance(e, PoolExhaustedError) for e in errors)
    assert pool.size <= 5


# -- TLS --------------------------------------------------------------------------------------------------


@pytest.fixture
def count_ssl_contexts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []
    original = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    return made


def test_one_ssl_context_per_pool_and_tls_modes_kept(
        make_pool: Callable[..., MySQLPool], count_ssl_contexts: list[int]) -> None:
    """The shared server offers no TLS: preferred falls back, required fails, disabled builds nothing."""
    preferred = make_pool(max_connections=5)
    with preferred.connection() as a, preferred.connection() as b, preferred.connection() as c:
        assert a.ctx is b.ctx is c.ctx and not a._secure
    assert len(count_ssl_contexts) == 1  # plain PyMySQL: one per connect

    disabled = make_pool(max_connections=3, ssl_disabled=True)
    with disabled.connection() as a, disabled.connection() as b:
        assert not a.ssl and not b.ssl
    assert len(count_ssl_contexts) == 1

    required = make_pool(max_connections=1, ssl_verify_cert=True, retry=0)
    with pytest.raises(PoolExhaustedError) as info:
        required.query("SELECT 1")
    assert isinstance(info.value.__cause__, pymysql.err.OperationalError)
    assert info.value.__cause__.args[0] == CR.CR_SSL_CONNECTION_ERROR  # never silently in clear text


def _make_certs(directory: Path) -> dict[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    files = {name: str(directory / name) for name in
             ("ca.pem", "ca.key", "other-ca.pem", "other-ca.key", "server.pem", "server.key", "server.csr", "ext")}
    Path(files["ext"]).write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=gpool {ca}",
            "-keyout", files[f"{ca}.key"], "-out", files[f"{ca}.pem"])
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", files["server.key"],
        "-out", files["server.csr"])
    run("x509", "-req", "-in", files["server.csr"], "-CA", files["ca.pem"], "-CAkey", files["ca.key"],
        "-CAcreateserial", "-days", "2", "-extfile", files["ext"], "-out", files["server.pem"])
    return files


def test_tls_server_shared_context_with_verification(
        mysql_server_factory: Callable[..., Any], make_pool: Callable[..., MySQLPool],
        count_ssl_contexts: list[int], tmp_path: Path) -> None:
    certs = _make_certs(tmp_path)
    server = mysql_server_factory(extra_args=[f"--ssl-ca={certs['ca.pem']}", f"--ssl-cert={certs['server.pem']}",
                                              f"--ssl-key={certs['server.key']}"])
    count_ssl_contexts.clear()
    preferred = make_pool(server, max_connections=3)
    verified = make_pool(server, max_connections=3, ssl_ca=certs["ca.pem"], ssl_verify_identity=True)
    for pool in (preferred, verified):
        with pool.connection() as a, pool.connection() as b, pool.connection() as c:
            assert a.ctx is b.ctx is c.ctx
            for conn in (a, b, c):
                with conn.cursor() as cur:
                    cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
                    assert cur.fetchone()[1].startswith("TLS")
    assert len(count_ssl_contexts) == 2  # one per pool, not one per connection

    # (PyMySQL verifies the certificate only when asked: ssl_ca alone encrypts without verifying)
    wrong_ca = make_pool(server, max_connections=1, ssl_ca=certs["other-ca.pem"], ssl_verify_cert=True, retry=0)
    with pytest.raises(PoolExhaustedError) as info:
        wrong_ca.query("SELECT 1")
    assert isinstance(info.value.__cause__, (ssl.SSLError, pymysql.err.OperationalError)), info.value.__cause__


# -- secrets and bad input --------------------------------------------------------------------------------


def test_password_never_in_repr_logs_or_errors(
        mysql_server: Any, side: Any, caplog: pytest.LogCaptureFixture) -> None:
    secret = "S3cr3t/p@ss:" + uuid.uuid4().hex[:8]
    wrong = "Wr0ng-" + uuid.uuid4().hex[:8]
    with side.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'gpool_secret'@'127.0.0.1'")
        cur.execute("ALTER USER 'gpool_secret'@'127.0.0.1' IDENTIFIED BY %s", (secret,))
        cur.execute("GRANT ALL ON test.* TO 'gpool_secret'@'127.0.0.1'")
    caplog.set_level(logging.DEBUG)
    host = f"{mysql_server.host}:{mysql_server.port}"
    texts: list[str] = []

    def capture(exc: BaseException) -> None:
        texts.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        texts.extend(repr(e) for e in (exc, exc.__cause__, exc.__context__))

    good = MySQLPool.from_url(f"mysql://gpool_secret:{quote(secret, safe='')}@{host}/test?max_connections=2")
    try:
        assert good.query_one("SELECT CURRENT_USER() AS u") == {"u": "gpool_secret@127.0.0.1"}
        with good.connection() as conn:
            conn.close()  # a reset failure: logged at WARNING with its traceback
        texts += [repr(good), str(good), good.name, repr(vars(good)), repr(good.stats())]
    finally:
        good.close()

    bad = MySQLPool(**{**mysql_server.connect_kwargs(), "user": "gpool_secret", "password": wrong},
                    max_connections=1, retry=1, retry_delay=0.01)
    with pytest.raises(PoolExhaustedError) as info:
        bad.query("SELECT 1")
    assert info.value.__cause__.args[0] == 1045  # access denied
    capture(info.value)
    texts.append(repr(bad))
    bad.close()
    for password in (wrong, secret):
        for url in (f"mysql://gpool_secret:{quote(password, safe='')}@{host}/test?bogus=1",
                    f"mysql://gpool_secret:{quote(password, safe='')}@{mysql_server.host}:99x/test",
                    f"mysql://gpool_secret:{quote(password, safe='')}@{host}/test?max_connections=x",
                    f"mysql://gpool_secret:{password}@[{host}/test",
                    f"postgres://gpool_secret:{quote(password, safe='')}@{host}/test"):
            with pytest.raises(ValueError) as value_error:
                MySQLPool.from_url(url)
            capture(value_error.value)
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    assert any("reset on release failed" in t for t in texts)
    assert any("1045" in t for t in texts)
    side.query("DROP USER 'gpool_secret'@'127.0.0.1'")
    for text in texts:
        for password in (secret, wrong, quote(secret, safe=""), quote(wrong, safe="")):
            assert password not in text, text


@pytest.mark.parametrize(("url", "parameter"), [
    ("postgres://u@h/db", "scheme"),
    ("mysql://u@h:99999/db", "port"),
    ("mysql://u@h:abc/db", "port"),
    ("mysql://u@h:0/db", "port"),
    ("mysql://u@h/db/extra", "database"),
    ("mysql://u@h/db#frag", "fragment"),
    ("mysql://u@h/db?max_connections=ten", "max_connections"),
    ("mysql://u@h/db?max_connections=0", "max_connections"),
    ("mysql://u@h/db?initial_connections=5&max_connections=2", "initial_connections"),
    ("mysql://u@h/db?timeout=-1", "timeout"),
    ("mysql://u@h/db?check_interval=soon", "check_interval"),
    ("mysql://u@h/db?autocommit=maybe", "autocommit"),
    ("mysql://u@h/db?bogus=1", "bogus"),
    ("mysql://u@h/db?max_connections=1&max_connections=2", "max_connections"),
    ("mysql://u@h/db?charset=klingon", "charset"),
    ("mysql://u@h/db?connect_timeout=0", "connect_timeout"),
    ("mysql://u@h/db?read_timeout=-5", "read_timeout"),
    ("mysql://u@h/db?cursorclass=Nope", "cursorclass"),
    ("mysql://u@h/db?novalue", "query string"),
])
def test_bad_urls_raise_value_error_naming_the_parameter(url: str, parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        MySQLPool.from_url(url)


@pytest.mark.parametrize(("kwargs", "error", "parameter"), [
    ({"port": "3306"}, TypeError, "port"),
    ({"port": 0}, ValueError, "port"),
    ({"host": ""}, ValueError, "host"),
    ({"database": ""}, ValueError, "database"),
    ({"user": 5}, TypeError, "user"),
    ({"password": 1234}, TypeError, "password"),
    ({"setsession": "SET time_zone='+00:00'"}, TypeError, "setsession"),
    ({"setsession": ["SET a=1", ""]}, ValueError, "setsession"),
    ({"autocommit": "yes"}, TypeError, "autocommit"),
    ({"max_conections": 5}, TypeError, "max_conections"),
    ({"passwd": "x"}, TypeError, "passwd"),
    ({"defer_connect": True}, TypeError, "defer_connect"),
    ({"max_connections": 0}, ValueError, "max_connections"),
    ({"timeout": -1}, ValueError, "timeout"),
    ({"read_timeout": -1}, ValueError, "read_timeout"),
    ({"charset": "klingon"}, ValueError, "charset"),
])
def test_bad_parameters_raise_naming_the_parameter(kwargs: dict[str, Any], error: type, parameter: str) -> None:
    with pytest.raises(error, match=parameter):
        MySQLPool(**{"host": "127.0.0.1", "port": 1, **kwargs})  # never connects: validation comes first


def test_release_by_another_live_greenlet_is_refused_and_transfer_hands_over(mysql_server: Any) -> None:
    from gpool import ConnectionHeldError

    pool = MySQLPool(**mysql_server.connect_kwargs(), max_connections=1)
    try:
        conn = pool.acquire()
        go = gevent.event.Event()
        worker = gevent.spawn(lambda: (go.wait(5), pool.release(conn)))
        with pytest.raises(ConnectionHeldError):
            gevent.spawn(pool.release, conn).get(timeout=5)  # not the holder, and the holder lives
        assert pool.stats().in_use == 1  # nothing changed
        pool.transfer(conn, worker)
        go.set()
        worker.get(timeout=5)
        assert (pool.stats().idle, pool.stats().in_use) == (1, 0)
    finally:
        pool.close()


def test_connect_failure_is_pymysqls_operational_error_with_its_code(mysql_server: Any) -> None:
    from gpool import ConnectFailedError

    kwargs = dict(mysql_server.connect_kwargs(), password="certainly-wrong")
    pool = MySQLPool(**kwargs, timeout=5)
    try:
        started = monotonic()
        with pytest.raises(pymysql.err.OperationalError) as info:
            pool.query("SELECT 1")
        assert monotonic() - started < 2  # access denied cannot succeed on retry: at once
        assert isinstance(info.value, ConnectFailedError) and info.value.args[0] == 1045
        assert str(info.value).startswith("pool ") and "OperationalError: (1045" in str(info.value)
        assert "certainly-wrong" not in str(info.value) + repr(info.value.__cause__)
    finally:
        pool.close()

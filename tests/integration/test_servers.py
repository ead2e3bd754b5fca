"""The throwaway test-server launchers of gpool.testing: start, stop, kill, restart, cleanup."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pymysql
import pytest
import redis

from gpool.testing import (
    MariaDBServer,
    RedisServer,
    find_free_port,
    find_mariadbd,
    find_redis_server,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _binaries_installed() -> None:
    missing = [name for name, finder in (("mariadbd", find_mariadbd), ("redis-server", find_redis_server))
               if finder() is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run `make test`, which installs them", pytrace=False)


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def query(server: MariaDBServer, sql: str) -> tuple:
    conn = pymysql.connect(**server.connect_kwargs(), connect_timeout=5, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_find_free_port_is_bindable_on_loopback() -> None:
    ports = {find_free_port() for _ in range(20)}
    assert len(ports) > 1
    for port in ports:
        assert 1024 < port < 65536
        with socket.socket() as sock:
            # As the servers bind: a port some earlier test's connection left in TIME_WAIT is free to them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


def test_find_binaries() -> None:
    for path in (find_mariadbd(), find_redis_server()):
        assert path is not None
        assert os.access(path, os.X_OK)


@pytest.mark.timeout(90)
def test_mariadb_start_stop_restart_kill_cleanup() -> None:
    server = MariaDBServer()
    assert not server.running
    assert server.url == f"mysql://root@127.0.0.1:{server.port}/test"
    try:
        assert server.start(timeout=60) is server
        assert server.running
        tmpdir = server.tmpdir
        assert tmpdir is not None and os.path.isdir(tmpdir)
        assert server.connect_kwargs() == {"host": "127.0.0.1", "port": server.port, "user": "root",
                                           "password": "", "database": "test"}
        assert query(server, "SELECT 1") == ((1,),)
        assert query(server, "SELECT DATABASE(), CURRENT_USER()") == (("test", "root@127.0.0.1"),)
        assert query(server, "SELECT @@max_connections") == ((1000,),)
        query(server, "CREATE TABLE kept (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB")
        query(server, "INSERT INTO kept VALUES (1, 'before restart')")

        # graceful stop: the process is gone and reaped, the port refuses, the files stay
        first = server.process
        assert first is not None
        server.stop()
        assert first.poll() is not None
        assert first.returncode == 0
        assert not server.running and server.pid is None
        assert refuses_connections(server.port)
        with pytest.raises(pymysql.err.OperationalError):
            query(server, "SELECT 1")
        assert os.path.isdir(tmpdir)
        server.stop()  # idempotent

        # restart: same port, same temp dir, same data
        port = server.port
        server.start(timeout=60)
        assert server.port == port and server.tmpdir == tmpdir
        assert server.process is not first
        assert query(server, "SELECT v FROM kept") == (("before restart",),)
        query(server, "INSERT INTO kept VALUES (2, 'before crash')")

        # crash: SIGKILL, then InnoDB recovery keeps committed rows
        second = server.process
        assert second is not None
        server.kill()
        assert second.poll() == -9
        assert refuses_connections(server.port)
        server.start(timeout=60)
        assert query(server, "SELECT id FROM kept ORDER BY id") == ((1,), (2,))
        third = server.process
    finally:
        server.cleanup()
    assert third is not None and third.poll() is not None
    assert not server.running
    assert server.tmpdir is None
    assert not os.path.exists(tmpdir)
    assert refuses_connections(server.port)
    server.cleanup()  # idempotent


@pytest.mark.timeout(60)
def test_mariadb_start_failure_raises_with_error_log() -> None:
    server = MariaDBServer(extra_args=["--no-such-option-for-gpool"])
    try:
        with pytest.raises(RuntimeError, match="exited with status") as info:
            server.start(timeout=30)
        assert "unknown option '--no-such-option-for-gpool'" in str(info.value)
        assert not server.running
    finally:
        server.cleanup()


@pytest.mark.timeout(30)
def test_mariadb_start_times_out_instead_of_hanging() -> None:
    server = MariaDBServer()
    try:
        with pytest.raises(RuntimeError, match="did not finish in time"):
            server.start(timeout=0.05)  # mariadb-install-db alone takes longer
        assert not server.running
    finally:
        server.cleanup()


@pytest.mark.timeout(30)
def test_redis_start_stop_restart_kill_cleanup() -> None:
    server = RedisServer()
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    try:
        server.start(timeout=20)
        tmpdir = server.tmpdir
        assert tmpdir is not None and os.path.isdir(tmpdir)
        client = redis.Redis(**server.connect_kwargs(), socket_timeout=5)
        assert client.ping() is True
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.set("key", "before restart")
        assert client.get("key") == b"before restart"
        client.close()

        first = server.process
        assert first is not None
        server.stop()
        assert first.poll() is not None
        assert not server.running
        assert refuses_connections(server.port)

        port = server.port
        server.start(timeout=20)
        assert server.port == port and server.tmpdir == tmpdir
        client = redis.Redis(**server.connect_kwargs(), socket_timeout=5)
        assert client.get("key") is None  # no persistence: a restart starts empty
        assert client.dbsize() == 0
        assert not os.path.exists(os.path.join(tmpdir, "dump.rdb"))
        client.close()

        second = server.process
        assert second is not None
        server.kill()
        assert second.poll() == -9
        assert refuses_connections(server.port)
        server.start(timeout=20)
        assert redis.Redis(**server.connect_kwargs(), socket_timeout=5).ping() is True
    finally:
        server.cleanup()
    assert not server.running
    assert not os.path.exists(tmpdir)
    assert refuses_connections(server.port)


@pytest.mark.timeout(30)
def test_redis_with_a_password_counts_as_ready() -> None:
    server = RedisServer(extra_args=["--requirepass", "secret"])  # answers PING with -NOAUTH: alive
    try:
        server.start(timeout=10)
        assert server.running
    finally:
        server.cleanup()


def test_redis_start_times_out_and_kills_the_process() -> None:
    sock = os.path.join(tempfile.mkdtemp(prefix="gpool-test-"), "r.sock")
    server = RedisServer(extra_args=["--port", "0", "--unixsocket", sock])  # no TCP listener: never ready
    try:
        with pytest.raises(RuntimeError, match=r"not ready in time"):
            server.start(timeout=0.5)
        assert server.process is not None and server.process.poll() is not None
        assert refuses_connections(server.port)
    finally:
        server.cleanup()
        shutil.rmtree(os.path.dirname(sock), ignore_errors=True)


@pytest.mark.timeout(30)
def test_redis_bad_argument_raises_with_log() -> None:
    server = RedisServer(extra_args=["--no-such-directive-for-gpool", "1"])
    try:
        with pytest.raises(RuntimeError, match="no-such-directive-for-gpool"):
            server.start(timeout=20)
    finally:
        server.cleanup()


@pytest.mark.timeout(30)
def test_context_manager_starts_and_removes() -> None:
    with RedisServer() as server:
        assert server.running
        tmpdir = server.tmpdir
        assert tmpdir is not None and os.path.isdir(tmpdir)
    assert not server.running
    assert not os.path.exists(tmpdir)


@pytest.mark.timeout(60)
def test_works_under_gevent_monkey_patching() -> None:
    result = run_python("""
        from gevent import monkey
        monkey.patch_all()
        import gevent, pymysql, redis
        from gpool.testing import MariaDBServer, RedisServer

        with MariaDBServer() as m, RedisServer() as r:
            def mysql():
                conn = pymysql.connect(**m.connect_kwargs())
                with conn.cursor() as cur:
                    cur.execute("SELECT DATABASE()")
                    assert cur.fetchone() == ("test",)
                conn.close()
                m.stop()
                m.start()
            def ticker():  # the hub keeps running while the launchers wait
                for _ in range(5):
                    gevent.sleep(0.01)
                return "ticked"
            jobs = [gevent.spawn(mysql), gevent.spawn(r.stop), gevent.spawn(ticker)]
            gevent.joinall(jobs, raise_error=True)
            r.start()
            assert redis.Redis(**r.connect_kwargs()).ping()
            assert m.running and r.running
        print("ok", m.tmpdir, r.tmpdir)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok None None"


@pytest.mark.timeout(60)
def test_atexit_removes_forgotten_servers() -> None:
    result = run_python("""
        from gpool.testing import MariaDBServer, RedisServer
        m = MariaDBServer().start()
        r = RedisServer().start()
        print(m.pid, m.tmpdir, r.pid, r.tmpdir)
        # exits without cleanup()
    """)
    assert result.returncode == 0, result.stderr
    mysql_pid, mysql_dir, redis_pid, redis_dir = result.stdout.split()
    for pid in (int(mysql_pid), int(redis_pid)):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not os.path.exists(mysql_dir)
    assert not os.path.exists(redis_dir)


def test_shared_fixtures(mysql_server, redis_server) -> None:
    conn = pymysql.connect(**mysql_server.connect_kwargs(), connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")
            assert cur.fetchone() == (mysql_server.database,)
    finally:
        conn.close()
    assert redis.Redis(**redis_server.connect_kwargs(), socket_timeout=5).ping() is True
    assert mysql_server.url.startswith("mysql://")
    assert redis_server.url.startswith("redis://")


@pytest.mark.timeout(60)
def test_restartable_fixture_may_be_stopped_by_a_test(restartable_redis_server) -> None:
    restartable_redis_server.stop()
    assert not restartable_redis_server.running


def test_restartable_fixture_is_running_again_in_the_next_test(restartable_redis_server) -> None:
    assert restartable_redis_server.running
    assert redis.Redis(**restartable_redis_server.connect_kwargs(), socket_timeout=5).ping() is True


@pytest.mark.timeout(60)
def test_external_url_fixtures(tmp_path: Path) -> None:
    """With GPOOL_TEST_*_URL set, the shared fixtures use that server and private ones skip."""
    (tmp_path / "test_ext.py").write_text(textwrap.dedent("""
        import pymysql, redis

        def test_mysql(mysql_server):
            assert mysql_server.external
            conn = pymysql.connect(**mysql_server.connect_kwargs())
            conn.close()

        def test_redis(redis_server):
            assert redis_server.external and redis_server.db == 3
            assert redis.Redis(**redis_server.connect_kwargs()).ping()

        def test_private_mysql(private_mysql_server):
            raise AssertionError("should have been skipped")

        def test_private_redis(private_redis_server):
            raise AssertionError("should have been skipped")
    """))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    with MariaDBServer() as m, RedisServer() as r:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
               "GPOOL_TEST_MYSQL_URL": m.url, "GPOOL_TEST_REDIS_URL": f"redis://127.0.0.1:{r.port}/3"}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", "-rs",
             str(tmp_path)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=50)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 2 skipped" in result.stdout, result.stdout
    assert "points at an external server" in result.stdout

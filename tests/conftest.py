"""Shared fixtures: the MariaDB and Redis servers the integration and fault tests talk to.

By default every server is a private throwaway one started by :mod:`gpool.testing` (on 127.0.0.1, a
free port, a temp dir), never the machine's own MariaDB or Redis. Set ``GPOOL_TEST_MYSQL_URL``
(``mysql://user:password@host:port/database``) or ``GPOOL_TEST_REDIS_URL``
(``redis://[:password@]host:port/db``) to run the shared-server tests against an existing server
instead; tests that must control the server (``private_*``) are then skipped.

Fixtures:

``mysql_server`` / ``redis_server`` (session)
    One server for the whole run, shared by every test: do not stop it or change global settings.
``private_mysql_server`` / ``private_redis_server``
    The same shared server, but skip when it is external (for tests that read its log, its process
    or its settings).
``restartable_mysql_server`` / ``restartable_redis_server``
    A private server per test module that tests may stop, kill and start; it is (re)started before
    each test that uses it. Data and ``SET GLOBAL`` settings persist between the tests of a module
    as long as the server is not restarted (Redis loses its data on a restart).
``mysql_server_factory`` / ``redis_server_factory``
    ``factory(extra_args=[...])`` starts a fresh private server for one test (removed after it),
    for tests that need special server options such as ``--wait-timeout=2``.
``fresh_sentinel_cluster``
    A Sentinel deployment (1 master, 2 replicas, 3 sentinels) of its own, for a test that fails over.
``closing``
    A list: every pool a test appends to it is closed after the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Callable, Optional
from urllib.parse import unquote, urlsplit

import pytest

from gpool.testing import MariaDBServer, RedisServer, SentinelCluster, find_mariadbd, find_redis_server

MYSQL_ENV = "GPOOL_TEST_MYSQL_URL"
REDIS_ENV = "GPOOL_TEST_REDIS_URL"


class ExternalMySQLServer:
    """The server named by ``GPOOL_TEST_MYSQL_URL``: the read attributes of a MariaDBServer, no control."""

    external = True
    running = True

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mysql+pymysql", "mariadb"):
            raise pytest.UsageError(f"{MYSQL_ENV}={url!r}: expected mysql://user:password@host:port/database")
        self.host: str = parts.hostname or "127.0.0.1"
        self.port: int = parts.port or 3306
        self.user: str = unquote(parts.username) if parts.username else "root"
        self.password: str = unquote(parts.password) if parts.password else ""
        self.database: str = unquote(parts.path.lstrip("/")) or "test"
        self.url = url

    def __repr__(self) -> str:
        return f"<ExternalMySQLServer {self.host}:{self.port}/{self.database} user={self.user}>"

    def connect_kwargs(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                "database": self.database}

    def start(self, timeout: float = 60.0) -> ExternalMySQLServer:
        return self

    def stop(self, timeout: float = 30.0) -> None:
        pytest.skip(f"{MYSQL_ENV} points at an external server; restart tests need a private one")

    def kill(self) -> None:
        pytest.skip(f"{MYSQL_ENV} points at an external server; restart tests need a private one")

    def cleanup(self) -> None:
        pass


class ExternalRedisServer:
    """The server named by ``GPOOL_TEST_REDIS_URL``: the read attributes of a RedisServer, no control."""

    external = True
    running = True

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis",):
            raise pytest.UsageError(f"{REDIS_ENV}={url!r}: expected redis://[:password@]host:port/db")
        self.host: str = parts.hostname or "127.0.0.1"
        self.port: int = parts.port or 6379
        self.username: Optional[str] = unquote(parts.username) if parts.username else None
        self.password: Optional[str] = unquote(parts.password) if parts.password else None
        path = parts.path.lstrip("/")
        self.db: int = int(path) if path else 0
        self.url = url

    def __repr__(self) -> str:
        return f"<ExternalRedisServer {self.host}:{self.port}/{self.db}>"

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "db": self.db}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def start(self, timeout: float = 60.0) -> ExternalRedisServer:
        return self

    def stop(self, timeout: float = 30.0) -> None:
        pytest.skip(f"{REDIS_ENV} points at an external server; restart tests need a private one")

    def kill(self) -> None:
        pytest.skip(f"{REDIS_ENV} points at an external server; restart tests need a private one")

    def cleanup(self) -> None:
        pass


def _require(finder: Callable[[], Optional[str]], binary: str, env: str) -> None:
    """Fail (or skip, when the user chose an external server) if the server binary is missing."""
    if finder() is not None:
        return
    if os.environ.get(env):
        pytest.skip(f"{binary} is not installed and {env} points at an external server; "
                    "this test needs a private one")
    pytest.fail(f"{binary} is not installed: run `make test`, which installs the OS packages for the "
                f"test servers (or set {env} to use an existing server for the shared-server tests)",
                pytrace=False)


# -- shared session servers


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[Any]:
    """One MariaDB for the whole run (``GPOOL_TEST_MYSQL_URL`` if set, else a private one)."""
    url = os.environ.get(MYSQL_ENV)
    if url:
        yield ExternalMySQLServer(url)
        return
    _require(find_mariadbd, "mariadbd", MYSQL_ENV)
    server = MariaDBServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """One Redis for the whole run (``GPOOL_TEST_REDIS_URL`` if set, else a private one)."""
    url = os.environ.get(REDIS_ENV)
    if url:
        yield ExternalRedisServer(url)
        return
    _require(find_redis_server, "redis-server", REDIS_ENV)
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture
def private_mysql_server(mysql_server: Any) -> Any:
    """The shared MariaDB, when it is a private one started by the test run; else skip."""
    if mysql_server.external:
        pytest.skip(f"{MYSQL_ENV} points at an external server; restart tests need a private one")
    return mysql_server


@pytest.fixture
def private_redis_server(redis_server: Any) -> Any:
    """The shared Redis, when it is a private one started by the test run; else skip."""
    if redis_server.external:
        pytest.skip(f"{REDIS_ENV} points at an external server; restart tests need a private one")
    return redis_server


# -- servers that tests may stop, kill and restart


@pytest.fixture(scope="module")
def _restartable_mysql() -> Iterator[MariaDBServer]:
    _require(find_mariadbd, "mariadbd", MYSQL_ENV)
    server = MariaDBServer()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def _restartable_redis() -> Iterator[RedisServer]:
    _require(find_redis_server, "redis-server", REDIS_ENV)
    server = RedisServer()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def restartable_mysql_server(_restartable_mysql: MariaDBServer) -> MariaDBServer:
    """A private MariaDB for this module, running at the start of each test; tests may stop/kill it."""
    return _restartable_mysql.start()


@pytest.fixture
def restartable_redis_server(_restartable_redis: RedisServer) -> RedisServer:
    """A private Redis for this module, running at the start of each test; tests may stop/kill it."""
    return _restartable_redis.start()


# -- one-off servers with custom options


def _server_factory(cls: Any, find: Callable[[], Optional[str]], binary: str, env: str) -> Iterator[Any]:
    """Yield ``factory(**kwargs)`` that starts private servers of ``cls``; all removed afterwards."""
    servers: list[Any] = []

    def factory(**kwargs: Any) -> Any:
        _require(find, binary, env)
        server = cls(**kwargs)
        servers.append(server)
        return server.start()

    try:
        yield factory
    finally:
        for server in servers:
            server.cleanup()


@pytest.fixture
def mysql_server_factory() -> Iterator[Callable[..., MariaDBServer]]:
    """``factory(**MariaDBServer kwargs)``: start a private MariaDB, removed at the end of the test."""
    yield from _server_factory(MariaDBServer, find_mariadbd, "mariadbd", MYSQL_ENV)


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """``factory(**RedisServer kwargs)``: start a private Redis, removed at the end of the test."""
    yield from _server_factory(RedisServer, find_redis_server, "redis-server", REDIS_ENV)


@pytest.fixture
def fresh_sentinel_cluster() -> Iterator[SentinelCluster]:
    """A Sentinel deployment of its own (1 master, 2 replicas, 3 sentinels), for a test that fails over."""
    with SentinelCluster(replicas=2) as deployment:
        yield deployment


# -- pools a test makes


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Append each pool the test makes: all are closed after it, whatever the outcome."""
    pools: list[Any] = []
    yield pools
    for pool in pools:
        pool.close()

"""Cases 3 and 4: one ``request()`` callable per pool against a private Redis or MariaDB server.

Every pool gets the same connect options and the same pool size M (gpool opens its M up front, with
``initial_connections``, as the floor does: else its warm-pool policy serves G=10 from fewer
connections, which measures that policy rather than the cost per request); the floor is M connections
opened up front and handed out by a bare ``gevent.queue.Queue``, driven through the same client
API (``redis.Redis.get`` for Redis, a PyMySQL cursor for MariaDB). Import after ``monkey.patch_all()``.
"""

from __future__ import annotations

from typing import Any, Callable

REDIS_KEY = "gpool:bench:key"
REDIS_VALUE = b"x" * 100
SQL = "SELECT 1"
#: given to every MySQL pool, connect-per-request included: without it PyMySQL 1.2 builds a TLS
#: context on every connect (~30 ms of CPU) even when the server offers no TLS
MYSQL_EXTRA: dict[str, Any] = {"ssl_disabled": True}

FLOOR = "floor: M connections in gevent.queue.Queue"
FAIR = "reference: M connections, minimal FIFO hand-off"
REDIS_FLOOR = MYSQL_FLOOR = FLOOR
REDIS_FAIR = MYSQL_FAIR = FAIR

Request = Callable[[], Any]
Closer = Callable[[], None]


# -- Redis ---------------------------------------------------------------------------------------------

#: name -> (what a reader must know, distributions whose versions matter)
REDIS_POOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    REDIS_FLOOR: ("redis.Redis over M pre-opened connections", ("redis",)),
    REDIS_FAIR: (
        "as the floor, handed to the oldest waiter; not a pool", ("redis",)),
    "gpool RedisPool.client()": ("pool.client().get(k); initial_connections=M", ("gpool", "redis")),
    "gpool RedisPool.connection()": ("with pool.connection() as r: r.get(k)", ("gpool", "redis")),
    "redis-py ConnectionPool": ("redis.Redis(host, port) defaults: max_connections=100, not M; never waits",
                                ("redis",)),
    "redis-py BlockingConnectionPool": ("max_connections=M, timeout=10", ("redis",)),
    "connect per request": ("with redis.Redis(host, port) as r: r.get(k)", ("redis",)),
}


def redis_request(name: str, server: dict[str, Any], size: int) -> tuple[Request, Closer]:
    import redis

    kw = {"host": server["host"], "port": server["port"]}
    key = REDIS_KEY
    if name in (REDIS_FLOOR, REDIS_FAIR):
        import gevent.queue
        from peers import FifoHandOff

        class QueuePool(redis.ConnectionPool):
            """redis-py's pool with checkout replaced by a bare queue of pre-opened connections."""

            def __init__(self) -> None:
                super().__init__(max_connections=size, **kw)
                conns = []
                for _ in range(size):
                    conn = self.make_connection()
                    conn.connect()
                    conns.append(conn)
                if name == REDIS_FLOOR:
                    q: Any = gevent.queue.Queue()
                    for conn in conns:
                        q.put(conn)
                    self._get, self._put = q.get, q.put
                else:
                    fifo = FifoHandOff(conns)
                    self._get, self._put = fifo.acquire, fifo.release

            def get_connection(self, *args: Any, **options: Any) -> Any:
                return self._get()

            def release(self, connection: Any) -> None:
                self._put(connection)

        pool = QueuePool()
        client = redis.Redis(connection_pool=pool)
        return (lambda: client.get(key)), pool.disconnect
    if name.startswith("gpool"):
        from gpool.redis import RedisPool

        gp = RedisPool(max_connections=size, initial_connections=size, **kw)  # M opened up front, as the floor's
        if name == "gpool RedisPool.client()":
            client = gp.client()
            return (lambda: client.get(key)), gp.close

        def through_connection() -> Any:
            with gp.connection() as r:
                return r.get(key)

        return through_connection, gp.close
    if name == "redis-py ConnectionPool":
        client = redis.Redis(**kw)
        return (lambda: client.get(key)), client.close
    if name == "redis-py BlockingConnectionPool":
        bpool = redis.BlockingConnectionPool(max_connections=size, timeout=10, **kw)
        client = redis.Redis(connection_pool=bpool)
        return (lambda: client.get(key)), bpool.disconnect
    if name == "connect per request":

        def per_request() -> Any:
            with redis.Redis(**kw) as r:
                return r.get(key)

        return per_request, lambda: None
    raise KeyError(name)


# -- MySQL ---------------------------------------------------------------------------------------------

MYSQL_POOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    MYSQL_FLOOR: ("PyMySQL cursor over M pre-opened connections", ("PyMySQL",)),
    MYSQL_FAIR: (
        "as the floor, handed to the oldest waiter; not a pool", ("PyMySQL",)),
    "gpool MySQLPool (defaults)": ("with pool.connection() as conn; initial_connections=M; autocommit=False: "
                                   "ROLLBACK on return",
                                   ("gpool", "PyMySQL")),
    "gpool MySQLPool (autocommit=True)": ("no round trip on return", ("gpool", "PyMySQL")),
    "DBUtils PooledDB (defaults)": ("blocking=True; ping on checkout, rollback on return", ("DBUtils", "PyMySQL")),
    "DBUtils PooledDB (ping=0, reset=False)": ("blocking=True; no checks", ("DBUtils", "PyMySQL")),
    "SQLAlchemy QueuePool (defaults)": ("creator=pymysql.connect, max_overflow=0; rollback on return",
                                        ("SQLAlchemy", "PyMySQL")),
    "SQLAlchemy QueuePool (reset_on_return=None)": ("creator=pymysql.connect, max_overflow=0; no reset",
                                                    ("SQLAlchemy", "PyMySQL")),
    "connect per request": ("pymysql.connect() + close() around each query", ("PyMySQL",)),
    "SQLAlchemy Core, GeventPool": ("engine.connect() + execute(text(SQL)), pool_size=M; rollback on return",
                                    ("gpool", "SQLAlchemy", "PyMySQL")),
    "SQLAlchemy Core, QueuePool": ("engine.connect() + execute(text(SQL)), pool_size=M, max_overflow=0; "
                                   "rollback on return", ("SQLAlchemy", "PyMySQL")),
}


def _query(conn: Any) -> Any:
    with conn.cursor() as cur:
        cur.execute(SQL)
        return cur.fetchall()


def _dbapi_query(conn: Any) -> Any:
    # DBUtils and SQLAlchemy proxies: their cursors are not all context managers
    cur = conn.cursor()
    try:
        cur.execute(SQL)
        return cur.fetchall()
    finally:
        cur.close()


def mysql_request(name: str, server: dict[str, Any], size: int) -> tuple[Request, Closer]:
    import pymysql

    kw = {**server, **MYSQL_EXTRA}
    if name in (MYSQL_FLOOR, MYSQL_FAIR):
        import gevent.queue
        from peers import FifoHandOff

        conns = [pymysql.connect(**kw) for _ in range(size)]
        if name == MYSQL_FLOOR:
            q: Any = gevent.queue.Queue()
            for c in conns:
                q.put(c)
            get, put = q.get, q.put
        else:
            fifo = FifoHandOff(conns)
            get, put = fifo.acquire, fifo.release

        def floor() -> Any:
            c = get()
            try:
                return _query(c)
            finally:
                put(c)

        def close_all() -> None:
            for c in conns:
                c.close()

        return floor, close_all
    if name.startswith("gpool MySQLPool"):
        from gpool.mysql import MySQLPool

        extra = {"autocommit": True} if "autocommit=True" in name else {}
        gp = MySQLPool(max_connections=size, initial_connections=size, **extra, **kw)  # as the floor's M

        def through_gpool() -> Any:
            with gp.connection() as conn:
                return _query(conn)

        return through_gpool, gp.close
    if name.startswith("DBUtils"):
        from dbutils.pooled_db import PooledDB

        lean = "ping=0" in name
        extra = {"ping": 0, "reset": False} if lean else {}
        dpool = PooledDB(pymysql, maxconnections=size, maxcached=size, blocking=True, **extra, **kw)

        def through_dbutils() -> Any:
            conn = dpool.connection()
            try:
                return _dbapi_query(conn)
            finally:
                conn.close()

        return through_dbutils, dpool.close
    if name.startswith("SQLAlchemy Core"):
        return _sqlalchemy_core_request(name, kw, size)
    if name.startswith("SQLAlchemy"):
        from sqlalchemy.pool import QueuePool

        extra = {"reset_on_return": None} if "reset_on_return=None" in name else {}
        spool = QueuePool(lambda: pymysql.connect(**kw), pool_size=size, max_overflow=0, timeout=10, **extra)

        def through_sqlalchemy() -> Any:
            conn = spool.connect()
            try:
                return _dbapi_query(conn)
            finally:
                conn.close()

        return through_sqlalchemy, spool.dispose
    if name == "connect per request":

        def per_request() -> Any:
            conn = pymysql.connect(**kw)
            try:
                return _query(conn)
            finally:
                conn.close()

        return per_request, lambda: None
    raise KeyError(name)


def _sqlalchemy_core_request(name: str, kw: dict[str, Any], size: int) -> tuple[Request, Closer]:
    """Case 4 through SQLAlchemy Core: an Engine with GeventPool or QueuePool, same connect options."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import URL
    from sqlalchemy.pool import QueuePool

    from gpool.sqlalchemy import GeventPool

    url = URL.create("mysql+pymysql", username=kw["user"], password=kw.get("password") or None,
                     host=kw["host"], port=kw["port"], database=kw.get("database"))
    connect_args = {k: v for k, v in kw.items() if k not in ("user", "password", "host", "port", "database")}
    if name.endswith("GeventPool"):
        engine = create_engine(url, poolclass=GeventPool, pool_size=size, pool_timeout=10, connect_args=connect_args)
    else:
        engine = create_engine(url, poolclass=QueuePool, pool_size=size, max_overflow=0, pool_timeout=10,
                               connect_args=connect_args)
    statement = text(SQL)

    def through_engine() -> Any:
        with engine.connect() as conn:
            return conn.execute(statement).fetchall()

    return through_engine, engine.dispose


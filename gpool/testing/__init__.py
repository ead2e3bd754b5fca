"""Private, throwaway MariaDB and Redis servers for test suites.

Each launcher runs its own server process on ``127.0.0.1``, on a port nobody else uses, with all its
files in a fresh temporary directory. Nothing is shared with a system server and nothing outlives
the test run: :meth:`~MariaDBServer.cleanup` (or leaving a ``with`` block) stops the process and
deletes the directory, and an :mod:`atexit` hook does the same for servers a test run forgot.

A server can be stopped, killed and started again: the restart reuses the same port and, for
MariaDB, the same data directory, so tests can exercise a pool across a server restart or crash::

    from gpool.testing import MariaDBServer

    with MariaDBServer() as server:          # mariadb-install-db + mariadbd, ready for queries
        conn = pymysql.connect(**server.connect_kwargs())
        ...
        server.kill()                        # crash it (SIGKILL)
        server.start()                       # same port, same data (after InnoDB recovery)

The module needs only the standard library; when PyMySQL is importable it is used to check that
MariaDB is ready, otherwise the ``mariadb`` command-line client is. It works unchanged in a
process that has called ``gevent.monkey.patch_all()``.

``SentinelCluster`` runs a whole Redis Sentinel deployment (1 master, N replicas, 3 sentinels) for
failover tests.

Run one from a shell with ``python -m gpool.testing mysql`` (or ``redis``): it prints the URL and
serves until Ctrl-C.
"""

from ._server import find_free_port, find_mariadbd, find_redis_server
from .mariadb import MariaDBServer
from .redis import RedisServer
from .replication import GaleraNode, MariaDBReplicaSet, find_galera_provider
from .sentinel import RedisSentinel, SentinelCluster

__all__ = [
    "GaleraNode",
    "MariaDBReplicaSet",
    "MariaDBServer",
    "RedisSentinel",
    "RedisServer",
    "SentinelCluster",
    "find_free_port",
    "find_galera_provider",
    "find_mariadbd",
    "find_redis_server",
]

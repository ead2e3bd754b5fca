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

Several servers with a role: ``MySQLPool(hosts=["db1:3306", "db2:3306"], target="primary")`` (see
``docs/multihost.md``).
"""

from ._connection import MySQLConnection
from ._hosts import HostListStats, HostStats, HostTimeoutError, NoHostAvailableError
from ._pool import MySQLConnectFailedError, MySQLPool

__all__ = ["HostListStats", "HostStats", "HostTimeoutError", "MySQLConnectFailedError", "MySQLConnection", "MySQLPool",
           "NoHostAvailableError"]

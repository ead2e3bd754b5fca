"""Redis for gevent servers: redis-py's ``redis.Redis`` on a gpool :class:`~gpool.Pool`.

:class:`RedisPool` is a ``redis.ConnectionPool`` whose connections live in a gpool core pool, so
every ``redis.Redis`` built on it (``pool.client()``, or ``redis.Redis(connection_pool=pool)`` in a
library) waits fairly, in FIFO order, with a deadline when all ``max_connections`` are in use,
instead of failing with "Too many connections". ``import gpool`` does not import this module (nor
redis-py)::

    from gpool.redis import RedisPool

    pool = RedisPool.from_url("redis://:secret@127.0.0.1:6379/0?max_connections=20")
    r = pool.client()                 # each command borrows a connection and gives it back
    r.set("k", "v")
    with pool.connection() as r:      # one connection for the whole block
        r.blpop("jobs", timeout=5)

What the pool does with each connection (a :class:`PooledConnection`):

* never hands out one with a reply nobody read: a command interrupted by ``gevent.Timeout``, a
  kill or a socket error closes the connection (redis-py does), and a connection that comes back
  with replies still owed (counted per command sent and reply read) is dropped;
* drops it on return when it is in a state the next user must not inherit: subscribed (pub/sub,
  ``MONITOR``), inside ``MULTI``, with a ``WATCH``, on another database after ``SELECT``, or after
  ``CLIENT REPLY``/``TRACKING``/``SETNAME``, ``HELLO``, ``AUTH``, ``RESET``...; redis-py's own
  pipelines end their ``WATCH``/``MULTI`` and keep the connection;
* at every checkout, a zero-round-trip check (a ``poll`` with timeout 0) rejects a socket the server
  closed (``CLIENT KILL``, its ``timeout``, a restart) or one with unexpected bytes, and a ``PING`` is
  sent only when the connection sat idle at least ``check_interval`` seconds; a new connection the
  server refuses (``maxclients`` reached) raises ``redis.ConnectionError`` with the server's reason
  (as a connect error when the refusal arrives before the connection is handed out);
* never retries a command on its own: connections get ``Retry(NoBackoff(), 0)`` unless you pass
  ``retry=``, ``retry_on_timeout=`` or ``retry_on_error=`` (redis-py's opt-in, for idempotent use);
* connects lean: RESP2 and no ``CLIENT SETINFO`` unless you ask for ``protocol=3`` or ``driver_info``.

:class:`SentinelRedisPool` is the same pool for a Redis Sentinel service: it follows failovers (see
``docs/sentinel.md``).
"""

from ._connection import PooledConnection
from ._errors import RedisPoolClosedError, RedisPoolExhaustedError
from ._pool import RedisPool
from ._sentinel import SentinelRedisPool, SentinelStats

__all__ = [
    "PooledConnection",
    "RedisPool",
    "RedisPoolClosedError",
    "RedisPoolExhaustedError",
    "SentinelRedisPool",
    "SentinelStats",
]

"""gpool: a gevent-cooperative resource pool.

``import gpool`` needs only gevent; the adapters live in :mod:`gpool.mysql` and :mod:`gpool.redis`.
"""

import logging

from .connection import Connection, TcpConnection
from .errors import ConnectionNotFoundError, PoolClosedError, PoolError, PoolExhaustedError
from .pool import Pool
from .reaper import ConnectionReaper
from .stats import PoolStats

__all__ = [
    "Connection",
    "ConnectionNotFoundError",
    "ConnectionReaper",
    "Pool",
    "PoolClosedError",
    "PoolError",
    "PoolExhaustedError",
    "PoolStats",
    "TcpConnection",
]

__version__ = "0.1.0"

logging.getLogger("gpool").addHandler(logging.NullHandler())

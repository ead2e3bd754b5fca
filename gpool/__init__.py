"""gpool: a gevent-cooperative resource pool.

``import gpool`` needs only gevent; the adapters live in :mod:`gpool.mysql` and :mod:`gpool.redis`.
"""

import logging

from .connection import Connection, TcpConnection
from .errors import (
    ConnectFailedError,
    ConnectionHeldError,
    ConnectionNotFoundError,
    PoolClosedError,
    PoolDeadlockError,
    PoolError,
    PoolExhaustedError,
    PoolQueueFullError,
    PoolThreadError,
    PoolTimeoutError,
)
from .options import PoolOptions
from .pool import Pool
from .reaper import ConnectionReaper
from .stats import PoolStats

__all__ = [
    "ConnectFailedError",
    "Connection",
    "ConnectionHeldError",
    "ConnectionNotFoundError",
    "ConnectionReaper",
    "Pool",
    "PoolClosedError",
    "PoolDeadlockError",
    "PoolError",
    "PoolExhaustedError",
    "PoolOptions",
    "PoolQueueFullError",
    "PoolStats",
    "PoolThreadError",
    "PoolTimeoutError",
    "TcpConnection",
]

__version__ = "0.1.0"

logging.getLogger("gpool").addHandler(logging.NullHandler())

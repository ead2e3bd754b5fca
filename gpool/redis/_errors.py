"""The Redis adapter's errors: gpool's, and also redis-py's ``ConnectionError``."""

from __future__ import annotations

from typing import Any

# Absolute imports (Python 3): this is redis-py, not this module.
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as _RedisConnectionError
from redis.exceptions import TimeoutError as _RedisTimeoutError

from ..errors import (
    ConnectFailedError,
    PoolClosedError,
    PoolDeadlockError,
    PoolError,
    PoolExhaustedError,
    PoolQueueFullError,
    PoolTimeoutError,
)


class RedisPoolExhaustedError(PoolExhaustedError, _RedisConnectionError):
    """:class:`gpool.PoolExhaustedError` that is also a ``redis.exceptions.ConnectionError``.

    Raised by commands when no connection could be had within the pool's ``timeout``, so code
    written for redis-py (``except redis.ConnectionError``) and for gpool both catch it.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # OSError's __init__ (via TimeoutError) does not chain: run redis-py's (error_type...) too.
        _RedisConnectionError.__init__(self, *args)


class RedisPoolClosedError(PoolClosedError, _RedisConnectionError):
    """:class:`gpool.PoolClosedError` that is also a ``redis.exceptions.ConnectionError``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        _RedisConnectionError.__init__(self, *args)


class RedisPoolTimeoutError(PoolTimeoutError, RedisPoolExhaustedError):
    """:class:`gpool.PoolTimeoutError` (every connection stayed in use) that is also a ``redis.ConnectionError``."""


class RedisPoolQueueFullError(PoolQueueFullError, RedisPoolExhaustedError):
    """:class:`gpool.PoolQueueFullError` (``max_waiting`` reached) that is also a ``redis.ConnectionError``."""


class RedisPoolDeadlockError(PoolDeadlockError, RedisPoolExhaustedError):
    """:class:`gpool.PoolDeadlockError` that is also a ``redis.ConnectionError``."""


class RedisConnectFailedError(ConnectFailedError, RedisPoolExhaustedError):
    """:class:`gpool.ConnectFailedError` that is also a ``redis.ConnectionError`` (the cause is redis-py's)."""


class RedisAuthenticationFailedError(RedisConnectFailedError, AuthenticationError):
    """A connect that failed authenticating: also redis-py's ``AuthenticationError``."""


class RedisConnectTimeoutError(RedisConnectFailedError, _RedisTimeoutError):
    """A connect that timed out: also redis-py's ``TimeoutError``."""


_CONVERSIONS: tuple[tuple[type[PoolError], type[PoolError]], ...] = (
    (PoolTimeoutError, RedisPoolTimeoutError),
    (PoolQueueFullError, RedisPoolQueueFullError),
    (PoolDeadlockError, RedisPoolDeadlockError),
    (ConnectFailedError, RedisConnectFailedError),
    (PoolExhaustedError, RedisPoolExhaustedError),
    (PoolClosedError, RedisPoolClosedError),
)


def _convert(exc: PoolError) -> PoolError:
    """The redis-py-compatible twin of a core error (same message and cause)."""
    cls: type[PoolError] = type(exc)
    for core, twin in _CONVERSIONS:
        if isinstance(exc, core):
            cls = twin
            break
    if cls is RedisConnectFailedError:
        cause = exc.__cause__
        if isinstance(cause, AuthenticationError):
            cls = RedisAuthenticationFailedError
        elif isinstance(cause, (_RedisTimeoutError, TimeoutError)):
            cls = RedisConnectTimeoutError
    error = cls(*exc.args)
    error.__cause__ = exc.__cause__
    return error

"""The Redis adapter's errors: gpool's, and also redis-py's ``ConnectionError``."""

from __future__ import annotations

from typing import Any

# Absolute imports (Python 3): this is redis-py, not this module.
from redis.exceptions import ConnectionError as _RedisConnectionError

from ..errors import PoolClosedError, PoolError, PoolExhaustedError


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


def _convert(exc: PoolError, cls: type[PoolError]) -> PoolError:
    error = cls(*exc.args)
    error.__cause__ = exc.__cause__
    return error

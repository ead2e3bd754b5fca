"""What every adapter exposes of the core pool it wraps."""

from __future__ import annotations

from typing import Any, Callable

from .pool import Pool
from .stats import PoolStats


class PoolFacade:
    """Mixin for adapters that keep their core :class:`gpool.Pool` in ``self._pool``."""

    _pool: Pool[Any]

    @property
    def pool(self) -> Pool[Any]:
        """The underlying :class:`gpool.Pool`."""
        return self._pool

    @property
    def name(self) -> str:
        """The pool's name, as in errors, logs and metrics (never with a password)."""
        return self._pool.name

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._pool.closed

    @property
    def size(self) -> int:
        """Connections idle, in use or being opened."""
        return self._pool.size

    def stats(self, reset: bool = False) -> PoolStats:
        """A frozen snapshot of the pool's gauges and counters (see :meth:`gpool.Pool.stats`).

        Works after close(); ``reset=True`` restarts the counters after the snapshot.
        """
        return self._pool.stats(reset)

    def close(self) -> None:
        """Close for good (idempotent): idle connections now, those in use when they come back.

        Waiters and later calls get the pool's closed error.
        """
        self._pool.close()


# -- from_url option parsers, shared by the adapters -----------------------------------------------


def url_int(key: str, text: str) -> int:
    """An integer URL option; the error names the option (never the URL, which may hold a password)."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"url: option {key} must be an integer, got {text!r}") from None


def url_float(key: str, text: str) -> float:
    """A number URL option."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"url: option {key} must be a number, got {text!r}") from None


def url_none(convert: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    """``convert``, or None for ``none``/``null``/empty."""
    def parse(key: str, text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else convert(key, text)
    return parse


def url_bool(key: str, text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``."""
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"url: option {key} must be true or false, got {text!r}")


def url_str(key: str, text: str) -> str:
    """A text URL option, as it is."""
    return text


#: URL options every adapter takes for its core pool (the connect-retry count is named per adapter:
#: ``retry`` for MySQL, ``connect_retries`` for Redis, whose ``retry`` is redis-py's command policy)
POOL_URL_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "max_connections": url_int,
    "initial_connections": url_int,
    "timeout": url_none(url_float),
    "idle_timeout": url_none(url_float),
    "max_lifetime": url_none(url_float),
    "check_interval": url_none(url_float),
    "max_waiting": url_none(url_int),
    "max_usage": url_none(url_int),
    "retry_delay": url_float,
    "name": url_str,
    "reap_expired_connections": url_bool,
    "reap_interval": url_float,
    "leak_timeout": url_none(url_float),
    "reclaim_dead_holders": url_bool,
    "timing_stats": url_bool,
}

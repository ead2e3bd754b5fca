"""What every adapter exposes of the core pool it wraps."""

from __future__ import annotations

from typing import Any

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

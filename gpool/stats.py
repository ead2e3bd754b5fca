"""The frozen snapshot returned by :meth:`gpool.Pool.stats`."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

__all__ = ["PoolStats"]


@dataclasses.dataclass(frozen=True)
class PoolStats:
    """A consistent snapshot of one pool, taken without yielding.

    Gauges describe the pool now; counters count since the pool was created (or since the last
    ``stats(reset=True)``). Times are in seconds.
    """

    name: Optional[str]
    #: idle + in use + being created
    size: int
    idle: int
    in_use: int
    #: connects under way (slots reserved for them)
    connecting: int
    waiting: int
    max_connections: int
    #: connections opened successfully
    created: int
    #: connections closed or forgotten by the pool, for any reason
    closed: int
    acquired: int
    released: int
    #: connections discarded by :meth:`Pool.drop` or by a poisoned ``with pool.connection()`` block
    dropped: int
    #: idle connections closed by expiry (reaper or checkout)
    reaped: int
    #: acquisitions that ended with :class:`PoolExhaustedError`
    timeouts: int
    #: failed connect attempts (each retry counts)
    connect_errors: int
    #: checkouts whose health check failed
    check_failures: int
    #: acquisitions that had to wait
    waits: int
    wait_time_total: float
    wait_time_max: float

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a plain dict (for JSON, logs, metrics)."""
        return dataclasses.asdict(self)

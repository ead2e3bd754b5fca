"""The background greenlet that expires idle connections and keeps the minimum filled."""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, Optional

import gevent
from gevent.hub import get_hub

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["ConnectionReaper"]

log = logging.getLogger("gpool")


def _sleep_unref(seconds: float) -> None:
    """Sleep on a timer that does not keep the hub's loop (``gevent.wait()``, the process) alive."""
    hub = get_hub()
    timer = hub.loop.timer(seconds, ref=False)
    try:
        hub.wait(timer)
    finally:
        timer.close()


class ConnectionReaper:
    """Every ``interval`` seconds: close idle connections that expired, then refill to the minimum.

    One per pool, started by the pool when it first opens a connection. It holds the pool weakly (a
    forgotten pool is collected and its reaper ends), never touches connections in use, logs its own
    errors at WARNING and keeps going, and ends at ``pool.close()`` or when the pool replaced it
    (after a fork).
    """

    def __init__(self, pool: Pool[Any], interval: float) -> None:
        self._pool_ref = weakref.ref(pool)
        self.interval = interval
        self._greenlet: Optional[gevent.Greenlet] = None

    def __repr__(self) -> str:
        pool = self._pool_ref()
        return f"<ConnectionReaper pool={pool.name if pool else None!r} every {self.interval}s>"

    @property
    def running(self) -> bool:
        """True while the greenlet is alive."""
        return self._greenlet is not None and not self._greenlet.dead

    def start(self) -> None:
        """Spawn the greenlet (idempotent)."""
        if not self.running:
            self._greenlet = gevent.spawn(self._run)
            self._greenlet.name = "gpool-reaper"

    def stop(self) -> None:
        """End the greenlet without waiting for it (safe to call from the reaper itself)."""
        glet, self._greenlet = self._greenlet, None
        if glet is not None and glet is not gevent.getcurrent():
            glet.kill(block=False)

    def reap(self, now: Optional[float] = None) -> int:
        """Run one pass now, in the calling greenlet; return how many connections it closed.

        ``now`` (a ``time.monotonic()`` value) lets tests step a clock instead of sleeping.
        """
        pool = self._pool_ref()
        if pool is None or pool.closed:
            return 0
        return pool._reap(now)

    def _run(self) -> None:
        while True:
            _sleep_unref(self.interval)
            pool = self._pool_ref()
            if pool is None or pool.closed or pool._reaper is not self:
                return
            try:
                pool._reap(None)
            except Exception:
                log.warning("pool %r: reaper pass failed", pool.name, exc_info=True)
            del pool  # hold the pool only while working on it

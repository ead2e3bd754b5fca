"""Every pool option in one place: its default, its validation, its documentation.

:class:`gpool.Pool`, :class:`gpool.mysql.MySQLPool` and :class:`gpool.redis.RedisPool` all take the
same pool options through :class:`PoolOptions`; adding an option means adding a field here (and a
row in the README's configuration table).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Callable, Optional

__all__ = ["PoolOptions", "check_number"]


def check_number(name: str, value: Any, *, minimum: float = 0, allow_none: bool = False,
                 integer: bool = False, positive: bool = False) -> Any:
    """Validate a numeric argument; the error names the parameter and the value.

    Raises ``TypeError`` for a wrong type and ``ValueError`` for NaN, infinity, a number too large for
    a float or one out of range. Returns the value unchanged.
    """
    if value is None and allow_none:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {kind}{' or None' if allow_none else ''}, got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int beyond float range, e.g. 10**400
        finite = False
    if not finite:
        shown = value if isinstance(value, float) else "an integer too large for a float"
        raise ValueError(f"{name} must be a finite number{' (or None for no limit)' if allow_none else ''}, "
                         f"got {shown!r}")
    if (positive and value <= 0) or value < minimum:
        bound = "> 0" if positive else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def _check_hook(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")


def _default_permanent(exc: BaseException) -> bool:
    """Connect errors that no retry can cure: bad arguments to the factory."""
    return isinstance(exc, (TypeError, ValueError))


@dataclasses.dataclass(frozen=True)
class PoolOptions:
    """The pool's options, validated once (``TypeError``/``ValueError`` naming the parameter).

    The first four may be given by position, as :class:`gpool.Pool` always allowed.
    """

    #: connections opened at creation and kept open by the reaper
    initial_connections: int = 0
    #: the hard cap on idle + in use + being opened
    max_connections: int = 10
    #: whether the reaper closes expired idle connections and refills to ``initial_connections``
    reap_expired_connections: bool = True
    #: seconds between reaper passes
    reap_interval: float = 10.0
    #: the default bound, in seconds, of a whole acquisition (waiting, connecting, checking); None: forever
    timeout: Optional[float] = 30.0
    #: seconds after which a connection is closed (on release, or by the reaper when idle); None: never
    max_lifetime: Optional[float] = 3600.0
    #: seconds an idle connection may sit unused before the reaper (or a checkout) closes it
    idle_timeout: Optional[float] = 600.0
    #: at most this many greenlets wait; the next gets PoolQueueFullError at once. None: no limit
    max_waiting: Optional[int] = None
    #: a connection is closed after this many checkouts. None: no limit
    max_usage: Optional[int] = None
    #: a checkout runs the health check when the connection sat idle this long (0: always; None: never)
    check_interval: Optional[float] = 1.0
    #: connect attempts after the first failed one; None: keep trying with backoff until ``timeout``
    retry: Optional[int] = None
    #: the first pause between connect attempts (doubled each time, jittered, at most ``MAX_RETRY_DELAY``)
    retry_delay: float = 0.1
    #: the name in errors, logs and metrics; default ``pool-N``
    name: Optional[str] = None
    #: log a connection held longer than this (with where it was acquired). None: off
    leak_timeout: Optional[float] = None
    #: close connections whose holder greenlet died without releasing them (else only reported)
    reclaim_dead_holders: bool = False
    #: record a histogram of how long connections are held
    timing_stats: bool = False
    #: ``f(conn)`` after a connection is opened; raising drops it
    on_connect: Optional[Callable[[Any], Any]] = None
    #: ``f(conn)`` before a connection is handed out; raising drops it
    on_checkout: Optional[Callable[[Any], Any]] = None
    #: ``f(conn)`` when a connection comes back; raising drops it
    on_checkin: Optional[Callable[[Any], Any]] = None
    #: ``f(conn, reason)`` before the pool closes a connection; errors are logged
    on_drop: Optional[Callable[[Any, str], Any]] = None
    #: ``f(exc)``: True when a connect error cannot succeed on retry (fail the acquisition at once)
    is_permanent_error: Callable[[BaseException], bool] = _default_permanent

    def __post_init__(self) -> None:
        check_number("max_connections", self.max_connections, integer=True, positive=True)
        check_number("initial_connections", self.initial_connections, integer=True)
        if self.initial_connections > self.max_connections:
            raise ValueError(f"initial_connections must be <= max_connections ({self.max_connections}), "
                             f"got {self.initial_connections!r}")
        for flag in ("reap_expired_connections", "reclaim_dead_holders", "timing_stats"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        check_number("reap_interval", self.reap_interval, positive=True)
        check_number("timeout", self.timeout, allow_none=True)
        check_number("max_lifetime", self.max_lifetime, allow_none=True, positive=True)
        check_number("idle_timeout", self.idle_timeout, allow_none=True, positive=True)
        check_number("max_waiting", self.max_waiting, allow_none=True, integer=True)
        check_number("max_usage", self.max_usage, allow_none=True, integer=True, positive=True)
        check_number("check_interval", self.check_interval, allow_none=True)
        check_number("retry", self.retry, allow_none=True, integer=True)
        check_number("retry_delay", self.retry_delay)
        check_number("leak_timeout", self.leak_timeout, allow_none=True, positive=True)
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a string or None, got {self.name!r}")
        for hook in ("on_connect", "on_checkout", "on_checkin", "on_drop"):
            _check_hook(hook, getattr(self, hook))
        if not callable(self.is_permanent_error):
            raise TypeError(f"is_permanent_error must be callable, got {self.is_permanent_error!r}")

    @classmethod
    def split(cls, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(pool options, everything else)`` from an adapter's keyword arguments."""
        mine = {k: v for k, v in kwargs.items() if k in _NAMES}
        return mine, {k: v for k, v in kwargs.items() if k not in _NAMES}

    def replace(self, **changes: Any) -> PoolOptions:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


_NAMES = frozenset(field.name for field in dataclasses.fields(PoolOptions))

#: the longest pause between two connect attempts
MAX_RETRY_DELAY = 2.0

"""Exceptions raised by gpool.

Every error derives from :class:`PoolError`; each leaf also derives from the builtin a caller would
naturally catch, so ``except TimeoutError`` and ``except ValueError`` keep working. When no connection
can be had, the class says whose fault it is; :class:`PoolExhaustedError` catches them all.
"""

from __future__ import annotations

__all__ = [
    "ConnectFailedError",
    "ConnectionHeldError",
    "ConnectionNotFoundError",
    "PoolClosedError",
    "PoolDeadlockError",
    "PoolError",
    "PoolExhaustedError",
    "PoolQueueFullError",
    "PoolThreadError",
    "PoolTimeoutError",
]


class PoolError(Exception):
    """Root of every error raised by gpool itself (driver errors pass through unchanged)."""


class PoolExhaustedError(PoolError, TimeoutError):
    """No connection could be had; the subclass says why. ``except PoolExhaustedError`` catches all four.

    When an attempt to connect failed during the acquisition, that error is ``__cause__``.
    """


class PoolTimeoutError(PoolExhaustedError):
    """Every connection stayed in use for the whole ``timeout`` (the pool is too small, or held too long)."""


class PoolQueueFullError(PoolExhaustedError):
    """``max_waiting`` greenlets already wait: the caller was turned away without waiting (shed load)."""


class PoolDeadlockError(PoolExhaustedError):
    """The calling greenlet already holds every connection: waiting for one of its own would never end."""


class ConnectFailedError(PoolExhaustedError):
    """Opening a connection failed: at once when the error cannot succeed on retry (bad password, bad
    options), else after retrying with backoff until the ``timeout`` or the ``retry`` limit.

    The message names the cause's class and its text (with no password, no URL); the driver's error
    is ``__cause__``.
    """


class PoolClosedError(PoolError):
    """The pool was closed before or while the caller was waiting."""


class ConnectionNotFoundError(PoolError, ValueError):
    """A connection was released or dropped that the pool does not track (foreign or already returned)."""


class ConnectionHeldError(PoolError, RuntimeError):
    """A connection was released or dropped by a greenlet other than its live holder.

    Typically a second ``release()`` after someone else acquired the connection: accepting it would
    let two greenlets share one server session. Nothing changed. To hand a connection on, the holder
    calls :meth:`gpool.Pool.transfer`.
    """


class PoolThreadError(PoolError, RuntimeError):
    """The pool was used from an OS thread other than its own (each thread has its own gevent hub)."""

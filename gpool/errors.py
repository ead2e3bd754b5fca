"""Exceptions raised by gpool.

Every error derives from :class:`PoolError`; each leaf also derives from the builtin a caller would
naturally catch, so ``except TimeoutError`` and ``except ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["ConnectionNotFoundError", "PoolClosedError", "PoolError", "PoolExhaustedError"]


class PoolError(Exception):
    """Root of every error raised by gpool itself (driver errors pass through unchanged)."""


class PoolExhaustedError(PoolError, TimeoutError):
    """No connection could be had within the timeout, the wait queue was full, or waiting would deadlock.

    When the last attempt to connect failed, that error is ``__cause__``.
    """


class PoolClosedError(PoolError):
    """The pool was closed before or while the caller was waiting."""


class ConnectionNotFoundError(PoolError, ValueError):
    """A connection was released or dropped that the pool does not track (foreign or already returned)."""

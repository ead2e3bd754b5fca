"""Opening connections: one acquisition's budget and backoff, the connect itself, outage logging.

Private to gpool: not the place to import from. A connect always runs in a slot the state machine
reserved first, so the cap holds while it yields; :func:`connect` gives the slot back in ``finally``.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import re
from time import monotonic
from typing import TYPE_CHECKING, Any, Optional

import gevent
from greenlet import greenlet

from . import _health
from ._entry import _Entry, close_quietly
from ._state import EWMA_WEIGHT
from .errors import PoolClosedError
from .options import MAX_RETRY_DELAY

if TYPE_CHECKING:
    from .pool import Pool


log = logging.getLogger("gpool")

#: max_lifetime is shortened by up to this fraction per connection, so a batch opened together
#: does not expire together
LIFETIME_JITTER = 0.04

#: connect retries when neither ``retry`` nor a timeout bounds them (else an acquisition could spin forever)
RETRIES_WITHOUT_DEADLINE = 3

# scheme://user:password@ in an error's text: the credentials are cut out before it is shown anywhere
_URL_CREDENTIALS = re.compile(r"([A-Za-z][\w+.-]*://)[^/@\s]*@")


def describe_error(exc: BaseException) -> str:
    """``ClassName: text`` for messages and logs, with URL credentials removed and the text capped."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not hide the real failure
        text = "(unprintable)"
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Attempt:
    """One acquisition's budget: its deadline, the connect attempts so far and the backoff between them.

    By default connects are retried until the deadline (a set ``retry`` caps the attempts); an error
    the pool's ``is_permanent_error`` recognises, or ``timeout=0``, ends them at the first failure.
    """

    __slots__ = ("attempts", "cause", "connect_failed", "deadline", "delay", "limit", "once", "pool", "start")

    def __init__(self, pool: Pool[Any], start: float, deadline: Optional[float], once: bool) -> None:
        # Made for every acquisition that does not take the fast path: the retry policy is read only
        # when a connect fails.
        self.pool = pool
        self.start = start
        self.deadline = deadline
        #: timeout=0: one connect attempt, nothing waited for
        self.once = once
        self.attempts = 0
        #: the last failure (a connect error, or a health check that timed out), for the error's cause
        self.cause: Optional[BaseException] = None
        #: whether that last failure was a connect
        self.connect_failed = False
        self.limit: Optional[int] = None
        self.delay = -1.0  # not read yet

    def remaining(self) -> Optional[float]:
        """Seconds left (may be <= 0); None without a deadline."""
        return None if self.deadline is None else self.deadline - monotonic()

    def failed(self, exc: BaseException, permanent: bool) -> Optional[float]:
        """Record a failed connect: the pause before the next attempt, or None to give up."""
        self.cause = exc
        self.connect_failed = True
        self.attempts += 1
        if self.delay < 0:
            options = self.pool.options
            retry = options.retry
            if retry is None and self.deadline is None:
                retry = RETRIES_WITHOUT_DEADLINE
            self.limit = 0 if self.once else retry
            self.delay = options.retry_delay
        if permanent or (self.limit is not None and self.attempts > self.limit):
            return None
        pause = self.delay * random.uniform(0.5, 1.0)  # jitter: greenlets retrying together drift apart
        self.delay = min(self.delay * 2, MAX_RETRY_DELAY)
        if self.deadline is not None and monotonic() + pause >= self.deadline:
            return None
        return pause

    def check_failed(self, exc: BaseException) -> None:
        """Record a failed check of an existing connection (say, a health check that timed out)."""
        self.cause = exc
        self.connect_failed = False

    def describe(self) -> str:
        """What went wrong last, for the error message."""
        if self.cause is None:
            return ""
        if not self.connect_failed:
            return f"last error: {describe_error(self.cause)}"
        if not self.attempts:
            return f"the pool's last connect error: {describe_error(self.cause)}"
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return f"last connect error: {describe_error(self.cause)} ({tries})"


class Outage:
    """Connect failures are logged at WARNING once per outage (not per attempt), recovery at INFO."""

    __slots__ = ("failures", "last", "name", "since")

    def __init__(self, name: str) -> None:
        self.name = name
        self.since: Optional[float] = None
        self.failures = 0
        #: the latest connect error of the outage under way (None when there is none)
        self.last: Optional[BaseException] = None

    def failed(self, exc: BaseException, permanent: bool) -> None:
        self.failures += 1
        self.last = exc
        if self.since is None:
            self.since = monotonic()
            log.warning("pool %r: cannot connect: %s (%s)", self.name, describe_error(exc),
                        "will not succeed on retry" if permanent else "retrying with backoff; logged once per outage")
        else:
            log.debug("pool %r: connect attempt failed again: %s", self.name, describe_error(exc))

    def recovered(self) -> None:
        if self.since is not None:
            log.info("pool %r: connected again after %.1fs and %d failed attempts", self.name,
                     monotonic() - self.since, self.failures)
            self.since = None
            self.failures = 0
            self.last = None


def connect(pool: Pool[Any], attempt: Attempt, me: Optional[greenlet]) -> Optional[_Entry]:
    """Open a connection in a slot already reserved, retrying with backoff within ``attempt``.

    Returns the entry tracked as ``me``'s (``me=None``: made available to waiters or idle), or None
    after the slot was given back (the attempts ran out: ``attempt.cause`` says why; or a fork).
    """
    gen = pool._gen
    entry: Optional[_Entry] = None
    try:
        while True:
            remaining = attempt.remaining()
            if remaining is not None and remaining <= 0 and not (attempt.once and attempt.attempts == 0):
                return None
            began = monotonic()
            try:
                conn = open_connection(pool, None if attempt.once else remaining)
                candidate = _new_entry(pool, conn, began, gen)
                _health.after_connect(pool, candidate)
            except Exception as exc:
                pause = _failed(pool, attempt, exc)
                if pause is None or pool.closed:
                    return None
                gevent.sleep(pause)
                continue
            verdict = pool._connected(candidate, candidate.created_at, me)
            entry = candidate
            if verdict == "forked":
                return None
            pool._outage.recovered()
            if verdict == "pool_closed":
                pool._close_conn(entry, "pool_closed")
                raise PoolClosedError(f"pool {pool.name!r} was closed while connecting")
            if pool._reaper is None and (pool.options.reap_expired_connections or pool.options.leak_timeout
                                         or pool.options.reclaim_dead_holders):
                pool._start_reaper()
            return entry
    finally:
        if entry is None:
            pool._connect_failed(gen)


def _failed(pool: Pool[Any], attempt: Attempt, exc: Exception) -> Optional[float]:
    pool._connect_errors += 1
    try:
        permanent = bool(pool.options.is_permanent_error(exc))
    except Exception:
        log.warning("pool %r: is_permanent_error raised; the error counts as transient", pool.name, exc_info=True)
        permanent = False
    pool._outage.failed(exc, permanent)
    return attempt.failed(exc, permanent)


def open_connection(pool: Pool[Any], timeout: Optional[float]) -> Any:
    """``factory(**options)``, ``open()``, ``on_connect``, all bounded by ``timeout``.

    A half-made connection is closed whatever interrupts it.
    """
    conn = None
    timer = gevent.Timeout(timeout)  # None: never fires
    timer.start()
    try:
        conn = pool._factory(**pool._factory_kwargs)
        opener = getattr(conn, "open", None)
        if callable(opener):
            opener()
        on_connect = pool.options.on_connect
        if on_connect is not None:
            try:
                on_connect(conn)
            except Exception:
                log.warning("pool %r: on_connect hook failed; connection closed", pool.name, exc_info=True)
                raise
        return conn
    except BaseException as exc:
        closer = getattr(conn, "close", None)
        if callable(closer):
            close_quietly(closer, pool.name, exc)
        if exc is timer:  # our own bound, not an outer Timeout: a connect error like any other
            raise TimeoutError(f"connect timed out after {timeout:.3f}s") from None
        raise
    finally:
        timer.close()


def _new_entry(pool: Pool[Any], conn: Any, began: float, gen: int) -> _Entry:
    now = monotonic()
    took, avg = now - began, pool._connect_avg
    pool._connect_avg = took if avg == math.inf else avg + (took - avg) * EWMA_WEIGHT
    lifetime = pool.options.max_lifetime
    expires_at = math.inf if lifetime is None else now + lifetime * (1 - LIFETIME_JITTER * random.random())
    entry = _Entry(conn, now, expires_at, gen)
    # is_expired() must be asked at every checkout: such a connection is never "fresh"
    entry.fresh_for = -math.inf if entry.is_expired is not None else pool._fresh_for
    entry.fast_until = min(now + entry.fresh_for, expires_at)
    if pool.options.on_checkin is not None or pool.options.leak_timeout is not None:
        entry.reset = functools.partial(_health.checkin, pool, entry, entry.reset)
    # Nothing to run on its return: the state machine's inlined release checks it in directly.
    entry.plain = entry.reset is None and entry.is_expired is None and not entry.native
    return entry


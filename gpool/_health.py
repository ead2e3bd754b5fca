"""The checks of the connection life cycle: at checkout, on return, for expiry, of holders.

Private to gpool: not the place to import from. These functions decide whether one connection is fit
to hand out or keep, and run its checks (which may yield); every change of pool state they cause goes
through a transition of :mod:`gpool._state` (``_drop_held`` untracks, then the one close path).

The checkout contract, for every connection handed out (idle, handed over, or just connected):
expired ones are closed; one idle at least ``check_interval`` gets its ``health_check(timeout)`` with
the caller's remaining deadline (bounded by a ``gevent.Timeout`` too); then ``is_clean()``, which
never yields, must say that nothing is unread and the peer did not close. A connection failing any
of these is dropped and the pool takes or opens another within the same deadline. A connection with
``settle(timeout)`` that is not clean first gets that call (same deadline): it reads what its
``reset()`` sent at return without waiting (a ROLLBACK's reply), so the checks run on a settled one.
"""

from __future__ import annotations

import logging
import traceback
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Optional

import gevent

from ._entry import _Entry

if TYPE_CHECKING:
    from ._connect import Attempt
    from .pool import Pool

log = logging.getLogger("gpool")


def checkout(pool: Pool[Any], entry: _Entry, fresh: bool, attempt: Attempt, unclean: bool = False) -> bool:
    """The checkout contract for ``entry``, just taken and tracked as ours. False: it was dropped.

    ``unclean``: the caller's ``is_clean()`` of this connection, just now and with no yield since, said False.
    """
    now = entry.checked_out_at
    # A connection that may owe the reply of what its reset() sent says so by not being clean: then
    # settle() reads it first (a failure drops it), and the checks below run on the settled connection.
    if entry.settle is not None and entry.is_clean is not None and (unclean or not _is_clean(pool, entry)):
        try:
            settled = entry.settle(0.0)  # the reply is usually there already: no wait, no Timeout
        except Exception as exc:
            log.debug("pool %r: settle raised", pool.name, exc_info=True)
            attempt.check_failed(exc)
            settled = False
        except BaseException:
            pool._drop_held(entry, "interrupted")
            raise
        if settled is False:
            pool._drop_held(entry, "check_failed")
            return False
        if settled is None and not _health_check(pool, entry, attempt, entry.settle, "settle"):
            return False
    if not fresh and now >= entry.fast_until:
        reason = expiry_reason(pool, entry, now)
        if reason is not None:
            pool._drop_held(entry, reason)
            return False
        interval = pool.options.check_interval
        due = entry.health_check is not None and interval is not None and now - entry.last_used_at >= interval
        if due and not _health_check(pool, entry, attempt):
            return False
    if entry.is_clean is not None and not _is_clean(pool, entry):
        pool._drop_held(entry, "check_failed")
        return False
    return pool._plain_checkout or _checkout_hooks(pool, entry)


def after_connect(pool: Pool[Any], entry: _Entry) -> None:
    """A connection just opened must be clean too: a server that accepts the login and then drops the
    session (or talks out of turn) is a connect failure, retried with backoff, never a storm."""
    if entry.is_clean is None or _is_clean(pool, entry):
        return
    # The connection's own account when it has one (gpool.redis: the server's "max number of clients
    # reached", which may arrive just after the connection's own check in open() passed).
    refusal = getattr(entry.conn, "refusal", None)
    error: Optional[BaseException] = None
    if callable(refusal):
        try:
            error = refusal()
        except Exception:
            error = None
    pool._created += 1
    pool._close_conn(entry, "check_failed")
    if isinstance(error, Exception):
        raise error
    raise ConnectionError("the server closed the connection (or sent bytes nobody asked for) right after "
                          "it was opened")


def _is_clean(pool: Pool[Any], entry: _Entry) -> bool:
    try:
        return bool(entry.is_clean())  # type: ignore[misc]
    except Exception:
        log.debug("pool %r: is_clean() raised; connection dropped", pool.name, exc_info=True)
        return False


def _health_check(pool: Pool[Any], entry: _Entry, attempt: Attempt,
                  check: Optional[Callable[[Optional[float]], Any]] = None, what: str = "health check") -> bool:
    """Run the yielding health check (or ``check``) within the caller's remaining deadline. False: dropped."""
    remaining = None if attempt.once else attempt.remaining()
    if remaining is not None and remaining < 0:
        remaining = 0.0
    timer = gevent.Timeout(remaining)  # None: never fires
    timer.start()
    try:
        healthy = bool((check or entry.health_check)(remaining))  # type: ignore[misc]
    except gevent.Timeout as exc:
        if exc is not timer:
            pool._drop_held(entry, "interrupted")  # the connection may hold half a check
            raise
        attempt.check_failed(TimeoutError(f"{what} timed out after {remaining:.3f}s"))
        healthy = False
    except Exception as exc:
        log.debug("pool %r: %s raised", pool.name, what, exc_info=True)
        attempt.check_failed(exc)
        healthy = False
    except BaseException:
        pool._drop_held(entry, "interrupted")
        raise
    finally:
        timer.close()
    if not healthy:
        pool._drop_held(entry, "check_failed")
    return healthy


def _checkout_hooks(pool: Pool[Any], entry: _Entry) -> bool:
    """Leak tracking and ``on_checkout`` for a connection about to be handed out. False: dropped."""
    if pool.options.leak_timeout is not None:
        entry.stack = traceback.extract_stack(limit=16)[:-4]  # minus gpool's own frames
        entry.leak_reported = False
    on_checkout = pool.options.on_checkout
    if on_checkout is None:
        return True
    try:
        on_checkout(entry.conn)
    except Exception:
        log.warning("pool %r: on_checkout hook failed; connection dropped", pool.name, exc_info=True)
        pool._drop_held(entry, "broken")
        return False
    except BaseException:
        pool._drop_held(entry, "broken")
        raise
    return True


# -- return -------------------------------------------------------------------------------------------


def reset(pool: Pool[Any], entry: _Entry) -> bool:
    """Run the connection's ``reset()`` on return, then ``is_clean()``; False: it was dropped.

    ``reset()`` raising drops it (logged; a ``BaseException`` is re-raised after the drop); returning
    ``False`` asks for a quiet drop: the connection knows it is unusable (closed by its user, a result
    left unread) and nothing went wrong worth a warning.
    """
    try:
        keep = entry.reset()  # type: ignore[misc]
    except BaseException as exc:
        return reset_failed(pool, entry, exc)
    if keep is False:
        pool._drop_held(entry, "broken")
        return False
    # With settle(), the reset may have left a reply to read at checkout: checked clean there, after it.
    if entry.settle is None and entry.is_clean is not None and not _is_clean(pool, entry):
        pool._drop_held(entry, "check_failed")  # the reset's own reply, or one nobody asked for, is unread
        return False
    return True


def reset_failed(pool: Pool[Any], entry: _Entry, exc: BaseException) -> bool:
    """``reset()`` raised ``exc``: drop the connection (logged); re-raise a ``BaseException``. False."""
    if isinstance(exc, Exception):
        log.warning("pool %r: reset on release failed; connection dropped", pool.name, exc_info=exc)
        pool._drop_held(entry, "broken")
        return False
    pool._drop_held(entry, "interrupted")
    raise exc


def checkin(pool: Pool[Any], entry: _Entry, reset: Optional[Callable[[], Any]]) -> Any:
    """Release-time work when hooks or leak tracking are on; runs as the entry's ``reset``."""
    if entry.leak_reported:
        log.info("pool %r: connection held past leak_timeout came back after %.1fs", pool.name,
                 monotonic() - entry.checked_out_at)
    on_checkin = pool.options.on_checkin
    if on_checkin is not None:
        on_checkin(entry.conn)
    return None if reset is None else reset()


def return_reason(entry: _Entry, now: float, closed: bool) -> Optional[str]:
    """Why a connection coming back must be closed rather than reused, or None."""
    if now >= entry.retire_at:  # past max_lifetime, at max_usage, or the pool closed
        if closed:
            return "pool_closed"
        return "expired_lifetime" if now >= entry.expires_at else "max_usage"
    if entry.is_expired is not None and entry.is_expired():
        return "expired_lifetime"
    return None


def poison_reason(entry: _Entry, exc: BaseException, name: str) -> Optional[str]:
    """Why the error that ended a ``with`` block makes the connection unusable, or None."""
    if not isinstance(exc, Exception):
        return "interrupted"
    if entry.is_fatal is not None:
        try:
            return "broken" if entry.is_fatal(exc) else None
        except Exception:
            log.warning("pool %r: is_fatal() raised; connection dropped", name, exc_info=True)
            return "broken"
    return "broken" if isinstance(exc, (OSError, EOFError)) else None


# -- expiry and holders --------------------------------------------------------------------------------


def expiry_reason(pool: Pool[Any], entry: _Entry, now: float) -> Optional[str]:
    """Why an idle (or just taken) connection has expired, or None. Never yields."""
    if now >= entry.expires_at:
        return "expired_lifetime"
    idle_timeout = pool.options.idle_timeout
    if idle_timeout is not None and now - entry.last_used_at >= idle_timeout:
        return "expired_idle"
    if entry.is_expired is not None and entry.is_expired():
        return "expired_lifetime"
    return None


def check_holders(pool: Pool[Any], now: float) -> None:
    """Report holders that died without releasing (once each; reclaimed when asked) and leaks.

    The reaper's periodic scan is the whole mechanism: the fast path records only the holder it
    already needs, so reporting dead holders costs nothing per checkout.
    """
    leak_timeout = pool.options.leak_timeout
    for entry in list(pool._in_use.values()):
        holder = entry.holder
        if holder is not None and holder.dead:
            if pool.options.reclaim_dead_holders:
                log.warning("pool %r: holder %r died without releasing its connection; reclaimed",
                            pool.name, holder)
                pool._dead_holders += 1
                pool._drop_held(entry, "reclaimed")
            elif not entry.dead_reported:
                entry.dead_reported = True
                pool._dead_holders += 1
                log.warning("pool %r: holder %r died without releasing its connection (held %.1fs), %s",
                            pool.name, holder, now - entry.checked_out_at, _where(entry, holder))
            continue
        if leak_timeout is not None and not entry.leak_reported and now - entry.checked_out_at >= leak_timeout:
            entry.leak_reported = True
            pool._leaks += 1
            log.warning("pool %r: connection held for %.1fs (leak_timeout=%ss) by %r, %s", pool.name,
                        now - entry.checked_out_at, leak_timeout, holder, _where(entry, holder))


def _where(entry: _Entry, holder: Any) -> str:
    if entry.stack:
        return "acquired at:\n" + "".join(traceback.format_list(entry.stack)).rstrip()
    spawned = getattr(holder, "spawning_stack", None)
    if spawned is not None:
        return ("the holder was spawned at (set leak_timeout to record where it acquired):\n"
                + "".join(traceback.format_stack(spawned, limit=8)).rstrip())
    return "acquired at: (not recorded; set leak_timeout to record it)"

"""The measurement loops. Each returns a dict of plain numbers (seconds, counts) for the JSON report.

Import only after ``monkey.patch_all()``.
"""

from __future__ import annotations

import math
from time import perf_counter as clock
from typing import Any, Callable, Optional

import gevent
from peers import Adapter


def percentile(sorted_values: list[float], q: float) -> Optional[float]:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def _run_in_greenlet(fn: Callable[[], Any]) -> Any:
    # Measure from a spawned greenlet, as an application would run, not from the main greenlet.
    g = gevent.spawn(fn)
    g.join()
    if not g.successful():
        raise g.exception  # type: ignore[misc]
    return g.value


# -- case 1 ----------------------------------------------------------------------------------------


def uncontended(adapter: Adapter, seconds: float) -> dict[str, Any]:
    """One greenlet, acquire+release back to back: the best batch's ns per cycle.

    The best (not the mean) of several batches within the process: on a shared machine noise only
    ever adds time. Rounds in separate processes are then reduced with a median by the runner.
    """

    def measure() -> dict[str, Any]:
        acquire, release = adapter.acquire, adapter.release
        # Calibrate a batch to ~20 ms so the loop overhead of the timer is amortised.
        n = 100
        while True:
            t = clock()
            for _ in range(n):
                release(acquire())
            dt = clock() - t
            if dt >= 0.02:
                break
            n *= 2
        batches = []
        end = clock() + seconds
        while clock() < end or len(batches) < 3:
            t = clock()
            for _ in range(n):
                release(acquire())
            batches.append((clock() - t) / n)
        return {"ns_per_cycle": min(batches) * 1e9, "batches": len(batches), "cycles_per_batch": n}

    return _run_in_greenlet(measure)


# -- case 2 ----------------------------------------------------------------------------------------


def contended(adapter: Adapter, greenlets: int, warmup: float, window: float) -> dict[str, Any]:
    """G greenlets cycle over the pool, each holding across one ``gevent.sleep(0)``.

    Counted inside the window only: completed acquisitions (throughput), their waits, the hold
    time, errors. A greenlet still waiting when the window closes contributes its wait so far (a
    lower bound): a pool that starves a greenlet must not look better for it.
    """
    acquire, release = adapter.acquire, adapter.release
    state = {"measuring": False, "stop": False}
    waits: list[float] = []
    record_wait = waits.append
    pending: list[Optional[float]] = [None] * greenlets
    done_per: list[int] = [0] * greenlets
    errors: dict[str, int] = {}
    hold = [0.0]
    sleep0 = gevent.sleep

    def worker(i: int) -> None:
        while not state["stop"]:
            s = clock()
            pending[i] = s
            try:
                r = acquire()
            except Exception as exc:
                pending[i] = None
                if state["measuring"]:
                    key = type(exc).__name__
                    errors[key] = errors.get(key, 0) + 1
                sleep0()  # a pool that fails without yielding must not spin the loop forever
                continue
            e = clock()
            pending[i] = None
            measuring = state["measuring"]
            if measuring:
                record_wait(e - s)
                done_per[i] += 1
            sleep0()
            if measuring:
                hold[0] += clock() - e
            release(r)

    glets = [gevent.spawn(worker, i) for i in range(greenlets)]
    gevent.sleep(warmup)
    state["measuring"] = True
    t0 = clock()
    gevent.sleep(window)
    state["measuring"] = False
    t1 = clock()
    censored = [t1 - s for s in pending if s is not None]
    state["stop"] = True
    finished = gevent.joinall(glets, timeout=ACQUIRE_DRAIN)
    stuck = len(glets) - len(finished)
    if stuck:
        gevent.killall(glets, block=True, timeout=5)
    elapsed = t1 - t0
    cycles = len(waits)
    all_waits = sorted(waits + censored)
    mean_hold = hold[0] / cycles if cycles else None
    fair = greenlets / adapter.size * mean_hold if mean_hold else None
    p99 = percentile(all_waits, 99)
    return {
        "greenlets": greenlets,
        "window_s": elapsed,
        "cycles": cycles,
        "cycles_per_s": cycles / elapsed,
        "wait_p50_s": percentile(all_waits, 50),
        "wait_p99_s": p99,
        "wait_max_s": all_waits[-1] if all_waits else None,
        "still_waiting": len(censored),
        "starved": sum(1 for n in done_per if n == 0),
        "hold_mean_s": mean_hold,
        "fair_share_s": fair,
        "p99_over_fair_share": (p99 / fair) if (p99 is not None and fair) else None,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "stuck_at_end": stuck,
        "created": adapter.created,
    }


#: how long the greenlets get to finish their last cycle once the window closed
ACQUIRE_DRAIN = 15.0


# -- case 5 ----------------------------------------------------------------------------------------


def spike(adapter: Adapter, greenlets: int, work: float, requests: int = 1) -> dict[str, Any]:
    """``greenlets`` arrive at once; each does ``requests`` checkouts holding for ``work`` seconds."""
    waits: list[float] = []
    errors: dict[str, int] = {}
    acquire, release = adapter.acquire, adapter.release
    created_before = adapter.created

    def one() -> None:
        for _ in range(requests):
            s = clock()
            try:
                r = acquire()
            except Exception as exc:
                key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1
                continue
            waits.append(clock() - s)
            gevent.sleep(work)
            release(r)

    t0 = clock()
    glets = [gevent.spawn(one) for _ in range(greenlets)]
    finished = gevent.joinall(glets, timeout=60)
    stuck = len(glets) - len(finished)
    if stuck:
        gevent.killall(glets, block=True, timeout=5)
    total = clock() - t0
    waits.sort()
    return {
        "greenlets": greenlets,
        "requests": len(waits),
        "created": adapter.created - created_before,
        "wait_p50_s": percentile(waits, 50),
        "wait_p99_s": percentile(waits, 99),
        "wait_max_s": waits[-1] if waits else None,
        "total_s": total,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "stuck_at_end": stuck,
    }


# -- cases 3 and 4 ---------------------------------------------------------------------------------


def load(request: Callable[[], Any], greenlets: int, warmup: float, window: float) -> dict[str, Any]:
    """G greenlets call ``request()`` back to back; latency of each, requests/s, errors.

    As in :func:`contended`, requests still running when the window closes count with their
    latency so far.
    """
    state = {"measuring": False, "stop": False}
    lat: list[float] = []
    record = lat.append
    pending: list[Optional[float]] = [None] * greenlets
    errors: dict[str, int] = {}
    sleep0 = gevent.sleep

    def worker(i: int) -> None:
        while not state["stop"]:
            s = clock()
            pending[i] = s
            try:
                request()
            except Exception as exc:
                pending[i] = None
                if state["measuring"]:
                    key = type(exc).__name__
                    errors[key] = errors.get(key, 0) + 1
                sleep0()
                continue
            pending[i] = None
            if state["measuring"]:
                record(clock() - s)

    glets = [gevent.spawn(worker, i) for i in range(greenlets)]
    gevent.sleep(warmup)
    state["measuring"] = True
    t0 = clock()
    gevent.sleep(window)
    state["measuring"] = False
    t1 = clock()
    censored = [t1 - s for s in pending if s is not None]
    state["stop"] = True
    finished = gevent.joinall(glets, timeout=ACQUIRE_DRAIN)
    stuck = len(glets) - len(finished)
    if stuck:
        gevent.killall(glets, block=True, timeout=5)
    elapsed = t1 - t0
    done = len(lat)
    all_lat = sorted(lat + censored)
    return {
        "greenlets": greenlets,
        "window_s": elapsed,
        "requests": done,
        "requests_per_s": done / elapsed,
        "latency_p50_s": percentile(all_lat, 50),
        "latency_p99_s": percentile(all_lat, 99),
        "latency_max_s": all_lat[-1] if all_lat else None,
        "still_running": len(censored),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "stuck_at_end": stuck,
    }

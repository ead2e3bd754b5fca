"""Stats that explain (close reasons, histograms, reset), leak detection, dead holders, hooks, Prometheus."""

from __future__ import annotations

import json
import logging
import math
import random
from bisect import bisect_left

import gevent
import pytest

from gpool import Pool, PoolExhaustedError
from gpool._invariants import check_invariants
from gpool.stats import BUCKETS, CLOSE_REASONS, FOLD_AT, PERCENTILE_ERROR, Histogram
from tests.fakes import FakeFactory
from tests.support import wait_until


def test_every_close_reason_is_counted(make_pool, factory, clock):
    pool = make_pool(max_connections=5, idle_timeout=50, max_lifetime=1000, check_interval=10,
                     reap_expired_connections=False)
    with pytest.raises(ConnectionResetError), pool.connection():
        raise ConnectionResetError  # broken
    g = gevent.spawn(lambda: pool.connection().__enter__() and gevent.sleep(10))
    gevent.sleep(0)
    with pool.connection():
        pass
    g.kill()  # the greenlet held it without `with` cleanup: still in use, nothing closed yet
    pool.drop(next(c for c, _, _ in pool.checked_out()))  # dropped
    with pytest.raises(gevent.Timeout), pool.connection():
        raise gevent.Timeout()  # interrupted
    conn = pool.acquire()
    pool.release(conn)
    clock.advance(60)
    pool.release(pool.acquire())  # the idle one expired (idle): a new one
    conn = pool.acquire()
    pool.release(conn)
    conn.healthy = False
    clock.advance(20)
    pool.release(pool.acquire())  # check_failed, then a new one
    clock.advance(1000)
    pool.release(pool.acquire())  # the idle one is past its lifetime
    pool.close()
    s = pool.stats()
    assert s.closed_broken == 1 and s.closed_dropped == 1 and s.closed_interrupted == 1
    assert s.closed_expired_idle == 1 and s.closed_check_failed == 1 and s.closed_expired_lifetime == 1
    assert s.closed_pool_closed == 1
    assert s.closed == sum(getattr(s, f"closed_{r}") for r in CLOSE_REASONS)
    assert s.closed == len(factory.closed)


def test_max_usage_close_reason(make_pool):
    pool = make_pool(max_usage=2)
    for _ in range(2):
        pool.release(pool.acquire())
    assert pool.stats().closed_max_usage == 1 and pool.stats().reaped == 1


def test_histogram_percentiles_and_bounds():
    h = Histogram()
    assert h.percentile(0.99) == 0.0
    for _ in range(98):
        h.record(0.0002)
    h.record(0.3)
    h.record(2.0)
    assert h.percentile(0.5) == pytest.approx(0.0002, rel=PERCENTILE_ERROR)
    assert h.percentile(0.99) == pytest.approx(0.3, rel=PERCENTILE_ERROR)
    assert h.percentile(1.0) == 2.0, "capped at the max seen"
    assert h.percentile(0.5, zeros=1000) == 0.0
    assert sum(h.counts) == 100 and h.max == 2.0 and abs(h.total - (98 * 0.0002 + 2.3)) < 1e-9
    assert BUCKETS[-1] == float("inf") and list(BUCKETS) == sorted(BUCKETS)


@pytest.mark.parametrize("seed", range(5))
def test_histogram_samples_folded_in_bulk_count_as_recorded_ones(seed):
    # The pool appends its waits to ``pending`` and fold() counts them in bulk (issue 18): the same
    # bucket counts, fine counts, total and max as record(), including values on a bucket bound.
    rng = random.Random(seed)
    data = [math.exp(rng.uniform(math.log(1e-9), math.log(1e5))) for _ in range(3000)]
    data += [*BUCKETS[:-1], 0.0, 2.0**-24, 2.0**15, 1e9]
    one, bulk = Histogram(), Histogram()
    for value in data:
        one.record(value)
    rng.shuffle(data)
    bulk.pending.extend(data[:1000])
    bulk.fold()
    bulk.pending.extend(data[1000:])  # the rest folded by the first reader
    assert bulk.counts == one.counts and bulk.fine == one.fine and not bulk.pending
    assert bulk.max == one.max and bulk.total == pytest.approx(one.total, rel=1e-12)


def test_pool_waits_are_counted_by_the_first_reader_or_at_fold_at(make_pool):
    pool = make_pool(max_connections=1)

    def one_wait():
        held = pool.acquire()
        waiter = gevent.spawn(lambda: pool.release(pool.acquire(timeout=5)))
        wait_until(lambda: len(pool._waiters) == 1, what="the waiter queued")
        pool.release(held)
        waiter.get(timeout=5)

    one_wait()
    assert pool._wait_hist.pending == [pytest.approx(0.0, abs=1.0)]  # appended, not counted yet
    stats = pool.stats()
    assert stats.waits == 1 and sum(stats.wait_buckets) == 1 and stats.wait_time_max > 0
    assert pool._wait_hist.pending == []
    pool._wait_hist.pending.extend([0.001] * (FOLD_AT - 1))
    one_wait()  # the FOLD_AT-th sample: counted at once, memory stays bounded
    assert pool._wait_hist.pending == [] and sum(pool._wait_hist.counts) == FOLD_AT + 1


@pytest.mark.parametrize("n", [1, 7, 100, 5000])
def test_histogram_percentiles_are_within_the_stated_error(n):
    rng = random.Random(n)
    data = [math.exp(rng.uniform(math.log(1e-6), math.log(100.0))) for _ in range(n)]
    h = Histogram()
    for value in data:
        h.record(value)
    ordered = sorted(data)
    for q in (0.01, 0.5, 0.9, 0.99, 0.999, 1.0):
        exact = ordered[max(math.ceil(q * n) - 1, 0)]
        assert abs(h.percentile(q) - exact) <= PERCENTILE_ERROR * exact, (q, exact, h.percentile(q))
    assert h.max == ordered[-1] and PERCENTILE_ERROR <= 0.016


def test_histogram_p50_p99_and_max_differ_when_the_data_do():
    h = Histogram()
    for i in range(1, 1001):  # 1 ms .. 1 s: p50 500 ms, p99 990 ms, max 1 s
        h.record(i / 1000)
    p50, p99 = h.percentile(0.5), h.percentile(0.99)
    assert p50 < p99 < h.max == 1.0
    assert p50 == pytest.approx(0.5, rel=PERCENTILE_ERROR) and p99 == pytest.approx(0.99, rel=PERCENTILE_ERROR)


def test_histogram_extremes_report_zero_and_the_max():
    h = Histogram()
    h.record(0.0)
    h.record(1e-9)
    assert h.percentile(1.0) == 0.0, "below 60 ns reports as 0"
    h.record(86400.0)  # past the fine range: the last slot, reported as the max seen
    assert h.percentile(1.0) == 86400.0 and h.counts[-1] == 1


def test_histogram_counts_prometheus_buckets_exactly_at_the_bounds():
    h = Histogram()
    values = [0.0, 1e-9] + [b * f for b in BUCKETS[:-1] for f in (1 - 1e-12, 1.0, 1 + 1e-12)] + [1e6]
    for value in values:
        h.record(value)
    expected = [0] * len(BUCKETS)
    for value in values:
        expected[bisect_left(BUCKETS, value)] += 1
    assert h.counts == expected and sum(h.fine) == len(values)


def test_histogram_falls_back_to_bucket_bounds_for_counts_added_directly():
    h = Histogram()
    h.counts[bisect_left(BUCKETS, 0.0002)] += 1  # how an older core inlined record()
    h.total += 0.0002
    h.max = 0.0002
    assert h.percentile(0.5) == 0.0002 and h.percentile(0.5, zeros=3) == 0.0


def test_stats_print_as_a_table_and_repr_as_one_short_line(make_pool):
    pool = make_pool(max_connections=3, name="db", timing_stats=True)
    pool.release(pool.acquire())
    held = [pool.acquire() for _ in range(3)]
    with pytest.raises(PoolExhaustedError):
        pool.acquire(timeout=0)
    pool.drop(held.pop())
    s = pool.stats()
    text = str(s)
    lines = text.splitlines()
    assert lines[0] == "pool 'db'" and len(lines) >= 6 and max(map(len, lines)) <= 100
    assert "2/3: 0 idle, 2 in use, 0 connecting; 0 waiting" in text
    assert "4 acquired" in text and "1 timeouts" in text and "(dropped 1)" in text
    assert "held" in text and "not recorded" not in text
    r = repr(s)
    assert "\n" not in r and len(r) < 160 and r.startswith("<PoolStats 'db' ") and "timeouts=1" in r
    pool.close()


def _samples(text):
    from prometheus_client.parser import text_string_to_metric_families

    seen = []
    for family in text_string_to_metric_families(text):
        seen += [(s.name, tuple(sorted(s.labels.items()))) for s in family.samples]
    return seen


def test_prometheus_collector_exports_each_pool_once(factory):
    prometheus_client = pytest.importorskip("prometheus_client")
    from gpool.prometheus import PoolCollector

    registry = prometheus_client.CollectorRegistry()
    a = Pool(factory, None, 0, 2, name="db")
    collector = PoolCollector.register(a, registry=registry)
    with pytest.raises(ValueError, match="pool 'db' is already exported"):
        collector.add(a)
    twin = Pool(FakeFactory(), name="db")
    with pytest.raises(ValueError, match="another pool named 'db'"):
        collector.add(twin)
    with pytest.raises(ValueError, match=r"already has a gpool PoolCollector.*'cache'"):
        PoolCollector.register(Pool(FakeFactory(), name="cache"), registry=registry)
    a.release(a.acquire())
    samples = _samples(prometheus_client.generate_latest(registry).decode())
    assert len(samples) == len(set(samples)), "every series once"
    assert samples.count(("gpool_acquisitions_total", (("pool", "db"),))) == 1
    a.close()
    collector.add(twin)  # a closed pool of that name is replaced
    samples = _samples(prometheus_client.generate_latest(registry).decode())
    assert len(samples) == len(set(samples))
    assert ("gpool_acquisitions_total", (("pool", "db"),)) in samples
    twin.close()


def test_wait_percentiles_count_acquisitions_that_never_waited(make_pool):
    pool = make_pool(max_connections=1)
    for _ in range(98):
        pool.release(pool.acquire())
    held = gevent.spawn(pool.acquire).get()
    gevent.spawn_later(0.03, pool.release, held)
    pool.release(pool.acquire(timeout=2))
    s = pool.stats()
    assert s.acquired == 100 and s.waits == 1
    assert s.wait_time_p50 == 0.0
    assert 0.025 <= s.wait_time_max < 1 and s.wait_time_p99 <= 0.05
    assert sum(s.wait_buckets) == 1


def test_usage_times_are_recorded_with_timing_stats(make_pool):
    pool = make_pool(timing_stats=True)
    with pool.connection():
        gevent.sleep(0.02)
    s = pool.stats()
    assert s.usage_count == 1 and 0.015 < s.usage_time_max < 1 and s.usage_time_p99 >= 0.01
    off = make_pool()
    off.release(off.acquire())
    assert off.stats().usage_count == 0


def test_stats_reset_zeroes_counters_but_not_gauges(make_pool):
    pool = make_pool()
    held = pool.acquire()
    pool.release(pool.acquire())
    first = pool.stats(reset=True)
    assert first.acquired == 2 and first.created == 2
    after = pool.stats()
    assert after.acquired == 0 and after.created == 0 and after.released == 0
    assert after.in_use == 1 and after.idle == 1 and after.size == 2
    pool.release(held)


def test_as_dict_is_json_serialisable(make_pool):
    pool = make_pool()
    pool.release(pool.acquire())
    data = json.loads(json.dumps(pool.stats().as_dict()))
    assert data["acquired"] == 1 and data["name"] == pool.name and len(data["wait_buckets"]) == len(BUCKETS)


def test_leak_is_reported_once_with_holder_and_stack_then_its_return(make_pool, clock, caplog):
    pool = make_pool(leak_timeout=5)

    def leaky_handler():
        return pool.acquire()

    conn = leaky_handler()
    with caplog.at_level(logging.INFO, logger="gpool"):
        clock.advance(4)
        pool._reap(clock.now)
        assert pool.stats().leaks == 0
        clock.advance(2)
        pool._reap(clock.now)
        pool._reap(clock.now)
        pool.release(conn)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and pool.stats().leaks == 1
    text = warnings[0].getMessage()
    assert "held for 6.0s" in text and "leaky_handler" in text and "greenlet" in text.lower()
    assert any("came back after" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_leak_detection_runs_in_the_background():
    factory = FakeFactory()
    with Pool(factory, None, 0, 2, False, 10.0, leak_timeout=0.02) as pool:
        held = pool.acquire()
        for _ in range(200):
            if pool.stats().leaks:
                break
            gevent.sleep(0.005)
        assert pool.stats().leaks == 1, "the reaper runs every leak_timeout/2 even without reaping"
        pool.release(held)


def test_dead_holder_connection_is_reclaimed(make_pool, factory):
    pool = make_pool(max_connections=1, reclaim_dead_holders=True)
    g = gevent.spawn(pool.acquire)  # takes it and dies without releasing
    g.join()
    assert pool.stats().in_use == 1
    pool._reap(None)
    s = pool.stats()
    assert s.in_use == 0 and s.closed_reclaimed == 1 and factory.created[0].closed
    pool.release(pool.acquire(timeout=1))
    check_invariants(pool)


def test_live_holders_are_not_reclaimed(make_pool):
    pool = make_pool(reclaim_dead_holders=True)
    conn = pool.acquire()
    pool._reap(None)
    assert pool.stats().in_use == 1
    pool.release(conn)


def test_hooks_are_called_at_each_step(make_pool, factory):
    calls = []
    pool = make_pool(
        on_connect=lambda c: calls.append(("connect", c.id)),
        on_checkout=lambda c: calls.append(("checkout", c.id)),
        on_checkin=lambda c: calls.append(("checkin", c.id)),
        on_drop=lambda c, reason: calls.append(("drop", c.id, reason)),
    )
    conn = pool.acquire()
    pool.release(conn)
    pool.release(pool.acquire())
    pool.drop(conn)
    i = conn.id
    assert calls == [("connect", i), ("checkout", i), ("checkin", i), ("checkout", i), ("checkin", i),
                     ("drop", i, "dropped")]
    assert conn.reset_calls == 2, "on_checkin does not replace the connection's own reset()"


def test_failing_on_connect_is_a_connect_error_and_closes_the_connection(make_pool, factory, caplog):
    fails = [1]

    def on_connect(conn):
        if fails:
            fails.pop()
            raise RuntimeError("SET NAMES failed")

    pool = make_pool(on_connect=on_connect, retry_delay=0.001)
    with caplog.at_level(logging.WARNING, logger="gpool"):
        conn = pool.acquire()
    assert factory.created[0].closed and conn is factory.created[1]
    assert pool.stats().connect_errors == 1 and "on_connect hook failed" in caplog.text
    pool.release(conn)


def test_failing_on_checkout_drops_that_connection_and_acquisition_continues(make_pool, factory):
    bad = set()
    pool = make_pool(on_checkout=lambda c: (_ for _ in ()).throw(RuntimeError("no")) if c.id in bad else None)
    first = pool.acquire()
    pool.release(first)
    bad.add(first.id)
    second = pool.acquire()
    assert second is not first and first.closed
    assert pool.stats().closed_broken == 1
    pool.release(second)


def test_failing_on_checkin_drops_the_connection(make_pool):
    pool = make_pool(on_checkin=lambda c: 1 / 0)
    conn = pool.acquire()
    pool.release(conn)
    assert conn.closed and pool.size == 0 and pool.stats().closed_broken == 1


def test_failing_on_drop_is_logged_and_the_pool_stays_consistent(make_pool, caplog):
    pool = make_pool(on_drop=lambda c, r: 1 / 0)
    conn = pool.acquire()
    with caplog.at_level(logging.WARNING, logger="gpool"):
        pool.drop(conn)
    assert conn.closed and pool.size == 0 and "on_drop hook failed" in caplog.text


@pytest.mark.parametrize("hook", ["on_connect", "on_checkout", "on_checkin", "on_drop"])
def test_hooks_must_be_callable(factory, hook):
    with pytest.raises(TypeError, match=f"{hook} must be callable or None, got 3"):
        Pool(factory, **{hook: 3})


@pytest.mark.parametrize(("kwargs", "words"), [({"leak_timeout": 0}, "leak_timeout must be > 0"),
                                               ({"reclaim_dead_holders": 1}, "reclaim_dead_holders must be a bool"),
                                               ({"timing_stats": "yes"}, "timing_stats must be a bool")])
def test_bad_observability_arguments(factory, kwargs, words):
    with pytest.raises((TypeError, ValueError), match=words):
        Pool(factory, **kwargs)


def test_prometheus_exposition_parses_and_matches_stats(factory):
    prometheus_client = pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    from gpool.prometheus import PoolCollector

    registry = prometheus_client.CollectorRegistry()
    a = Pool(factory, None, 0, 2, name="db")
    b = Pool(FakeFactory(), None, 1, 3, name="cache")
    collector = PoolCollector.register(a, registry=registry)
    collector.add(b)
    held = a.acquire()
    a.release(a.acquire())
    a.drop(a.acquire())
    with pytest.raises(PoolExhaustedError):
        a.acquire(timeout=0.01) and a.acquire(timeout=0.01)
    text = prometheus_client.generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("gpool_connections", (("pool", "db"), ("state", "in_use")))] == 2
    assert samples[("gpool_connections", (("pool", "cache"), ("state", "idle")))] == 1
    assert samples[("gpool_max_connections", (("pool", "db"),))] == 2
    assert samples[("gpool_connections_created_total", (("pool", "db"),))] == 3
    assert samples[("gpool_connections_closed_total", (("pool", "db"), ("reason", "dropped")))] == 1
    assert samples[("gpool_acquire_timeouts_total", (("pool", "db"),))] == 1
    assert samples[("gpool_acquire_wait_seconds_count", (("pool", "db"),))] == a.stats().acquired + 1
    assert samples[("gpool_acquire_wait_seconds_bucket", (("le", "+Inf"), ("pool", "db")))] == 5
    assert ("gpool_waiting", (("pool", "cache"),)) in samples
    assert samples[("gpool_average_seconds", (("of", "connect"), ("pool", "db")))] == a.stats().connect_time_avg
    assert ("gpool_average_seconds", (("of", "hold"), ("pool", "cache"))) not in samples  # not measured yet
    collector.remove(b)
    assert "cache" not in prometheus_client.generate_latest(registry).decode()
    with pytest.raises(TypeError, match="stats"):
        collector.add(object())
    a.release(held)
    a.close()
    b.close()

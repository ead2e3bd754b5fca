"""Where an uncontended ``acquire()`` + ``release()`` of gpool spends its time (case 1's hot path).

    .venv/bin/python benchmarks/profile_gpool.py            # breakdown + cProfile of case 1
    .venv/bin/python benchmarks/profile_gpool.py --contended 1000   # cProfile of case 2 at G=1000

A deterministic profiler inflates sub-microsecond functions, so the breakdown times, with the same
best-of-batches loop as case 1, each operation the fast path performs, and sets their sum against
the measured cycle and against the ``gevent.queue.Queue`` floor. cProfile then shows the call
structure (how many Python-level calls one cycle makes).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import timeit  # noqa: E402

import cases  # noqa: E402
import gevent  # noqa: E402
import peers  # noqa: E402


def best_ns(stmt: str, setup: str, number: int = 200_000, repeat: int = 7) -> float:
    g = {}
    exec(setup, g)
    timer = timeit.Timer(stmt, globals=g)
    empty = timeit.Timer("pass", globals=g)
    base = min(empty.repeat(repeat, number)) / number
    return (min(timer.repeat(repeat, number)) / number - base) * 1e9


SETUP = """
from time import monotonic
from gevent import getcurrent
from collections import deque
import sys
sys.path.insert(0, 'benchmarks')
import peers
a = peers.GPool(10)
pool = a._pool
conn = a.acquire(); a.release(conn)
entry = pool._idle[-1]
d = {}
q = deque([1, 2, 3])
class S:
    __slots__ = ('x', 'y')
s = S(); s.x = 0; s.y = 1.0
def f(timeout=None):
    return timeout
def g(x):
    return x
inf = float('inf')
"""

# (label, statement): what the fast path does, one kind of operation at a time
OPERATIONS = [
    ("acquire()+release() of gpool (total)", "pool.release(pool.acquire())"),
    ("2 Python method calls (acquire(), release(conn))", "f(); g(1)"),
    ("2 x time.monotonic()", "monotonic(); monotonic()"),
    ("getcurrent()", "getcurrent()"),
    ("id(conn) x2 + dict set + dict.pop", "d[id(conn)] = entry; d.pop(id(conn), None)"),
    ("deque pop + append", "q.append(q.pop())"),
    ("~6 slot attribute writes", "s.x = 1; s.y = 2.0; s.x = None; s.y = 3.0; s.x = 2; s.y = 4.0"),
    ("2 counter increments on the pool (self._acquired += 1 ...)", "pool._acquired += 1; pool._released += 1"),
    ("~8 attribute reads/tests (entry.reset, native, retire_at...)",
     "entry.reset is not None; entry.native; entry.retire_at; entry.is_expired is not None; "
     "entry.fresh_for; entry.expires_at; pool._waiters; pool._timing"),
    ("timeout is not None test + float compare/min", "t = None; t is not None; 1.0 < inf; 1.0 if 1.0 < inf else inf"),
]


def breakdown() -> None:
    print("Hot path breakdown (ns, best of 7 x 200k; loop overhead subtracted)\n")
    floor = best_ns("q.put(q.get())", "import gevent.queue\nq = gevent.queue.Queue()\nq.put(1)")
    rows = [(label, best_ns(stmt, SETUP)) for label, stmt in OPERATIONS]
    total = rows[0][1]
    print("| operation | ns | share of gpool's cycle |")
    print("|---|---:|---:|")
    print(f"| gevent.queue.Queue get()+put() (floor) | {floor:.0f} | |")
    for label, ns in rows:
        print(f"| {label} | {ns:.0f} | {ns / total * 100:.0f}% |")
    parts = sum(ns for _, ns in rows[1:])
    print(f"| sum of the parts above | {parts:.0f} | {parts / total * 100:.0f}% |")
    print(f"\ngpool / floor = {total / floor:.2f}x\n")


def profile_uncontended(n: int = 200_000) -> None:
    adapter = peers.GPool(10)
    acquire, release = adapter.acquire, adapter.release
    prof = cProfile.Profile()

    def loop() -> None:
        prof.enable()
        for _ in range(n):
            release(acquire())
        prof.disable()

    gevent.spawn(loop).join()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    print(f"cProfile, {n} uncontended cycles (times inflated by the profiler; look at ncalls per cycle):")
    print("\n".join(out.getvalue().splitlines()[:30]))


def profile_contended(greenlets: int) -> None:
    adapter = peers.GPool(10)
    prof = cProfile.Profile()
    prof.enable()
    result = cases.contended(adapter, greenlets, 0.1, 1.0)
    prof.disable()
    print(f"G={greenlets}: {result['cycles_per_s']:.0f} cycles/s, p99 wait {result['wait_p99_s'] * 1e3:.2f} ms "
          "(under the profiler)")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
    print("\n".join(out.getvalue().splitlines()[:40]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contended", type=int, help="profile case 2 at this G instead")
    args = ap.parse_args()
    if args.contended:
        profile_contended(args.contended)
        return 0
    breakdown()
    profile_uncontended()
    return 0


if __name__ == "__main__":
    sys.exit(main())

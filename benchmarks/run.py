"""gpool against the pools users would pick instead, side by side in one run.

    .venv/bin/python benchmarks/run.py              # the full run (make bench), about 8 minutes
    .venv/bin/python benchmarks/run.py --quick      # cases 1, 2 and 5 at small sizes, a few seconds
    .venv/bin/python benchmarks/run.py --cases 1,2  # a selection (1, 2, 3, 4, 5, 5b)

Every measurement runs in a fresh process that calls ``monkey.patch_all()`` first (worker.py). A full
run interleaves pools: each round visits every case and every pool in a shuffled order, and a
figure is the median over rounds. Every pool's figure is also given as a ratio to the floor's,
measured in the same rounds. Prints markdown tables, writes ``results/latest.json``, ``results/latest.md``
and ``results/latest.png`` (``--quick``: ``results/quick.json`` and ``results/quick.md``, no chart).

Cases (M = 10 resources unless said):
  1  uncontended acquire+release of a no-op resource, one greenlet: ns per cycle
  2  G greenlets over M no-op resources, each holding across gevent.sleep(0): cycles/s, waits
  3  Redis GET from G greenlets against a private redis-server: requests/s, latency
  4  MariaDB SELECT 1 from G greenlets against a private mariadbd: queries/s, latency
  5  cold spike: 50 greenlets at once on an empty pool (max 50), connect 150 ms, work 2 ms
  5b warm spike: the same 50 on a pool holding 10 idle connections
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
MARKER = "BENCH_RESULT "

sys.path.insert(0, HERE)
import e2e  # noqa: E402  (no gevent import at module level: safe in this unpatched process)

# The no-op adapters import gevent peers lazily; their names and notes are plain data.
NOOP_POOLS = [
    ("gevent.queue.Queue", "floor; no fairness"),
    ("reference: minimal FIFO hand-off", "not a pool: the least a fair hand-off costs, in pure Python"),
    ("gevent.queue.LifoQueue", "no fairness"),
    ("BoundedSemaphore+list", ""),
    ("gpool", "defaults apart from max_connections and timeout"),
    ("gsocketpool", "polls sleep(0.1) x10 then raises"),
    ("socketpool", "never waits: connects past max_size, caps only idle"),
    ("DBUtils PooledDB", "blocking=True; defaults (ping on checkout, rollback on return)"),
    ("SQLAlchemy QueuePool", "pool_size=M, max_overflow=0; defaults (rollback on return)"),
    ("redis-py BlockingConnectionPool", "its checkout mechanics over a no-op connection class"),
    ("generic-connection-pool", "threading flavour over monkey-patched locks"),
]
FLOOR = "gevent.queue.Queue"
FAIR = "reference: minimal FIFO hand-off"
PER_REQUEST = "connect per request"
#: rows that show a bound, not a pool a user would pick: never counted as peers in the targets
REFERENCES = {FLOOR, FAIR, PER_REQUEST, e2e.FLOOR, e2e.FAIR}

DISTS = ["gevent", "greenlet", "gpool", "redis", "PyMySQL", "DBUtils", "SQLAlchemy", "gsocketpool", "socketpool",
         "generic-connection-pool", "matplotlib"]

FULL = {
    "rounds": {"1": 5, "2": 3, "3": 3, "4": 3, "5": 3, "5b": 3},
    "1": {"size": 10, "seconds": 0.3},
    "2": {"size": 10, "greenlets": [10, 100, 1000], "warmup": 0.2, "window": 1.2},
    "3": {"size": 10, "greenlets": [10, 100, 1000], "warmup": 0.3, "window": 1.0},
    "4": {"size": 10, "greenlets": [10, 100, 1000], "warmup": 0.3, "window": 1.0},
    "5": {"size": 50, "greenlets": 50, "connect": 0.15, "work": 0.002, "warm": 10},
    "5b": {"size": 50, "greenlets": 50, "connect": 0.15, "work": 0.002, "warm": 10},
}
QUICK = {
    "rounds": {"1": 1, "2": 1, "5": 1, "5b": 1},
    "1": {"size": 10, "seconds": 0.02},
    "2": {"size": 10, "greenlets": [10, 100], "warmup": 0.02, "window": 0.05},
    "5": {"size": 20, "greenlets": 20, "connect": 0.02, "work": 0.001, "warm": 4},
    "5b": {"size": 20, "greenlets": 20, "connect": 0.02, "work": 0.001, "warm": 4},
}
WORKER_TIMEOUT = {"1": 120, "2": 240, "3": 300, "4": 300, "5": 180, "5b": 180}


# -- running workers -------------------------------------------------------------------------------


def run_worker(case: str, pools: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """One worker process; a crash or a hang becomes an ``error`` for each pool it was measuring."""
    spec = json.dumps({"case": case, "pools": pools, "params": params})
    cmd = [sys.executable, os.path.join(HERE, "worker.py"), spec]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT[case], cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {p: {"error": f"worker timed out after {WORKER_TIMEOUT[case]}s"} for p in pools}
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])  # type: ignore[no-any-return]
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {p: {"error": f"worker exited with {proc.returncode}: {' | '.join(tail)}"[:300]} for p in pools}


def pools_of(case: str) -> list[str]:
    if case in ("1", "2"):
        return [name for name, _ in NOOP_POOLS]
    if case in ("5", "5b"):
        return [name for name, _ in NOOP_POOLS if name != FAIR] + [PER_REQUEST]
    if case == "3":
        return list(e2e.REDIS_POOLS)
    return list(e2e.MYSQL_POOLS)


def floor_of(case: str) -> str:
    return {"1": FLOOR, "2": FLOOR, "3": e2e.REDIS_FLOOR, "4": e2e.MYSQL_FLOOR, "5": PER_REQUEST, "5b": FLOOR}[case]


def note_of(case: str, pool: str) -> str:
    if case in ("3", "4"):
        table = e2e.REDIS_POOLS if case == "3" else e2e.MYSQL_POOLS
        return table[pool][0]
    if case == "5b" and pool == FLOOR:
        return "reference: a queue of only the warm connections, never connects"
    if pool == PER_REQUEST:
        return "reference: every demand connects at once" if case == "5" else "every demand connects at once"
    if case == "5" and pool == FLOOR:
        return "M None placeholders, connect on first use"
    return dict(NOOP_POOLS).get(pool, "")


# -- servers ---------------------------------------------------------------------------------------


class Servers:
    """Private redis-server and mariadbd for cases 3 and 4, started once per run."""

    def __init__(self) -> None:
        self.redis: Any = None
        self.mysql: Any = None
        self.errors: dict[str, str] = {}

    def start(self, cases: list[str]) -> None:
        from gpool import testing

        if "3" in cases:
            try:
                self.redis = testing.RedisServer()
                self.redis.start()
                import redis

                with redis.Redis(host=self.redis.host, port=self.redis.port) as r:
                    r.set(e2e.REDIS_KEY, e2e.REDIS_VALUE)
            except Exception as exc:
                self.errors["3"] = f"redis-server could not start: {type(exc).__name__}: {exc}"[:300]
        if "4" in cases:
            try:
                self.mysql = testing.MariaDBServer()
                self.mysql.start()
            except Exception as exc:
                self.errors["4"] = f"mariadbd could not start: {type(exc).__name__}: {exc}"[:300]

    def params(self, case: str) -> dict[str, Any]:
        if case == "3":
            return {"host": self.redis.host, "port": self.redis.port}
        return dict(self.mysql.connect_kwargs())

    def cleanup(self) -> None:
        for server in (self.redis, self.mysql):
            if server is not None:
                try:
                    server.cleanup()
                except Exception as exc:
                    print(f"warning: server cleanup failed: {exc}", file=sys.stderr)


# -- aggregation -----------------------------------------------------------------------------------


def _median(values: list[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _merge_errors(rows: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
    kinds: dict[str, int] = {}
    for r in rows:
        for k, n in (r.get("error_kinds") or {}).items():
            kinds[k] = kinds.get(k, 0) + n
    return sum(r.get("errors", 0) for r in rows), kinds


METRICS = {
    "1": ["ns_per_cycle"],
    "2": ["cycles_per_s", "wait_p50_s", "wait_p99_s", "wait_max_s", "starved", "still_waiting", "hold_mean_s",
          "fair_share_s", "p99_over_fair_share", "created"],
    "3": ["requests_per_s", "latency_p50_s", "latency_p99_s", "latency_max_s", "still_running"],
    "5": ["created", "wait_p50_s", "wait_p99_s", "wait_max_s", "total_s"],
}
METRICS["4"] = METRICS["3"]
METRICS["5b"] = METRICS["5"]
HEADLINE = {"1": "ns_per_cycle", "2": "cycles_per_s", "3": "requests_per_s", "4": "requests_per_s",
            "5": "wait_p99_s", "5b": "wait_p99_s"}


def aggregate(case: str, raw: dict[str, list[Any]]) -> dict[str, Any]:
    """raw: pool -> per-round results (for cases 2-4 each a dict G -> result). Medians, then ratios."""
    out: dict[str, Any] = {}
    per_g = case in ("2", "3", "4")
    for pool, rounds in raw.items():
        if per_g:
            gs = sorted({g for r in rounds if isinstance(r, dict) and "error" not in r for g in r}, key=int)
            if not gs:
                out[pool] = {"error": next((r["error"] for r in rounds if isinstance(r, dict) and "error" in r),
                                           "no result")}
                continue
            out[pool] = {}
            for g in gs:
                # a round that failed as a whole (the pool would not build) fails at every G
                mine = [(r if "error" in r else r.get(g)) if isinstance(r, dict) else None for r in rounds]
                out[pool][g] = _summarise(case, mine)
        else:
            out[pool] = _summarise(case, rounds)
    return add_ratios(case, out)


def add_ratios(case: str, agg: dict[str, Any]) -> dict[str, Any]:
    """Each pool's median over the floor's median (floor and pool measured in the same rounds)."""
    floor = agg.get(floor_of(case), {"error": "no floor"})
    head = HEADLINE[case]
    p99 = {"2": "wait_p99_s", "3": "latency_p99_s", "4": "latency_p99_s"}.get(case)

    def ratio(mine: dict[str, Any], ref: Optional[dict[str, Any]], key: Optional[str]) -> Optional[float]:
        if key is None or ref is None or "error" in mine or "error" in ref:
            return None
        a, b = mine.get(key), ref.get(key)
        return a / b if a is not None and b else None

    for s in agg.values():
        if "error" in s:
            continue
        pairs = [(s[g], None if "error" in floor else floor.get(g)) for g in s] if case in ("2", "3", "4") \
            else [(s, floor)]
        for mine, ref in pairs:
            if "error" in mine:
                continue
            mine["ratio"] = ratio(mine, ref, head)
            if p99 is not None:
                mine["p99_ratio"] = ratio(mine, ref, p99)
    return agg


def _summarise(case: str, rounds: list[Any]) -> dict[str, Any]:
    ok = [r for r in rounds if isinstance(r, dict) and "error" not in r]
    failed = [r["error"] for r in rounds if isinstance(r, dict) and "error" in r]
    if not ok:
        return {"error": failed[0] if failed else "no result"}
    s: dict[str, Any] = {"rounds": len(ok)}
    for m in METRICS[case]:
        s[m] = _median([r.get(m) for r in ok])
    head = HEADLINE[case]
    s[f"{head}_per_round"] = [r.get(head) for r in ok]
    if case == "2":
        cycle = [r["greenlets"] / r["cycles_per_s"] for r in ok if r.get("cycles_per_s")]
        s["cycle_share_s"] = _median(cycle)  # G / throughput: each greenlet's turn at the measured rate
        if s["cycle_share_s"] and s["wait_p99_s"] is not None:
            s["p99_over_cycle_share"] = s["wait_p99_s"] / s["cycle_share_s"]
    s["errors"], s["error_kinds"] = _merge_errors(ok)
    s["stuck_at_end"] = sum(r.get("stuck_at_end", 0) for r in ok)
    if failed:
        s["failed_rounds"] = failed
    return s


# -- formatting ------------------------------------------------------------------------------------


def fmt_t(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e9:.0f} ns" if seconds > 0 else "0"


def fmt_n(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def fmt_x(ratio: Optional[float]) -> str:
    return "-" if ratio is None else (f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x")


def fmt_err(s: dict[str, Any]) -> str:
    n = s.get("errors", 0)
    text = str(n) if not n else f"{n} ({', '.join(f'{k} {v}' for k, v in s['error_kinds'].items())})"
    if s.get("stuck_at_end"):
        text += f"; {s['stuck_at_end']} hung"
    if s.get("failed_rounds"):
        text += f"; {len(s['failed_rounds'])} round(s) failed: {s['failed_rounds'][0][:80]}"
    return text


#: columns of text, aligned left; the others are numbers, aligned right
TEXT_COLUMNS = {"pool", "errors", "note"}


def table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if h in TEXT_COLUMNS else "---:" for h in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def na_row(pool: str, error: str, width: int) -> list[str]:
    return [pool, f"n/a: {error}"[:160]] + [""] * (width - 2)


def render(case: str, agg: dict[str, Any], cfg: dict[str, Any]) -> str:
    if case == "1":
        header = ["pool", "ns per cycle", "x floor", "errors", "note"]
        rows = []
        for pool, s in agg.items():
            if "error" in s:
                rows.append(na_row(pool, s["error"], len(header)))
                continue
            rows.append([pool, f"{s['ns_per_cycle']:.0f}", fmt_x(s["ratio"]), fmt_err(s), note_of(case, pool)])
        title = (f"### 1. Pool overhead, uncontended (one greenlet, acquire+release of a no-op resource, "
                 f"M={cfg['size']}; best batch per process, median of {cfg['rounds']} processes)")
        return title + "\n\n" + table(header, rows)
    if case == "2":
        header = ["G", "pool", "cycles/s", "x floor", "p50 wait", "p99 wait", "max wait", "starved",
                  "p99 / fair share", "errors", "created"]
        rows = []
        for g in [str(x) for x in cfg["greenlets"]]:
            for pool, per in agg.items():
                if "error" in per:
                    if g == str(cfg["greenlets"][0]):
                        rows.append([g, *na_row(pool, per["error"], len(header) - 1)])
                    continue
                s = per.get(g)
                if s is None:
                    continue
                if "error" in s:
                    rows.append([g, *na_row(pool, s["error"], len(header) - 1)])
                    continue
                fair = s.get("p99_over_fair_share")
                cyc = s.get("p99_over_cycle_share")
                rows.append([g, pool, fmt_n(s["cycles_per_s"]), fmt_x(s["ratio"]), fmt_t(s["wait_p50_s"]),
                             fmt_t(s["wait_p99_s"]), fmt_t(s["wait_max_s"]), f"{s['starved']:.0f}/{g}",
                             f"{fmt_x(fair)} / {fmt_x(cyc)}", fmt_err(s), f"{s['created']:.0f}"])
        title = (f"### 2. Pool overhead, contended (G greenlets over M={cfg['size']} no-op resources, each holding "
                 f"across gevent.sleep(0); {cfg['window']} s window, median of {cfg['rounds']} rounds)")
        legend = ("Waits include greenlets still waiting when the window closed (their wait so far). *starved*: "
                  "greenlets that completed no cycle in the window. *p99 / fair share*: p99 wait over G/M x the "
                  "measured hold (acquire returned → release called), then over G / throughput (each greenlet's "
                  "turn at the measured rate, which adds the hand-off time). *created*: resources the pool "
                  "created (M were opened before the window).")
        return title + "\n\n" + table(header, rows) + "\n\n" + legend
    if case in ("3", "4"):
        what = "Redis GET" if case == "3" else "MariaDB SELECT 1"
        unit = "req/s" if case == "3" else "queries/s"
        header = ["G", "pool", unit, "x floor", "p50", "p99", "p99 x floor", "max", "errors"]
        rows = []
        for g in [str(x) for x in cfg["greenlets"]]:
            for pool, per in agg.items():
                if "error" in per:
                    if g == str(cfg["greenlets"][0]):
                        rows.append([g, *na_row(pool, per["error"], len(header) - 1)])
                    continue
                s = per.get(g)
                if s is None:
                    continue
                if "error" in s:
                    rows.append([g, *na_row(pool, s["error"], len(header) - 1)])
                    continue
                rows.append([g, pool, fmt_n(s["requests_per_s"]), fmt_x(s["ratio"]), fmt_t(s["latency_p50_s"]),
                             fmt_t(s["latency_p99_s"]), fmt_x(s["p99_ratio"]), fmt_t(s["latency_max_s"]),
                             fmt_err(s)])
        notes = e2e.REDIS_POOLS if case == "3" else e2e.MYSQL_POOLS
        legend = "; ".join(f"*{k}*: {v[0]}" for k, v in notes.items())
        extra = "" if case == "3" else f" Connect options for all: {e2e.MYSQL_EXTRA}."
        title = (f"### {case}. {what} end to end (G greenlets, M={cfg['size']} connections, private server; "
                 f"{cfg['window']} s window, median of {cfg['rounds']} rounds)")
        return title + "\n\n" + table(header, rows) + "\n\n" + legend + "." + extra
    # 5 and 5b
    bound = spike_bound(case, cfg)
    header = ["pool", "created", "p50 wait", "p99 wait", "x ref", "max wait", "errors", "note"]
    rows = []
    for pool, s in agg.items():
        if "error" in s:
            rows.append(na_row(pool, s["error"], len(header)))
            continue
        rows.append([pool, f"{s['created']:.0f}", fmt_t(s["wait_p50_s"]), fmt_t(s["wait_p99_s"]), fmt_x(s["ratio"]),
                     fmt_t(s["wait_max_s"]), fmt_err(s), note_of(case, pool)])
    if case == "5":
        title = (f"### 5. Spike, cold: {cfg['greenlets']} greenlets at once on an empty pool "
                 f"(max_connections={cfg['size']}), connect {cfg['connect'] * 1e3:.0f} ms, work "
                 f"{cfg['work'] * 1e3:.0f} ms; median of {cfg['rounds']} rounds")
    else:
        title = (f"### 5b. Spike, warm: the same {cfg['greenlets']} greenlets on a pool holding {cfg['warm']} idle "
                 f"connections (max_connections={cfg['size']}); median of {cfg['rounds']} rounds")
    legend = (f"*created*: connections opened during the spike. Bound (demands that returned connections could "
              f"not serve within one connect time): {bound}. *x ref*: p99 wait over the reference row's.")
    return title + "\n\n" + table(header, rows) + "\n\n" + legend


def spike_bound(case: str, cfg: dict[str, Any]) -> int:
    """Demands no returning connection could serve before a new connect would finish."""
    warm = cfg["warm"] if case == "5b" else 0
    turns = int(cfg["connect"] // cfg["work"])  # uses of one connection while a connect is under way
    return max(0, cfg["greenlets"] - warm * (1 + turns))


# -- targets ---------------------------------------------------------------------------------------


def targets(results: dict[str, Any], cfgs: dict[str, Any]) -> list[str]:
    """Where gpool stands against each target of the issue, one line each."""
    lines = []
    peers_noop = [p for p, _ in NOOP_POOLS if p != "gpool" and p not in REFERENCES]
    r1 = results.get("1")
    if r1 and "error" not in r1.get("gpool", {"error": 1}):
        g = r1["gpool"]
        faster = [p for p in peers_noop if "error" not in r1.get(p, {"error": 1})
                  and r1[p]["ns_per_cycle"] < g["ns_per_cycle"]]
        ok = (g["ratio"] or 99) <= 1.5 and not faster
        lines.append(f"- Uncontended ≤ 1.5x floor and faster than every peer: {'MET' if ok else 'MISSED'} — "
                     f"{g['ns_per_cycle']:.0f} ns, {fmt_x(g['ratio'])} the floor"
                     + (f"; faster: {', '.join(faster)}" if faster else ""))
    r2 = results.get("2")
    if r2 and "error" not in r2.get("gpool", {"error": 1}):
        parts, ok_all = [], True
        for gk, g in r2["gpool"].items():
            if "error" in g:
                parts.append(f"G={gk}: error")
                ok_all = False
                continue
            above = [p for p in peers_noop if "error" not in r2.get(p, {"error": 1}) and gk in r2[p]
                     and "error" not in r2[p][gk] and r2[p][gk]["cycles_per_s"] > g["cycles_per_s"]]
            fair = g.get("p99_over_fair_share")
            ok = not above and fair is not None and fair <= 1.2 and g["errors"] == 0
            ok_all &= ok
            parts.append(f"G={gk}: {fmt_n(g['cycles_per_s'])}/s ({fmt_x(g['ratio'])} floor)"
                         + (f", below {', '.join(above)}" if above else ", ≥ every peer")
                         + f"; p99 {fmt_t(g['wait_p99_s'])} = {fmt_x(fair)} G/Mxhold, "
                         f"{fmt_x(g.get('p99_over_cycle_share'))} G/throughput; errors {g['errors']}")
        lines.append(f"- Contended (throughput ≥ every peer, p99 ≤ 1.2x fair share, no errors): "
                     f"{'MET' if ok_all else 'MISSED'} — " + "; ".join(parts))
    for case, ref_names in (("3", ["redis-py BlockingConnectionPool", "redis-py ConnectionPool"]),
                            ("4", [])):
        r = results.get(case)
        if not r:
            continue
        gnames = [p for p in r if p.startswith("gpool")]
        for gname in gnames:
            s = r[gname]
            if "error" in s:
                lines.append(f"- {gname} end to end within 5% of the floor: NOT MEASURED — {s['error'][:120]}")
                continue
            parts, ok_all = [], True
            for gk, x in s.items():
                if "error" in x:
                    parts.append(f"G={gk}: error")
                    ok_all = False
                    continue
                refs = []
                ok = (x["ratio"] or 0) >= 0.95 and x["errors"] == 0
                for ref in ref_names:
                    rr = r.get(ref, {}).get(gk) if "error" not in r.get(ref, {"error": 1}) else None
                    if rr and "error" not in rr and rr.get("requests_per_s"):
                        rel = x["requests_per_s"] / rr["requests_per_s"]
                        ok = ok and rel >= 0.95
                        refs.append(f"{rel:.2f}x {ref.split(' ', 1)[1]}")
                ok_all &= ok
                parts.append(f"G={gk}: {fmt_x(x['ratio'])} floor" + (", " + ", ".join(refs) if refs else "")
                             + f", p99 {fmt_x(x['p99_ratio'])} floor, errors {x['errors']}")
            lines.append(f"- {gname} within 5% of the floor{' and of redis-py' if case == '3' else ''}: "
                         f"{'MET' if ok_all else 'MISSED'} — " + "; ".join(parts))
    lines.extend(fair_targets(results))
    for case in ("5", "5b"):
        r = results.get(case)
        if not r or "error" in r.get("gpool", {"error": 1}):
            continue
        g = r["gpool"]
        bound = spike_bound(case, cfgs[case])
        peer_p99 = [r[p]["wait_p99_s"] for p in r if p != "gpool" and p not in REFERENCES
                    and "error" not in r[p] and r[p].get("wait_p99_s") is not None]
        best = min(peer_p99) if peer_p99 else None
        ok = g["created"] <= bound and (best is None or g["wait_p99_s"] <= best * 1.05)
        lines.append(f"- Spike {case} (created ≤ {bound}, p99 ≤ best peer's): {'MET' if ok else 'MISSED'} — "
                     f"created {g['created']:.0f}, p99 {fmt_t(g['wait_p99_s'])} vs best peer {fmt_t(best)}"
                     f" (within 5% counts as equal)")
    return lines


#: issue 18: end-to-end throughput of each gpool row over the fair reference's, in the same rounds
FAIR_TARGETS = {
    "3": {"gpool RedisPool.client()": 0.95, "gpool RedisPool.connection()": 0.90},
    "4": {"gpool MySQLPool (autocommit=True)": 0.95, "gpool MySQLPool (defaults)": 0.60},
}
#: issue 18: the uncontended acquire+release of case 1, in ns
CORE_TARGET_NS = 250


def fair_targets(results: dict[str, Any]) -> list[str]:
    """One line per gpool row of cases 3 and 4: its throughput over the fair reference's, per G."""
    lines = []
    r1 = results.get("1")
    if r1 and "error" not in r1.get("gpool", {"error": 1}):
        ns = r1["gpool"]["ns_per_cycle"]
        lines.append(f"- Uncontended core acquire+release ≤ {CORE_TARGET_NS} ns (issue 18): "
                     f"{'MET' if ns <= CORE_TARGET_NS else 'MISSED'} — {ns:.0f} ns")
    for case, wanted in FAIR_TARGETS.items():
        r = results.get(case)
        ref = (r or {}).get(e2e.FAIR)
        if not r or not ref or "error" in ref:
            continue
        for name, goal in wanted.items():
            mine = r.get(name)
            if not mine or "error" in mine:
                continue
            parts, ok = [], True
            for gk, x in mine.items():
                base = ref.get(gk)
                if "error" in x or not base or "error" in base or not base.get("requests_per_s"):
                    parts.append(f"G={gk}: n/a")
                    ok = False
                    continue
                rel = x["requests_per_s"] / base["requests_per_s"]
                ok = ok and rel >= goal and x["errors"] == 0
                parts.append(f"G={gk}: {rel:.2f}x")
            lines.append(f"- {name} ≥ {goal:.2f}x the fair reference (issue 18): {'MET' if ok else 'MISSED'} — "
                         + ", ".join(parts))
    return lines


# -- machine, JSON, chart ---------------------------------------------------------------------------


def machine_info(servers: Servers) -> dict[str, Any]:
    from importlib import metadata

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for dist in DISTS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    info = {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "versions": versions,
    }
    for name, cmd in (("redis-server", ["redis-server", "--version"]), ("mariadbd", ["mariadbd", "--version"])):
        from gpool import testing

        path = testing.find_redis_server() if name == "redis-server" else testing.find_mariadbd()
        if path:
            try:
                out = subprocess.run([path, cmd[1]], capture_output=True, text=True, timeout=10).stdout
                words = out.replace("v=", "").split()
                # "Redis server v=7.0.15 sha=..." / "/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for ..."
                version = words[2] if name == "redis-server" else words[words.index("Ver") + 1]
                info[name] = f"{name} {version}"
            except Exception as exc:
                info[name] = f"{name} ? ({exc})"
        else:
            info[name] = "not installed"
    return info


def chart(results: dict[str, Any], cfgs: dict[str, Any], path: str) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:
        return f"no chart: matplotlib unavailable ({exc})"
    rows = [c for c in ("2", "3", "4") if c in results]
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 3, figsize=(17, 4.2 * len(rows)), squeeze=False)
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i not in (2, 7)]  # green, grey: references
    titles = {"2": "2. no-op resources", "3": "3. Redis GET", "4": "4. MariaDB SELECT 1"}
    for i, case in enumerate(rows):
        thr = "cycles_per_s" if case == "2" else "requests_per_s"
        p99 = "wait_p99_s" if case == "2" else "latency_p99_s"
        mx = "wait_max_s" if case == "2" else "latency_max_s"
        peer_index = 0
        for pool, per in results[case].items():
            if "error" in per:
                continue
            gs = [g for g in per if "error" not in per[g]]
            if not gs:
                continue
            xs = [int(g) for g in gs]
            style: dict[str, Any]
            if pool.startswith("gpool"):
                style = {"linewidth": 3, "color": "black", "zorder": 5,
                         "linestyle": ":" if pool.endswith("connection()") or "autocommit" in pool else "-"}
            elif pool in (FLOOR, e2e.FLOOR):
                style = {"linewidth": 1.5, "linestyle": "--", "color": "grey"}
            elif pool in (FAIR, e2e.FAIR):
                style = {"linewidth": 1.5, "linestyle": "--", "color": "tab:green"}
            else:
                style = {"linewidth": 1.2, "color": palette[peer_index % len(palette)],
                         "marker": "osv^<>pPXD"[peer_index % 10]}
                peer_index += 1
            style.setdefault("marker", "o")
            for j, metric in enumerate((thr, p99, mx)):
                ys = [per[g][metric] for g in gs]
                if metric != thr:
                    ys = [max(y * 1e3, 1e-4) if y is not None else None for y in ys]  # ms; 0 cannot be drawn on log
                axes[i][j].plot(xs, ys, label=pool, **style)
        for j, label in enumerate(("throughput (/s)", "p99 wait (ms)" if case == "2" else "p99 latency (ms)",
                                   "max wait (ms)" if case == "2" else "max latency (ms)")):
            ax = axes[i][j]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("greenlets (G)")
            ax.set_title(f"{titles[case]}: {label}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
        axes[i][2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("gpool vs peers (median of rounds; waits include greenlets still waiting at the window's end)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return None


# -- main ------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="cases 1, 2, 5, 5b at small sizes, one round, in seconds")
    ap.add_argument("--cases", help="comma-separated selection of 1,2,3,4,5,5b (default: all; --quick: 1,2,5,5b)")
    ap.add_argument("--rounds", type=int, help="rounds per case (default: 5 for case 1, 3 for the others)")
    ap.add_argument("--pools", help="comma-separated substrings: only pools whose name contains one (floors kept)")
    ap.add_argument("--out", help="base path of the results, without extension (default: results/latest)")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument("--rerender", action="store_true",
                    help="measure nothing: redo the tables, targets and chart from the JSON of --out")
    args = ap.parse_args(argv)
    if args.rerender:
        out_base = args.out or os.path.join(RESULTS, "latest")
        with open(out_base + ".json") as f:
            doc = json.load(f)
        results = {c: add_ratios(c, r) for c, r in doc["results"].items()}
        report(results, doc["config"], doc["machine"], doc.get("elapsed_s", 0.0), doc["mode"] == "quick",
               out_base, draw=doc["mode"] != "quick" and not args.no_chart, generated=doc.get("generated"))
        return 0

    base = QUICK if args.quick else FULL
    allowed = list(base["rounds"])
    cases = [c.strip() for c in args.cases.split(",")] if args.cases else allowed
    unknown = [c for c in cases if c not in FULL["rounds"]]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {list(FULL['rounds'])}")
    if args.quick and any(c in ("3", "4") for c in cases):
        ap.error("--quick runs cases 1, 2, 5 and 5b only")
    cfgs: dict[str, Any] = {}
    for c in cases:
        cfgs[c] = dict(base[c])
        cfgs[c]["rounds"] = args.rounds or base["rounds"][c]
    out_base = args.out or os.path.join(RESULTS, "quick" if args.quick else "latest")
    os.makedirs(os.path.dirname(out_base) or ".", exist_ok=True)

    def wanted(pool: str, case: str) -> bool:
        if not args.pools or pool == floor_of(case) or pool in (FLOOR, PER_REQUEST):
            return True
        return any(s.strip().lower() in pool.lower() for s in args.pools.split(","))

    started = time.monotonic()
    servers = Servers()
    raw: dict[str, dict[str, list[Any]]] = {c: {p: [] for p in pools_of(c) if wanted(p, c)} for c in cases}
    rng = random.Random(1)
    try:
        servers.start(cases)
        max_rounds = max(cfgs[c]["rounds"] for c in cases)
        for rnd in range(max_rounds):
            for c in cases:
                if rnd >= cfgs[c]["rounds"]:
                    continue
                pools = list(raw[c])
                if c in servers.errors:
                    for p in pools:
                        raw[c][p].append({"error": servers.errors[c]})
                    continue
                params = dict(cfgs[c])
                if c in ("3", "4"):
                    params["server"] = servers.params(c)
                if args.quick:
                    got = run_worker(c, pools, params)  # one process for the whole case
                else:
                    rng.shuffle(pools)  # interleave: no pool always runs first or last
                    got = {}
                    for p in pools:
                        got.update(run_worker(c, [p], params))
                for p in raw[c]:
                    raw[c][p].append(got.get(p, {"error": "no result"}))
                print(f"[{time.monotonic() - started:6.1f}s] round {rnd + 1}: case {c} done", file=sys.stderr)
        info = machine_info(servers)
    finally:
        servers.cleanup()

    results = {c: aggregate(c, raw[c]) for c in cases}
    report(results, cfgs, info, time.monotonic() - started, args.quick, out_base,
           draw=not args.quick and not args.no_chart)
    return 0


def report(results: dict[str, Any], cfgs: dict[str, Any], info: dict[str, Any], elapsed: float, quick: bool,
           out_base: str, draw: bool, generated: Optional[str] = None) -> None:
    """Print the tables and targets; write them (.md), the JSON and, with ``draw``, the chart."""
    sections = [render(c, results[c], cfgs[c]) for c in results]
    goal = targets(results, cfgs)
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    header = (f"Machine: {info['cpu']}, {info['nproc']} cores, {info['os']}; {info['implementation']} "
              f"{info['python']}; {versions}; {info['redis-server']}; {info['mariadbd']}. "
              f"Run took {elapsed:.0f} s{' (--quick)' if quick else ''}.")
    text = header + "\n\n" + "\n\n".join(sections) + "\n\n### Targets (gpool)\n\n" + "\n".join(goal) + "\n"
    print(text)
    doc = {
        "generated": generated or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "quick" if quick else "full",
        "elapsed_s": elapsed,
        "machine": info,
        "config": cfgs,
        "results": results,
        "targets": goal,
    }
    with open(out_base + ".json", "w") as f:
        json.dump(_rounded(doc), f, indent=1)
    with open(out_base + ".md", "w") as f:
        f.write(text)
    if draw:
        problem = chart(results, cfgs, out_base + ".png")
        if problem:
            print(problem, file=sys.stderr)
    print(f"wrote {out_base}.json, {out_base}.md" + (f", {out_base}.png" if draw else ""), file=sys.stderr)


def _rounded(obj: Any) -> Any:
    """Floats to 4 significant digits: the noise is far above that, and the file stays small."""
    if isinstance(obj, float):
        return float(f"{obj:.4g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


if __name__ == "__main__":
    sys.exit(main())

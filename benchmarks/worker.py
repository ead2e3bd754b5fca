"""One benchmark process: ``python benchmarks/worker.py '<json spec>'``.

Patches first, then measures the pools the spec names, one after the other, and prints one line
``BENCH_RESULT {...}`` with a result (or an ``error``) per pool. The runner starts one such process
per case, pool and round in a full run, so that no pool inherits another's garbage, greenlets or
patched state; ``--quick`` runs all pools of a case in one process.
"""

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

import cases  # noqa: E402
import e2e  # noqa: E402
import gevent  # noqa: E402
import peers  # noqa: E402

MARKER = "BENCH_RESULT "


def _error(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}"[:300], "trace": traceback.format_exc(limit=4)[-1500:]}


def run_noop(case: str, pool: str, p: dict[str, Any]) -> dict[str, Any]:
    cls = peers.ADAPTERS[pool]
    if case == "1":
        adapter = cls(p["size"])
        try:
            return cases.uncontended(adapter, p["seconds"])
        finally:
            adapter.close()
    if case == "2":
        out: dict[str, Any] = {}
        for g in p["greenlets"]:
            adapter = cls(p["size"])
            try:
                out[str(g)] = cases.contended(adapter, g, p["warmup"], p["window"])
            except Exception as exc:
                out[str(g)] = _error(exc)
            finally:
                adapter.close()
            gc.collect()
        return out
    if case in ("5", "5b"):
        size = p["warm"] if (case == "5b" and pool == peers.FLOOR) else p["size"]
        adapter = cls(size, connect_delay=p["connect"], prefill=False)
        try:
            if case == "5b":
                _warm(adapter, p["warm"])
            return cases.spike(adapter, p["greenlets"], p["work"], p.get("requests", 1))
        finally:
            adapter.close()
    raise ValueError(f"unknown case {case!r}")


def _warm(adapter: peers.Adapter, n: int) -> None:
    """Open ``n`` connections concurrently and return them: the pool is warm but small."""
    taken = []

    def take() -> None:
        taken.append(adapter.acquire())

    gevent.joinall([gevent.spawn(take) for _ in range(n)], raise_error=True)
    for r in taken:
        adapter.release(r)


def run_e2e(case: str, pool: str, p: dict[str, Any]) -> dict[str, Any]:
    build = e2e.redis_request if case == "3" else e2e.mysql_request
    out: dict[str, Any] = {}
    for g in p["greenlets"]:
        try:
            request, close = build(pool, p["server"], p["size"])
        except Exception as exc:
            return _error(exc)  # the pool cannot even be built: the same for every G
        try:
            out[str(g)] = cases.load(request, g, p["warmup"], p["window"])
        except Exception as exc:
            out[str(g)] = _error(exc)
        finally:
            try:
                close()
            except Exception:
                pass
        gc.collect()
    return out


def main() -> int:
    spec = json.loads(sys.argv[1])
    case, params = spec["case"], spec["params"]
    results: dict[str, Any] = {}
    for pool in spec["pools"]:
        try:
            if case in ("3", "4"):
                results[pool] = run_e2e(case, pool, params)
            else:
                results[pool] = run_noop(case, pool, params)
        except Exception as exc:
            results[pool] = _error(exc)
        gc.collect()
    sys.stdout.write(MARKER + json.dumps(results) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

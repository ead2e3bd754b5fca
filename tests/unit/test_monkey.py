"""The pool works the same in a monkey-patched process (the suite itself runs unpatched)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_pool_under_monkey_patch_all():
    code = textwrap.dedent(
        """
        from gevent import monkey; monkey.patch_all()
        import socket, threading, time
        import gevent
        from gpool import Pool, PoolExhaustedError
        created = []
        def factory():
            time.sleep(0.01)  # patched: yields
            created.append(1)
            return object()
        pool = Pool(factory, None, 0, 3, True, 0.05)
        order = []
        def worker(i):
            with pool.connection():
                order.append(i)
                time.sleep(0.001)
        gevent.joinall([gevent.spawn(worker, i) for i in range(50)], raise_error=True)
        assert len(created) == 3, created
        assert sorted(order) == list(range(50))
        held = [pool.acquire() for _ in range(3)]
        t = time.monotonic()
        try:
            gevent.spawn(pool.acquire, timeout=0.05).get()
        except PoolExhaustedError:
            pass
        assert 0.04 < time.monotonic() - t < 1
        print("ok", pool.stats().acquired)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "53"]

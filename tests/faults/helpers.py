"""Helpers shared by the fault tests: a driver-less Redis connection, waits, invariant sampling."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any, Callable, Optional

import gevent

from gpool import Pool, TcpConnection
from gpool._invariants import check_invariants
from tests.support import wait_until

__all__ = [
    "InvariantSampler",
    "RespConnection",
    "RespError",
    "assert_capacity_whole",
    "wait_until",
]


class RespError(Exception):
    """A Redis ``-ERR`` reply."""


class RespConnection(TcpConnection):
    """A pooled connection speaking just enough RESP2 to Redis to exercise every pool hook over real I/O.

    Every hook the pool calls does a round trip, so each is a yield point a stalled network can freeze:
    ``open()`` connects then PINGs (a driver's handshake), ``is_connected()`` PINGs, ``reset()`` sends
    ``SELECT 0``, ``close()`` sends ``QUIT`` and waits for ``+OK``. ``ledger`` (when given) counts sockets open now
    (``sockets``), closes under way (``closing``), completed opens and closes and commands sent
    (``sent:PING``...), so a test can compare what is really open with what the pool tracks and can
    tell where a greenlet is blocked.
    """

    ids = itertools.count(1)

    def __init__(self, host: str, port: int, timeout: Optional[float] = None,
                 ledger: Optional[Counter[str]] = None, polite_close: bool = True) -> None:
        super().__init__(host, port, timeout=timeout)
        self.id = next(self.ids)
        self.ledger = ledger if ledger is not None else Counter()
        self.polite_close = polite_close
        self._buf = b""

    def open(self) -> None:
        super().open()
        self.ledger["sockets"] += 1  # counted from the moment the socket exists
        if self.command("PING") != "PONG":
            raise OSError("bad handshake")
        self.ledger["opened"] += 1

    def close(self) -> None:
        sock = self.socket
        if sock is None:
            return
        self.ledger["closing"] += 1
        try:
            if self.polite_close:
                self.command("QUIT")
        except (OSError, RespError, EOFError):
            pass
        finally:
            super().close()
            self.ledger["closing"] -= 1
            self.ledger["sockets"] -= 1
            self.ledger["closed"] += 1

    def is_connected(self) -> bool:
        if not super().is_connected():
            return False
        try:
            return self.command("PING") == "PONG"
        except (OSError, EOFError):
            return False

    def reset(self) -> None:
        if self.command("SELECT", "0") != "OK":
            raise OSError("reset failed")

    def command(self, *args: Any) -> Any:
        self.ledger[f"sent:{args[0]}"] += 1
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sendall(b"".join(parts))
        return self._reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            chunk = self.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self._buf) < size + 2:
                chunk = self.recv(65536)
                if not chunk:
                    raise EOFError("server closed the connection")
                self._buf += chunk
            data, self._buf = self._buf[:size], self._buf[size + 2:]
            return data.decode()
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise OSError(f"protocol error: {line!r}")


def assert_capacity_whole(pool: Pool[Any], timeout: float = 5.0) -> list[Any]:
    """Nothing in use, waiting or connecting, and ``max_connections`` can be held at once.

    Returns the connections it held (released again), all distinct.
    """
    check_invariants(pool)
    stats = pool.stats()
    assert (stats.in_use, stats.waiting, stats.connecting) == (0, 0, 0), stats
    held = [pool.acquire(timeout=timeout) for _ in range(pool.max_connections)]
    assert len({id(c) for c in held}) == pool.max_connections, "a connection was handed out twice"
    assert pool.size == pool.max_connections
    check_invariants(pool)
    for conn in held:
        pool.release(conn)
    check_invariants(pool)
    return held


class InvariantSampler:
    """A greenlet checking a pool's invariants every ``interval`` seconds while a scenario runs.

    Records the peak size, how many samples it took and each violation (it never raises inside the
    greenlet, so the scenario runs to the end and the test reports every violation at once).
    """

    def __init__(self, pool: Pool[Any], interval: float = 0.001,
                 extra: Optional[Callable[[], None]] = None) -> None:
        self.pool = pool
        self.interval = interval
        self.extra = extra
        self.samples = 0
        self.peak_size = 0
        self.violations: list[str] = []
        self._greenlet: Optional[gevent.Greenlet] = None

    def check(self) -> None:
        self.samples += 1
        size = self.pool.size
        self.peak_size = max(self.peak_size, size)
        try:
            check_invariants(self.pool)
            if self.extra is not None:
                self.extra()
        except AssertionError as exc:
            if len(self.violations) < 20:
                self.violations.append(f"{exc} (size={size})")

    def _run(self) -> None:
        while True:
            self.check()
            gevent.sleep(self.interval)

    def __enter__(self) -> InvariantSampler:
        self._greenlet = gevent.spawn(self._run)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()
        self.check()

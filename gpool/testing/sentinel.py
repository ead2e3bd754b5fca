"""A private Redis Sentinel deployment for tests: 1 master, N replicas, 3 sentinels on 127.0.0.1.

Everything is ``redis-server``: the data servers run with diskless replication and no delay
(``--repl-diskless-sync yes --repl-diskless-sync-delay 0``), the sentinels run as
``redis-server <writable conf> --sentinel`` (Sentinel rewrites its config file). No other package is
needed; replies are read with a few lines of RESP2 below, so this module needs only the standard
library::

    from gpool.testing import SentinelCluster

    with SentinelCluster(replicas=2) as cluster:      # ready: every sentinel sees everyone
        cluster.sentinel_addresses                     # [("127.0.0.1", port), ...]
        cluster.failover()                             # SENTINEL FAILOVER through one sentinel
        cluster.wait_for_new_master(old_port)          # the port every sentinel now reports

Short detection and failover times by default (``down_after_ms=1000``, ``failover_timeout_ms=4000``)
so failover tests take seconds, not Sentinel's default 30 s detection.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any, Optional, Union

from ._server import _HOST, _Server, find_free_port, find_redis_server
from .redis import RedisServer

__all__ = ["RedisSentinel", "SentinelCluster", "resp_command"]

_Reply = Union[None, int, bytes, list[Any], Exception]


# -- a minimal RESP2 client (the launcher must not need redis-py) -----------------------------------


def _read_line(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\r\n")
    buf[:] = rest
    return line


def _read_reply(sock: socket.socket, buf: bytearray) -> _Reply:
    line = _read_line(sock, buf)
    kind, body = line[:1], line[1:]
    if kind == b"+":
        return body
    if kind == b"-":
        return RuntimeError(body.decode("utf-8", "replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        while len(buf) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            buf.extend(chunk)
        data = bytes(buf[:size])
        del buf[:size + 2]
        return data
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [_read_reply(sock, buf) for _ in range(count)]
    raise ConnectionError(f"unexpected reply line {line[:40]!r}")


def resp_command(port: int, *args: Union[str, bytes, int], timeout: float = 2.0) -> _Reply:
    """Send one command to ``127.0.0.1:port`` on a new connection and return the parsed reply.

    Error replies are returned (not raised) as ``RuntimeError``; socket errors raise ``OSError``.
    """
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    packed = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((_HOST, port), timeout=timeout) as sock:
        sock.sendall(packed)
        return _read_reply(sock, bytearray())


def _pairs(reply: _Reply) -> dict[str, str]:
    """A flat ``[name, value, ...]`` reply as a dict of str."""
    if not isinstance(reply, list):
        raise RuntimeError(f"expected a list reply, got {reply!r}")
    items = [x.decode() if isinstance(x, bytes) else str(x) for x in reply]
    return dict(zip(items[::2], items[1::2]))


# -- one sentinel -----------------------------------------------------------------------------------


class RedisSentinel(_Server):
    """One ``redis-server --sentinel`` monitoring ``service_name`` at ``127.0.0.1:master_port``.

    Its config file lives in its temp dir and Sentinel rewrites it, so a restart keeps what it learnt
    (the current master, the epochs, the other sentinels).
    """

    _kind = "sentinel"
    _log_name = "sentinel.log"

    def __init__(self, master_port: int, *, service_name: str = "mymaster", quorum: int = 2,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 4000, port: Optional[int] = None,
                 basedir: Optional[str] = None, extra_args: Sequence[str] = ()) -> None:
        super().__init__(port=port, basedir=basedir, extra_args=extra_args)
        self.master_port = master_port
        self.service_name = service_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` (a sentinel speaks the Redis protocol)."""
        return f"redis://{self.host}:{self.port}"

    def _prepare(self, deadline: float) -> None:
        assert self._tmpdir is not None
        name = self.service_name
        lines = [
            f"port {self._port}",
            f"bind {_HOST}",
            f"dir {self._tmpdir}",
            f"sentinel monitor {name} {_HOST} {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        with open(os.path.join(self._tmpdir, "sentinel.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _launch(self) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError("redis-server not found (install the redis-server package)")
        assert self._tmpdir is not None
        argv = [binary, os.path.join(self._tmpdir, "sentinel.conf"), "--sentinel", "--daemonize", "no",
                *self._extra_args]
        self._proc = self._popen(argv, self._log_name)

    def _check_ready(self, timeout: float) -> None:
        reply = resp_command(self._port, "PING", timeout=timeout)
        if reply != b"PONG":
            raise RuntimeError(f"unexpected reply to PING: {reply!r}")

    def master_state(self, timeout: float = 2.0) -> dict[str, str]:
        """``SENTINEL MASTER <service>`` as a dict of str (``ip``, ``port``, ``flags``, ``config-epoch``...)."""
        return _pairs(resp_command(self._port, "SENTINEL", "MASTER", self.service_name, timeout=timeout))

    def pause(self) -> None:
        """SIGSTOP: the process stays, its sockets accept but nothing answers (a frozen sentinel)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._signal(signal.SIGCONT)


# -- the deployment ---------------------------------------------------------------------------------


class SentinelCluster:
    """1 master + ``replicas`` replicas + ``sentinels`` sentinels, all private, on 127.0.0.1.

    ``start()`` returns once every sentinel reports every replica and all the other sentinels (about
    2.2 s: sentinels find each other through hello messages sent every 2 s). ``cleanup()`` (or
    leaving a ``with`` block) stops every process and removes every temp dir.

    Args:
        replicas: how many replicas (``--replicaof`` the first master).
        sentinels: how many sentinels (quorum: a majority of them).
        service_name: the name the sentinels monitor.
        down_after_ms: ``sentinel down-after-milliseconds``.
        failover_timeout_ms: ``sentinel failover-timeout``.
        basedir: where to create the temp dirs.
    """

    def __init__(self, replicas: int = 2, sentinels: int = 3, *, service_name: str = "mymaster",
                 down_after_ms: int = 1000, failover_timeout_ms: int = 4000,
                 basedir: Optional[str] = None) -> None:
        if replicas < 0 or sentinels < 1:
            raise ValueError(f"replicas must be >= 0 and sentinels >= 1, got {replicas}, {sentinels}")
        self.service_name = service_name
        repl = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        master_port = find_free_port()
        self.servers: list[RedisServer] = [RedisServer(port=master_port, basedir=basedir, extra_args=repl)]
        for _ in range(replicas):
            port = find_free_port()
            while port in self.ports:
                port = find_free_port()
            self.servers.append(RedisServer(port=port, basedir=basedir,
                                            extra_args=[*repl, "--replicaof", _HOST, str(master_port)]))
        self.sentinels: list[RedisSentinel] = []
        taken = set(self.ports)
        for _ in range(sentinels):
            port = find_free_port()
            while port in taken:
                port = find_free_port()
            taken.add(port)
            self.sentinels.append(RedisSentinel(master_port, service_name=service_name, quorum=sentinels // 2 + 1,
                                                down_after_ms=down_after_ms,
                                                failover_timeout_ms=failover_timeout_ms, port=port,
                                                basedir=basedir))

    def __repr__(self) -> str:
        return (f"<SentinelCluster {self.service_name!r} servers={self.ports} "
                f"sentinels={[s.port for s in self.sentinels]}>")

    @property
    def ports(self) -> list[int]:
        """The data servers' ports (the first master first, then the replicas)."""
        return [server.port for server in self.servers]

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``[(host, port), ...]`` of the sentinels, for ``redis.sentinel.Sentinel``."""
        return [(s.host, s.port) for s in self.sentinels]

    def server(self, port: int) -> RedisServer:
        """The data server on ``port``."""
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(port)

    def start(self, timeout: float = 30.0) -> SentinelCluster:
        """Start everything and wait until the sentinels agree (see the class docstring)."""
        deadline = time.monotonic() + timeout
        try:
            for server in self.servers:
                server.start(timeout=max(1.0, deadline - time.monotonic()))
            for sentinel in self.sentinels:
                sentinel.start(timeout=max(1.0, deadline - time.monotonic()))
            self.wait_ready(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.cleanup()
            raise
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every running sentinel sees every replica and the other sentinels (RuntimeError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        want_replicas = len(self.servers) - 1
        want_others = len(self.sentinels) - 1
        last: Any = None
        while True:
            try:
                states = [s.master_state() for s in self.sentinels if s.running]
                last = [(st.get("num-slaves"), st.get("num-other-sentinels"), st.get("flags")) for st in states]
                if all(int(st["num-slaves"]) >= want_replicas and int(st["num-other-sentinels"]) >= want_others
                       and st["flags"] == "master" for st in states):
                    return
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self!r}: sentinels not ready in {timeout}s; last state {last!r}")
            time.sleep(0.05)

    def master_port(self) -> int:
        """The master's port as the first sentinel that answers reports it."""
        for sentinel in self.sentinels:
            try:
                return int(sentinel.master_state(timeout=1.0)["port"])
            except (OSError, RuntimeError, KeyError):
                continue
        raise RuntimeError(f"{self!r}: no sentinel answered")

    def role(self, port: int, timeout: float = 2.0) -> str:
        """``master`` or ``slave``: the first element of ``ROLE`` on the data server at ``port``."""
        reply = resp_command(port, "ROLE", timeout=timeout)
        if not isinstance(reply, list) or not isinstance(reply[0], bytes):
            raise RuntimeError(f"unexpected ROLE reply {reply!r}")
        return reply[0].decode()

    def failover(self, sentinel: int = 0) -> None:
        """``SENTINEL FAILOVER <service>`` through sentinel number ``sentinel`` (it leads the failover)."""
        reply = resp_command(self.sentinels[sentinel].port, "SENTINEL", "FAILOVER", self.service_name)
        if reply != b"OK":
            raise RuntimeError(f"SENTINEL FAILOVER failed: {reply!r}")

    def wait_for_new_master(self, old_port: int, timeout: float = 30.0) -> int:
        """Until every running sentinel reports a master other than ``old_port``, settled; its port."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = [s.master_state(timeout=1.0) for s in self.sentinels if s.running]
                ports = {int(st["port"]) for st in states}
                if (len(ports) == 1 and old_port not in ports
                        and all(st["flags"] == "master" for st in states)):
                    return ports.pop()
            except (OSError, RuntimeError, KeyError, ValueError):
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self!r}: no new master in {timeout}s")
            time.sleep(0.05)

    def wait_role(self, port: int, role: str, timeout: float = 30.0) -> None:
        """Until the data server at ``port`` reports ``role`` (``master``/``slave``) in ``ROLE``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.role(port, timeout=1.0) == role:
                    return
            except (OSError, RuntimeError):
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self!r}: port {port} not {role} in {timeout}s")
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Stop every process (resuming any paused one first) and remove the temp dirs."""
        for proc in [*self.sentinels, *self.servers]:
            try:
                proc._signal(signal.SIGCONT)
                proc.cleanup()
            except Exception:  # pragma: no cover - best effort; the atexit hook retries
                pass

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

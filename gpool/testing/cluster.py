"""A private Redis Cluster for tests: three masters, no replicas, on 127.0.0.1.

Each node is a :class:`~gpool.testing.RedisServer` started with ``--cluster-enabled yes`` on a data
port <= 55535 whose cluster bus port (data port + 10000) is free too; ``redis-cli --cluster create``
then assigns the 16384 slots::

    from gpool.testing.cluster import RedisCluster

    with RedisCluster() as cluster:
        client = redis.RedisCluster(url=cluster.url)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from typing import Any, Optional

from ._server import _HOST, _can_bind, find_free_port
from .redis import RedisServer

_BUS_OFFSET = 10000
_MAX_DATA_PORT = 65535 - _BUS_OFFSET


def _cluster_port(taken: set[int]) -> int:
    for _ in range(200):
        port = find_free_port()
        if port <= _MAX_DATA_PORT and port not in taken and port + _BUS_OFFSET not in taken \
                and _can_bind(port + _BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair (data port <= 55535 and its bus port +10000) found")


def _command(port: int, *words: str, timeout: float = 5.0) -> bytes:
    """One inline command to a node, its raw reply (enough for PING and CLUSTER INFO)."""
    with socket.create_connection((_HOST, port), timeout=timeout) as sock:
        sock.sendall((" ".join(words) + "\r\n").encode())
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
            if reply.startswith(b"$"):
                head, _, body = reply.partition(b"\r\n")
                if len(body) >= int(head[1:]) + 2:
                    break
            elif reply.endswith(b"\r\n"):
                break
    return reply


class RedisCluster:
    """Three private cluster-enabled ``redis-server`` masters joined by ``redis-cli --cluster create``.

    ``start()`` returns once every node reports ``cluster_state:ok``; ``cleanup()`` (or leaving a
    ``with`` block) stops the nodes and deletes their temp dirs.
    """

    def __init__(self, masters: int = 3, basedir: Optional[str] = None) -> None:
        taken: set[int] = set()
        self.nodes: list[RedisServer] = []
        for _ in range(masters):
            port = _cluster_port(taken)
            taken |= {port, port + _BUS_OFFSET}
            self.nodes.append(RedisServer(port=port, basedir=basedir, extra_args=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000"]))

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the first node (any node bootstraps a cluster client)."""
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        """The data ports of the nodes."""
        return [node.port for node in self.nodes]

    def start(self, timeout: float = 60.0) -> RedisCluster:
        """Start the nodes, create the cluster and wait until it serves every slot."""
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.start(timeout=max(1.0, deadline - time.monotonic()))
            if b"cluster_state:ok" not in _command(self.ports[0], "CLUSTER", "INFO"):
                self._create(deadline)
            for port in self.ports:
                while b"cluster_state:ok" not in _command(port, "CLUSTER", "INFO"):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node {port} not ok within {timeout}s")
                    time.sleep(0.05)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _create(self, deadline: float) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli not found (install the redis-tools or redis-server package)")
        argv = [cli, "--cluster", "create", *(f"{_HOST}:{port}" for port in self.ports),
                "--cluster-replicas", "0", "--cluster-yes"]
        done = subprocess.run(argv, capture_output=True, timeout=max(1.0, deadline - time.monotonic()))
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]!r} {done.stderr[-2000:]!r}")

    def cleanup(self) -> None:
        """Stop every node and delete its files; safe to call more than once."""
        for node in self.nodes:
            node.cleanup()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.cleanup()

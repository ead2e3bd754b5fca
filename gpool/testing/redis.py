"""A private Redis server for tests."""

from __future__ import annotations

import socket
from typing import Any

from ._server import _HOST, _Server, find_redis_server


class RedisServer(_Server):
    """A private ``redis-server`` on 127.0.0.1, a free port, in a temp dir; stopped and removed by cleanup().

    Runs in the foreground with no persistence (``--save '' --appendonly no``): a restart comes back
    on the same port with an empty dataset. ``extra_args`` are appended to the command line
    (``["--maxclients", "50"]``).

    Args:
        port: the TCP port; by default a free one.
        basedir: where to create the temp dir (default: the system temp dir).
        extra_args: more ``redis-server`` arguments.
    """

    _kind = "redis"
    _log_name = "redis.log"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``"""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def db(self) -> int:
        """Always 0."""
        return 0

    def connect_kwargs(self) -> dict[str, Any]:
        """``host``, ``port`` and ``db``, for ``redis.Redis(**kw)``."""
        return {"host": self.host, "port": self.port, "db": self.db}

    def _launch(self) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError("redis-server not found (install the redis-server package)")
        assert self._tmpdir is not None
        argv = [
            binary,
            "--bind", _HOST,
            "--port", str(self._port),
            "--save", "",
            "--appendonly", "no",
            "--dir", self._tmpdir,
            "--daemonize", "no",
            *self._extra_args,
        ]
        self._proc = self._popen(argv, self._log_name)

    def _check_ready(self, timeout: float) -> None:
        with socket.create_connection((_HOST, self._port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
        if not reply.startswith((b"+PONG", b"-NOAUTH")):  # it answered; a password is set
            raise RuntimeError(f"unexpected reply to PING: {reply!r}")

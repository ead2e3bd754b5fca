"""A loopback TCP proxy whose network can be made to misbehave at runtime.

``FaultProxy(("127.0.0.1", server_port)).start()`` listens on ``127.0.0.1:<free port>`` and forwards
every connection to the target. Its :attr:`~FaultProxy.mode` can be switched while traffic flows:

``"pass"``
    forward bytes both ways (the default).
``"stall"``
    stop forwarding bytes in both directions, keep every socket open: a frozen network or a server
    that stopped answering. New connections are accepted and connected upstream, but stall too.
    Switching back to ``"pass"`` delivers what was held back.
``"blackhole"``
    like ``"stall"`` for existing connections, and new connections are accepted (the TCP handshake
    completes) but never connected upstream nor answered, ever: a host that accepts and hangs.

:meth:`~FaultProxy.cut` closes every current connection now (the client sees EOF or, with
``reset=True``, a reset); connections made afterwards pass as usual.

:meth:`~FaultProxy.stop` closes the listener and every connection and ends every greenlet it spawned.
"""

from __future__ import annotations

import socket
import struct
from typing import Optional

import gevent
import gevent.event
import gevent.pool
import gevent.server
import gevent.socket

__all__ = ["MODES", "FaultProxy"]

MODES = ("pass", "stall", "blackhole")


class _Link:
    """One client connection and (unless blackholed) its upstream connection."""

    __slots__ = ("client", "closed", "done", "upstream")

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: Optional[socket.socket] = None
        self.closed = False
        self.done = gevent.event.Event()

    def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            try:
                if reset:  # SO_LINGER 0: close() sends RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # wakes a greenlet blocked on it with an OSError
            except OSError:
                pass
        self.done.set()


class FaultProxy:
    """A gevent TCP proxy on 127.0.0.1 in front of ``target``, with switchable faults (see the module doc).

    Counters: :attr:`accepted` (connections accepted since start), :attr:`active` (open now),
    :attr:`upstream_errors` (connects to the target that failed), :attr:`forwarded` (bytes).
    """

    def __init__(self, target: tuple[str, int], *, connect_timeout: float = 5.0) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.accepted = 0
        self.upstream_errors = 0
        self.forwarded = 0
        self._mode = "pass"
        self._flowing = gevent.event.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._greenlets = gevent.pool.Pool()  # unbounded; StreamServer needs a Pool, not a Group
        self._server: Optional[gevent.server.StreamServer] = None

    def __repr__(self) -> str:
        return (f"<FaultProxy 127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]} {self._mode} "
                f"active={self.active} accepted={self.accepted}>")

    # -- control

    @property
    def port(self) -> int:
        """The listening port (0 before start)."""
        return self._server.server_port if self._server is not None else 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def active(self) -> int:
        """Client connections open now (blackholed ones included)."""
        return len(self._links)

    @property
    def greenlets(self) -> int:
        """Greenlets the proxy runs now (handlers and pumps)."""
        return len(self._greenlets)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self._mode = mode
        if mode == "pass":
            self._flowing.set()
        else:
            self._flowing.clear()

    def cut(self, reset: bool = False) -> int:
        """Close every current connection (both sides) now; return how many. The mode is unchanged."""
        links = list(self._links)
        self._links.clear()
        for link in links:
            link.close(reset)
        return len(links)

    def start(self) -> FaultProxy:
        server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle, spawn=self._greenlets)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Close the listener and every connection; return once every proxy greenlet ended."""
        server, self._server = self._server, None
        if server is not None:
            server.close()  # stop accepting; do not wait for handlers, we end them below
        self.cut()
        self._flowing.set()
        self._greenlets.kill(block=True, timeout=5)
        assert not self._links, self._links

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- traffic

    def _handle(self, client: socket.socket, _addr: object) -> None:
        self.accepted += 1
        link = _Link(client)
        self._links.add(link)
        try:
            if self._mode == "blackhole":
                # Accepted, never answered: swallow what the client sends until it hangs up.
                try:
                    while client.recv(65536):
                        pass
                except OSError:
                    pass
                return
            try:
                link.upstream = gevent.socket.create_connection(self.target, timeout=self.connect_timeout)
            except OSError:
                self.upstream_errors += 1
                return
            link.upstream.settimeout(None)
            back = self._greenlets.spawn(self._pump, link.upstream, client, link)
            self._pump(client, link.upstream, link)
            back.join()
        finally:
            link.close()
            self._links.discard(link)

    def _may_flow(self, link: _Link) -> bool:
        """Wait while the network is stalled; False once the link was closed meanwhile."""
        if not self._flowing.is_set() and not link.closed:
            gevent.wait([self._flowing, link.done], count=1)
        return not link.closed

    def _pump(self, src: socket.socket, dst: socket.socket, link: _Link) -> None:
        try:
            while self._may_flow(link):
                data = src.recv(65536)
                if not data:
                    break
                if not self._may_flow(link):  # bytes read just before a stall are held back too
                    break
                dst.sendall(data)
                self.forwarded += len(data)
        except OSError:
            pass
        finally:
            link.close()  # one direction ended: end the other one too

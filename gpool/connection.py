"""The connection protocol the pool understands, and a ready-made TCP connection.

The pool does not require these classes: a factory may return any object. When the object has
``open()``, ``close()``, ``is_connected()``, ``is_expired()``, ``reset()`` or ``is_fatal(exc)``, the pool
uses them; :class:`Connection` documents what each is for.
"""

from __future__ import annotations

import abc
import errno
import select
import socket as _socket
import time
from _socket import socket as _OSSocket  # the OS socket type, which monkey-patching leaves alone
from typing import Optional

import gevent.socket
from gevent import monkey

__all__ = ["Connection", "TcpConnection", "socket_is_clean"]

# The real poll even under monkey-patching: gevent's would yield to the hub for a zero-timeout check.
_poll = monkey.get_original("select", "poll")


def socket_is_clean(sock: _socket.socket) -> bool:
    """True when ``sock`` is open, the peer has not closed it and no unread bytes wait on it.

    One ``poll()`` with a zero timeout on the real (unpatched) poll: no round trip, no hub switch.
    Readable means either an unread reply or the peer's FIN; both make the connection unsafe to hand
    out. A closed socket object (fileno -1) is not clean either.
    """
    try:
        fd = sock.fileno()
    except (OSError, ValueError):
        return False
    if fd < 0:
        return False
    poller = _poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


def _os_socket(sock: object) -> Optional[_OSSocket]:
    """The non-blocking OS socket under a plain (not TLS) gevent socket, else None.

    A small packet written there goes out in one ``send()``, where gevent's ``sendall`` first asks the
    kernel for the send buffer's size (one ``getsockopt`` per call) and runs five Python calls. Never
    for TLS: those bytes must go through the TLS layer.
    """
    raw = getattr(sock, "_sock", None)
    if not isinstance(raw, _OSSocket) or raw.gettimeout() != 0.0 or hasattr(sock, "getpeercert"):
        return None
    return raw


class Connection(abc.ABC):
    """Abstract base for pooled connections.

    The pool calls :meth:`open` once after the factory built the object; before handing out a
    connection that sat idle longer than the pool's ``check_interval``, ``health_check(timeout)`` when
    the class defines it (given the caller's remaining deadline) or else :meth:`is_connected`;
    ``is_clean()``, when defined, before every handout (it must not yield: a zero-round-trip look at
    the socket and any read buffer); :meth:`reset` when the connection comes back, :meth:`is_fatal`
    when the user's block raised, :meth:`is_expired` at checkout and in the reaper, ``detach()`` (when
    defined) in a forked child, and :meth:`close` exactly once when the pool discards it.
    """

    def __init__(self, lifetime: Optional[float] = None) -> None:
        if lifetime is not None and (not isinstance(lifetime, (int, float)) or lifetime <= 0):
            raise ValueError(f"lifetime must be a positive number of seconds or None, got {lifetime!r}")
        self.lifetime = lifetime
        self.created_at = time.monotonic()
        #: set by the pool each time the connection is released
        self.last_used_at = self.created_at

    @abc.abstractmethod
    def open(self) -> None:
        """Connect. Raise on failure; the pool retries with backoff."""

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnect and free resources. Must not raise for an already closed connection."""

    @abc.abstractmethod
    def is_connected(self) -> bool:
        """Return False when the connection can no longer be used. Called only on idle connections."""

    def is_expired(self) -> bool:
        """True once the connection outlived ``lifetime`` (never, when ``lifetime`` is None)."""
        return self.lifetime is not None and time.monotonic() - self.created_at >= self.lifetime

    def reset(self) -> Optional[bool]:
        """Bring the connection back to a clean state before the next user.

        Raising drops it (logged as a warning); returning ``False`` drops it quietly.
        """
        return None

    def is_fatal(self, exc: BaseException) -> bool:
        """Whether ``exc``, raised inside ``with pool.connection()``, leaves the connection unusable.

        By default socket-level errors (``OSError``, which includes timeouts and resets) and ``EOFError``.
        """
        return isinstance(exc, (OSError, EOFError))


class TcpConnection(Connection):
    """A pooled raw TCP connection (a cooperative gevent socket).

    ``timeout`` applies to connecting and to every socket operation; ``lifetime`` retires the
    connection after that many seconds.
    """

    def __init__(
        self, host: str, port: int, lifetime: Optional[float] = None, timeout: Optional[float] = None
    ) -> None:
        super().__init__(lifetime)
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty string, got {host!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.socket: Optional[_socket.socket] = None

    def __repr__(self) -> str:
        state = "open" if self.socket is not None else "closed"
        return f"<TcpConnection {self.host}:{self.port} {state}>"

    def open(self) -> None:
        self.socket = gevent.socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.socket.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)

    def close(self) -> None:
        sock, self.socket = self.socket, None
        if sock is not None:
            sock.close()

    def is_clean(self) -> bool:
        """The pool's check before every handout: open, the peer has not closed, nothing unread."""
        return self.socket is not None and socket_is_clean(self.socket)

    def detach(self) -> None:
        """In a forked child: close this process's copy of the socket (no goodbye on the wire).

        A greenlet of the parent that gevent also runs in the child, parked reading a reply, then
        gets an error instead of the parent's reply.
        """
        self.close()

    def is_connected(self) -> bool:
        """A zero-round-trip check: the peer has not closed and no unread bytes are waiting.

        Unread bytes on an idle connection mean a reply nobody read; handing it out would give the
        next user someone else's answer, so that counts as not connected.
        """
        return self.socket is not None and socket_is_clean(self.socket)

    def _sock(self) -> _socket.socket:
        if self.socket is None:
            raise OSError(errno.ENOTCONN, f"connection to {self.host}:{self.port} is closed")
        return self.socket

    def sendall(self, data: bytes) -> None:
        """Send all of ``data``."""
        self._sock().sendall(data)

    def recv(self, size: int) -> bytes:
        """Receive up to ``size`` bytes (``b""`` when the peer closed)."""
        return self._sock().recv(size)

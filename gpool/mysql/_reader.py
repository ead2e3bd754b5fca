"""The reader PyMySQL reads replies through, in place of ``sock.makefile("rb")``.

PyMySQL reads every packet with ``self._rfile.read(n)``. A ``BufferedReader`` keeps what it read ahead
of the current packet where nobody can see it: bytes a server sent that nobody asked for (a second
result set in the same segment as a real reply, an answer to no command) would reach the next user of
a pooled connection. This reader reads ahead the same way but says how many bytes it holds
(:meth:`_Reader.buffered`), so the pool's checks see them, and it can bound each read by a deadline
(the connect handshake, whose reads PyMySQL leaves without a timeout).

Private to :mod:`gpool.mysql`; not the place to import from.
"""

from __future__ import annotations

from time import monotonic
from typing import Any, Optional

# Read ahead up to this much per recv(): a row packet costs one slice, not one system call.
_CHUNK = 32768


class _Reader:
    """``read(n)`` over a socket with a visible read-ahead buffer and an optional deadline."""

    __slots__ = ("buf", "deadline", "pos", "sock")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = b""
        self.pos = 0
        #: a monotonic time: each recv() then waits at most until it (socket timeout)
        self.deadline: Optional[float] = None

    def buffered(self) -> int:
        """Bytes read from the socket and not yet consumed."""
        return len(self.buf) - self.pos

    def read(self, n: int) -> bytes:
        """``n`` bytes, or fewer when the peer closed (PyMySQL then reports the connection lost)."""
        pos = self.pos
        end = pos + n
        buf = self.buf
        if end <= len(buf):
            self.pos = end
            return buf[pos:end]
        return self._read_more(n)

    def fill(self) -> None:
        """Into the emptied buffer, one ``recv()`` (nothing when the peer closed)."""
        self.buf = b""
        self.pos = 0
        if self.deadline is not None:
            self.sock.settimeout(max(self.deadline - monotonic(), 0.001))
        self.buf = self.sock.recv(_CHUNK)

    def _read_more(self, n: int) -> bytes:
        parts = [self.buf[self.pos:]]
        got = len(parts[0])
        # Emptied before reading: an interrupted recv() (timeout, kill) loses the partial packet, and
        # PyMySQL closes the connection on any error in a read, so nothing half-read is ever reused.
        self.buf = b""
        self.pos = 0
        sock = self.sock
        while got < n:
            if self.deadline is not None:
                sock.settimeout(max(self.deadline - monotonic(), 0.001))
            data = sock.recv(max(n - got, _CHUNK))
            if not data:
                break
            parts.append(data)
            got += len(data)
        data = b"".join(parts)
        if got > n:
            self.buf = data
            self.pos = n
            return data[:n]
        return data

    def close(self) -> None:
        """Forget the buffer (the connection owns the socket and closes it)."""
        self.buf = b""
        self.pos = 0

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

import errno
from time import monotonic
from typing import Any, Callable, Optional

import pymysql.connections
import pymysql.protocol
from pymysql import err as _err
from pymysql.constants import CR, SERVER_STATUS

# Read ahead up to this much per recv(): a row packet costs one slice, not one system call.
_CHUNK = 32768

_Connection = pymysql.connections.Connection
_MysqlPacket = pymysql.protocol.MysqlPacket
_MAX_PACKET_LEN = pymysql.connections.MAX_PACKET_LEN  # a packet this long continues in the next one
_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS


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


class _ReadAhead:
    """How :class:`~gpool.mysql.MySQLConnection` reads replies: through a :class:`_Reader`, packets
    taken from its read-ahead in one step, and the reply of a ROLLBACK sent without waiting.

    Mixed in before PyMySQL's ``Connection``, whose attributes it uses.
    """

    _gpool_reader: Optional[_Reader] = None
    #: reset() sent a ROLLBACK whose reply settle() (or is_clean(), once all of it arrived) reads
    _gpool_owed = False
    # MySQLConnection's (its plain TCP socket and that socket's poll, set per connect)
    _gpool_tcp_sock: Any
    _gpool_tcp_poll: Callable[[int], Any]
    # PyMySQL's
    _sock: Any
    _result: Any
    _next_seq_id: int
    _current_timeout: Optional[float]
    _read_timeout: Optional[float]
    encoding: str
    server_status: int
    _force_close: Callable[[], None]

    @property
    def _rfile(self) -> Optional[_Reader]:
        return self._gpool_reader

    @_rfile.setter
    def _rfile(self, value: Any) -> None:
        # PyMySQL sets sock.makefile("rb") after connecting and after the TLS handshake; read through
        # a _Reader instead, whose read-ahead is_clean() can see.
        if value is not None:
            value.close()  # only the file object: the socket stays open
            value = _Reader(self._sock)
        self._gpool_reader = value

    def _read_packet(self, packet_type: Any = _MysqlPacket) -> Any:
        # A whole packet already read ahead (after a reply's first recv(), its other packets are):
        # taken from the buffer in one step, with PyMySQL's checks (sequence number, error packet),
        # without its two _read_bytes calls, the header unpack and the join (~1.5 us a packet).
        # Anything else (a partial packet, a wrong sequence number, 16 MB and over): PyMySQL's loop.
        reader = self._gpool_reader
        if reader is not None:
            if reader.pos == len(reader.buf):  # a reply's first packet: its recv() fills the buffer
                self._gpool_fill(reader)
            buf = reader.buf
            pos = reader.pos
            body = pos + 4
            if body <= len(buf):
                end = body + (buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16)
                if end <= len(buf) and end - body < _MAX_PACKET_LEN and buf[pos + 3] == self._next_seq_id:
                    reader.pos = end
                    self._next_seq_id = (self._next_seq_id + 1) % 256
                    packet = packet_type(buf[body:end], self.encoding)
                    if end > body and buf[body] == 0xFF:  # an error packet: as PyMySQL handles it
                        result = self._result
                        if result is not None and result.unbuffered_active is True:
                            result.unbuffered_active = False
                        packet.raise_for_error()
                    return packet
        return _Connection._read_packet(self, packet_type)

    def _gpool_fill(self, reader: _Reader) -> None:
        # One recv(), with PyMySQL's handling of a failed read (its _read_bytes): closed, then raised.
        # A peer that closed leaves the buffer empty, and PyMySQL's loop reports the connection lost.
        if self._current_timeout != self._read_timeout:
            self._sock.settimeout(self._read_timeout)
            self._current_timeout = self._read_timeout
        while True:
            try:
                reader.fill()
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                self._force_close()
                raise _err.OperationalError(
                    CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query ({exc})") from exc
            except BaseException:
                self._force_close()
                raise

    def _read_bytes(self, num_bytes: int) -> bytes:
        # PyMySQL reads each packet in two of these (header, body): served from the read-ahead here,
        # without its call to the reader through the _rfile property (~0.3 us a packet).
        reader = self._gpool_reader
        if reader is not None:
            pos = reader.pos
            end = pos + num_bytes
            buf = reader.buf
            if end <= len(buf):
                reader.pos = end
                return buf[pos:end]
        return _Connection._read_bytes(self, num_bytes)  # type: ignore[no-any-return]

    def _gpool_settled_now(self, sock: Any) -> bool:
        # The owed ROLLBACK's reply, read here when all of it has arrived (never waits, never raises):
        # a plain OK with no transaction open settles the connection at the cost of a check, not of
        # the pool's slow path. Anything else (not there yet, an error, a transaction still open)
        # is left to settle(), which waits for it or fails it, and the pool drops the connection.
        reader = self._gpool_reader
        if reader is None:
            return False
        try:
            if not self._gpool_reply_buffered(sock, reader):
                return False
        except OSError:
            return False
        buf, pos = reader.buf, reader.pos
        if len(buf) - pos < 9:
            return False  # the peer closed, or not an OK of the expected shape
        end = pos + 4 + (buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16)
        # header, 0x00, affected rows and insert id (one byte each below 251), status (2 bytes)
        if buf[pos + 3] != self._next_seq_id or end - pos < 9 or buf[pos + 4] or buf[pos + 5] >= 251 \
                or buf[pos + 6] >= 251:
            return False
        status = buf[pos + 7] | buf[pos + 8] << 8
        if status & _IN_TRANS:
            return False
        reader.pos = end
        self._next_seq_id = (self._next_seq_id + 1) % 256
        self.server_status = status
        self._gpool_owed = False
        return True

    def _gpool_reply_buffered(self, sock: Any, reader: _Reader) -> bool:
        """Whether a whole packet is in the read-ahead, after taking what the socket holds (never waits)."""
        if len(reader.buf) - reader.pos < 4:
            if sock is not self._gpool_tcp_sock or not self._gpool_tcp_poll(0):
                return False  # nothing arrived (or TLS: the waiting read decides)
            data = sock.recv(_CHUNK)  # readable: returns at once
            if not data:
                return True  # the peer closed: the read reports the connection lost
            reader.buf = reader.buf[reader.pos:] + data
            reader.pos = 0
        buf, pos = reader.buf, reader.pos
        if len(buf) - pos < 4:
            return False
        return len(buf) - pos >= 4 + (buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16)


"""Hostile fake servers on loopback (gevent ``StreamServer``): just enough MySQL and RESP to misbehave.

Each server counts the sessions it accepted and answers like a real server except for its
``mode``: a reply nobody asked for in the same segment as a real one, after the pool's ping, after
the login; a greeting that never comes, comes truncated or is garbage; a stall after the greeting;
every session dropped right after login; a slow PONG. Use them as context managers.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional, TypeVar

import gevent
from gevent.server import StreamServer


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block (returns once every thread is stopped); always SIGCONT after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 5
        while not _stopped(pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"pid {pid} did not stop")
            time.sleep(0.005)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _stopped(pid: int) -> bool:
    tasks = f"/proc/{pid}/task"
    for tid in os.listdir(tasks):
        with open(f"{tasks}/{tid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] not in ("T", "t"):
                return False
    return True


# -- the server ---------------------------------------------------------------------------------

_Fake = TypeVar("_Fake", bound="_FakeServer")


class _FakeServer:
    """A ``StreamServer`` on a free loopback port calling ``_handle(sock, address)`` per session; the
    subclass counts ``sessions`` and misbehaves as its ``mode`` says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sessions = 0
        self.server = StreamServer(("127.0.0.1", 0), self._handle)

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def __enter__(self: _Fake) -> _Fake:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(timeout=1)

    def _handle(self, sock: Any, address: Any) -> None:
        raise NotImplementedError


# -- MySQL ----------------------------------------------------------------------------------------

_CAPS = 0x0200 | 0x8000 | 0x0001 | 0x0004 | 0x2000 | 0x80000  # PROTOCOL_41 SECURE_CONN LONG_PW FLAGS TRANS PLUGIN_AUTH
_STATUS_AUTOCOMMIT = 0x0002


def _lenenc(data: bytes) -> bytes:
    assert len(data) < 251
    return bytes([len(data)]) + data


class _Wire:
    """Packets with sequence numbers, batched into one segment until flush()."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.out = b""
        self.seq = 0

    def packet(self, payload: bytes) -> None:
        self.out += struct.pack("<I", len(payload))[:3] + bytes([self.seq]) + payload
        self.seq = (self.seq + 1) % 256

    def flush(self) -> None:
        if self.out:
            self.sock.sendall(self.out)
            self.out = b""

    def read(self) -> Optional[bytes]:
        head = self._exact(4)
        if head is None:
            return None
        length = head[0] | head[1] << 8 | head[2] << 16
        self.seq = (head[3] + 1) % 256
        return self._exact(length)

    def _exact(self, n: int) -> Optional[bytes]:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data


def _greeting(thread_id: int) -> bytes:
    salt = b"abcdefgh" + b"ijklmnopqrst"
    return (b"\x0a" + b"5.5.5-10.11.0-FakeDB\0" + struct.pack("<I", thread_id) + salt[:8] + b"\0"
            + struct.pack("<H", _CAPS & 0xFFFF) + bytes([45]) + struct.pack("<H", _STATUS_AUTOCOMMIT)
            + struct.pack("<H", _CAPS >> 16) + bytes([21]) + b"\0" * 10 + salt[8:] + b"\0"
            + b"mysql_native_password\0")


def _ok(wire: _Wire, status: int = _STATUS_AUTOCOMMIT) -> None:
    wire.packet(b"\x00\x00\x00" + struct.pack("<HH", status, 0))


def _result(wire: _Wire, value: bytes, status: int = _STATUS_AUTOCOMMIT) -> None:
    """A one-column, one-row result set (column ``v``) holding ``value``."""
    wire.packet(b"\x01")
    wire.packet(_lenenc(b"def") + _lenenc(b"") + _lenenc(b"") + _lenenc(b"") + _lenenc(b"v") + _lenenc(b"v")
                + b"\x0c" + struct.pack("<HIBHB", 45, 255, 0xFD, 0, 0) + b"\0\0")
    wire.packet(b"\xfe" + struct.pack("<HH", 0, status))
    wire.packet(_lenenc(value))
    wire.packet(b"\xfe" + struct.pack("<HH", 0, status))


class FakeMySQL(_FakeServer):
    """A MySQL-protocol server: login with any password, ``SELECT 'text'`` returns ``text``, OK otherwise.

    Modes: ``normal``; ``stale_with_reply`` (a second result set ``STALE`` in the same segment as the
    reply to the first SELECT of a session); ``stale_after_ping`` (one after the OK of COM_PING);
    ``stale_after_auth`` (one after the login's OK); ``silent`` (no greeting); ``stall_after_greeting``
    (the login is never answered); ``truncated_greeting`` (half of it, then close); ``garbage_greeting``
    (an HTTP error, then nothing); ``drop_after_login`` (close right after answering the session set-up);
    ``in_trans_after_rollback`` (a ROLLBACK's OK says a transaction is still open);
    ``stale_after_rollback`` (a result set ``STALE`` after a ROLLBACK's OK, in the same segment). The
    status flags follow ``SET AUTOCOMMIT``.
    """

    def __init__(self, mode: str = "normal") -> None:
        super().__init__(mode)
        self.queries: list[bytes] = []

    def _handle(self, sock: Any, address: Any) -> None:
        self.sessions += 1
        wire = _Wire(sock)
        mode = self.mode
        try:
            if mode == "silent":
                gevent.sleep(30)
                return
            greeting = _greeting(self.sessions)
            if mode == "truncated_greeting":
                wire.packet(greeting)
                sock.sendall(wire.out[:20])
                return
            if mode == "garbage_greeting":
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                gevent.sleep(30)
                return
            wire.packet(greeting)
            wire.flush()
            if wire.read() is None:
                return
            if mode == "stall_after_greeting":
                gevent.sleep(30)
                return
            _ok(wire)
            if mode == "stale_after_auth":
                wire.seq = 0
                _result(wire, b"STALE")
            wire.flush()
            self._serve(wire)
        finally:
            sock.close()

    def _serve(self, wire: _Wire) -> None:
        first_select = True
        status = _STATUS_AUTOCOMMIT
        while True:
            packet = wire.read()
            if packet is None or packet[:1] == b"\x01":  # closed, COM_QUIT
                return
            command, body = packet[0], packet[1:]
            if command == 0x0E:  # COM_PING
                _ok(wire)
                if self.mode == "stale_after_ping":
                    wire.seq = 1
                    _result(wire, b"STALE")
            elif command == 0x03:  # COM_QUERY
                self.queries.append(body)
                match = re.match(rb"\s*SELECT\s+'([^']*)'", body, re.IGNORECASE)
                autocommit = re.match(rb"\s*SET\s+AUTOCOMMIT\s*=\s*([01])", body, re.IGNORECASE)
                if autocommit:
                    status = _STATUS_AUTOCOMMIT if autocommit.group(1) == b"1" else 0
                if body.strip().upper() == b"ROLLBACK" and self.mode.endswith("_after_rollback"):
                    _ok(wire, status | 1 if self.mode == "in_trans_after_rollback" else status)
                    if self.mode == "stale_after_rollback":
                        wire.seq = 1
                        _result(wire, b"STALE", status)
                elif match:
                    _result(wire, match.group(1), status)
                    if first_select and self.mode == "stale_with_reply":
                        wire.seq = 1
                        _result(wire, b"STALE")
                    first_select = False
                else:
                    _ok(wire, status)
                    if self.mode == "drop_after_login" and body.upper().startswith(b"SET NAMES"):
                        wire.flush()
                        return
            else:
                _ok(wire)
            wire.flush()


# -- RESP -----------------------------------------------------------------------------------------


class FakeRedis(_FakeServer):
    """A RESP2 server: PING, AUTH, SELECT, CLIENT, SET, GET, ECHO; anything else ``+OK``.

    Modes: ``normal``; ``stale_after_auth`` (``+STALE`` in the same segment as AUTH's ``+OK``);
    ``stale_after_ping`` (after each PONG); ``wrong_password`` (AUTH fails); ``slow_pong`` (PONG after
    ``delay`` seconds).
    """

    def __init__(self, mode: str = "normal", delay: float = 0.0) -> None:
        super().__init__(mode)
        self.delay = delay
        self.commands: list[list[bytes]] = []
        self.data: dict[bytes, bytes] = {}

    def _handle(self, sock: Any, address: Any) -> None:
        self.sessions += 1
        reader = sock.makefile("rb")
        try:
            while True:
                args = self._read(reader)
                if args is None:
                    return
                self.commands.append(args)
                sock.sendall(self._reply(args))
        finally:
            reader.close()
            sock.close()

    @staticmethod
    def _read(reader: Any) -> Optional[list[bytes]]:
        line = reader.readline()
        if not line:
            return None
        count = int(line[1:])
        args = []
        for _ in range(count):
            size = int(reader.readline()[1:])
            args.append(reader.read(size + 2)[:-2])
        return args

    def _reply(self, args: list[bytes]) -> bytes:
        name = args[0].upper()
        if name == b"AUTH":
            if self.mode == "wrong_password":
                return b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
            return b"+OK\r\n" + (b"+STALE\r\n" if self.mode == "stale_after_auth" else b"")
        if name == b"PING":
            if self.mode == "slow_pong":
                gevent.sleep(self.delay)
            return b"+PONG\r\n" + (b"+STALE\r\n" if self.mode == "stale_after_ping" else b"")
        if name == b"SET":
            self.data[args[1]] = args[2]
            return b"+OK\r\n"
        if name == b"GET":
            value = self.data.get(args[1])
            return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)
        return b"+OK\r\n"

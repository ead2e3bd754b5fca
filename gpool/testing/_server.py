"""What every launcher shares: finding binaries and ports, the process life cycle, cleanup at exit."""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any, Optional, TypeVar

log = logging.getLogger("gpool.testing")

_HOST = "127.0.0.1"
_SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")

# Every server started and not yet cleaned up; the atexit hook kills and removes what is left.
_live: set[_Server] = set()
_live_lock = threading.Lock()
_rng = random.Random()
_S = TypeVar("_S", bound="_Server")  # private: a test that seeds the global RNG must not make ports collide


# --------------------------------------------------------------------------------------------------
# helpers


def _find_binary(*names: str) -> Optional[str]:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    for name in names:
        for directory in _SEARCH_DIRS:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return None


def find_mariadbd() -> Optional[str]:
    """The path of the MariaDB server binary (``mariadbd``, else ``mysqld``), or None.

    Looks on ``PATH``, then in ``/usr/sbin`` and ``/usr/bin`` (Debian installs it in ``/usr/sbin``,
    which is not on a normal user's ``PATH``).
    """
    return _find_binary("mariadbd", "mysqld")


def find_redis_server() -> Optional[str]:
    """The path of ``redis-server`` (on ``PATH``, then in ``/usr/sbin`` and ``/usr/bin``), or None."""
    return _find_binary("redis-server")


def _find_install_db(mariadbd: str) -> Optional[str]:
    names = ("mariadb-install-db", "mysql_install_db")
    for name in names:  # prefer the script that belongs to the same installation as the server
        for directory in (os.path.dirname(mariadbd), os.path.join(os.path.dirname(mariadbd), "..", "bin")):
            path = os.path.normpath(os.path.join(directory, name))
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return _find_binary(*names)


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The servers set SO_REUSEADDR too, so sockets in TIME_WAIT do not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to right now.

    Prefers a random port below the kernel's ephemeral range (which starts at 32768 by default):
    the kernel never gives those to outgoing connections, so while a test server is stopped its
    port cannot be taken by some client socket, and the restart can bind it again. Falls back to
    asking the kernel (binding port 0) when that range is too small.
    """
    low, high = 20000, _ephemeral_low() - 1
    if high - low >= 1000:
        for _ in range(100):
            port = _rng.randint(low, high)
            if _can_bind(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(data.splitlines()[-lines:])


def _optional_import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _error_lines(path: str, limit: int = 15) -> str:
    """The lines of a log that mention an error (install-db buries them under a long help text)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.rstrip() for line in f if "ERROR" in line.upper()]
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(lines[-limit:]) if lines else _tail(path, 30)


_prctl: Any = None


def _preexec() -> Any:
    """A ``preexec_fn`` asking Linux to SIGKILL the server when this process dies without cleaning up.

    That covers ``kill -9`` of the test run, which skips atexit. The request follows the *thread*
    that forked the child, so it is only made when the caller is the main thread (whose native id
    is the pid on Linux), which lives as long as the process; otherwise None.
    """
    global _prctl
    if not sys.platform.startswith("linux") or threading.get_native_id() != os.getpid():
        return None
    if _prctl is None:
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
        except Exception:
            return None
    prctl = _prctl

    def set_pdeathsig() -> None:  # runs in the child between fork and exec: no imports, no locks
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL

    return set_pdeathsig


# --------------------------------------------------------------------------------------------------
# the common launcher


class _Server:
    """Process management shared by the launchers: a temp dir, a fixed port, one child process."""

    #: A launcher always runs its own server (test fixtures may substitute an external one).
    external = False
    _kind = "server"
    _log_name = "server.log"

    def __init__(self, *, port: Optional[int] = None, basedir: Optional[str] = None,
                 extra_args: Sequence[str] = ()) -> None:
        self._port = int(port) if port is not None else find_free_port()
        self._basedir = basedir
        self._extra_args = list(extra_args)
        self._tmpdir: Optional[str] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._prepared = False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state} dir={self._tmpdir}>"

    # -- read-only attributes

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return _HOST

    @property
    def port(self) -> int:
        """The TCP port, chosen at construction and kept across restarts."""
        return self._port

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """True while the server process is alive (it may not accept connections yet or any more)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def process(self) -> Optional[subprocess.Popen[bytes]]:
        """The last server process started (None before the first start()); it may have exited."""
        return self._proc

    @property
    def pid(self) -> Optional[int]:
        """The pid of the running server, else None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def tmpdir(self) -> Optional[str]:
        """The private directory holding every file of this server (None before start / after cleanup)."""
        return self._tmpdir

    @property
    def log_path(self) -> Optional[str]:
        """The server's log file (the error log for MariaDB)."""
        return os.path.join(self._tmpdir, self._log_name) if self._tmpdir else None

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the server's log ('' before the first start)."""
        path = self.log_path
        return _tail(path, lines) if path and os.path.exists(path) else ""

    # -- lifecycle

    def start(self: _S, timeout: float = 60.0) -> _S:
        """Start the server and return once it accepts connections; return ``self``.

        A no-op when already running. Raises RuntimeError, with the end of the server's log, when
        the server cannot be started or is not ready within ``timeout`` seconds (the half-started
        process is killed).
        """
        if self.running:
            return self
        deadline = time.monotonic() + timeout
        begun = time.monotonic()
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix=f"gpool-{self._kind}-", dir=self._basedir)
            self._prepared = False
        with _live_lock:
            _live.add(self)
        try:
            if not self._prepared:
                self._prepare(deadline)
                self._prepared = True
            self._launch()
            self._wait_ready(deadline)
        except BaseException:
            self._kill_process()
            raise
        log.debug("%s ready at %s (pid %s) in %.2fs", self._kind, self.url, self.pid, time.monotonic() - begun)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server gracefully (SIGTERM, wait up to ``timeout``), else SIGKILL it.

        Returns once the process has exited and been reaped. The temp dir is kept, so ``start()``
        brings the server back on the same port.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        begun = time.monotonic()
        self._signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s pid %s ignored SIGTERM for %.0fs: killing it", self._kind, proc.pid, timeout)
            self._kill_process()
        log.debug("%s pid %s stopped in %.2fs (exit %s)", self._kind, proc.pid, time.monotonic() - begun,
                  proc.returncode)

    def kill(self) -> None:
        """SIGKILL the server now (a crash) and reap it; the temp dir is kept for a restart."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._kill_process()
        log.debug("%s pid %s killed", self._kind, proc.pid)

    def cleanup(self) -> None:
        """Stop the server if it runs and delete its temp dir; safe to call more than once."""
        try:
            self.stop(timeout=10.0)
        finally:
            self._kill_process()
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                log.debug("%s removed %s", self._kind, self._tmpdir)
                self._tmpdir = None
            with _live_lock:
                _live.discard(self)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    # -- internals

    def _signal(self, sig: int) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)  # its own session: the group holds the server and any helpers
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def _kill_process(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
            try:
                proc.wait(timeout=10.0)
            except subprocess.TimeoutExpired:  # pragma: no cover - a process stuck in the kernel
                log.error("%s pid %s survived SIGKILL for 10s", self._kind, proc.pid)

    def _popen(self, argv: list[str], output: str) -> subprocess.Popen[bytes]:
        assert self._tmpdir is not None
        log.debug("starting %s", " ".join(argv))
        with open(os.path.join(self._tmpdir, output), "ab") as out:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._tmpdir,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_preexec(),
            )

    def _remaining(self, deadline: float) -> float:
        return deadline - time.monotonic()

    def _fail(self, message: str) -> RuntimeError:
        parts = [f"{type(self).__name__} on port {self._port}: {message}"]
        for path in self._log_files():
            text = _tail(path, 30) if os.path.exists(path) else ""
            if text.strip():
                parts.append(f"--- last lines of {path} ---\n{text}")
        return RuntimeError("\n".join(parts))

    def _log_files(self) -> list[str]:
        return [self.log_path] if self.log_path else []

    def _wait_ready(self, deadline: float) -> None:
        delay = 0.01
        last_error: Optional[BaseException] = None
        while True:
            proc = self._proc
            assert proc is not None
            if proc.poll() is not None:
                raise self._fail(f"the server exited with status {proc.returncode} while starting")
            try:
                self._check_ready(max(0.2, min(2.0, self._remaining(deadline))))
                return
            except Exception as exc:
                last_error = exc
            if self._remaining(deadline) <= 0:
                self._kill_process()
                raise self._fail(f"not ready in time; last error: {last_error!r}")
            time.sleep(min(delay, max(0.0, self._remaining(deadline))))
            delay = min(delay * 2, 0.1)

    def _prepare(self, deadline: float) -> None:
        """One-time set-up of the temp dir before the first launch."""

    def _launch(self) -> None:
        raise NotImplementedError

    def _check_ready(self, timeout: float) -> None:
        """Raise unless the server serves a real request."""
        raise NotImplementedError


# --------------------------------------------------------------------------------------------------
# process exit


@atexit.register
def _cleanup_all() -> None:
    """Kill and remove every server the process started and did not clean up."""
    with _live_lock:
        servers = list(_live)
    for server in servers:
        try:
            server._kill_process()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass
        if server._tmpdir is not None:
            shutil.rmtree(server._tmpdir, ignore_errors=True)
            server._tmpdir = None
        with _live_lock:
            _live.discard(server)

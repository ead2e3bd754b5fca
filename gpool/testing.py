"""Private, throwaway MariaDB and Redis servers for test suites.

Each launcher runs its own server process on ``127.0.0.1``, on a port nobody else uses, with all its
files in a fresh temporary directory. Nothing is shared with a system server and nothing outlives
the test run: :meth:`~MariaDBServer.cleanup` (or leaving a ``with`` block) stops the process and
deletes the directory, and an :mod:`atexit` hook does the same for servers a test run forgot.

A server can be stopped, killed and started again: the restart reuses the same port and, for
MariaDB, the same data directory, so tests can exercise a pool across a server restart or crash::

    from gpool.testing import MariaDBServer

    with MariaDBServer() as server:          # mariadb-install-db + mariadbd, ready for queries
        conn = pymysql.connect(**server.connect_kwargs())
        ...
        server.kill()                        # crash it (SIGKILL)
        server.start()                       # same port, same data (after InnoDB recovery)

The module needs only the standard library; when PyMySQL is importable it is used to check that
MariaDB is ready, otherwise the ``mariadb`` command-line client is. It works unchanged in a
process that has called ``gevent.monkey.patch_all()``.

Run one from a shell with ``python -m gpool.testing mysql`` (or ``redis``): it prints the URL and
serves until Ctrl-C.
"""

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

__all__ = [
    "MariaDBServer",
    "RedisServer",
    "find_free_port",
    "find_mariadbd",
    "find_redis_server",
]

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
# MariaDB


class MariaDBServer(_Server):
    """A private ``mariadbd`` on 127.0.0.1, a free port, in a temp dir; stopped and removed by cleanup().

    The first :meth:`start` creates a data directory with ``mariadb-install-db`` (root with an empty
    password), starts the server and creates the database ``test``; later starts reuse that data
    directory and port, so data committed before a stop (or a kill) is still there afterwards.

    The server is tuned to start fast and use little memory (64 MB buffer pool, small redo log,
    no binary log, no performance schema, relaxed flushing); ``max_connections`` is 1000.
    ``extra_args`` are appended to the ``mariadbd`` command line (``["--wait-timeout=2"]``) and
    override those settings.

    Args:
        port: the TCP port; by default a free one.
        basedir: where to create the temp dir (default: the system temp dir). Keep it short: the
            Unix socket path inside it must fit in 107 bytes.
        extra_args: more ``mariadbd`` options.
    """

    _kind = "mariadb"
    _log_name = "error.log"

    # Passed to mariadb-install-db too, so the files it creates already have the final sizes.
    _INNODB_ARGS = (
        "--innodb-buffer-pool-size=64M",
        "--innodb-log-file-size=16M",
        "--innodb-log-buffer-size=8M",
        "--innodb-doublewrite=0",
        "--innodb-flush-log-at-trx-commit=2",
    )

    def __init__(self, *, port: Optional[int] = None, basedir: Optional[str] = None,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(port=port, basedir=basedir, extra_args=extra_args)
        self._mariadbd: Optional[str] = None
        self._setup_done = False  # root@127.0.0.1 and the test database exist

    @property
    def user(self) -> str:
        """Always ``root``."""
        return "root"

    @property
    def password(self) -> str:
        """Always empty."""
        return ""

    @property
    def database(self) -> str:
        """Always ``test`` (created by the first start)."""
        return "test"

    @property
    def url(self) -> str:
        """``mysql://root@127.0.0.1:PORT/test``"""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def datadir(self) -> Optional[str]:
        """The data directory (inside :attr:`tmpdir`)."""
        return os.path.join(self._tmpdir, "data") if self._tmpdir else None

    @property
    def socket_path(self) -> Optional[str]:
        """The server's Unix socket (inside :attr:`tmpdir`)."""
        return os.path.join(self._tmpdir, "mysqld.sock") if self._tmpdir else None

    def connect_kwargs(self) -> dict[str, Any]:
        """``host``, ``port``, ``user``, ``password`` and ``database``, for ``pymysql.connect(**kw)``."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                "database": self.database}

    def _log_files(self) -> list[str]:
        if self._tmpdir is None:
            return []
        return [os.path.join(self._tmpdir, "console.log"), os.path.join(self._tmpdir, self._log_name)]

    def _server_tmpdir(self) -> str:
        # Private, not /tmp: at start-up mariadbd deletes every "#sql*" file in its tmpdir, which
        # breaks any other server (or concurrent mariadb-install-db) using the same directory.
        assert self._tmpdir is not None
        path = os.path.join(self._tmpdir, "tmp")
        os.makedirs(path, exist_ok=True)
        return path

    def _user_args(self) -> list[str]:
        # mariadbd refuses to run as root unless told to; the option is only valid for root.
        return ["--user=root"] if os.geteuid() == 0 else []

    def _prepare(self, deadline: float) -> None:
        mariadbd = find_mariadbd()
        if mariadbd is None:
            raise RuntimeError("mariadbd not found (install the mariadb-server package)")
        install_db = _find_install_db(mariadbd)
        if install_db is None:
            raise RuntimeError("mariadb-install-db not found (install the mariadb-server package)")
        self._mariadbd = mariadbd
        assert self._tmpdir is not None and self.datadir is not None
        shutil.rmtree(self.datadir, ignore_errors=True)  # left over by an interrupted first start
        argv = [
            install_db,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            f"--tmpdir={self._server_tmpdir()}",
            *self._user_args(),
            *self._INNODB_ARGS,
        ]
        log.debug("running %s", " ".join(argv))
        begun = time.monotonic()
        logfile = os.path.join(self._tmpdir, "install-db.log")
        if self._remaining(deadline) <= 0:
            raise self._fail("no time left to run mariadb-install-db")
        with open(logfile, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self._tmpdir, start_new_session=True, close_fds=True,
                                    preexec_fn=_preexec())
        try:
            status = proc.wait(timeout=max(0.0, self._remaining(deadline)))
        except subprocess.TimeoutExpired:
            # The script runs mariadbd --bootstrap as a child: kill the whole group, not just the shell.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise RuntimeError(f"mariadb-install-db did not finish in time\n{_tail(logfile, 30)}") from None
        except BaseException:  # Ctrl-C, SIGTERM, gevent.Timeout: stop the script and its mariadbd --bootstrap
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
        if status != 0:
            raise RuntimeError(f"mariadb-install-db failed with status {status}:\n{_error_lines(logfile)}")
        log.debug("mariadb-install-db took %.2fs", time.monotonic() - begun)

    def _launch(self) -> None:
        assert self._tmpdir is not None
        if self._mariadbd is None:
            self._mariadbd = find_mariadbd()
            if self._mariadbd is None:
                raise RuntimeError("mariadbd not found (install the mariadb-server package)")
        argv = [
            self._mariadbd,
            "--no-defaults",
            *self._user_args(),
            f"--datadir={self.datadir}",
            f"--socket={self.socket_path}",
            f"--pid-file={os.path.join(self._tmpdir, 'mysqld.pid')}",
            f"--log-error={self.log_path}",
            f"--tmpdir={self._server_tmpdir()}",
            f"--port={self._port}",
            "--bind-address=127.0.0.1",
            "--port-open-timeout=10",  # a restart waits for its port instead of failing
            "--skip-name-resolve",
            "--skip-log-bin",
            "--performance-schema=OFF",
            "--loose-feedback=OFF",
            "--max-connections=1000",
            "--table-open-cache=400",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            *self._INNODB_ARGS,
            *self._extra_args,
        ]
        self._proc = self._popen(argv, "console.log")

    def _check_ready(self, timeout: float) -> None:
        if not self._setup_done:
            self._run_setup_sql(timeout)
            self._setup_done = True
        self._tcp_ping(timeout)

    _SETUP_SQL = (
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''",
        "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION",
        "CREATE DATABASE IF NOT EXISTS test",
    )

    def _run_setup_sql(self, timeout: float) -> None:
        """Over the Unix socket as root@localhost: make root@127.0.0.1 usable and create ``test``."""
        pymysql = _optional_import("pymysql")
        if pymysql is not None:
            conn = pymysql.connect(unix_socket=self.socket_path, user="root", password="",
                                   connect_timeout=timeout, autocommit=True)
            try:
                with conn.cursor() as cur:
                    for statement in self._SETUP_SQL:
                        cur.execute(statement)
            finally:
                conn.close()
            return
        client = _find_binary("mariadb", "mysql")
        if client is None:
            raise RuntimeError("neither PyMySQL nor the mariadb client is available")
        subprocess.run([client, "--no-defaults", f"--socket={self.socket_path}", "-uroot",
                        "-e", ";".join(self._SETUP_SQL)],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=True)

    def _tcp_ping(self, timeout: float) -> None:
        """A real login over TCP as the URL's user, into the ``test`` database."""
        pymysql = _optional_import("pymysql")
        if pymysql is not None:
            conn = pymysql.connect(**self.connect_kwargs(), connect_timeout=timeout)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
            finally:
                conn.close()
            return
        client = _find_binary("mariadb", "mysql")
        if client is None:
            raise RuntimeError("neither PyMySQL nor the mariadb client is available")
        subprocess.run([client, "--no-defaults", "--protocol=TCP", f"--host={self.host}", f"--port={self.port}",
                        "-uroot", self.database, "-e", "SELECT 1"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=True)

    def cleanup(self) -> None:
        super().cleanup()
        self._setup_done = False


# --------------------------------------------------------------------------------------------------
# Redis


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


def _main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gpool.testing",
                                     description="Run a private throwaway test server until Ctrl-C.")
    parser.add_argument("kind", choices=("mysql", "redis"))
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log lifecycle messages")
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    server: _Server = MariaDBServer(port=args.port) if args.kind == "mysql" else RedisServer(port=args.port)
    try:
        server.start()
        print(server.url, flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while server.running:
            time.sleep(0.5)
        print(f"server exited:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.cleanup()


if __name__ == "__main__":
    sys.exit(_main())

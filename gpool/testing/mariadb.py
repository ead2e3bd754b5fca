"""A private MariaDB server for tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any, Optional

from ._server import (
    _error_lines,
    _find_binary,
    _find_install_db,
    _optional_import,
    _preexec,
    _Server,
    _tail,
    find_mariadbd,
    log,
)


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
        self._run_sql(self._SETUP_SQL, timeout, dict(unix_socket=self.socket_path, user="root", password="",
                                                     autocommit=True),
                      [f"--socket={self.socket_path}", "-uroot"])

    def _tcp_ping(self, timeout: float) -> None:
        """A real login over TCP as the URL's user, into the ``test`` database."""
        self._run_sql(("SELECT 1",), timeout, self.connect_kwargs(),
                      ["--protocol=TCP", f"--host={self.host}", f"--port={self.port}", "-uroot", self.database])

    def _run_sql(self, statements: Sequence[str], timeout: float, connect: dict[str, Any],
                 client_args: list[str]) -> None:
        """Run ``statements`` with PyMySQL (``pymysql.connect(**connect)``) or, without PyMySQL, the
        mariadb client (``client_args`` say where to and as whom): the launcher must not need PyMySQL."""
        pymysql = _optional_import("pymysql")
        if pymysql is not None:
            conn = pymysql.connect(**connect, connect_timeout=timeout)
            try:
                with conn.cursor() as cur:
                    for statement in statements:
                        cur.execute(statement)
            finally:
                conn.close()
            return
        client = _find_binary("mariadb", "mysql")
        if client is None:
            raise RuntimeError("neither PyMySQL nor the mariadb client is available")
        subprocess.run([client, "--no-defaults", *client_args, "-e", ";".join(statements)],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=True)

    def cleanup(self) -> None:
        super().cleanup()
        self._setup_done = False

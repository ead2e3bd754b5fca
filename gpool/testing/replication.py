"""A private MariaDB primary with GTID replicas, and a single-node Galera, for failover tests.

::

    from gpool.testing import MariaDBReplicaSet

    with MariaDBReplicaSet(replicas=1) as cluster:
        primary, replica = cluster.servers
        cluster.hosts                        # ["127.0.0.1:PORT0", "127.0.0.1:PORT1"]
        cluster.url                          # mysql://app:app-secret@127.0.0.1:PORT0,127.0.0.1:PORT1/test
        cluster.fence(primary)               # read_only=ON on the old primary
        cluster.promote(replica)             # the replica takes writes; the others replicate from it
        cluster.freeze(primary)              # SIGSTOP: TCP handshakes still complete, nothing answers
        cluster.thaw(primary)                # SIGCONT

Every server logs binary logs with GTIDs (``--log-bin --gtid-strict-mode=1``, its own ``server_id``)
so that any of them can be promoted. The application user (``app``, password ``app-secret``) has no
``SUPER`` nor ``READ ONLY ADMIN`` privilege: ``read_only=ON`` applies to it, as it would not to root.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional, TypeVar

from ._server import _optional_import, find_free_port
from .mariadb import MariaDBServer

_APP_USER = "app"
_APP_PASSWORD = "app-secret"
_REPL_USER = "repl"
_REPL_PASSWORD = "repl-secret"

_GALERA_PROVIDERS = ("/usr/lib/galera/libgalera_smm.so", "/usr/lib/galera-4/libgalera_smm.so",
                     "/usr/lib64/galera-4/libgalera_smm.so", "/usr/lib/libgalera_smm.so")


def find_galera_provider() -> Optional[str]:
    """The path of ``libgalera_smm.so`` (Debian package ``galera-4``), or None."""
    return next((path for path in _GALERA_PROVIDERS if os.path.exists(path)), None)


def _pymysql() -> Any:
    module = _optional_import("pymysql")
    if module is None:
        raise RuntimeError("gpool.testing.replication needs PyMySQL")
    return module


@contextmanager
def root_connection(server: MariaDBServer, timeout: float = 10.0) -> Iterator[Any]:
    """A PyMySQL connection to ``server`` as root over TCP, autocommit on; closed on exit."""
    conn = _pymysql().connect(host=server.host, port=server.port, user="root", password="",
                              connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout,
                              autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def run_sql(server: MariaDBServer, *statements: str, timeout: float = 10.0) -> list[tuple[Any, ...]]:
    """Run ``statements`` as root on ``server``; the rows of the last one."""
    rows: list[tuple[Any, ...]] = []
    with root_connection(server, timeout) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
            rows = list(cur.fetchall())
    return rows


def _app_user_sql() -> tuple[str, ...]:
    # Not replicated (sql_log_bin=0): every server creates its own users before replication starts.
    return (
        "SET SESSION sql_log_bin=0",
        f"CREATE USER IF NOT EXISTS '{_APP_USER}'@'127.0.0.1' IDENTIFIED BY '{_APP_PASSWORD}'",
        f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON test.* TO '{_APP_USER}'@'127.0.0.1'",
        f"CREATE USER IF NOT EXISTS '{_REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{_REPL_PASSWORD}'",
        f"GRANT REPLICATION SLAVE ON *.* TO '{_REPL_USER}'@'127.0.0.1'",
        "SET SESSION sql_log_bin=1",
    )


_C = TypeVar("_C", bound="_Cluster")


class _Cluster:
    """What the replica set and the Galera node share: servers, the app user, signals, the context manager."""

    servers: tuple[MariaDBServer, ...]

    @property
    def user(self) -> str:
        """The unprivileged application user: ``app``."""
        return _APP_USER

    @property
    def password(self) -> str:
        """The application user's password."""
        return _APP_PASSWORD

    @property
    def database(self) -> str:
        """``test``."""
        return "test"

    @property
    def hosts(self) -> list[str]:
        """``["127.0.0.1:PORT", ...]``, in the order of :attr:`servers`."""
        return [f"{s.host}:{s.port}" for s in self.servers]

    @property
    def url(self) -> str:
        """``mysql://app:app-secret@HOST:PORT,HOST:PORT/test``, every server in order."""
        return f"mysql://{_APP_USER}:{_APP_PASSWORD}@{','.join(self.hosts)}/test"

    def app_kwargs(self) -> dict[str, Any]:
        """``user``, ``password``, ``database`` of the application user (no host)."""
        return {"user": _APP_USER, "password": _APP_PASSWORD, "database": "test"}

    def freeze(self, server: MariaDBServer) -> None:
        """``SIGSTOP`` the server: the kernel still completes TCP handshakes, nothing answers."""
        pid = server.pid
        if pid is None:
            raise RuntimeError(f"{server!r} is not running")
        os.kill(pid, signal.SIGSTOP)

    def thaw(self, server: MariaDBServer) -> None:
        """``SIGCONT`` a server stopped by :meth:`freeze` (a no-op when it runs)."""
        pid = server.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def server_id(self, server: MariaDBServer) -> int:
        """``@@server_id`` of ``server``."""
        return int(run_sql(server, "SELECT @@server_id")[0][0])

    def start(self: _C, timeout: float = 60.0) -> _C:
        """Start the servers and create the users; return ``self`` (each kind says what else)."""
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self.start()

    def cleanup(self) -> None:
        """Stop every server (thawed first) and delete its files; safe to call twice."""
        for server in self.servers:
            try:
                self.thaw(server)
            finally:
                server.cleanup()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


class MariaDBReplicaSet(_Cluster):
    """A MariaDB primary and ``replicas`` GTID replicas, private processes on 127.0.0.1.

    ``servers[0]`` starts as the primary (``server_id`` 1), ``servers[i]`` as replicas
    (``server_id`` i + 1, ``read_only=ON``). :meth:`start` starts them all at once, creates the users
    and starts replication: on each replica ``RESET MASTER; SET GLOBAL gtid_slave_pos=''`` then
    ``CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos``, as strict GTID mode requires.

    Args:
        replicas: how many replicas (at least 1).
        basedir: where the servers' temp dirs go.
        extra_args: more ``mariadbd`` options for every server.
    """

    def __init__(self, replicas: int = 1, *, basedir: Optional[str] = None, extra_args: Sequence[str] = ()) -> None:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
        self.servers = tuple(
            MariaDBServer(basedir=basedir, extra_args=[
                "--log-bin=mysql-bin", f"--server-id={i + 1}", "--gtid-strict-mode=1", "--log-slave-updates=1",
                "--binlog-format=ROW", "--skip-slave-start", *extra_args])
            for i in range(replicas + 1))
        self._primary = self.servers[0]

    @property
    def primary(self) -> MariaDBServer:
        """The server last made primary (by :meth:`start` or :meth:`promote`)."""
        return self._primary

    @property
    def replicas(self) -> list[MariaDBServer]:
        """Every server but :attr:`primary`."""
        return [s for s in self.servers if s is not self._primary]

    def start(self, timeout: float = 60.0) -> MariaDBReplicaSet:
        """Start every server (in parallel), create the users, start replication; return ``self``."""
        errors: list[BaseException] = []

        def start_one(server: MariaDBServer) -> None:
            try:
                server.start(timeout)
            except BaseException as exc:  # reported below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=start_one, args=(s,), daemon=True) for s in self.servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self.cleanup()
            raise errors[0]
        try:
            for server in self.servers:
                run_sql(server, *_app_user_sql())
            run_sql(self._primary, "SET GLOBAL read_only=OFF")
            for replica in self.replicas:
                self.attach(replica, self._primary, from_start=True)
        except BaseException:
            self.cleanup()
            raise
        return self

    def attach(self, replica: MariaDBServer, primary: Optional[MariaDBServer] = None, *,
               from_start: bool = False) -> None:
        """Make ``replica`` (read_only=ON) replicate from ``primary`` (default :attr:`primary`).

        ``from_start``: replay the primary's whole binary log; otherwise start at its current GTID
        position, discarding the replica's own binary log (for re-attaching a demoted primary whose
        history diverged; its data is then whatever it was).
        """
        primary = primary or self._primary
        position = "" if from_start else str(run_sql(primary, "SELECT @@global.gtid_binlog_pos")[0][0] or "")
        run_sql(
            replica,
            "STOP SLAVE",
            "RESET SLAVE ALL",
            "SET GLOBAL read_only=ON",
            "RESET MASTER",
            f"SET GLOBAL gtid_slave_pos='{position}'",
            f"CHANGE MASTER TO MASTER_HOST='{primary.host}', MASTER_PORT={primary.port}, "
            f"MASTER_USER='{_REPL_USER}', MASTER_PASSWORD='{_REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, "
            "MASTER_CONNECT_RETRY=1",
            "START SLAVE",
        )

    def fence(self, server: MariaDBServer) -> None:
        """``SET GLOBAL read_only=ON`` on ``server`` (the demotion of a primary)."""
        run_sql(server, "SET GLOBAL read_only=ON")

    def promote(self, server: MariaDBServer, *, repoint: bool = True) -> None:
        """Make ``server`` the primary: stop replication on it and accept writes (``read_only=OFF``).

        With ``repoint``, every other running server that is not frozen becomes its replica (from the
        new primary's current position). The old primary is not fenced: call :meth:`fence` for that.
        """
        run_sql(server, "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only=OFF")
        self._primary = server
        if repoint:
            for other in self.replicas:
                if other.running and not _stopped(other):
                    self.attach(other, server)

    def reset(self) -> None:
        """Back to the starting layout: ``servers[0]`` primary, the others its replicas (from now on)."""
        for server in self.servers:
            self.thaw(server)
            if not server.running:
                server.start()
        self.promote(self.servers[0])

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait until every replica has applied everything the primary has logged."""
        position = str(run_sql(self._primary, "SELECT @@global.gtid_binlog_pos")[0][0] or "")
        for replica in self.replicas:
            rows = run_sql(replica, f"SELECT MASTER_GTID_WAIT('{position}', {float(timeout)})", timeout=timeout + 5)
            if rows[0][0] != 0:
                raise RuntimeError(f"{replica!r} did not reach GTID {position} in {timeout}s")


class GaleraNode(_Cluster):
    """A single-node Galera cluster (``wsrep_cluster_address=gcomm://``), a private process.

    :meth:`desync` (``wsrep_desync=ON``: state Donor/Desynced), :meth:`make_non_primary`
    (isolated: ``wsrep_ready=OFF``) and :meth:`restore`.
    Needs ``libgalera_smm.so`` (Debian package ``galera-4``): see :func:`find_galera_provider`.
    """

    def __init__(self, *, basedir: Optional[str] = None, extra_args: Sequence[str] = ()) -> None:
        provider = find_galera_provider()
        if provider is None:
            raise RuntimeError("libgalera_smm.so not found (install the galera-4 package)")
        gcomm_port = find_free_port()
        self.server = MariaDBServer(basedir=basedir, extra_args=[
            "--wsrep-on=ON", f"--wsrep-provider={provider}", "--wsrep-cluster-address=gcomm://",
            "--wsrep-node-address=127.0.0.1", "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2",
            f"--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{gcomm_port};"
            f"ist.recv_addr=127.0.0.1:{find_free_port()}",
            f"--wsrep-sst-receive-address=127.0.0.1:{find_free_port()}",
            "--wsrep-cluster-name=gpool-test", "--server-id=1", *extra_args])
        self.servers = (self.server,)

    def start(self, timeout: float = 60.0) -> GaleraNode:
        """Start the node and create the users; return ``self``."""
        try:
            self.server.start(timeout)
            run_sql(self.server, *_app_user_sql()[1:-1])
        except BaseException:
            self.cleanup()
            raise
        return self

    def status(self) -> dict[str, str]:
        """``wsrep_ready``, ``wsrep_local_state_comment`` and ``wsrep_cluster_status``."""
        rows = run_sql(self.server, "SHOW GLOBAL STATUS WHERE Variable_name IN "
                       "('wsrep_ready', 'wsrep_local_state_comment', 'wsrep_cluster_status')")
        return {str(name).lower(): str(value) for name, value in rows}

    def desync(self) -> None:
        """``SET GLOBAL wsrep_desync=ON``: the node leaves the Synced state."""
        run_sql(self.server, "SET GLOBAL wsrep_desync=ON")

    def make_non_primary(self, timeout: float = 10.0) -> None:
        """Cut the node off its cluster (``gmcast.isolate=2``): not a primary component any more,
        ``wsrep_ready=OFF``, and queries fail with 1047. Only :meth:`restore` (a restart) undoes it."""
        run_sql(self.server, "SET GLOBAL wsrep_provider_options='gmcast.isolate=2'")
        deadline = time.monotonic() + timeout
        while self.status().get("wsrep_ready") != "OFF":  # the provider leaves the component asynchronously
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Galera node was still ready {timeout}s after gmcast.isolate=2")
            time.sleep(0.05)

    def restore(self, timeout: float = 60.0) -> None:
        """Undo :meth:`desync` and :meth:`make_non_primary` (restarting the node if it is not ready)."""
        if self.status().get("wsrep_ready") != "ON":
            self.server.stop()
            self.server.start(timeout)
        run_sql(self.server, "SET GLOBAL wsrep_desync=OFF")


def _stopped(server: MariaDBServer) -> bool:
    """True when the server's process is stopped (SIGSTOP), from /proc."""
    pid = server.pid
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"T"
    except (OSError, IndexError):
        return False

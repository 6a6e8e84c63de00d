"""MariaDB connector (pymysql): probes every server in parallel into an immutable view, and
sends statements one by one. Every connection has connect, read and write timeouts: a
stopped (SIGSTOP) server still completes the TCP handshake, so only the read timeout saves
a probe from hanging."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from drengine.errors import CommandFailed, ConnectError, ProbeTimeout
from drengine.inventory import Cluster, Inventory, Member
from drengine.steps import Fact, Statement, fact

if TYPE_CHECKING:
    import pymysql


@dataclass(frozen=True)
class Sql:
    """A statement with its parameters. `shown()` is the exact text an operator could type,
    with secret parameters masked."""

    template: str
    params: tuple[str | int | float, ...] = ()
    secret: frozenset[int] = frozenset()

    def shown(self) -> str:
        if not self.params:
            return self.template
        shown = tuple("'***'" if i in self.secret else _literal(v) for i, v in enumerate(self.params))
        return self.template % shown

    def on(self, target: str) -> Statement:
        return Statement(target=target, text=self.shown(), language="sql")


def _literal(value: str | int | float) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@fact
class Channel(Fact):
    """One row of SHOW ALL SLAVES STATUS."""

    connection_name: str = ""
    master_host: str = ""
    master_port: int = 0
    io_running: str = "No"  # Yes, No, Connecting, Preparing
    sql_running: str = "No"
    using_gtid: str = "No"
    gtid_io_pos: str = ""
    last_io_errno: int = 0
    last_io_error: str = ""
    last_sql_errno: int = 0
    last_sql_error: str = ""
    seconds_behind_master: int | None = None


@fact
class ServerView(Fact):
    name: str
    address: str
    port: int
    reachable: bool
    error: str = ""
    server_id: int = 0
    read_only: bool = True
    log_bin: bool = False
    log_slave_updates: bool = False
    gtid_strict_mode: bool = False
    gtid_binlog_pos: str = ""
    gtid_slave_pos: str = ""
    gtid_current_pos: str = ""
    gtid_binlog_state: str = ""
    channels: list[Channel] = []
    probe_seconds: float = 0.0

    @property
    def is_replica(self) -> bool:
        return bool(self.channels)

    @property
    def is_writable_primary(self) -> bool:
        return self.reachable and not self.read_only and not self.channels


@fact
class ClusterView(Fact):
    cluster: str
    servers: list[ServerView]
    observed_at: float

    def server(self, name: str) -> ServerView:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)


class MariaDBAPI(Protocol):
    """What the MariaDB actions use; the real connector and the simulator both provide it."""

    cluster: Cluster

    def observe(self) -> ClusterView: ...

    def probe(self, member: str) -> ServerView: ...

    def execute(self, member: str, sql: Sql, timeout: float | None = None) -> None: ...

    def query(self, member: str, sql: Sql, timeout: float | None = None) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...


def _flag(value: Any) -> bool:
    return str(value).upper() in ("1", "ON", "YES", "TRUE")


def _channel(row: dict[str, Any]) -> Channel:
    sbm = row.get("Seconds_Behind_Master")
    return Channel(
        connection_name=str(row.get("Connection_name") or ""),
        master_host=str(row.get("Master_Host") or ""),
        master_port=int(row.get("Master_Port") or 0),
        io_running=str(row.get("Slave_IO_Running") or "No"),
        sql_running=str(row.get("Slave_SQL_Running") or "No"),
        using_gtid=str(row.get("Using_Gtid") or "No"),
        gtid_io_pos=str(row.get("Gtid_IO_Pos") or ""),
        last_io_errno=int(row.get("Last_IO_Errno") or 0),
        last_io_error=str(row.get("Last_IO_Error") or ""),
        last_sql_errno=int(row.get("Last_SQL_Errno") or 0),
        last_sql_error=str(row.get("Last_SQL_Error") or ""),
        seconds_behind_master=None if sbm is None else int(sbm),
    )


# drengine's own table for verification writes, on MariaDB replication and Galera alike.
HEARTBEAT_DDL = [
    Sql("CREATE DATABASE IF NOT EXISTS drengine"),
    Sql("CREATE TABLE IF NOT EXISTS drengine.heartbeat (id VARCHAR(64) PRIMARY KEY, written_at DOUBLE NOT NULL)"),
]

VARIABLES_SQL = (
    "SELECT @@server_id, @@read_only, @@log_bin, @@log_slave_updates, @@gtid_strict_mode, "
    "@@gtid_binlog_pos, @@gtid_slave_pos, @@gtid_current_pos, @@gtid_binlog_state"
)


class MariaDBBackend:
    def __init__(self, cluster: Cluster, inventory: Inventory) -> None:
        self.cluster = cluster
        cred = cluster.credentials
        where = f"{inventory.path}: cluster {cluster.name} credentials"
        self._user = cred.user
        self._password = cred.password.resolve(where) if cred.password else ""
        repl = cluster.replication or cluster.credentials
        self.replication_user = repl.user
        self.replication_password = (
            repl.password.resolve(f"{inventory.path}: cluster {cluster.name} replication") if repl.password else ""
        )
        # One idle connection per member, reused: a new MariaDB connection costs ~20 ms, more
        # than the statements of a whole promotion.
        self._idle: dict[str, Any] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def _session(self, member: Member, read_timeout: float | None = None) -> Iterator[Any]:
        """A connection to the member: the idle one if it still answers a ping, else a new one.
        Connections with a longer read timeout (server-side waits) are never kept."""
        conn = None
        if read_timeout is None:
            with self._guard:
                conn = self._idle.pop(member.name, None)
            if conn is not None:
                try:
                    conn.ping(reconnect=False)
                except Exception as exc:  # noqa: BLE001 - a dead or hung server; decide below
                    _close(conn)
                    conn = None
                    detail = _describe_error(exc, self.cluster.timeouts.read)
                    if "no answer within" in detail:
                        # Hung: connecting again would cost another full timeout.
                        raise ProbeTimeout(f"{member.name} ({member.address}:{self.cluster.port_of(member)}): {detail}") from None
        if conn is None:
            conn = self._connect(member, read_timeout)
        healthy = False
        try:
            yield conn
            healthy = True
        finally:
            if healthy and read_timeout is None:
                with self._guard:
                    previous = self._idle.pop(member.name, None)
                    self._idle[member.name] = conn
                if previous is not None:
                    _close(previous)
            else:
                _close(conn)

    # -- connections ------------------------------------------------------------------------
    def _connect(self, member: Member, read_timeout: float | None = None) -> pymysql.connections.Connection[Any]:
        import pymysql

        t = self.cluster.timeouts
        try:
            return pymysql.connect(
                host=member.address,
                port=self.cluster.port_of(member),
                user=self._user,
                password=self._password,
                connect_timeout=t.connect,
                read_timeout=read_timeout or t.read,
                write_timeout=t.read,
                autocommit=True,
                cursorclass=pymysql.cursors.DictCursor,
            )
        except pymysql.err.OperationalError as exc:
            raise _connect_error(member, self.cluster, exc, t.connect, read_timeout or t.read) from None

    def observe(self) -> ClusterView:
        members = self.cluster.members
        pool = cf.ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="probe")
        try:
            futures = {pool.submit(self._probe, m): m for m in members}
            t = self.cluster.timeouts
            done, _ = cf.wait(futures, timeout=t.connect + t.read + 1.0)
            views = []
            for fut, member in futures.items():
                if fut in done:
                    views.append(fut.result())
                else:
                    views.append(_unreachable(member, self.cluster, f"no answer within {t.connect + t.read:g} s"))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return ClusterView(cluster=self.cluster.name, servers=views, observed_at=time.time())

    def probe(self, member: str) -> ServerView:
        return self._probe(self.cluster.member(member))

    def _probe(self, member: Member) -> ServerView:
        started = time.monotonic()
        try:
            with self._session(member) as conn, conn.cursor() as cur:
                cur.execute(VARIABLES_SQL)
                row = cur.fetchone() or {}
                values = list(row.values())
                cur.execute("SHOW ALL SLAVES STATUS")
                channels = [_channel(r) for r in cur.fetchall()]
        except ConnectError as exc:
            return _unreachable(member, self.cluster, str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure of a probe makes the member unreachable
            return _unreachable(member, self.cluster, _describe_error(exc, self.cluster.timeouts.read))
        return ServerView(
            name=member.name,
            address=member.address,
            port=self.cluster.port_of(member),
            reachable=True,
            server_id=int(values[0]),
            read_only=_flag(values[1]),
            log_bin=_flag(values[2]),
            log_slave_updates=_flag(values[3]),
            gtid_strict_mode=_flag(values[4]),
            gtid_binlog_pos=str(values[5] or ""),
            gtid_slave_pos=str(values[6] or ""),
            gtid_current_pos=str(values[7] or ""),
            gtid_binlog_state=str(values[8] or ""),
            channels=channels,
            probe_seconds=round(time.monotonic() - started, 3),
        )

    def execute(self, member: str, sql: Sql, timeout: float | None = None) -> None:
        self.query(member, sql, timeout)

    def query(self, member: str, sql: Sql, timeout: float | None = None) -> list[tuple[Any, ...]]:
        target = self.cluster.member(member)
        read_timeout = (timeout or 0) + self.cluster.timeouts.read if timeout else None
        try:
            with self._session(target, read_timeout) as conn, conn.cursor() as cur:
                cur.execute(sql.template, sql.params or None)
                rows = cur.fetchall() or []
                return [tuple(r.values()) for r in rows]
        except ConnectError:
            raise
        except Exception as exc:  # noqa: BLE001 - turned into one clear error naming the statement
            raise CommandFailed(
                f"{member}: `{sql.shown()}` failed: {_describe_error(exc, read_timeout or self.cluster.timeouts.read)}"
            ) from None

    def close(self) -> None:
        with self._guard:
            idle, self._idle = list(self._idle.values()), {}
        for conn in idle:
            _close(conn)


def _close(conn: Any) -> None:
    # Closing a broken connection must not mask the real error.
    with contextlib.suppress(Exception):
        conn.close()


def _describe_error(exc: Exception, read_timeout: float) -> str:
    text = str(exc)
    if "timed out" in text.lower() or isinstance(exc, TimeoutError):
        return f"no answer within the read timeout of {read_timeout:g} s (hung or overloaded server?)"
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"error {args[0]}: {args[1]}"
    return text or type(exc).__name__


def _connect_error(member: Member, cluster: Cluster, exc: Exception, connect: float, read: float) -> ConnectError:
    detail = _describe_error(exc, read)
    where = f"{member.name} ({member.address}:{cluster.port_of(member)})"
    if "no answer within" in detail:
        return ProbeTimeout(f"{where}: {detail}")
    return ConnectError(f"{where}: cannot connect: {detail}")


def _unreachable(member: Member, cluster: Cluster, error: str) -> ServerView:
    return ServerView(
        name=member.name, address=member.address, port=cluster.port_of(member), reachable=False, error=error
    )

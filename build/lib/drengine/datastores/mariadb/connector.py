"""MariaDB connector: probes every server in parallel into an immutable view, sends
statements one by one over the shared MySQL pool (which tells a dead server from a hung
one), and injects drill faults on the servers' hosts (pid file and signals)."""

from __future__ import annotations

import concurrent.futures as cf
import time
from typing import Protocol

from drengine.clock import SYSTEM, Clock
from drengine.datastores.mysql_hosts import MemberHosts
from drengine.datastores.mysql_pool import (
    HEARTBEAT_DDL,
    MemberState,
    MySQLPool,
    Row,
    Sql,
    StatementFailed,
    detail_of,
    state_of,
)
from drengine.datastores.mysql_traffic import HostsAndProxies, Proxies, TrafficAPI
from drengine.errors import ConnectError
from drengine.inventory import Cluster, Inventory, Member
from drengine.steps import Fact, fact

__all__ = ["HEARTBEAT_DDL", "Channel", "ClusterView", "MariaDBAPI", "MariaDBBackend", "ServerView", "Sql"]


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
    """One server as a probe saw it. state: `up` (answered), `down` (connection refused: the
    server is not running), `hung` (accepted the connection, then no answer within the read
    timeout), `unreachable` (no TCP answer, or another failure: it may be alive elsewhere)."""

    name: str
    address: str
    port: int
    state: MemberState = "up"
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
    def reachable(self) -> bool:
        return self.state == "up"

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


class MariaDBAPI(TrafficAPI, Protocol):
    """What the MariaDB actions and drills use; the real connector and the simulator both
    provide it (with the fencing and proxy operations of TrafficAPI). The fault operations
    return what they did, in words an operator can repeat."""

    replication_user: str
    replication_password: str

    def observe(self) -> ClusterView: ...

    def probe(self, member: str) -> ServerView: ...

    def execute(self, member: str, sql: Sql, timeout: float | None = None) -> None: ...

    def query(self, member: str, sql: Sql, timeout: float | None = None) -> list[Row]: ...

    # -- drill faults ---------------------------------------------------------------------------
    def kill(self, member: str) -> str: ...

    def hang(self, member: str) -> str: ...

    def resume(self, member: str) -> str: ...

    def start(self, member: str) -> str: ...

    def cut_replication(self, member: str) -> str: ...

    def close(self) -> None: ...


def _flag(value: object) -> bool:
    return str(value).upper() in ("1", "ON", "YES", "TRUE")


def _int(value: object) -> int:
    return int(str(value)) if value not in (None, "") else 0


def _channel(row: dict[str, object]) -> Channel:
    sbm = row.get("Seconds_Behind_Master")
    return Channel(
        connection_name=str(row.get("Connection_name") or ""),
        master_host=str(row.get("Master_Host") or ""),
        master_port=_int(row.get("Master_Port")),
        io_running=str(row.get("Slave_IO_Running") or "No"),
        sql_running=str(row.get("Slave_SQL_Running") or "No"),
        using_gtid=str(row.get("Using_Gtid") or "No"),
        gtid_io_pos=str(row.get("Gtid_IO_Pos") or ""),
        last_io_errno=_int(row.get("Last_IO_Errno")),
        last_io_error=str(row.get("Last_IO_Error") or ""),
        last_sql_errno=_int(row.get("Last_SQL_Errno")),
        last_sql_error=str(row.get("Last_SQL_Error") or ""),
        seconds_behind_master=None if sbm is None else _int(sbm),
    )



VARIABLES_SQL = (
    "SELECT @@server_id, @@read_only, @@log_bin, @@log_slave_updates, @@gtid_strict_mode, "
    "@@gtid_binlog_pos, @@gtid_slave_pos, @@gtid_current_pos, @@gtid_binlog_state"
)
STOP_IO_THREAD = Sql("STOP SLAVE IO_THREAD")


class MariaDBBackend(HostsAndProxies):
    """pymysql through the shared pool for SQL; the inventory's host transports for faults."""

    def __init__(self, cluster: Cluster, inventory: Inventory, clock: Clock = SYSTEM) -> None:
        self.cluster = cluster
        self.clock = clock  # the run's: when a look was taken
        cred = cluster.credentials
        where = f"{inventory.path}: cluster {cluster.name} credentials"
        password = cred.password.resolve(where) if cred.password else ""
        repl = cluster.replication or cluster.credentials
        self.replication_user = repl.user
        self.replication_password = (
            repl.password.resolve(f"{inventory.path}: cluster {cluster.name} replication") if repl.password else ""
        )
        self.pool = MySQLPool(cluster, cred.user, password)
        self.hosts = MemberHosts(cluster, inventory)
        self.proxies = Proxies(cluster, inventory, self.hosts, self.pool)

    def observe(self) -> ClusterView:
        members = self.cluster.members
        pool = cf.ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="probe")
        try:
            futures = {pool.submit(self._probe, m): m for m in members}
            t = self.cluster.timeouts
            # Safety net on top of the pool's own timeouts (a ping, a connect, the statements).
            done, _ = cf.wait(futures, timeout=t.connect + 2 * t.read + 1.0)
            views = []
            for fut, member in futures.items():
                if fut in done:
                    views.append(fut.result())
                else:
                    views.append(self._failed(member, "hung", f"no answer within {t.connect + 2 * t.read + 1:g} s"))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return ClusterView(cluster=self.cluster.name, servers=views, observed_at=self.clock.wall())

    def probe(self, member: str) -> ServerView:
        return self._probe(self.cluster.member(member))

    def _failed(self, member: Member, state: MemberState, error: str) -> ServerView:
        return ServerView(name=member.name, address=member.address, port=self.cluster.port_of(member), state=state,
                          error=error)

    def _probe(self, member: Member) -> ServerView:
        started = time.monotonic()
        try:
            values = self.pool.run(member, [Sql(VARIABLES_SQL)]).rows[0]
            channels = [_channel(r) for r in self.pool.run(member, [Sql("SHOW ALL SLAVES STATUS")]).dicts()]
        except ConnectError as exc:
            return self._failed(member, state_of(exc), detail_of(exc))
        except StatementFailed as exc:
            return self._failed(member, "unreachable", detail_of(exc))
        return ServerView(
            name=member.name,
            address=member.address,
            port=self.cluster.port_of(member),
            server_id=_int(values[0]),
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

    def query(self, member: str, sql: Sql, timeout: float | None = None) -> list[Row]:
        read_timeout = timeout + self.cluster.timeouts.read if timeout else None
        return self.pool.run(self.cluster.member(member), [sql], read_timeout).rows

    # -- drill faults ---------------------------------------------------------------------------
    def cut_replication(self, member: str) -> str:
        self.execute(member, STOP_IO_THREAD)
        return f"{STOP_IO_THREAD.shown()} on {member}"

def _conforms(backend: MariaDBBackend) -> MariaDBAPI:
    return backend  # mypy checks here that the connector provides everything the actions use

"""Simulated MariaDB servers with GTID replication, behind the same interface as the
pymysql connector: the actions send the same SQL text, which the simulator interprets.

Modelled: transactions with GTIDs per server, received (relay log) versus applied,
replication threads, read_only, binary log settings, errant transactions, and the relay
log trap (after both threads stop, starting the SQL thread discards the relay log).
Faults: kill, hang, resume, start, cut replication. State is JSON in a file so a run can be resumed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from drengine import gtid
from drengine.clock import SYSTEM, Clock
from drengine.datastores.mariadb.connector import Channel, ClusterView, MariaDBAPI, ServerView, Sql
from drengine.datastores.mysql_hosts import ServerProcess, ServiceAction, render_service
from drengine.datastores.mysql_pool import MemberDown, MemberHung, MemberUnreachable, Row, StatementFailed
from drengine.datastores.mysql_traffic import proxy_of
from drengine.errors import InputError
from drengine.haproxy import ProxyView, SimProxy, sim_proxies
from drengine.inventory import Cluster
from drengine.machine import DISK, Disk
from drengine.simstate import load_or_build, save_state
from drengine.transport import CommandResult, ShellCommand, command_text


class Txn(BaseModel):
    model_config = ConfigDict(frozen=True)
    gtid: str
    key: str = ""


class SimServer(BaseModel):
    name: str
    address: str
    port: int
    server_id: int
    alive: bool = True
    hung: bool = False
    read_only: bool = True
    log_bin: bool = True
    log_slave_updates: bool = True
    applied: list[Txn] = []
    relay: list[Txn] = []
    relay_valid: bool = (
        True  # false once both threads stopped: the next start discards the relay log
    )
    source: str | None = None
    io_on: bool = False
    sql_on: bool = False
    lag: int = 0  # the IO thread holds back this many transactions
    slave_pos: str = ""
    io_error: int = 0
    sql_error: int = 0
    sql_error_text: str = ""
    # Seconds each statement takes to answer after it took effect (a slow server): lets tests
    # kill drengine while a statement is in flight.
    latency: float = 0.0

    def position(self) -> gtid.Position:
        return gtid.parse(",".join(t.gtid for t in self.applied))

    def keys(self) -> list[str]:
        return [t.key for t in self.applied if t.key]


class SimCluster(BaseModel):
    servers: list[SimServer]
    proxies: list[SimProxy] = []
    last_gtid: str = ""  # @@last_gtid of the statement just interpreted (one session at a time)

    def server(self, name: str) -> SimServer:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def writer(self) -> str | None:
        """The writable server the others follow (where the proxies point when built)."""
        writable = [s for s in self.servers if s.alive and not s.read_only and s.source is None]
        return max(writable, key=lambda w: sum(1 for o in self.servers if o.source == w.name)).name if writable else None

    def by_address(self, host: str, port: int) -> SimServer | None:
        for s in self.servers:
            if (s.address, s.port) == (host, port) or s.name == host:
                return s
        return None

    # -- the model's own behaviour ------------------------------------------------------------------
    def write(self, name: str, key: str = "") -> Txn:
        """A transaction on a server (its own server_id, domain 0)."""
        s = self.server(name)
        seq = max((g.seq for g in s.position().values()), default=0) + 1
        txn = Txn(gtid=f"0-{s.server_id}-{seq}", key=key)
        s.applied.append(txn)
        self.last_gtid = txn.gtid
        return txn

    def settle(self) -> None:
        """Let replication run until nothing moves (IO threads fetch, SQL threads apply)."""
        for _ in range(len(self.servers) + 1):
            moved = False
            for s in self.servers:
                moved = self._replicate(s) or moved
            if not moved:
                break  # a pass that changed nothing: every further pass would be the same

    def _replicate(self, s: SimServer) -> bool:
        """One turn of a replica's threads; did it change anything?"""
        if not s.alive or s.hung or s.source is None:
            return False
        moved = False
        src = self.server(s.source)
        if s.io_on and src.alive and not src.hung:
            have = {t.gtid for t in s.applied} | {t.gtid for t in s.relay}
            start = gtid.parse(s.slave_pos)
            new = [
                t
                for t in src.applied
                if t.gtid not in have and not gtid.covers(start, gtid.parse(t.gtid))
            ]
            if s.lag:
                new = new[: max(0, len(new) - s.lag)]
            s.relay.extend(new)
            moved = bool(new)
        if s.sql_on and s.relay:
            moved = True  # the relay log is emptied, or the SQL thread stops on an error
            mine = s.position()
            applied = {t.gtid for t in s.applied}
            left: list[Txn] = []
            for i, t in enumerate(s.relay):
                g = gtid.parse(t.gtid)
                if gtid.covers(mine, g):
                    if t.gtid not in applied:
                        # gtid_strict_mode: a transaction whose sequence number is not past this server's
                        # own (an errant write took it) stops the SQL thread (error 1950), it is not skipped.
                        s.sql_on, left = False, s.relay[i:]
                        s.sql_error, s.sql_error_text = 1950, (
                            f"An attempt was made to binlog GTID {t.gtid} which would create an out-of-order "
                            f"sequence number with existing GTID {gtid.render(mine)}, and gtid strict mode is enabled")
                        break
                    continue
                s.applied.append(t)
                applied.add(t.gtid)
                mine = {**mine, **g}  # s.position(), without parsing everything applied again
            s.relay = left
            s.slave_pos = gtid.render(
                gtid.merge_max(gtid.parse(s.slave_pos), s.position())
            )
        return moved


def _servers_for(cluster: Cluster) -> list[SimServer]:
    if len(cluster.members) < 2:
        raise InputError(
            f"simulated MariaDB cluster {cluster.name} needs at least two members"
        )
    return [
        SimServer(
            name=m.name,
            address=m.address,
            port=cluster.port_of(m),
            server_id=i + 1,
            read_only=i > 0,
        )
        for i, m in enumerate(cluster.members)
    ]


def _replicated(cluster: Cluster, txns: int = 100) -> SimCluster:
    sim = SimCluster(servers=_servers_for(cluster))
    primary = sim.servers[0]
    for i in range(txns):
        sim.write(primary.name, key=f"row-{i + 1}")
    for s in sim.servers[1:]:
        s.source, s.io_on, s.sql_on = primary.name, True, True
    sim.settle()
    return sim


def _truncate(s: SimServer, keep: int) -> None:
    s.applied = s.applied[:keep]
    s.slave_pos = gtid.render(s.position())


def _kill_primary(cluster: Cluster) -> SimCluster:
    sim = _replicated(cluster)
    sim.servers[0].alive = False
    return sim


def scenario_lagging(cluster: Cluster) -> SimCluster:
    """The primary died; the last replica lagged behind: the first replica must win."""
    sim = _kill_primary(cluster)
    for i, s in enumerate(sim.servers[1:]):
        _truncate(s, 100 - 10 * i)
    return sim


def scenario_relay_unapplied(cluster: Cluster) -> SimCluster:
    """The most advanced replica has received more than it applied (SQL thread stopped)."""
    sim = _replicated(cluster, 120)
    sim.servers[0].alive = False
    best = sim.servers[-1]
    _truncate(best, 100)
    best.relay = sim.servers[0].applied[100:120]
    best.sql_on = False
    for s in sim.servers[1:-1]:
        _truncate(s, 110)
    return sim


def scenario_primary_alive(cluster: Cluster) -> SimCluster:
    return _replicated(cluster)


def scenario_primary_hung(cluster: Cluster) -> SimCluster:
    sim = _replicated(cluster)
    sim.servers[0].hung = True
    if len(sim.servers) > 2:
        _truncate(sim.servers[2], 95)
    return sim


def scenario_all_replicas_down(cluster: Cluster) -> SimCluster:
    sim = _replicated(cluster)
    for s in sim.servers:
        s.alive = False
    return sim


def scenario_no_binlog_on_best(cluster: Cluster) -> SimCluster:
    """The most advanced replica has log_slave_updates off: it cannot serve the others."""
    sim = scenario_lagging(cluster)
    sim.servers[1].log_slave_updates = False
    return sim


def scenario_old_primary_returned(cluster: Cluster, errant: int = 0) -> SimCluster:
    """After a failover to the second server, the old primary came back writable."""
    sim = _replicated(cluster)
    old, new = sim.servers[0], sim.servers[1]
    new.source, new.io_on, new.sql_on, new.read_only, new.relay = None, False, False, False, []
    for s in sim.servers[2:]:
        s.source = new.name
    for _ in range(errant):
        sim.write(old.name, key="errant")  # written on the old primary and never replicated
    for i in range(5):
        sim.write(new.name, key=f"after-failover-{i + 1}")
    sim.settle()
    old.read_only = False
    return sim


def scenario_old_primary_errant(cluster: Cluster) -> SimCluster:
    return scenario_old_primary_returned(cluster, errant=3)


SCENARIOS: dict[str, Callable[[Cluster], SimCluster]] = {
    "healthy": scenario_primary_alive,
    "primary-dead-replica-lagging": scenario_lagging,
    "primary-dead-relay-unapplied": scenario_relay_unapplied,
    "primary-alive": scenario_primary_alive,
    "primary-hung": scenario_primary_hung,
    "all-replicas-down": scenario_all_replicas_down,
    "best-replica-without-binlog": scenario_no_binlog_on_best,
    "old-primary-returned": scenario_old_primary_returned,
    "old-primary-errant": scenario_old_primary_errant,
}


# -- the connector twin ----------------------------------------------------------------------------

_CHANGE_MASTER = re.compile(r"^CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s", re.I)
_WRITE = re.compile(r"^(INSERT|REPLACE|UPDATE|DELETE|CREATE|DROP)\b", re.I)


class SimMariaDBBackend:
    """Implements MariaDBAPI over a SimCluster, saving its state after every statement."""

    replication_user = "repl"
    replication_password = ""

    def __init__(self, cluster: Cluster, sim: SimCluster, state_file: Path | None, clock: Clock = SYSTEM,
                 disk: Disk = DISK) -> None:
        self.cluster = cluster
        self.sim = sim
        self.state_file = state_file
        self.clock = clock  # the run's: when a look was taken (the simulator itself has no time)
        self.disk = disk  # the run's: where the state file is kept

    @classmethod
    def open(cls, cluster: Cluster, state_file: Path, clock: Clock = SYSTEM, disk: Disk = DISK) -> SimMariaDBBackend:
        backend = cls(cluster, load_or_build(cluster, state_file, SimCluster,
                                              {n: partial(f, cluster) for n, f in SCENARIOS.items()}, "MariaDB", disk),
                      state_file, clock, disk)
        backend.sim.proxies = sim_proxies(cluster, backend.sim.writer(), backend.sim.proxies)
        if cluster.replication is not None:
            # Resolved like the real connector does, so simulation proves secrets stay masked.
            backend.replication_user = cluster.replication.user
            if cluster.replication.password is not None:
                backend.replication_password = cluster.replication.password.resolve(
                    f"cluster {cluster.name} replication password")
        backend.save()
        return backend

    def save(self) -> None:
        save_state(self.sim, self.state_file, self.disk)

    # -- MariaDBAPI ---------------------------------------------------------------------------------
    def observe(self) -> ClusterView:
        self.sim.settle()
        return ClusterView(
            cluster=self.cluster.name,
            servers=[self._view(s) for s in self.sim.servers],
            observed_at=self.clock.wall(),
        )

    def probe(self, member: str) -> ServerView:
        self.sim.settle()
        return self._view(self.sim.server(member))

    def _view(self, s: SimServer) -> ServerView:
        t = self.cluster.timeouts
        if not s.alive:
            return ServerView(
                name=s.name,
                address=s.address,
                port=s.port,
                state="down",
                error="error 2003: connection refused: nothing listens on the port (server not running)",
            )
        if s.hung:
            return ServerView(
                name=s.name,
                address=s.address,
                port=s.port,
                state="hung",
                error=f"accepted the connection but gave no answer within the read timeout of {t.read:g} s "
                      f"(hung or overloaded)",
            )
        binlog_state = ",".join(t.gtid for t in s.applied)
        position = gtid.parse(binlog_state)  # as SimServer.position(), joined once for the view
        pos = gtid.render(position)
        channels = []
        if s.source is not None:
            src = self.sim.server(s.source)
            src_up = src.alive and not src.hung
            received = gtid.merge_max(
                position, gtid.parse(",".join(x.gtid for x in s.relay))
            )
            channels.append(
                Channel(
                    master_host=src.address,
                    master_port=src.port,
                    io_running=("Yes" if src_up else "Connecting") if s.io_on else "No",
                    sql_running="Yes" if s.sql_on else "No",
                    using_gtid="Slave_Pos",
                    gtid_io_pos=gtid.render(received),
                    last_io_errno=s.io_error if s.io_on else 0,
                    last_io_error="error reconnecting to master"
                    if s.io_on and not src_up
                    else "",
                    last_sql_errno=s.sql_error,
                    last_sql_error=s.sql_error_text,
                    seconds_behind_master=0 if s.sql_on and src_up else None,
                )
            )
        return ServerView(
            name=s.name,
            address=s.address,
            port=s.port,
            server_id=s.server_id,
            read_only=s.read_only,
            log_bin=s.log_bin,
            log_slave_updates=s.log_slave_updates,
            gtid_strict_mode=True,
            gtid_binlog_pos=pos if s.log_bin else "",
            gtid_slave_pos=s.slave_pos,
            gtid_current_pos=pos,
            gtid_binlog_state=binlog_state if s.log_bin else "",
            channels=channels,
        )

    def _reachable(self, member: str) -> SimServer:
        s = self.sim.server(member)
        if not s.alive:
            detail = "error 2003: connection refused: nothing listens on the port (server not running)"
            raise MemberDown(f"{member} ({s.address}:{s.port}): {detail}", detail)
        if s.hung:
            detail = (f"accepted the connection but gave no answer within the read timeout of "
                      f"{self.cluster.timeouts.read:g} s (hung or overloaded)")
            raise MemberHung(f"{member} ({s.address}:{s.port}): {detail}", detail)
        return s

    def execute(self, member: str, sql: Sql, timeout: float | None = None) -> None:
        self.query(member, sql, timeout)

    def query(
        self, member: str, sql: Sql, timeout: float | None = None
    ) -> list[Row]:
        s = self._reachable(member)
        self.sim.settle()
        try:
            return self._interpret(s, sql)
        finally:
            self.sim.settle()
            self.save()
            if s.latency:
                # Really slow (a test can kill the process with the statement in flight), and as
                # slow on the run's clock, whose deadlines bound the step.
                time.sleep(s.latency)
                self.clock.sleep(s.latency)

    def _interpret(self, s: SimServer, sql: Sql) -> list[Row]:
        text = " ".join(sql.template.split())
        upper = text.upper()
        for handler in (self._replication_statement, self._read_statement):
            rows = handler(s, sql, text, upper)
            if rows is not None:
                return rows
        if _WRITE.match(text):
            if (
                s.read_only
                and upper.startswith(("INSERT", "REPLACE", "UPDATE", "DELETE"))
                and "DRENGINE." not in upper
            ):
                raise StatementFailed(
                    f"{s.name}: error 1290: The MariaDB server is running with the --read-only option"
                )
            key = str(sql.params[0]) if sql.params else ""
            self.sim.write(s.name, key=key if key.startswith("canary-") else "")
            return []
        raise StatementFailed(
            f"{s.name}: the simulator does not understand `{sql.shown()}`"
        )

    def _replication_statement(self, s: SimServer, sql: Sql, text: str, upper: str) -> list[Row] | None:
        if upper == "STOP SLAVE":
            s.io_on = s.sql_on = False
            s.relay_valid = False
            return []
        if upper in ("START SLAVE", "START SLAVE SQL_THREAD"):
            if s.source is None:
                raise StatementFailed(
                    f"{s.name}: `{sql.shown()}` failed: error 1200: Misconfigured slave: MASTER_HOST was not set"
                )
            if not s.relay_valid:
                s.relay = []  # the trap: the relay log is discarded, replication restarts from gtid_slave_pos
                s.relay_valid = True
            s.sql_on = True
            if upper == "START SLAVE":
                s.io_on = True
            return []
        if upper == "STOP SLAVE IO_THREAD":
            s.io_on = False
            s.relay_valid = False
            return []
        if upper == "STOP SLAVE SQL_THREAD":
            s.sql_on = False
            return []
        if upper == "RESET SLAVE ALL":
            if s.io_on or s.sql_on:
                raise StatementFailed(
                    f"{s.name}: error 1198: This operation cannot be performed as you have a running slave; run STOP SLAVE first"
                )
            s.source, s.relay = None, []
            return []
        if upper.startswith("SET GLOBAL READ_ONLY="):
            s.read_only = upper.endswith("=1")
            return []
        m = _CHANGE_MASTER.match(text)
        if m:
            if s.io_on or s.sql_on:
                raise StatementFailed(
                    f"{s.name}: error 1198: This operation cannot be performed as you have a running slave; run STOP SLAVE first"
                )
            host, port = str(sql.params[0]), int(sql.params[1])
            src = self.sim.by_address(host, port)
            if src is None:
                raise StatementFailed(f"{s.name}: no simulated server at {host}:{port}")
            s.source, s.relay = src.name, []
            if "MASTER_DEMOTE_TO_SLAVE=1" in upper:
                s.slave_pos = gtid.render(s.position())
            errant = gtid.errant(s.position(), gtid.parse_state(",".join(t.gtid for t in src.applied)))
            s.sql_error = 1236 if errant else 0
            s.sql_error_text = (
                "GTID strict mode: this server has transactions its source lacks"
                if errant
                else ""
            )
            return []
        return None

    def _read_statement(self, s: SimServer, sql: Sql, text: str, upper: str) -> list[Row] | None:
        if upper.startswith("SELECT MASTER_GTID_WAIT("):
            self.sim.settle()
            return [
                (
                    0
                    if gtid.covers(s.position(), gtid.parse(str(sql.params[0])))
                    else -1,
                )
            ]
        if upper == "SELECT @@READ_ONLY, @@GTID_BINLOG_POS":
            return [(int(s.read_only), gtid.render(s.position()))]
        if upper.startswith("SELECT @@HOSTNAME, @@PORT, @@SERVER_ID"):
            row: Row = (s.address, s.port, s.server_id)
            return [(*row, self.sim.last_gtid)] if "@@LAST_GTID" in upper else [row]
        if upper.startswith("SELECT ID FROM INFORMATION_SCHEMA.PROCESSLIST"):
            return []  # no client sessions are modelled
        if upper == "SELECT @@GTID_BINLOG_POS":
            return [(gtid.render(s.position()),)]
        if upper.startswith("SELECT ID FROM DRENGINE.CANARY"):
            return [(k,) for k in s.keys() if k.startswith("canary-")]
        return None

    def close(self) -> None:
        self.save()

    # -- hosts and proxies (TrafficAPI) ------------------------------------------------------------
    def service_command(self, action: ServiceAction, member: str) -> ShellCommand:
        return render_service(self.cluster, self.cluster.member(member), action)

    def run_service(self, action: ServiceAction, member: str, timeout: float | None = None) -> CommandResult:
        command = command_text(self.service_command(action, member))
        s = self.sim.server(member)
        if action == "stop":
            s.alive, s.hung = False, False  # a service stop continues a stopped process first
        elif action == "start":
            s.alive, s.hung, s.read_only = True, False, True
        elif action != "status":
            return CommandResult(member, command, 127, "", f"the simulator has no {action} for MariaDB\n", 0.0)
        self.save()
        return CommandResult(member, command, 0 if s.alive or action != "status" else 3, "", "", 0.0)

    def server_process(self, member: str) -> ServerProcess:
        s = self.sim.server(member)
        if not s.alive:
            return ServerProcess(None, False, note="no pid file (the simulated server is not running)")
        return ServerProcess(10000 + s.server_id, True, "mariadbd", "stopped (SIGSTOP)" if s.hung else "", stopped=s.hung)

    def _proxy(self, name: str) -> SimProxy:
        return next(p for p in self.sim.proxies if p.name == name)

    def proxy_views(self) -> list[ProxyView]:
        # HAProxy's TCP checks pass on a hung server: the kernel still completes the handshake.
        health = {s.name: "up" if s.alive else "down" for s in self.sim.servers}
        return [self._proxy(p.name).view(p, health) for p in self.cluster.proxies]

    def proxy_command(self, proxy: str, command: str) -> None:
        self._proxy(proxy).apply(proxy_of(self.cluster, proxy), command)
        self.save()

    def through_frontend(self, proxy: str, statements: Sequence[Sql], read_timeout: float | None = None) -> list[Row]:
        writer = self._proxy(proxy).writer(proxy_of(self.cluster, proxy), {s.name: s.alive for s in self.sim.servers})
        if writer is None:
            detail = "HAProxy closed the connection: no server of its write backend is ready and up"
            raise MemberUnreachable(f"proxy {proxy} frontend: {detail}", detail)
        rows: list[Row] = []
        for sql in statements:
            rows = self.query(writer, sql, read_timeout)
        return rows

    # -- drill faults (MariaDBAPI) -----------------------------------------------------------------
    def kill(self, member: str) -> str:
        self.sim.server(member).alive = False
        self.save()
        return f"simulated SIGKILL of {member}"

    def hang(self, member: str) -> str:
        self.sim.server(member).hung = True
        self.save()
        return f"simulated SIGSTOP of {member}"

    def resume(self, member: str) -> str:
        s = self.sim.server(member)
        if not s.alive or not s.hung:
            return f"{member}: nothing to wake: the simulated server is {'running' if s.alive else 'not running'}"
        s.hung = False
        self.save()
        return f"simulated SIGCONT of {member}"

    def start(self, member: str) -> str:
        s = self.sim.server(member)
        # A restarted server reads read_only=1 from its configuration (as in the lab): an old
        # primary must not come back writable before it is rejoined.
        s.alive, s.hung, s.read_only = True, False, True
        self.save()
        return f"simulated start of {member}"

    def revive(self, member: str) -> str:
        """A world change (for the explorer, not a drill fault): the server is back as it was, by
        itself (its service manager restarted it, or its hang ended), read_only as before."""
        s = self.sim.server(member)
        s.alive, s.hung = True, False
        self.save()
        return f"simulated return of {member} as it was"

    def cut_replication(self, member: str) -> str:
        s = self._reachable(member)
        s.io_on, s.relay_valid = False, False
        self.save()
        return f"STOP SLAVE IO_THREAD on {member}"


def _conforms(backend: SimMariaDBBackend) -> MariaDBAPI:
    return backend  # mypy checks here that the simulator provides everything the actions use

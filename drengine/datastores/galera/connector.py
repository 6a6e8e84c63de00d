"""MariaDB Galera connector: probes every node in parallel into an immutable view (wsrep
status read with `wsrep_sync_wait=0`, so a non-Primary node still answers) over the shared
MySQL pool, sends statements, and runs the host side of a recovery through each member's
host transport: read grastate.dat, run `--wsrep-recover`, start, stop and bootstrap-start a
node with the cluster's service templates (shown verbatim in plans), and inject drill faults
by the node's pid file.

How a member's host is reached, and how a pid file is trusted: see mysql_hosts. SQL probes
need no host. Every probe and command is bounded: the pool's connect and read timeouts on
SQL, connect and command timeouts on the transports.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from drengine.clock import SYSTEM, Clock
from drengine.datastores.galera.state import (
    Grastate,
    Recovered,
    has_recovered_position,
    parse_grastate,
    parse_recovered,
)
from drengine.datastores.mysql_hosts import (
    DEFAULT_DATA_DIR,
    DEFAULT_SERVICE,
    MemberHosts,
    ServiceAction,
    data_dir_of,
    render_service,
)
from drengine.datastores.mysql_pool import MemberState, MySQLPool, Row, Sql, StatementFailed, detail_of, state_of
from drengine.datastores.mysql_traffic import HostsAndProxies, Proxies, TrafficAPI
from drengine.errors import ConnectError
from drengine.inventory import Cluster, Inventory, Member
from drengine.steps import Fact, Statement, fact
from drengine.transport import CommandResult, ShellCommand, render_template

T = TypeVar("T")

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_SERVICE",
    "GaleraAPI",
    "GaleraBackend",
    "GaleraView",
    "Grastate",
    "NodeView",
    "Recovered",
    "grastate_path",
    "grastate_statement",
    "parse_grastate",
    "parse_recovered",
    "render_service",
    "safe_to_bootstrap_command",
]

SYNC_WAIT_OFF = "SET SESSION wsrep_sync_wait=0"
STATUS_SQL = "SHOW GLOBAL STATUS LIKE 'wsrep_%'"
NodeState = MemberState


# -- facts -----------------------------------------------------------------------------------------


@fact
class NodeView(Fact):
    """One node as a probe saw it.

    state: `up` (answered), `down` (connection refused: nothing listens, the process is
    not running), `hung` (accepted the connection, then no answer within the read
    timeout), `unreachable` (no TCP answer, or another error: its state is unknown; it
    may be alive on the other side of a partition).
    """

    name: str
    address: str
    port: int
    state: NodeState
    error: str = ""
    cluster_status: str = ""  # Primary, non-Primary, Disconnected
    cluster_size: int = 0
    ready: bool = False
    connected: bool = False
    local_state: str = ""  # wsrep_local_state_comment: Synced, Donor/Desynced, Joiner, Joined, Initialized
    last_committed: int = -1
    state_uuid: str = ""
    incoming: list[str] = []  # wsrep_incoming_addresses: client addresses of the nodes in its component
    probe_seconds: float = 0.0

    @property
    def is_primary(self) -> bool:
        return self.state == "up" and self.cluster_status == "Primary"

    @property
    def running(self) -> bool | None:
        """Is the mariadbd process running? None when the probe cannot tell."""
        return {"up": True, "hung": True, "down": False}.get(self.state)

    def describe(self) -> str:
        if self.state != "up":
            return f"{self.name} ({self.address}:{self.port}): {self.state.upper()}: {self.error}"
        return (
            f"{self.name} ({self.address}:{self.port}): {self.cluster_status} component of size {self.cluster_size}, "
            f"{self.local_state or '?'}, last committed {self.last_committed}, state {self.state_uuid or '?'}"
        )


@fact
class GaleraView(Fact):
    cluster: str
    nodes: list[NodeView]
    observed_at: float

    def node(self, name: str) -> NodeView:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


# -- rendering (pure) -----------------------------------------------------------------------------


def grastate_path(member: Member) -> str:
    return data_dir_of(member).rstrip("/") + "/grastate.dat"


def safe_to_bootstrap_command(member: Member) -> ShellCommand:
    """What an operator does on the node chosen after a full crash: Galera refuses
    `--wsrep-new-cluster` until grastate.dat says `safe_to_bootstrap: 1`."""
    return render_template(
        "sed -i 's/^safe_to_bootstrap: *0 *$/safe_to_bootstrap: 1/' {data_dir}/grastate.dat",
        data_dir=data_dir_of(member).rstrip("/"),
    )


# -- the interface the actions use ------------------------------------------------------------------


class GaleraAPI(TrafficAPI, Protocol):
    """What the Galera actions and drills use; the real connector and the simulator both provide
    it (with the fencing and proxy operations of TrafficAPI)."""

    def observe(self) -> GaleraView: ...

    def probe(self, member: str) -> NodeView: ...

    def execute(self, member: str, sql: Sql, timeout: float | None = None) -> None: ...

    def query(self, member: str, sql: Sql, timeout: float | None = None) -> list[Row]: ...

    def service_command(self, action: ServiceAction, member: str) -> ShellCommand: ...

    def run_service(self, action: ServiceAction, member: str, timeout: float | None = None) -> CommandResult: ...

    def node_running(self, member: str) -> bool | None: ...

    def read_grastate(self, member: str) -> Grastate: ...

    def recover_position(self, member: str, timeout: float | None = None) -> Recovered: ...

    def on_every_host(self, members: Sequence[str], work: Callable[[str], T]) -> list[T]:
        """`work` for each member (its host), in the members' order: the real connector runs them
        in parallel (N recoveries take the time of the slowest), the simulator one after the other."""
        ...

    def mark_safe_to_bootstrap(self, member: str) -> CommandResult: ...

    # -- drill faults (each returns what it did) --------------------------------------------------
    def kill(self, member: str) -> str: ...

    def hang(self, member: str) -> str: ...

    def resume(self, member: str) -> str: ...

    def start(self, member: str) -> str: ...

    def close(self) -> None: ...


def _flag(value: object) -> bool:
    return str(value).upper() in ("1", "ON", "YES", "TRUE")


def view_from_status(member: Member, port: int, status: dict[str, str], seconds: float = 0.0) -> NodeView:
    """Build a node's view from its `wsrep_%` status variables."""

    def number(key: str, default: int) -> int:
        try:
            return int(status.get(key, default))
        except ValueError:
            return default

    incoming = [a.strip() for a in status.get("wsrep_incoming_addresses", "").split(",") if a.strip()]
    return NodeView(
        name=member.name,
        address=member.address,
        port=port,
        state="up",
        cluster_status=status.get("wsrep_cluster_status", ""),
        cluster_size=number("wsrep_cluster_size", 0),
        ready=_flag(status.get("wsrep_ready", "OFF")),
        connected=_flag(status.get("wsrep_connected", "OFF")),
        local_state=status.get("wsrep_local_state_comment", ""),
        last_committed=number("wsrep_last_committed", -1),
        state_uuid=status.get("wsrep_cluster_state_uuid", ""),
        incoming=incoming,
        probe_seconds=round(seconds, 3),
    )


# -- the real connector ------------------------------------------------------------------------------


class GaleraBackend(HostsAndProxies):
    """The shared MySQL pool for SQL, the inventory's host transports for everything on the nodes' hosts."""

    def __init__(self, cluster: Cluster, inventory: Inventory, clock: Clock = SYSTEM) -> None:
        self.cluster = cluster
        self.clock = clock  # the run's: when a look was taken
        self.inventory = inventory
        cred = cluster.credentials
        password = cred.password.resolve(f"{inventory.path}: cluster {cluster.name} credentials") if cred.password else ""
        # One connection per member, reused: opening one costs 20-25 ms against a Galera node,
        # which would dominate a survivor bootstrap (a probe, a statement, a poll, three writes).
        self.pool = MySQLPool(cluster, cred.user, password)
        self.hosts = MemberHosts(cluster, inventory)
        self.proxies = Proxies(cluster, inventory, self.hosts, self.pool)

    # -- SQL --------------------------------------------------------------------------------------
    def observe(self) -> GaleraView:
        members = self.cluster.members
        t = self.cluster.timeouts
        pool = cf.ThreadPoolExecutor(max_workers=min(32, len(members)), thread_name_prefix="galera-probe")
        try:
            futures = {pool.submit(self._probe, m): m for m in members}
            # Safety net on top of the pool's own timeouts (a ping, a connect, the statements).
            done, _ = cf.wait(futures, timeout=t.connect + 3 * t.read + 1.0)
            nodes = []
            for fut, member in futures.items():
                if fut in done:
                    nodes.append(fut.result())
                else:
                    nodes.append(self._failed(member, "hung", f"no answer within {t.connect + 3 * t.read + 1:g} s"))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return GaleraView(cluster=self.cluster.name, nodes=nodes, observed_at=self.clock.wall())

    def probe(self, member: str) -> NodeView:
        return self._probe(self.cluster.member(member))

    def _failed(self, member: Member, state: NodeState, error: str) -> NodeView:
        return NodeView(name=member.name, address=member.address, port=self.cluster.port_of(member), state=state, error=error)

    def _probe(self, member: Member) -> NodeView:
        started = time.monotonic()
        try:
            # wsrep_sync_wait=0: otherwise a non-Primary node blocks or refuses the probe.
            rows = self.pool.run(member, [Sql(SYNC_WAIT_OFF), Sql(STATUS_SQL)]).rows
        except ConnectError as exc:
            return self._failed(member, state_of(exc), detail_of(exc))
        except StatementFailed as exc:
            return self._failed(member, "unreachable", detail_of(exc))
        status = {str(k): str(v) for k, v in rows}
        return view_from_status(member, self.cluster.port_of(member), status, time.monotonic() - started)

    def execute(self, member: str, sql: Sql, timeout: float | None = None) -> None:
        self.query(member, sql, timeout)

    def query(self, member: str, sql: Sql, timeout: float | None = None) -> list[Row]:
        read_timeout = timeout + self.cluster.timeouts.read if timeout else None
        return self.pool.run(self.cluster.member(member), [sql], read_timeout).rows

    # -- hosts ------------------------------------------------------------------------------------
    def node_running(self, member: str) -> bool | None:
        """Ask the host (the status template): exit 0 running, 3 (LSB "not running") or 1 stopped.
        None when the answer is something else: drengine does not guess."""
        result = self.run_service("status", member, timeout=self.cluster.timeouts.read + 10)
        if result.exit_status == 0:
            return True
        if result.exit_status in (1, 3):
            return False
        return None

    def read_grastate(self, member: str) -> Grastate:
        target = self.cluster.member(member)
        text = self.hosts.transport(target).read_file(grastate_path(target))
        return parse_grastate(text, member)

    def on_every_host(self, members: Sequence[str], work: Callable[[str], T]) -> list[T]:
        # One host each: in parallel, N recoveries take the time of the slowest.
        with cf.ThreadPoolExecutor(max_workers=max(1, min(8, len(members))), thread_name_prefix="galera-host") as pool:
            return list(pool.map(work, members))

    def recover_position(self, member: str, timeout: float | None = None) -> Recovered:
        result = self.run_service("recover", member, timeout=timeout)
        output = result.stdout + "\n" + result.stderr
        if result.exit_status != 0 and not has_recovered_position(output):
            result.check()
        return parse_recovered(output, member)

    def mark_safe_to_bootstrap(self, member: str) -> CommandResult:
        target = self.cluster.member(member)
        return self.hosts.transport(target).run(safe_to_bootstrap_command(target), timeout=self.cluster.timeouts.read + 10)

def grastate_statement(member: Member) -> Statement:
    return Statement(member.name, f"cat -- {grastate_path(member)}", language="shell")


def _conforms(backend: GaleraBackend) -> GaleraAPI:
    return backend  # mypy checks here that the connector provides everything the actions use

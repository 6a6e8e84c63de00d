"""Simulated MariaDB Galera cluster behind the same interface as the real connector: the
actions send the same SQL and ask for the same service commands, which the simulator
interprets.

Modelled: each node's process (running, hung, stopped cleanly, killed), its committed
position (seqno and the history's state UUID), grastate.dat (seqno -1 while running and
after a crash, safe_to_bootstrap), `--wsrep-recover` output, and components: running nodes
that see each other (the same side of a partition; a hung node is evicted by its peers)
form a component, which is Primary when it holds a majority of the last Primary component
(the quorum rule), or after `pc.bootstrap=YES` / a bootstrap start. A node started
normally joins a Primary component on its side by IST when its history matches and the
donor's gcache still holds what it lacks, else by SST; with no Primary to join it gives up.
State is JSON in a file so that a run can be resumed.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel

from drengine.clock import SYSTEM, Clock
from drengine.datastores.galera.connector import (
    SYNC_WAIT_OFF,
    GaleraAPI,
    GaleraView,
    NodeView,
    safe_to_bootstrap_command,
    view_from_status,
)
from drengine.datastores.galera.state import Grastate, Recovered
from drengine.datastores.mysql_hosts import ServerProcess, ServiceAction, render_service
from drengine.datastores.mysql_pool import MemberDown, MemberHung, MemberUnreachable, Row, Sql, StatementFailed
from drengine.datastores.mysql_traffic import proxy_of
from drengine.errors import CommandFailed, InputError
from drengine.haproxy import ProxyView, SimProxy, sim_proxies
from drengine.inventory import Cluster
from drengine.machine import DISK, Disk
from drengine.simstate import load_or_build, save_state
from drengine.transport import CommandResult, ShellCommand, command_text

Process = Literal["running", "hung", "stopped", "killed"]
T = TypeVar("T")
ERR_1047 = "error 1047: WSREP has not yet prepared node for application use"


class SimNode(BaseModel):
    name: str
    address: str
    port: int
    process: Process = "running"
    seqno: int = 0  # last committed writeset in its data
    uuid: str = ""  # the cluster history its data belongs to
    grastate_seqno: int = -1
    safe_to_bootstrap: bool = False
    side: int = 0  # nodes see each other only on the same side of a partition
    primary: bool = False
    rows: dict[str, float] = {}  # drengine.heartbeat
    joined_by: str = ""
    read_only: bool = False

    @property
    def alive(self) -> bool:
        return self.process == "running"


class SimGalera(BaseModel):
    nodes: list[SimNode]
    state_uuid: str
    last_primary: list[str]  # members of the last Primary component (the quorum rule counts against it)
    gcache_low: int = 0  # the oldest seqno a donor can still send by IST
    proxies: list[SimProxy] = []
    # Every mariadbd process started on a host, in order ("recover g2", "bootstrap g1", "start g3"):
    # a plan must start none (tests read it).
    launched: list[str] = []

    def writer(self) -> str | None:
        """The node the proxies' write backends point at when built: the first Primary one."""
        return next((n.name for n in self.nodes if n.alive and n.primary), None)

    def node(self, name: str) -> SimNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def component_of(self, node: SimNode) -> list[SimNode]:
        if not node.alive:
            return []
        return [n for n in self.nodes if n.alive and n.side == node.side]

    def settle(self) -> None:
        """Recompute components and who is Primary after a fault, a start or a resumed node.

        A component is Primary when it holds a majority of the last Primary component. A
        node that enters a Primary component it was not in catches up from it (the sim
        does not model the transfer's duration)."""
        sides: dict[int, list[SimNode]] = {}
        for n in self.nodes:
            n.primary = n.primary and n.alive
            if n.alive:
                sides.setdefault(n.side, []).append(n)
        winner: list[SimNode] | None = None
        for comp in sides.values():
            if 2 * len({n.name for n in comp} & set(self.last_primary)) > len(self.last_primary):
                winner = comp
        for comp in sides.values():
            for n in comp:
                if comp is not winner:
                    n.primary = False
        if winner is not None:
            members = [n for n in winner if n.primary] or winner
            reference = max(members, key=lambda n: n.seqno)
            for n in winner:
                if not n.primary and n is not reference:
                    n.seqno, n.uuid, n.rows = reference.seqno, reference.uuid, dict(reference.rows)
                n.primary = True
            self.last_primary = [n.name for n in winner]

    def write(self, on: str, key: str = "", value: float = 0.0) -> None:
        """A committed writeset: every node of the Primary component applies it."""
        origin = self.node(on)
        if not (origin.alive and origin.primary):
            raise StatementFailed(f"{on}: {ERR_1047}", 1047)
        for n in self.component_of(origin):
            n.seqno += 1
            if key:
                n.rows[key] = value

    def writes(self, on: str, count: int) -> None:
        for _ in range(count):
            self.write(on)

    def kill(self, name: str) -> None:
        n = self.node(name)
        n.process, n.primary, n.grastate_seqno, n.read_only = "killed", False, -1, False
        self.settle()

    def hang(self, name: str) -> None:
        self.node(name).process = "hung"
        self.settle()

    def stop(self, name: str) -> None:
        n = self.node(name)
        last = [m for m in self.component_of(n) if m.primary]
        n.process, n.grastate_seqno, n.read_only = "stopped", n.seqno, False
        # Galera marks safe_to_bootstrap only on the last node to leave the Primary component.
        n.safe_to_bootstrap = last == [n]
        if n.name in self.last_primary and last and len(last) > 1:
            self.last_primary = [m.name for m in last if m is not n]  # a clean leave shrinks the component
        n.primary = False
        self.settle()


# -- scenarios -------------------------------------------------------------------------------------


def _healthy(cluster: Cluster, seqno: int = 100) -> SimGalera:
    if len(cluster.members) < 2:
        raise InputError(f"simulated Galera cluster {cluster.name} needs at least two members")
    state = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"drengine-sim-galera/{cluster.name}"))
    nodes = [SimNode(name=m.name, address=m.address, port=cluster.port_of(m), seqno=seqno, uuid=state, primary=True)
             for m in cluster.members]
    sim = SimGalera(nodes=nodes, state_uuid=state, last_primary=[n.name for n in nodes])
    sim.settle()
    return sim


def scenario_two_of_three_killed(cluster: Cluster) -> SimGalera:
    """The last node first, writes, then the second: the survivor is non-Primary and the most advanced."""
    sim = _healthy(cluster)
    names = [n.name for n in sim.nodes]
    sim.kill(names[-1])
    sim.writes(names[0], 5)
    for name in names[1:-1]:
        sim.kill(name)
    return sim


def scenario_all_killed_third_most_advanced(cluster: Cluster) -> SimGalera:
    """Every node crashed. The first stopped cleanly long before (grastate.dat knows its seqno);
    the others crashed with seqno -1, the last one having applied the most (Galera applies
    asynchronously after certification, so a node can be ahead at the moment of a power loss)."""
    sim = _healthy(cluster)
    names = [n.name for n in sim.nodes]
    sim.stop(names[0])
    sim.writes(names[1], 8)
    for i, name in enumerate(names[1:], start=1):
        sim.node(name).seqno += 4 * (i - 1)
        sim.node(name).process, sim.node(name).grastate_seqno, sim.node(name).primary = "killed", -1, False
    sim.settle()
    return sim


def scenario_hung_node(cluster: Cluster) -> SimGalera:
    """The last node hangs (SIGSTOP) and is evicted; writes go on; then the second dies: the
    first is non-Primary, and the hung node's position is unknown."""
    sim = _healthy(cluster)
    names = [n.name for n in sim.nodes]
    sim.hang(names[-1])
    sim.writes(names[0], 4)
    for name in names[1:-1]:
        sim.kill(name)
    return sim


def scenario_one_primary(cluster: Cluster) -> SimGalera:
    """One node died; the others kept quorum and are Primary: nothing to bootstrap."""
    sim = _healthy(cluster)
    sim.kill(sim.nodes[-1].name)
    sim.writes(sim.nodes[0].name, 3)
    return sim


def scenario_partition_both_non_primary(cluster: Cluster) -> SimGalera:
    """A network partition splits the cluster in two halves (an odd node out is dead): neither
    side holds a majority, both are non-Primary and both claim the same cluster history."""
    sim = _healthy(cluster)
    names = [n.name for n in sim.nodes]
    if len(names) % 2:
        sim.kill(names[-1])
        names = names[:-1]
    half = len(names) // 2
    for name in names[half:]:
        sim.node(name).side = 1
    sim.settle()
    return sim


SCENARIOS: dict[str, Callable[[Cluster], SimGalera]] = {
    "healthy": _healthy,
    "two-of-three-killed": scenario_two_of_three_killed,
    "all-killed-third-most-advanced": scenario_all_killed_third_most_advanced,
    "hung-node": scenario_hung_node,
    "one-primary": scenario_one_primary,
    "partition-both-non-primary": scenario_partition_both_non_primary,
}


# -- the connector twin ----------------------------------------------------------------------------

_PROVIDER_OPTIONS = re.compile(r"^SET GLOBAL wsrep_provider_options\s*=\s*'([^']*)'$", re.I)
_READ_ONLY_OK = re.compile(r"^(SET SESSION |SHOW |SELECT @@)", re.I)


class SimGaleraBackend:
    """Implements GaleraAPI over a SimGalera, saving its state after every statement or command."""

    def __init__(self, cluster: Cluster, sim: SimGalera, state_file: Path | None, clock: Clock = SYSTEM,
                 disk: Disk = DISK) -> None:
        self.cluster = cluster
        self.sim = sim
        self.state_file = state_file
        self.clock = clock  # the run's: when a look was taken (the simulator itself has no time)
        self.disk = disk  # the run's: where the state file is kept

    @classmethod
    def open(cls, cluster: Cluster, state_file: Path, clock: Clock = SYSTEM, disk: Disk = DISK) -> SimGaleraBackend:
        backend = cls(cluster, load_or_build(cluster, state_file, SimGalera,
                                              {n: partial(f, cluster) for n, f in SCENARIOS.items()}, "Galera", disk),
                      state_file, clock, disk)
        backend.sim.proxies = sim_proxies(cluster, backend.sim.writer() or cluster.members[0].name, backend.sim.proxies)
        backend.save()
        return backend

    def save(self) -> None:
        save_state(self.sim, self.state_file, self.disk)

    # -- SQL ----------------------------------------------------------------------------------------
    def observe(self) -> GaleraView:
        return GaleraView(cluster=self.cluster.name, nodes=[self._view(n) for n in self.sim.nodes], observed_at=self.clock.wall())

    def probe(self, member: str) -> NodeView:
        return self._view(self.sim.node(member))

    def _status(self, n: SimNode) -> dict[str, str]:
        comp = self.sim.component_of(n)
        return {
            "wsrep_cluster_status": "Primary" if n.primary else "non-Primary",
            "wsrep_cluster_size": str(len(comp)),
            "wsrep_ready": "ON" if n.primary else "OFF",
            "wsrep_connected": "ON",
            "wsrep_local_state_comment": "Synced" if n.primary else "Initialized",
            "wsrep_last_committed": str(n.seqno),
            "wsrep_cluster_state_uuid": n.uuid,
            "wsrep_incoming_addresses": ",".join(f"{m.address}:{m.port}" for m in comp),
        }

    def _view(self, n: SimNode) -> NodeView:
        member = self.cluster.member(n.name)
        t = self.cluster.timeouts
        if n.process == "hung":
            return NodeView(name=n.name, address=n.address, port=n.port, state="hung",
                            error=f"accepted the connection but gave no answer within the read timeout of {t.read:g} s "
                                  f"(hung or overloaded)")
        if not n.alive:
            return NodeView(name=n.name, address=n.address, port=n.port, state="down",
                            error="error 2003: connection refused: nothing listens on the port (server not running)")
        return view_from_status(member, n.port, self._status(n))

    def _reachable(self, member: str) -> SimNode:
        n = self.sim.node(member)
        if n.process == "hung":
            detail = (f"accepted the connection but gave no answer within the read timeout of "
                      f"{self.cluster.timeouts.read:g} s (hung or overloaded)")
            raise MemberHung(f"{member} ({n.address}:{n.port}): {detail}", detail)
        if not n.alive:
            detail = "error 2003: connection refused: nothing listens on the port (server not running)"
            raise MemberDown(f"{member} ({n.address}:{n.port}): {detail}", detail)
        return n

    def execute(self, member: str, sql: Sql, timeout: float | None = None) -> None:
        self.query(member, sql, timeout)

    def query(self, member: str, sql: Sql, timeout: float | None = None) -> list[Row]:
        n = self._reachable(member)
        try:
            return self._interpret(n, sql)
        finally:
            self.save()

    def _interpret(self, n: SimNode, sql: Sql) -> list[Row]:
        text = " ".join(sql.template.split())
        upper = text.upper()
        m = _PROVIDER_OPTIONS.match(text)
        if m:
            options = {k.strip(): v.strip() for k, _, v in (o.partition("=") for o in m.group(1).split(";"))}
            if options.get("pc.bootstrap", "").upper() in ("YES", "1", "TRUE", "ON"):
                for other in self.sim.component_of(n):
                    # The new component's state is the bootstrapped node's: the others take it by
                    # state transfer, whatever they held (another history, or further on).
                    if other is not n:
                        other.seqno, other.uuid, other.rows = n.seqno, n.uuid, dict(n.rows)
                    other.primary = True
                n.safe_to_bootstrap = True
                self.sim.last_primary = [o.name for o in self.sim.component_of(n)]
            return []
        if upper == "SET GLOBAL READ_ONLY=1":
            n.read_only = True
            return []
        if upper == "SELECT @@READ_ONLY, @@GTID_BINLOG_POS":
            return [(int(n.read_only), "")]
        if upper.startswith("SELECT @@HOSTNAME, @@PORT, @@SERVER_ID"):
            return [(n.address, n.port, 1)]  # Galera nodes often share a server_id
        if upper.startswith("SELECT ID FROM INFORMATION_SCHEMA.PROCESSLIST"):
            return []  # no client sessions are modelled
        if text == SYNC_WAIT_OFF or _READ_ONLY_OK.match(text):
            return []
        if not n.primary:
            raise StatementFailed(f"{n.name}: `{sql.shown()}` failed: {ERR_1047}", 1047)
        if upper.startswith(("CREATE DATABASE IF NOT EXISTS DRENGINE", "CREATE TABLE IF NOT EXISTS DRENGINE.")):
            return []
        if upper.startswith("REPLACE INTO DRENGINE.HEARTBEAT"):
            self.sim.write(n.name, key=str(sql.params[0]), value=float(sql.params[1]))
            return []
        if upper.startswith("SELECT WRITTEN_AT FROM DRENGINE.HEARTBEAT"):
            key = str(sql.params[0])
            return [(n.rows[key],)] if key in n.rows else []
        if upper.startswith("SELECT ID FROM DRENGINE.HEARTBEAT WHERE ID LIKE"):
            prefix = str(sql.params[0]).rstrip("%")
            return [(key,) for key in n.rows if key.startswith(prefix)]
        raise StatementFailed(f"{n.name}: the simulator does not understand `{sql.shown()}`")

    # -- hosts ---------------------------------------------------------------------------------------
    def service_command(self, action: ServiceAction, member: str) -> ShellCommand:
        return render_service(self.cluster, self.cluster.member(member), action)

    def _result(self, member: str, command: ShellCommand, status: int, stdout: str = "", stderr: str = "") -> CommandResult:
        self.save()
        return CommandResult(member, command_text(command), status, stdout, stderr, 0.0)

    def run_service(self, action: ServiceAction, member: str, timeout: float | None = None) -> CommandResult:
        command = self.service_command(action, member)
        n = self.sim.node(member)
        if action == "status":
            return self._result(member, command, 0 if n.process in ("running", "hung") else 3)
        if action == "recover":
            try:
                rec = self.recover_position(member, timeout)
            except CommandFailed as exc:
                return self._result(member, command, 1, stderr=str(exc))
            return self._result(member, command, 0, stderr=f"WSREP: Recovered position: {rec.uuid}:{rec.seqno}\n")
        if action == "stop":
            if n.process == "hung":
                n.process = "running"  # the stop sends SIGCONT before SIGTERM
            if n.alive:
                self.sim.stop(member)
            return self._result(member, command, 0, stdout=f"{member}: stopped\n")
        if n.process in ("running", "hung"):
            return self._result(member, command, 1, stderr=f"{member}: mariadbd is already running\n")
        self.sim.launched.append(f"{action} {member}")
        if action == "bootstrap":
            return self._bootstrap(n, command)
        return self._join(n, command)

    def _bootstrap(self, n: SimNode, command: ShellCommand) -> CommandResult:
        if not n.safe_to_bootstrap:
            return self._result(n.name, command, 1, stderr=(
                "[ERROR] WSREP: It may not be safe to bootstrap the cluster from this node. It was not the last one "
                "to leave the cluster and may not contain all the updates. To force cluster bootstrap with this "
                "node, edit the grastate.dat file manually and set safe_to_bootstrap to 1 .\n"))
        n.process, n.grastate_seqno, n.joined_by = "running", -1, "bootstrap"
        # Non-Primary nodes still running on its side would merge into the new component.
        n.primary = True
        self.sim.last_primary = [n.name]
        self.sim.state_uuid = n.uuid
        # The gcache is kept (the real lab shows IST after a full crash), so gcache_low is unchanged.
        self.sim.settle()
        return self._result(n.name, command, 0, stdout=f"{n.name}: started as a new cluster at {n.uuid}:{n.seqno}\n")

    def _join(self, n: SimNode, command: ShellCommand) -> CommandResult:
        donors = [m for m in self.sim.nodes if m.alive and m.primary and m.side == n.side]
        if not donors:
            return self._result(n.name, command, 1, stderr=(
                f"{n.name}: [ERROR] WSREP: failed to open gcomm backend connection: 110: failed to reach primary "
                f"view (pc.wait_prim_timeout): no Primary component to join\n"))
        donor = donors[0]
        ist = n.uuid == donor.uuid and n.seqno >= self.sim.gcache_low and n.seqno <= donor.seqno
        before = n.seqno
        n.process, n.grastate_seqno, n.seqno, n.uuid = "running", -1, donor.seqno, donor.uuid
        n.rows = dict(donor.rows)
        n.joined_by = "IST" if ist else "SST"
        n.safe_to_bootstrap = False
        self.sim.last_primary = sorted({*self.sim.last_primary, n.name}, key=[m.name for m in self.sim.nodes].index)
        self.sim.settle()
        how = f"IST from {before} to {donor.seqno}" if ist else f"full SST from {donor.name}"
        return self._result(n.name, command, 0, stdout=f"{n.name}: joined by {how}; Synced in a Primary component of "
                                                      f"size {len(self.sim.component_of(n))}\n")

    def node_running(self, member: str) -> bool | None:
        return self.sim.node(member).process in ("running", "hung")

    def read_grastate(self, member: str) -> Grastate:
        n = self.sim.node(member)
        return Grastate(name=member, uuid=n.uuid, seqno=n.grastate_seqno, safe_to_bootstrap=n.safe_to_bootstrap)

    def on_every_host(self, members: Sequence[str], work: Callable[[str], T]) -> list[T]:
        # The simulator answers in-process, one call at a time: threads would only cost.
        return [work(m) for m in members]

    def recover_position(self, member: str, timeout: float | None = None) -> Recovered:
        n = self.sim.node(member)
        self.sim.launched.append(f"recover {member}")
        if n.process in ("running", "hung"):
            raise CommandFailed(f"{member}: --wsrep-recover failed: [ERROR] InnoDB: Unable to lock ./ibdata1 error: 11 "
                                f"(mariadbd is still running)")
        return Recovered(name=member, uuid=n.uuid, seqno=n.seqno)

    def mark_safe_to_bootstrap(self, member: str) -> CommandResult:
        n = self.sim.node(member)
        n.safe_to_bootstrap = True
        return self._result(member, safe_to_bootstrap_command(self.cluster.member(member)), 0)

    def close(self) -> None:
        self.save()

    # -- processes and proxies (TrafficAPI) ------------------------------------------------------------
    def server_process(self, member: str) -> ServerProcess:
        n = self.sim.node(member)
        if n.process in ("stopped", "killed"):
            return ServerProcess(None, False, note=f"no pid file (the simulated node is {n.process})")
        return ServerProcess(20000 + self.sim.nodes.index(n), True, "mariadbd",
                             "stopped (SIGSTOP)" if n.process == "hung" else "", stopped=n.process == "hung")

    def _proxy(self, name: str) -> SimProxy:
        return next(p for p in self.sim.proxies if p.name == name)

    def proxy_views(self) -> list[ProxyView]:
        # HAProxy's TCP checks pass on a hung node: the kernel still completes the handshake.
        health = {n.name: "up" if n.process in ("running", "hung") else "down" for n in self.sim.nodes}
        return [self._proxy(p.name).view(p, health) for p in self.cluster.proxies]

    def proxy_command(self, proxy: str, command: str) -> None:
        self._proxy(proxy).apply(proxy_of(self.cluster, proxy), command)
        self.save()

    def through_frontend(self, proxy: str, statements: Sequence[Sql], read_timeout: float | None = None) -> list[Row]:
        up = {n.name: n.process in ("running", "hung") for n in self.sim.nodes}
        writer = self._proxy(proxy).writer(proxy_of(self.cluster, proxy), up)
        if writer is None:
            detail = "HAProxy closed the connection: no server of its write backend is ready and up"
            raise MemberUnreachable(f"proxy {proxy} frontend: {detail}", detail)
        rows: list[Row] = []
        for sql in statements:
            rows = self.query(writer, sql, read_timeout)
        return rows

    # -- drill faults (GaleraAPI) ---------------------------------------------------------------------
    def kill(self, member: str) -> str:
        self.sim.kill(member)
        self.save()
        return f"simulated SIGKILL of {member}"

    def hang(self, member: str) -> str:
        self.sim.hang(member)
        self.save()
        return f"simulated SIGSTOP of {member}"

    def resume(self, member: str) -> str:
        n = self.sim.node(member)
        if n.process != "hung":
            return f"{member}: nothing to wake: the simulated node is {n.process}"
        n.process = "running"
        self.sim.settle()
        self.save()
        return f"simulated SIGCONT of {member}"

    def start(self, member: str) -> str:
        result = self.run_service("start", member)
        result.check()
        return result.command


def _conforms(backend: SimGaleraBackend) -> GaleraAPI:
    return backend  # mypy checks here that the simulator provides everything the actions use

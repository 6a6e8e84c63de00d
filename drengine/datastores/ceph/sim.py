"""The simulated twin of the Ceph backend: `CephBackend` over the in-memory `CephSim`.

The simulated cluster is loaded from the state file when it exists (a resumed run, or a
later runbook such as ceph-restore after ceph-degrade, continues with the cluster as it was
left), else built from the inventory's scenario. It is saved after every call that may
change it (time passing included) and on close, atomically, so a crash never leaves half a
state file behind. Its time is the run's `Clock`: on a `SimulatedClock` a bounded wait of a
step costs no real time, and long-down OSDs are marked out on the way (unless noout is set).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from drengine.clock import Clock
from drengine.datastores.ceph.backend import CephBackend, HostMonitorControl, MonProbe, PortCheck, mon_id
from drengine.datastores.ceph.connector import JsonDoc
from drengine.datastores.ceph.scenarios import SCENARIOS
from drengine.datastores.ceph.simcluster import CephSim
from drengine.errors import InputError
from drengine.inventory import Cluster, Member
from drengine.machine import DISK, Disk
from drengine.simstate import load_or_build, save_state, state_exists
from drengine.transport import ServiceAction

# Monitor and PG commands that only look: everything else may change the model.
READ_ONLY_PREFIXES = frozenset(
    {"status", "health", "quorum_status", "mon dump", "osd dump", "osd tree", "pg ls", "pg ls-by-pool", "pg dump_stuck",
     "query", "list_unfound"}
)
T = TypeVar("T")


class SimCephBackend(CephBackend):
    def __init__(self, cluster: Cluster, sim: CephSim, state_file: Path, disk: Disk = DISK) -> None:
        super().__init__(cluster, None, api=sim, clock=sim.clock)
        self.sim = sim
        self.state_file = state_file
        self.disk = disk  # the run's: where the state file is kept
        self.monitors = SimMonitorControl(cluster, self)

    @classmethod
    def open(cls, cluster: Cluster, state_file: Path, clock: Clock | None = None, disk: Disk = DISK) -> SimCephBackend:
        """`clock` is the run's; without one the simulator keeps a `SimulatedClock` of its own."""
        return cls(cluster, load_sim(cluster, state_file, clock, disk), state_file, disk)

    def describe(self) -> str:
        return f"simulated Ceph cluster {self.cluster.name} ({self.state_file})"

    def save(self) -> None:
        save_sim(self.sim, self.state_file, self.disk)

    def _saving(self, changes: bool, call: Callable[[], T]) -> T:
        """Run one call; save when it may change the model or time moved the model on. Saved even
        when refused: the state file must always show the cluster as it is now."""
        before = self.sim.state.clock
        try:
            return call()
        finally:
            if changes or self.sim.state.clock != before:
                self.save()

    def mon_command(self, cmd: Mapping[str, Any]) -> JsonDoc:
        return self._saving(str(cmd.get("prefix", "")) not in READ_ONLY_PREFIXES, lambda: self.sim.mon_command(cmd))

    def pg_command(self, pgid: str, cmd: Mapping[str, Any]) -> JsonDoc:
        return self._saving(str(cmd.get("prefix", "")) not in READ_ONLY_PREFIXES, lambda: self.sim.pg_command(pgid, cmd))

    def write_object(self, pool: str, name: str, data: bytes, timeout: float) -> None:
        self._saving(True, lambda: self.sim.write_object(pool, name, data, timeout))

    def read_object(self, pool: str, name: str) -> bytes:
        return self._saving(False, lambda: self.sim.read_object(pool, name))

    def mon_listens(self, member: Member) -> PortCheck:
        # A stopped (SIGSTOP) monitor's port still accepts: the kernel completes the handshake.
        mon = self.sim.mon(mon_id(member.name))
        if mon.up or mon.hung:
            return PortCheck(state="accepts")
        return PortCheck(state="refused", error=f"{member.address}:{mon.port}: Connection refused (simulated)")

    # -- fault injection (drills): the model's OSDs and monitors, by member name

    def kill(self, member: str) -> str:
        return self._fault(member, "SIGKILL", self.sim.kill_osds, self.sim.kill_mons)

    def hang(self, member: str) -> str:
        return self._fault(member, "SIGSTOP", self.sim.hang_osds, lambda names: self.sim.hang_mon(names[0]))

    def resume(self, member: str) -> str:
        return self._fault(member, "SIGCONT", self.sim.resume_osds, lambda names: self.sim.resume_mon(names[0]))

    def start(self, member: str) -> str:
        return self._fault(member, "start", self.sim.start_osds, lambda names: self.sim.start_mon(names[0]))

    def _fault(self, member: str, what: str, on_osds: Callable[[list[int]], None],
               on_mons: Callable[[list[str]], None]) -> str:
        kind, _, ident = member.partition(".")
        if kind == "osd" and ident.isdigit():
            on_osds([int(ident)])
        elif kind == "mon" and ident:
            on_mons([ident])
        else:
            raise InputError(f"the Ceph simulator has no daemon {member!r} to {what}; it simulates osd.N and mon.X")
        self.save()
        return f"simulated {what} of {member}"

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.save()


def load_sim(cluster: Cluster, state_file: Path, clock: Clock | None = None, disk: Disk = DISK) -> CephSim:
    """The simulated cluster of this inventory entry: from its state file, else a fresh scenario."""
    # A saved cluster keeps its own time and follows the clock from there; a new one starts on it.
    saved = state_exists(state_file, disk)
    sim = load_or_build(cluster, state_file, lambda text: CephSim.from_json(text, clock=clock), SCENARIOS, "Ceph", disk)
    sim.connect_timeout, sim.op_timeout = cluster.timeouts.connect, cluster.timeouts.read
    if clock is not None and not saved:
        sim.follow(clock)
    return sim


def save_sim(sim: CephSim, state_file: Path, disk: Disk = DISK) -> None:
    save_state(sim.to_json(), state_file, disk)


class SimMonitorControl(HostMonitorControl):
    """Monitor surgery on the simulated monitors: the same commands are shown (from the
    inventory's templates when it has them), and the model's monitors are stopped, edited and
    started instead of running them."""

    def __init__(self, cluster: Cluster, backend: SimCephBackend) -> None:
        super().__init__(cluster, None, clock=backend.clock)
        self.backend = backend

    def _known(self, member: str) -> str:
        name = mon_id(member)
        self.backend.sim.mon(name)  # CommandFailed for a monitor the scenario does not have
        return name

    def probe(self, member: str) -> MonProbe:
        mon = self.backend.sim.mon(self._known(member))
        if mon.hung:
            return MonProbe(name=mon.name, running=False,
                            error=f"(simulated) the admin socket does not answer: {member} is stopped (SIGSTOP)")
        if not mon.up:
            return MonProbe(name=mon.name, running=False, error=f"(simulated) no admin socket: {member} is not running")
        quorum = self.backend.sim.quorum()
        electing = mon.joins_at > self.backend.sim.state.clock
        state = ("leader" if quorum and quorum[0] == mon.name else "peon") if mon.name in quorum else \
            "electing" if electing else "probing"
        return MonProbe(name=mon.name, running=True, state=state, monmap_epoch=mon.monmap_epoch, monmap=list(mon.monmap))

    def stop_command(self, member: str) -> str:
        return self._shown("stop", member)

    def start_command(self, member: str) -> str:
        return self._shown("start", member)

    def _shown(self, which: ServiceAction, member: str) -> str:
        if getattr(self.cluster.service, which):
            return self._template(which, self.cluster.member(member)).text
        return f"systemctl {which} ceph-mon@{mon_id(member)}"

    def stop(self, member: str) -> None:
        self.backend.sim.kill_mons([self._known(member)])
        self.backend.save()

    def edit_monmap(self, member: str, remove: list[str]) -> list[str]:
        name = self._known(member)
        members = self.backend.sim.extract_monmap(name)
        kept = [m for m in members if m not in {mon_id(r) for r in remove}]
        self.backend.sim.inject_monmap(name, kept)
        self.backend.save()
        return kept

    def start(self, member: str) -> None:
        self.backend.sim.start_mon(self._known(member))
        self.backend.save()

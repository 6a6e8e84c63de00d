"""The simulated twin of the Ceph backend: `CephBackend` over the in-memory `CephSim`.

The simulated cluster is loaded from the state file when it exists (a resumed run, or a
later runbook such as ceph-restore after ceph-degrade, continues with the cluster as it was
left), else built from the inventory's scenario. It is saved after every call that may
change it and on close, atomically, so a crash never leaves half a state file behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drengine.datastores.ceph.backend import CephBackend, HostMonitorControl, MonProbe, mon_id
from drengine.datastores.ceph.connector import JsonDoc
from drengine.datastores.ceph.simcluster import SCENARIOS, CephSim
from drengine.inventory import Cluster
from drengine.simstate import load_or_build, save_state
from drengine.transport import ServiceAction

# Monitor and PG commands that only look: everything else may change the model.
READ_ONLY_PREFIXES = frozenset(
    {"status", "health", "quorum_status", "mon dump", "osd dump", "osd tree", "pg ls", "pg ls-by-pool", "pg dump_stuck",
     "query", "list_unfound"}
)


class SimCephBackend(CephBackend):
    def __init__(self, cluster: Cluster, sim: CephSim, state_file: Path) -> None:
        super().__init__(cluster, None, api=sim)
        self.sim = sim
        self.state_file = state_file
        self.monitors = SimMonitorControl(cluster, self)

    @classmethod
    def open(cls, cluster: Cluster, state_file: Path) -> SimCephBackend:
        return cls(cluster, load_sim(cluster, state_file), state_file)

    def describe(self) -> str:
        return f"simulated Ceph cluster {self.cluster.name} ({self.state_file})"

    def clock(self) -> float:
        return self.sim.state.clock

    def sleep(self, seconds: float) -> None:
        # Simulated time passes at once: a bounded wait costs no real time, and long-down OSDs
        # are marked out on the way (unless noout is set), as a real cluster would.
        self.sim.elapse(seconds)
        self.save()

    def save(self) -> None:
        save_sim(self.sim, self.state_file)

    def mon_command(self, cmd: Mapping[str, Any]) -> JsonDoc:
        try:
            return super().mon_command(cmd)
        finally:
            # Saved even when refused: the state file must always show the cluster as it is now.
            if str(cmd.get("prefix", "")) not in READ_ONLY_PREFIXES:
                self.save()

    def pg_command(self, pgid: str, cmd: Mapping[str, Any]) -> JsonDoc:
        try:
            return super().pg_command(pgid, cmd)
        finally:
            if str(cmd.get("prefix", "")) not in READ_ONLY_PREFIXES:
                self.save()

    def write_object(self, pool: str, name: str, data: bytes, timeout: float) -> None:
        try:
            super().write_object(pool, name, data, timeout)
        finally:
            self.save()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.save()


def load_sim(cluster: Cluster, state_file: Path) -> CephSim:
    """The simulated cluster of this inventory entry: from its state file, else a fresh scenario."""
    sim = load_or_build(cluster, state_file, CephSim.from_json, SCENARIOS, "Ceph")
    sim.connect_timeout, sim.op_timeout = cluster.timeouts.connect, cluster.timeouts.read
    return sim


def save_sim(sim: CephSim, state_file: Path) -> None:
    save_state(sim.to_json(), state_file)


class SimMonitorControl(HostMonitorControl):
    """Monitor surgery on the simulated monitors: the same commands are shown (from the
    inventory's templates when it has them), and the model's monitors are stopped, edited and
    started instead of running them."""

    def __init__(self, cluster: Cluster, backend: SimCephBackend) -> None:
        super().__init__(cluster, None)
        self.backend = backend

    def _known(self, member: str) -> str:
        name = mon_id(member)
        self.backend.sim.mon(name)  # CommandFailed for a monitor the scenario does not have
        return name

    def probe(self, member: str) -> MonProbe:
        mon = self.backend.sim.mon(self._known(member))
        if not mon.up:
            return MonProbe(name=mon.name, running=False, error=f"(simulated) no admin socket: {member} is not running")
        quorum = self.backend.sim.quorum()
        state = ("leader" if quorum and quorum[0] == mon.name else "peon") if mon.name in quorum else "probing"
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

"""Drill kit for Ceph: canary objects in the `drengine` pool, and OSD faults (two of three
OSDs killed: their PGs go inactive and client I/O blocks until the degrade runbook acts).

The kit is a value: it keeps nothing between calls. Faults go through the backend it is
given (`kill`, `start` of a member), so the same kit drives a lab over its hosts and the
simulator's model; the drill tells it which canaries to read back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from drengine.datastores.ceph.actions.restore import DEGRADE_RUN_INPUT
from drengine.datastores.ceph.backend import CephBackend
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError
from drengine.inventory import Cluster

POOL = "drengine"
# Flags that would hold recovery or hide a problem from the drill's measurements.
HOLDING_FLAGS = ("noout", "norebalance", "norecover", "nobackfill")


def _faults() -> Mapping[str, Fault]:
    return MappingProxyType({
        "kill-osds": Fault("kill-osds", "SIGKILL two of the three OSDs: PGs below min_size, client I/O blocks"),
    })


@dataclass(frozen=True)
class CephKit:
    pool: str = POOL
    faults: Mapping[str, Fault] = field(default_factory=_faults)

    def health(self, cluster: Cluster, backend: CephBackend) -> list[str]:
        snap = backend.observe()
        problems = []
        if snap.pool(self.pool) is None:
            problems.append(f"pool {self.pool} does not exist; drills write their canary objects there")
        if snap.down_osds:
            problems.append("OSDs down: " + ", ".join(f"osd.{o.id}" for o in snap.down_osds))
        if not snap.all_active_clean:
            problems.append("not every PG is active+clean")
        flags = [f for f in snap.flags if f in HOLDING_FLAGS]
        if flags:
            problems.append(f"flags left set: {', '.join(flags)}")
        return problems

    def write_canary(self, cluster: Cluster, backend: CephBackend, key: str) -> bool:
        try:
            backend.write_object(self.pool, key, key.encode(), max(1.0, cluster.timeouts.read))
        except DrengineError:
            return False
        return True

    def read_canaries(self, cluster: Cluster, backend: CephBackend, keys: Sequence[str]) -> set[str]:
        present = set()
        for key in keys:
            try:
                if backend.read_object(self.pool, key) == key.encode():
                    present.add(key)
            except DrengineError:
                continue
        return present

    def _victims(self, cluster: Cluster) -> list[str]:
        return [m.name for m in cluster.members if m.role == "osd"][-2:]

    def inject(self, cluster: Cluster, backend: CephBackend, fault: str) -> Injected:
        victims = self._victims(cluster)
        return Injected("; ".join(backend.kill(victim) for victim in victims), members=victims)

    def settled(self, cluster: Cluster, backend: CephBackend, fault: str) -> bool:
        down = {f"osd.{o.id}" for o in backend.observe().down_osds}
        return set(self._victims(cluster)) <= down

    def bring_back(self, cluster: Cluster, backend: CephBackend, fault: str, run_dir: Path) -> Restore | None:
        text = "; ".join(backend.start(victim) for victim in self._victims(cluster))
        # ceph-restore puts back exactly what this drill's degrade run changed.
        return Restore(text, "ceph-restore", {DEGRADE_RUN_INPUT: str(run_dir)})

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        return ()

    def check_after(self, cluster: Cluster, backend: CephBackend, fault: str) -> list[str]:
        return []

    def cleanup(self, cluster: Cluster, backend: CephBackend, fault: str) -> str | None:
        return (f"{', '.join(self._victims(cluster))} are still down and min_size is lowered: start them, then run "
                f"ceph-restore")


KIT = CephKit()

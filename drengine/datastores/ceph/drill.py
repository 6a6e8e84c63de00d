"""Drill kit for Ceph: canary objects in the `drengine` pool, and OSD faults (two of three
OSDs killed: their PGs go inactive and client I/O blocks until the degrade runbook acts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drengine.datastores.ceph.actions import DEGRADE_RUN_ENV
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError
from drengine.faults import signal_member, start_member
from drengine.inventory import Cluster, Inventory

POOL = "drengine"


class CephKit:
    faults = {
        "kill-osds": Fault("kill-osds", "SIGKILL two of the three OSDs: PGs below min_size, client I/O blocks"),
    }

    def __init__(self) -> None:
        self.inventory: Inventory | None = None
        self.written: list[str] = []

    def health(self, cluster: Cluster, backend: Any) -> list[str]:
        snap = backend.observe()
        problems = []
        if snap.pool(POOL) is None:
            problems.append(f"pool {POOL} does not exist; drills write their canary objects there")
        if snap.down_osds:
            problems.append("OSDs down: " + ", ".join(f"osd.{o.id}" for o in snap.down_osds))
        if not snap.all_active_clean:
            problems.append("not every PG is active+clean")
        flags = [f for f in snap.flags if f in ("noout", "norebalance", "norecover", "nobackfill")]
        if flags:
            problems.append(f"flags left set: {', '.join(flags)}")
        self.written = []
        return problems

    def _timeout(self, cluster: Cluster) -> float:
        return max(1.0, cluster.timeouts.read)

    def write_canary(self, cluster: Cluster, backend: Any, key: str) -> bool:
        try:
            backend.write_object(POOL, key, key.encode(), self._timeout(cluster))
        except DrengineError:
            return False
        self.written.append(key)
        return True

    def read_canaries(self, cluster: Cluster, backend: Any) -> set[str]:
        present = set()
        for key in self.written:
            try:
                if backend.read_object(POOL, key) == key.encode():
                    present.add(key)
            except DrengineError:
                continue
        return present

    def _victims(self, cluster: Cluster) -> list[str]:
        return [m.name for m in cluster.members if m.role == "osd"][-2:]

    def settled(self, cluster: Cluster, backend: Any, fault: str) -> bool:
        down = {f"osd.{o.id}" for o in backend.observe().down_osds}
        return set(self._victims(cluster)) <= down

    def bring_back(self, cluster: Cluster, backend: Any, fault: str, run_dir: Path) -> Restore | None:
        victims = self._victims(cluster)
        if cluster.simulated is not None:
            backend.sim.start_osds([int(v.split(".")[1]) for v in victims])
            backend.save()
            text = f"simulated restart of {', '.join(victims)}"
        else:
            assert self.inventory is not None
            text = "; ".join(f"started {v}: {start_member(self.inventory, cluster, cluster.member(v))}" for v in victims)
        # ceph-restore puts back exactly what this drill's degrade run changed.
        return Restore(text, "ceph-restore", {DEGRADE_RUN_ENV: str(run_dir)})

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        return ()

    def inject(self, cluster: Cluster, backend: Any, fault: str) -> Injected:
        victims = self._victims(cluster)
        if cluster.simulated is not None:
            backend.sim.kill_osds([int(v.split(".")[1]) for v in victims])
            backend.save()
            return Injected(f"simulated SIGKILL of {', '.join(victims)}", members=list(victims))
        assert self.inventory is not None
        return Injected("; ".join(signal_member(self.inventory, cluster, cluster.member(n), "KILL") for n in victims), members=list(victims))

    def cleanup(self, cluster: Cluster, backend: Any, fault: str) -> str | None:
        return (f"{', '.join(self._victims(cluster))} are still down and min_size is lowered: start them, then run "
                f"ceph-restore")


KIT = CephKit()

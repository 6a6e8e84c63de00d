"""Drill kit for Galera: canary rows in drengine.heartbeat written on a Primary, Synced node,
and node faults (two of three killed, or all of them), on the simulator or over the hosts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drengine.datastores.galera.connector import GaleraView
from drengine.datastores.mariadb.connector import HEARTBEAT_DDL, Sql
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError
from drengine.faults import signal_member
from drengine.inventory import Cluster, Inventory

WRITE = "REPLACE INTO drengine.heartbeat (id, written_at) VALUES (%s, %s)"
READ = "SELECT written_at FROM drengine.heartbeat WHERE id = %s"


def _writable(view: GaleraView) -> list[str]:
    return [n.name for n in view.nodes if n.state == "up" and n.cluster_status == "Primary" and n.local_state == "Synced"]


class GaleraKit:
    faults = {
        "kill-two-nodes": Fault("kill-two-nodes", "SIGKILL two of three nodes: the survivor goes non-Primary"),
        "kill-all": Fault("kill-all", "SIGKILL every node, one after the other: bootstrap from the most advanced"),
    }

    def __init__(self) -> None:
        self.inventory: Inventory | None = None
        self._target: str | None = None
        self.written: list[str] = []

    def _find(self, backend: Any) -> str | None:
        nodes = _writable(backend.observe())
        self._target = nodes[0] if nodes else None
        return self._target

    def health(self, cluster: Cluster, backend: Any) -> list[str]:
        view: GaleraView = backend.observe()
        problems = [f"{n.name} is {n.state} ({n.cluster_status or 'no status'}, {n.local_state or '-'})"
                    for n in view.nodes if n.name not in _writable(view)]
        if not problems:
            self._target = view.nodes[0].name
            self.written = []
            for sql in HEARTBEAT_DDL:
                backend.execute(self._target, sql)
        return problems

    def write_canary(self, cluster: Cluster, backend: Any, key: str) -> bool:
        import time

        target = self._target or self._find(backend)
        if target is None:
            return False
        try:
            backend.execute(target, Sql(WRITE, (key, round(time.time(), 3))))
        except DrengineError:
            self._target = None
            return False
        self.written.append(key)
        return True

    def read_canaries(self, cluster: Cluster, backend: Any, keys: Sequence[str] = ()) -> set[str]:
        target = self._find(backend)
        if target is None:
            return set()
        return {k for k in self.written if backend.query(target, Sql(READ, (k,)))}

    def _victims(self, cluster: Cluster, fault: str) -> list[str]:
        names = [m.name for m in cluster.members]
        return names if fault == "kill-all" else names[1:]

    def settled(self, cluster: Cluster, backend: Any, fault: str) -> bool:
        view: GaleraView = backend.observe()
        return not any(n.state == "up" and n.cluster_status == "Primary" for n in view.nodes)

    def bring_back(self, cluster: Cluster, backend: Any, fault: str, run_dir: Path) -> Restore | None:
        return None

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        return ()

    def inject(self, cluster: Cluster, backend: Any, fault: str) -> Injected:
        victims = self._victims(cluster, fault)
        self._target = None
        if cluster.simulated is not None:
            for name in victims:
                backend.kill(name)
            return Injected(f"simulated SIGKILL of {', '.join(victims)}", members=list(victims))
        assert self.inventory is not None
        return Injected("; ".join(signal_member(self.inventory, cluster, cluster.member(n), "KILL") for n in victims), members=list(victims))

    def cleanup(self, cluster: Cluster, backend: Any, fault: str) -> str | None:
        return None


KIT = GaleraKit()

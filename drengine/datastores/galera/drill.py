"""Drill kit for Galera: canary rows in drengine.heartbeat written on a Primary, Synced node,
and node faults (two of three killed, or all of them), injected by the backend (signals on
the real hosts, the model in the simulator). The kit is a value: it keeps nothing between
calls; what it must know is observed again."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from drengine.datastores.galera.connector import GaleraAPI, GaleraView
from drengine.datastores.mariadb.connector import HEARTBEAT_DDL
from drengine.datastores.mysql_pool import Sql
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError
from drengine.inventory import Cluster

WRITE = "REPLACE INTO drengine.heartbeat (id, written_at) VALUES (%s, %s)"
READ_CANARIES = Sql("SELECT id FROM drengine.heartbeat WHERE id LIKE %s", ("canary-%",))

FAULTS = MappingProxyType({
    "kill-two-nodes": Fault("kill-two-nodes", "SIGKILL two of three nodes: the survivor goes non-Primary"),
    "kill-all": Fault("kill-all", "SIGKILL every node, one after the other: bootstrap from the most advanced"),
})


def _writable(view: GaleraView) -> list[str]:
    return [n.name for n in view.nodes if n.state == "up" and n.cluster_status == "Primary" and n.local_state == "Synced"]


def _victims(cluster: Cluster, fault: str) -> list[str]:
    names = [m.name for m in cluster.members]
    return names if fault == "kill-all" else names[1:]


@dataclass(frozen=True)
class GaleraKit:
    faults: Mapping[str, Fault] = field(default_factory=lambda: FAULTS)

    def health(self, cluster: Cluster, backend: GaleraAPI) -> list[str]:
        view = backend.observe()
        problems = [f"{n.name} is {n.state} ({n.cluster_status or 'no status'}, {n.local_state or '-'})"
                    for n in view.nodes if n.name not in _writable(view)]
        if not problems:
            for sql in HEARTBEAT_DDL:
                backend.execute(view.nodes[0].name, sql)
        return problems

    def write_canary(self, cluster: Cluster, backend: GaleraAPI, key: str) -> bool:
        nodes = _writable(backend.observe())
        if not nodes:
            return False
        try:
            backend.execute(nodes[0], Sql(WRITE, (key, round(time.time(), 3))))
        except DrengineError:
            return False
        return True

    def read_canaries(self, cluster: Cluster, backend: GaleraAPI) -> set[str]:
        nodes = _writable(backend.observe())
        if not nodes:
            return set()
        return {str(r[0]) for r in backend.query(nodes[0], READ_CANARIES)}

    def settled(self, cluster: Cluster, backend: GaleraAPI, fault: str) -> bool:
        view = backend.observe()
        return not any(n.state == "up" and n.cluster_status == "Primary" for n in view.nodes)

    def bring_back(self, cluster: Cluster, backend: GaleraAPI, fault: str, run_dir: Path) -> Restore | None:
        return None

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        return ()

    def inject(self, cluster: Cluster, backend: GaleraAPI, fault: str) -> Injected:
        return Injected("; ".join(backend.kill(name) for name in _victims(cluster, fault)))

    def cleanup(self, cluster: Cluster, backend: GaleraAPI, fault: str) -> str | None:
        return None


KIT = GaleraKit()

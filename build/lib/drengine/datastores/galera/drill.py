"""Drill kit for Galera: canary rows in drengine.heartbeat, written through the first proxy's
write frontend when the inventory has one (as the application's writes are), else on a
Primary, Synced node; node faults (two of three killed or hung, or all killed), injected by
the backend (signals on the real hosts, the model in the simulator). The kit is a value: it
keeps nothing between calls; what it must know is observed again."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from drengine.clock import wait_until
from drengine.datastores.galera.connector import GaleraAPI, GaleraView
from drengine.datastores.galera.decisions import components
from drengine.datastores.mariadb.connector import HEARTBEAT_DDL
from drengine.datastores.mariadb.drill import CANARY_TIMEOUT, canaries_through
from drengine.datastores.mysql_pool import Sql
from drengine.datastores.mysql_traffic import frontends, traffic_problems
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError
from drengine.inventory import Cluster

WRITE = "REPLACE INTO drengine.heartbeat (id, written_at) VALUES (%s, %s)"
READ_CANARIES = Sql("SELECT id FROM drengine.heartbeat WHERE id LIKE %s", ("canary-%",))

FAULTS = MappingProxyType({
    "kill-two-nodes": Fault("kill-two-nodes", "SIGKILL two of three nodes: the survivor goes non-Primary"),
    "kill-all": Fault("kill-all", "SIGKILL every node, one after the other: bootstrap from the most advanced"),
    "hang-two-nodes": Fault("hang-two-nodes", "SIGSTOP two of three nodes; they are woken (SIGCONT) after the runbook and "
                                              "nothing else is done to them: the runbook's fencing must leave one Primary "
                                              "component and the proxies writing to it"),
})


def _writable(view: GaleraView) -> list[str]:
    return [n.name for n in view.nodes if n.state == "up" and n.cluster_status == "Primary" and n.local_state == "Synced"]


def _victims(cluster: Cluster, fault: str) -> list[str]:
    names = [m.name for m in cluster.members]
    return names if fault == "kill-all" else names[1:]


def _primary_groups(view: GaleraView) -> list[list[str]]:
    primary = {n.name for n in view.nodes if n.is_primary}
    return [g for g in components(view) if primary & set(g)]


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
            problems += traffic_problems(backend, set(_writable(view)))
        return problems

    def write_canary(self, cluster: Cluster, backend: GaleraAPI, key: str) -> bool:
        write = Sql(WRITE, (key, round(time.time(), 3)))
        try:
            through = frontends(cluster)
            if through:
                backend.through_frontend(through[0], [write], read_timeout=CANARY_TIMEOUT)
                return True
            nodes = _writable(backend.observe())
            if not nodes:
                return False
            backend.execute(nodes[0], write)
        except DrengineError:
            return False
        return True

    def read_canaries(self, cluster: Cluster, backend: GaleraAPI, keys: Sequence[str] = ()) -> set[str]:
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
        victims = _victims(cluster, fault)
        done = [backend.hang(name) if fault == "hang-two-nodes" else backend.kill(name) for name in victims]
        return Injected("; ".join([*done, *canaries_through(cluster)]), members=victims)

    def cleanup(self, cluster: Cluster, backend: GaleraAPI, fault: str) -> str | None:
        if fault != "hang-two-nodes":
            return None
        # Wake what the fault froze, and nothing else: the runbook's fencing is what is tested.
        return "; ".join(backend.resume(name) for name in _victims(cluster, fault))

    def check_after(self, cluster: Cluster, backend: GaleraAPI, fault: str) -> list[str]:
        """One Primary component, and the proxies send writes only to its nodes. Woken nodes get a
        few seconds to show where they stand (rejoin, or form a component of their own)."""
        seen: list[GaleraView] = []

        def one_component() -> bool:
            seen.append(backend.observe())
            return len(_primary_groups(seen[-1])) == 1

        wait_until(one_component, 10.0, 0.5)
        groups = _primary_groups(seen[-1])
        if len(groups) != 1:
            shown = " | ".join(", ".join(g) for g in groups) or "none"
            return [f"{len(groups)} Primary components after the drill ({shown})"
                    + (": split brain, the runbook did not fence the nodes left out" if groups else "")]
        primary = {n.name for n in seen[-1].nodes if n.is_primary}
        return traffic_problems(backend, primary)


KIT = GaleraKit()

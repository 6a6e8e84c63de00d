"""Drill kit for MongoDB replica sets: canary documents written with w: majority on the
primary, and the majority-loss fault (the simulated set's model, or the members' processes
over their hosts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drengine.datastores.mongodb.connector import MongoBackend
from drengine.datastores.mongodb.setview import CANARY_COLLECTION, CANARY_DB, command_text
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError
from drengine.faults import signal_member
from drengine.inventory import Cluster, Inventory


class MongoKit:
    faults = {
        "kill-majority": Fault("kill-majority", "kill the primary and enough other members that no majority is left"),
    }

    def __init__(self) -> None:
        self.inventory: Inventory | None = None
        self._primary: str | None = None

    def _find_primary(self, backend: MongoBackend) -> str | None:
        view = backend.observe()
        primaries = [m.name for m in view.members if m.reachable and m.state == "PRIMARY"]
        self._primary = primaries[0] if len(primaries) == 1 else None
        return self._primary

    def health(self, cluster: Cluster, backend: Any) -> list[str]:
        view = backend.observe()
        problems = [f"{m.name} unreachable ({m.error})" for m in view.members if not m.reachable]
        primaries = [m.name for m in view.members if m.reachable and m.state == "PRIMARY"]
        if len(primaries) != 1:
            problems.append(f"expected exactly one PRIMARY, found {len(primaries)}")
        problems += [f"{m.name} is {m.state}, expected SECONDARY" for m in view.members
                     if m.reachable and m.state not in ("PRIMARY", "SECONDARY", "ARBITER")]
        if not problems:
            self._primary = primaries[0]
        return problems

    def write_canary(self, cluster: Cluster, backend: Any, key: str) -> bool:
        target = self._primary or self._find_primary(backend)
        if target is None:
            return False
        try:
            backend.insert_canary(target, key)
            return True
        except DrengineError:
            self._primary = None
            return False

    def read_canaries(self, cluster: Cluster, backend: Any) -> set[str]:
        target = self._find_primary(backend)
        if target is None:
            return set()
        reply = backend.command(target, command_text({"find": CANARY_COLLECTION, "filter": {}, "batchSize": 100000,
                                                      "$db": CANARY_DB}))
        return {str(doc["_id"]) for doc in reply.get("cursor", {}).get("firstBatch", [])}

    def _victims(self, cluster: Cluster) -> list[str]:
        names = [m.name for m in cluster.members]
        primary = self._primary or names[0]
        others = [n for n in names if n != primary]
        return [primary, *others[: len(names) // 2]]

    def settled(self, cluster: Cluster, backend: Any, fault: str) -> bool:
        return not any(m.reachable and m.state == "PRIMARY" for m in backend.observe().members)

    def bring_back(self, cluster: Cluster, backend: Any, fault: str, run_dir: Path) -> Restore | None:
        return None

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        return ()

    def inject(self, cluster: Cluster, backend: Any, fault: str) -> Injected:
        victims = self._victims(cluster)
        self._primary = None
        if cluster.simulated is not None:
            with backend.wire.locked() as model:
                for name in victims:
                    model.kill(backend.member_ids[name])
            backend.save()
            return Injected(f"simulated members {', '.join(victims)} killed (the primary first)")
        assert self.inventory is not None
        return Injected("; ".join(signal_member(self.inventory, cluster, cluster.member(n), "KILL") for n in victims))

    def cleanup(self, cluster: Cluster, backend: Any, fault: str) -> str | None:
        return ("the killed members were removed from the set by the forced reconfiguration: keep them down until "
                "their data is wiped, then add them back with mongodb-rejoin")


KIT = MongoKit()

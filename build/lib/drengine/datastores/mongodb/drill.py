"""Drill kit for MongoDB replica sets: canary documents written with w: majority on the
primary, and the majority-loss fault, injected through the backend (`kill`), which is the
simulated member's process or the real member's mongod over its host alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drengine.datastores.mongodb.connector import MongoBackend
from drengine.datastores.mongodb.decisions import primaries_seen
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError
from drengine.inventory import Cluster

KILL_MAJORITY = Fault("kill-majority", "kill the primary and enough other members that no majority is left")


def _faults() -> Mapping[str, Fault]:
    return {KILL_MAJORITY.name: KILL_MAJORITY}


@dataclass(frozen=True)
class MongoKit:
    faults: Mapping[str, Fault] = field(default_factory=_faults)

    def health(self, cluster: Cluster, backend: MongoBackend) -> list[str]:
        view = backend.observe()
        problems = [f"{m.name} unreachable ({m.error})" for m in view.members if not m.reachable]
        primaries = [m.name for m in view.members if m.reachable and m.state == "PRIMARY"]
        if len(primaries) != 1:
            problems.append(f"expected exactly one PRIMARY, found {len(primaries)}")
        problems += [f"{m.name} is {m.state}, expected SECONDARY" for m in view.members
                     if m.reachable and m.state not in ("PRIMARY", "SECONDARY", "ARBITER")]
        return problems

    def write_canary(self, cluster: Cluster, backend: MongoBackend, key: str) -> bool:
        try:
            backend.write_canary(key)
        except DrengineError:
            return False
        return True

    def read_canaries(self, cluster: Cluster, backend: MongoBackend, keys: Sequence[str] = ()) -> set[str]:
        return backend.canary_markers()

    def victims(self, cluster: Cluster, primary: str | None) -> list[str]:
        """The primary and as many others as it takes to leave no majority; the others are
        killed first, so that the set cannot elect a new primary between two kills."""
        names = [m.name for m in cluster.members]
        first = primary if primary in names else names[0]
        others = [n for n in names if n != first]
        return [*others[: len(names) // 2], first]

    def settled(self, cluster: Cluster, backend: MongoBackend, fault: str) -> bool:
        """No member answers as primary and none still believes in one (its heartbeats have
        noticed the primary is gone)."""
        view = backend.observe()
        return not any(m.reachable and m.state == "PRIMARY" for m in view.members) and not primaries_seen(view)

    def bring_back(self, cluster: Cluster, backend: MongoBackend, fault: str, run_dir: Path) -> Restore | None:
        return None

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        return ()

    def inject(self, cluster: Cluster, backend: MongoBackend, fault: str) -> Injected:
        victims = self.victims(cluster, backend.primary())
        return Injected("; ".join(backend.kill(name) for name in victims), members=victims)

    def check_after(self, cluster: Cluster, backend: MongoBackend, fault: str) -> list[str]:
        return []

    def cleanup(self, cluster: Cluster, backend: MongoBackend, fault: str) -> str | None:
        return ("the killed members were removed from the set by the forced reconfiguration: keep them down until "
                "their data is wiped, then add them back with mongodb-rejoin")


KIT = MongoKit()

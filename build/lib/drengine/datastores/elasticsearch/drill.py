"""Drill kit for Elasticsearch: canary documents in a `drengine-canary` index with one
replica, and node faults injected through the backend (`kill`), which is the simulated
node or the real node's process over its host alike."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drengine.datastores.elasticsearch.calls import HttpCall, canary_calls, canary_ids_call
from drengine.datastores.elasticsearch.connector import ElasticBackend
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError
from drengine.inventory import Cluster

CANARY_INDEX = "drengine-canary"
KILL_NODE = Fault("kill-node", "kill the last node of the inventory; it is declared gone for good")


def _faults() -> Mapping[str, Fault]:
    return {KILL_NODE.name: KILL_NODE}


@dataclass(frozen=True)
class ElasticKit:
    faults: Mapping[str, Fault] = field(default_factory=_faults)

    def health(self, cluster: Cluster, backend: ElasticBackend) -> list[str]:
        health = backend.health()
        if health.status != "green":
            return [f"cluster health is {health.status} ({health.unassigned_shards} unassigned shard(s)); expected green"]
        try:
            backend.send(HttpCall("PUT", f"/{CANARY_INDEX}",
                                  body={"settings": {"number_of_shards": 1, "number_of_replicas": 1}},
                                  what="create the canary index"))
        except DrengineError as exc:
            if "resource_already_exists" not in str(exc):
                return [f"cannot create the canary index {CANARY_INDEX}: {exc}"]
        return []

    def write_canary(self, cluster: Cluster, backend: ElasticBackend, key: str) -> bool:
        put, _ = canary_calls(CANARY_INDEX, key, {"written_at": round(time.time(), 3)})
        try:
            backend.send(put)
        except DrengineError:
            return False
        return True

    def read_canaries(self, cluster: Cluster, backend: ElasticBackend, keys: Sequence[str] = ()) -> set[str]:
        body = backend.send(canary_ids_call(CANARY_INDEX))
        return {str(hit["_id"]) for hit in body.get("hits", {}).get("hits", [])}

    def _victim(self, cluster: Cluster) -> str:
        return cluster.members[-1].name

    def settled(self, cluster: Cluster, backend: ElasticBackend, fault: str) -> bool:
        return int(backend.health().number_of_nodes) < len(cluster.members)

    def bring_back(self, cluster: Cluster, backend: ElasticBackend, fault: str, run_dir: Path) -> Restore | None:
        return None

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        return (self._victim(cluster),)

    def inject(self, cluster: Cluster, backend: ElasticBackend, fault: str) -> Injected:
        victim = self._victim(cluster)
        return Injected(backend.kill(victim), members=[victim])

    def check_after(self, cluster: Cluster, backend: ElasticBackend, fault: str) -> list[str]:
        return []

    def cleanup(self, cluster: Cluster, backend: ElasticBackend, fault: str) -> str | None:
        return None


KIT = ElasticKit()

"""Drill kit for Elasticsearch: canary documents in a `drengine-canary` index with one
replica, and node faults (the simulated cluster's model, or the node's process over its host)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from drengine.datastores.elasticsearch.calls import HttpCall, canary_calls
from drengine.datastores.elasticsearch.connector import ElasticBackend
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError
from drengine.faults import signal_member
from drengine.inventory import Cluster, Inventory

CANARY_INDEX = "drengine-canary"


class ElasticKit:
    faults = {
        "kill-node": Fault("kill-node", "kill the last node of the inventory; it is declared gone for good"),
    }

    def __init__(self) -> None:
        self.inventory: Inventory | None = None
        self.written: list[str] = []

    def health(self, cluster: Cluster, backend: Any) -> list[str]:
        es: ElasticBackend = backend
        self.written = []
        health = es.health()
        if health.status != "green":
            return [f"cluster health is {health.status} ({health.unassigned_shards} unassigned shard(s)); expected green"]
        try:
            es.send(HttpCall("PUT", f"/{CANARY_INDEX}", body={"settings": {"number_of_shards": 1, "number_of_replicas": 1}},
                             what="create the canary index"))
        except DrengineError as exc:
            if "already_exists" not in str(exc) and "resource_already_exists" not in str(exc):
                return [f"cannot create the canary index {CANARY_INDEX}: {exc}"]
        return []

    def write_canary(self, cluster: Cluster, backend: Any, key: str) -> bool:
        put, _ = canary_calls(CANARY_INDEX, key, {"written_at": round(time.time(), 3)})
        try:
            backend.send(put)
        except DrengineError:
            return False
        self.written.append(key)
        return True

    def read_canaries(self, cluster: Cluster, backend: Any) -> set[str]:
        present = set()
        for key in self.written:
            _, get = canary_calls(CANARY_INDEX, key, {})
            try:
                body = backend.send(get)
            except DrengineError:
                continue
            if isinstance(body, dict) and body.get("found"):
                present.add(key)
        return present

    def _victim(self, cluster: Cluster) -> str:
        return cluster.members[-1].name

    def settled(self, cluster: Cluster, backend: Any, fault: str) -> bool:
        return int(backend.health().number_of_nodes) < len(cluster.members)

    def bring_back(self, cluster: Cluster, backend: Any, fault: str, run_dir: Path) -> Restore | None:
        return None

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        return (self._victim(cluster),)

    def inject(self, cluster: Cluster, backend: Any, fault: str) -> Injected:
        victim = self._victim(cluster)
        if cluster.simulated is not None:
            backend.server.write(lambda model: model.kill_node(victim))
            backend.save()
            return Injected(f"simulated node {victim} killed")
        assert self.inventory is not None
        return Injected(signal_member(self.inventory, cluster, cluster.member(victim), "KILL"))

    def cleanup(self, cluster: Cluster, backend: Any, fault: str) -> str | None:
        return None


KIT = ElasticKit()

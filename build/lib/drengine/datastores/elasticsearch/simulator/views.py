"""Read-only APIs: cluster health, _cat/shards, _cat/nodes, nodes info and the root endpoint."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from drengine.datastores.elasticsearch.simulator.core import ClusterCore
from drengine.datastores.elasticsearch.simulator.model import (
    INITIALIZING,
    STARTED,
    UNASSIGNED,
    IndexMeta,
    JsonDict,
    ShardGroup,
    ShardRouting,
    human_bytes,
    iso_time,
)


@dataclass(frozen=True)
class RecoveryRow:
    """One shard copy's recovery, in numbers (rendered by the REST layer)."""

    index: str
    shard: int
    type: str
    stage: str
    started_at: float
    stopped_at: float | None
    seconds: float
    source_host: str | None
    source_node: str | None
    target_host: str
    target_node: str
    files: int
    files_recovered: int
    bytes: int
    bytes_recovered: int


class ReadViews(ClusterCore):
    """Health and the cat and info APIs."""

    _health_cache: tuple[object, JsonDict] | None = None

    def health(self, index: str | None = None, level: str = "cluster") -> JsonDict:
        """Cluster health; the last answer is kept while the cluster stays as it was (nothing
        changed, no allocation delay ran out): a waiting request asks again and again."""
        self.require_master()
        current = self.allocation_current()
        key = (self.state.state_version, self._routing_epoch, index, level, len(self.live_nodes()))
        if current and self._health_cache is not None and self._health_cache[0] == key:
            return copy.deepcopy(self._health_cache[1])
        body = self._health(index, level)
        self._health_cache = (key, copy.deepcopy(body)) if current else None
        return body

    def _health(self, index: str | None, level: str) -> JsonDict:
        metas = self.resolve_indices(index)
        keys = ("active_primary_shards", "active_shards", "initializing_shards", "unassigned_shards",
                "unassigned_primary_shards", "delayed_unassigned_shards")
        totals = dict.fromkeys(keys, 0)
        per_index: JsonDict = {}
        worst = "green"
        for meta in metas:
            stats = self._index_health(meta, level == "shards")
            for key in totals:
                totals[key] += stats[key]
            per_index[meta.name] = stats
            worst = _worse(worst, stats["status"])
        all_shards = totals["active_shards"] + totals["initializing_shards"] + totals["unassigned_shards"]
        body: JsonDict = {
            "cluster_name": self.state.cluster_name,
            "status": worst,
            "timed_out": False,
            "number_of_nodes": len(self.live_nodes()),
            "number_of_data_nodes": len(self.live_data_nodes()),
            "active_primary_shards": totals["active_primary_shards"],
            "active_shards": totals["active_shards"],
            "relocating_shards": 0,
            "initializing_shards": totals["initializing_shards"],
            "unassigned_shards": totals["unassigned_shards"],
            "unassigned_primary_shards": totals["unassigned_primary_shards"],
            "delayed_unassigned_shards": totals["delayed_unassigned_shards"],
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0 if all_shards == 0 else 100.0 * totals["active_shards"] / all_shards,
        }
        if level in ("indices", "shards"):
            for stats in per_index.values():
                stats.pop("delayed_unassigned_shards", None)
            body["indices"] = per_index
        return body

    @staticmethod
    def _shard_status(group: ShardGroup) -> str:
        """ClusterShardHealth: green when every copy is active, yellow when the primary is; an
        inactive primary is yellow only while a new shard's first copy is being created (empty
        store, never refused by the deciders, never failed), red otherwise (data unavailable).
        https://github.com/elastic/elasticsearch/blob/main/server/src/main/java/org/elasticsearch/cluster/health/ClusterShardHealth.java
        (getInactivePrimaryHealth)."""
        primary = group.primary()
        if primary.state == STARTED:
            return "green" if all(r.state == STARTED for r in group.routings) else "yellow"
        info = primary.unassigned
        source = primary.recovery.type if primary.recovery is not None else ("existing_store" if group.in_sync else "empty_store")
        fresh = info is None or (info.last_allocation_status != "no" and info.failed_attempts == 0)
        return "yellow" if fresh and source == "empty_store" else "red"

    def _index_health(self, meta: IndexMeta, with_shards: bool) -> JsonDict:
        status = "green"
        counts = dict.fromkeys(("active_primary_shards", "active_shards", "initializing_shards", "unassigned_shards",
                                "unassigned_primary_shards", "delayed_unassigned_shards"), 0)
        shards: JsonDict = {}
        for group in meta.shards:
            group_status = self._shard_status(group)
            active = sum(r.state == STARTED for r in group.routings)
            initializing = sum(r.state == INITIALIZING for r in group.routings)
            unassigned = [r for r in group.routings if r.state == UNASSIGNED]
            counts["active_primary_shards"] += group.primary().state == STARTED
            counts["active_shards"] += active
            counts["initializing_shards"] += initializing
            counts["unassigned_shards"] += len(unassigned)
            counts["unassigned_primary_shards"] += sum(r.primary for r in unassigned)
            counts["delayed_unassigned_shards"] += sum(self.is_delayed(meta, r) for r in unassigned)
            status = _worse(status, group_status)
            if with_shards:
                shards[str(group.shard)] = {
                    "status": group_status,
                    "primary_active": group.primary().state == STARTED,
                    "active_shards": active,
                    "relocating_shards": 0,
                    "initializing_shards": initializing,
                    "unassigned_shards": len(unassigned),
                    "unassigned_primary_shards": int(group.primary().state == UNASSIGNED),
                }
        stats: JsonDict = {
            "status": status,
            "number_of_shards": meta.number_of_shards,
            "number_of_replicas": meta.number_of_replicas,
            "active_primary_shards": counts["active_primary_shards"],
            "active_shards": counts["active_shards"],
            "relocating_shards": 0,
            "initializing_shards": counts["initializing_shards"],
            "unassigned_shards": counts["unassigned_shards"],
            "unassigned_primary_shards": counts["unassigned_primary_shards"],
            "delayed_unassigned_shards": counts["delayed_unassigned_shards"],
        }
        if with_shards:
            stats["shards"] = shards
        return stats

    def cat_shards(self, index: str | None = None) -> list[dict[str, str | None]]:
        rows: list[dict[str, str | None]] = []
        for meta in sorted(self.resolve_indices(index), key=lambda m: m.name):
            for group in meta.shards:
                for routing in sorted(group.routings, key=lambda r: not r.primary):
                    rows.append(self._cat_shard_row(meta, group, routing))
        return rows

    def _cat_shard_row(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting) -> dict[str, str | None]:
        store = group.stores.get(routing.node_id) if routing.node_id and routing.state == STARTED else None
        node = self.node_by_id(routing.node_id) if routing.node_id else None
        info = routing.unassigned
        # A recovering copy shows what it has copied so far, and no document count yet.
        recovered = human_bytes(int(routing.recovery.bytes_recovered)) if routing.recovery is not None else None
        return {
            "index": meta.name,
            "shard": str(group.shard),
            "prirep": "p" if routing.primary else "r",
            "state": routing.state,
            "docs": str(len(store.docs)) if store else None,
            "store": human_bytes(store.size_in_bytes()) if store else recovered,
            "dataset": human_bytes(store.size_in_bytes()) if store else recovered,
            "ip": node.ip if node else None,
            "id": node.id if node else None,
            "node": node.name if node else None,
            "unassigned.reason": info.reason if info else None,
            "unassigned.at": iso_time(info.at) if info else None,
            "unassigned.details": info.details if info else None,
            "sync_id": None,
        }

    def cat_recovery(self, index: str | None = None, active_only: bool = False) -> list[RecoveryRow]:
        """The recoveries of every assigned copy: in flight, or the one that started it (as
        _cat/recovery lists "ongoing and completed" ones). The REST layer renders bytes and times
        (RestCatRecoveryAction); the recovery type is RecoverySource.Type in lower case."""
        rows: list[RecoveryRow] = []
        now = self._now()
        metas = self.resolve_indices(index)
        if active_only:  # only the shards with a copy initializing
            wanted = {m.name for m in metas}
            metas = [self.state.indices[name] for name in sorted({k[0] for k in self._recovering_keys} & wanted)]
        for meta in sorted(metas, key=lambda m: m.name):
            for group in meta.shards:
                for routing in group.routings:
                    recovery = routing.recovery or (routing.last_recovery if routing.state == STARTED else None)
                    if recovery is None or routing.node_id is None or (active_only and recovery.done_at is not None):
                        continue
                    target = self.node_by_id(routing.node_id)
                    source = self.node_by_id(recovery.source_node) if recovery.source_node else None
                    rows.append(RecoveryRow(
                        index=meta.name, shard=group.shard, type=recovery.type, stage=recovery.stage(),
                        started_at=recovery.started_at, stopped_at=recovery.done_at,
                        seconds=(recovery.done_at if recovery.done_at is not None else now) - recovery.started_at,
                        source_host=source.ip if source else None, source_node=source.name if source else None,
                        target_host=target.ip, target_node=target.name, files=recovery.files_total,
                        files_recovered=recovery.files_total if recovery.done_at is not None else 0,
                        bytes=recovery.bytes_total, bytes_recovered=int(recovery.bytes_recovered)))
        return rows

    def cat_nodes(self) -> list[dict[str, str | None]]:
        master = self.master()
        rows: list[dict[str, str | None]] = []
        for node in self.live_nodes():
            rows.append(
                {
                    "ip": node.ip,
                    "heap.percent": "35",
                    "ram.percent": "70",
                    "cpu": "3",
                    "load_1m": "0.20",
                    "load_5m": "0.25",
                    "load_15m": "0.30",
                    "node.role": "".join(sorted(_ROLE_LETTERS.get(role, "") for role in node.roles)),
                    "master": "*" if master is not None and master.id == node.id else "-",
                    "name": node.name,
                    "id": node.id[:4],
                    "disk.used_percent": f"{node.disk_used_percent:.2f}",
                    "version": self.state.version,
                    "shards": str(self._load.get(node.id, 0)),
                }
            )
        return rows

    def nodes_info(self) -> JsonDict:
        nodes = {
            node.id: {
                "name": node.name,
                "transport_address": node.transport_address,
                "host": node.ip,
                "ip": node.ip,
                "version": self.state.version,
                "build_flavor": "default",
                "build_type": "docker",
                "roles": node.roles,
                "attributes": node.attributes,
                "http": {
                    "publish_address": f"{node.ip}:9200",
                    "bound_address": [f"{node.ip}:9200"],
                },
            }
            for node in self.live_nodes()
        }
        count = len(nodes)
        return {
            "_nodes": {"total": count, "successful": count, "failed": 0},
            "cluster_name": self.state.cluster_name,
            "nodes": nodes,
        }

    def root_info(self, node_name: str | None = None) -> JsonDict:
        live = self.live_nodes()
        name = node_name or (live[0].name if live else "sim-coordinator")
        major = self.state.version.split(".")[0]
        return {
            "name": name,
            "cluster_name": self.state.cluster_name,
            "cluster_uuid": self.state.cluster_uuid,
            "version": {
                "number": self.state.version,
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "0000000000000000000000000000000000000000",
                "build_date": "2025-01-01T00:00:00.000Z",
                "build_snapshot": False,
                "lucene_version": "10.2.2",
                "minimum_wire_compatibility_version": "8.19.0" if major == "9" else "7.17.0",
                "minimum_index_compatibility_version": "8.0.0" if major == "9" else "7.0.0",
            },
            "tagline": "You Know, for Search",
        }


_ROLE_LETTERS = {
    "data": "d",
    "data_content": "s",
    "data_hot": "h",
    "data_warm": "w",
    "data_cold": "c",
    "data_frozen": "f",
    "ingest": "i",
    "master": "m",
    "ml": "l",
    "remote_cluster_client": "r",
    "transform": "t",
    "voting_only": "v",
}
_STATUS_ORDER = {"green": 0, "yellow": 1, "red": 2}


def _worse(left: str, right: str) -> str:
    return left if _STATUS_ORDER[left] >= _STATUS_ORDER[right] else right



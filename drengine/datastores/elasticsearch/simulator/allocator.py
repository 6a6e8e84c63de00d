"""The allocator: places every unassigned copy the deciders and delays allow, primaries
from their in-sync copies, replicas by peer recovery from their primary."""

from __future__ import annotations

from collections.abc import Iterable

from drengine.datastores.elasticsearch.simulator.core import ClusterCore
from drengine.datastores.elasticsearch.simulator.deciders import (
    AllocationAttempt,
    Decision,
    decide_awareness,
    decide_disk_threshold,
    decide_enable,
    decide_filter,
    decide_max_retry,
    decide_replica_after_primary_active,
    decide_same_shard,
)
from drengine.datastores.elasticsearch.simulator.model import (
    AWARENESS_SETTING,
    ENABLE_SETTING,
    EXCLUDE_PREFIX,
    UNASSIGNED,
    IndexMeta,
    ShardGroup,
    ShardRouting,
    SimNode,
    StoreCopy,
    UnassignedInfo,
)


class Allocator(ClusterCore):
    """Allocation of unassigned copies."""

    def allocate(self) -> None:
        """The allocator alone: place every unassigned copy the deciders and delays allow."""
        if self._unassigned_keys:
            self._allocate_unassigned()

    def _reset_failed_allocations(self) -> None:
        for key in list(self._unassigned_keys):
            group = self.shard_group(*key)
            for routing in group.unassigned():
                if routing.unassigned and routing.unassigned.failed_attempts:
                    routing.unassigned.failed_attempts = 0

    def _allocate_unassigned(self) -> None:
        if not self.has_master():
            return
        for key in sorted(self._unassigned_keys):
            meta = self.state.indices.get(key[0])
            if meta is None:
                self._unassigned_keys.discard(key)
                continue
            group = meta.shards[key[1]]
            for routing in [r for r in group.routings if r.primary and r.state == UNASSIGNED]:
                self._allocate_primary(meta, group, routing)
            for routing in [r for r in group.routings if not r.primary and r.state == UNASSIGNED]:
                self._allocate_replica(meta, group, routing)
            if not group.unassigned():
                self._unassigned_keys.discard(key)

    def deciders(self, attempt: AllocationAttempt) -> list[Decision]:
        """Every decider's verdict on one copy going to one node, in Elasticsearch's order."""
        excludes = {k: v for k, v in self._cluster_settings_flat().items() if k.startswith(EXCLUDE_PREFIX)}
        awareness = self.cluster_setting(AWARENESS_SETTING)
        zones = {n.attributes[awareness] for n in self.live_data_nodes() if awareness in n.attributes} if awareness else set()
        decisions = [
            decide_max_retry(attempt),
            decide_replica_after_primary_active(attempt),
            decide_enable(attempt, self.cluster_setting(ENABLE_SETTING)),
            decide_filter(attempt, excludes),
            decide_same_shard(attempt),
        ]
        if attempt.existing_primary:
            # Elasticsearch force-allocates an existing primary to its in-sync copy whatever the disk or zone.
            return decisions
        decisions.append(decide_disk_threshold(attempt, self.cluster_setting))
        decisions.append(
            decide_awareness(attempt, awareness, zones, lambda node_id: self.node_by_id(node_id).attributes.get(awareness))
        )
        return decisions

    def _allowed(self, attempt: AllocationAttempt) -> bool:
        return all(decision.allows for decision in self.deciders(attempt))

    def _least_loaded(self, nodes: Iterable[SimNode], group: ShardGroup) -> SimNode | None:
        # Prefer a node already holding some data of this shard (cheaper recovery), then the emptiest.
        ranked = sorted(
            nodes,
            key=lambda n: (n.id not in group.stores, self._load.get(n.id, 0), n.name),
        )
        return ranked[0] if ranked else None

    def _in_sync_stores(self, group: ShardGroup) -> list[tuple[SimNode, StoreCopy]]:
        found = []
        for node in self.live_data_nodes():
            store = group.stores.get(node.id)
            if store and store.allocation_id in group.in_sync and node.id not in group.routed_nodes():
                found.append((node, store))
        found.sort(key=lambda pair: -pair[1].max_seq_no)
        return found

    def _recovery_fails(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting, node: SimNode) -> bool:
        if group.pending_recovery_failures <= 0:
            return False
        group.pending_recovery_failures -= 1
        info = routing.unassigned or UnassignedInfo(reason="ALLOCATION_FAILED", at=self._now())
        routing.unassigned = UnassignedInfo(
            reason="ALLOCATION_FAILED",
            at=self._now(),
            details=f"failed shard on node [{node.id}]: failed recovery, failure RecoveryFailedException[[{meta.name}][{group.shard}]: Recovery failed]",
            failed_attempts=info.failed_attempts + 1,
            failed_nodes=sorted(set(info.failed_nodes) | {node.id}),
            last_allocation_status="no",
        )
        return True

    def _allocate_primary(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting) -> None:
        new_shard = not group.in_sync
        while routing.state == UNASSIGNED:
            if new_shard:
                candidates = [n for n in self.live_data_nodes() if self._allowed(AllocationAttempt(meta, group, routing, n))]
                node = self._least_loaded(candidates, group)
                store = StoreCopy(allocation_id=self._new_id()) if node else None
            else:
                copies = self._in_sync_stores(group)
                if not copies:
                    self._set_status(routing, "no_valid_shard_copy")
                    return
                allowed = [
                    (n, s) for n, s in copies if self._allowed(AllocationAttempt(meta, group, routing, n, existing_primary=True))
                ]
                node, store = allowed[0] if allowed else (None, None)
            if node is None or store is None:
                self._set_status(routing, "no")
                return
            if self._recovery_fails(meta, group, routing, node):
                continue
            self._assign(group, routing, node, store)
            if new_shard:
                group.in_sync = [store.allocation_id]
            else:
                group.primary_term += 1

    def _allocate_replica(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting) -> None:
        primary_store = group.primary_store()
        if primary_store is None:
            self._set_status(routing, "no_attempt")
            return
        while routing.state == UNASSIGNED:
            # A returning node's copy is reused even while the delay runs: that is what the delay waits for.
            returning = [
                n for n in self._nodes_with_unrouted_copy(group) if self._allowed(AllocationAttempt(meta, group, routing, n))
            ]
            if returning:
                target: SimNode | None = returning[0]
            elif self.is_delayed(meta, routing):
                self._set_status(routing, "allocation_delayed")
                return
            else:
                candidates = [n for n in self.live_data_nodes() if self._allowed(AllocationAttempt(meta, group, routing, n))]
                target = self._least_loaded(candidates, group)
            if target is None:
                self._set_status(routing, "no")
                return
            if self._recovery_fails(meta, group, routing, target):
                continue
            self._start_replica(meta, group, routing, target, primary_store)

    def _nodes_with_unrouted_copy(self, group: ShardGroup) -> list[SimNode]:
        routed = group.routed_nodes()
        holders = [n for n in self.live_data_nodes() if n.id in group.stores and n.id not in routed]
        return sorted(holders, key=lambda n: group.stores[n.id].allocation_id not in group.in_sync)

    def _start_replica(
        self,
        meta: IndexMeta,
        group: ShardGroup,
        routing: ShardRouting,
        node: SimNode,
        primary_store: StoreCopy,
    ) -> None:
        existing = group.stores.get(node.id)
        keep_id = existing is not None and existing.allocation_id in group.in_sync
        allocation_id = existing.allocation_id if existing is not None and keep_id else self._new_id()
        self._assign(group, routing, node, self._recovered_copy(primary_store, allocation_id))
        if allocation_id not in group.in_sync:
            group.in_sync.append(allocation_id)
        self._prune_in_sync(group, meta)

    @staticmethod
    def _recovered_copy(primary: StoreCopy, allocation_id: str) -> StoreCopy:
        # Peer recovery: the new copy holds exactly what the primary holds.
        return StoreCopy(
            allocation_id=allocation_id,
            docs=dict(primary.docs),
            max_seq_no=primary.max_seq_no,
        )

    @staticmethod
    def _set_status(routing: ShardRouting, status: str) -> None:
        if routing.unassigned is not None:
            routing.unassigned.last_allocation_status = status

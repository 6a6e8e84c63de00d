"""Changing where one copy of a shard is: start it, send it to initialize (a recovery), finish
or fail that recovery, unassign it, promote a replica. The allocator, the reroute commands and
the faults all go through these, so the per-node counts the throttling decider reads stay right."""

from __future__ import annotations

from drengine.datastores.elasticsearch.simulator.core import ClusterCore
from drengine.datastores.elasticsearch.simulator.model import (
    INITIALIZING,
    STARTED,
    UNASSIGNED,
    IndexMeta,
    Recovery,
    ShardGroup,
    ShardRouting,
    SimNode,
    StoreCopy,
    UnassignedInfo,
)


class Routing(ClusterCore):
    """Single-copy routing changes."""

    def _assign(self, group: ShardGroup, routing: ShardRouting, node: SimNode, store: StoreCopy) -> None:
        self._routing_epoch += 1
        routing.state = STARTED
        routing.node_id = node.id
        routing.allocation_id = store.allocation_id
        routing.unassigned = None
        routing.recovery = None
        group.stores[node.id] = store
        self._load[node.id] = self._load.get(node.id, 0) + 1

    def _unassign(
        self,
        group: ShardGroup,
        routing: ShardRouting,
        reason: str,
        details: str | None = None,
        failed: UnassignedInfo | None = None,
    ) -> None:
        self._routing_epoch += 1
        if routing.node_id is not None:
            self._load[routing.node_id] -= 1
            if routing.recovery is not None:
                self._count_recovery(routing.node_id, routing.recovery, -1)
        routing.state = UNASSIGNED
        routing.node_id = None
        routing.allocation_id = None
        routing.recovery = None
        routing.unassigned = failed or UnassignedInfo(reason=reason, at=self._now(), details=details)
        self._unassigned_keys.add((group.index, group.shard))

    def _initialize(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting, node: SimNode,
                    recovery: Recovery) -> None:
        """The copy goes to `node` and recovers there; it starts when the recovery is done."""
        self._routing_epoch += 1
        routing.state = INITIALIZING
        routing.node_id = node.id
        routing.allocation_id = recovery.allocation_id
        routing.recovery = recovery
        self._load[node.id] = self._load.get(node.id, 0) + 1
        self._count_recovery(node.id, recovery, +1)
        if not self._recovering_keys and not self._instant:
            self.state.recoveries_at = self._now()  # progress counts from here
        self._recovering_keys.add((group.index, group.shard))
        if self._instant:
            self._complete_recovery(meta, group, routing)

    def _complete_recovery(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting) -> None:
        recovery = routing.recovery
        assert recovery is not None and routing.node_id is not None
        node = self.node_by_id(routing.node_id)
        if recovery.type == "existing_store" and (node.id not in group.stores or group.stores[node.id].unreadable
                                                  or (recovery.forced and self._fails_now(group))):
            self._fail_missing_store(meta, group, routing, node)
            return
        self._count_recovery(node.id, recovery, -1)
        recovery.bytes_recovered = float(recovery.bytes_total)
        recovery.done_at = self._now()
        store = self._recovered_store(group, routing, node, recovery)
        self._load[node.id] -= 1  # _assign counts it again
        self._assign(group, routing, node, store)
        routing.last_recovery = recovery
        self._after_start(meta, group, routing, store, recovery)

    def _recovered_store(self, group: ShardGroup, routing: ShardRouting, node: SimNode, recovery: Recovery) -> StoreCopy:
        if recovery.type == "existing_store":
            return group.stores[node.id]
        if recovery.type == "empty_store":
            return StoreCopy(allocation_id=recovery.allocation_id)
        primary = group.primary_store()
        assert primary is not None
        # Peer recovery: the new copy holds exactly what the primary holds.
        return StoreCopy(allocation_id=recovery.allocation_id, docs=dict(primary.docs), max_seq_no=primary.max_seq_no,
                         bytes=primary.bytes)

    def _after_start(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting, store: StoreCopy,
                     recovery: Recovery) -> None:
        if not routing.primary:
            if store.allocation_id not in group.in_sync:
                group.in_sync.append(store.allocation_id)
            self._prune_in_sync(group, meta)
            return
        if recovery.forced or not group.in_sync:
            # A forced (stale or empty) primary or a new shard: this copy is now the only in-sync one,
            # and a node that comes back with another copy has it discarded.
            group.in_sync = [store.allocation_id]
            for other in [n for n in list(group.stores) if n != routing.node_id and n not in group.routed_nodes()]:
                del group.stores[other]
        group.primary_term += 1 if recovery.type == "existing_store" or recovery.forced else 0

    @staticmethod
    def _fails_now(group: ShardGroup) -> bool:
        """One of the failures `fail_recoveries` scheduled for this shard: a forced copy found
        corrupt while it recovers (its store opened, a checksum wrong on the way)."""
        if group.pending_recovery_failures <= 0:
            return False
        group.pending_recovery_failures -= 1
        return True

    def _fail_missing_store(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting, node: SimNode) -> None:
        """A copy forced onto a node that holds no data of the shard, or whose store cannot be opened,
        fails its recovery, as StoreRecovery fails it ("shard allocated for local recovery (post
        api), should exist, but doesn't"; the store's own exception for a corrupt copy); the shard
        stays red and its failed attempt is counted."""
        previous = routing.unassigned or UnassignedInfo(reason="ALLOCATION_FAILED", at=self._now())
        store = group.stores.get(node.id)
        nested = (f"IndexShardRecoveryException[failed to recover from gateway]; nested: {store.unreadable[1]}"
                  if store is not None and store.unreadable is not None else
                  "IndexShardRecoveryException[failed to recover from gateway]; nested: CorruptIndexException["
                  "checksum failed (hardware problem?)]" if store is not None else
                  "IndexShardRecoveryException[shard allocated for local recovery (post api), should exist, but "
                  "doesn't, current files: []]")
        failure = UnassignedInfo(
            reason="ALLOCATION_FAILED",
            at=self._now(),
            details=(f"failed shard on node [{node.id}]: failed recovery, failure RecoveryFailedException[[{meta.name}]"
                     f"[{group.shard}]: Recovery failed on {{{node.name}}}]; nested: {nested}"),
            failed_attempts=previous.failed_attempts + 1,
            failed_nodes=sorted(set(previous.failed_nodes) | {node.id}),
            last_allocation_status="no_valid_shard_copy",
        )
        self._unassign(group, routing, "ALLOCATION_FAILED", failed=failure)

    def _promote_replica(self, group: ShardGroup, lost_primary: ShardRouting) -> bool:
        for candidate in group.routings:
            if candidate.state == STARTED and not candidate.primary and candidate.allocation_id in group.in_sync:
                candidate.primary, lost_primary.primary = True, False
                group.primary_term += 1
                return True
        return False

    def _prune_in_sync(self, group: ShardGroup, meta: IndexMeta) -> None:
        # Forget departed copies only once enough live copies replace them.
        limit = 1 + meta.number_of_replicas
        routed = {r.allocation_id for r in group.routings if r.allocation_id}
        for allocation_id in list(group.in_sync):
            if len(group.in_sync) <= limit:
                break
            if allocation_id not in routed:
                group.in_sync.remove(allocation_id)

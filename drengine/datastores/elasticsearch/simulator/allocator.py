"""The allocator: places every unassigned copy the deciders and delays allow, primaries
from their in-sync copies, replicas by peer recovery from their primary. A placed copy
initializes: it starts only when its recovery is done (recovery.py), and recoveries in flight
throttle further allocations (ThrottlingAllocationDecider)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from drengine.datastores.elasticsearch.simulator.deciders import (
    AllocationAttempt,
    Decision,
    RecoveryLoad,
    decide_awareness,
    decide_disk_threshold,
    decide_enable,
    decide_filter,
    decide_max_retry,
    decide_replica_after_primary_active,
    decide_same_shard,
    decide_throttling,
)
from drengine.datastores.elasticsearch.simulator.model import (
    AWARENESS_SETTING,
    CONCURRENT_RECOVERIES_SETTING,
    ENABLE_SETTING,
    EXCLUDE_PREFIX,
    INCOMING_RECOVERIES_SETTING,
    INITIAL_PRIMARIES_SETTING,
    OUTGOING_RECOVERIES_SETTING,
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
from drengine.datastores.elasticsearch.simulator.routing import Routing


@dataclass(frozen=True)
class RoundContext:
    """What every decision of one allocation round reads, read once: the live data nodes and the
    cluster settings the deciders need."""

    nodes: list[SimNode]
    excludes: dict[str, str]
    enable: str
    awareness: str
    zones: set[str]
    limits: tuple[int, int, int]  # incoming, outgoing, initial primaries


class Allocator(Routing):
    """Allocation of unassigned copies."""

    _round: RoundContext | None = None
    # Decider verdicts per unassigned copy, kept while only recoveries change (see _passing).
    _memo: dict[int, tuple[ShardRouting, UnassignedInfo | None, object, frozenset[str]]] | None = None
    _memo_version = -1

    def _context(self) -> RoundContext:
        if self._round is not None:
            return self._round
        nodes = self.live_data_nodes()
        awareness = self.cluster_setting(AWARENESS_SETTING)
        return RoundContext(
            nodes=nodes,
            excludes={k: v for k, v in self._cluster_settings_flat().items() if k.startswith(EXCLUDE_PREFIX)},
            enable=self.cluster_setting(ENABLE_SETTING),
            awareness=awareness,
            zones={n.attributes[awareness] for n in nodes if awareness in n.attributes} if awareness else set(),
            limits=self._recovery_limits(),
        )

    def allocate(self, *, if_changed: bool = False) -> None:
        """The allocator alone: place every unassigned copy the deciders and delays allow. With
        `if_changed` (time passing: each request, each recovery done), a round is skipped when no
        routing, setting or node changed since the last one and no allocation delay ran out."""
        if not if_changed:
            self._allocated = None
        if self._unassigned_keys:
            self._allocate_unassigned()

    def _reset_failed_allocations(self) -> None:
        for key in list(self._unassigned_keys):
            group = self.shard_group(*key)
            for routing in group.unassigned():
                if routing.unassigned and routing.unassigned.failed_attempts:
                    routing.unassigned.failed_attempts = 0
        self._allocated = None

    def _recovery_limits(self) -> tuple[int, int, int]:
        """(incoming, outgoing, initial primaries) limits from the cluster settings."""
        settings = {**self.state.persistent, **self.state.transient}
        both = settings.get(CONCURRENT_RECOVERIES_SETTING, "2")
        return (int(settings.get(INCOMING_RECOVERIES_SETTING, both)), int(settings.get(OUTGOING_RECOVERIES_SETTING, both)),
                int(self.cluster_setting(INITIAL_PRIMARIES_SETTING)))

    def _replica_slots(self) -> bool:
        """Whether some live data node can still take an incoming recovery (the cheap test that
        spares a saturated cluster from judging every waiting replica)."""
        context = self._context()
        incoming = context.limits[0]
        return self._instant or any(self._incoming.get(n.id, 0) < incoming for n in context.nodes)

    def _replicas_must_wait(self, group: ShardGroup) -> bool:
        """No replica of this shard can start a recovery now: every node has all the incoming
        recoveries it may, or the node holding the primary all the outgoing ones (the cheap test
        that spares a busy cluster from judging every waiting replica on every recovery done)."""
        if self._instant:
            return False
        primary = group.primary()
        if primary.state != STARTED or primary.node_id is None:
            return True
        return not self._replica_slots() or self._outgoing.get(primary.node_id, 0) >= self._context().limits[1]

    def _holder_throttled(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting,
                          holders: list[SimNode]) -> bool:
        """A node holding a copy of the shard would take it but for the recoveries in flight: the
        replica is throttled there, not delayed (ReplicaShardAllocator.makeAllocationDecision)."""
        passing = self._passing(meta, group, routing)
        return any(n.id in passing for n in holders)

    def _waiting_status(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting) -> str:
        """The allocation status of a replica that cannot start now."""
        if group.primary_store() is None:
            if self.is_delayed(meta, routing):
                self._delayed_until(meta, routing)
            return "no_attempt"
        if self._holder_throttled(meta, group, routing, self._nodes_with_unrouted_copy(group)):
            return "throttled"
        if self.is_delayed(meta, routing):
            self._delayed_until(meta, routing)
            return "allocation_delayed"
        return "throttled" if self._passing(meta, group, routing) else "no"

    _allocated: tuple[int, int] | None = None  # (state version, routing epoch) after the last round
    _next_delay_expiry = float("inf")

    def _allocate_unassigned(self) -> None:
        if not self.has_master():
            return
        if (self.state.state_version, self._routing_epoch) == self._allocated and self._now() < self._next_delay_expiry:
            return  # nothing changed since the last round: it would decide the same
        self._round = None
        self._round = self._context()
        self._next_delay_expiry = float("inf")
        try:
            self._allocate_keys()
        finally:
            self._round = None
        self._allocated = (self.state.state_version, self._routing_epoch)

    def allocation_current(self) -> bool:
        """Whether the last allocation round saw the cluster as it is (nothing changed since, no
        delay ran out): what it found then (the next delay to run out) still holds."""
        return ((self.state.state_version, self._routing_epoch) == self._allocated
                and self._now() < self._next_delay_expiry)

    def _delayed_until(self, meta: IndexMeta, routing: ShardRouting) -> None:
        """Remember when the earliest allocation delay runs out (the next round must not be skipped)."""
        self._next_delay_expiry = min(self._next_delay_expiry, self._now() + self.remaining_delay(meta, routing))

    def _allocate_keys(self) -> None:
        for key in sorted(self._unassigned_keys):
            meta = self.state.indices.get(key[0])
            if meta is None:
                self._unassigned_keys.discard(key)
                continue
            group = meta.shards[key[1]]
            for routing in [r for r in group.routings if r.primary and r.state == UNASSIGNED]:
                self._allocate_primary(meta, group, routing)
            replicas = [r for r in group.routings if not r.primary and r.state == UNASSIGNED]
            if replicas and self._replicas_must_wait(group):
                for routing in replicas:
                    self._set_status(routing, self._waiting_status(meta, group, routing))
                continue
            for routing in replicas:
                self._allocate_replica(meta, group, routing)
            if not group.unassigned():
                self._unassigned_keys.discard(key)

    def recovery_load(self, attempt: AllocationAttempt) -> RecoveryLoad:
        incoming, outgoing, primaries = self._context().limits
        primary = attempt.group.primary()
        source = primary.node_id if primary.state == STARTED else None
        return RecoveryLoad(
            incoming=self._incoming.get(attempt.node.id, 0),
            outgoing=self._outgoing.get(source, 0) if source else 0,
            initial_primaries=self._initial_primaries.get(attempt.node.id, 0),
            incoming_limit=incoming, outgoing_limit=outgoing, primaries_limit=primaries,
            source_name=self.node_by_id(source).name if source else "",
        )

    def deciders(self, attempt: AllocationAttempt, *, throttling: bool = True) -> list[Decision]:
        """Every decider's verdict on one copy going to one node, in Elasticsearch's order
        (without the throttling decider when `throttling` is false)."""
        context = self._context()
        awareness = context.awareness
        decisions = [
            decide_max_retry(attempt),
            decide_replica_after_primary_active(attempt),
            decide_enable(attempt, context.enable),
            decide_filter(attempt, context.excludes),
            decide_same_shard(attempt),
        ]
        if not attempt.existing_primary:
            # Elasticsearch force-allocates an existing primary to its in-sync copy whatever the disk or zone.
            decisions.append(decide_disk_threshold(attempt, self.cluster_setting))
            decisions.append(decide_awareness(
                attempt, awareness, context.zones, lambda node_id: self.node_by_id(node_id).attributes.get(awareness)))
        if throttling:
            decisions.append(decide_throttling(attempt, self.recovery_load(attempt)))
        return decisions

    def _throttled(self, attempt: AllocationAttempt) -> bool:
        """The cheap check first: the recovery counts alone (no explanations built)."""
        incoming, outgoing, primaries = self._context().limits
        if attempt.routing.primary:
            return self._initial_primaries.get(attempt.node.id, 0) >= primaries
        if self._incoming.get(attempt.node.id, 0) >= incoming:
            return True
        primary = attempt.group.primary()
        return primary.node_id is not None and self._outgoing.get(primary.node_id, 0) >= outgoing

    def _passing(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting, *,
                 existing_primary: bool = False) -> frozenset[str]:
        """The live data nodes every decider but throttling lets this copy go to. While recoveries
        complete one after another (advance_recoveries), only the recovery counts and the copies of
        the shards they concern change: the verdicts are kept per copy until its shard changes, or
        anything else does (a new cluster state version: nodes, settings, indices, reroutes)."""
        signature = (existing_primary, tuple((r.state, r.node_id) for r in group.routings))
        if self._memo is None or self._memo_version != self.state.state_version:
            self._memo, self._memo_version = {}, self.state.state_version
        hit = self._memo.get(id(routing))
        if hit is not None and hit[0] is routing and hit[1] is routing.unassigned and hit[2] == signature:
            return hit[3]
        passing = frozenset(
            n.id for n in self._context().nodes
            if all(d.allows for d in self.deciders(AllocationAttempt(meta, group, routing, n, existing_primary=existing_primary),
                                                   throttling=False)))
        self._memo[id(routing)] = (routing, routing.unassigned, signature, passing)
        return passing

    def _takers(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting, nodes: Iterable[SimNode], *,
                existing_primary: bool = False) -> tuple[list[SimNode], str]:
        """The nodes of `nodes` that may take the copy now, and the allocation status if none
        may: throttled when some node would but for the recoveries in flight, otherwise no."""
        passing = self._passing(meta, group, routing, existing_primary=existing_primary)
        allowed = [n for n in nodes if n.id in passing and (self._instant or not self._throttled(
            AllocationAttempt(meta, group, routing, n, existing_primary=existing_primary)))]
        return allowed, "throttled" if passing else "no"

    def _least_loaded(self, nodes: Iterable[SimNode], group: ShardGroup) -> SimNode | None:
        # Prefer a node already holding some data of this shard (cheaper recovery), then the emptiest.
        ranked = sorted(
            nodes,
            key=lambda n: (n.id not in group.stores, self._load.get(n.id, 0), n.name),
        )
        return ranked[0] if ranked else None

    def _in_sync_stores(self, group: ShardGroup) -> list[tuple[SimNode, StoreCopy]]:
        found = []
        for node in self._context().nodes:
            store = group.stores.get(node.id)
            if (store and store.unreadable is None and store.allocation_id in group.in_sync
                    and node.id not in group.routed_nodes()):
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
                candidates, status = self._takers(meta, group, routing, self._context().nodes)
                node = self._least_loaded(candidates, group)
                store = StoreCopy(allocation_id=self._new_id()) if node else None
            else:
                copies = self._in_sync_stores(group)
                if not copies:
                    self._set_status(routing, "no_valid_shard_copy")
                    return
                takers, status = self._takers(meta, group, routing, [n for n, _ in copies], existing_primary=True)
                node = takers[0] if takers else None
                store = group.stores[node.id] if node else None
            if node is None or store is None:
                self._set_status(routing, status)
                return
            if self._recovery_fails(meta, group, routing, node):
                continue
            kind: Literal["existing_store", "empty_store"] = "empty_store" if new_shard else "existing_store"
            self._initialize(meta, group, routing, node, Recovery(
                type=kind, allocation_id=store.allocation_id, started_at=self._now(),
                bytes_total=0 if new_shard else store.size_in_bytes(), files_total=0 if new_shard else 1))

    def _allocate_replica(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting) -> None:
        primary_store = group.primary_store()
        if primary_store is None:
            if self.is_delayed(meta, routing):
                self._delayed_until(meta, routing)
            self._set_status(routing, "no_attempt")
            return
        while routing.state == UNASSIGNED:
            # A returning node's copy is reused even while the delay runs: that is what the delay waits for.
            holders = self._nodes_with_unrouted_copy(group)
            returning, status = self._takers(meta, group, routing, holders)
            if returning:
                target: SimNode | None = returning[0]
            elif self._holder_throttled(meta, group, routing, holders):
                self._set_status(routing, "throttled")
                return
            elif self.is_delayed(meta, routing):
                self._delayed_until(meta, routing)
                self._set_status(routing, "allocation_delayed")
                return
            else:
                candidates, status = self._takers(meta, group, routing, self._context().nodes)
                target = self._least_loaded(candidates, group)
            if target is None:
                self._set_status(routing, status)
                return
            if self._recovery_fails(meta, group, routing, target):
                continue
            self._start_replica(meta, group, routing, target, primary_store)

    def _nodes_with_unrouted_copy(self, group: ShardGroup) -> list[SimNode]:
        routed = group.routed_nodes()
        holders = [n for n in self._context().nodes if n.id in group.stores and n.id not in routed]
        return sorted(holders, key=lambda n: group.stores[n.id].allocation_id not in group.in_sync)

    def _start_replica(
        self,
        meta: IndexMeta,
        group: ShardGroup,
        routing: ShardRouting,
        node: SimNode,
        primary_store: StoreCopy,
    ) -> None:
        """Peer recovery from the primary: a copy the target still holds (same history) only needs
        the operations it missed; any other copy is streamed file by file."""
        existing = group.stores.get(node.id)
        keep_id = existing is not None and existing.allocation_id in group.in_sync
        allocation_id = existing.allocation_id if existing is not None and keep_id else self._new_id()
        if existing is not None and keep_id:
            missing = max(primary_store.max_seq_no - existing.max_seq_no, 0)
            to_copy = int(primary_store.size_in_bytes() * missing / max(len(primary_store.docs), 1)) if missing else 0
        else:
            to_copy = primary_store.size_in_bytes()
        primary = group.primary()
        self._initialize(meta, group, routing, node, Recovery(
            type="peer", allocation_id=allocation_id, started_at=self._now(), bytes_total=to_copy,
            files_total=1 if to_copy else 0, source_node=primary.node_id))

    @staticmethod
    def _set_status(routing: ShardRouting, status: str) -> None:
        if routing.unassigned is not None:
            routing.unassigned.last_allocation_status = status

"""GET _cluster/allocation/explain: why a copy is where it is, or why it is unassigned,
node by node."""

from __future__ import annotations

from drengine.datastores.elasticsearch.simulator.allocator import Allocator
from drengine.datastores.elasticsearch.simulator.deciders import AllocationAttempt
from drengine.datastores.elasticsearch.simulator.model import (
    INITIALIZING,
    STARTED,
    UNASSIGNED,
    IndexMeta,
    JsonDict,
    ShardGroup,
    ShardRouting,
    SimApiError,
    SimNode,
    human_bytes,
    human_time,
    illegal_argument,
)

# Explanations.Allocation and Explanations.Rebalance (server/src/main/java/org/elasticsearch/cluster/
# routing/allocation/Explanations.java).
ALLOCATION_YES = "Elasticsearch can allocate the shard."
THROTTLED = (
    "Elasticsearch is currently busy with other activities. It expects to be able to allocate this shard when those "
    "activities finish. Please wait."
)
ALREADY_BALANCED = (
    "This shard is in a well-balanced location and satisfies all allocation rules so it will remain on this node. "
    "Elasticsearch cannot improve the cluster balance by moving it to another node. If you expect this shard to be "
    "rebalanced to another node, find the other node in the node-by-node explanation and address the reasons which "
    "prevent Elasticsearch from rebalancing this shard there."
)
ALL_COPIES_INVALID = (
    "Elasticsearch can't allocate this shard because all the copies of its data in the cluster are "
    "stale or corrupt. Elasticsearch will allocate this shard when a node containing a good copy of "
    "its data joins the cluster. If no such node is available, restore this index from a recent snapshot."
)
NO_COPIES = (
    "Elasticsearch can't allocate this shard because there are no copies of its data in the cluster. "
    "Elasticsearch will allocate this shard when a node holding a good copy of its data joins the "
    "cluster. If no such node is available, restore this index from a recent snapshot."
)
DELAYED_WITH_ALTERNATIVE = (
    "The node containing this shard copy recently left the cluster. Elasticsearch is waiting for it "
    "to return. If the node does not return within [{}] then Elasticsearch will allocate this shard "
    "to another node. Please wait."
)
DELAYED_WITHOUT_ALTERNATIVE = (
    "The node holding this shard copy recently left the cluster. Elasticsearch is waiting for it to "
    "return. If the node does not return within [{}] then Elasticsearch will attempt to allocate this "
    "shard to another node, but it cannot be allocated to any other node currently in the cluster. If "
    "you expect this shard to be allocated to another node, find this node in the node-by-node "
    "explanation and address the reasons which prevent Elasticsearch from allocating this shard there."
)
EXISTING_STORES_FORBIDDEN = (
    "Elasticsearch isn't allowed to allocate this shard to any of the nodes in the cluster that hold "
    "an in-sync copy of its data. Choose a node to which you expect this shard to be allocated, find "
    "this node in the node-by-node explanation, and address the reasons which prevent Elasticsearch "
    "from allocating this shard there."
)
ALL_NODES_FORBIDDEN = (
    "Elasticsearch isn't allowed to allocate this shard to any of the nodes in the cluster. Choose a "
    "node to which you expect this shard to be allocated, find this node in the node-by-node "
    "explanation, and address the reasons which prevent Elasticsearch from allocating this shard there."
)
EXPLAIN_DOCS = "https://www.elastic.co/docs/api/doc/elasticsearch/v9/operation/operation-cluster-allocation-explain"
RANDOM_SHARD_NOTE = (
    "No shard was specified in the explain API request, so this response explains a randomly chosen "
    "unassigned shard. There may be other unassigned shards in this cluster which cannot be assigned "
    "for different reasons. It may not be possible to assign this shard until one of the other shards "
    "is assigned correctly. To explain the allocation of other shards (whether assigned or unassigned) "
    f"you must specify the target shard in the request to this API. See {EXPLAIN_DOCS} for more information."
)


class ExplainApi(Allocator):
    """The allocation explain API."""

    def explain(
        self,
        index: str | None = None,
        shard: int | None = None,
        primary: bool | None = None,
        *,
        current_node: str | None = None,
        include_yes_decisions: bool = False,
        human: bool = False,
    ) -> JsonDict:
        self.require_master()
        note = None
        if index is None and shard is None and primary is None and current_node is None:
            meta, group, routing = self._first_unassigned()
            note = RANDOM_SHARD_NOTE
        else:
            if index is None or shard is None or primary is None:
                raise SimApiError(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index, shard and primary must all be specified, or none of them;",
                )
            meta = self.index(index)
            group = self.shard_group(index, shard)
            routing = self._pick_routing(group, primary, current_node)
        body = self._explain_routing(meta, group, routing, include_yes_decisions, human)
        if note:
            return {"note": note, **body}  # the note comes first
        return body

    def _first_unassigned(self) -> tuple[IndexMeta, ShardGroup, ShardRouting]:
        # Like Elasticsearch: the first unassigned shard, but any unassigned primary wins.
        found: tuple[IndexMeta, ShardGroup, ShardRouting] | None = None
        for key in sorted(self._unassigned_keys):
            meta = self.state.indices[key[0]]
            group = meta.shards[key[1]]
            for routing in sorted(group.unassigned(), key=lambda r: not r.primary):
                if routing.primary:
                    return meta, group, routing
                found = found or (meta, group, routing)
        if found is not None:
            return found
        raise illegal_argument(
            "There are no unassigned shards in this cluster. Specify an assigned shard in the request body to "
            f"explain its allocation. See {EXPLAIN_DOCS} for more information."
        )

    def _pick_routing(self, group: ShardGroup, primary: bool, current_node: str | None) -> ShardRouting:
        candidates = [r for r in group.routings if r.primary == primary]
        if current_node is not None:
            node = self.node(current_node)
            candidates = [r for r in candidates if r.node_id == node.id]
            if not candidates:
                raise illegal_argument(
                    f"unable to find a shard assigned to node [{current_node}] for [{group.index}][{group.shard}]"
                )
        if not candidates:
            raise illegal_argument(f"unable to find any replica shards for [{group.index}][{group.shard}]")
        return min(candidates, key=lambda r: r.state != UNASSIGNED)

    def _explain_routing(
        self,
        meta: IndexMeta,
        group: ShardGroup,
        routing: ShardRouting,
        include_yes: bool,
        human: bool = False,
    ) -> JsonDict:
        """ClusterAllocationExplanation.toXContentChunked: the shard, its unassigned_info (kept
        while it initializes), its node, then the allocation decision."""
        body: JsonDict = {
            "index": meta.name,
            "shard": group.shard,
            "primary": routing.primary,
            "current_state": routing.state.lower(),
        }
        if routing.unassigned is not None:
            body["unassigned_info"] = self._unassigned_document(meta, routing)
        if routing.node_id is not None:
            node = self.node_by_id(routing.node_id)
            body["current_node"] = {
                "id": node.id,
                "name": node.name,
                "transport_address": node.transport_address,
                "attributes": node.attributes,
                "roles": node.roles,
            }
        if routing.state == INITIALIZING:
            assert routing.node_id is not None
            body["explanation"] = (f"the shard is in the process of initializing on node "
                                   f"[{self.node_by_id(routing.node_id).name}], wait until initialization has completed")
            return body
        if routing.state == STARTED:
            body["current_node"]["weight_ranking"] = 1
            body.update(
                {
                    "can_remain_on_current_node": "yes",
                    "can_rebalance_cluster": "yes",
                    "can_rebalance_to_other_node": "no",
                    "rebalance_explanation": ALREADY_BALANCED,
                }
            )
            return body
        body.update(self._unassigned_decision(meta, group, routing, include_yes, human))
        return body

    def _unassigned_decision(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting, include_yes: bool,
                             human: bool) -> JsonDict:
        """AllocateUnassignedDecision.toXContentChunked; the explanation texts are
        Explanations.Allocation's."""
        existing_primary = routing.primary and bool(group.in_sync)
        if existing_primary and not self._in_sync_stores(group):
            rows = [self._store_only_decision(group, node) for node in self.live_data_nodes()]
            stale_found = any("allocation_id" in row["store"] for row in rows)
            return {"can_allocate": "no_valid_shard_copy", "allocate_explanation": ALL_COPIES_INVALID if stale_found
                    else NO_COPIES, "node_allocation_decisions": rows}
        if not routing.primary and group.primary().state != STARTED:
            return self._replica_before_its_primary(meta, group, routing, include_yes)
        # The gateway allocators (an existing primary's in-sync copies; a replica waiting for, or
        # throttled on, a node with its data) do not rank nodes by weight; the balancer does.
        holders = [] if routing.primary else self._nodes_with_unrouted_copy(group)
        # ReplicaShardAllocator: a node holding data that would take the copy but for the
        # recoveries in flight makes the decision THROTTLE, whatever other nodes could do.
        holder_throttled = bool(holders) and self._holder_throttled(meta, group, routing, holders)
        delayed = self.is_delayed(meta, routing) and not holder_throttled
        # ReplicaShardAllocator decides a delay itself, node results without a weight ranking.
        gateway = existing_primary or holder_throttled or delayed
        decisions = self._node_decisions(meta, group, routing, existing_primary, include_yes, ranked=not gateway, human=human)
        verdicts = {d["node_decision"] for d in decisions}
        body: JsonDict = {}
        if holder_throttled:
            body.update({"can_allocate": "throttled", "allocate_explanation": THROTTLED})
        elif delayed:
            configured = self.delay_seconds(meta)
            remaining = self.remaining_delay(meta, routing)
            template = DELAYED_WITH_ALTERNATIVE if "yes" in verdicts else DELAYED_WITHOUT_ALTERNATIVE
            body.update({"can_allocate": "allocation_delayed", "allocate_explanation": template.format(human_time(remaining))})
            # builder.humanReadableField: the strings only with ?human=true.
            if human:
                body["configured_delay"] = human_time(configured)
            body["configured_delay_in_millis"] = int(configured * 1000)
            if human:
                body["remaining_delay"] = human_time(remaining)
            body["remaining_delay_in_millis"] = int(remaining * 1000)
        elif "yes" in verdicts:
            body.update({"can_allocate": "yes", "allocate_explanation": ALLOCATION_YES})
        elif "throttled" in verdicts:
            body.update({"can_allocate": "throttled", "allocate_explanation": THROTTLED})
        else:
            body.update({"can_allocate": "no",
                         "allocate_explanation": EXISTING_STORES_FORBIDDEN if existing_primary else ALL_NODES_FORBIDDEN})
        body["node_allocation_decisions"] = decisions
        return body

    def _replica_before_its_primary(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting,
                                    include_yes: bool) -> JsonDict:
        """ReplicaShardAllocator.makeAllocationDecision (server/src/main/java/org/elasticsearch/gateway/
        ReplicaShardAllocator.java): canBeAllocatedToAtLeastOneNode asks the deciders of every data
        node, and replica_after_primary_active says NO while the primary is not active, so the
        decision is NO with those node results only: no store rows (no shard data is fetched), no
        weight ranking, and no allocation delay (that is decided only after a YES)."""
        rows = []
        for node in self.live_data_nodes():
            verdicts = self.deciders(AllocationAttempt(meta, group, routing, node))
            shown = [v.as_json() for v in verdicts if include_yes or not v.allows]
            rows.append({**self._node_identity(node), "node_decision": "no", **({"deciders": shown} if shown else {})})
        return {"can_allocate": "no", "allocate_explanation": ALL_NODES_FORBIDDEN, "node_allocation_decisions": rows}

    def _node_identity(self, node: SimNode) -> JsonDict:
        return {
            "node_id": node.id,
            "node_name": node.name,
            "transport_address": node.transport_address,
            "node_attributes": node.attributes,
            "roles": node.roles,
        }

    def _store_document(self, group: ShardGroup, node: SimNode, primary: bool, human: bool = False) -> JsonDict | None:
        """NodeAllocationResult.ShardStoreInfo.toXContent: for a primary, `found: false` or the
        copy's `in_sync` and `allocation_id` (never its size); for a replica, the bytes the copy
        shares with the primary (`matching_size` only with ?human), on nodes holding data only."""
        store = group.stores.get(node.id)
        if primary:
            if store is None:
                return {"found": False}
            if store.unreadable is not None:
                # ShardStoreInfo.toXContent (cluster/routing/allocation/NodeAllocationResult.java): a copy
                # whose store could not be opened shows `in_sync: false` and its `store_exception`
                # (PrimaryShardAllocator.buildNodeShardsResult treats it as holding no allocation id).
                kind, reason = store.unreadable
                return {"in_sync": False, "allocation_id": store.allocation_id,
                        "store_exception": {"type": kind, "reason": reason}}
            return {"in_sync": store.allocation_id in group.in_sync, "allocation_id": store.allocation_id}
        if store is None:
            return None
        primary_store = group.primary_store()
        matching = min(store.size_in_bytes(), primary_store.size_in_bytes()) if primary_store is not None else 0
        document: JsonDict = {}
        if human:
            document["matching_size"] = human_bytes(matching)
        document["matching_size_in_bytes"] = matching
        return document

    def _store_only_decision(self, group: ShardGroup, node: SimNode) -> JsonDict:
        store = self._store_document(group, node, primary=True) or {"found": False}
        return {**self._node_identity(node), "node_decision": "no", "store": store}

    def _node_decisions(
        self,
        meta: IndexMeta,
        group: ShardGroup,
        routing: ShardRouting,
        existing_primary: bool,
        include_yes: bool,
        *,
        ranked: bool = True,
        human: bool = False,
    ) -> list[JsonDict]:
        rows: list[tuple[int, int, str, JsonDict]] = []
        for node in self.live_data_nodes():
            verdicts = self.deciders(AllocationAttempt(meta, group, routing, node, existing_primary=existing_primary))
            store = self._store_document(group, node, routing.primary, human)
            # An existing primary can only go where an in-sync copy is; elsewhere the deciders are not consulted.
            holds_copy = not existing_primary or (store is not None and bool(store.get("in_sync")))
            if not holds_copy:
                verdicts = []
            decision = ("no" if not holds_copy or any(v.decision == "NO" for v in verdicts)
                        else "throttled" if any(v.decision == "THROTTLE" for v in verdicts) else "yes")
            row = {**self._node_identity(node), "node_decision": decision}
            # Store rows come from the gateway allocators: an existing primary's copies, a replica's
            # data on a node; a new shard's primary is placed by the balancer, without them.
            if store is not None and (existing_primary or not routing.primary):
                row["store"] = store
            shown = [v.as_json() for v in verdicts if include_yes or not v.allows]
            if shown:
                row["deciders"] = shown
            order = {"yes": 0, "throttled": 1, "no": 2}[decision]
            rows.append((order, self._load.get(node.id, 0), node.name, row))
        rows.sort(key=lambda item: item[:3])
        result = []
        for rank, (_, _, _, row) in enumerate(rows, 1):
            if ranked:
                # NodeAllocationResult.toXContent: the store, then weight_ranking, then the deciders.
                row = {**{k: v for k, v in row.items() if k != "deciders"}, "weight_ranking": rank,
                       **({"deciders": row["deciders"]} if "deciders" in row else {})}
            result.append(row)
        return result

"""GET _cluster/allocation/explain: why a copy is where it is, or why it is unassigned,
node by node."""

from __future__ import annotations

from drengine.datastores.elasticsearch.simulator.allocator import Allocator
from drengine.datastores.elasticsearch.simulator.deciders import AllocationAttempt
from drengine.datastores.elasticsearch.simulator.model import (
    STARTED,
    UNASSIGNED,
    IndexMeta,
    JsonDict,
    ShardGroup,
    ShardRouting,
    SimApiError,
    SimNode,
    human_time,
    illegal_argument,
)

ALLOCATION_YES = "Elasticsearch can allocate the shard."
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
        body = self._explain_routing(meta, group, routing, include_yes_decisions)
        if note:
            body["note"] = note
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
    ) -> JsonDict:
        body: JsonDict = {
            "index": meta.name,
            "shard": group.shard,
            "primary": routing.primary,
            "current_state": routing.state.lower(),
        }
        if routing.state == STARTED:
            assert routing.node_id is not None
            node = self.node_by_id(routing.node_id)
            body["current_node"] = {
                "id": node.id,
                "name": node.name,
                "transport_address": node.transport_address,
                "attributes": node.attributes,
                "roles": node.roles,
                "weight_ranking": 1,
            }
            body.update(
                {
                    "can_remain_on_current_node": "yes",
                    "can_rebalance_cluster": "yes",
                    "can_rebalance_to_other_node": "no",
                    "rebalance_explanation": (
                        "This shard is in a well-balanced location and satisfies all allocation rules so it will remain on "
                        "this node. Elasticsearch cannot improve the cluster balance by moving it to another node."
                    ),
                }
            )
            return body
        body["unassigned_info"] = self._unassigned_document(meta, routing)
        existing_primary = routing.primary and bool(group.in_sync)
        if existing_primary and not self._in_sync_stores(group):
            body["can_allocate"] = "no_valid_shard_copy"
            stale_found = any(n.id in group.stores for n in self.live_data_nodes())
            body["allocate_explanation"] = ALL_COPIES_INVALID if stale_found else NO_COPIES
            body["node_allocation_decisions"] = [
                self._store_only_decision(group, node, rank) for rank, node in enumerate(self.live_data_nodes(), 1)
            ]
            return body
        decisions = self._node_decisions(meta, group, routing, existing_primary, include_yes)
        any_yes = any(d["node_decision"] == "yes" for d in decisions)
        if self.is_delayed(meta, routing):
            configured = self.delay_seconds(meta)
            remaining = self.remaining_delay(meta, routing)
            template = DELAYED_WITH_ALTERNATIVE if any_yes else DELAYED_WITHOUT_ALTERNATIVE
            body.update(
                {
                    "can_allocate": "allocation_delayed",
                    "allocate_explanation": template.format(human_time(remaining)),
                    "configured_delay": human_time(configured),
                    "configured_delay_in_millis": int(configured * 1000),
                    "remaining_delay": human_time(remaining),
                    "remaining_delay_in_millis": int(remaining * 1000),
                }
            )
        elif any_yes:
            body.update({"can_allocate": "yes", "allocate_explanation": ALLOCATION_YES})
        else:
            body.update(
                {
                    "can_allocate": "no",
                    "allocate_explanation": EXISTING_STORES_FORBIDDEN if existing_primary else ALL_NODES_FORBIDDEN,
                }
            )
        body["node_allocation_decisions"] = decisions
        return body

    def _node_identity(self, node: SimNode) -> JsonDict:
        return {
            "node_id": node.id,
            "node_name": node.name,
            "transport_address": node.transport_address,
            "node_attributes": node.attributes,
            "roles": node.roles,
        }

    def _store_document(self, group: ShardGroup, node: SimNode) -> JsonDict | None:
        store = group.stores.get(node.id)
        if store is None:
            return None
        return {
            "in_sync": store.allocation_id in group.in_sync,
            "allocation_id": store.allocation_id,
            "found": True,
            "matching_size_in_bytes": store.size_in_bytes(),
        }

    def _store_only_decision(self, group: ShardGroup, node: SimNode, rank: int) -> JsonDict:
        store = self._store_document(group, node) or {"found": False}
        return {
            **self._node_identity(node),
            "node_decision": "no",
            "weight_ranking": rank,
            "store": store,
        }

    def _node_decisions(
        self,
        meta: IndexMeta,
        group: ShardGroup,
        routing: ShardRouting,
        existing_primary: bool,
        include_yes: bool,
    ) -> list[JsonDict]:
        rows: list[tuple[int, int, str, JsonDict]] = []
        for node in self.live_data_nodes():
            verdicts = self.deciders(AllocationAttempt(meta, group, routing, node, existing_primary=existing_primary))
            store = self._store_document(group, node)
            # An existing primary can only go where an in-sync copy is; elsewhere the deciders are not consulted.
            holds_copy = not existing_primary or (store is not None and bool(store["in_sync"]))
            allowed = holds_copy and all(v.allows for v in verdicts)
            if not holds_copy:
                verdicts = []
            row = {
                **self._node_identity(node),
                "node_decision": "yes" if allowed else "no",
            }
            if store is not None:
                row["store"] = store
            elif routing.primary:
                row["store"] = {"found": False}
            shown = [v.as_json() for v in verdicts if include_yes or not v.allows]
            if shown:
                row["deciders"] = shown
            rows.append((0 if allowed else 1, self._load.get(node.id, 0), node.name, row))
        rows.sort(key=lambda item: item[:3])
        result = []
        for rank, (_, _, _, row) in enumerate(rows, 1):
            row["weight_ranking"] = rank
            result.append(row)
        return result

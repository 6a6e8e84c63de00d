"""POST _cluster/reroute: the commands (allocate_replica, allocate_stale_primary,
allocate_empty_primary, move, cancel), then the allocator, and the cluster state it answers with."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from drengine.datastores.elasticsearch.simulator.allocator import Allocator
from drengine.datastores.elasticsearch.simulator.deciders import AllocationAttempt, Decision, decide_same_shard
from drengine.datastores.elasticsearch.simulator.model import (
    STARTED,
    UNASSIGNED,
    IndexMeta,
    JsonDict,
    ShardGroup,
    ShardRouting,
    SimApiError,
    SimNode,
    StoreCopy,
    illegal_argument,
)


class RerouteCommands(Allocator):
    """The reroute API."""

    def reroute(
        self,
        commands: Sequence[Mapping[str, Any]] = (),
        *,
        dry_run: bool = False,
        retry_failed: bool = False,
        explain: bool = False,
        metric: str | None = None,
    ) -> JsonDict:
        """POST _cluster/reroute: run commands, then allocate what the deciders allow."""
        if dry_run:
            return self.clone().reroute(commands, retry_failed=retry_failed, explain=explain, metric=metric)
        if not self.has_master():
            if commands or retry_failed:
                self.require_master()
            return {"acknowledged": False}
        explanations = [self._run_command(command, explain) for command in commands]
        if retry_failed:
            self._reset_failed_allocations()
        self._allocate_unassigned()
        self._changed()
        body: JsonDict = {"acknowledged": True}
        if metric != "none":
            body["state"] = self.cluster_state_document(metric)
        if explain:
            body["explanations"] = explanations
        return body

    def _run_command(self, command: Mapping[str, Any], explain: bool) -> JsonDict:
        if len(command) != 1:
            raise SimApiError(
                400,
                "x_content_parse_exception",
                "[cluster_reroute] failed to parse field [commands]",
            )
        name, raw = next(iter(command.items()))
        if not isinstance(raw, Mapping):
            raise SimApiError(400, "x_content_parse_exception", f"[{name}] expected an object")
        args = dict(raw)
        handlers: dict[str, Callable[[Mapping[str, Any]], list[Decision]]] = {
            "allocate_replica": self._command_allocate_replica,
            "allocate_stale_primary": lambda a: self._command_allocate_primary("allocate_stale_primary", a),
            "allocate_empty_primary": lambda a: self._command_allocate_primary("allocate_empty_primary", a),
            "move": self._command_move,
            "cancel": self._command_cancel,
        }
        handler = handlers.get(name)
        if handler is None:
            raise SimApiError(
                400,
                "x_content_parse_exception",
                f"[cluster_reroute] unknown command [{name}]",
            )
        try:
            decisions = handler(args)
        except _CommandRefused as refused:
            if not explain:
                raise illegal_argument(refused.reason) from None
            decisions = refused.decisions
        parameters = {
            key: args[key]
            for key in (
                "index",
                "shard",
                "node",
                "from_node",
                "to_node",
                "allow_primary",
                "accept_data_loss",
            )
            if key in args
        }
        return {
            "command": name,
            "parameters": parameters,
            "decisions": [d.as_json() for d in decisions],
        }

    def _command_target(self, args: Mapping[str, Any], name: str) -> tuple[IndexMeta, ShardGroup]:
        for key in ("index", "shard"):
            if key not in args:
                raise illegal_argument(f"[{name}] command missing the {key} parameter")
        meta = self.index(str(args["index"]))
        return meta, self.shard_group(meta.name, int(args["shard"]))

    def _command_node(self, args: Mapping[str, Any], key: str, name: str) -> SimNode:
        if key not in args:
            raise illegal_argument(f"[{name}] command missing the {key} parameter")
        try:
            node = self.node(str(args[key]))
        except SimApiError:
            raise illegal_argument(f"[{name}] failed to resolve [{args[key]}], no matching nodes") from None
        if not node.alive:
            raise illegal_argument(f"[{name}] failed to resolve [{args[key]}], no matching nodes")
        if not node.is_data():
            raise illegal_argument(
                f"[{name}] allocation of [{args.get('index')}][{args.get('shard')}] on node {self._node_label(node)} is not allowed, reason: [NO(node does not hold the data role)]"
            )
        return node

    @staticmethod
    def _node_label(node: SimNode) -> str:
        return f"{{{node.name}}}{{{node.id}}}{{{node.transport_address}}}"

    def _command_allocate_replica(self, args: Mapping[str, Any]) -> list[Decision]:
        name = "allocate_replica"
        meta, group = self._command_target(args, name)
        node = self._command_node(args, "node", name)
        if group.primary().state != STARTED:
            raise _CommandRefused(
                f"[{name}] trying to allocate a replica shard [{meta.name}][{group.shard}], while corresponding primary shard is still unassigned",
                [],
            )
        routing = next((r for r in group.routings if not r.primary and r.state == UNASSIGNED), None)
        if routing is None:
            raise _CommandRefused(
                f"[{name}] all copies of [{meta.name}][{group.shard}] are already assigned. Use the move allocation command instead",
                [],
            )
        decisions = self.deciders(AllocationAttempt(meta, group, routing, node, manual=True))
        refusals = [d for d in decisions if not d.allows]
        if refusals:
            reasons = ", ".join(f"{d.decision}({d.explanation})" for d in refusals)
            raise _CommandRefused(
                f"[{name}] allocation of [{meta.name}][{group.shard}] on node {self._node_label(node)} is not allowed, reason: [{reasons}]",
                decisions,
            )
        primary_store = group.primary_store()
        assert primary_store is not None
        self._start_replica(meta, group, routing, node, primary_store)
        return decisions

    def _command_allocate_primary(self, name: str, args: Mapping[str, Any]) -> list[Decision]:
        meta, group = self._command_target(args, name)
        node = self._command_node(args, "node", name)
        routing = group.primary()
        if routing.state != UNASSIGNED:
            raise _CommandRefused(f"[{name}] primary [{meta.name}][{group.shard}] is already assigned", [])
        stale = name == "allocate_stale_primary"
        store = group.stores.get(node.id)
        if stale and store is None:
            raise _CommandRefused(
                f"[{name}] No data for shard [{group.shard}] of index [{meta.name}] found on node [{node.name}]",
                [],
            )
        if not args.get("accept_data_loss"):
            kind = "a stale" if stale else "an empty"
            raise _CommandRefused(
                f"[{name}] allocating {kind} primary for [{meta.name}][{group.shard}] can result in data loss. "
                "Please confirm by setting the accept_data_loss parameter to true",
                [],
            )
        decision = decide_same_shard(AllocationAttempt(meta, group, routing, node, manual=True))
        if not decision.allows:
            raise _CommandRefused(
                f"[{name}] allocation of [{meta.name}][{group.shard}] on node {self._node_label(node)} is not allowed, reason: [NO({decision.explanation})]",
                [decision],
            )
        chosen = store if stale and store is not None else StoreCopy(allocation_id=self._new_id())
        self._assign(group, routing, node, chosen)
        # Every other copy is now stale: if a node with newer data returns, its data is discarded.
        group.in_sync = [chosen.allocation_id]
        group.primary_term += 1
        for other_node in [n for n in list(group.stores) if n != node.id and n not in group.routed_nodes()]:
            del group.stores[other_node]
        return [Decision("allocate_primary", "YES", f"{name} accepted: data loss acknowledged")]

    def _command_move(self, args: Mapping[str, Any]) -> list[Decision]:
        name = "move"
        meta, group = self._command_target(args, name)
        source = self._command_node(args, "from_node", name)
        target = self._command_node(args, "to_node", name)
        routing = next(
            (r for r in group.routings if r.node_id == source.id and r.state == STARTED),
            None,
        )
        if routing is None:
            raise _CommandRefused(
                f"[{name}] can't move [{meta.name}][{group.shard}], failed to find it on node {self._node_label(source)}",
                [],
            )
        decisions = [
            d
            for d in self.deciders(
                AllocationAttempt(
                    meta,
                    group,
                    routing,
                    target,
                    manual=True,
                    existing_primary=routing.primary,
                )
            )
        ]
        refusals = [d for d in decisions if not d.allows]
        if refusals:
            reasons = ", ".join(f"{d.decision}({d.explanation})" for d in refusals)
            raise _CommandRefused(
                f"[{name}] can't move [{meta.name}][{group.shard}], from {self._node_label(source)}, to {self._node_label(target)}, since its not allowed, reason: [{reasons}]",
                decisions,
            )
        store = group.stores.pop(source.id)
        self._load[source.id] -= 1
        moved = StoreCopy(allocation_id=self._new_id(), docs=store.docs, max_seq_no=store.max_seq_no)
        group.in_sync = [moved.allocation_id if a == store.allocation_id else a for a in group.in_sync]
        self._assign(group, routing, target, moved)
        return decisions

    def _command_cancel(self, args: Mapping[str, Any]) -> list[Decision]:
        name = "cancel"
        meta, group = self._command_target(args, name)
        node = self._command_node(args, "node", name)
        routing = next((r for r in group.routings if r.node_id == node.id), None)
        if routing is None:
            raise _CommandRefused(
                f"[{name}_allocation] can't cancel [{meta.name}][{group.shard}], failed to find it on node {self._node_label(node)}",
                [],
            )
        if routing.primary and not args.get("allow_primary"):
            raise _CommandRefused(
                f"[{name}_allocation] can't cancel [{meta.name}][{group.shard}] on node {self._node_label(node)}, shard is primary and started",
                [],
            )
        if routing.primary:
            self._unassign(
                group,
                routing,
                "REROUTE_CANCELLED",
                "primary cancelled by reroute command",
            )
            self._promote_replica(group, routing)
        else:
            self._unassign(group, routing, "REROUTE_CANCELLED")
        return [Decision("cancel_allocation", "YES", "shard cancelled by the reroute API")]

    def cluster_state_document(self, metric: str | None = None) -> JsonDict:
        """A small cluster state: enough to see where each copy went after a reroute."""
        master = self.master()
        document: JsonDict = {
            "cluster_uuid": self.state.cluster_uuid,
            "version": self.state.state_version,
            "state_uuid": self._state_uuid(),
            "master_node": master.id if master else None,
        }
        if metric in (None, "", "_all") or "nodes" in str(metric):
            document["nodes"] = {
                n.id: {
                    "name": n.name,
                    "transport_address": n.transport_address,
                    "roles": n.roles,
                }
                for n in self.live_nodes()
            }
        if metric in (None, "", "_all") or "routing_table" in str(metric):
            indices: JsonDict = {}
            for meta in self.state.indices.values():
                indices[meta.name] = {
                    "shards": {str(g.shard): [self._routing_document(g, r) for r in g.routings] for g in meta.shards}
                }
            document["routing_table"] = {"indices": indices}
        return document

    def _state_uuid(self) -> str:
        digest = hashlib.sha1(f"{self.state.cluster_uuid}:{self.state.state_version}".encode()).digest()
        return base64.urlsafe_b64encode(digest).decode()[:22]

    def _routing_document(self, group: ShardGroup, routing: ShardRouting) -> JsonDict:
        document: JsonDict = {
            "state": routing.state,
            "primary": routing.primary,
            "node": routing.node_id,
            "relocating_node": None,
            "shard": group.shard,
            "index": group.index,
        }
        if routing.allocation_id:
            document["allocation_id"] = {"id": routing.allocation_id}
        if routing.unassigned:
            document["unassigned_info"] = self._state_unassigned_document(self.index(group.index), routing)
        return document


class _CommandRefused(Exception):
    def __init__(self, reason: str, decisions: list[Decision]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decisions = decisions



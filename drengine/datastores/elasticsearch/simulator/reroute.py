"""POST _cluster/reroute: the commands (allocate_replica, allocate_stale_primary,
allocate_empty_primary, move, cancel), then the allocator, and the cluster state it answers with."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from drengine.datastores.elasticsearch.simulator.allocator import Allocator
from drengine.datastores.elasticsearch.simulator.deciders import AllocationAttempt, Decision
from drengine.datastores.elasticsearch.simulator.model import (
    FORCED_ALLOCATION_ID,
    STARTED,
    UNASSIGNED,
    IndexMeta,
    JsonDict,
    Recovery,
    ShardGroup,
    ShardRouting,
    SimApiError,
    SimNode,
    StoreCopy,
    UnassignedInfo,
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
        for command in commands:  # the request is parsed whole before any command runs
            for name, raw in command.items():
                for field in ("accept_data_loss", "allow_primary"):
                    if isinstance(raw, Mapping) and field in raw:
                        _flag(raw[field], name, field)
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
        # DiscoveryNodes.resolveNode's message, rethrown as is; then explainOrThrowMissingRoutingNode.
        try:
            node = self.node(str(args[key]))
        except SimApiError:
            raise illegal_argument(f"failed to resolve [{args[key]}], no matching nodes") from None
        if not node.alive:
            raise illegal_argument(f"failed to resolve [{args[key]}], no matching nodes")
        if not node.is_data():
            raise self._refused(name, f"allocation can only be done on data nodes, not [{args[key]}]")
        return node

    @staticmethod
    def _node_label(node: SimNode) -> str:
        return f"{{{node.name}}}{{{node.id}}}{{{node.transport_address}}}"

    def _command_allocate_replica(self, args: Mapping[str, Any]) -> list[Decision]:
        name = "allocate_replica"
        meta, group = self._command_target(args, name)
        node = self._command_node(args, "node", name)
        if group.primary().state != STARTED:
            raise self._refused(name, f"trying to allocate a replica shard [{meta.name}][{group.shard}], while "
                                      f"corresponding primary shard is still unassigned")
        routing = next((r for r in group.routings if not r.primary and r.state == UNASSIGNED), None)
        if routing is None:
            raise self._refused(name, f"all copies of [{meta.name}][{group.shard}] are already assigned. Use the move "
                                      f"allocation command instead")
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
        """AllocateStalePrimaryAllocationCommand / AllocateEmptyPrimaryAllocationCommand.execute
        (server/src/main/java/org/elasticsearch/cluster/routing/allocation/command/): neither
        consults the deciders nor looks at the target's store. A stale primary is refused only for a
        shard that was never active; forced onto a node without data it initializes, then fails its
        recovery (routing.py). Both commands warn about "an empty primary" (the stale one's
        warning is a copy of the empty one's in Elasticsearch's source)."""
        meta, group = self._command_target(args, name)
        node = self._command_node(args, "node", name)
        routing = group.primary()
        if routing.state != UNASSIGNED:
            raise self._refused(name, f"primary [{meta.name}][{group.shard}] is already assigned")
        stale = name == "allocate_stale_primary"
        ever_active = bool(group.in_sync)  # recovery source EXISTING_STORE
        data_loss = (f"allocating an empty primary for [{meta.name}][{group.shard}] can result in data loss. Please "
                     f"confirm by setting the accept_data_loss parameter to true")
        accepted = _flag(args.get("accept_data_loss"), name)
        if stale:
            if not accepted:
                raise self._refused(name, data_loss)
            if not ever_active:
                raise self._refused(name, f"trying to allocate an existing primary shard [{meta.name}][{group.shard}], while "
                                          f"no such shard has ever been active")
            store = group.stores.get(node.id)
            recovery = Recovery(type="existing_store", forced=True, started_at=self._now(),
                                allocation_id=store.allocation_id if store is not None else self._new_id(),
                                bytes_total=store.size_in_bytes() if store is not None else 0,
                                files_total=1 if store is not None else 0)
        else:
            if ever_active and not accepted:
                raise self._refused(name, data_loss)
            info = routing.unassigned
            if info is not None and info.reason != "FORCED_EMPTY_PRIMARY":
                routing.unassigned = UnassignedInfo(
                    reason="FORCED_EMPTY_PRIMARY", at=self._now(), last_allocation_status=info.last_allocation_status,
                    details=f"force empty allocation from previous reason {info.reason}, {info.details or 'null'}")
            recovery = Recovery(type="empty_store", forced=True, started_at=self._now(), allocation_id=self._new_id())
        # IndexMetadataUpdater.updateInSyncAllocations (server/src/main/java/org/elasticsearch/cluster/
        # routing/allocation/IndexMetadataUpdater.java): as soon as the forced primary INITIALIZES, the
        # in-sync set becomes {"_forced_allocation_"} for a stale primary and the empty set for an
        # empty one. Should its recovery fail, no copy is in sync any more: the node with the old
        # in-sync copy coming back does not bring the shard back; only another forced allocation does.
        group.in_sync = [FORCED_ALLOCATION_ID] if stale else []
        self._initialize(meta, group, routing, node, recovery)
        return [Decision(f"{name} (allocation command)", "YES", "ignore deciders")]

    @staticmethod
    def _refused(name: str, reason: str) -> _CommandRefused:
        """explainOrThrowRejectedCommand: "[name] reason", or with ?explain a NO decision."""
        return _CommandRefused(f"[{name}] {reason}", [Decision(f"{name} (allocation command)", "NO", reason)])

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
            # MoveAllocationCommand.execute: with ?explain a NO from "move_allocation_command".
            there = next((r for r in group.routings if r.node_id == source.id), None)
            shard = f"[{meta.name}][{group.shard}]"
            if there is not None:
                raise _CommandRefused(f"[move_allocation] can't move {shard}, shard is not started (state = "
                                      f"{there.state}]", [Decision("move_allocation_command", "NO",
                                                                   f"shard {shard} has not been started")])
            raise _CommandRefused(
                f"[{name}] can't move {shard}, failed to find it on node {self._node_label(source)}",
                [Decision("move_allocation_command", "NO", f"shard {shard} not found")],
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
        # CancelAllocationCommand.execute: with ?explain a NO from "cancel_allocation_command".
        if routing is None:
            reason = f"can't cancel [{meta.name}][{group.shard}], failed to find it on node {self._node_label(node)}"
            raise _CommandRefused(f"[{name}_allocation] {reason}", [Decision("cancel_allocation_command", "NO", reason)])
        if routing.primary and not _flag(args.get("allow_primary"), name, "allow_primary"):
            reason = (f"can't cancel [{meta.name}][{group.shard}] on node {self._node_label(node)}, shard is primary and "
                      f"{routing.state.lower()}")
            raise _CommandRefused(f"[{name}_allocation] {reason}", [Decision("cancel_allocation_command", "NO", reason)])
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


def _flag(value: Any, name: str = "", field: str = "accept_data_loss") -> bool:
    """A boolean field as the commands' ObjectParser reads it (declareBoolean: XContentParser.booleanValue,
    Booleans.parseBoolean): true or the string "true", false or "false"; any other string fails to parse."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if value in ("true", "false"):
        return bool(value == "true")
    raise SimApiError(400, "x_content_parse_exception", f"[{name}] failed to parse field [{field}]: Failed to parse "
                                                        f"value [{value}] as only [true] or [false] are allowed.")


class _CommandRefused(Exception):
    def __init__(self, reason: str, decisions: list[Decision]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decisions = decisions



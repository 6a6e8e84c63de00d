"""The cluster state and what every part of the simulator reads from it: lookups, the
master, delayed allocation, creating nodes and indices, and assigning or unassigning one copy."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Self

from drengine.clock import SYSTEM, Clock
from drengine.datastores.elasticsearch.simulator.model import (
    ALLOCATION_STATUS_VALUES,
    CLUSTER_DEFAULTS,
    DEFAULT_DELAYED_TIMEOUT,
    DEFAULT_VERSION,
    DELAYED_TIMEOUT_SETTING,
    INDEX_DYNAMIC_SETTINGS,
    REPLICAS_SETTING,
    SHARDS_SETTING,
    UNASSIGNED,
    ClusterState,
    IndexMeta,
    JsonDict,
    Recovery,
    ShardGroup,
    ShardRouting,
    SimApiError,
    SimNode,
    UnassignedInfo,
    flatten_settings,
    illegal_argument,
    index_not_found,
    iso_time,
    parse_time_value,
    setting_string,
)


class ClusterCore:
    """State, lookups and single-copy routing changes; `allocate` is the allocator's."""

    def __init__(
        self,
        cluster_name: str = "drengine-sim",
        *,
        clock: Clock = SYSTEM,
        version: str = DEFAULT_VERSION,
        state: ClusterState | None = None,
    ) -> None:
        self.clock = clock
        self.state = state or ClusterState(cluster_name=cluster_name, cluster_uuid="", version=version)
        if not self.state.cluster_uuid:
            self.state.cluster_uuid = self._new_id()
        self._load: dict[str, int] = {}
        self._unassigned_keys: set[tuple[str, int]] = set()
        # Recoveries in flight, counted per node for the throttling decider.
        self._incoming: dict[str, int] = {}
        self._outgoing: dict[str, int] = {}
        self._initial_primaries: dict[str, int] = {}
        self._recovering_keys: set[tuple[str, int]] = set()  # shards with a copy initializing
        # Bumped by every routing change: an allocation round with nothing changed since the last
        # one (and no delay run out) would decide the same, and is skipped (allocator.py).
        self._routing_epoch = 0
        self._at: float | None = None
        # Scenarios start from a healthy cluster: while building one, copies start at once.
        self._instant = False
        self._rebuild_indexes()

    def to_json(self) -> JsonDict:
        return self.state.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, clock: Clock = SYSTEM) -> Self:
        return cls(clock=clock, state=ClusterState.model_validate(data))

    def clone(self) -> Self:
        return type(self)(clock=self.clock, state=self.state.model_copy(deep=True))

    def _rebuild_indexes(self) -> None:
        self._load = {node.id: 0 for node in self.state.nodes}
        self._unassigned_keys = set()
        self._incoming, self._outgoing, self._initial_primaries = {}, {}, {}
        self._recovering_keys = set()
        for group in self.groups():
            for routing in group.routings:
                if routing.node_id is not None:
                    self._load[routing.node_id] = self._load.get(routing.node_id, 0) + 1
                else:
                    self._unassigned_keys.add((group.index, group.shard))
                if routing.recovery is not None and routing.node_id is not None:
                    self._count_recovery(routing.node_id, routing.recovery, +1)
                    self._recovering_keys.add((group.index, group.shard))

    def _count_recovery(self, node_id: str, recovery: Recovery, step: int) -> None:
        if recovery.type == "peer":
            self._incoming[node_id] = self._incoming.get(node_id, 0) + step
            if recovery.source_node is not None:
                self._outgoing[recovery.source_node] = self._outgoing.get(recovery.source_node, 0) + step
        else:
            self._initial_primaries[node_id] = self._initial_primaries.get(node_id, 0) + step

    def _new_id(self) -> str:
        self.state.id_counter += 1
        digest = hashlib.sha1(f"{self.state.cluster_name}:{self.state.id_counter}".encode()).digest()
        return base64.urlsafe_b64encode(digest).decode()[:22]

    def _now(self) -> float:
        # Wall-clock seconds: timestamps in the state file stay meaningful across processes. While
        # recoveries are being advanced, events happen at the time they complete.
        if self._at is not None:
            return self._at
        return self.clock.wall() + self.state.skew

    def now(self) -> float:
        """Model time (seconds since the epoch)."""
        return self._now()

    def allocate(self, *, if_changed: bool = False) -> None:
        """Place what the deciders allow: the allocator's (see allocator.py)."""
        raise NotImplementedError

    def build_instantly(self, on: bool = True) -> None:
        """While a scenario's healthy past is being built, copies start at once (no recovery
        time); switched off, they recover at their pace."""
        self._instant = on

    def allocation_current(self) -> bool:
        """Whether the last allocation round still holds (the allocator's answer; see allocator.py)."""
        return False

    def _changed(self) -> None:
        self.state.state_version += 1

    def groups(self) -> Iterator[ShardGroup]:
        for index in self.state.indices.values():
            yield from index.shards

    def node(self, name_or_id: str) -> SimNode:
        for node in self.state.nodes:
            if name_or_id in (node.name, node.id):
                return node
        raise illegal_argument(f"failed to resolve [{name_or_id}], no matching nodes")

    def node_by_id(self, node_id: str) -> SimNode:
        return next(node for node in self.state.nodes if node.id == node_id)

    def live_nodes(self) -> list[SimNode]:
        return [node for node in self.state.nodes if node.alive]

    def live_data_nodes(self) -> list[SimNode]:
        return [node for node in self.state.nodes if node.alive and node.is_data()]

    def index(self, name: str) -> IndexMeta:
        meta = self.state.indices.get(name)
        if meta is None:
            raise index_not_found(name)
        return meta

    def resolve_indices(self, expression: str | None) -> list[IndexMeta]:
        if expression in (None, "", "_all", "*"):
            return list(self.state.indices.values())
        found: list[IndexMeta] = []
        for part in str(expression).split(","):
            if any(ch in part for ch in "*?"):
                found.extend(m for n, m in self.state.indices.items() if fnmatch.fnmatchcase(n, part))
            else:
                found.append(self.index(part))
        return found

    def shard_group(self, index: str, shard: int) -> ShardGroup:
        meta = self.index(index)
        if not 0 <= shard < meta.number_of_shards:
            raise SimApiError(404, "shard_not_found_exception", f"no such shard [{index}][{shard}]")
        return meta.shards[shard]

    def cluster_setting(self, key: str) -> str:
        if key in self.state.transient:
            return self.state.transient[key]
        if key in self.state.persistent:
            return self.state.persistent[key]
        return CLUSTER_DEFAULTS.get(key, "")

    def _cluster_settings_flat(self) -> dict[str, str]:
        return {**self.state.persistent, **self.state.transient}

    def has_master(self) -> bool:
        """A master is elected while a majority of master-eligible nodes is alive."""
        eligible = [node for node in self.state.nodes if node.is_master_eligible()]
        return sum(node.alive for node in eligible) * 2 > len(eligible)

    def master(self) -> SimNode | None:
        if not self.has_master():
            return None
        return next((n for n in self.state.nodes if n.alive and n.is_master_eligible()), None)

    def require_master(self) -> None:
        if not self.has_master():
            raise SimApiError(
                503,
                "master_not_discovered_exception",
                # MasterNotDiscoveredException has no message: `"reason": null`, status 503, once the
                # request's master_timeout has run out (the REST layer waits it; shape as in
                # https://github.com/elastic/elasticsearch/issues/34427).
                None,
            )

    def delay_seconds(self, meta: IndexMeta) -> float:
        raw = meta.setting(DELAYED_TIMEOUT_SETTING, DEFAULT_DELAYED_TIMEOUT)
        return max(parse_time_value(raw, DELAYED_TIMEOUT_SETTING), 0.0)

    def remaining_delay(self, meta: IndexMeta, routing: ShardRouting) -> float:
        info = routing.unassigned
        if routing.primary or info is None or info.reason != "NODE_LEFT":
            return 0.0
        return max(info.at + self.delay_seconds(meta) - self._now(), 0.0)

    def is_delayed(self, meta: IndexMeta, routing: ShardRouting) -> bool:
        return routing.state == UNASSIGNED and self.remaining_delay(meta, routing) > 0

    def add_node(
        self,
        name: str,
        *,
        roles: Sequence[str] = ("data", "ingest", "master"),
        attributes: Mapping[str, str] | None = None,
        disk_used_percent: float = 40.0,
    ) -> SimNode:
        position = len(self.state.nodes) + 1
        node = SimNode(
            name=name,
            id=self._new_id(),
            roles=sorted(roles),
            attributes=dict(attributes or {}),
            disk_used_percent=disk_used_percent,
            ip=f"10.0.0.{position}",
        )
        self.state.nodes.append(node)
        self._load[node.id] = 0
        self._changed()
        self.allocate()
        return node

    def create_index(
        self,
        name: str,
        *,
        number_of_shards: int = 1,
        number_of_replicas: int = 1,
        settings: Mapping[str, Any] | None = None,
        allocate: bool = True,
    ) -> IndexMeta:
        self.require_master()
        if name in self.state.indices:
            meta = self.state.indices[name]
            raise SimApiError(
                400,
                "resource_already_exists_exception",
                f"index [{name}/{meta.uuid}] already exists",
                index=name,
                index_uuid=meta.uuid,
            )
        if name != name.lower() or name.startswith(("_", "-", "+")):
            raise SimApiError(
                400,
                "invalid_index_name_exception",
                f"Invalid index name [{name}], must be lowercase",
                index=name,
            )
        extra = {key: setting_string(value) for key, value in self._index_settings_doc(settings or {}).items()}
        for key in extra:
            self._check_index_setting(key, creating=True)
        number_of_shards = int(extra.pop(SHARDS_SETTING, number_of_shards))
        number_of_replicas = int(extra.pop(REPLICAS_SETTING, number_of_replicas))
        if DELAYED_TIMEOUT_SETTING in extra:
            parse_time_value(extra[DELAYED_TIMEOUT_SETTING], DELAYED_TIMEOUT_SETTING)
        now = self._now()
        meta = IndexMeta(
            name=name,
            uuid=self._new_id(),
            created=now,
            number_of_shards=number_of_shards,
            number_of_replicas=number_of_replicas,
            settings=extra,
        )
        for shard in range(number_of_shards):
            routings = [self._unassigned_routing(True, "INDEX_CREATED", now)]
            routings += [self._unassigned_routing(False, "INDEX_CREATED", now) for _ in range(number_of_replicas)]
            meta.shards.append(ShardGroup(index=name, shard=shard, routings=routings))
            self._unassigned_keys.add((name, shard))
        self.state.indices[name] = meta
        self._changed()
        if allocate:
            self.allocate()
        return meta

    def delete_index(self, name: str) -> None:
        meta = self.index(name)
        for group in meta.shards:
            for routing in group.routings:
                if routing.node_id is not None:
                    self._load[routing.node_id] -= 1
            self._unassigned_keys.discard((name, group.shard))
        del self.state.indices[name]
        self._changed()

    @staticmethod
    def _unassigned_routing(primary: bool, reason: str, at: float, details: str | None = None) -> ShardRouting:
        return ShardRouting(
            primary=primary,
            unassigned=UnassignedInfo(reason=reason, at=at, details=details),
        )

    @staticmethod
    def _index_settings_doc(document: Mapping[str, Any]) -> dict[str, Any]:
        body = document.get("settings", document) if isinstance(document.get("settings"), Mapping) else document
        flat = flatten_settings(body)
        return {key if key.startswith("index.") else f"index.{key}": value for key, value in flat.items()}

    @staticmethod
    def _check_index_setting(key: str, *, creating: bool) -> None:
        if creating and key in (SHARDS_SETTING, REPLICAS_SETTING):
            return
        if key == SHARDS_SETTING:
            raise illegal_argument(f"final {key} setting [{key}], not updateable")
        if key not in INDEX_DYNAMIC_SETTINGS:
            raise illegal_argument(
                f"unknown setting [{key}] please check that any required plugins are installed, or check the "
                "breaking changes documentation for removed settings"
            )

    def _unassigned_document(self, meta: IndexMeta, routing: ShardRouting) -> JsonDict:
        """`unassigned_info` as the allocation explain API shows it
        (ClusterAllocationExplanation.unassignedInfoToXContent: no `delayed` field; the status is
        an AllocationDecision value)."""
        info = routing.unassigned
        assert info is not None
        document: JsonDict = {"reason": info.reason, "at": iso_time(info.at)}
        if info.failed_attempts:
            document["failed_allocation_attempts"] = info.failed_attempts
        if info.details:
            document["details"] = info.details
        document["last_allocation_status"] = info.last_allocation_status
        return document

    def _state_unassigned_document(self, meta: IndexMeta, routing: ShardRouting) -> JsonDict:
        """`unassigned_info` as the cluster state's routing table shows it (UnassignedInfo.toXContent:
        `failed_attempts`, `failed_nodes`, `delayed`, and the AllocationStatus value)."""
        info = routing.unassigned
        assert info is not None
        document: JsonDict = {"reason": info.reason, "at": iso_time(info.at)}
        if info.failed_attempts:
            document["failed_attempts"] = info.failed_attempts
        if info.failed_nodes:
            document["failed_nodes"] = list(info.failed_nodes)
        document["delayed"] = self.is_delayed(meta, routing)
        if info.details:
            document["details"] = info.details
        document["allocation_status"] = ALLOCATION_STATUS_VALUES.get(info.last_allocation_status, "no_attempt")
        return document

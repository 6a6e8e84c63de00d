"""In-memory model of an Elasticsearch cluster's shard allocation.

Owns the simulated cluster state (nodes, indices, shard copies, in-sync
allocation ids, documents), the allocation deciders, the allocator
(``reroute``), the reroute commands, settings, health, explain, fault
injection and the named scenarios. No sockets and no sleeping: time comes
from an injected clock, so delayed allocation is tested by moving the clock.
``drengine.datastores.elasticsearch.rest`` serves this model over the Elasticsearch REST API.

Simplified on purpose: recoveries finish instantly (no INITIALIZING or
RELOCATING shards, no throttling), no rebalancing, one data path per node.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import math
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

JsonDict = dict[str, Any]
Clock = Callable[[], float]

STARTED: Literal["STARTED"] = "STARTED"
UNASSIGNED: Literal["UNASSIGNED"] = "UNASSIGNED"

DEFAULT_VERSION = "9.1.0"
DEFAULT_DELAYED_TIMEOUT = "1m"
DEFAULT_MAX_RETRIES = 5

ENABLE_SETTING = "cluster.routing.allocation.enable"
INDEX_ENABLE_SETTING = "index.routing.allocation.enable"
LOW_WATERMARK_SETTING = "cluster.routing.allocation.disk.watermark.low"
HIGH_WATERMARK_SETTING = "cluster.routing.allocation.disk.watermark.high"
FLOOD_WATERMARK_SETTING = "cluster.routing.allocation.disk.watermark.flood_stage"
DISK_ENABLED_SETTING = "cluster.routing.allocation.disk.threshold_enabled"
AWARENESS_SETTING = "cluster.routing.allocation.awareness.attributes"
EXCLUDE_PREFIX = "cluster.routing.allocation.exclude."
DELAYED_TIMEOUT_SETTING = "index.unassigned.node_left.delayed_timeout"
MAX_RETRIES_SETTING = "index.allocation.max_retries"
REPLICAS_SETTING = "index.number_of_replicas"
SHARDS_SETTING = "index.number_of_shards"

CLUSTER_DEFAULTS: dict[str, str] = {
    ENABLE_SETTING: "all",
    LOW_WATERMARK_SETTING: "85%",
    HIGH_WATERMARK_SETTING: "90%",
    FLOOD_WATERMARK_SETTING: "95%",
    DISK_ENABLED_SETTING: "true",
    AWARENESS_SETTING: "",
    "cluster.routing.rebalance.enable": "all",
    "cluster.routing.allocation.node_concurrent_recoveries": "2",
}
INDEX_DYNAMIC_SETTINGS = frozenset(
    {
        REPLICAS_SETTING,
        DELAYED_TIMEOUT_SETTING,
        MAX_RETRIES_SETTING,
        INDEX_ENABLE_SETTING,
    }
)
ENABLE_VALUES = ("all", "primaries", "new_primaries", "none")

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


class SimApiError(Exception):
    """An error the real server would answer with ``{"error": {...}, "status": N}``."""

    def __init__(self, status: int, error_type: str, reason: str, **extra: Any) -> None:
        super().__init__(f"{error_type}: {reason}")
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.extra = extra

    def body(self) -> JsonDict:
        cause: JsonDict = {"type": self.error_type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


def illegal_argument(reason: str) -> SimApiError:
    return SimApiError(400, "illegal_argument_exception", reason)


def index_not_found(name: str) -> SimApiError:
    return SimApiError(
        404,
        "index_not_found_exception",
        f"no such index [{name}]",
        **{"resource.type": "index_or_alias", "resource.id": name, "index": name},
    )


# ---------------------------------------------------------------- state ---


class Doc(BaseModel):
    seq_no: int
    version: int = 1
    source: JsonDict = Field(default_factory=dict)


class StoreCopy(BaseModel):
    """Shard data on one node's disk; survives the node being down."""

    allocation_id: str
    docs: dict[str, Doc] = Field(default_factory=dict)
    max_seq_no: int = -1

    def size_in_bytes(self) -> int:
        # A rough on-disk size so that cat shards shows something plausible.
        return 225 + 180 * len(self.docs)


class UnassignedInfo(BaseModel):
    reason: str
    at: float
    details: str | None = None
    failed_attempts: int = 0
    failed_nodes: list[str] = Field(default_factory=list)
    last_allocation_status: str = "no_attempt"


class ShardRouting(BaseModel):
    primary: bool
    state: Literal["STARTED", "UNASSIGNED"] = "UNASSIGNED"
    node_id: str | None = None
    allocation_id: str | None = None
    unassigned: UnassignedInfo | None = None


class ShardGroup(BaseModel):
    """One shard id of an index: its routing entries, in-sync set and on-disk copies."""

    index: str
    shard: int
    routings: list[ShardRouting]
    in_sync: list[str] = Field(default_factory=list)
    stores: dict[str, StoreCopy] = Field(default_factory=dict)
    primary_term: int = 1
    pending_recovery_failures: int = 0

    def primary(self) -> ShardRouting:
        return next(r for r in self.routings if r.primary)

    def started(self) -> list[ShardRouting]:
        return [r for r in self.routings if r.state == STARTED]

    def unassigned(self) -> list[ShardRouting]:
        return [r for r in self.routings if r.state == UNASSIGNED]

    def primary_store(self) -> StoreCopy | None:
        primary = self.primary()
        if primary.state != STARTED or primary.node_id is None:
            return None
        return self.stores.get(primary.node_id)

    def routed_nodes(self) -> set[str]:
        return {r.node_id for r in self.routings if r.node_id is not None}


class IndexMeta(BaseModel):
    name: str
    uuid: str
    created: float
    number_of_shards: int
    number_of_replicas: int
    settings: dict[str, str] = Field(default_factory=dict)
    shards: list[ShardGroup] = Field(default_factory=list)

    def setting(self, key: str, default: str) -> str:
        return self.settings.get(key, default)


class SimNode(BaseModel):
    name: str
    id: str
    roles: list[str]
    attributes: dict[str, str] = Field(default_factory=dict)
    disk_used_percent: float = 40.0
    ip: str = "127.0.0.1"
    transport_port: int = 9300
    alive: bool = True

    @property
    def transport_address(self) -> str:
        return f"{self.ip}:{self.transport_port}"

    def is_data(self) -> bool:
        return any(role == "data" or role.startswith("data_") for role in self.roles)

    def is_master_eligible(self) -> bool:
        return "master" in self.roles


class ClusterState(BaseModel):
    cluster_name: str
    cluster_uuid: str
    version: str = DEFAULT_VERSION
    state_version: int = 1
    id_counter: int = 0
    nodes: list[SimNode] = Field(default_factory=list)
    indices: dict[str, IndexMeta] = Field(default_factory=dict)
    persistent: dict[str, str] = Field(default_factory=dict)
    transient: dict[str, str] = Field(default_factory=dict)


# -------------------------------------------------------------- helpers ---


def iso_time(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_TIME_UNITS = (
    ("nanos", 1e-9),
    ("micros", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86400.0),
)


def parse_time_value(value: str, setting: str) -> float:
    """Seconds from an Elasticsearch time value ("1m", "500ms", "0", "-1")."""
    text = value.strip().lower()
    if text in ("0", "-1"):
        return 0.0 if text == "0" else -1.0
    for unit, factor in sorted(_TIME_UNITS, key=lambda pair: -len(pair[0])):
        if text.endswith(unit):
            number = text[: -len(unit)]
            try:
                return float(number) * factor
            except ValueError:
                break
    raise illegal_argument(
        f"failed to parse setting [{setting}] with value [{value}] as a time value: unit is missing or unrecognized"
    )


def human_time(seconds: float) -> str:
    """Render like Elasticsearch's TimeValue.toString ("59.8s", "1m", "250ms")."""
    millis = seconds * 1000
    if millis < 1000:
        return f"{int(millis)}ms"
    for unit, factor in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= factor:
            amount = round(seconds / factor, 1)
            return f"{amount:g}{unit}"
    return f"{seconds:g}s"


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("b", "kb", "mb", "gb"):
        if value < 1024 or unit == "gb":
            return f"{int(value)}{unit}" if unit == "b" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{size}b"


def parse_watermark(value: str, setting: str) -> float:
    """Used-disk percentage from "85%" or a ratio "0.85"."""
    text = value.strip()
    try:
        if text.endswith("%"):
            return float(text[:-1])
        ratio = float(text)
    except ValueError:
        raise illegal_argument(
            f"failed to parse setting [{setting}] with value [{value}]: the simulator supports only percentage or ratio watermarks"
        ) from None
    return ratio * 100 if ratio <= 1 else ratio


def setting_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(setting_string(item) for item in value)
    return str(value)


def flatten_settings(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Accept nested or dotted setting documents; null values are kept (they mean remove)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_settings(value, f"{full}."))
        else:
            flat[full] = value
    return flat


def nest_settings(flat: Mapping[str, str]) -> JsonDict:
    tree: JsonDict = {}
    for key in sorted(flat):
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                # A value and a subtree share a prefix: keep the rest flat under it.
                node = {}
                break
            node = child
        node[parts[-1]] = flat[key]
    return tree


def shard_for_doc(doc_id: str, number_of_shards: int) -> int:
    # Stable across runs (Python's hash() is salted); the real murmur3 routing is not needed.
    return zlib.crc32(doc_id.encode()) % number_of_shards


def matches_any(value: str, patterns: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p.strip()) for p in patterns.split(",") if p.strip())


# ------------------------------------------------------------- deciders ---


@dataclass(frozen=True)
class Decision:
    decider: str
    decision: Literal["YES", "NO", "THROTTLE"]
    explanation: str

    @property
    def allows(self) -> bool:
        return self.decision == "YES"

    def as_json(self) -> JsonDict:
        return {
            "decider": self.decider,
            "decision": self.decision,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class AllocationAttempt:
    """What the deciders are asked about: one copy of a shard going to one node."""

    index: IndexMeta
    group: ShardGroup
    routing: ShardRouting
    node: SimNode
    manual: bool = False
    existing_primary: bool = False


def describe_routing(group: ShardGroup, routing: ShardRouting) -> str:
    role = "[P]" if routing.primary else "[R]"
    if routing.state == STARTED:
        return f"[{group.index}][{group.shard}], node[{routing.node_id}], {role}, s[STARTED], a[id={routing.allocation_id}], failed_attempts[0]"
    info = routing.unassigned
    detail = f", unassigned_info[{describe_unassigned(info, False)}]" if info else ""
    return f"[{group.index}][{group.shard}], node[null], {role}, s[UNASSIGNED]{detail}"


def describe_unassigned(info: UnassignedInfo, delayed: bool) -> str:
    parts = [f"[reason={info.reason}]", f"at[{iso_time(info.at)}]"]
    if info.failed_attempts:
        parts.append(f"failed_attempts[{info.failed_attempts}]")
    if info.failed_nodes:
        parts.append(f"failed_nodes[[{', '.join(info.failed_nodes)}]]")
    parts.append(f"delayed={'true' if delayed else 'false'}")
    if info.details:
        parts.append(f"details[{info.details}]")
    status = {"no": "deciders_no", "no_valid_shard_copy": "no_valid_shard_copy"}.get(
        info.last_allocation_status, info.last_allocation_status
    )
    parts.append(f"allocation_status[{status}]")
    return ", ".join(parts)


def decide_same_shard(attempt: AllocationAttempt) -> Decision:
    for other in attempt.group.routings:
        if other is not attempt.routing and other.node_id == attempt.node.id:
            return Decision(
                "same_shard",
                "NO",
                f"a copy of this shard is already allocated to this node [{describe_routing(attempt.group, other)}]",
            )
    return Decision("same_shard", "YES", "this node does not hold a copy of this shard")


def decide_replica_after_primary_active(attempt: AllocationAttempt) -> Decision:
    if attempt.routing.primary:
        return Decision(
            "replica_after_primary_active",
            "YES",
            "shard is primary and can be allocated",
        )
    if attempt.group.primary().state != STARTED:
        return Decision(
            "replica_after_primary_active",
            "NO",
            "primary shard for this replica is not yet active",
        )
    return Decision(
        "replica_after_primary_active",
        "YES",
        "primary shard for this replica is already active",
    )


def decide_enable(attempt: AllocationAttempt, cluster_value: str) -> Decision:
    if attempt.manual:
        return Decision(
            "enable",
            "YES",
            "explicitly ignoring any disabling of allocation due to manual allocation commands via the reroute API",
        )
    index_value = attempt.index.settings.get(INDEX_ENABLE_SETTING)
    value = index_value if index_value is not None else cluster_value
    source = (
        f"index setting [{INDEX_ENABLE_SETTING}={value}]"
        if index_value is not None
        else f"cluster setting [{ENABLE_SETTING}={value}]"
    )
    primary = attempt.routing.primary
    if value == "all":
        return Decision("enable", "YES", "all allocations are allowed")
    if value == "none":
        return Decision("enable", "NO", f"no allocations are allowed due to {source}")
    if value == "primaries":
        if primary:
            return Decision("enable", "YES", "primary allocations are allowed")
        return Decision("enable", "NO", f"replica allocations are forbidden due to {source}")
    if primary and not attempt.existing_primary:
        return Decision("enable", "YES", "new primary allocations are allowed")
    return Decision("enable", "NO", f"non-new primary allocations are forbidden due to {source}")


def decide_max_retry(attempt: AllocationAttempt) -> Decision:
    info = attempt.routing.unassigned
    failures = info.failed_attempts if info else 0
    if failures == 0 or info is None:
        return Decision("max_retry", "YES", "shard has no previous failures")
    max_retries = int(attempt.index.setting(MAX_RETRIES_SETTING, str(DEFAULT_MAX_RETRIES)))
    if failures >= max_retries:
        return Decision(
            "max_retry",
            "NO",
            f"shard has exceeded the maximum number of retries [{max_retries}] on failed allocation attempts - "
            f"manually call [/_cluster/reroute?retry_failed=true] to retry, [unassigned_info[{describe_unassigned(info, False)}]]",
        )
    return Decision(
        "max_retry",
        "YES",
        f"shard has failed allocating [{failures}] times but [{max_retries}] retries are allowed",
    )


def decide_disk_threshold(attempt: AllocationAttempt, settings: Callable[[str], str]) -> Decision:
    if settings(DISK_ENABLED_SETTING) == "false":
        return Decision("disk_threshold", "YES", "the disk threshold decider is disabled")
    used = attempt.node.disk_used_percent
    high_raw, low_raw = (
        settings(HIGH_WATERMARK_SETTING),
        settings(LOW_WATERMARK_SETTING),
    )
    high = parse_watermark(high_raw, HIGH_WATERMARK_SETTING)
    low = parse_watermark(low_raw, LOW_WATERMARK_SETTING)
    free = f"{100 - used:g}%"
    if used >= high:
        return Decision(
            "disk_threshold",
            "NO",
            f"the node is above the high watermark cluster setting [{HIGH_WATERMARK_SETTING}={high_raw}], using more "
            f"disk space than the maximum allowed [{high:g}%], actual free: [{free}]",
        )
    new_primary = attempt.routing.primary and not attempt.existing_primary
    if used >= low and not new_primary:
        return Decision(
            "disk_threshold",
            "NO",
            f"the node is above the low watermark cluster setting [{LOW_WATERMARK_SETTING}={low_raw}], using more "
            f"disk space than the maximum allowed [{low:g}%], actual free: [{free}]",
        )
    return Decision("disk_threshold", "YES", f"enough disk for shard on node, free: [{free}]")


def decide_filter(attempt: AllocationAttempt, excludes: Mapping[str, str]) -> Decision:
    node = attempt.node
    values = {"_name": node.name, "_id": node.id, "_ip": node.ip, "_host": node.ip}
    for key, patterns in excludes.items():
        attribute = key[len(EXCLUDE_PREFIX) :]
        value = values.get(attribute, node.attributes.get(attribute))
        if patterns and value is not None and matches_any(value, patterns):
            return Decision(
                "filter",
                "NO",
                f'node matches cluster setting [cluster.routing.allocation.exclude] filters [{attribute}:"{patterns}"]',
            )
    return Decision("filter", "YES", "node passes include/exclude/require filters")


def decide_awareness(
    attempt: AllocationAttempt,
    attribute: str,
    zone_values: set[str],
    zone_of: Callable[[str], str | None],
) -> Decision:
    if not attribute:
        return Decision(
            "awareness",
            "YES",
            "allocation awareness is not enabled, set cluster setting [cluster.routing.allocation.awareness.attributes] to enable it",
        )
    zone = attempt.node.attributes.get(attribute)
    if zone is None:
        return Decision(
            "awareness",
            "NO",
            f"node does not contain the awareness attribute [{attribute}]; required attributes cluster setting [{AWARENESS_SETTING}={attribute}]",
        )
    copies = len(attempt.group.routings)
    limit = math.ceil(copies / max(len(zone_values), 1))
    in_zone = 1 + sum(
        1 for r in attempt.group.routings if r is not attempt.routing and r.node_id is not None and zone_of(r.node_id) == zone
    )
    if in_zone > limit:
        return Decision(
            "awareness",
            "NO",
            f"there are [{copies}] copies of this shard and [{len(zone_values)}] values for attribute [{attribute}] "
            f"({sorted(zone_values)} from nodes in the cluster and no forced awareness) so there may be at most "
            f"[{limit}] copies of this shard allocated to nodes with each value, but (including this copy) there "
            f"would be [{in_zone}] copies allocated to nodes with [node.attr.{attribute}: {zone}]",
        )
    return Decision("awareness", "YES", "node meets all awareness attribute requirements")


# -------------------------------------------------------------- cluster ---


@dataclass(frozen=True)
class RerouteOutcome:
    """What a reroute call produced: the response document and whether it changed anything."""

    body: JsonDict
    changed: bool


class EsCluster:
    """A simulated Elasticsearch cluster. Not thread-safe: serve it behind one lock."""

    def __init__(
        self,
        cluster_name: str = "drengine-sim",
        *,
        clock: Clock = time.time,
        version: str = DEFAULT_VERSION,
        state: ClusterState | None = None,
    ) -> None:
        self.clock = clock
        self.state = state or ClusterState(cluster_name=cluster_name, cluster_uuid="", version=version)
        if not self.state.cluster_uuid:
            self.state.cluster_uuid = self._new_id()
        self._load: dict[str, int] = {}
        self._unassigned_keys: set[tuple[str, int]] = set()
        self._rebuild_indexes()

    # ---- persistence

    def to_json(self) -> JsonDict:
        return self.state.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, clock: Clock = time.time) -> EsCluster:
        return cls(clock=clock, state=ClusterState.model_validate(data))

    def clone(self) -> EsCluster:
        return EsCluster(clock=self.clock, state=self.state.model_copy(deep=True))

    def _rebuild_indexes(self) -> None:
        self._load = {node.id: 0 for node in self.state.nodes}
        self._unassigned_keys = set()
        for group in self.groups():
            for routing in group.routings:
                if routing.node_id is not None:
                    self._load[routing.node_id] = self._load.get(routing.node_id, 0) + 1
                else:
                    self._unassigned_keys.add((group.index, group.shard))

    def _new_id(self) -> str:
        self.state.id_counter += 1
        digest = hashlib.sha1(f"{self.state.cluster_name}:{self.state.id_counter}".encode()).digest()
        return base64.urlsafe_b64encode(digest).decode()[:22]

    def _changed(self) -> None:
        self.state.state_version += 1

    # ---- lookups

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
                "no master node is elected: a majority of master-eligible nodes is down",
            )

    def delay_seconds(self, meta: IndexMeta) -> float:
        raw = meta.setting(DELAYED_TIMEOUT_SETTING, DEFAULT_DELAYED_TIMEOUT)
        return max(parse_time_value(raw, DELAYED_TIMEOUT_SETTING), 0.0)

    def remaining_delay(self, meta: IndexMeta, routing: ShardRouting) -> float:
        info = routing.unassigned
        if routing.primary or info is None or info.reason != "NODE_LEFT":
            return 0.0
        return max(info.at + self.delay_seconds(meta) - self.clock(), 0.0)

    def is_delayed(self, meta: IndexMeta, routing: ShardRouting) -> bool:
        return routing.state == UNASSIGNED and self.remaining_delay(meta, routing) > 0

    # ---- building

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
        now = self.clock()
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

    # ---- routing mutations

    def _assign(self, group: ShardGroup, routing: ShardRouting, node: SimNode, store: StoreCopy) -> None:
        routing.state = STARTED
        routing.node_id = node.id
        routing.allocation_id = store.allocation_id
        routing.unassigned = None
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
        if routing.node_id is not None:
            self._load[routing.node_id] -= 1
        routing.state = UNASSIGNED
        routing.node_id = None
        routing.allocation_id = None
        routing.unassigned = failed or UnassignedInfo(reason=reason, at=self.clock(), details=details)
        self._unassigned_keys.add((group.index, group.shard))

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

    # ---- the allocator

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
        info = routing.unassigned or UnassignedInfo(reason="ALLOCATION_FAILED", at=self.clock())
        routing.unassigned = UnassignedInfo(
            reason="ALLOCATION_FAILED",
            at=self.clock(),
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

    # ---- reroute commands

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

    # ---- faults

    def kill_node(self, name: str) -> None:
        """The node leaves the cluster; its copies stay on its disk for a later return."""
        node = self.node(name)
        if not node.alive:
            return
        node.alive = False
        for group in self.groups():
            for routing in group.routings:
                if routing.node_id == node.id:
                    self._unassign(group, routing, "NODE_LEFT", f"node_left [{node.id}]")
                    if routing.primary:
                        self._promote_replica(group, routing)
        self._changed()
        self.allocate()

    def return_node(self, name: str) -> None:
        """The node rejoins with whatever copies it held; in-sync ones are reused."""
        node = self.node(name)
        if node.alive:
            return
        node.alive = True
        self._changed()
        self.allocate()

    def disk_full(self, name: str, used_percent: float = 97.0) -> None:
        self.node(name).disk_used_percent = used_percent
        self._changed()

    def disable_allocation(self, mode: str = "none") -> None:
        self.put_cluster_settings(persistent={ENABLE_SETTING: mode})

    def fail_recoveries(self, index: str, shard: int, times: int) -> None:
        """The next ``times`` recoveries of this shard fail, as a corrupt or unreadable copy would."""
        self.shard_group(index, shard).pending_recovery_failures = times

    # ---- documents

    def index_doc(self, index: str, doc_id: str, source: Mapping[str, Any]) -> tuple[int, JsonDict]:
        """Index into the primary and every started replica; absent in-sync copies become stale."""
        self.require_master()
        if index not in self.state.indices:
            self.create_index(index)
        meta = self.index(index)
        group = meta.shards[shard_for_doc(doc_id, meta.number_of_shards)]
        primary = group.primary_store()
        if primary is None:
            raise SimApiError(
                503,
                "unavailable_shards_exception",
                f"[{index}][{group.shard}] primary shard is not active Timeout: [1m], request: [index {{[{index}][{doc_id}]}}]",
            )
        seq_no = primary.max_seq_no + 1
        existing = primary.docs.get(doc_id)
        doc = Doc(
            seq_no=seq_no,
            version=existing.version + 1 if existing else 1,
            source=dict(source),
        )
        started = group.started()
        for routing in started:
            assert routing.node_id is not None
            store = group.stores[routing.node_id]
            store.docs[doc_id] = doc
            store.max_seq_no = seq_no
        live_ids = {r.allocation_id for r in started}
        group.in_sync = [a for a in group.in_sync if a in live_ids]
        self._changed()
        body = {
            "_index": index,
            "_id": doc_id,
            "_version": doc.version,
            "result": "updated" if existing else "created",
            "_shards": {
                "total": len(group.routings),
                "successful": len(started),
                "failed": 0,
            },
            "_seq_no": seq_no,
            "_primary_term": group.primary_term,
        }
        return (200 if existing else 201), body

    def get_doc(self, index: str, doc_id: str) -> tuple[int, JsonDict]:
        meta = self.index(index)
        group = meta.shards[shard_for_doc(doc_id, meta.number_of_shards)]
        primary = group.primary_store()
        if primary is None:
            raise SimApiError(
                503,
                "no_shard_available_action_exception",
                f"No shard available for [get [{index}][{doc_id}]]",
            )
        doc = primary.docs.get(doc_id)
        if doc is None:
            return 404, {"_index": index, "_id": doc_id, "found": False}
        return 200, {
            "_index": index,
            "_id": doc_id,
            "_version": doc.version,
            "_seq_no": doc.seq_no,
            "_primary_term": group.primary_term,
            "found": True,
            "_source": doc.source,
        }

    def count(self, index: str | None = None) -> JsonDict:
        metas = self.resolve_indices(index)
        total = successful = documents = 0
        for meta in metas:
            for group in meta.shards:
                total += 1
                store = group.primary_store()
                if store is not None:
                    successful += 1
                    documents += len(store.docs)
        if total and not successful:
            raise SimApiError(
                503,
                "search_phase_execution_exception",
                "all shards failed",
                phase="query",
                grouped=True,
                failed_shards=[],
            )
        return {
            "count": documents,
            "_shards": {
                "total": total,
                "successful": successful,
                "skipped": 0,
                "failed": total - successful,
            },
        }

    # ---- health

    def health(self, index: str | None = None, level: str = "cluster") -> JsonDict:
        self.require_master()
        metas = self.resolve_indices(index)
        totals = {
            "active_primary_shards": 0,
            "active_shards": 0,
            "unassigned_shards": 0,
            "delayed_unassigned_shards": 0,
        }
        per_index: JsonDict = {}
        worst = "green"
        for meta in metas:
            stats = self._index_health(meta, level == "shards")
            for key in totals:
                totals[key] += stats[key]
            per_index[meta.name] = stats
            worst = _worse(worst, stats["status"])
        all_shards = totals["active_shards"] + totals["unassigned_shards"]
        body: JsonDict = {
            "cluster_name": self.state.cluster_name,
            "status": worst,
            "timed_out": False,
            "number_of_nodes": len(self.live_nodes()),
            "number_of_data_nodes": len(self.live_data_nodes()),
            "active_primary_shards": totals["active_primary_shards"],
            "active_shards": totals["active_shards"],
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": totals["unassigned_shards"],
            "unassigned_primary_shards": sum(s["unassigned_primary_shards"] for s in per_index.values()),
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

    def _index_health(self, meta: IndexMeta, with_shards: bool) -> JsonDict:
        status = "green"
        active_primaries = active = unassigned = unassigned_primaries = delayed = 0
        shards: JsonDict = {}
        for group in meta.shards:
            group_status = "green"
            group_active = group_unassigned = 0
            for routing in group.routings:
                if routing.state == STARTED:
                    group_active += 1
                    active_primaries += routing.primary
                else:
                    group_unassigned += 1
                    unassigned_primaries += routing.primary
                    delayed += self.is_delayed(meta, routing)
                    group_status = _worse(group_status, "red" if routing.primary else "yellow")
            active += group_active
            unassigned += group_unassigned
            status = _worse(status, group_status)
            if with_shards:
                shards[str(group.shard)] = {
                    "status": group_status,
                    "primary_active": group.primary().state == STARTED,
                    "active_shards": group_active,
                    "relocating_shards": 0,
                    "initializing_shards": 0,
                    "unassigned_shards": group_unassigned,
                    "unassigned_primary_shards": int(group.primary().state != STARTED),
                }
        stats: JsonDict = {
            "status": status,
            "number_of_shards": meta.number_of_shards,
            "number_of_replicas": meta.number_of_replicas,
            "active_primary_shards": active_primaries,
            "active_shards": active,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": unassigned,
            "unassigned_primary_shards": unassigned_primaries,
            "delayed_unassigned_shards": delayed,
        }
        if with_shards:
            stats["shards"] = shards
        return stats

    # ---- cat APIs

    def cat_shards(self, index: str | None = None) -> list[dict[str, str | None]]:
        rows: list[dict[str, str | None]] = []
        for meta in sorted(self.resolve_indices(index), key=lambda m: m.name):
            for group in meta.shards:
                for routing in sorted(group.routings, key=lambda r: not r.primary):
                    rows.append(self._cat_shard_row(meta, group, routing))
        return rows

    def _cat_shard_row(self, meta: IndexMeta, group: ShardGroup, routing: ShardRouting) -> dict[str, str | None]:
        store = group.stores.get(routing.node_id) if routing.node_id else None
        node = self.node_by_id(routing.node_id) if routing.node_id else None
        info = routing.unassigned
        return {
            "index": meta.name,
            "shard": str(group.shard),
            "prirep": "p" if routing.primary else "r",
            "state": routing.state,
            "docs": str(len(store.docs)) if store else None,
            "store": human_bytes(store.size_in_bytes()) if store else None,
            "dataset": human_bytes(store.size_in_bytes()) if store else None,
            "ip": node.ip if node else None,
            "id": node.id if node else None,
            "node": node.name if node else None,
            "unassigned.reason": info.reason if info else None,
            "unassigned.at": iso_time(info.at) if info else None,
            "unassigned.details": info.details if info else None,
            "sync_id": None,
        }

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
            document["unassigned_info"] = self._unassigned_document(self.index(group.index), routing)
        return document

    # ---- settings

    def _cluster_settings_flat(self) -> dict[str, str]:
        return {**self.state.persistent, **self.state.transient}

    def get_cluster_settings(self, *, include_defaults: bool = False, flat: bool = False) -> JsonDict:
        shape = (lambda d: dict(sorted(d.items()))) if flat else nest_settings
        body: JsonDict = {
            "persistent": shape(self.state.persistent),
            "transient": shape(self.state.transient),
        }
        if include_defaults:
            defaults = {k: v for k, v in CLUSTER_DEFAULTS.items() if k not in self._cluster_settings_flat()}
            body["defaults"] = shape(defaults)
        return body

    def put_cluster_settings(
        self,
        persistent: Mapping[str, Any] | None = None,
        transient: Mapping[str, Any] | None = None,
    ) -> JsonDict:
        self.require_master()
        updates = {
            "persistent": flatten_settings(persistent or {}),
            "transient": flatten_settings(transient or {}),
        }
        for scope, values in updates.items():
            for key, value in values.items():
                self._check_cluster_setting(scope, key, value)
        applied: dict[str, dict[str, str]] = {"persistent": {}, "transient": {}}
        for scope, values in updates.items():
            target = self.state.persistent if scope == "persistent" else self.state.transient
            for key, value in values.items():
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = applied[scope][key] = setting_string(value)
        self._changed()
        self.allocate()
        return {
            "acknowledged": True,
            "persistent": nest_settings(applied["persistent"]),
            "transient": nest_settings(applied["transient"]),
        }

    @staticmethod
    def _check_cluster_setting(scope: str, key: str, value: Any) -> None:
        if key not in CLUSTER_DEFAULTS and not key.startswith(EXCLUDE_PREFIX):
            raise illegal_argument(f"{scope} setting [{key}], not recognized")
        if value is None:
            return
        text = setting_string(value)
        if key == ENABLE_SETTING and text.lower() not in ENABLE_VALUES:
            raise illegal_argument(f"Illegal allocation.enable value [{text.upper()}]")
        if key in (
            LOW_WATERMARK_SETTING,
            HIGH_WATERMARK_SETTING,
            FLOOD_WATERMARK_SETTING,
        ):
            parse_watermark(text, key)

    def get_index_settings(self, target: str | None = None, *, flat: bool = False) -> JsonDict:
        body: JsonDict = {}
        for meta in self.resolve_indices(target):
            settings = {
                SHARDS_SETTING: str(meta.number_of_shards),
                REPLICAS_SETTING: str(meta.number_of_replicas),
                "index.uuid": meta.uuid,
                "index.provided_name": meta.name,
                "index.creation_date": str(int(meta.created * 1000)),
                "index.version.created": "9009000",
                "index.routing.allocation.include._tier_preference": "data_content",
                **meta.settings,
            }
            body[meta.name] = {"settings": dict(sorted(settings.items())) if flat else nest_settings(settings)}
        return body

    def put_index_settings(self, target: str | None, document: Mapping[str, Any]) -> JsonDict:
        self.require_master()
        metas = self.resolve_indices(target)
        values = self._index_settings_doc(document)
        for key, value in values.items():
            self._check_index_setting(key, creating=False)
            if key == DELAYED_TIMEOUT_SETTING and value is not None:
                parse_time_value(setting_string(value), key)
            if key == REPLICAS_SETTING and value is not None and (not str(value).isdigit()):
                raise illegal_argument(f"Failed to parse value [{value}] for setting [{key}] must be >= 0")
        for meta in metas:
            for key, value in values.items():
                if key == REPLICAS_SETTING:
                    self._set_replicas(meta, 1 if value is None else int(value))
                elif value is None:
                    meta.settings.pop(key, None)
                else:
                    meta.settings[key] = setting_string(value)
        self._changed()
        self.allocate()
        return {"acknowledged": True}

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

    def _set_replicas(self, meta: IndexMeta, replicas: int) -> None:
        now = self.clock()
        for group in meta.shards:
            current = [r for r in group.routings if not r.primary]
            if replicas > len(current):
                for _ in range(replicas - len(current)):
                    group.routings.append(self._unassigned_routing(False, "REPLICA_ADDED", now))
                self._unassigned_keys.add((meta.name, group.shard))
            # Drop unassigned copies first so that lowering replicas never discards live data needlessly.
            surplus = sorted(current, key=lambda r: r.state == STARTED)[: max(len(current) - replicas, 0)]
            for routing in surplus:
                if routing.node_id is not None:
                    self._load[routing.node_id] -= 1
                group.routings.remove(routing)
        meta.number_of_replicas = replicas

    # ---- allocation explain

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

    def _unassigned_document(self, meta: IndexMeta, routing: ShardRouting) -> JsonDict:
        info = routing.unassigned
        assert info is not None
        document: JsonDict = {"reason": info.reason, "at": iso_time(info.at)}
        if info.failed_attempts:
            document["failed_allocation_attempts"] = info.failed_attempts
        if self.is_delayed(meta, routing):
            document["delayed"] = True
        if info.details:
            document["details"] = info.details
        document["last_allocation_status"] = info.last_allocation_status
        return document

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


class _CommandRefused(Exception):
    def __init__(self, reason: str, decisions: list[Decision]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decisions = decisions


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


# ------------------------------------------------------------ scenarios ---


def _cluster(node_count: int, clock: Clock, *, name: str = "drengine-sim", prefix: str = "node-") -> EsCluster:
    cluster = EsCluster(name, clock=clock)
    for number in range(1, node_count + 1):
        cluster.add_node(f"{prefix}{number}", attributes={"zone": f"zone-{(number - 1) % 3 + 1}"})
    return cluster


def _write_docs(cluster: EsCluster, index: str, count: int, start: int = 1) -> None:
    for number in range(start, start + count):
        cluster.index_doc(index, f"doc-{number}", {"n": number, "message": f"event {number}"})


def scenario_one_node_lost(clock: Clock = time.time) -> EsCluster:
    """3 nodes, every index has a replica, node-3 is lost: yellow, replicas delayed (1m)."""
    cluster = _cluster(3, clock)
    for name, shards in (("orders", 3), ("customers", 2), ("logs-2024.06", 1)):
        cluster.create_index(name, number_of_shards=shards, number_of_replicas=1)
        _write_docs(cluster, name, 12)
    cluster.kill_node("node-3")
    return cluster


def scenario_healthy(clock: Clock = time.time) -> EsCluster:
    """3 nodes, every index has a replica, green: the starting point of drills."""
    cluster = _cluster(3, clock)
    for name, shards in (("orders", 3), ("customers", 2), ("logs-2024.06", 1)):
        cluster.create_index(name, number_of_shards=shards, number_of_replicas=1)
        _write_docs(cluster, name, 12)
    return cluster


def scenario_red_stale_copy(clock: Clock = time.time) -> EsCluster:
    """`orders` lost its only in-sync copy with node-1; node-2 holds a stale copy missing the newest docs."""
    cluster = _cluster(3, clock)
    cluster.create_index("customers", number_of_shards=2, number_of_replicas=1)
    _write_docs(cluster, "customers", 10)
    cluster.create_index("orders", number_of_shards=1, number_of_replicas=1)
    group = cluster.shard_group("orders", 0)
    primary_node = cluster.node_by_id(group.primary().node_id or "")
    replica_node = cluster.node_by_id(next(r.node_id for r in group.routings if not r.primary) or "")
    _write_docs(cluster, "orders", 5)
    # Replicas were held back for maintenance; the replica's node dropped out and
    # missed writes 6-8 while away, so its copy is stale when it comes back.
    cluster.disable_allocation("primaries")
    cluster.kill_node(replica_node.name)
    _write_docs(cluster, "orders", 3, start=6)
    cluster.return_node(replica_node.name)
    cluster.kill_node(primary_node.name)
    cluster.put_cluster_settings(persistent={ENABLE_SETTING: None})
    return cluster


def scenario_red_no_copy(clock: Clock = time.time) -> EsCluster:
    """`sessions` had no replicas and its primary lived on node-3, which is gone: red, no copy anywhere."""
    cluster = _cluster(3, clock)
    cluster.create_index("orders", number_of_shards=2, number_of_replicas=1)
    _write_docs(cluster, "orders", 6)
    cluster.create_index("sessions", number_of_shards=1, number_of_replicas=0)
    holder = cluster.node_by_id(cluster.shard_group("sessions", 0).primary().node_id or "")
    _write_docs(cluster, "sessions", 4)
    cluster.kill_node(holder.name)
    return cluster


def scenario_allocation_disabled(clock: Clock = time.time) -> EsCluster:
    """Allocation left at `primaries` after maintenance; node-3 lost: replicas stay unassigned."""
    cluster = _cluster(3, clock)
    for name in ("orders", "customers"):
        cluster.create_index(
            name,
            number_of_shards=2,
            number_of_replicas=1,
            settings={DELAYED_TIMEOUT_SETTING: "0"},
        )
        _write_docs(cluster, name, 8)
    cluster.disable_allocation("primaries")
    cluster.kill_node("node-3")
    return cluster


def scenario_node_returns_within_delay(clock: Clock = time.time) -> EsCluster:
    """node-3 restarted (5m delayed timeout): yellow with delayed shards; `return_node("node-3")` heals it."""
    cluster = _cluster(3, clock)
    for name in ("orders", "customers"):
        cluster.create_index(
            name,
            number_of_shards=3,
            number_of_replicas=1,
            settings={DELAYED_TIMEOUT_SETTING: "5m"},
        )
        _write_docs(cluster, name, 9)
    cluster.kill_node("node-3")
    return cluster


def scenario_retries_exhausted(clock: Clock = time.time) -> EsCluster:
    """A replica of `orders` failed recovery 5 times (max_retries): needs `reroute?retry_failed=true`."""
    cluster = _cluster(3, clock)
    cluster.create_index(
        "orders",
        number_of_shards=1,
        number_of_replicas=1,
        settings={DELAYED_TIMEOUT_SETTING: "0"},
    )
    _write_docs(cluster, "orders", 5)
    cluster.fail_recoveries("orders", 0, DEFAULT_MAX_RETRIES)
    group = cluster.shard_group("orders", 0)
    replica_holder = next(r.node_id for r in group.routings if not r.primary)
    cluster.kill_node(cluster.node_by_id(replica_holder or "").name)
    return cluster


def big(
    n_indices: int = 500,
    shards_per_index: int = 4,
    nodes: int = 5,
    lose: int = 1,
    *,
    replicas: int = 1,
    clock: Clock = time.time,
) -> EsCluster:
    """A large cluster for benchmarks: every index with replicas, ``lose`` nodes gone."""
    cluster = _cluster(nodes, clock)
    for number in range(n_indices):
        cluster.create_index(
            f"index-{number:04d}",
            number_of_shards=shards_per_index,
            number_of_replicas=replicas,
            allocate=False,
        )
    cluster.allocate()
    for number in range(nodes - lose + 1, nodes + 1):
        cluster.kill_node(f"node-{number}")
    return cluster


SCENARIOS: dict[str, Callable[..., EsCluster]] = {
    "healthy-3": scenario_healthy,
    "one-node-lost-3": scenario_one_node_lost,
    "red-stale-copy": scenario_red_stale_copy,
    "red-no-copy": scenario_red_no_copy,
    "allocation-disabled": scenario_allocation_disabled,
    "node-returns-within-delay": scenario_node_returns_within_delay,
    "retries-exhausted": scenario_retries_exhausted,
    "big": big,
}


def build_scenario(name: str, clock: Clock = time.time) -> EsCluster:
    factory = SCENARIOS.get(name)
    if factory is None:
        raise KeyError(f"unknown Elasticsearch scenario [{name}]; known: {', '.join(sorted(SCENARIOS))}")
    return factory(clock=clock)

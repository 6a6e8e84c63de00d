"""The simulated Elasticsearch cluster's state (nodes, indices, shard copies, in-sync
allocation ids, documents) as pydantic models, the errors the REST layer renders as
Elasticsearch error bodies, the setting names and defaults, and small value helpers (time
values, byte sizes, settings documents)."""

from __future__ import annotations

import fnmatch
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

JsonDict = dict[str, Any]

STARTED: Literal["STARTED"] = "STARTED"
UNASSIGNED: Literal["UNASSIGNED"] = "UNASSIGNED"
INITIALIZING: Literal["INITIALIZING"] = "INITIALIZING"
RoutingState = Literal["STARTED", "UNASSIGNED", "INITIALIZING"]

DEFAULT_VERSION = "9.1.0"
# RecoverySource.ExistingStoreRecoverySource.FORCED_ALLOCATION_ID: the in-sync set of a shard whose
# stale primary was forced, until that primary starts (IndexMetadataUpdater.updateInSyncAllocations).
FORCED_ALLOCATION_ID = "_forced_allocation_"
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

CONCURRENT_RECOVERIES_SETTING = "cluster.routing.allocation.node_concurrent_recoveries"
INCOMING_RECOVERIES_SETTING = "cluster.routing.allocation.node_concurrent_incoming_recoveries"
OUTGOING_RECOVERIES_SETTING = "cluster.routing.allocation.node_concurrent_outgoing_recoveries"
INITIAL_PRIMARIES_SETTING = "cluster.routing.allocation.node_initial_primaries_recoveries"
MAX_BYTES_PER_SEC_SETTING = "indices.recovery.max_bytes_per_sec"
# A copy recovered from the node's own disk is read far faster than one streamed over the
# network under indices.recovery.max_bytes_per_sec (the simulator's choice of rate).
LOCAL_STORE_BYTES_PER_SEC = 500 * 1024 * 1024
RECOVERY_OVERHEAD_SECONDS = 0.2  # init, verify, translog and finalize stages

CLUSTER_DEFAULTS: dict[str, str] = {
    ENABLE_SETTING: "all",
    LOW_WATERMARK_SETTING: "85%",
    HIGH_WATERMARK_SETTING: "90%",
    FLOOD_WATERMARK_SETTING: "95%",
    DISK_ENABLED_SETTING: "true",
    AWARENESS_SETTING: "",
    "cluster.routing.rebalance.enable": "all",
    # Recovery throttling (ThrottlingAllocationDecider, RecoverySettings; documented defaults:
    # https://www.elastic.co/guide/en/elasticsearch/reference/current/modules-cluster.html#cluster-shard-allocation-settings
    # and .../recovery.html). node_concurrent_recoveries sets both the incoming and the outgoing limit.
    CONCURRENT_RECOVERIES_SETTING: "2",
    INCOMING_RECOVERIES_SETTING: "2",
    OUTGOING_RECOVERIES_SETTING: "2",
    INITIAL_PRIMARIES_SETTING: "4",
    MAX_BYTES_PER_SEC_SETTING: "40mb",
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

class SimApiError(Exception):
    """An error the real server would answer with ``{"error": {...}, "status": N}``."""

    def __init__(self, status: int, error_type: str, reason: str | None, **extra: Any) -> None:
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
    # The size a scenario gives the copy (a realistic shard: gigabytes); else from the documents.
    bytes: int | None = None
    # The store cannot be opened (a corrupt file): the exception Elasticsearch reports for it, as
    # (type, reason). Such a copy is never allocated by itself and fails a forced recovery.
    unreadable: tuple[str, str] | None = None

    def size_in_bytes(self) -> int:
        if self.bytes is not None:
            return self.bytes
        # A rough on-disk size so that cat shards shows something plausible.
        return 225 + 180 * len(self.docs)


# AllocationDecision values (explain) -> UnassignedInfo.AllocationStatus values (cluster state).
ALLOCATION_STATUS_VALUES = {
    "no": "deciders_no",
    "throttled": "deciders_throttled",
    "no_valid_shard_copy": "no_valid_shard_copy",
    "awaiting_info": "fetching_shard_data",
    "allocation_delayed": "delayed_allocation",
    "no_attempt": "no_attempt",
}


class UnassignedInfo(BaseModel):
    reason: str
    at: float
    details: str | None = None
    failed_attempts: int = 0
    failed_nodes: list[str] = Field(default_factory=list)
    last_allocation_status: str = "no_attempt"


class Recovery(BaseModel):
    """A copy being recovered onto its node: from the primary over the network (peer), from
    the node's own disk (existing_store), or as a new empty shard (empty_store)."""

    type: Literal["peer", "existing_store", "empty_store"]
    allocation_id: str  # the id the copy has once started
    started_at: float
    bytes_total: int = 0
    bytes_recovered: float = 0.0
    files_total: int = 0
    source_node: str | None = None  # node id of the primary (peer recoveries)
    forced: bool = False  # allocate_stale_primary / allocate_empty_primary
    done_at: float | None = None

    def stage(self) -> str:
        if self.done_at is not None:
            return "done"
        return "index" if self.bytes_recovered < self.bytes_total else "finalize"


class ShardRouting(BaseModel):
    primary: bool
    state: RoutingState = "UNASSIGNED"
    node_id: str | None = None
    allocation_id: str | None = None
    # Kept while the copy initializes, as Elasticsearch keeps it (cluster health reads it).
    unassigned: UnassignedInfo | None = None
    recovery: Recovery | None = None  # while INITIALIZING
    last_recovery: Recovery | None = None  # the recovery that started it (for _cat/recovery)


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

    def initializing(self) -> list[ShardRouting]:
        return [r for r in self.routings if r.state == INITIALIZING]

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
    hung_since: float | None = None  # stopped answering (SIGSTOP, a frozen VM) at this time

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
    # Model time is the clock plus `skew` (`settle()` fast-forwards a scenario's past);
    # `recoveries_at` is the model time up to which recoveries have progressed.
    skew: float = 0.0
    recoveries_at: float | None = None
    # The latest model time a request saw: a process whose clock is behind it (another run, another
    # speed) moves `skew` so that model time never runs backwards.
    seen_at: float | None = None


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


def parse_bytes(value: str, setting: str) -> float:
    """Bytes from an Elasticsearch byte size value ("40mb", "1gb", "512kb", "100b")."""
    text = value.strip().lower()
    for unit, factor in (("pb", 1024.0**5), ("tb", 1024.0**4), ("gb", 1024.0**3), ("mb", 1024.0**2), ("kb", 1024.0),
                         ("b", 1.0)):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * factor
            except ValueError:
                break
    raise illegal_argument(f"failed to parse setting [{setting}] with value [{value}] as a size in bytes: unit is "
                           f"missing or unrecognized")


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



"""What was observed of an Elasticsearch cluster, as facts (`EsView` and its parts),
parsed from the response shapes Elasticsearch documents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from drengine.steps import Fact, fact

if TYPE_CHECKING:
    pass

from drengine.datastores.elasticsearch.calls import (
    DEFAULT_DELAY,
    DELAY_SETTING,
    ENABLE_SETTING,
    NODE_LEFT_RE,
    REPLICAS_SETTING,
)

# -- facts: what was observed ---------------------------------------------------------------------


@fact
class Health(Fact):
    cluster_name: str = ""
    status: str
    timed_out: bool = False
    number_of_nodes: int = 0
    number_of_data_nodes: int = 0
    active_primary_shards: int = 0
    active_shards: int = 0
    relocating_shards: int = 0
    initializing_shards: int = 0
    unassigned_shards: int = 0
    delayed_unassigned_shards: int = 0
    active_shards_percent: float = 0.0

    def line(self) -> str:
        return (f"health {self.status}: {self.number_of_nodes} node(s) ({self.number_of_data_nodes} data), "
                f"{self.active_shards} active shard copies ({self.active_shards_percent:.1f}%), "
                + (f"{self.initializing_shards} recovering, " if self.initializing_shards else "")
                + f"{self.unassigned_shards} unassigned ({self.delayed_unassigned_shards} delayed)")


@fact
class EsNode(Fact):
    id: str
    name: str
    roles: list[str] = []

    @property
    def is_data(self) -> bool:
        return any(r == "data" or r.startswith("data_") for r in self.roles)


@fact
class ShardCopy(Fact):
    """One row of _cat/shards."""

    index: str
    shard: int
    primary: bool
    state: str
    node: str | None = None
    docs: int | None = None
    reason: str | None = None
    details: str | None = None

    @property
    def label(self) -> str:
        return f"{self.index}[{self.shard}] {'primary' if self.primary else 'replica'}"

    @property
    def left_node_id(self) -> str | None:
        found = NODE_LEFT_RE.search(self.details or "")
        return found.group(1) if found else None


@fact
class DeciderVerdict(Fact):
    decider: str
    decision: str
    explanation: str = ""


@fact
class StoreInfo(Fact):
    found: bool
    in_sync: bool | None = None
    allocation_id: str | None = None
    size_bytes: int | None = None
    exception: str | None = None


@fact
class NodeDecision(Fact):
    node_id: str
    node_name: str
    decision: str
    store: StoreInfo | None = None
    deciders: list[DeciderVerdict] = []


@fact
class Explanation(Fact):
    """The answer of _cluster/allocation/explain for one unassigned shard copy."""

    index: str
    shard: int
    primary: bool
    can_allocate: str
    allocate_explanation: str = ""
    reason: str = ""
    details: str = ""
    failed_attempts: int = 0
    delayed: bool = False
    remaining_delay: str = ""
    remaining_delay_ms: int = 0
    configured_delay: str = ""
    nodes: list[NodeDecision] = []

    @property
    def key(self) -> tuple[str, int, bool]:
        return (self.index, self.shard, self.primary)


@fact
class IndexInfo(Fact):
    name: str
    number_of_replicas: int
    delayed_timeout: str = DEFAULT_DELAY
    delayed_timeout_set: bool = False  # set on the index (not Elasticsearch's default)


@fact
class AllocationEnable(Fact):
    value: str = "all"
    scope: Literal["persistent", "transient", "default"] = "default"


@fact
class EsView(Fact):
    """An immutable snapshot of the cluster: health, nodes, every shard copy, index settings
    the runbook cares about, and (once explained) why each unassigned copy is unassigned."""

    cluster: str
    url: str
    health: Health
    nodes: list[EsNode] = []
    shards: list[ShardCopy] = []
    indices: list[IndexInfo] = []
    allocation_enable: AllocationEnable = AllocationEnable()
    inventory_members: list[str] = []
    explanations: list[Explanation] = []
    observed_at: float = 0.0

    @property
    def unassigned(self) -> list[ShardCopy]:
        return [s for s in self.shards if s.state == "UNASSIGNED"]

    def index(self, name: str) -> IndexInfo | None:
        return next((i for i in self.indices if i.name == name), None)

    def explanation(self, index: str, shard: int, primary: bool) -> Explanation | None:
        return next((e for e in self.explanations if e.key == (index, shard, primary)), None)

    def data_nodes(self) -> list[EsNode]:
        return [n for n in self.nodes if n.is_data]


# -- parsing the documented response shapes -----------------------------------------------------


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_health(body: Mapping[str, Any]) -> Health:
    return Health(
        cluster_name=str(body.get("cluster_name", "")),
        status=str(body.get("status", "red")),
        timed_out=bool(body.get("timed_out", False)),
        number_of_nodes=int(body.get("number_of_nodes", 0)),
        number_of_data_nodes=int(body.get("number_of_data_nodes", 0)),
        active_primary_shards=int(body.get("active_primary_shards", 0)),
        active_shards=int(body.get("active_shards", 0)),
        relocating_shards=int(body.get("relocating_shards", 0)),
        initializing_shards=int(body.get("initializing_shards", 0)),
        unassigned_shards=int(body.get("unassigned_shards", 0)),
        delayed_unassigned_shards=int(body.get("delayed_unassigned_shards", 0)),
        active_shards_percent=float(body.get("active_shards_percent_as_number", 0.0)),
    )


def parse_nodes(body: Mapping[str, Any]) -> list[EsNode]:
    nodes = body.get("nodes") or {}
    return sorted((EsNode(id=str(node_id), name=str(info.get("name", node_id)), roles=list(info.get("roles", [])))
                   for node_id, info in nodes.items()), key=lambda n: n.name)


def parse_cat_shards(rows: Sequence[Mapping[str, Any]]) -> list[ShardCopy]:
    # _cat values are strings (or null); documented columns only.
    return [
        ShardCopy(
            index=str(r["index"]), shard=int(r["shard"]), primary=r.get("prirep") == "p",
            state=str(r.get("state", "")), node=r.get("node") or None, docs=_int(r.get("docs")),
            reason=r.get("unassigned.reason") or None, details=r.get("unassigned.details") or None,
        )
        for r in rows
    ]


@fact
class RecoveryProgress(Fact):
    """The recoveries in flight (one _cat/recovery?active_only=true), summed."""

    count: int = 0
    bytes_recovered: int = 0
    bytes_total: int = 0
    stages: dict[str, int] = {}
    targets: list[str] = []

    def line(self) -> str:
        if not self.count:
            return "no recovery in flight"
        percent = 100.0 * self.bytes_recovered / self.bytes_total if self.bytes_total else 100.0
        stages = ", ".join(f"{n} {stage}" for stage, n in sorted(self.stages.items()))
        return (f"{self.count} recover{'y' if self.count == 1 else 'ies'} in flight ({stages}): "
                f"{_gib(self.bytes_recovered)} of {_gib(self.bytes_total)} copied ({percent:.1f}%), "
                f"onto {', '.join(self.targets)}")


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB" if size >= 1024**3 else f"{size / 1024**2:.1f} MiB"


def parse_recoveries(rows: Sequence[Mapping[str, Any]]) -> RecoveryProgress:
    stages: dict[str, int] = {}
    for r in rows:
        stages[str(r.get("stage", "?"))] = stages.get(str(r.get("stage", "?")), 0) + 1
    return RecoveryProgress(
        count=len(rows), bytes_recovered=sum(_int(r.get("bytes_recovered")) or 0 for r in rows),
        bytes_total=sum(_int(r.get("bytes_total")) or 0 for r in rows), stages=stages,
        targets=sorted({str(r["target_node"]) for r in rows if r.get("target_node")}),
    )


def parse_cluster_settings(body: Mapping[str, Any]) -> AllocationEnable:
    scopes: tuple[Literal["transient"], Literal["persistent"]] = ("transient", "persistent")
    for scope in scopes:  # transient wins over persistent
        value = _flat(body.get(scope) or {}).get(ENABLE_SETTING)
        if value is not None:
            return AllocationEnable(value=str(value), scope=scope)
    return AllocationEnable()


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def parse_index_settings(body: Mapping[str, Any]) -> list[IndexInfo]:
    out = []
    for name, doc in sorted(body.items()):
        own = _flat(doc.get("settings") or {})
        defaults = _flat(doc.get("defaults") or {})
        delay = own.get(DELAY_SETTING)
        out.append(IndexInfo(
            name=str(name),
            number_of_replicas=int(own.get(REPLICAS_SETTING, defaults.get(REPLICAS_SETTING, 1))),
            delayed_timeout=str(delay if delay is not None else defaults.get(DELAY_SETTING, DEFAULT_DELAY)),
            delayed_timeout_set=delay is not None,
        ))
    return out


def _millis_text(value: Any) -> str:
    """A duration in milliseconds as Elasticsearch's TimeValue prints it ("4.9m", "30s", "250ms")."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    seconds = float(value) / 1000.0
    if seconds < 1:
        return f"{int(value)}ms"
    for unit, factor in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= factor:
            return f"{round(seconds / factor, 1):g}{unit}"
    return f"{seconds:g}s"


def parse_explanation(body: Mapping[str, Any]) -> Explanation:
    info = body.get("unassigned_info") or {}
    nodes = []
    for row in body.get("node_allocation_decisions") or []:
        store_doc = row.get("store")
        store = None
        if isinstance(store_doc, Mapping):
            # ShardStoreInfo.toXContent: `found: false` when the node has nothing; a primary's copy
            # shows `in_sync` and `allocation_id`, a replica's `matching_size_in_bytes`.
            store = StoreInfo(
                found=store_doc.get("found") is not False and any(
                    key in store_doc for key in ("allocation_id", "in_sync", "matching_size_in_bytes", "store_exception")),
                in_sync=store_doc.get("in_sync"), allocation_id=store_doc.get("allocation_id"),
                size_bytes=_int(store_doc.get("matching_size_in_bytes")),
                exception=(str(store_doc["store_exception"]) if store_doc.get("store_exception") else None),
            )
        nodes.append(NodeDecision(
            node_id=str(row.get("node_id", "")), node_name=str(row.get("node_name", row.get("node_id", ""))),
            decision=str(row.get("node_decision", "")), store=store,
            deciders=[DeciderVerdict(decider=str(d.get("decider", "")), decision=str(d.get("decision", "")),
                                     explanation=str(d.get("explanation", ""))) for d in row.get("deciders") or []],
        ))
    return Explanation(
        index=str(body.get("index", "")), shard=int(body.get("shard", 0)), primary=bool(body.get("primary", False)),
        can_allocate=str(body.get("can_allocate", "")), allocate_explanation=str(body.get("allocate_explanation", "")),
        reason=str(info.get("reason", "")), details=str(info.get("details", "")),
        failed_attempts=int(info.get("failed_allocation_attempts", 0)), delayed=str(body.get("can_allocate", "")) == "allocation_delayed",
        # The strings are there only with ?human=true: rendered from the millis otherwise.
        remaining_delay=str(body.get("remaining_delay") or _millis_text(body.get("remaining_delay_in_millis"))),
        remaining_delay_ms=int(body.get("remaining_delay_in_millis", 0)),
        configured_delay=str(body.get("configured_delay") or _millis_text(body.get("configured_delay_in_millis"))),
        nodes=nodes,
    )


def build_view(cluster: str, url: str, *, health: Mapping[str, Any], nodes: Mapping[str, Any],
               shards: Sequence[Mapping[str, Any]], cluster_settings: Mapping[str, Any],
               index_settings: Mapping[str, Any], members: Sequence[str] = (),
               explanations: Sequence[Mapping[str, Any]] = (), observed_at: float = 0.0) -> EsView:
    """The view from raw response bodies: used by the connector and by tests that build views
    straight from the simulator's model, with no network."""
    return EsView(
        cluster=cluster, url=url, health=parse_health(health), nodes=parse_nodes(nodes),
        shards=parse_cat_shards(shards), indices=parse_index_settings(index_settings),
        allocation_enable=parse_cluster_settings(cluster_settings), inventory_members=list(members),
        explanations=[parse_explanation(e) for e in explanations], observed_at=observed_at,
    )



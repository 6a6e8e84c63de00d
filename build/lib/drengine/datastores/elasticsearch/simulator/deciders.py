"""The allocation deciders the simulator applies, in Elasticsearch's order, with the
explanations Elasticsearch gives (max_retry, replica_after_primary_active, enable, filter,
same_shard, disk_threshold, awareness)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from drengine.datastores.elasticsearch.simulator.model import (
    ALLOCATION_STATUS_VALUES,
    AWARENESS_SETTING,
    DEFAULT_MAX_RETRIES,
    DISK_ENABLED_SETTING,
    ENABLE_SETTING,
    EXCLUDE_PREFIX,
    HIGH_WATERMARK_SETTING,
    INDEX_ENABLE_SETTING,
    LOW_WATERMARK_SETTING,
    MAX_RETRIES_SETTING,
    STARTED,
    UNASSIGNED,
    IndexMeta,
    JsonDict,
    ShardGroup,
    ShardRouting,
    SimNode,
    UnassignedInfo,
    iso_time,
    matches_any,
    parse_watermark,
)

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
    if routing.state != UNASSIGNED:
        return (f"[{group.index}][{group.shard}], node[{routing.node_id}], {role}, s[{routing.state}], "
                f"a[id={routing.allocation_id}], failed_attempts[0]")
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
    status = ALLOCATION_STATUS_VALUES.get(info.last_allocation_status, info.last_allocation_status)
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
            # MaxRetryAllocationDecider (8.x wording, as in the specification's ClusterAllocationExplainResponseExample2).
            f"manually call [POST /_cluster/reroute?retry_failed] to retry, [unassigned_info[{describe_unassigned(info, False)}]]",
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




@dataclass(frozen=True)
class RecoveryLoad:
    """Recoveries in flight on the nodes an allocation concerns, and the limits (settings)."""

    incoming: int  # on the target node
    outgoing: int  # on the node holding the primary (peer recoveries)
    initial_primaries: int  # primaries recovering from a store on the target node
    incoming_limit: int
    outgoing_limit: int
    primaries_limit: int
    source_name: str = ""


def decide_throttling(attempt: AllocationAttempt, load: RecoveryLoad) -> Decision:
    """ThrottlingAllocationDecider: an allocation waits (THROTTLE) while the nodes it needs have
    as many recoveries in flight as the cluster settings allow."""
    if attempt.routing.primary:
        if load.initial_primaries >= load.primaries_limit:
            return Decision("throttling", "THROTTLE",
                            f"reached the limit of ongoing initial primary recoveries [{load.initial_primaries}], cluster "
                            f"setting [cluster.routing.allocation.node_initial_primaries_recoveries={load.primaries_limit}]")
        return Decision("throttling", "YES", f"below primary recovery limit of [{load.primaries_limit}]")
    if load.incoming >= load.incoming_limit:
        return Decision("throttling", "THROTTLE",
                        f"reached the limit of incoming shard recoveries [{load.incoming}], cluster setting "
                        f"[cluster.routing.allocation.node_concurrent_incoming_recoveries={load.incoming_limit}] (can also "
                        f"be set via [cluster.routing.allocation.node_concurrent_recoveries])")
    if load.outgoing >= load.outgoing_limit:
        return Decision("throttling", "THROTTLE",
                        f"reached the limit of outgoing shard recoveries [{load.outgoing}] on the node [{load.source_name}] "
                        f"which holds the primary, cluster setting "
                        f"[cluster.routing.allocation.node_concurrent_outgoing_recoveries={load.outgoing_limit}] (can also "
                        f"be set via [cluster.routing.allocation.node_concurrent_recoveries])")
    return Decision("throttling", "YES", f"below shard recovery limit of outgoing: [{load.outgoing} < "
                                         f"{load.outgoing_limit}] incoming: [{load.incoming} < {load.incoming_limit}]")

"""Named situations of the simulated cluster (the inventories' `scenario:`), and `big` for benchmarks."""

from __future__ import annotations

from collections.abc import Callable

from drengine.clock import SYSTEM, Clock
from drengine.datastores.elasticsearch.simulator.cluster import EsCluster
from drengine.datastores.elasticsearch.simulator.model import (
    DEFAULT_MAX_RETRIES,
    DELAYED_TIMEOUT_SETTING,
    ENABLE_SETTING,
)


def _cluster(node_count: int, clock: Clock, *, name: str = "drengine-sim", prefix: str = "node-") -> EsCluster:
    """A cluster being built: copies start at once (the healthy past of the scenario), until
    `_ready` hands it over with recoveries that take their time."""
    cluster = EsCluster(name, clock=clock)
    cluster._instant = True
    for number in range(1, node_count + 1):
        cluster.add_node(f"{prefix}{number}", attributes={"zone": f"zone-{(number - 1) % 3 + 1}"})
    return cluster


def _ready(cluster: EsCluster) -> EsCluster:
    cluster._instant = False
    return cluster


def _sized(cluster: EsCluster, index: str, size: int) -> None:
    """Give every copy of an index a realistic on-disk size (peer recoveries copy it)."""
    for group in cluster.index(index).shards:
        for store in group.stores.values():
            store.bytes = size


def _write_docs(cluster: EsCluster, index: str, count: int, start: int = 1) -> None:
    for number in range(start, start + count):
        cluster.index_doc(index, f"doc-{number}", {"n": number, "message": f"event {number}"})


def scenario_one_node_lost(clock: Clock = SYSTEM) -> EsCluster:
    """3 nodes, every index has a replica, node-3 is lost: yellow, replicas delayed (1m)."""
    cluster = _cluster(3, clock)
    for name, shards in (("orders", 3), ("customers", 2), ("logs-2024.06", 1)):
        cluster.create_index(name, number_of_shards=shards, number_of_replicas=1)
        _write_docs(cluster, name, 12)
    cluster.kill_node("node-3")
    return _ready(cluster)


def scenario_healthy(clock: Clock = SYSTEM) -> EsCluster:
    """3 nodes, every index has a replica, green: the starting point of drills."""
    cluster = _cluster(3, clock)
    for name, shards in (("orders", 3), ("customers", 2), ("logs-2024.06", 1)):
        cluster.create_index(name, number_of_shards=shards, number_of_replicas=1)
        _write_docs(cluster, name, 12)
    return _ready(cluster)


def scenario_red_stale_copy(clock: Clock = SYSTEM) -> EsCluster:
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
    return _ready(cluster)


def scenario_red_no_copy(clock: Clock = SYSTEM) -> EsCluster:
    """`sessions` had no replicas and its primary lived on node-3, which is gone: red, no copy anywhere."""
    cluster = _cluster(3, clock)
    cluster.create_index("orders", number_of_shards=2, number_of_replicas=1)
    _write_docs(cluster, "orders", 6)
    cluster.create_index("sessions", number_of_shards=1, number_of_replicas=0)
    holder = cluster.node_by_id(cluster.shard_group("sessions", 0).primary().node_id or "")
    _write_docs(cluster, "sessions", 4)
    cluster.kill_node(holder.name)
    return _ready(cluster)


def scenario_allocation_disabled(clock: Clock = SYSTEM) -> EsCluster:
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
    return _ready(cluster)


def scenario_node_returns_within_delay(clock: Clock = SYSTEM) -> EsCluster:
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
    return _ready(cluster)


def scenario_retries_exhausted(clock: Clock = SYSTEM) -> EsCluster:
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
    return _ready(cluster)


def big(
    n_indices: int = 500,
    shards_per_index: int = 4,
    nodes: int = 5,
    lose: int = 1,
    *,
    replicas: int = 1,
    shard_bytes: int | None = None,
    clock: Clock = SYSTEM,
) -> EsCluster:
    """A large cluster for benchmarks: every index with replicas, ``lose`` nodes gone; with
    `shard_bytes`, every copy that size, so that rebuilding the lost replicas takes real time."""
    cluster = _cluster(nodes, clock)
    for number in range(n_indices):
        cluster.create_index(
            f"index-{number:04d}",
            number_of_shards=shards_per_index,
            number_of_replicas=replicas,
            allocate=False,
        )
    cluster.allocate()
    if shard_bytes is not None:
        for name in cluster.state.indices:
            _sized(cluster, name, shard_bytes)
    _ready(cluster)
    for number in range(nodes - lose + 1, nodes + 1):
        cluster.kill_node(f"node-{number}")
    return cluster


def scenario_two_stale_copies(clock: Clock = SYSTEM) -> EsCluster:
    """`orders` (two replicas) lost its in-sync primary with node-1; node-2 and node-3 both hold a
    stale copy, node-3's staler (it left first). Elasticsearch shows both as `in_sync: false` with
    their allocation ids and nothing else: it does not say which is fresher. Five nodes, so that
    a master stays elected while two are away."""
    cluster = _cluster(5, clock)
    cluster.create_index("customers", number_of_shards=1, number_of_replicas=1)
    _write_docs(cluster, "customers", 4)
    cluster.create_index("orders", number_of_shards=1, number_of_replicas=2)
    group = cluster.shard_group("orders", 0)
    holders = {r.primary: r.node_id for r in group.routings}
    primary_node = cluster.node_by_id(holders[True] or "")
    replicas = [cluster.node_by_id(r.node_id or "") for r in group.routings if not r.primary]
    _write_docs(cluster, "orders", 5)
    cluster.disable_allocation("primaries")
    cluster.kill_node(replicas[1].name)  # leaves first: misses orders 6-10
    _write_docs(cluster, "orders", 3, start=6)
    cluster.kill_node(replicas[0].name)  # misses orders 9-10
    _write_docs(cluster, "orders", 2, start=9)
    cluster.return_node(replicas[0].name)
    cluster.return_node(replicas[1].name)
    cluster.kill_node(primary_node.name)
    cluster.put_cluster_settings(persistent={ENABLE_SETTING: None})
    return _ready(cluster)


def scenario_recoveries_in_flight(clock: Clock = SYSTEM) -> EsCluster:
    """Allocation was left at `primaries` after maintenance when node-3 was lost for good
    (delayed_timeout 0); every shard is 2 GiB. Re-enabling allocation starts recoveries that take
    minutes under indices.recovery.max_bytes_per_sec and node_concurrent_recoveries."""
    cluster = _cluster(3, clock)
    for name in ("orders", "customers", "events"):
        cluster.create_index(name, number_of_shards=2, number_of_replicas=1, settings={DELAYED_TIMEOUT_SETTING: "0"})
        _write_docs(cluster, name, 6)
        _sized(cluster, name, 2 * 1024**3)
    cluster.disable_allocation("primaries")
    _ready(cluster)
    cluster.kill_node("node-3")
    return cluster


SCENARIOS: dict[str, Callable[..., EsCluster]] = {
    "healthy-3": scenario_healthy,
    "one-node-lost-3": scenario_one_node_lost,
    "red-stale-copy": scenario_red_stale_copy,
    "red-no-copy": scenario_red_no_copy,
    "allocation-disabled": scenario_allocation_disabled,
    "node-returns-within-delay": scenario_node_returns_within_delay,
    "retries-exhausted": scenario_retries_exhausted,
    "two-stale-copies": scenario_two_stale_copies,
    "recoveries-in-flight": scenario_recoveries_in_flight,
    "big": big,
}


def build_scenario(name: str, clock: Clock = SYSTEM) -> EsCluster:
    factory = SCENARIOS.get(name)
    if factory is None:
        raise KeyError(f"unknown Elasticsearch scenario [{name}]; known: {', '.join(sorted(SCENARIOS))}")
    return factory(clock=clock)

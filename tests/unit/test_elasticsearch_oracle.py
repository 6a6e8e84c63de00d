"""The Elasticsearch explorer's oracle (datastores/elasticsearch/oracle.py): what any recovery of a
red shard could at best bring back, read from the simulator's own copies, and how a forced
primary compares with it."""

from __future__ import annotations

from drengine.clock import SimulatedClock
from drengine.datastores.elasticsearch.explore import CORRUPT, named_copies
from drengine.datastores.elasticsearch.oracle import recovery_possible, red_shards
from drengine.datastores.elasticsearch.simulator import EsCluster, build_scenario
from drengine.explore.kit import Ledger


def two_stale() -> EsCluster:
    # orders[0]: the in-sync copy left with its node; two stale copies, one missing more writes.
    return build_scenario("two-stale-copies", clock=SimulatedClock())


def test_the_fullest_stale_copy_is_the_best_and_the_other_is_worse() -> None:
    copies = red_shards(two_stale())[("orders", 0)]
    assert len(copies.stale) == 2 and not copies.in_sync_here and copies.in_sync_away
    fullest = max(copies.stale, key=lambda pair: pair[1])[0]
    other = min(copies.stale, key=lambda pair: pair[1])[0]
    assert copies.judge("stale", fullest) is None
    worse = copies.judge("stale", other)
    assert worse is not None and worse[0] == "elasticsearch.stale-copy-not-the-fullest"
    empty = copies.judge("empty", "node-5")
    assert empty is not None and empty[0] == "elasticsearch.empty-over-a-stale-copy"


def test_an_unreadable_copy_is_no_candidate() -> None:
    cluster = two_stale()
    copies = red_shards(cluster)[("orders", 0)]
    fullest = max(copies.stale, key=lambda pair: pair[1])[0]
    group = cluster.shard_group("orders", 0)
    group.stores[cluster.node(fullest).id].unreadable = CORRUPT
    copies = red_shards(cluster)[("orders", 0)]
    assert fullest in copies.unreadable and len(copies.stale) == 1
    assert copies.judge("stale", copies.stale[0][0]) is None
    worse = copies.judge("stale", fullest)
    assert worse is not None and "unreadable" in worse[1]
    # The simulator shows it as Elasticsearch does: in_sync false, with its store_exception.
    rows = cluster.explain("orders", 0, True)["node_allocation_decisions"]
    shown = next(r["store"] for r in rows if r["node_name"] == fullest)
    assert shown["in_sync"] is False and shown["store_exception"]["type"] == "corrupt_index_exception"


def test_a_forced_primary_over_an_in_sync_copy_in_the_cluster_is_worse() -> None:
    cluster = build_scenario("red-stale-copy", clock=SimulatedClock())
    lost = next(n.name for n in cluster.state.nodes if not n.alive)
    cluster.disable_allocation("none")
    cluster.return_node(lost)  # back, but allocation disabled: still red, its in-sync copy there
    copies = red_shards(cluster)[("orders", 0)]
    assert copies.in_sync_here == (lost,)
    worse = copies.judge("stale", copies.stale[0][0])
    assert worse is not None and worse[0] == "elasticsearch.forced-over-an-in-sync-copy"


def test_liveness_is_demanded_only_where_no_choice_is_left_to_the_operator() -> None:
    assert recovery_possible(build_scenario("red-stale-copy", clock=SimulatedClock())) is not None
    assert recovery_possible(build_scenario("allocation-disabled", clock=SimulatedClock())) is not None
    assert recovery_possible(two_stale()) is None  # which stale copy: only the operator can say


def test_the_operators_named_copy_is_read_from_the_input() -> None:
    ledger = Ledger(inputs={"stale_copy": "orders[0]=node-3, logs[1]=node-2"})
    assert named_copies(ledger) == {"orders[0]": "node-3", "logs[1]": "node-2"}
    assert named_copies(Ledger(inputs={"stale_copy": "node-4"})) == {"": "node-4"}

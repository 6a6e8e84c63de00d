"""The simulated Elasticsearch cluster model: deciders, delays, promotion, data loss."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drengine.clock import SimulatedClock
from drengine.datastores.elasticsearch.simulator import SCENARIOS, EsCluster, SimApiError, big, build_scenario
from drengine.datastores.elasticsearch.simulator.explain import ALL_COPIES_INVALID, ALL_NODES_FORBIDDEN, NO_COPIES
from drengine.datastores.elasticsearch.simulator.model import shard_for_doc

pytestmark = pytest.mark.sim

@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


def three_nodes(clock: SimulatedClock, **index_settings: str) -> EsCluster:
    cluster = EsCluster(clock=clock)
    for number in (1, 2, 3):
        cluster.add_node(f"node-{number}")
    cluster.create_index("orders", number_of_shards=2, number_of_replicas=1, settings=index_settings or None)
    cluster.settle()
    return cluster


def node_of(cluster: EsCluster, index: str, shard: int, primary: bool) -> str:
    group = cluster.shard_group(index, shard)
    routing = next(r for r in group.routings if r.primary == primary and r.node_id)
    return cluster.node_by_id(routing.node_id or "").name


def unassigned_replica(cluster: EsCluster) -> tuple[str, int]:
    return next(
        (g.index, g.shard) for g in cluster.groups() if any(not r.primary and r.state == "UNASSIGNED" for r in g.routings)
    )


def deciders_of(explain: dict[str, object], node: str) -> dict[str, str]:
    decisions = explain["node_allocation_decisions"]
    assert isinstance(decisions, list)
    row = next(d for d in decisions if d["node_name"] == node)
    return {d["decider"]: d["explanation"] for d in row.get("deciders", [])}


# ---- scenarios ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, status",
    [
        ("one-node-lost-3", "yellow"),
        ("red-stale-copy", "red"),
        ("red-no-copy", "red"),
        ("allocation-disabled", "yellow"),
        ("node-returns-within-delay", "yellow"),
        ("retries-exhausted", "yellow"),
    ],
)
def test_every_named_scenario_starts_degraded(name: str, status: str, clock: SimulatedClock) -> None:
    cluster = build_scenario(name, clock)
    health = cluster.health()
    assert health["status"] == status
    assert health["unassigned_shards"] > 0
    assert name in SCENARIOS


def test_one_node_lost_is_yellow_with_delayed_replicas_until_the_timeout(clock: SimulatedClock) -> None:
    cluster = build_scenario("one-node-lost-3", clock)
    health = cluster.health()
    assert (health["number_of_nodes"], health["status"]) == (2, "yellow")
    assert health["delayed_unassigned_shards"] == health["unassigned_shards"] == 4
    explain = cluster.explain()
    assert explain["can_allocate"] == "allocation_delayed"
    assert explain["configured_delay_in_millis"] == 60_000
    assert explain["remaining_delay_in_millis"] == 60_000
    assert explain["unassigned_info"]["reason"] == "NODE_LEFT"
    assert "delayed" not in explain["unassigned_info"]  # only the cluster state's routing table has it
    assert "configured_delay" not in explain and "remaining_delay" not in explain  # ?human=true only
    human = cluster.explain(human=True)
    assert (human["configured_delay"], human["remaining_delay"]) == ("1m", "1m")
    assert "[1m]" in explain["allocate_explanation"]

    clock.advance(30)
    cluster.settle()
    assert cluster.explain()["remaining_delay_in_millis"] == 30_000
    clock.advance(31)
    cluster.settle()
    cluster.allocate()
    cluster.settle()
    assert cluster.health()["status"] == "green"


def test_delayed_timeout_zero_allocates_at_once(clock: SimulatedClock) -> None:
    cluster = build_scenario("one-node-lost-3", clock)
    cluster.put_index_settings("_all", {"index": {"unassigned": {"node_left": {"delayed_timeout": "0"}}}})
    cluster.settle()
    assert cluster.health()["status"] == "green"


def test_node_returning_within_the_delay_brings_its_copies_back(clock: SimulatedClock) -> None:
    cluster = build_scenario("node-returns-within-delay", clock)
    lost = cluster.node("node-3")
    held = {(g.index, g.shard): g.stores[lost.id].allocation_id for g in cluster.groups() if lost.id in g.stores}
    clock.advance(120)  # well within the 5m delay
    cluster.settle()
    cluster.allocate()
    cluster.settle()
    assert cluster.health()["delayed_unassigned_shards"] == len(held) > 0
    cluster.return_node("node-3")
    cluster.settle()
    assert cluster.health()["status"] == "green"
    for (index, shard), allocation_id in held.items():
        group = cluster.shard_group(index, shard)
        routing = next(r for r in group.routings if r.node_id == lost.id)
        assert routing.allocation_id == allocation_id
        assert len(group.stores[lost.id].docs) == len(group.primary_store().docs)  # type: ignore[union-attr]


# ---- promotion and data loss -------------------------------------------


def test_losing_a_primary_promotes_an_in_sync_replica(clock: SimulatedClock) -> None:
    cluster = three_nodes(clock)
    for number in range(10):
        cluster.index_doc("orders", f"doc-{number}", {"n": number})
    group = cluster.shard_group("orders", 0)
    holder, term = node_of(cluster, "orders", 0, True), group.primary_term
    survivor = node_of(cluster, "orders", 0, False)
    cluster.kill_node(holder)
    cluster.settle()
    assert node_of(cluster, "orders", 0, True) == survivor
    assert group.primary_term == term + 1
    assert cluster.health()["status"] == "yellow"
    assert cluster.count("orders")["count"] == 10


def test_stale_primary_is_refused_without_accept_data_loss_and_loses_newer_docs(clock: SimulatedClock) -> None:
    cluster = build_scenario("red-stale-copy", clock)
    explain = cluster.explain("orders", 0, True)
    assert explain["can_allocate"] == "no_valid_shard_copy"
    assert explain["allocate_explanation"] == ALL_COPIES_INVALID
    stale = next(d for d in explain["node_allocation_decisions"] if d["store"].get("allocation_id"))
    assert stale["store"]["in_sync"] is False

    command = {"allocate_stale_primary": {"index": "orders", "shard": 0, "node": stale["node_name"]}}
    with pytest.raises(SimApiError) as refused:
        cluster.reroute([command])
    assert refused.value.status == 400
    # AllocateStalePrimaryAllocationCommand warns about "an empty primary": Elasticsearch's own wording.
    assert refused.value.reason == ("[allocate_stale_primary] allocating an empty primary for [orders][0] can result "
                                    "in data loss. Please confirm by setting the accept_data_loss parameter to true")

    command["allocate_stale_primary"]["accept_data_loss"] = True
    assert cluster.reroute([command])["acknowledged"] is True
    assert cluster.health("orders")["status"] == "red"  # an existing-store primary is red while it initializes
    cluster.settle()
    assert cluster.health("orders")["status"] in ("green", "yellow")
    assert cluster.count("orders")["count"] == 5
    assert cluster.get_doc("orders", "doc-7")[0] == 404
    assert cluster.get_doc("orders", "doc-3")[0] == 200


def test_empty_primary_loses_the_whole_shard(clock: SimulatedClock) -> None:
    cluster = build_scenario("red-no-copy", clock)
    explain = cluster.explain("sessions", 0, True)
    assert explain["can_allocate"] == "no_valid_shard_copy"
    assert explain["allocate_explanation"] == NO_COPIES
    assert all(d["store"] == {"found": False} for d in explain["node_allocation_decisions"])
    # Elasticsearch does not look at the target's store: the forced copy initializes, then its
    # recovery fails (nothing to recover from) and the shard stays red with a failed attempt.
    stale = {"allocate_stale_primary": {"index": "sessions", "shard": 0, "node": "node-1", "accept_data_loss": True}}
    assert cluster.reroute([stale], metric="none") == {"acknowledged": True}
    cluster.settle()
    explain = cluster.explain("sessions", 0, True)
    assert explain["unassigned_info"]["reason"] == "ALLOCATION_FAILED"
    assert explain["unassigned_info"]["failed_allocation_attempts"] == 1
    assert "should exist, but doesn't" in explain["unassigned_info"]["details"]
    assert cluster.health("sessions")["status"] == "red"
    cluster.reroute([{"allocate_empty_primary": {"index": "sessions", "shard": 0, "node": "node-1", "accept_data_loss": True}}])
    assert cluster.health("sessions")["status"] == "yellow"  # a new empty primary initializing
    assert cluster.explain("sessions", 0, True)["unassigned_info"]["reason"] == "FORCED_EMPTY_PRIMARY"
    cluster.settle()
    assert cluster.health("sessions")["status"] == "green"
    assert cluster.count("sessions")["count"] == 0


def test_red_shard_recovers_when_the_node_with_its_copy_returns(clock: SimulatedClock) -> None:
    cluster = build_scenario("red-no-copy", clock)
    lost = next(node.name for node in cluster.state.nodes if not node.alive)
    assert cluster.health("sessions")["status"] == "red"
    cluster.return_node(lost)
    cluster.settle()
    assert cluster.health("sessions")["status"] == "green"
    assert cluster.count("sessions")["count"] == 4


def test_writes_while_a_replica_is_away_make_its_copy_stale(clock: SimulatedClock) -> None:
    cluster = three_nodes(clock)
    group = cluster.shard_group("orders", 1)
    replica_node = node_of(cluster, "orders", 1, False)
    away_id = group.stores[cluster.node(replica_node).id].allocation_id
    cluster.kill_node(replica_node)
    cluster.settle()
    assert away_id in group.in_sync  # nothing written yet: still a valid copy
    doc_id = next(f"d{n}" for n in range(100) if shard_for_doc(f"d{n}", 2) == 1)
    cluster.index_doc("orders", doc_id, {})
    assert away_id not in group.in_sync


# ---- deciders -----------------------------------------------------------


def test_enable_decider_blocks_replicas_and_explains_the_setting(clock: SimulatedClock) -> None:
    cluster = build_scenario("allocation-disabled", clock)
    explain = cluster.explain(*unassigned_replica(cluster), False)
    assert explain["can_allocate"] == "no"
    assert explain["allocate_explanation"] == ALL_NODES_FORBIDDEN
    reasons = deciders_of(explain, "node-1")
    assert (
        reasons["enable"]
        == "replica allocations are forbidden due to cluster setting [cluster.routing.allocation.enable=primaries]"
    )
    cluster.put_cluster_settings(persistent={"cluster.routing.allocation.enable": None})
    cluster.settle()
    assert cluster.health()["status"] == "green"


def test_same_shard_decider_names_the_copy_already_there(clock: SimulatedClock) -> None:
    cluster = build_scenario("allocation-disabled", clock)
    index, shard = unassigned_replica(cluster)
    group = cluster.shard_group(index, shard)
    primary_node = node_of(cluster, index, shard, True)
    reasons = deciders_of(cluster.explain(index, shard, False), primary_node)
    assert reasons["same_shard"].startswith(f"a copy of this shard is already allocated to this node [[{index}][{shard}], node[")
    allocation_id = group.primary().allocation_id
    assert allocation_id is not None and allocation_id in reasons["same_shard"]


def test_disk_threshold_decider_refuses_a_node_above_the_high_watermark(clock: SimulatedClock) -> None:
    cluster = build_scenario("allocation-disabled", clock)
    cluster.return_node("node-3")  # its copies stay out: replica allocation is still disabled
    cluster.settle()
    cluster.disk_full("node-3", 96.5)
    index, shard = unassigned_replica(cluster)
    explain = cluster.explain(index, shard, False)
    reason = deciders_of(explain, "node-3")["disk_threshold"]
    assert reason.startswith(
        "the node is above the high watermark cluster setting [cluster.routing.allocation.disk.watermark.high=90%]"
    )
    command = {"allocate_replica": {"index": index, "shard": shard, "node": "node-3"}}
    with pytest.raises(SimApiError, match=r"is not allowed, reason: \[NO\(the node is above the high watermark"):
        cluster.reroute([command])
        cluster.settle()
    explained = cluster.reroute([command], explain=True)
    decisions = explained["explanations"][0]["decisions"]
    assert any(d["decider"] == "disk_threshold" and d["decision"] == "NO" for d in decisions)


def test_max_retry_decider_and_retry_failed(clock: SimulatedClock) -> None:
    cluster = build_scenario("retries-exhausted", clock)
    explain = cluster.explain("orders", 0, False)
    assert explain["unassigned_info"]["reason"] == "ALLOCATION_FAILED"
    assert explain["unassigned_info"]["failed_allocation_attempts"] == 5
    reasons = deciders_of(explain, explain["node_allocation_decisions"][0]["node_name"])
    assert reasons["max_retry"].startswith("shard has exceeded the maximum number of retries [5] on failed allocation attempts")
    cluster.reroute()
    cluster.settle()
    assert cluster.health()["status"] == "yellow"
    cluster.reroute(retry_failed=True)
    cluster.settle()
    assert cluster.health()["status"] == "green"


def test_manual_allocate_replica_ignores_disabled_allocation(clock: SimulatedClock) -> None:
    cluster = build_scenario("allocation-disabled", clock)
    index, shard = unassigned_replica(cluster)
    target = next(n for n in ("node-1", "node-2") if n != node_of(cluster, index, shard, True))
    cluster.reroute([{"allocate_replica": {"index": index, "shard": shard, "node": target}}])
    cluster.settle()
    assert node_of(cluster, index, shard, False) == target


def test_awareness_keeps_copies_in_different_zones(clock: SimulatedClock) -> None:
    cluster = EsCluster(clock=clock)
    for number, zone in ((1, "a"), (2, "a"), (3, "b")):
        cluster.add_node(f"node-{number}", attributes={"zone": zone})
    cluster.put_cluster_settings(persistent={"cluster.routing.allocation.awareness.attributes": "zone"})
    cluster.settle()
    cluster.create_index("orders", number_of_shards=3, number_of_replicas=1)
    cluster.settle()
    for group in cluster.groups():
        zones = {cluster.node_by_id(r.node_id or "").attributes["zone"] for r in group.routings}
        assert zones == {"a", "b"}


def test_dry_run_changes_nothing(clock: SimulatedClock) -> None:
    cluster = build_scenario("red-no-copy", clock)
    before = json.dumps(cluster.to_json(), sort_keys=True)
    result = cluster.reroute(
        [{"allocate_empty_primary": {"index": "sessions", "shard": 0, "node": "node-1", "accept_data_loss": True}}], dry_run=True
    )
    shards = result["state"]["routing_table"]["indices"]["sessions"]["shards"]["0"]
    assert shards[0]["state"] == "INITIALIZING"
    assert json.dumps(cluster.to_json(), sort_keys=True) == before


# ---- settings, replicas, master, persistence ---------------------------------


def test_cluster_settings_null_removes_and_unknown_keys_are_refused(clock: SimulatedClock) -> None:
    cluster = three_nodes(clock)
    cluster.put_cluster_settings(persistent={"cluster": {"routing": {"allocation": {"enable": "none"}}}})
    cluster.settle()
    assert cluster.get_cluster_settings()["persistent"] == {"cluster": {"routing": {"allocation": {"enable": "none"}}}}
    assert cluster.get_cluster_settings(flat=True)["persistent"] == {"cluster.routing.allocation.enable": "none"}
    cluster.put_cluster_settings(persistent={"cluster.routing.allocation.enable": None})
    cluster.settle()
    assert cluster.get_cluster_settings()["persistent"] == {}
    with pytest.raises(SimApiError, match=r"persistent setting \[cluster.routing.alocation.enable\], not recognized"):
        cluster.put_cluster_settings(persistent={"cluster.routing.alocation.enable": "all"})
        cluster.settle()
    with pytest.raises(SimApiError, match="Illegal allocation.enable value"):
        cluster.put_cluster_settings(transient={"cluster.routing.allocation.enable": "sometimes"})
        cluster.settle()


def test_lowering_replicas_goes_green_on_fewer_nodes(clock: SimulatedClock) -> None:
    cluster = three_nodes(clock, **{"index.unassigned.node_left.delayed_timeout": "0"})
    cluster.put_index_settings("orders", {"number_of_replicas": 2})
    cluster.settle()
    cluster.kill_node("node-3")
    cluster.settle()
    assert cluster.health()["status"] == "yellow"
    cluster.put_index_settings("orders", {"index.number_of_replicas": 1})
    cluster.settle()
    assert cluster.health()["status"] == "green"
    assert cluster.get_index_settings("orders")["orders"]["settings"]["index"]["number_of_replicas"] == "1"


def test_no_master_without_a_majority(clock: SimulatedClock) -> None:
    cluster = three_nodes(clock)
    cluster.kill_node("node-1")
    cluster.settle()
    cluster.kill_node("node-2")
    cluster.settle()
    with pytest.raises(SimApiError) as refused:
        cluster.health()
    assert (refused.value.status, refused.value.error_type) == (503, "master_not_discovered_exception")


def test_state_survives_a_json_round_trip(clock: SimulatedClock) -> None:
    cluster = build_scenario("red-stale-copy", clock)
    restored = EsCluster.from_json(json.loads(json.dumps(cluster.to_json())), clock=clock)
    assert restored.health() == cluster.health()
    assert restored.explain("orders", 0, True) == cluster.explain("orders", 0, True)
    assert restored.cat_shards() == cluster.cat_shards()


def test_big_cluster_stays_fast(clock: SimulatedClock) -> None:
    started = time.perf_counter()
    cluster = big(500, 4, 5, 1, clock=clock)
    health = cluster.health()
    assert health["active_primary_shards"] == 2000
    assert health["unassigned_shards"] == health["delayed_unassigned_shards"] > 0
    cluster.put_index_settings("_all", {"index.unassigned.node_left.delayed_timeout": "0"})
    cluster.settle()
    assert cluster.health()["status"] == "green"
    assert len(cluster.cat_shards()) == 4000
    assert time.perf_counter() - started < 8


# ---- invariants under random faults ----------------------------------------

ACTIONS = st.lists(st.tuples(st.sampled_from(["kill", "return", "write", "wait", "replicas"]), st.integers(0, 3)), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_allocation_invariants_hold_under_random_faults(actions: list[tuple[str, int]]) -> None:
    clock = SimulatedClock()
    cluster = EsCluster(clock=clock)
    for number in range(1, 5):
        cluster.add_node(f"node-{number}")
    cluster.create_index("orders", number_of_shards=3, number_of_replicas=1)
    cluster.settle()
    writes = 0
    for action, value in actions:
        name = f"node-{value + 1}"
        try:
            if action == "kill":
                cluster.kill_node(name)
                cluster.settle()
            elif action == "return":
                cluster.return_node(name)
                cluster.settle()
            elif action == "write":
                writes += 1
                cluster.index_doc("orders", f"doc-{writes}", {"n": writes})
            elif action == "wait":
                clock.advance(45)
                cluster.settle()
                cluster.allocate()
                cluster.settle()
            else:
                cluster.put_index_settings("orders", {"number_of_replicas": value % 3})
                cluster.settle()
        except SimApiError as error:
            assert error.status in (503,)
    for group in cluster.groups():
        nodes = [r.node_id for r in group.routings if r.node_id]
        assert len(nodes) == len(set(nodes)), "two copies of one shard on one node"
        assert all(cluster.node_by_id(n).alive for n in nodes)
        primary_store = group.primary_store()
        for routing in group.started():
            assert routing.allocation_id in group.in_sync
            if primary_store is not None:
                assert group.stores[routing.node_id or ""].docs == primary_store.docs

"""Decisions and the explanation table of the Elasticsearch runbook, on views built straight
from the simulator's model (no network, no server)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from drengine.clock import SimulatedClock
from drengine.datastores.elasticsearch.calls import DELAY_SETTING, chunk_indices, put_cluster_settings_call, reroute_call
from drengine.datastores.elasticsearch.diagnosis import (
    Explanations,
    explain_table,
    shards_to_explain,
    table_lines,
    with_explanations,
)
from drengine.datastores.elasticsearch.esview import EsView, build_view, parse_explanation
from drengine.datastores.elasticsearch.planning import (
    PrimaryChoice,
    ReallocationPlan,
    SettingChange,
    expected_after,
    plan_reallocation,
    restore_calls,
)
from drengine.datastores.elasticsearch.simulator import EsCluster, big, build_scenario

MEMBERS = ("node-1", "node-2", "node-3")


def view_of(model: EsCluster, members: Sequence[str] = MEMBERS, explain_all_up_to: int = 50) -> EsView:
    """What the connector would build from the same responses, explanations included."""
    view = build_view(
        "test", "http://127.0.0.1:9200", health=model.health(), nodes=model.nodes_info(), shards=model.cat_shards(),
        cluster_settings=model.get_cluster_settings(flat=True), index_settings=model.get_index_settings("_all", flat=True),
        members=members,
    )
    targets = shards_to_explain(view, explain_all_up_to)
    return with_explanations(view, Explanations(items=[parse_explanation(model.explain(*t)) for t in targets]))


def scenario(name: str) -> EsView:
    return view_of(build_scenario(name, clock=SimulatedClock()))


def test_one_node_lost_waits_for_the_node_unless_declared_gone() -> None:
    view = scenario("one-node-lost-3")
    plan = plan_reallocation(view, gone_nodes=())
    assert not plan.shorten_delay and not plan.dangerous
    assert plan.expected_status == "yellow"
    assert len(plan.waiting) == 4 and all("waits for node-3" in w and "--gone" in w for w in plan.waiting)
    assert plan.absent_members == ["node-3"] and not plan.gone_confirmed


def test_one_node_lost_declared_gone_shortens_the_delay_of_the_affected_indices_only() -> None:
    model = build_scenario("one-node-lost-3", clock=SimulatedClock())
    model.create_index("untouched", number_of_shards=1, number_of_replicas=0)
    plan = plan_reallocation(view_of(model), gone_nodes=("node-3",))
    assert plan.gone_confirmed
    assert [c.target for c in plan.shorten_delay] == ["customers", "logs-2024.06", "orders"]
    assert all(c.key == DELAY_SETTING and c.old is None and c.new == "0" for c in plan.shorten_delay)
    assert plan.expected_status == "green" and not plan.dangerous
    assert "node-3 declared gone" in plan.reason


def test_a_live_node_declared_gone_is_ignored_and_said_so() -> None:
    plan = plan_reallocation(scenario("one-node-lost-3"), gone_nodes=("node-1",))
    assert not plan.shorten_delay
    assert any("node-1 declared gone but still in the cluster" in n for n in plan.notes)


def test_node_returning_within_the_delay_gets_nothing_dangerous() -> None:
    view = scenario("node-returns-within-delay")
    plan = plan_reallocation(view, gone_nodes=())
    assert not plan.dangerous and not plan.shorten_delay and not plan.lower_replicas and plan.enable is None
    assert plan.expected_status == "yellow"
    rows = explain_table(view)
    assert len(rows) == 4
    assert all("waits 5m more" in r.why and "the node coming back" in r.what_would_assign for r in rows)


def test_red_with_a_stale_copy_offers_that_copy_and_names_what_is_lost() -> None:
    view = scenario("red-stale-copy")
    plan = plan_reallocation(view, gone_nodes=())
    assert plan.dangerous and not plan.empty_primaries
    choice = plan.stale_primaries[0]
    assert (choice.index, choice.shard, choice.node, choice.kind) == ("orders", 0, "node-3", "stale")
    assert "stale" in choice.lost and "is lost" in choice.lost and "node-2" in choice.lost
    row = next(r for r in explain_table(view) if r.shard == "orders[0] primary")
    assert "no node holds an in-sync copy" in row.why and "stale copy is on node-3" in row.why
    assert "allocate_stale_primary on node-3" in row.what_would_assign


def test_red_without_any_copy_offers_only_an_empty_primary() -> None:
    view = scenario("red-no-copy")
    plan = plan_reallocation(view, gone_nodes=())
    assert not plan.stale_primaries and [p.index for p in plan.empty_primaries] == ["sessions"]
    assert "every document" in plan.empty_primaries[0].lost
    row = next(r for r in explain_table(view) if r.shard == "sessions[0] primary")
    assert "no copy at all" in row.why and "allocate_empty_primary" in row.what_would_assign


def test_allocation_disabled_is_reenabled_remembering_the_old_value() -> None:
    view = scenario("allocation-disabled")
    plan = plan_reallocation(view, gone_nodes=())
    assert plan.enable == SettingChange(scope="persistent", target="cluster", key="cluster.routing.allocation.enable",
                                        old="primaries", new="all")
    assert plan.expected_status == "green" and not plan.dangerous
    assert all("allocation is disabled" in r.why and "re-enabling allocation" in r.what_would_assign
               for r in explain_table(view))


def test_retry_limit_reached_retries_failed_allocations() -> None:
    view = scenario("retries-exhausted")
    plan = plan_reallocation(view, gone_nodes=())
    assert plan.retry_failed == ["orders[0] replica"]
    row = explain_table(view)[0]
    assert "failed too many times" in row.why and "retry_failed=true" in row.what_would_assign


def test_a_copy_out_of_retries_while_allocation_is_disabled_gets_both_fixes() -> None:
    # Found by the explorer (explore_cases/...retries-used-up-while-allocation-disabled): re-enabling
    # allocation alone leaves the copy refused by max_retry, and the run ended FAILED yellow.
    model = build_scenario("retries-exhausted", clock=SimulatedClock())
    model.disable_allocation("primaries")
    plan = plan_reallocation(view_of(model), gone_nodes=())
    assert plan.enable is not None and plan.enable.old == "primaries"
    assert plan.retry_failed == ["orders[0] replica"]
    assert plan.expected_status == "green"


def test_replicas_are_lowered_when_the_remaining_data_nodes_cannot_hold_them() -> None:
    model = EsCluster("t", clock=SimulatedClock())
    for name in MEMBERS:
        model.add_node(name)
    model.create_index("wide", number_of_shards=2, number_of_replicas=2, settings={DELAY_SETTING: "0"})
    model.create_index("narrow", number_of_shards=1, number_of_replicas=1, settings={DELAY_SETTING: "0"})
    model.settle()
    model.kill_node("node-3")
    plan = plan_reallocation(view_of(model), gone_nodes=("node-3",))
    assert plan.lower_replicas == [SettingChange(scope="index", target="wide", key="index.number_of_replicas",
                                                 old="2", new="1")]
    assert plan.expected_status == "green"
    row = next(r for r in explain_table(view_of(model)) if r.shard.startswith("wide"))
    assert "already holds a copy" in row.why and "fewer replicas" in row.what_would_assign


def test_replicas_are_not_lowered_while_waiting_for_a_node_that_may_return() -> None:
    model = EsCluster("t", clock=SimulatedClock())
    for name in MEMBERS:
        model.add_node(name)
    model.create_index("wide", number_of_shards=1, number_of_replicas=2)
    model.settle()
    model.kill_node("node-3")
    plan = plan_reallocation(view_of(model), gone_nodes=())
    assert not plan.lower_replicas and plan.expected_status == "yellow"
    assert "waits for node-3" in plan.waiting[0]


def test_big_cluster_explains_a_sample_and_still_has_a_row_per_unassigned_copy() -> None:
    model = big(n_indices=50, shards_per_index=4, nodes=5, lose=1, clock=SimulatedClock())
    view = view_of(model, members=[f"node-{i}" for i in range(1, 6)])
    unassigned = view.unassigned
    assert len(unassigned) > 50
    assert len(view.explanations) == 3  # one kind of unassigned copy: replicas that node-5 held
    rows = explain_table(view)
    assert len(rows) == len(unassigned)
    assert sum(1 for r in rows if r.explained_like) == len(unassigned) - 3
    assert table_lines(rows, limit=5)[-1].startswith(f"... and {len(rows) - 5} more")
    plan = plan_reallocation(view, gone_nodes=("node-5",))
    assert len(plan.shorten_delay) == 50 and plan.expected_status == "green"


def test_restore_puts_back_old_values_and_defaults() -> None:
    changes = [
        SettingChange(scope="persistent", target="cluster", key="cluster.routing.allocation.enable", old="primaries", new="all"),
        SettingChange(scope="index", target="b", key=DELAY_SETTING, old=None, new="0"),
        SettingChange(scope="index", target="a", key=DELAY_SETTING, old=None, new="0"),
        SettingChange(scope="index", target="c", key=DELAY_SETTING, old="5m", new="0"),
    ]
    texts = [c.text() for c in restore_calls(changes)]
    assert texts == [
        'PUT /_cluster/settings {"persistent": {"cluster.routing.allocation.enable": "primaries"}}',
        'PUT /a,b/_settings {"index.unassigned.node_left.delayed_timeout": null}',
        'PUT /c/_settings {"index.unassigned.node_left.delayed_timeout": "5m"}',
    ]


def test_health_to_wait_for_is_red_when_a_data_losing_step_was_not_done() -> None:
    plan = ReallocationPlan(reason="r", expected_status="green", stale_primaries=[
        PrimaryChoice(index="orders", shard=0, node="node-3", kind="stale", lost="x")])
    assert expected_after(plan, done_stale=False, done_empty=False) == ("red", ["orders[0]"])
    assert expected_after(plan, done_stale=True, done_empty=False) == ("green", [])


def test_requests_are_shown_exactly() -> None:
    assert put_cluster_settings_call("persistent", {"cluster.routing.allocation.enable": "all"}).text() == \
        'PUT /_cluster/settings {"persistent": {"cluster.routing.allocation.enable": "all"}}'
    assert reroute_call(retry_failed=True).text() == "POST /_cluster/reroute?retry_failed=true&metric=none"
    command = {"allocate_stale_primary": {"index": "orders", "shard": 0, "node": "node-3", "accept_data_loss": True}}
    assert reroute_call([command]).statement().language == "http"


@pytest.mark.parametrize("count", [1, 500])
def test_long_index_lists_are_split_under_the_request_line_limit(count: int) -> None:
    names = [f"index-{i:04d}" for i in range(count)]
    chunks = chunk_indices(names)
    assert [n for chunk in chunks for n in chunk] == names
    assert all(len(",".join(chunk)) < 3100 for chunk in chunks)


def test_replica_of_a_red_shard_does_not_wait_for_a_node_that_is_back() -> None:
    plan = plan_reallocation(scenario("red-stale-copy"), gone_nodes=("node-2",))
    # orders[0]'s replica waits for node-3, which is back (holding the stale copy that becomes primary).
    assert [c.target for c in plan.shorten_delay] == ["customers", "orders"]
    assert plan.expected_status == "green"

"""The in-memory MongoDB replica-set model: elections, forced reconfig,
split brain of returning removed members, write concern, persistence."""

from __future__ import annotations

import random

import pytest

from drengine.clock import SimulatedClock
from drengine.datastores.mongodb.simulator import SCENARIOS, SimulatedReplicaSet, build_scenario
from drengine.datastores.mongodb.simulator.model import (
    FORCE_VERSION_MIN_INCREMENT,
    FORCE_VERSION_RANDOM_SPAN,
    InvalidReplicaSetConfig,
    MemberConfig,
    MemberState,
    MemberUnavailable,
    NewReplicaSetConfigurationIncompatible,
    NodeNotFound,
    NotWritablePrimary,
    UnknownScenario,
)
from drengine.datastores.mongodb.simulator.views import InsertOutcome

pytestmark = pytest.mark.sim


def scenario(name: str, seed: int = 7) -> tuple[SimulatedReplicaSet, SimulatedClock]:
    clock = SimulatedClock()
    return build_scenario(name, clock=clock, rng=random.Random(seed)), clock


def acknowledged(sim: SimulatedReplicaSet, member_id: int, outcome: InsertOutcome, w: str | int = "majority") -> bool:
    """Whether the write reached its write concern (the wire layer waits for that)."""
    return outcome.inserted > 0 and sim.write_concern_progress(member_id, outcome.optime, w).satisfied


def config_keeping(sim: SimulatedReplicaSet, on: int, keep: set[int]) -> dict[str, object]:
    """What the runbook sends: the member's config with only `keep` left in."""
    doc = sim.get_config(on).to_document()
    members = doc["members"]
    assert isinstance(members, list)
    doc["members"] = [m for m in members if m["_id"] in keep]
    return doc


def force_survivors(sim: SimulatedReplicaSet, on: int, keep: set[int]) -> int:
    installed = sim.reconfig(on, config_keeping(sim, on, keep), force=True)
    sim.settle()
    return installed.version


def state_of(sim: SimulatedReplicaSet, member_id: int) -> MemberState:
    return sim.node(member_id).state


# --- scenarios and elections


def test_every_named_scenario_builds_and_round_trips_through_json() -> None:
    assert set(SCENARIOS) >= {
        "healthy-3",
        "majority-lost-5",
        "partition-primary-alive",
        "hung-member",
        "arbiter-and-priority0",
    }
    for name in SCENARIOS:
        sim, clock = scenario(name)
        restored = SimulatedReplicaSet.from_json(sim.to_json(), clock=clock)
        assert restored.state == sim.state
        assert restored.primaries() == sim.primaries()


def test_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(UnknownScenario, match="healthy-3"):
        build_scenario("no-such-thing")


def test_healthy_set_has_one_primary_and_caught_up_secondaries() -> None:
    sim, _ = scenario("healthy-3")
    assert sim.primaries() == [0]
    optimes = {sim.node(m).last_optime for m in sim.member_ids()}
    assert len(optimes) == 1
    assert sim.count(1, "shop.orders") == 3


def test_primary_steps_down_without_a_majority_and_returns_with_one() -> None:
    sim, _ = scenario("healthy-3")
    sim.kill(1)
    sim.kill(2)
    sim.settle()
    assert sim.primaries() == []
    assert state_of(sim, 0) is MemberState.SECONDARY
    sim.revive(2)
    sim.settle()
    assert len(sim.primaries()) == 1


def test_a_voter_refuses_a_candidate_whose_oplog_is_behind() -> None:
    sim, _ = scenario("healthy-3")
    sim.kill(2)
    sim.lag(1, ops=1000)
    sim.insert(0, "shop.orders", {"_id": 50}, w=1)
    sim.lag(1)
    sim.kill(0)
    sim.revive(2)
    sim.settle()
    # 1 and 2 have the same (older) history, so either may win; 0 is down.
    assert len(sim.primaries()) == 1
    assert sim.count(sim.primaries()[0], "shop.orders", {"_id": 50}) == 0


def test_majority_lost_leaves_two_secondaries_at_different_optimes() -> None:
    sim, _ = scenario("majority-lost-5")
    assert sim.primaries() == []
    assert state_of(sim, 0) is MemberState.SECONDARY
    assert state_of(sim, 1) is MemberState.SECONDARY
    behind, ahead = sim.node(0).last_optime, sim.node(1).last_optime
    assert ahead.key() > behind.key(), "the freshest survivor must not be the lowest _id"
    status = sim.status(0)
    unreachable = [m for m in status.members if not m.healthy]
    assert [m.member_id for m in unreachable] == [2, 3, 4]
    for member in unreachable:
        assert member.state_code == 8
        assert member.state_str == "(not reachable/healthy)"
        assert member.optime is not None and member.optime.term == -1
        assert "Connection refused" in member.last_heartbeat_message
    assert [m.member_id for m in status.members if m.is_self] == [0]


def test_killed_member_does_not_answer_commands() -> None:
    sim, _ = scenario("majority-lost-5")
    with pytest.raises(MemberUnavailable, match="killed"):
        sim.status(2)


# --- forced reconfig


def test_forced_reconfig_jumps_the_version_by_a_large_random_increment() -> None:
    sim, _ = scenario("majority-lost-5")
    old_version = sim.get_config(1).version
    version = force_survivors(sim, on=1, keep={0, 1})
    jump = version - old_version
    assert FORCE_VERSION_MIN_INCREMENT <= jump < FORCE_VERSION_MIN_INCREMENT + FORCE_VERSION_RANDOM_SPAN
    # Same seed, same jump: the randomness is injected, so runs are reproducible.
    again, _ = scenario("majority-lost-5")
    assert force_survivors(again, on=1, keep={0, 1}) == version


def test_forced_reconfig_makes_the_freshest_survivor_primary_even_when_sent_to_the_other() -> None:
    sim, _ = scenario("majority-lost-5")
    force_survivors(sim, on=0, keep={0, 1})
    assert sim.primaries() == [1]
    assert sim.get_config(0).version == sim.get_config(1).version
    # The member that was behind catches up from the new primary: nothing lost.
    assert sim.count(0, "shop.orders") == 6
    outcome = sim.insert(1, "shop.orders", {"_id": 7}, w="majority")
    assert acknowledged(sim, 1, outcome)


def test_forced_reconfig_is_refused_when_it_would_drop_the_member_itself() -> None:
    sim, _ = scenario("majority-lost-5")
    with pytest.raises(NodeNotFound, match="maps to this node"):
        sim.reconfig(0, config_keeping(sim, 0, {1}), force=True)


def test_normal_reconfig_on_a_secondary_is_refused() -> None:
    sim, _ = scenario("majority-lost-5")
    doc = config_keeping(sim, 1, {0, 1})
    doc["version"] = 2
    with pytest.raises(NotWritablePrimary, match="writable PRIMARY"):
        sim.reconfig(1, doc)


def test_arbiter_and_priority0_survivors_need_a_priority_change() -> None:
    sim, _ = scenario("arbiter-and-priority0")
    assert sim.primaries() == []
    assert state_of(sim, 3) is MemberState.ARBITER
    doc = config_keeping(sim, 2, {2, 3})
    with pytest.raises(InvalidReplicaSetConfig, match="priority > 0"):
        sim.reconfig(2, doc, force=True)
    members = doc["members"]
    assert isinstance(members, list)
    for member in members:
        if member["_id"] == 2:
            member["priority"] = 1
    # Keeping the arbiter would turn the implicit default write concern from majority into w: 1:
    # refused (103) even forced, while no cluster-wide default is set (replication_coordinator_impl.cpp).
    with pytest.raises(NewReplicaSetConfigurationIncompatible, match="change the implicit default write concern"):
        sim.reconfig(2, doc, force=True)
    doc["members"] = [m for m in members if m["_id"] == 2]
    sim.reconfig(2, doc, force=True)
    sim.settle()
    assert sim.primaries() == [2]
    # One data-bearing voter alone: w:majority needs only it.
    assert acknowledged(sim, 2, sim.insert(2, "shop.orders", {"_id": 9}, w="majority"))


# --- the split-brain risk of removed members


def test_removed_members_returning_behind_a_partition_elect_a_second_primary() -> None:
    sim, _ = scenario("majority-lost-5")
    force_survivors(sim, on=1, keep={0, 1})
    sim.partition([[0, 1], [2, 3, 4]])
    for member_id in (2, 3, 4):
        sim.revive(member_id)
    sim.settle()

    assert sorted(sim.primaries()) == [1, 2]
    old_side = sim.get_config(2)
    assert old_side.version == 1, "the returning member still runs on the old config"
    assert acknowledged(sim, 2, sim.insert(2, "shop.orders", {"_id": 100}, w="majority"))
    assert acknowledged(sim, 1, sim.insert(1, "shop.orders", {"_id": 200}, w="majority"))

    sim.heal()
    sim.settle()
    assert sim.primaries() == [1]
    for member_id in (2, 3, 4):
        assert state_of(sim, member_id) is MemberState.REMOVED
    # The old side's acknowledged majority write is not on the surviving side.
    assert sim.count(1, "shop.orders", {"_id": 100}) == 0


def test_removed_members_that_see_the_new_config_go_removed_instead() -> None:
    sim, _ = scenario("majority-lost-5")
    force_survivors(sim, on=1, keep={0, 1})
    for member_id in (2, 3, 4):
        sim.revive(member_id)
    sim.settle()
    assert sim.primaries() == [1]
    assert {state_of(sim, m) for m in (2, 3, 4)} == {MemberState.REMOVED}


def test_wiped_member_rejoins_by_normal_reconfig_after_initial_sync() -> None:
    sim, _ = scenario("majority-lost-5")
    force_survivors(sim, on=1, keep={0, 1})
    sim.wipe(2)
    sim.revive(2)
    sim.settle()
    assert state_of(sim, 2) is MemberState.STARTUP
    assert sim.node(2).config is None

    doc = sim.get_config(1).to_document()
    current_version = doc["version"]
    assert isinstance(current_version, int)
    doc["version"] = current_version + 1
    members = doc["members"]
    assert isinstance(members, list)
    members.append({"_id": 2, "host": sim.node(2).host})
    installed = sim.reconfig(1, doc)
    assert installed.version == current_version + 1
    sim.settle()

    assert state_of(sim, 2) is MemberState.SECONDARY
    assert sim.count(2, "shop.orders") == 6
    assert sim.primaries() == [1]


def test_normal_reconfig_adds_only_one_voter_at_a_time() -> None:
    sim, _ = scenario("majority-lost-5")
    force_survivors(sim, on=1, keep={0, 1})
    for member_id in (2, 3):
        sim.wipe(member_id)
        sim.revive(member_id)
    doc = sim.get_config(1).to_document()
    version = doc["version"]
    assert isinstance(version, int)
    doc["version"] = version + 1
    members = doc["members"]
    assert isinstance(members, list)
    members += [{"_id": 2, "host": sim.node(2).host}, {"_id": 3, "host": sim.node(3).host}]
    with pytest.raises(NewReplicaSetConfigurationIncompatible, match="at most 1 voting"):
        sim.reconfig(1, doc)


def test_not_wiped_member_added_back_rolls_back_its_divergent_writes() -> None:
    sim, _ = scenario("majority-lost-5")
    force_survivors(sim, on=1, keep={0, 1})
    sim.partition([[0, 1], [2, 3, 4]])
    for member_id in (2, 3, 4):
        sim.revive(member_id)
    sim.settle()
    sim.insert(2, "shop.orders", {"_id": 100}, w=1)
    sim.heal()
    sim.settle()
    doc = sim.get_config(1).to_document()
    version = doc["version"]
    members = doc["members"]
    assert isinstance(version, int) and isinstance(members, list)
    doc["version"] = version + 1
    members.append({"_id": 2, "host": sim.node(2).host})
    sim.reconfig(1, doc)
    sim.settle()
    assert state_of(sim, 2) is MemberState.SECONDARY
    assert any(e.doc.get("_id") == 100 for e in sim.node(2).rolled_back)
    assert sim.count(2, "shop.orders", {"_id": 100}) == 0


# --- write concern


def test_majority_write_concern_fails_when_a_majority_cannot_acknowledge() -> None:
    sim, _ = scenario("healthy-3")
    sim.kill(2)
    sim.lag(1, ops=1000)
    outcome = sim.insert(0, "shop.orders", {"_id": 10}, w="majority")
    assert outcome.inserted == 1
    progress = sim.write_concern_progress(0, outcome.optime, "majority")
    assert not progress.satisfied
    assert (progress.acknowledged_by, progress.required) == (1, 2)
    # The write stays on the primary: write concern failure is not a rollback.
    assert sim.count(0, "shop.orders", {"_id": 10}) == 1
    assert acknowledged(sim, 0, sim.insert(0, "shop.orders", {"_id": 11}, w=1), w=1)
    sim.lag(1)
    sim.settle()
    assert acknowledged(sim, 0, sim.insert(0, "shop.orders", {"_id": 12}, w="majority"))


def test_lag_in_seconds_follows_the_injected_clock() -> None:
    sim, clock = scenario("healthy-3")
    sim.lag(2, seconds=30)
    sim.insert(0, "shop.orders", {"_id": 20}, w=1)
    assert sim.count(2, "shop.orders", {"_id": 20}) == 0
    clock.advance(31)
    sim.settle()
    assert sim.count(2, "shop.orders", {"_id": 20}) == 1


def test_writes_on_a_secondary_are_refused_and_duplicates_reported() -> None:
    sim, _ = scenario("healthy-3")
    with pytest.raises(NotWritablePrimary, match="not primary"):
        sim.insert(1, "shop.orders", {"_id": 30})
    outcome = sim.insert(0, "shop.orders", {"_id": 1}, w=1)
    assert outcome.inserted == 0
    assert outcome.write_errors[0].code == 11000


# --- partitions, hangs, freeze and step down


def test_partition_with_the_primary_alive_elsewhere() -> None:
    sim, _ = scenario("partition-primary-alive")
    assert sim.primaries() == [0]
    for survivor in (3, 4):
        status = sim.status(survivor)
        assert all(not m.healthy for m in status.members if m.member_id in (0, 1, 2))
        assert sim.hello(survivor).primary is None
    # Forcing a config on the minority side creates a second primary: the
    # reason the runbook must refuse while any member reports PRIMARY.
    force_survivors(sim, on=3, keep={3, 4})
    assert sorted(sim.primaries()) == [0, 3]


def test_hung_primary_is_replaced_and_steps_down_when_it_wakes() -> None:
    sim, _ = scenario("hung-member")
    assert sim.primaries() == [1]
    assert state_of(sim, 0) is MemberState.PRIMARY, "frozen in its last belief"
    sim.revive(0)
    sim.settle()
    assert sim.primaries() == [1]
    assert state_of(sim, 0) is MemberState.SECONDARY


def test_step_down_and_freeze_choose_the_next_primary() -> None:
    sim, clock = scenario("healthy-3")
    sim.freeze(1, 120)
    sim.step_down(0, 300)
    sim.settle()
    assert sim.primaries() == [2]
    clock.advance(121)  # 1 is unfrozen; 0 still sits out its step-down period
    sim.step_down(2, 60)
    sim.settle()
    assert sim.primaries() == [1]


def test_hidden_and_arbiter_members_shape_hello() -> None:
    members = [
        MemberConfig(id=0, host="a:1"),
        MemberConfig(id=1, host="b:1", priority=0),
        MemberConfig(id=2, host="c:1", priority=0, hidden=True),
        MemberConfig(id=3, host="d:1", priority=0, arbiter_only=True),
    ]
    sim = SimulatedReplicaSet.initiate("rs1", members, clock=SimulatedClock(), rng=random.Random(1))
    hello = sim.hello(0)
    assert hello.is_writable_primary
    assert hello.hosts == ["a:1"]
    assert hello.passives == ["b:1"]
    assert hello.arbiters == ["d:1"]
    assert sim.hello(2).hidden
    assert sim.hello(3).arbiter_only


def test_a_state_with_peers_never_heard_from_reads_back() -> None:
    """JSON has no infinity: a peer never heard from is saved as such and read back (found by the explorer)."""
    from drengine.datastores.mongodb.simulator.model import PeerSeen

    never = PeerSeen()
    assert PeerSeen.model_validate_json(never.model_dump_json()) == never
    sim = build_scenario("majority-lost-5", clock=SimulatedClock())
    text = sim.to_json()
    assert type(sim).from_json(text, clock=SimulatedClock()).to_json() == text

"""The MongoDB explore kit's oracle, computed from the simulator's truth: which survivors a
forced reconfig may choose from and which holds the most, when the majority is lost, when a
recovery is possible (liveness), what a hung member does when it wakes after the run, what
unfenced removed members do when they start again (fencing judged by outcome), and whether a
majority of the new set acknowledges a write (mongodb-force-primary's promise)."""

from __future__ import annotations

import random

from drengine.clock import SimulatedClock
from drengine.datastores.mongodb.explore import (
    expect_done,
    majority_is_lost,
    majority_write,
    survivors,
    unfenced_back,
    unfenced_wake,
)
from drengine.datastores.mongodb.simulator import SimulatedReplicaSet
from drengine.datastores.mongodb.simulator.model import MemberConfig
from drengine.datastores.mongodb.simulator.scenarios import build_scenario, hung_removed, majority_lost_5


def _forced(sim: SimulatedReplicaSet, chosen: int, keep: list[int]) -> SimulatedReplicaSet:
    """What a forced reconfig on `chosen` keeping `keep` leaves (the oracle is not the runbook's)."""
    config = sim.node(chosen).config
    assert config is not None
    sim.reconfig(chosen, config.model_copy(update={"members": [m for m in config.members if m.id in keep]}),
                 force=True)
    sim.settle()
    return sim


def test_the_survivors_are_the_reachable_data_bearing_members_with_their_optimes() -> None:
    sim = majority_lost_5(SimulatedClock(), random.Random(1))
    found = survivors(sim)
    assert sorted(found) == [0, 1]
    assert found[1] > found[0]  # _id 1 holds orders 4-6, which _id 0 never received


def test_the_majority_is_lost_only_without_a_primary_and_a_voting_majority() -> None:
    assert majority_is_lost(majority_lost_5(SimulatedClock(), random.Random(1)))
    assert not majority_is_lost(build_scenario("healthy-3", clock=SimulatedClock()))
    assert not majority_is_lost(build_scenario("partition-primary-alive", clock=SimulatedClock()))


def test_a_recovery_is_promised_when_an_electable_survivor_holds_the_most() -> None:
    assert expect_done("mongodb-force-primary", majority_lost_5(SimulatedClock(), random.Random(1)))
    # The most advanced survivor is hidden and priority 0: only an override may choose it.
    assert expect_done("mongodb-force-primary", build_scenario("hidden-survivor", clock=SimulatedClock())) is None
    assert expect_done("mongodb-force-primary", build_scenario("healthy-3", clock=SimulatedClock())) is None


def test_a_hung_old_primary_is_woken_in_a_copy_not_in_the_state() -> None:
    sim = hung_removed(SimulatedClock(), random.Random(1))
    before = sim.to_json()
    unfenced_wake(sim)
    assert sim.to_json() == before


def test_a_newly_added_member_is_no_voter_in_the_majority() -> None:
    sim = build_scenario("healthy-3", clock=SimulatedClock())
    config = sim.node(0).config
    assert config is not None
    grown = config.model_copy(update={"members": [*config.members,
                                                  MemberConfig(id=3, host="mongo3.sim:27017", newly_added=True)]})
    assert grown.total_votes() == 3 and grown.majority_vote_count() == 2


def test_unfenced_removed_members_started_again_cut_off_become_a_second_primary() -> None:
    # majority-lost-5 forced to {0, 1}: the killed 2, 3, 4 hold a majority of the old config's votes.
    sim = _forced(majority_lost_5(SimulatedClock(), random.Random(1)), 1, [0, 1])
    assert sim.primaries() == [1]
    before = sim.to_json()
    second = unfenced_back(sim, gone=[])
    assert second and set(second) <= {2, 3, 4} and next(iter(second.values())) == [2, 3, 4]
    assert sim.to_json() == before  # judged in a copy
    # Fenced (their service stopped): nothing starts them again, nothing can elect.
    for member_id in (2, 3, 4):
        sim.node(member_id).fenced = True
    assert unfenced_back(sim, gone=[]) == {}
    # One left unfenced is no majority of the old config alone.
    sim.node(2).fenced = False
    assert unfenced_back(sim, gone=[]) == {}
    # Declared gone for good by the operator: not brought back.
    for member_id in (2, 3, 4):
        sim.node(member_id).fenced = False
    assert unfenced_back(sim, gone=["m2", "m3", "m4"]) == {}


def test_a_majority_write_needs_the_new_sets_voters_to_keep_up() -> None:
    sim = _forced(majority_lost_5(SimulatedClock(), random.Random(1)), 1, [0, 1])
    assert majority_write(sim) is None
    sim.lag(0, ops=1)  # a slow disk: m0 stays an entry behind, a majority of {m0, m1} never holds the write
    why = majority_write(sim)
    assert why is not None and "reaches 1 of the 2 data-bearing voters" in why and "(m1)" in why
    assert sim.node(0).lag_ops == 1 and "oracle" not in sim.to_json()  # judged in a copy


def test_no_recovery_is_promised_while_disks_stay_slow() -> None:
    sim = majority_lost_5(SimulatedClock(), random.Random(1))
    assert expect_done("mongodb-force-primary", sim)
    sim.lag(0, ops=1)
    assert expect_done("mongodb-force-primary", sim) is None


def test_no_recovery_is_promised_where_mongod_refuses_every_forced_config_or_nothing_to_add_answers() -> None:
    # Primary-secondary-arbiter with the secondary alone: every forced config changes the implicit default
    # write concern (103) while no cluster-wide default is set; with one set before the outage, it is promised.
    assert expect_done("mongodb-force-primary", build_scenario("psa-secondary-alone", clock=SimulatedClock())) is None
    assert expect_done("mongodb-force-primary", build_scenario("psa-default-set", clock=SimulatedClock()))
    # mongodb-rejoin with the only member outside the primary's config down: nothing can add it.
    sim = build_scenario("healthy-3", clock=SimulatedClock())
    config = sim.get_config(0)
    sim.kill(2)
    sim.reconfig(0, config.model_copy(update={"version": config.version + 1, "term": sim.node(0).term,
                                              "members": config.members[:2]}))
    sim.settle(60)
    assert sim.primaries() == [0]
    assert expect_done("mongodb-rejoin", sim) is None

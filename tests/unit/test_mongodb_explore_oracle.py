"""The MongoDB explore kit's oracle, computed from the simulator's truth: which survivors a
forced reconfig may choose from and which holds the most, when the majority is lost, when a
recovery is possible (liveness), and what a hung member does when it wakes after the run."""

from __future__ import annotations

import random

from drengine.clock import SimulatedClock
from drengine.datastores.mongodb.explore import expect_done, majority_is_lost, survivors, unfenced_wake
from drengine.datastores.mongodb.simulator.model import MemberConfig
from drengine.datastores.mongodb.simulator.scenarios import build_scenario, hung_removed, majority_lost_5


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

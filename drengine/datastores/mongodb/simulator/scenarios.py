"""Named situations of the simulated replica set (the inventories' `scenario:`)."""

from __future__ import annotations

import random
from collections.abc import Callable

from drengine.clock import Clock
from drengine.datastores.mongodb.simulator.model import MemberConfig, ReplSetSettings, UnknownScenario
from drengine.datastores.mongodb.simulator.replset import SimulatedReplicaSet

# --- named scenarios

ScenarioFactory = Callable[[Clock | None, random.Random | None], SimulatedReplicaSet]


def _members(count: int) -> list[MemberConfig]:
    return [MemberConfig(id=i, host=f"mongo{i}.sim:27017") for i in range(count)]


def _seed_orders(sim: SimulatedReplicaSet, first: int, count: int) -> None:
    primary = sim.primaries()[0]
    for number in range(first, first + count):
        sim.insert(primary, "shop.orders", {"_id": number, "item": f"order-{number}"}, w=1)
    sim.settle()


def healthy_3(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Three members, _id 0 primary, everything replicated."""
    sim = SimulatedReplicaSet.initiate("rs0", _members(3), clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    return sim


def healthy_5(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Five members, _id 0 primary, everything replicated: the starting point of drills."""
    sim = SimulatedReplicaSet.initiate("rs0", _members(5), clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    return sim


def majority_lost_5(clock: Clock | None = None, rng: random.Random | None = None, *,
                    hang_primary: bool = False) -> SimulatedReplicaSet:
    """Five members; the primary (_id 2) and _id 3, 4 are killed (the primary hung instead,
    with `hang_primary`).

    Survivors _id 0 and _id 1 are both SECONDARY with no primary possible.
    _id 1 holds orders 1-6; _id 0 lost its link to the primary before the
    outage and holds only orders 1-3, so the freshest survivor is not the
    lowest _id. chainingAllowed is false, so _id 0 cannot catch up from _id 1
    while there is no primary.
    """
    members = _members(5)
    members[2] = members[2].model_copy(update={"priority": 2.0})
    rng = rng or random.Random()
    settings = ReplSetSettings(chaining_allowed=False, replica_set_id=f"{rng.getrandbits(96):024x}")
    sim = SimulatedReplicaSet.initiate("rs0", members, settings=settings, clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    sim.partition([[1, 2, 3, 4]])
    sim.settle()
    _seed_orders(sim, 4, 3)
    for member_id in (2, 3, 4):
        if member_id == 2 and hang_primary:
            sim.hang(member_id)
        else:
            sim.kill(member_id)
    sim.heal()
    sim.settle()
    return sim


def partition_primary_alive(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Five members split [0, 1, 2] | [3, 4]; _id 0 is still PRIMARY.

    Seen from _id 3 or _id 4 the majority looks lost (0, 1, 2 unreachable),
    but a client that reaches every member sees exactly one PRIMARY, _id 0,
    which keeps taking majority writes. Forcing a config on 3 or 4 here would
    create a second primary.
    """
    sim = SimulatedReplicaSet.initiate("rs0", _members(5), clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    sim.partition([[0, 1, 2], [3, 4]])
    sim.settle()
    for number in (4, 5):
        sim.insert(0, "shop.orders", {"_id": number, "item": f"order-{number}"}, w="majority")
    sim.settle()
    return sim


def hung_member(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Three members; the former primary _id 0 is hung (accepts TCP, never
    answers) and still believes it is primary; _id 1 was elected in its place."""
    sim = SimulatedReplicaSet.initiate("rs0", _members(3), clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    sim.hang(0)
    sim.settle()
    return sim


def arbiter_and_priority0(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Five members: 0, 1, 4 electable; 2 priority 0; 3 arbiter.

    0, 1 and 4 are killed. The survivors are the priority-0 member _id 2
    (holding every write) and the arbiter _id 3: no survivor can be elected
    until a forced config gives _id 2 a priority above 0.
    """
    members = _members(5)
    members[2] = members[2].model_copy(update={"priority": 0.0})
    members[3] = members[3].model_copy(update={"priority": 0.0, "arbiter_only": True})
    sim = SimulatedReplicaSet.initiate("rs0", members, clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    for member_id in (0, 1, 4):
        sim.kill(member_id)
    sim.settle()
    return sim


def _majority_lost_with(member: MemberConfig, behind: int | None, *, clock: Clock | None,
                        rng: random.Random | None) -> SimulatedReplicaSet:
    """Five members; _id 3 is `member` (a special kind of survivor) beside the ordinary _id 4.
    The primary (_id 0), _id 1 and _id 2 are killed after `behind` (when given) stopped
    applying the last three orders."""
    members = _members(5)
    members[3] = member
    rng = rng or random.Random()
    # Without chaining a secondary syncs from the primary only: the one behind stays behind.
    settings = ReplSetSettings(chaining_allowed=False, replica_set_id=f"{rng.getrandbits(96):024x}")
    sim = SimulatedReplicaSet.initiate("rs0", members, settings=settings, clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    if behind is not None:
        sim.lag(behind, ops=3)
    _seed_orders(sim, 4, 3)
    for member_id in (0, 1, 2):
        sim.kill(member_id)
    sim.settle()
    if behind is not None:
        sim.lag(behind)  # it catches up again once a primary exists
    sim.settle()
    return sim


def hidden_survivor(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Survivors: the hidden, priority-0 _id 3 with every write, and the ordinary _id 4, three
    orders behind. The most advanced survivor is configured never to be primary."""
    hidden = MemberConfig(id=3, host="mongo3.sim:27017", priority=0.0, hidden=True)
    return _majority_lost_with(hidden, 4, clock=clock, rng=rng)


def non_voting_survivor(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Survivors: the non-voting, priority-0 _id 3 with every write, and _id 4, three orders behind."""
    non_voting = MemberConfig(id=3, host="mongo3.sim:27017", priority=0.0, votes=0)
    return _majority_lost_with(non_voting, 4, clock=clock, rng=rng)


def delayed_survivor(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Survivors: the delayed (secondaryDelaySecs 3600, hidden, priority 0) _id 3, an hour
    behind by design, and the current _id 4 with every write."""
    delayed = MemberConfig(id=3, host="mongo3.sim:27017", priority=0.0, hidden=True, secondary_delay_secs=3600)
    return _majority_lost_with(delayed, None, clock=clock, rng=rng)


def lagging_survivor(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """majority-lost-5 where _id 0 applies nothing any more (a stuck disk): after a forced
    reconfig keeping _id 0 and _id 1, a w: majority write cannot be acknowledged."""
    sim = majority_lost_5(clock, rng)
    sim.lag(0, ops=1_000_000)
    return sim


def hung_removed(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """majority-lost-5, but the old primary (_id 2) is hung, not dead: it accepts connections,
    answers nothing, and still believes it is primary under the old config. Removing it without
    fencing it leaves a member that can wake into a second primary."""
    return majority_lost_5(clock, rng, hang_primary=True)


def psa_secondary_alone(clock: Clock | None = None, rng: random.Random | None = None, *,
                        default_set: bool = False) -> SimulatedReplicaSet:
    """Primary-secondary-arbiter (the implicit default write concern is w: 1); the primary _id 0
    and the arbiter _id 2 are killed. The secondary _id 1 alone holds every write, and a config of
    it alone would make the implicit default w: "majority": mongod 5.0+ refuses that forced
    reconfig (103) unless a cluster-wide default was set before the outage (`default_set`)."""
    members = _members(3)
    members[2] = members[2].model_copy(update={"priority": 0.0, "arbiter_only": True})
    sim = SimulatedReplicaSet.initiate("rs0", members, clock=clock, rng=rng)
    if default_set:
        sim.set_default_write_concern(sim.primaries()[0], {"w": 1})
    _seed_orders(sim, 1, 3)
    for member_id in (0, 2):
        sim.kill(member_id)
    sim.settle()
    return sim


def psa_default_set(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """psa-secondary-alone, with a cluster-wide default write concern set before the outage."""
    return psa_secondary_alone(clock, rng, default_set=True)


SCENARIOS: dict[str, ScenarioFactory] = {
    "healthy-3": healthy_3,
    "healthy-5": healthy_5,
    "majority-lost-5": majority_lost_5,
    "partition-primary-alive": partition_primary_alive,
    "hung-member": hung_member,
    "arbiter-and-priority0": arbiter_and_priority0,
    "hidden-survivor": hidden_survivor,
    "non-voting-survivor": non_voting_survivor,
    "delayed-survivor": delayed_survivor,
    "lagging-survivor": lagging_survivor,
    "hung-removed": hung_removed,
    "psa-secondary-alone": psa_secondary_alone,
    "psa-default-set": psa_default_set,
}


def build_scenario(name: str, *, clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    try:
        factory = SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise UnknownScenario(f"no MongoDB scenario named {name!r}; known: {known}") from None
    sim = factory(clock, rng)
    # The scenario's outage lies in the past: from here on, model time is the clock's.
    sim.state.skew = max(sim.state.skew, 0.0)
    sim.advance()
    return sim

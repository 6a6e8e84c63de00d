"""The fault space of the MongoDB runbooks, for `drengine explore`: generated replica sets
(three to five members; priority 0, hidden, non-voting members and arbiters; a cluster-wide
default write concern or not; members cut off and behind by any number of writes; the majority
killed or hung, or still alive; chaining on or off; after a forced reconfig, a removed member back
wiped or not; the primary stepping down under the run), and the invariants,
computed from the simulator's own members:

- at most one running member believes it is primary;
- a member that becomes primary holds the highest optime among the running data-bearing
  members, unless the operator accepted losing that member's writes;
- a forced config keeps every survivor (every running member of the old config) and has a
  newer version, unless the operator accepted removing it;
- the goal (success implies it): one primary, every running member of its config serving.

The simulator is served over the wire protocol (the real pymongo client talks to it), on
real sockets with real timeouts: a hung member costs the explorer real time, so hung members
are generated sparingly and the explorer's inventory uses short timeouts.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from drengine.clock import SimulatedClock
from drengine.datastores.mongodb.simulator import SimulatedReplicaSet
from drengine.datastores.mongodb.simulator.model import (
    MemberConfig,
    MemberState,
    NewReplicaSetConfigurationIncompatible,
    Process,
    ReplSetSettings,
)
from drengine.datastores.mongodb.simulator.replication import has_optime
from drengine.datastores.mongodb.simulator.writeconcern import implicit_default_is_majority
from drengine.explore.kit import Kit, Ledger, Situation, Violation, Watch, digits, pick
from drengine.explore.scenario import MemberSpec
from drengine.journal import Entry

SET = digits(9)
STEP_DOWN_SECONDS = 10.0  # replSetStepDown's least stepDownSecs (it must cover secondaryCatchUpPeriodSecs)
MEMBER = digits(3)
READS = ("hello", "isMaster", "ismaster", "ping", "replSetGetStatus", "replSetGetConfig", "count", "find", "buildInfo",
         "listDatabases", "getDefaultRWConcern")


def _member(i: int) -> MemberSpec:
    return MemberSpec(name=f"m{i}", address="127.0.0.1", port=27017 + i)


def _config(i: int, kind: str) -> MemberConfig:
    host = f"mongo{i}.sim:27017"
    return {
        "normal": MemberConfig(id=i, host=host),
        "priority0": MemberConfig(id=i, host=host, priority=0.0),
        "hidden": MemberConfig(id=i, host=host, priority=0.0, hidden=True),
        "non-voting": MemberConfig(id=i, host=host, priority=0.0, votes=0),
        "arbiter": MemberConfig(id=i, host=host, priority=0.0, arbiter_only=True),
        "delayed": MemberConfig(id=i, host=host, priority=0.0, hidden=True, secondary_delay_secs=3600),
    }[kind]


def _orders(sim: SimulatedReplicaSet, first: int, count: int) -> int:
    primaries = sim.primaries()
    if not primaries:
        return first
    for number in range(first, first + count):
        sim.insert(primaries[0], "shop.orders", {"_id": number, "item": f"order-{number}"}, w=1)
    sim.settle()
    return first + count


# Sets built so far, by their digits: hypothesis draws the same digits again and again (it mutates
# the scenarios it made), and building a set (its elections and replication, settled round by
# round) is most of a MongoDB scenario's cost. Kept as the state's text and the generator's state.
_BUILT: dict[tuple[tuple[int, ...], tuple[tuple[int, ...], ...], bool, bool], tuple[str, Any, list[str], list[int]]] = {}
BUILT_KEPT = 4096


def _build(draw: st.DrawFn, slow: bool = False, ahead: bool = False) -> tuple[SimulatedReplicaSet, list[str], list[int]]:
    """The set of these digits (see `_settled`), built once per process."""
    c = draw(SET)
    count = pick(c[0], 5, 3, 4, percent=55)
    ds = tuple(tuple(draw(MEMBER)) for _ in range(1, count))  # one draw per member (see kit.digits)
    key = (tuple(c), ds, slow, ahead)
    built = _BUILT.get(key)
    if built is None:
        sim, kinds, lose = _settled(list(c), [list(d) for d in ds], slow, ahead)
        built = (sim.to_json(), sim._rng.getstate(), kinds, lose)
        if len(_BUILT) < BUILT_KEPT:
            _BUILT[key] = built
    text, rng_state, kinds, lose = built
    rng = random.Random()
    rng.setstate(rng_state)
    return SimulatedReplicaSet.from_json(text, clock=SimulatedClock(), rng=rng), list(kinds), list(lose)


def _settled(c: list[int], ds: list[list[int]], slow: bool, ahead: bool) -> tuple[SimulatedReplicaSet, list[str], list[int]]:
    """A set whose first writes reached everyone, then each member fell behind by its own number
    of writes (a slow disk: `lag`), independently of its place in the inventory, while more writes
    went on; then members were lost (killed, now and then hung), chosen apart from their data.
    With `slow`, now and then the disks stay slow: every running data-bearing member but the most
    advanced stays an entry behind, so a new set of more than one voter cannot acknowledge a
    majority write (what mongodb-force-primary's verify step is for). With `ahead`, every other
    member falls behind by at least one write: the primary holds writes no one else has."""
    count = len(ds) + 1
    kinds = ["normal"]
    members = [_config(0, "normal")]
    behind: dict[int, int] = {}
    lose: list[int] = []
    order: dict[int, int] = {0: c[8]}
    for i in range(1, count):
        d = ds[i - 1]
        kind = "normal" if i == 1 else pick(d[0], "normal", "priority0", "hidden", "delayed", "non-voting",
                                            "arbiter", percent=60)
        kinds.append(kind)
        members.append(_config(i, kind))
        if kind != "arbiter":
            behind[i] = d[1]  # a key: the members' lags are its ranks (distinct, apart from the inventory order)
        if pick(d[2], False, True, percent=80):
            lose.append(i)
        order[i] = d[2]
    # Without chaining a secondary syncs from the primary only: survivors stay where they were.
    settings = ReplSetSettings(chaining_allowed=pick(c[1], False, True, percent=85), replica_set_id=f"{c[2]:024x}")
    sim = SimulatedReplicaSet.initiate("rs0", members, settings=settings, clock=SimulatedClock(), rng=random.Random(c[2]))
    if c[8] % 3 == 0 and sim.primaries():
        # A cluster-wide default write concern set before the outage (setDefaultRWConcern): then mongod
        # accepts a forced config that changes the implicit default (no 103). From a digit already
        # drawn, so that the rest of the situation is generated as before.
        sim.set_default_write_concern(sim.primaries()[0], {"w": "majority"})
    number = _orders(sim, 1, pick(c[3], 2, 0, 1, 4, percent=60))
    if pick(c[4], True, False, percent=85):
        for rank, member in enumerate(sorted(behind, key=lambda m: (behind[m], m))):
            sim.lag(member, ops=rank + ahead)
    _orders(sim, number, 4)
    primaries = sim.primaries()
    if pick(c[5], True, False, percent=80) and primaries:
        lose = sorted({*lose, primaries[0]})  # usually the primary is among the lost
    if pick(c[7], True, False, percent=80):
        # Usually the voting majority is lost (what mongodb-force-primary is for), one data-bearing
        # member left at least; which voters go is drawn apart from how far behind they are.
        voters = [m.id for m in members if m.votes]
        majority = len(voters) // 2 + 1
        for m in sorted(voters, key=lambda v: (order[v], v)):
            if len([v for v in voters if v not in lose]) < majority:
                break
            if [x for x in range(count) if x not in lose and x != m and kinds[x] != "arbiter"]:
                lose = sorted({*lose, m})
    hung = [m for m in lose if c[6] >= 95 and m == lose[-1]]  # rarely: hung members cost real time
    for member in lose:
        (sim.hang if member in hung else sim.kill)(member)
    for member in behind:
        sim.lag(member)  # the disk is fine again: with a primary (or chaining) it catches up
    sim.heal()
    sim.settle()
    # One digit for both (a new draw would reshape every scenario hypothesis generates): the disks
    # that made members fall behind stay slow in a fifth of the sets.
    if slow and 65 <= c[4] < 85:
        _slow_disks(sim, kinds)
    return sim, kinds, lose


def _slow_disks(sim: SimulatedReplicaSet, kinds: list[str]) -> None:
    """Every running data-bearing member but the most advanced stays an entry behind its source."""
    running = [n for n in sim.state.members if n.process is Process.RUNNING and kinds[n.member_id] != "arbiter"]
    if not running:
        return
    ahead = max(running, key=lambda n: (n.last_optime.key(), -n.member_id))
    for node in running:
        if node is not ahead:
            sim.lag(node.member_id, ops=1)


@st.composite
def majority_lost(draw: st.DrawFn) -> Situation:
    sim, kinds, lost = _build(draw, slow=True)
    label = (", ".join(f"m{n.member_id} {kinds[n.member_id]} {n.process.value} {n.state.value} "
                       f"@{n.last_optime.seconds}.{n.last_optime.increment}{' slow' if n.lag_ops else ''}"
                       for n in sim.state.members))
    return Situation(label, [_member(i) for i in range(len(kinds))], json.loads(sim.to_json()))


@st.composite
def forced_then_back(draw: st.DrawFn) -> Situation:
    """mongodb-force-primary's outcome: a survivor forced a config without the lost members;
    one removed member is back, wiped (ready to be added) or not (still holding data)."""
    sim, kinds, lost = _build(draw, ahead=True)
    d = draw(MEMBER)
    # Now and then a data set large enough that an initial sync outlasts a glance (about 13 s at the
    # simulator's rate: past the goal check's 10 s, and each second of it is a probe more to explore).
    sim.state.bulk_data_bytes = pick(d[1], 0, 640 * 1024 * 1024, percent=75)
    running = [n for n in sim.state.members if n.process is Process.RUNNING and n.config is not None]
    data = [n for n in running if kinds[n.member_id] != "arbiter"]
    if data and lost and not sim.primaries():
        chosen = max(data, key=lambda n: n.last_optime.key())
        assert chosen.config is not None
        keep = [m for m in chosen.config.members if sim.node(m.id).process is Process.RUNNING]
        keep = [m.model_copy(update={"priority": 1.0, "votes": 1, "hidden": False, "secondary_delay_secs": 0})
                if m.id == chosen.member_id else m
                for m in keep]
        # mongod refuses a forced config that changes the implicit default write concern (103): as the
        # runbook does, leave the arbiters out, or keep the ones that are down; else force nothing.
        down_arbiters = [m for m in chosen.config.members if m.arbiter_only and m not in keep]
        for members in (keep, [m for m in keep if not m.arbiter_only], keep + down_arbiters):
            try:
                sim.reconfig(chosen.member_id, chosen.config.model_copy(update={"members": members}), force=True)
                break
            except NewReplicaSetConfigurationIncompatible:
                continue
        sim.settle()
        # Usually the most advanced of the lost members comes back (the old primary, holding writes
        # the new primary lacks: added back unwiped, it rolls them back); now and then the first.
        holders = [m for m in lost if kinds[m] != "arbiter"]
        back = lost[0] if not holders or pick(d[2], False, True, percent=70) else \
            max(holders, key=lambda m: (sim.node(m).last_optime.key(), -m))
        if sim.node(back).process is Process.HUNG:
            sim.kill(back)
        if pick(d[0], True, False, percent=60):
            sim.wipe(back)  # its dbPath emptied, as the runbook asks
        sim.revive(back)
        # Its first heartbeat answer brings the newer config (it is REMOVED) before it picks a sync
        # source (mongod chooses one from heartbeat data): an unwiped member keeps what it held.
        sim.tick()
        sim.settle()
    label = (", ".join(f"m{n.member_id} {kinds[n.member_id]} {n.process.value} {n.state.value}"
                       f"{' (no config)' if n.config is None else ''}" for n in sim.state.members)
             + (f", {sim.state.bulk_data_bytes >> 20} MiB of data" if sim.state.bulk_data_bytes else ""))
    return Situation(label, [_member(i) for i in range(len(kinds))], json.loads(sim.to_json()))


def _model(model: Any) -> SimulatedReplicaSet:
    return model if isinstance(model, SimulatedReplicaSet) else SimulatedReplicaSet(model)


def _data_bearing(sim: SimulatedReplicaSet, member_id: int) -> bool:
    node = sim.node(member_id)
    entry = node.own_entry()
    return node.state is not MemberState.ARBITER and not (entry is not None and entry.arbiter_only)


# --- the oracle: what the simulator's truth says any recovery could reach

Optime = tuple[int, int, int]


def survivors(sim: SimulatedReplicaSet) -> dict[int, Optime]:
    """The reachable data-bearing members holding a config, with their optimes: what a forced
    reconfig may choose from (a hung member answers nothing, an arbiter holds no data)."""
    return {n.member_id: n.last_optime.key() for n in sim.state.members
            if n.process is Process.RUNNING and n.config is not None and _data_bearing(sim, n.member_id)
            and n.state in (MemberState.PRIMARY, MemberState.SECONDARY)}


def majority_is_lost(sim: SimulatedReplicaSet) -> bool:
    """No primary runs and the running voters of the newest config are fewer than its majority."""
    if sim.primaries():
        return False
    configs = [n.config for n in sim.state.members if n.config is not None]
    if not configs:
        return False
    newest = max(configs, key=lambda c: c.version)
    running = {n.host for n in sim.state.members if n.process is Process.RUNNING}
    votes = sum(m.votes for m in newest.members if m.voter and m.host in running)
    return votes < newest.majority_vote_count()


def may_be_primary(sim: SimulatedReplicaSet, member_id: int) -> bool:
    entry = sim.node(member_id).own_entry()
    return entry is not None and entry.electable and not entry.hidden and not entry.secondary_delay_secs


def unfenced_back(sim: SimulatedReplicaSet, gone: list[str]) -> dict[int, list[int]]:
    """Fencing judged by its outcome, in a copy: every member outside the one primary's config that
    still holds a config and was not fenced (a crash, a refused connection, a hang: nothing keeps it
    down) restarts or wakes where it was lost, cut off from the new set; the set settles. The
    primaries among them, with the members that came back (empty when nothing comes back).
    A fenced member stays down (its service manager holds it stopped); one the operator declared
    gone for good (`gone`: inventory names m<id>) is not brought back."""
    primaries = sim.primaries()
    if len(primaries) != 1:
        return {}
    config = sim.node(primaries[0]).config
    assert config is not None
    kept = {m.host for m in config.members}
    back = [n.member_id for n in sim.state.members if n.host not in kept and n.config is not None
            and n.process is not Process.RUNNING and not n.fenced and f"m{n.member_id}" not in gone]
    if not back:
        return {}
    copy = SimulatedReplicaSet.from_json(sim.to_json(), clock=SimulatedClock())
    for member_id in back:
        copy.revive(member_id)
    copy.partition([back, [n.member_id for n in copy.state.members if n.member_id not in back]])
    copy.settle()
    return {m: back for m in copy.primaries() if m in back}


def unfenced_wake(sim: SimulatedReplicaSet) -> list[int]:
    """In a copy: let every hung member wake (a hung process carries on by itself; a killed one
    stays down until someone restarts it) and the set settle. The running primaries then."""
    copy = SimulatedReplicaSet.from_json(sim.to_json(), clock=SimulatedClock())
    for node in copy.state.members:
        if node.process is Process.HUNG:
            copy.revive(node.member_id)
    copy.settle()
    return copy.primaries()


class MongoWatch(Watch):
    """The MongoDB invariants over one scenario, judged against the oracle (`survivors`) taken
    at the previous journal event or world change: what the run could have saved when it acted."""

    def __init__(self, runbook: str) -> None:
        self.runbook = runbook
        self.before: dict[int, Optime] = {}  # the survivors at the previous event
        self.tolerated: set[int] = set()  # primaries the world itself made (a revive), not the run
        self.config_before: tuple[int, set[str]] | None = None  # version, survivor hosts before the force
        self.forced_on: int | None = None
        self.rolled: dict[int, int] | None = None  # rolled-back entries per member, as last seen
        self.woken: set[int] = set()  # members the world (not the run) brought back
        self.running: set[int] = set()  # members running at the last event
        self.lost_before = True  # was the voting majority lost at the previous event (the oracle)?

    def world(self, model: Any, what: str) -> None:
        sim = _model(model)
        self.before = survivors(sim)
        self.lost_before = majority_is_lost(sim)
        running = {n.member_id for n in sim.state.members if n.process is Process.RUNNING}
        self.woken |= running - self.running
        self.running = running
        primaries = set(sim.primaries())
        self.tolerated = primaries if len(primaries) > 1 else set()

    def after_event(self, entry: Entry, model: Any, ledger: Ledger) -> list[Violation]:
        if model is None:
            return []
        sim = _model(model)
        found = self._one_primary(sim, ledger) + self._rollback(sim, ledger)
        self.running = {n.member_id for n in sim.state.members if n.process is Process.RUNNING}
        data = entry.data
        # A forced reconfig the member refused (103: it would change the implicit default write concern)
        # changed nothing: nothing to judge.
        if entry.type.value == "statement_sent" and "replSetReconfig" in str(data.get("text", "")) \
                and re.search(r'"force":\s*true', str(data.get("text", ""))) \
                and not str(data.get("result", "")).startswith("refused"):
            found += self._forced(sim, str(data.get("target", "")), ledger)
        self.before = survivors(sim)
        self.lost_before = majority_is_lost(sim)
        if entry.type.value == "step_started" and data.get("action") == "mongodb.force_reconfig":
            self.config_before = self._configs(sim)
        return found

    def _one_primary(self, sim: SimulatedReplicaSet, ledger: Ledger) -> list[Violation]:
        now = set(sim.primaries())
        self.tolerated &= now
        if len(now) < 2 or now <= self.tolerated or ledger.overrode("check-majority-lost"):
            return []
        return [Violation("mongodb.one-primary", f"{len(now)} members believe they are primary: "
                          + ", ".join(f"m{m}" for m in sorted(now)))]

    def _rollback(self, sim: SimulatedReplicaSet, ledger: Ledger) -> list[Violation]:
        """Writes a member held are rolled back (thrown away) because of what the run did: a
        member holding data added back unwiped, or a less advanced survivor forced over it."""
        now = {n.member_id: len(n.rolled_back) for n in sim.state.members}
        before, self.rolled = self.rolled, now
        if before is None or ledger.overrode("check-wiped") or ledger.overrode("choose-survivor"):
            return []
        return [Violation("mongodb.no-write-rolled-back", f"m{m} rolled back {count - before.get(m, 0)} write(s) it "
                          "held, and the operator chose no such loss")
                for m, count in sorted(now.items()) if count > before.get(m, 0) and m not in self.woken]

    @staticmethod
    def _configs(sim: SimulatedReplicaSet) -> tuple[int, set[str]]:
        configs = [n.config for n in sim.state.members if n.config is not None]
        version = max((c.version for c in configs), default=0)
        return version, {sim.node(m).host for m in survivors(sim)}

    def _forced(self, sim: SimulatedReplicaSet, target: str, ledger: Ledger) -> list[Violation]:
        if not target.startswith("m"):
            return []
        chosen = int(target[1:])
        found = self._most_advanced(chosen, target, ledger)
        if not self.lost_before and not ledger.overrode("check-majority-lost"):
            # A forced config while a primary or a voting majority answers can roll back what that
            # majority committed, and makes a second primary possible: only an override may do it.
            found.append(Violation("mongodb.forced-only-when-majority-lost",
                                   f"a forced reconfig was sent to {target} while the voting majority was not lost "
                                   f"(a primary or enough voters answered), and the operator overrode no check"))
        self.forced_on = chosen
        node = sim.node(chosen)
        if self.config_before is None or node.config is None:
            return found
        version, running = self.config_before
        if node.config.version <= version:
            found.append(Violation("mongodb.forced-config-newer",
                                   f"the forced config on {target} has version {node.config.version}, not past {version}"))
        kept = {m.host for m in node.config.members}
        for host in sorted(running - kept):
            other = sim.node_with_host(host)
            name = f"m{other.member_id}" if other else host
            if not ledger.chose(name):
                found.append(Violation("mongodb.forced-config-keeps-survivors",
                                       f"the forced config on {target} removed {name}, a reachable data-bearing "
                                       f"survivor, and the operator did not name it"))
        return found

    def _most_advanced(self, chosen: int, target: str, ledger: Ledger) -> list[Violation]:
        """The oracle: the survivor to force is the reachable data-bearing member with the highest
        optime (what any choice could save); a less advanced one only if the operator named it."""
        if not self.before:
            return []
        best = max(self.before.values())
        mine = self.before.get(chosen)
        if mine is not None and mine >= best:
            return []
        if ledger.chose(target) or ledger.overrode("choose-survivor"):
            return []
        holders = ", ".join(f"m{m}" for m, o in sorted(self.before.items()) if o == best)
        return [Violation("mongodb.forced-most-advanced",
                          f"the forced reconfig chose {target} at optime {mine} while reachable {holders} held "
                          f"{best}: the writes in between are lost, and the operator did not choose {target}")]

    def at_end(self, model: Any, ledger: Ledger, success: bool) -> list[Violation]:
        if model is None or ledger.ended != "done" or not success or ledger.overrode("check-majority-lost"):
            return []
        sim = _model(model)
        woke = unfenced_wake(sim)
        if len(woke) > 1:
            return [Violation("mongodb.removed-cannot-come-back",
                              "after DONE, the hung members woken in a copy of the final state make "
                              f"{len(woke)} primaries: " + ", ".join(f"m{m}" for m in woke))]
        # Fencing by its outcome: an operator who overrode check-fenced (having fenced by hand) chose it.
        if self.runbook != "mongodb-force-primary" or ledger.overrode("check-fenced"):
            return []
        second = unfenced_back(sim, ledger.gone)
        if second:
            back = next(iter(second.values()))
            return [Violation("mongodb.fenced-by-outcome",
                              "after DONE, with the removed members nothing fenced ("
                              + ", ".join(f"m{m}" for m in back) + ") started again in a copy, cut off from the new "
                              "set (a crash or a refused connection is not a fence), "
                              + ", ".join(f"m{m}" for m in second) + " becomes a second primary beside "
                              + ", ".join(f"m{m}" for m in sim.primaries()) + " and takes writes")]
        return []


def expect_done(runbook: str, sim: SimulatedReplicaSet) -> str | None:
    """The liveness oracle (see Kit.expect_done)."""
    if runbook == "mongodb-rejoin":
        if len(sim.primaries()) != 1:
            return None
        back = [n for n in sim.state.members if n.process is Process.RUNNING and n.config is None]
        dirty = [n for n in sim.state.members if n.process is Process.RUNNING and n.config is not None
                 and n.state is MemberState.REMOVED]
        if dirty or any(n.oplog for n in back) or any(n.process is Process.HUNG for n in sim.state.members):
            return None
        config = sim.node(sim.primaries()[0]).config
        assert config is not None
        outside = [n for n in sim.state.members if config.member_with_host(n.host) is None]
        if outside and not any(n.process is Process.RUNNING for n in outside):
            return None  # the members to add are all down: nothing can add them until one is started
        running = {n.host for n in sim.state.members if n.process is Process.RUNNING}
        current = [m for m in config.data_bearing_voters() if m.host in running and not m.secondary_delay_secs]
        if len(current) < config.write_majority_count():
            return None  # a delayed voter holds the commit point back: no reconfig commits for an hour
        return "one primary, and every member outside its config that answers is wiped"
    if not majority_is_lost(sim) or any(n.process is Process.HUNG for n in sim.state.members):
        return None
    if any(n.lag_ops or n.lag_seconds for n in sim.state.members if n.process is Process.RUNNING):
        return None  # slow disks: whether a majority of the new set acknowledges is for verify to find out
    found = survivors(sim)
    if not found:
        return None
    best = max(found.values())
    if not any(may_be_primary(sim, m) for m, o in found.items() if o == best):
        return None  # the most advanced survivor is configured never to be primary: an override decides
    if not _implicit_default_keepable(sim, max(found, key=lambda m: found[m])):
        return None  # mongod may refuse every forced config (103): no promise either way
    return "the voting majority is lost and a reachable data-bearing survivor may be forced to primary"


def _implicit_default_keepable(sim: SimulatedReplicaSet, member_id: int) -> bool:
    """Whether a forced config is sure to keep the implicit default write concern (or need not):
    a cluster-wide default is set on the survivor, or the old config's default is w: "majority",
    which any config without arbiters keeps (repl_set_config.cpp isImplicitDefaultWriteConcernMajority)."""
    config = sim.node(member_id).config
    return (sim.cluster_wide_write_concern(member_id) is not None or config is None
            or implicit_default_is_majority(config))


def one_primary_goal(model: Any) -> str | None:
    """The goal in the state the run's goal check saw, as it was then: not settled forward (an
    hour later, a primary whose last peer was killed after the check has stepped down, which
    says nothing of the moment the run judged; that misread the moment in seed 5's report)."""
    sim = _model(model)
    primaries = sim.primaries()
    if len(primaries) != 1:
        return f"{len(primaries)} primaries"
    primary = sim.node(primaries[0])
    hosts = {m.host for m in primary.config.members} if primary.config else set()
    for node in sim.state.members:
        if node.process is Process.RUNNING and node.host in hosts and node.state not in (
                MemberState.PRIMARY, MemberState.SECONDARY, MemberState.ARBITER):
            return f"m{node.member_id} is {node.state.value}, a member of m{primary.member_id}'s config"
    return None


WRITE_WAIT = 5.0  # seconds a majority has to acknowledge a write (a client's wtimeout, as drengine's canary waits)


def majority_write(model: Any) -> str | None:
    """mongodb-force-primary's promise: a write a majority of the new set acknowledges. In a copy of
    the state (as the goal check saw it): one write on the one primary, WRITE_WAIT seconds of model
    time, then do the data-bearing voters of its config holding it reach its write majority? None
    when they do, else why not (a primary still catching up takes no writes; slow members ack late)."""
    copy = SimulatedReplicaSet.from_json(_model(model).to_json(), clock=SimulatedClock())
    primaries = copy.primaries()
    if len(primaries) != 1:
        return f"{len(primaries)} primaries"
    primary = copy.node(primaries[0])
    config = primary.config
    assert config is not None
    if primary.catching_up:
        return f"m{primary.member_id} is primary but still catching up: it takes no writes yet"
    written = copy.insert(primary.member_id, "oracle.majority", {"_id": "majority-write"}, w=1).optime
    copy.state.skew += WRITE_WAIT
    copy.advance()
    voters = {m.host for m in config.data_bearing_voters()}
    holders = sorted(f"m{n.member_id}" for n in copy.state.members
                     if n.host in voters and n.process is Process.RUNNING and has_optime(n, written))
    needed = config.write_majority_count()
    if len(holders) >= needed:
        return None
    return (f"a write on m{primary.member_id} reaches {len(holders)} of the {needed} data-bearing voters a majority "
            f"needs within {WRITE_WAIT:g} s ({', '.join(holders) or 'none'}): no majority-acknowledged write")


class MongoKit(Kit):
    kind = "mongodb"
    runbooks = ("mongodb-force-primary", "mongodb-rejoin")
    # step-down: the primary steps down (replSetStepDown, forced, 10 s), as on a lost heartbeat or a
    # maintenance window: a write waiting for its write concern then fails with 189.
    ops = ("kill", "hang", "revive", "step-down")
    flaps = ("kill", "step-down")
    timeouts = {"connect": 0.2, "read": 0.4, "catch_up": 5}
    data = Path("mongo-data")

    def situations(self, runbook: str) -> st.SearchStrategy[Situation]:
        return forced_then_back() if runbook == "mongodb-rejoin" else majority_lost()

    def model(self, backend: Any) -> Any:
        return backend.model

    def load(self, state: dict[str, Any]) -> Any:
        return SimulatedReplicaSet.from_json(json.dumps(state), clock=SimulatedClock())

    def copy(self, model: Any) -> Any:
        return SimulatedReplicaSet.from_json(_model(model).to_json(), clock=SimulatedClock())

    def applies(self, model: Any, op: str, member: str) -> bool:
        node = _model(model).node(int(member[1:]))
        return {"kill": node.process is not Process.KILLED, "hang": node.process is Process.RUNNING,
                "revive": node.process is not Process.RUNNING,
                "step-down": node.process is Process.RUNNING and node.state is MemberState.PRIMARY}.get(op, True)

    def change(self, backend: Any, op: str, member: str) -> None:
        if op == "step-down":
            with backend.wire.locked() as sim:
                # Asked again under the lock: the clients' monitors move the model between `applies` and here.
                node = sim.node(backend.member_ids[member])
                if node.process is Process.RUNNING and node.state is MemberState.PRIMARY:
                    sim.step_down(backend.member_ids[member], STEP_DOWN_SECONDS, force=True)
        else:
            getattr(backend.wire, op)(backend.member_ids[member])
        backend.save()

    def goal(self, runbook: str, model: Any, watch: Watch) -> str | None:
        found = one_primary_goal(model)
        if found is None and runbook == "mongodb-force-primary":
            return majority_write(model)
        return found

    def hosts(self, work: Path) -> dict[str, Any]:
        # mongodb-rejoin checks that a member's dbPath is empty on its host: each member gets an empty
        # directory of its own (the simulator's data is in the model: its answers tell the rest).
        self.data = work / "mongo-data"
        return {"localhost": {"address": "127.0.0.1", "transport": "local"}}

    def inventory(self, name: str, members: list[MemberSpec]) -> dict[str, Any]:
        cluster = super().inventory(name, members)
        # The fence methods of mongodb-force-primary run (the simulated backend answers them, nothing
        # reaches the host): a service stop holds a crashed member down, SIGKILL by pid file reaches a
        # hung one.
        cluster["service"] = {"stop": "systemctl stop mongod@{name}"}
        for member in cluster["members"]:
            path = self.data / member["name"]
            path.mkdir(parents=True, exist_ok=True)
            member.update(host="localhost", data_dir=str(path), pid_file=f"/var/run/mongodb/{member['name']}.pid")
        return cluster

    def watch(self, runbook: str) -> Watch:
        return MongoWatch(runbook)

    def expect_done(self, runbook: str, start: Any) -> str | None:
        return expect_done(runbook, _model(start))

    def mutating(self, language: str, text: str) -> bool:
        try:
            name = next(iter(json.loads(text)), "")
        except (ValueError, StopIteration):
            return True
        return name not in READS

    def once(self, language: str, text: str) -> bool:
        # A second forced reconfig jumps the version again and may drop a member that came back.
        return "replSetReconfig" in text


KIT = MongoKit()

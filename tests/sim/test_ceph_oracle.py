"""The Ceph explorer's oracle and invariants on hand-made clusters: which pools a lower min_size
unblocks and to what value, which PGs it cannot save, and the violations a run is charged with."""

from __future__ import annotations

from drengine.datastores.ceph import oracle
from drengine.datastores.ceph.explore import degrade_can_serve, quorum_can_form
from drengine.datastores.ceph.invariants import CephWatch
from drengine.datastores.ceph.scenarios import _add_pool, _cluster, scenario
from drengine.datastores.ceph.simcluster import CephSim
from drengine.explore.kit import Ledger
from drengine.journal import Entry, Event


def _entry(kind: Event, step: str = "x") -> Entry:
    return Entry(seq=1, ts=0.0, type=kind, data={"step": step}, line=1)


def test_only_the_pool_blocked_by_min_size_is_relieved_and_to_the_copies_up() -> None:
    sim = scenario("several-pools-some-affected")
    # volumes (3/2) has one HDD copy up of three; backups (3/1) serves on one; images (SSD) is healthy.
    assert oracle.min_size_relief(sim) == {"volumes": 1}
    assert oracle.blocked_otherwise(sim) == []
    assert degrade_can_serve(sim) is not None


def test_a_min_size_of_three_with_two_copies_up_is_relieved_to_two() -> None:
    sim = _cluster(3)
    _add_pool(sim, "strict", size=3, min_size=3, pg_num=4)
    sim.kill_osds([2])
    assert oracle.min_size_relief(sim) == {"strict": 2}


def test_pgs_whose_data_is_only_on_a_down_osd_are_blocked_otherwise() -> None:
    sim = _cluster(3)
    pool = _add_pool(sim, "rbd", size=3, min_size=2, pg_num=4)
    for pg in sim.state.pgs:
        pg.copies = [0]
    sim.kill_osds([0])
    assert sorted(oracle.blocked_otherwise(sim)) == [f"{pool.id}.{i}" for i in range(4)]
    assert oracle.min_size_relief(sim) == {}
    assert degrade_can_serve(sim) is None  # no choice serves them without osd.0


def test_lowering_a_healthy_pool_or_below_the_safe_value_is_charged() -> None:
    sim = _cluster(3)
    _add_pool(sim, "strict", size=3, min_size=3, pg_num=4)
    sim.kill_osds([2])
    watch, ledger = CephWatch("ceph-degrade"), Ledger()
    watch.after_event(_entry(Event.STEP_STARTED, "lower"), sim, ledger)
    sim.pool("strict").min_size = 1
    found = watch.after_event(_entry(Event.STATEMENT_SENT, "lower"), sim, ledger)
    assert [v.invariant for v in found] == ["ceph.min-size-not-below-what-unblocks"]
    healthy = scenario("healthy")
    watch = CephWatch("ceph-degrade")
    watch.after_event(_entry(Event.STEP_STARTED, "lower"), healthy, ledger)
    healthy.pool("drengine").min_size = 1
    found = watch.after_event(_entry(Event.STATEMENT_SENT, "lower"), healthy, ledger)
    assert [v.invariant for v in found] == ["ceph.min-size-only-where-it-unblocks"]
    named = Ledger(inputs={"pools": "drengine"})
    healthy.pool("drengine").min_size = 2
    watch = CephWatch("ceph-degrade")
    watch.after_event(_entry(Event.STEP_STARTED, "lower"), healthy, named)
    healthy.pool("drengine").min_size = 1
    assert watch.after_event(_entry(Event.STATEMENT_SENT, "lower"), healthy, named) == []  # the operator named it


def test_surgery_must_keep_the_running_monitors_and_drop_the_dead() -> None:
    sim = CephSim(scenario("mon-quorum-lost").state)  # a runs, b and c are dead
    assert quorum_can_form(sim) is not None
    watch, ledger = CephWatch("ceph-mon-quorum"), Ledger()
    watch.after_event(_entry(Event.STEP_STARTED, "surgery"), sim, ledger)
    sim.kill_mons(["a"])
    sim.inject_monmap("a", ["a", "b"])  # b, dead all along, kept
    found = watch.after_event(_entry(Event.STATEMENT_SENT, "surgery"), sim, ledger)
    assert [v.invariant for v in found] == ["ceph.surgery-removes-dead-monitors"]


def test_unfound_objects_given_up_are_charged_unless_their_osd_was_lost_or_named() -> None:
    for lost, named, charged in ((False, False, True), (True, False, False), (False, True, False)):
        sim = scenario("unfound-objects")  # osd.0 holds the newest version of some objects, and is down
        sim.osd(0).lost = lost
        ledger = Ledger(gone=["osd.0"] if named else [])
        watch = CephWatch("ceph-degrade")
        watch.after_event(_entry(Event.STEP_STARTED, "give-up"), sim, ledger)
        for pg in sim.state.pgs:
            pg.unfound.clear()
        found = {v.invariant for v in watch.after_event(_entry(Event.STATEMENT_SENT, "give-up"), sim, ledger)}
        assert found == ({"ceph.unfound-given-up-only-when-named"} if charged else set()), (lost, named)

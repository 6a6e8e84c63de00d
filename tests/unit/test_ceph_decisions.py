"""Pure decisions of the Ceph runbooks, on snapshots taken from the simulator's scenarios
(no I/O beyond the in-memory model): what is explained, which flags, which pools' min_size,
which OSDs out or lost, which unfound objects, and how the restore reads degrade journals."""

from __future__ import annotations

import json
from pathlib import Path

from drengine.datastores.ceph.connector import CephSnapshot, observe
from drengine.datastores.ceph.decisions import (
    UnfoundSource,
    decide_flags,
    decide_lost,
    decide_min_size,
    decide_out,
    decide_restore_min_size,
    decide_unfound,
    decide_unset,
    gone_osd_ids,
    io_check_pools,
)
from drengine.datastores.ceph.degrade_record import DegradeRun, default_min_size, merge_degrade_runs, read_degrade_run
from drengine.datastores.ceph.explain import explain_health
from drengine.datastores.ceph.facts import PoolMinSize
from drengine.datastores.ceph.scenarios import scenario
from drengine.datastores.ceph.simcluster import CephSim
from drengine.journal import Event, JournalWriter


def snap_of(sim: CephSim) -> CephSnapshot:
    return observe(sim, clock=lambda: 0.0)


def test_explain_names_inactive_pgs_and_the_osds_they_wait_for() -> None:
    lines = explain_health(snap_of(scenario("two-osds-down")))
    text = "\n".join(lines)
    assert "OSDs down: osd.1 on ceph2 (in), osd.2 on ceph3 (in)" in text
    assert "I/O BLOCKED: 8 inactive (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7) waiting for osd.1, osd.2" in text
    assert "HEALTH_WARN PG_AVAILABILITY" in text


def test_flags_only_while_osds_are_down_and_only_the_missing_ones() -> None:
    healthy = decide_flags(snap_of(scenario("healthy")), ["noout", "norebalance"])
    assert healthy.to_set == [] and "no OSD is down" in healthy.reason
    sim = scenario("one-osd-down")
    sim.state.flags.append("noout")
    d = decide_flags(snap_of(sim), ["noout", "norebalance"])
    assert d.to_set == ["norebalance"] and d.already == ["noout"]
    assert "already set before this run" in d.reason


def test_one_osd_down_keeps_min_size() -> None:
    d = decide_min_size(snap_of(scenario("one-osd-down")))
    assert d.changes == [] and "every PG is active" in d.reason


def test_two_osds_down_lowers_min_size_to_the_copies_up() -> None:
    d = decide_min_size(snap_of(scenario("two-osds-down")))
    assert [(c.pool, c.old, c.new) for c in d.changes] == [("drengine", 2, 1)]
    assert "8 PGs of drengine have 1 of 3 copies up, fewer than min_size 2, waiting for osd.1, osd.2" in d.reason


def test_min_size_on_exactly_the_blocked_pools() -> None:
    snap = snap_of(scenario("several-pools-some-affected"))
    d = decide_min_size(snap)
    assert [c.pool for c in d.changes] == ["volumes"]
    pools, notes = io_check_pools(snap, snap, d.changes)
    assert pools == ["backups", "volumes"] and notes == []


def test_min_size_does_not_help_down_pgs() -> None:
    sim = scenario("healthy")
    sim.kill_osds([1, 2])
    sim.pool("drengine").min_size = 1
    sim.write_object("drengine", "only-on-osd0", b"x", timeout=1)
    sim.pool("drengine").min_size = 2
    sim.kill_osds([0])
    sim.start_osds([1])
    d = decide_min_size(snap_of(sim))
    assert any("down: only osd.0 hold(s) their latest data" in n for n in d.not_helped), d.not_helped


def test_gone_osds_out_and_lost_only_when_something_waits() -> None:
    assert gone_osd_ids(["osd.2", "mon.b", "osd.x"]) == [2]
    snap = snap_of(scenario("one-osd-down"))
    out = decide_out(snap, [2])
    assert out.to_out == [2]
    lost = decide_lost(snap, [2], set(), [])
    assert lost.to_lose == [] and "no PG waits" in lost.reason
    unfound = [UnfoundSource(pgid="1.0", objects=2, might_have={2: "osd is down"})]
    lost = decide_lost(snap, [2], set(), unfound)
    assert lost.to_lose == [2] and "2 unfound objects may be on it" in lost.reason
    assert decide_lost(snap, [2], {2}, unfound).to_lose == []


def test_unfound_waits_for_osds_not_marked_lost() -> None:
    src = [UnfoundSource(pgid="1.0", objects=2, might_have={0: "osd is down", 1: "already probed"})]
    blocked = decide_unfound(src, set(), "revert")
    assert blocked.pgs == [] and "--gone osd.0" in blocked.blocked[0]
    ready = decide_unfound(src, {0}, "revert")
    assert ready.pgs == ["1.0"] and ready.objects == 2 and "previous version" in ready.reason


def test_restore_waits_for_copies_and_unsets_only_drengines_flags() -> None:
    from drengine.datastores.ceph.facts import DegradeRecord

    sim = scenario("two-osds-down")
    sim.pool("drengine").min_size = 1
    sim.state.flags += ["noout", "norebalance", "noscrub"]
    record = DegradeRecord(flags=["noout", "norebalance"],
                           min_size=[PoolMinSize(pool="drengine", size=3, old=2, new=1)])
    held = decide_restore_min_size(record, snap_of(sim))
    assert held.changes == [] and "restoring min_size 2 now would block their I/O again" in held.held[0]
    sim.start_osds([1, 2])
    d = decide_restore_min_size(record, snap_of(sim))
    assert [(c.pool, c.old, c.new) for c in d.changes] == [("drengine", 1, 2)]
    assert decide_unset(record, snap_of(sim)) == (["noout", "norebalance"], ["noscrub"])


def test_read_degrade_run_from_facts_and_statements(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    journal = JournalWriter(run_dir)
    journal.append(Event.RUN_STARTED, run_id="r", mode="run", runbook="ceph-degrade", cluster="c")
    journal.append(Event.STATEMENT_SENT, step="set-flags", target="c", language="ceph-mon",
                   text=json.dumps({"prefix": "osd set", "key": "noout"}), result="ok")
    # Interrupted before the step finished: only the statement tells what was changed.
    journal.append(Event.STATEMENT_SENT, step="lower-min-size", target="c", language="ceph-mon",
                   text=json.dumps({"prefix": "osd pool set", "pool": "rbd", "var": "min_size", "val": "1"}), result="ok")
    journal.close()
    run = read_degrade_run(run_dir, "c")
    assert run is not None and run.flags == ["noout"] and run.min_size_statements == {"rbd": 1}
    assert read_degrade_run(run_dir, "other") is None
    record = merge_degrade_runs([run], None)
    assert record.flags == ["noout"]
    assert [(c.pool, c.old, c.new) for c in record.min_size] == [("rbd", default_min_size(3), 1)]
    assert any("old value was not recorded" in n for n in record.notes)


def test_merge_keeps_the_oldest_min_size() -> None:
    first = DegradeRun(run_dir="a", started=1, finished="done", flags=["noout"],
                       min_size=[PoolMinSize(pool="p", size=5, old=3, new=2)], min_size_statements={"p": 2})
    second = DegradeRun(run_dir="b", started=2, finished="done", flags=["norebalance"],
                        min_size=[PoolMinSize(pool="p", size=5, old=2, new=1)], min_size_statements={"p": 1})
    record = merge_degrade_runs([first, second], None)
    assert record.flags == ["noout", "norebalance"]
    assert [(c.pool, c.old) for c in record.min_size] == [("p", 3)]


def test_mon_surgery_keeps_the_survivors_of_the_newest_monmap() -> None:
    from drengine.datastores.ceph.backend import MonProbe
    from drengine.datastores.ceph.decisions import decide_mon_surgery

    members = {"a": "mon.a", "b": "mon.b", "c": "mon.c"}
    probes = [MonProbe(name="a", running=True, state="probing", monmap_epoch=1, monmap=["a", "b", "c"]),
              MonProbe(name="b", running=False, error="no admin socket"),
              MonProbe(name="c", running=False, error="no admin socket")]
    d = decide_mon_surgery(probes, members)
    assert d.surgery is not None
    assert (d.surgery.survivors, d.surgery.removed, d.surgery.source) == (["mon.a"], ["b", "c"], "mon.a")
    majority = [probes[0], MonProbe(name="b", running=True, state="electing", monmap_epoch=1, monmap=["a", "b", "c"]), probes[2]]
    refused = decide_mon_surgery(majority, members)
    assert refused.surgery is None and "a majority, which forms a quorum by itself" in refused.reason
    nobody = decide_mon_surgery([probes[1], probes[2]], members)
    assert nobody.surgery is None and "no monitor is running" in nobody.reason


def test_monmaptool_print_and_mon_status_parsing() -> None:
    from drengine.datastores.ceph.backend import parse_mon_status, parse_monmaptool_print

    printed = ("monmaptool: monmap file /x\nepoch 2\nfsid 5a1c\nlast_changed 2026-11-26\nmin_mon_release 16 (pacific)\n"
               "election_strategy: 1\n0: [v2:127.0.0.1:3300/0] mon.a\n1: [v2:127.0.0.1:3301/0] mon.b\n")
    assert parse_monmaptool_print(printed) == ["a", "b"]
    status = parse_mon_status("a", json.dumps({"name": "a", "state": "probing",
                                               "monmap": {"epoch": 3, "mons": [{"name": "a"}, {"name": "b"}]}}))
    assert (status.running, status.state, status.monmap_epoch, status.monmap) == (True, "probing", 3, ["a", "b"])


def _journal(run_dir: Path, runbook: str, cluster: str, finished: list[str]) -> None:
    journal = JournalWriter(run_dir)
    journal.append(Event.RUN_STARTED, run_id=run_dir.name, mode="run", runbook=runbook, cluster=cluster)
    if runbook == "ceph-degrade":
        journal.append(Event.STATEMENT_SENT, step="set-flags", target=cluster, language="ceph-mon",
                       text=json.dumps({"prefix": "osd set", "key": "noout"}), result="ok")
    for step in finished:
        journal.append(Event.STEP_FINISHED, step=step, ok=True, outcome="ok", summary="", evidence=[], facts={}, attempt=1)
    journal.close()


def test_restored_degrade_runs_are_not_restored_twice(tmp_path: Path) -> None:
    from drengine.datastores.ceph.degrade_record import find_degrade_runs

    _journal(tmp_path / "1", "ceph-degrade", "c", [])
    # A restore that put everything back but ended with health not OK still counts as done.
    _journal(tmp_path / "2", "ceph-restore", "c", ["find-record", "wait-recovery", "restore-min-size", "unset-flags"])
    assert find_degrade_runs(tmp_path, "c") == []
    _journal(tmp_path / "3", "ceph-degrade", "c", [])
    _journal(tmp_path / "4", "ceph-restore", "c", ["find-record"])  # stopped before restoring anything
    _journal(tmp_path / "5", "ceph-degrade", "other", [])
    runs = find_degrade_runs(tmp_path, "c")
    assert [Path(r.run_dir).name for r in runs] == ["3"] and runs[0].flags == ["noout"]


def test_a_damaged_journal_of_another_run_is_skipped(tmp_path: Path) -> None:
    import pytest

    from drengine.datastores.ceph.degrade_record import find_degrade_runs
    from drengine.errors import JournalCorrupt

    _journal(tmp_path / "1", "ceph-degrade", "c", [])
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "journal.jsonl").write_text('{"not": "a journal"\n')
    assert len(find_degrade_runs(tmp_path, "c")) == 1
    # Someone edits which flag drengine set: the chain breaks and the restore refuses to trust it.
    journal = tmp_path / "1" / "journal.jsonl"
    journal.write_text(journal.read_text().replace("noout", "nodown"))
    with pytest.raises(JournalCorrupt):
        find_degrade_runs(tmp_path, "c")


def test_facts_journaled_under_the_former_actions_module_still_load() -> None:
    """A degrade run journaled before the Ceph actions were split names its facts by the old
    module; the restore must still read them."""
    from drengine.datastores.ceph.facts import FlagsSet
    from drengine.steps import Facts

    facts = Facts()
    facts.load({"flags_set": {"model": "drengine.datastores.ceph.actions:FlagsSet",
                              "value": {"wanted": ["noout"], "set_by_drengine": ["noout"], "already_set": []}}})
    assert facts.get("flags_set", FlagsSet).set_by_drengine == ["noout"]
    assert facts.dump()["flags_set"]["model"] == "drengine.datastores.ceph.facts:FlagsSet"

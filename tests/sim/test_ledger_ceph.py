"""The change ledger with the Ceph runbooks on the simulator: ceph-degrade's flags and min_size
are open entries (listed at its stop and its verdict, in `drengine changes`), and ceph-restore
closes exactly the ones it puts back."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import cli, of_type
from tests.sim.test_ceph_runbooks import Sim


def ledger(sim: Sim, *flags: str) -> dict[str, dict[str, object]]:
    code, out = cli("changes", "-i", str(sim.inventory), "--json", *flags)
    assert code == 0, out
    (cluster,) = json.loads(out)["clusters"]
    return {str(e["target"]): e for e in cluster["entries"]}


def test_a_stop_after_set_flags_lists_the_flags_with_their_undo(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    code, out, run_dir = sim.run("ceph-degrade", "--yes")  # stops at lower-min-size: a dangerous gate
    assert code == 3, out
    assert "left changed by this run (2 open in the ledger" in out
    assert "OSD flag noout set (was unset; run" in out and "undo: ceph osd unset noout" in out
    assert f"ceph-restore -i {sim.inventory} -c sim --input degrade_run={run_dir.resolve()}" in out
    opened = of_type(run_dir, "change_opened")
    assert [e.data["entry"]["target"] for e in opened] == ["noout", "norebalance"]
    assert all(e.data["step"] == "set-flags" and "(flags)" in e.data["entry"]["approved_by"] for e in opened)
    finished = of_type(run_dir, "run_finished")[-1]
    assert finished.data["end"] == "stopped" and finished.data["open_changes"] == [e.data["id"] for e in opened]

    entries = ledger(sim)
    assert set(entries) == {"noout", "norebalance"}
    assert entries["noout"]["open"] is True and entries["noout"]["kind"] == "ceph.flag"
    assert entries["noout"]["expect_undo_within"] == 86400
    code, out = cli("changes", "-i", str(sim.inventory))
    assert code == 0 and "sim: 2 open change(s)" in out and "undo: ceph osd unset norebalance" in out


def test_the_verdict_lists_min_size_and_restore_closes_everything(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    code, out, degrade_dir = sim.run("ceph-degrade", "--yes", "--accept-data-loss")
    assert code == 0, out
    assert "left changed by this run (3 open in the ledger" in out
    assert "min_size of pool drengine lowered from 2 to 1 (was 2" in out
    assert "undo: ceph osd pool set drengine min_size 2" in out
    assert {k: v["open"] for k, v in ledger(sim).items()} == {"noout": True, "norebalance": True, "pool drengine": True}

    model = sim.model()
    model.start_osds([1, 2])
    sim.change(model)
    code, out, restore_dir = sim.run("ceph-restore", "--yes")
    assert code == 0, out
    assert "left changed by this run" not in out
    closed = of_type(restore_dir, "change_closed")
    assert sorted(e.data["entry"]["target"] for e in closed) == ["noout", "norebalance", "pool drengine"]
    assert all(e.data["entry"]["closed_how"].startswith("by runbook ceph-restore") for e in closed)
    assert ledger(sim) == {}
    every = ledger(sim, "--all")
    assert {k: v["open"] for k, v in every.items()} == {"noout": False, "norebalance": False, "pool drengine": False}


def test_an_operators_own_flag_is_not_in_the_ledger(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    model = sim.model()
    model.state.flags.append("noout")  # set by an operator before the run: not drengine's to undo
    sim.change(model)
    code, out, _ = sim.run("ceph-degrade", "--yes")
    assert code == 3, out
    assert set(ledger(sim)) == {"norebalance"}

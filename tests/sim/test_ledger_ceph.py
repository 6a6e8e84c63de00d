"""The change ledger with the Ceph runbooks on the simulator: ceph-degrade's flags and min_size
are open entries (listed at its stop and its verdict, in `drengine changes`), and ceph-restore
closes exactly the ones it puts back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers import cli, of_type
from tests.sim.test_ceph_runbooks import Sim


def ledger(sim: Sim, *flags: str) -> dict[str, dict[str, Any]]:
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


def status_changes(sim: Sim) -> tuple[int, dict[str, dict[str, Any]]]:
    code, out = cli("status", "-i", str(sim.inventory), "--json")
    (cluster,) = json.loads(out)["clusters"]
    return code, {str(c["entry"]["target"]): c for c in cluster["changes"]}


def test_status_checks_each_entry_and_a_flag_removed_by_hand_is_closed_by_hand(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    code, out, _ = sim.run("ceph-degrade", "--yes")
    assert code == 3, out
    model = sim.model()
    model.state.flags.remove("noout")  # undone by hand
    sim.change(model)
    code, changes = status_changes(sim)
    assert changes["noout"]["holding"] == "already undone" and changes["noout"]["observed"].startswith("noout is unset")
    assert changes["norebalance"]["holding"] == "still in place"
    assert not changes["noout"]["overdue"] and changes["noout"]["expect_undo_within"] == 86400
    code, out = cli("status", "-i", str(sim.inventory))
    assert "changes left open by runs: 2" in out and "already undone: noout is unset again" in out
    assert f"$ drengine changes close {changes['noout']['entry']['id']} -i {sim.inventory}" in out

    # Still in place: refused, with the command that undoes it.
    code, out = cli("changes", "close", str(changes["norebalance"]["entry"]["id"]), "-i", str(sim.inventory),
                    "--reason", "done", "--runs-dir", str(sim.runs))  # -i after the subcommand, as status prints it
    assert code == 1 and "still in place on sim: norebalance is set. Undo it first (undo: ceph osd unset norebalance" in out
    # Undone by hand: closed, journaled in a run directory of its own, gone from the open ledger.
    short = str(changes["noout"]["entry"]["id"]).rsplit("-", 1)[1]  # the end of the id is enough
    code, out = cli("changes", "-i", str(sim.inventory), "close", short, "--reason", "unset it myself, INC-7",
                    "--runs-dir", str(sim.runs))
    assert code == 0, out
    assert "closed by" in out and "unset it myself, INC-7 (checked: already undone" in out
    (journal,) = [p for p in sim.runs.glob("*-sim-close-*/journal.jsonl")]
    (closed,) = of_type(journal.parent, "change_closed")
    assert closed.data["entry"]["closed_how"] == "by hand" and closed.data["checked"] == "already undone"
    assert set(ledger(sim)) == {"norebalance"}
    code, out = cli("changes", "-i", str(sim.inventory), "close", short, "--reason", "again", "--runs-dir", str(sim.runs))
    assert code == 2 and "already closed (by hand" in out


def test_an_entry_past_its_expected_undo_time_needs_action(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    code, out, _ = sim.run("ceph-degrade", "--yes")
    assert code == 3, out
    sim.inventory.write_text(sim.inventory.read_text().replace("clusters:", "expect_undo_within: {ceph.flag: 1ms}\nclusters:"))
    code, out = cli("status", "-i", str(sim.inventory))
    assert code == 2 and "not a duration" in out
    sim.inventory.write_text(sim.inventory.read_text().replace("ceph.flag: 1ms", "ceph.flags: 1"))
    code, out = cli("inventory", "check", "-i", str(sim.inventory))
    assert code == 2 and "no kind of ledger entry is called 'ceph.flags'. Did you mean 'ceph.flag'" in out
    sim.inventory.write_text(sim.inventory.read_text().replace("ceph.flags: 1", "ceph.flag: 1ms"))
    sim.inventory.write_text(sim.inventory.read_text().replace("1ms", "0.001"))
    code, changes = status_changes(sim)
    assert code == 1 and all(c["overdue"] for c in changes.values())
    code, out = cli("status", "-i", str(sim.inventory))
    assert "changes left open by runs: 2, 2 NEEDING ACTION (overdue)" in out and "OVERDUE (expected undone within 0 s)" in out


def test_an_overdue_entry_is_notified_once_and_every_open_entry_is_a_metric(tmp_path: Path) -> None:
    from tests.webhook import receiver

    sim = Sim(tmp_path, "two-osds-down")
    code, out, _ = sim.run("ceph-degrade", "--yes")
    assert code == 3, out
    with receiver() as hook:
        sim.inventory.write_text(sim.inventory.read_text().replace(
            "clusters:", f"notify: [{{name: team, url: '{hook.url}'}}]\nclusters:", 1))
        sim.inventory.write_text(sim.inventory.read_text().replace(
            "    drill_target: true", "    drill_target: true\n    expect_undo_within: {ceph.flag: 0.001}"))
        textfile = tmp_path / "changes.prom"
        code, out = cli("status", "-i", str(sim.inventory), "--textfile", str(textfile))
        assert code == 1, out
        overdue = [r.body for r in hook.received if r.body.get("event") == "change_overdue"]
        assert sorted(b["target"] for b in overdue) == ["noout", "norebalance"]
        assert all(b["severity"] == "warning" and "undo: ceph osd unset" in b["text"] for b in overdue)
        code, out = cli("status", "-i", str(sim.inventory))
        code, out = cli("changes", "-i", str(sim.inventory))
        assert len([r for r in hook.received if r.body.get("event") == "change_overdue"]) == 2  # told once each
    prom = textfile.read_text()
    assert 'drengine_changes_open{cluster="sim"} 2.0' in prom
    assert 'drengine_change_overdue{cluster="sim",id=' in prom and 'kind="ceph.flag",target="noout"} 1.0' in prom
    assert "drengine_change_open_age_seconds{" in prom and "drengine_change_expected_undo_seconds{" in prom

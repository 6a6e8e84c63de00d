"""Issue 24's real-Ceph story for the change ledger, on a Pacific lab on loopback (3 monitors,
1 manager, 3 memstore OSDs): ceph-degrade stopped after set-flags lists the flags as open;
`drengine status` shows them with their age; a flag removed by hand is "already undone" and
closes with `drengine changes close`; ceph-restore closes the other."""

from __future__ import annotations

import json
import time

import pytest

from drengine.datastores.ceph import lab as ceph_lab
from tests.helpers import cli, of_type
from tests.lab.test_ceph_lab_runbooks import Lab, _settled_blocked, lab

pytestmark = pytest.mark.lab
__all__ = ["lab"]


def _status_changes(lab: Lab) -> dict[str, dict[str, object]]:
    code, out = cli("status", "-i", str(lab.inventory), "-c", ceph_lab.CLUSTER_NAME, "--json")
    assert code in (0, 1), out
    (cluster,) = json.loads(out)["clusters"]
    return {str(c["entry"]["target"]): c for c in cluster["changes"]}


def test_flags_left_by_a_stopped_degrade_are_tracked_until_undone(lab: Lab) -> None:
    ceph_lab.kill_osds(lab.dir, [1, 2])
    lab.wait_for("the pool's PGs peered short of copies", _settled_blocked)

    # --yes alone: set-flags runs, the dangerous lower-min-size gate stops the run.
    code, out, degrade = lab.run("ceph-degrade", "--yes")
    assert code == 3, out
    assert "stopped at step lower-min-size" in out
    assert "left changed by this run (2 open in the ledger" in out
    assert "undo: ceph osd unset noout" in out and "undo: ceph osd unset norebalance" in out
    assert f"--input degrade_run={degrade.resolve()}" in out
    opened = {e.data["entry"]["target"]: e.data["id"] for e in of_type(degrade, "change_opened")}
    assert set(opened) == {"noout", "norebalance"}

    time.sleep(1.1)  # an age a person can read
    changes = _status_changes(lab)
    assert {t: c["holding"] for t, c in changes.items()} == {"noout": "still in place", "norebalance": "still in place"}
    assert all(float(str(c["age_seconds"])) >= 1.0 and c["overdue"] is False for c in changes.values())
    code, out = cli("status", "-i", str(lab.inventory), "-c", ceph_lab.CLUSTER_NAME)
    assert "changes left open by runs: 2" in out and "OSD flag noout set: open " in out

    # An operator unsets noout by hand: status says so, and the entry closes with `changes close`.
    with lab.connector() as api:
        api.mon_command({"prefix": "osd unset", "key": "noout"})
    lab.wait_for("noout unset", lambda s: "noout" not in s.flags)
    changes = _status_changes(lab)
    assert changes["noout"]["holding"] == "already undone" and changes["norebalance"]["holding"] == "still in place"
    code, out = cli("changes", "-i", str(lab.inventory), "close", opened["norebalance"], "--reason", "x",
                    "--runs-dir", str(lab.runs))
    assert code == 1 and "still in place" in out  # norebalance is still set: refused
    code, out = cli("changes", "-i", str(lab.inventory), "close", opened["noout"], "--reason", "unset by hand, INC-24",
                    "--runs-dir", str(lab.runs))
    assert code == 0, out

    # The OSDs are back: ceph-restore unsets norebalance (noout is already gone) and closes its entry.
    ceph_lab.restart_osds(lab.dir, [1, 2])
    code, out, restore = lab.run("ceph-restore", "--yes", "--input", f"degrade_run={degrade}")
    assert code == 0, out
    (closed,) = of_type(restore, "change_closed")
    assert closed.data["id"] == opened["norebalance"] and closed.data["step"] == "unset-flags"
    code, out = cli("changes", "-i", str(lab.inventory), "--json")
    assert json.loads(out)["clusters"][0]["entries"] == []
    code, out = cli("changes", "-i", str(lab.inventory), "--all", "--json")
    how = {e["target"]: e["closed_how"] for e in json.loads(out)["clusters"][0]["entries"]}
    assert how["noout"] == "by hand" and how["norebalance"].startswith("by runbook ceph-restore")
    snap = lab.observe()
    assert not {"noout", "norebalance"} & set(snap.flags)

"""The change ledger lives with the run registry: with the team lock on a real three-member
etcd, the entries a run opens are etcd keys, seen from another machine (another lock
directory), and a manual close is written there too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drengine.inventory import load_inventory
from drengine.lock.changes import cluster_changes
from tests.helpers import cli
from tests.lab.test_etcd_lock import Etcd, etcd
from tests.sim.test_ceph_runbooks import Sim

pytestmark = pytest.mark.lab
__all__ = ["etcd"]


def test_the_ledger_is_on_etcd_for_the_whole_team(etcd: Etcd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not etcd.all_healthy():
        etcd.restart_all()
    sim = Sim(tmp_path, "two-osds-down")
    sim.inventory.write_text(sim.inventory.read_text() + f"lock: {json.dumps(etcd.lock())}\n")
    monkeypatch.setenv("DRENGINE_LOCK_DIR", str(tmp_path / "machine-a"))
    code, out, _ = sim.run("ceph-degrade", "--yes")
    assert code == 3 and "left changed by this run (2 open in the ledger" in out, out

    monkeypatch.setenv("DRENGINE_LOCK_DIR", str(tmp_path / "machine-b"))  # another machine of the team
    found = cluster_changes(load_inventory(sim.inventory), "sim")
    assert found.backend == "etcd" and found.problem is None
    assert sorted(e.target for e in found.entries if e.is_open) == ["noout", "norebalance"]
    assert not (tmp_path / "machine-a" / "sim.changes").exists()  # not on the local disk

    model = sim.model()
    model.state.flags.remove("noout")
    sim.change(model)
    noout = next(e for e in found.entries if e.target == "noout")
    code, out = cli("changes", "-i", str(sim.inventory), "close", noout.id, "--reason", "by hand", "--runs-dir",
                    str(sim.runs))
    assert code == 0, out
    code, out = cli("changes", "-i", str(sim.inventory), "--json")
    assert [e["target"] for e in json.loads(out)["clusters"][0]["entries"]] == ["norebalance"]

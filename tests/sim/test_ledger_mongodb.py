"""The change ledger with the MongoDB runbooks (simulator over the wire protocol): each member a
forced reconfig removes is an open entry; mongodb-rejoin closes the one it adds back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli, of_type
from tests.sim.test_mongodb_runbooks import inventory, run, state

pytestmark = pytest.mark.sim


def test_removed_members_are_open_until_added_back(tmp_path: Path) -> None:
    state_file = tmp_path / "shared.json"
    empty = tmp_path / "m2-data"
    empty.mkdir()
    inv = inventory(tmp_path, "majority-lost-5", state_file=state_file, data_dirs={2: empty})
    code, out, run_dir = run(tmp_path, inv, "--yes", "--accept-data-loss")
    assert code == 0, out
    opened = [e.data["entry"] for e in of_type(run_dir, "change_opened")]
    assert [(e["kind"], e["target"]) for e in opened] == [("mongodb.removed", m) for m in ("m2", "m3", "m4")]
    assert opened[0]["step"] == "force-reconfig" and 'then on the primary: rs.add("127.0.0.1:' in opened[0]["undo"]
    assert opened[0]["undo_runbook"] == f"drengine run mongodb-rejoin -i {inv} -c sim"
    assert "left changed by this run (3 open in the ledger" in out

    code, out = cli("status", "-i", inv, "--json")
    checks = {c["entry"]["target"]: c for c in json.loads(out)["clusters"][0]["changes"]}
    assert {t: c["holding"] for t, c in checks.items()} == {m: "still in place" for m in ("m2", "m3", "m4")}

    sim = state(state_file)
    sim.wipe(2)
    sim.revive(2)
    state_file.write_text(sim.to_json())
    code, out, run_dir = run(tmp_path, inv, "--yes", runbook="mongodb-rejoin", name="rejoin")
    assert code == 0, out
    (closed,) = of_type(run_dir, "change_closed")
    assert closed.data["entry"]["target"] == "m2" and closed.data["step"] == "add-member"
    code, out = cli("changes", "-i", inv, "--json")
    assert sorted(e["target"] for e in json.loads(out)["clusters"][0]["entries"]) == ["m3", "m4"]

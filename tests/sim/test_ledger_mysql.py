"""The change ledger with the MariaDB runbooks on the simulator: the fenced old primary and its
read servers put in maint are open entries after a promotion (listed in the verdict, checked by
`drengine status`), and mariadb-rejoin closes them once the old primary replicates again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drengine.datastores.mariadb.sim import SimCluster
from tests.helpers import cli, of_type
from tests.sim.test_mariadb_runbooks import INVENTORY, _replication_secret

pytestmark = pytest.mark.sim
__all__ = ["_replication_secret"]


def with_state(tmp_path: Path, scenario: str) -> tuple[str, Path]:
    state = tmp_path / "state.json"
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY.format(scenario=scenario).replace(
        f"simulated: {{scenario: {scenario}}}", f"simulated: {{scenario: {scenario}, state_file: {state}}}").replace(
        "frontend:", "rejoined: ready\n        frontend:"))
    return str(path), state


def test_with_rejoined_maint_a_read_server_in_maint_is_the_inventorys_choice(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY.format(scenario="primary-hung"))
    code, out = cli("run", "mariadb-promote-survivor", "-i", str(inventory), "-c", "sim", "--run-dir",
                    str(tmp_path / "r1"), "--yes", "--accept-data-loss")
    assert code == 0, out
    assert [e.data["entry"]["kind"] for e in of_type(tmp_path / "r1", "change_opened")] == ["mariadb.fenced"]


def test_the_fenced_old_primary_is_open_until_rejoined(tmp_path: Path) -> None:
    inventory, state = with_state(tmp_path, "primary-hung")
    code, out = cli("run", "mariadb-promote-survivor", "-i", inventory, "-c", "sim", "--run-dir", str(tmp_path / "r1"),
                    "--yes", "--accept-data-loss")
    assert code == 0, out
    opened = {e.data["entry"]["kind"]: e.data["entry"] for e in of_type(tmp_path / "r1", "change_opened")}
    assert set(opened) == {"mariadb.fenced", "mariadb.proxy_maint"}
    fenced = opened["mariadb.fenced"]
    assert fenced["target"] == "db1" and fenced["what"].startswith("db1 fenced by service:")
    assert fenced["before"] == "hung" and fenced["approved_by"].endswith("(flags)")
    assert fenced["undo_runbook"] == f"drengine run mariadb-rejoin -i {inventory} -c sim"
    maint = opened["mariadb.proxy_maint"]
    assert maint["target"] == "haproxy1 mariadb_read/db1" and maint["before"] == "ready"
    assert "left changed by this run (2 open in the ledger" in out

    code, out = cli("status", "-i", inventory, "--json")
    checks = {c["entry"]["kind"]: c for c in json.loads(out)["clusters"][0]["changes"]}
    assert checks["mariadb.fenced"]["holding"] == "still in place"
    assert checks["mariadb.fenced"]["observed"] == "db1 is not running"
    assert checks["mariadb.proxy_maint"]["holding"] == "still in place"

    sim = SimCluster.model_validate_json(state.read_text())
    sim.server("db1").alive = True  # the old primary is started again, read-only
    sim.server("db1").read_only = True
    state.write_text(sim.model_dump_json())
    code, out = cli("run", "mariadb-rejoin", "-i", inventory, "-c", "sim", "--run-dir", str(tmp_path / "r2"), "--yes")
    assert code == 0, out
    closed = {e.data["entry"]["kind"] for e in of_type(tmp_path / "r2", "change_closed")}
    assert closed == {"mariadb.fenced", "mariadb.proxy_maint"}
    readmit = next(e for e in of_type(tmp_path / "r2", "change_closed") if e.data["entry"]["kind"] == "mariadb.proxy_maint")
    assert readmit.data["step"] == "readmit"
    code, out = cli("changes", "-i", inventory, "--json")
    assert json.loads(out)["clusters"][0]["entries"] == []


def test_a_fence_found_done_on_resume_is_still_an_open_entry(tmp_path: Path) -> None:
    """The engine killed inside the fence step, after its first statement: the resumed run finds
    the old primary fenced (the step is not run again) and still declares what it left changed."""
    import os
    import signal

    from tests.helpers import cli_subprocess

    inventory, _ = with_state(tmp_path, "primary-hung")
    run_dir = tmp_path / "r1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRENGINE_TEST")}
    crashed = cli_subprocess("run", "mariadb-promote-survivor", "-i", inventory, "-c", "sim", "--run-dir", str(run_dir),
                             "--yes", "--accept-data-loss",
                             env={**env, "DRENGINE_TEST_CRASH_AFTER": "statement_sent:fence-old-primary"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    assert not of_type(run_dir, "change_opened")
    resumed = cli_subprocess("run", "--resume", str(run_dir), "--yes", "--accept-data-loss", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    fenced = [e.data["entry"] for e in of_type(run_dir, "change_opened") if e.data["entry"]["kind"] == "mariadb.fenced"]
    assert len(fenced) == 1 and fenced[0]["target"] == "db1" and fenced[0]["before"] == "hung", fenced

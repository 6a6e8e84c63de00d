"""A run that fails after it changed the cluster is not a dead end (issue 25, item 2): it says
what it changed, what holds now, and goes on with `--resume` at the first step after the last change."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import ROOT, SIM_MARIADB, cli, of_type

# Promote, then a safety check that now refuses (a writable primary answers: the one just promoted).
PROMOTE_THEN_CHECK = """\
name: promote-then-check
kind: mariadb
summary: promote the survivor, then a check that refuses after the change
goal:
  action: mariadb.goal_replication
start: observe
steps:
  - id: observe
    action: mariadb.observe
    next: check-no-primary
  - id: check-no-primary
    action: mariadb.check_no_primary
    next: choose-survivor
  - id: choose-survivor
    action: mariadb.choose_survivor
    next: fence-old-primary
  - id: fence-old-primary
    action: mariadb.fence_old_primary
    gate: confirm
    next: promote
  - id: promote
    action: mariadb.promote
    gate: confirm
    next: observe-again
  - id: observe-again
    action: mariadb.observe
    next: check-again
  - id: check-again
    action: mariadb.check_no_primary
    next: done
ends:
  done: {success: true}
  failed:
    success: false
    advice: repoint the replicas by hand
"""


def test_a_failure_after_a_change_says_what_changed_what_holds_and_resumes_at_the_failed_step(tmp_path: Path) -> None:
    runbook = tmp_path / "promote-then-check.yaml"
    runbook.write_text(PROMOTE_THEN_CHECK)
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(SIM_MARIADB)
    run_dir = tmp_path / "run"
    code, out = cli("run", str(runbook), "-i", str(inventory), "-c", "sim", "--run-dir", str(run_dir), "--yes")
    assert code == 1, out
    assert "FAILED: step check-again failed: a writable primary is reachable: db2" in out
    assert "the run changed the cluster before it failed:" in out
    assert "    promote: " in out
    assert "the cluster now: " in out and "(the runbook's goal does not hold)" in out
    assert "go on at step observe-again" in out  # what was observed after the change is observed again
    assert f"$ drengine run --resume {run_dir}" in out
    assert "or: repoint the replicas by hand" in out  # the runbook's own advice for this end
    assert f"$ drengine runs close {run_dir} --reason" in out
    finished = of_type(run_dir, "run_finished")[-1].data
    assert finished["end"] == "failed" and finished["resumable"] is True and finished["resume_at"] == "observe-again"
    assert any(line.startswith("promote: ") for line in finished["changed"])
    promoted = [e for e in of_type(run_dir, "statement_sent") if e.data["target"] == "db2"]

    code, out = cli("runs", "list", "--runs-dir", str(tmp_path))
    assert code == 0 and "failed" in out and "yes" in out, out

    code, out = cli("run", "--resume", str(run_dir), "--yes")
    assert code == 1, out  # the check still refuses: the primary promoted before is still there
    resumed = of_type(run_dir, "run_resumed")[-1].data
    assert resumed["state"] == "observe-again"
    assert [e for e in of_type(run_dir, "statement_sent") if e.data["target"] == "db2"] == promoted, \
        "the resume sent something to the promoted member again"
    assert "    promote: " in out  # what the run changed before the resume is still said

    code, out = cli("runs", "close", str(run_dir), "--reason", "finished by hand")
    assert code == 0, out
    assert of_type(run_dir, "run_finished")[-1].data["end"] == "closed"


def test_a_failure_before_any_change_stays_a_plain_failure(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(SIM_MARIADB.replace("primary-dead-replica-lagging", "primary-alive"))
    run_dir = tmp_path / "run"
    code, out = cli("run", "mariadb-promote-survivor", "-i", str(inventory), "-c", "sim", "--run-dir", str(run_dir),
                    "--yes")
    assert code == 1, out
    assert "the run changed the cluster" not in out
    assert "resumable" not in of_type(run_dir, "run_finished")[-1].data


def test_mongodb_forced_reconfig_then_a_slow_majority_is_resumable_and_listed_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, out = cli("run", "mongodb-force-primary", "-i", str(ROOT / "inventory" / "simulated-mongodb.yaml"),
                    "-c", "sim-mongo-lagging", "--run-dir", str(run_dir), "--yes", "--accept-data-loss")
    assert code == 1, out
    assert "force-reconfig: m1 accepted the forced config" in out
    assert "go on at step verify" in out and f"$ drengine run --resume {run_dir}" in out
    assert "mongodb-rejoin" in out  # the runbook's advice for its failed end
    code, out = cli("runs", "show", str(run_dir))
    assert code == 0, out
    verify_rows = [line for line in out.splitlines() if line.strip().startswith("verify ")]
    assert len(verify_rows) == 1 and "(2 attempts)" in verify_rows[0], out
    assert f"resumable: $ drengine run --resume {run_dir}" in out

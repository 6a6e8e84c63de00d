"""The safety core on three real mariadbd processes: a resumed run acts on what is true now,
and a step past its deadline sends nothing more and is finished by resume."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_mariadb_lab import assert_promoted, rows, sql, write_rows

from drengine.datastores.mariadb import lab as lab_mariadb
from drengine.journal import verify
from drengine.lab.procs import LabDir
from tests.helpers import ROOT, cli, cli_subprocess, events, mariadb_lab, of_type


@pytest.fixture
def lab() -> Iterator[tuple[LabDir, str]]:
    with mariadb_lab("drengine-safety-lab-") as made:
        yield made


def db2_ahead_of_db3(lab: LabDir) -> None:
    write_rows(lab, 1, 10)
    lab_mariadb.wait_replicated(lab)
    sql(lab, "db3", "STOP SLAVE IO_THREAD")  # db3 receives nothing more
    write_rows(lab, 11, 20)
    lab_mariadb.wait_replicated(lab, replicas=("db2",))
    lab_mariadb.kill(lab, "db1")


def finished_last(run_dir: Path) -> None:
    verify(run_dir)
    assert events(run_dir)[-1].type.value == "run_finished"


def test_resume_after_the_most_advanced_replica_wakes_up(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    lab_dir, inventory = lab
    db2_ahead_of_db3(lab_dir)
    run_dir = tmp_path / "r"
    lab_mariadb.hang(lab_dir, "db2")
    try:
        code, out = cli("run", "mariadb-promote-survivor", "-i", inventory, "-c", "lab-mariadb",
                        "--run-dir", str(run_dir), "--yes")
        assert code == 3, out
        asked = [e.data for e in of_type(run_dir, "gate_asked") if e.data["step"] == "promote"]
        assert asked[-1]["summary"] == "promote db3 to primary" and asked[-1]["level"] == "dangerous"
    finally:
        lab_mariadb.resume(lab_dir, "db2")
    code, out = cli("run", "--resume", str(run_dir), "--yes", "--accept-data-loss")
    assert code == 0, out
    assert "observed again" in out.lower() or of_type(run_dir, "observed_again")
    assert_promoted(lab_dir, "db2", "db3", 30)  # db2 had all 30 rows: nothing lost
    assert rows(lab_dir, "db2") == 30
    finished_last(run_dir)


def test_promote_past_a_tiny_deadline_is_finished_by_resume(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    lab_dir, inventory = lab
    write_rows(lab_dir, 1, 5)
    lab_mariadb.wait_replicated(lab_dir)
    lab_mariadb.kill(lab_dir, "db1")
    text = (ROOT / "runbooks" / "mariadb-promote-survivor.yaml").read_text()
    runbook = tmp_path / "tiny.yaml"
    runbook.write_text(text.replace("action: mariadb.promote\n    gate: confirm\n    timeout: 600",
                                    "action: mariadb.promote\n    gate: confirm\n    timeout: 0.003"))
    run_dir = tmp_path / "r"
    code, out = cli("run", str(runbook), "-i", inventory, "-c", "lab-mariadb", "--run-dir", str(run_dir), "--yes")
    attempts = 1
    while code != 0 and attempts < 10:
        assert code == 1 and "INTERRUPTED" in out, out
        finished_last(run_dir)
        assert of_type(run_dir, "run_finished")[-1].data["end"] == "interrupted"
        code, out = cli("run", "--resume", str(run_dir), "--yes")
        attempts += 1
    assert code == 0, out
    assert attempts > 1  # the deadline did interrupt the step at least once
    finished_last(run_dir)
    sent = [(e.data["target"], e.data["text"]) for e in of_type(run_dir, "statement_sent")
            if e.data["step"] == "promote" and not e.data["text"].startswith("SELECT")]
    assert len(sent) == len(set(sent)), sent
    assert_promoted(lab_dir, "db2", "db3", 5)


def test_resume_after_the_fence_promotes_the_replica_that_woke(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    """Issue 21, defect 1: the primary and the most advanced replica db2 are hung; the run fences
    the primary and the engine dies right after; db2 wakes; the resume observes again and
    promotes db2 (not the stale choice db3), losing nothing."""
    lab_dir, inventory = lab
    write_rows(lab_dir, 1, 10)
    lab_mariadb.wait_replicated(lab_dir)
    sql(lab_dir, "db3", "STOP SLAVE IO_THREAD")  # db3 receives nothing more
    write_rows(lab_dir, 11, 20)
    lab_mariadb.wait_replicated(lab_dir, replicas=("db2",))
    lab_mariadb.hang(lab_dir, "db1")
    lab_mariadb.hang(lab_dir, "db2")
    run_dir = tmp_path / "r"
    env = {**os.environ, "DRENGINE_TEST_CRASH_AFTER": "step_finished:fence-old-primary:1"}
    try:
        first = cli_subprocess("run", "mariadb-promote-survivor", "-i", inventory, "-c", "lab-mariadb", "--yes",
                               "--accept-data-loss", "--run-dir", str(run_dir), env=env, timeout=300)
        assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
        chosen = of_type(run_dir, "step_finished")
        assert any(e.data["step"] == "choose-survivor" and "chose db3" in e.data["summary"] for e in chosen)
    finally:
        lab_mariadb.resume(lab_dir, "db2")
    env.pop("DRENGINE_TEST_CRASH_AFTER")
    second = cli_subprocess("run", "--resume", str(run_dir), "--yes", "--accept-data-loss", env=env, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    promote = [e.data for e in of_type(run_dir, "step_started") if e.data["step"] == "promote"]
    assert promote[-1]["summary"] == "promote db2 to primary", promote
    assert_promoted(lab_dir, "db2", "db3", 30)  # db2 had all 30 rows: nothing lost
    assert rows(lab_dir, "db2") == 30
    finished_last(run_dir)

"""The lock around real runs (separate processes) with the local backend: a second run on the same
machine is refused naming the holder; two "machines" (two lock directories) both proceed, which
is what the etcd lock exists to prevent (tests/lab/test_etcd_lock.py); --break-lock stops the
holder at its next step boundary; the registry shows a run waiting at a gate."""

from __future__ import annotations

from pathlib import Path

from drengine.inventory import load_inventory
from drengine.lock.registry import RunStatus, list_runs
from tests.helpers import of_type
from tests.lockhelpers import CLUSTER, resume, run, simulated_inventory, start_held


def test_two_machines_both_proceed_with_the_local_lock(tmp_path: Path) -> None:
    inventory = simulated_inventory(tmp_path)
    first = start_held(inventory, tmp_path / "r1", tmp_path / "machine-a", "step_finished:choose-survivor")
    code, out = run(inventory, tmp_path / "r2", tmp_path / "machine-b")
    assert code == 0, out
    code, out = first.let_go()
    assert code == 0, out
    # Both promoted the same cluster: the local lock cannot see another machine's run.
    for run_dir in (tmp_path / "r1", tmp_path / "r2"):
        assert [e.data["ok"] for e in of_type(run_dir, "step_finished") if e.data["step"] == "promote"] == [True]


def test_a_second_run_on_the_same_machine_is_refused_naming_the_holder(tmp_path: Path) -> None:
    inventory = simulated_inventory(tmp_path)
    locks = tmp_path / "machine-a"
    first = start_held(inventory, tmp_path / "r1", locks, "step_finished:choose-survivor")
    code, out = run(inventory, tmp_path / "r2", locks)
    assert code == 4, out
    assert "is locked by run" in out and f"run directory {tmp_path / 'r1'}" in out and "--break-lock" in out
    assert not of_type(tmp_path / "r2", "run_started")
    assert first.let_go()[0] == 0


def test_break_lock_stops_the_holder_at_its_next_step_boundary_and_it_can_resume(tmp_path: Path) -> None:
    inventory = simulated_inventory(tmp_path)
    locks = tmp_path / "machine-a"
    first = start_held(inventory, tmp_path / "r1", locks, "step_finished:choose-survivor")
    code, out = run(inventory, tmp_path / "r2", locks, "--break-lock")
    assert code == 0, out
    [broken] = of_type(tmp_path / "r2", "lock_broken")
    assert broken.data["previous"].startswith("run ") and str(tmp_path / "r1") in broken.data["previous"]
    assert broken.data["previous_alive"] is True and broken.data["backend"] == "local"

    code, out = first.let_go()
    assert code == 4, out
    assert "LOCK LOST before step promote" in out and "--break-lock gave it to" in out
    types = [e.type.value for e in of_type(tmp_path / "r1", "lock_lost") + of_type(tmp_path / "r1", "run_finished")]
    assert types == ["lock_lost", "run_finished"]
    started = [e.data["step"] for e in of_type(tmp_path / "r1", "step_started")]
    assert "promote" not in started  # nothing was sent after the lock was lost
    assert of_type(tmp_path / "r1", "run_finished")[0].data["end"] == "stopped"

    code, out = resume(tmp_path / "r1", locks)
    assert code == 0, out
    assert [e.data["ok"] for e in of_type(tmp_path / "r1", "step_finished") if e.data["step"] == "promote"] == [True]


def test_break_glass_local_lock_needs_a_reason(tmp_path: Path) -> None:
    inventory = simulated_inventory(tmp_path)
    code, out = run(inventory, tmp_path / "r1", tmp_path / "locks", "--lock", "local")
    assert code == 2 and "--reason" in out
    code, out = run(inventory, tmp_path / "r2", tmp_path / "locks", "--lock", "local", "--reason", "practice")
    assert code == 0, out
    notes = [e.data["text"] for e in of_type(tmp_path / "r2", "note")]
    assert any("already the local one" in n for n in notes)
    assert not of_type(tmp_path / "r2", "override")


def test_the_registry_shows_a_run_waiting_at_a_gate_then_its_result(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    inventory_path = simulated_inventory(tmp_path, lock=f"{{backend: local, dir: {locks}}}")
    inventory = load_inventory(inventory_path)
    first = start_held(inventory_path, tmp_path / "r1", tmp_path / "ignored", "gate_asked:promote")
    [cluster] = list_runs(inventory, CLUSTER)
    assert cluster.holder is not None and cluster.holder.run_dir == str(tmp_path / "r1")
    [view] = cluster.runs
    assert view.status is RunStatus.WAITING and view.holds_lock and view.run.gate == "promote (confirm)"
    assert view.run.runbook == "mariadb-promote-survivor" and view.run.mode == "run"
    assert first.let_go()[0] == 0
    [cluster] = list_runs(inventory, CLUSTER)
    [view] = cluster.runs
    assert cluster.holder is None and view.status is RunStatus.FINISHED and view.run.success is True

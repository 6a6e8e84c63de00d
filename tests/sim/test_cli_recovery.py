"""What the run and plan commands tell the operator to type next keeps what the operator gave,
and a run is resumed by its id as `drengine runs show` names it."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import ROOT, cli

INVENTORY = str(ROOT / "inventory" / "simulated.yaml")


def test_a_run_is_resumed_by_its_id(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code, out = cli("run", "mariadb-promote-survivor", "-i", INVENTORY, "-c", "sim-mariadb",
                    "--run-dir", str(runs / "20261207-first"))
    assert code == 3 and "stopped at step promote" in out, out
    code, out = cli("run", "--resume", "20261207-fi", "--runs-dir", str(runs), "--yes")
    assert code == 0, out
    assert "DONE" in out
    code, out = cli("run", "--resume", "nosuchrun", "--runs-dir", str(runs), "--yes")
    assert code == 2 and "no run 'nosuchrun'" in out, out


def test_the_plan_says_how_to_run_it_with_the_inputs_given(tmp_path: Path) -> None:
    code, out = cli("plan", "elasticsearch-reallocate", "-i", str(ROOT / "inventory" / "simulated-elasticsearch.yaml"), "-c", "sim-es-two-stale-copies",
                    "--run-dir", str(tmp_path / "plan"), "--input", "stale_copy=orders[0]=node-4")
    assert "to run it: $ drengine run elasticsearch-reallocate" in out, out
    assert "--input 'stale_copy=orders[0]=node-4'" in out


def test_a_failing_plan_leads_with_the_step_that_fails(tmp_path: Path) -> None:
    code, out = cli("plan", "elasticsearch-reallocate", "-i", str(ROOT / "inventory" / "simulated-elasticsearch.yaml"),
                    "-c", "sim-es-two-stale-copies", "--run-dir", str(tmp_path / "plan"))
    assert code == 1, out
    headline = next(line for line in out.splitlines() if line.startswith("PLAN FAILS"))
    assert headline.startswith("PLAN FAILS: step allocate-stale-primary failed"), headline
    assert "--input stale_copy=orders[0]=<node>" in headline


def test_a_stopped_run_is_closed_with_a_reason_and_no_longer_resumable(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code, out = cli("run", "mariadb-promote-survivor", "-i", INVENTORY, "-c", "sim-mariadb",
                    "--run-dir", str(runs / "20261207-stopped"))
    assert code == 3, out
    code, out = cli("runs", "close", "20261207-st", "--runs-dir", str(runs), "--reason", "")
    assert code == 2 and "say why" in out, out
    code, out = cli("runs", "close", "20261207-st", "--runs-dir", str(runs), "--reason", "promoted by hand, INC-42")
    assert code == 0 and "closed by" in out and "INC-42" in out, out
    code, out = cli("runs", "list", "--runs-dir", str(runs))
    assert "closed" in out and "drengine run --resume" not in out, out
    code, out = cli("run", "--resume", str(runs / "20261207-stopped"), "--yes")
    assert code == 2 and "already finished" in out, out
    code, out = cli("runs", "close", "20261207-st", "--runs-dir", str(runs), "--reason", "again")
    assert code == 2 and "not resumable" in out, out
    code, out = cli("journal", "verify", str(runs / "20261207-stopped"))
    assert code == 0, out

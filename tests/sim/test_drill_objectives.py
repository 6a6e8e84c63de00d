"""Drill objectives on the simulator: a drill passes only when the runbook succeeded and every
objective set is met; the verdict, the report, JUnit and Prometheus say which was missed and by
how much."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xmlschema
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ROOT, cli, of_type

INVENTORY = str(ROOT / "inventory" / "simulated.yaml")


def drill(tmp_path: Path, *extra: str, fault: str = "kill-primary", name: str = "d") -> tuple[int, str, Path]:
    run_dir = tmp_path / name
    code, out = cli("drill", "mariadb-promote-survivor", "-i", INVENTORY, "-c", "sim-mariadb-healthy", "--fault", fault,
                    "--run-dir", str(run_dir), *extra)
    return code, out, run_dir


def metrics(run_dir: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = (run_dir / "drill.prom").read_text()
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def test_a_tiny_rto_fails_the_drill_and_every_output_names_it(tmp_path: Path) -> None:
    code, out, run_dir = drill(tmp_path, "--rto", "0.001")
    assert code == 1, out
    verdict_line = next(line for line in out.splitlines() if line.startswith("DRILL FAILED"))
    assert "objective missed: recovery time (RTO)" in verdict_line and "> objective 0.001 s (by " in verdict_line
    assert "the runbook itself succeeded" in verdict_line

    verdict = of_type(run_dir, "drill_verdict")[0].data
    rto = next(o for o in verdict["objectives"] if o["name"] == "rto")
    assert verdict["verdict"] == "failed" and verdict["runbook_success"] is True
    assert rto["met"] is False and rto["target"] == 0.001 and rto["by"] == round(rto["measured"] - 0.001, 3)
    finished = of_type(run_dir, "run_finished")[-1].data
    assert finished["success"] is False and finished["end"] == "objective-missed"

    report = (run_dir / "report.md").read_text()
    assert report.startswith("# Drill FAILED: mariadb-promote-survivor on sim-mariadb-healthy")
    assert f"| recovery time (RTO) | {rto['measured']:.3f} s | 0.001 s | **MISSED by {rto['by']:.3f} s** |" in report
    assert "MISSED the objective of 0.001 s by" in report

    schema = xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit.xsd"))
    schema.validate(str(run_dir / "junit.xml"))
    suite: Any = schema.to_dict(str(run_dir / "junit.xml"))
    failed = [c for c in suite["testcase"] if "failure" in c]
    assert [c["@name"] for c in failed] == ["objective rto"]
    failure = failed[0]["failure"][0]  # the schema allows several failures per case
    assert failure["@type"] == "ObjectiveMissed"
    assert "objective 0.001 s: MISSED by" in failure["@message"]

    m = metrics(run_dir)
    labels = {"cluster": "sim-mariadb-healthy", "runbook": "mariadb-promote-survivor", "fault": "kill-primary"}
    assert m["drengine_drill_success"] == [(labels, 0.0)]
    assert m["drengine_drill_recovery_objective_seconds"] == [(labels, 0.001)]
    assert m["drengine_drill_objective_met"] == [({**labels, "objective": "rto"}, 0.0)]
    over = m["drengine_drill_recovery_over_objective_seconds"][0][1]
    assert abs(over - rto["by"]) < 1e-6 and over > 0
    assert m["drengine_drill_recovery_seconds"][0][1] == rto["measured"]


def test_a_generous_objective_passes(tmp_path: Path) -> None:
    code, out, run_dir = drill(tmp_path, "--rto", "60", "--max-lost-writes", "0")
    assert code == 0, out
    assert "DRILL PASSED" in out and "(objective 60 s)" in out
    m = metrics(run_dir)
    met = {labels["objective"]: value for labels, value in m["drengine_drill_objective_met"]}
    assert met == {"rto": 1.0, "lost_writes": 1.0}
    assert m["drengine_drill_lost_writes_objective"][0][1] == 0
    assert m["drengine_drill_recovery_over_objective_seconds"][0][1] < 0  # seconds to spare
    assert "| lost writes | 0 | 0 | **met** |" in (run_dir / "report.md").read_text()


def test_lost_writes_objective_counts_the_deliberate_loss(tmp_path: Path) -> None:
    code, out, run_dir = drill(tmp_path, "--max-lost-writes", "0", fault="cut-replication")
    assert code == 1, out
    assert "lost writes 10 writes > objective 0 writes (by 10 writes)" in out
    suite: Any = xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit.xsd")).to_dict(str(run_dir / "junit.xml"))
    assert [c["@name"] for c in suite["testcase"] if "failure" in c] == ["objective lost_writes"]
    code, out, _ = drill(tmp_path, "--max-lost-writes", "10", fault="cut-replication", name="allowed")
    assert code == 0, out


def test_no_objective_still_says_the_loss_in_words(tmp_path: Path) -> None:
    code, out, run_dir = drill(tmp_path, fault="cut-replication")
    assert code == 0, out  # no objective was set: the deliberate loss is measured, not judged
    report = (run_dir / "report.md").read_text()
    assert "10 writes acknowledged before or during the outage were missing after the recovery; " \
           "no lost-writes objective was set" in report
    assert "| failed during the outage |" in report and "| lost | 10 |" in report


def test_objectives_from_the_drills_file_per_cluster_and_per_drill(tmp_path: Path) -> None:
    drills = tmp_path / "drills.yaml"
    drills.write_text(f"""
clusters:
  sim-mariadb-healthy:
    objectives: {{rto: 0.001, lost_writes: 0}}
drills:
  - name: cut
    runbook: mariadb-promote-survivor
    inventory: {INVENTORY}
    cluster: sim-mariadb-healthy
    fault: cut-replication
    schedule: "0 3 * * *"
    objectives: {{rto: 60, lost_writes: 10}}
""")
    code, out, run_dir = drill(tmp_path, "--drills", str(drills))  # kill-primary: the cluster's objectives
    assert code == 1 and "recovery time (RTO)" in out and "> objective 0.001 s" in out, out
    code, out, _ = drill(tmp_path, "--drills", str(drills), fault="cut-replication", name="cut")  # the drill's own
    assert code == 0, out
    code, out, _ = drill(tmp_path, "--drills", str(drills), "--rto", "60", name="flag")  # the flag wins
    assert code == 0, out


def test_bad_objectives_are_refused(tmp_path: Path) -> None:
    code, out, run_dir = drill(tmp_path, "--rto", "0")
    assert code == 2 and "--rto 0: a recovery-time objective is a number of seconds above 0" in out
    code, out, _ = drill(tmp_path, "--max-lost-writes", "-1")
    assert code == 2 and "expected 0 or more writes" in out
    bad = tmp_path / "drills.yaml"
    bad.write_text("clusters:\n  x:\n    objectives: {rto: -3}\ndrills: []\n")
    code, out, _ = drill(tmp_path, "--drills", str(bad), name="bad")
    assert code == 2 and f"{bad}:3" in out and "rto" in out, out
    assert not run_dir.exists()


def test_report_command_formats(tmp_path: Path) -> None:
    code, out, run_dir = drill(tmp_path, "--rto", "0.001")
    assert code == 1
    for fmt, name in (("md", "report.md"), ("html", "report.html"), ("junit", "junit.xml"), ("prom", "drill.prom")):
        (run_dir / name).unlink()
        code, out = cli("report", str(run_dir), "--format", fmt)
        assert code == 0 and out.strip() == str(run_dir / name), out
        assert (run_dir / name).stat().st_size > 0
    code, out = cli("report", str(run_dir), "--format", "prom", "--out", "-")
    assert code == 0 and 'drengine_drill_objective_met{cluster="sim-mariadb-healthy",fault="kill-primary",objective="rto"' in out
    code, out = cli("report", str(tmp_path / "nowhere"), "--format", "html")
    assert code == 2 and "no journal here" in out
    code, out = cli("run", "mariadb-promote-survivor", "-i", INVENTORY, "-c", "sim-mariadb", "--yes",
                    "--run-dir", str(tmp_path / "run"))
    assert code == 0, out
    code, out = cli("report", str(tmp_path / "run"), "--format", "prom")
    assert code == 2 and "is a run, not a drill" in out
    code, out = cli("report", str(tmp_path / "run"), "--format", "html", "--out", "-")
    assert code == 0 and "Run DONE: mariadb-promote-survivor on sim-mariadb" in out and "table class=\"canaries\"" not in out

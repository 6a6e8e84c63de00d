"""What is read back from drill journals: the timeline (one bar per step, as long as the step),
the history of drills and its regressions, and the objectives' words."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from drengine.charts import timeline_svg
from drengine.history import history
from drengine.objectives import Objectives, judge_lost_writes, judge_rto, missed_summary
from drengine.report import markdown
from drengine.runrecord import read_run
from tests.helpers import cli
from tests.journals import write_drill

SVG = "{http://www.w3.org/2000/svg}"


def test_timeline_bars_are_step_work_and_gates_are_waits_beside_them(tmp_path: Path) -> None:
    """A step's bar is its own work; its gate's wait is drawn before it, not counted in it."""
    run = write_drill(tmp_path / "d", 1000.0, 4.5, 0)
    record = read_run(run)
    assert [(s.step, s.seconds, s.work_seconds, s.gate_seconds) for s in record.steps] == [
        ("observe", 1.0, 1.0, 0.0), ("promote", 3.0, 1.0, 2.0), ("verify", 0.5, 0.5, 0.0)]
    svg = ET.fromstring(timeline_svg(record))  # well-formed XML
    groups = svg.findall(f"{SVG}g")
    bars = {g.get("data-step"): g.find(f"{SVG}rect") for g in groups}
    width = {k: float(v.get("width", 0)) for k, v in bars.items() if v is not None}
    x = {k: float(v.get("x", 0)) for k, v in bars.items() if v is not None}
    assert width["promote"] == pytest.approx(width["observe"], rel=0.01)
    assert width["verify"] == pytest.approx(0.5 * width["observe"], rel=0.01)
    gate = next(r for r in svg.iter(f"{SVG}rect") if r.get("class") == "gate-wait")
    assert float(gate.get("width", 0)) == pytest.approx(2 * width["observe"], rel=0.01)
    assert float(gate.get("x", 0)) == pytest.approx(x["observe"] + width["observe"], abs=0.05)  # where observe ended
    assert x["promote"] == pytest.approx(float(gate.get("x", 0)) + float(gate.get("width", 0)), abs=0.05)
    outage = next(r for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar outage")
    assert float(outage.get("width", 0)) == pytest.approx(4.5 * width["observe"], rel=0.01)


def test_markdown_timeline_and_risks(tmp_path: Path) -> None:
    text = markdown(write_drill(tmp_path / "d", 1000.0, 4.5, 0))
    bars = text.split("```")[1].strip().splitlines()
    assert [b.split()[0] for b in bars] == ["outage", "observe", "promote", "verify"]
    assert bars[2].count(":") > bars[2].count("#") > 0  # promote's gate waited twice as long as it worked
    assert bars[2].rstrip().endswith("1.000 s + gate 2.000 s")
    assert '- promote: data may be lost (accepted by op@host, by flag, reason: "--accept-data-loss")' in text
    assert "| started | 1970-01-01 00:16:40 UTC" in text


def test_history_flags_an_rto_regression_against_the_median(tmp_path: Path) -> None:
    for i, rto in enumerate([10.0, 11.0, 10.0, 12.0, 30.0]):
        write_drill(tmp_path / f"r{i}", 1000.0 + 100 * i, rto, 0, objectives=Objectives(rto=60))
    [series] = history(tmp_path)
    assert [r.rto for r in series.rows] == [10.0, 11.0, 10.0, 12.0, 30.0]
    assert [bool(r.regressions) for r in series.rows] == [False, False, False, False, True]
    assert series.rows[3].rto_median == 10.0
    assert series.rows[4].rto_median == 10.5
    assert "RTO 30.000 s is 186% above the median 10.500 s of the last 4 drills" in series.rows[4].regressions[0]
    assert all(r.rto_objective == 60 for r in series.rows)


def test_history_ignores_millisecond_jitter_and_flags_loss_and_no_recovery(tmp_path: Path) -> None:
    for i, (rto, lost) in enumerate([(0.01, 0), (0.01, 0), (0.012, 0), (0.05, 0), (None, 0), (0.01, 3)]):
        write_drill(tmp_path / f"r{i}", 1000.0 + i, rto, lost)
    rows = history(tmp_path)[0].rows
    assert rows[3].regressions == []  # +400% but only 40 ms: jitter, not a regression
    assert rows[4].regressions == ["never recovered, where 4 of the last 4 drills did"]
    assert rows[5].regressions == ["3 writes lost, more than the median 0 of the last 5 drills"]


def test_history_series_per_cluster_runbook_and_fault(tmp_path: Path) -> None:
    write_drill(tmp_path / "a", 1.0, 1.0, 0, cluster="c1", fault="kill-primary")
    write_drill(tmp_path / "b", 2.0, 1.0, 0, cluster="c1", fault="hang-primary")
    write_drill(tmp_path / "c", 3.0, 1.0, 0, cluster="c2", fault="kill-primary")
    (tmp_path / "not-a-run").mkdir()
    assert [s.title for s in history(tmp_path)] == ["c1 · rb · hang-primary", "c1 · rb · kill-primary", "c2 · rb · kill-primary"]
    assert [s.title for s in history(tmp_path, cluster="c2")] == ["c2 · rb · kill-primary"]


def test_history_command(tmp_path: Path) -> None:
    for i, rto in enumerate([10.0, 10.0, 10.0, 10.0, 30.0]):
        write_drill(tmp_path / f"r{i}", 1000.0 + i, rto, 0)
    code, out = cli("drill", "history", "--runs", str(tmp_path), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["rto_seconds"] for r in rows] == [10.0, 10.0, 10.0, 10.0, 30.0]
    assert rows[-1]["regressions"] and rows[-1]["rto_median_before"] == 10.0
    code, out = cli("drill", "history", "--runs", str(tmp_path), "--fail-on-regression")
    assert code == 1 and "REGRESSION: RTO 30.000 s is 200% above the median 10.000 s" in out
    code, out = cli("drill", "history", "--runs", str(tmp_path), "--threshold", "250", "--fail-on-regression")
    assert code == 0 and "0 regression(s) flagged" in out
    code, out = cli("drill", "history", "--runs", str(tmp_path), "-c", "elsewhere")
    assert code == 0 and "no drills of cluster elsewhere under" in out
    code, out = cli("drill", "history", "--runs", str(tmp_path), "--last", "0")
    assert code == 2 and "--last must be at least 1" in out


def test_objectives_in_words() -> None:
    assert judge_rto(2.5, 1.0).text.endswith("MISSED the objective of 1.000 s by 1.500 s")
    assert judge_rto(0.5, 1.0).met is True and judge_rto(0.5, None).met is None
    assert judge_rto(None, 1.0).met is False and "never took a write again" in judge_rto(None, 1.0).text
    assert judge_lost_writes(1, 0).text == ("1 write acknowledged before or during the outage was missing after the "
                                            "recovery: MISSED the objective of at most 0 writes by 1 write")
    assert missed_summary([judge_rto(2.5, 1.0), judge_lost_writes(0, 0)]) == \
        "recovery time (RTO) 2.500 s > objective 1.000 s (by 1.500 s)"
    assert Objectives(rto=5).over(Objectives(rto=9, lost_writes=2)) == Objectives(rto=5, lost_writes=2)

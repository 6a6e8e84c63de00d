"""Reports a postmortem can use (issue 25, item 10): the reason typed at a gate in the risk
table and the steps; a gate's wait apart from the step's own time; the gap of a Ctrl-C and
resume; simulated time said as such; no green banner above failed drills; a tampered journal's
report titled TAMPERED, and `drengine report` exiting 1 for it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from drengine.history import history, history_html
from drengine.journal import Event, JournalWriter
from drengine.report import html, junit, markdown, prometheus
from drengine.runrecord import read_run
from tests.helpers import cli
from tests.journals import Clock, write_drill


def write_run(run_dir: Path, *, simulated: bool = False, resume_after: float | None = None) -> Path:
    """A run answered at the terminal: observe (2 ms of work after nothing), a dangerous gate at
    promote that waited 10.7 s and got a typed reason, then promote; with `resume_after`, the
    run is stopped (Ctrl-C) during promote's gate and resumed that many seconds later."""
    clock = Clock(5000.0)
    journal = JournalWriter(run_dir, clock=clock)
    journal.append(Event.RUN_STARTED, run_id=run_dir.name, mode="run", runbook="rb", runbook_sha256="0" * 64,
                   cluster="prod-db", kind="mariadb", simulated=simulated, operator="ann@jump", host="jump",
                   policy="interactive", argv=[])
    journal.append(Event.STEP_STARTED, step="observe", effect="read", summary="observe")
    clock.wait(0.002)
    journal.append(Event.STEP_FINISHED, step="observe", ok=True, outcome="ok", summary="observed", effect="read")
    journal.append(Event.GATE_ASKED, step="promote", level="dangerous", risks=["writes not on db2 are lost"],
                   summary="promote db2")
    if resume_after is not None:
        clock.wait(3.0)
        journal.append(Event.RUN_FINISHED, end="stopped", success=False, summary="interrupted at the terminal")
        journal.close()
        clock.wait(resume_after)
        journal = JournalWriter(run_dir, clock=clock)
        journal.append(Event.RUN_RESUMED, run_id=run_dir.name, operator="ann@jump")
        journal.append(Event.GATE_ASKED, step="promote", level="dangerous", risks=["writes not on db2 are lost"],
                       summary="promote db2")
    clock.wait(10.7)
    journal.append(Event.GATE_ANSWERED, step="promote", answer="proceed", who="ann@jump", policy="interactive",
                   reason="INC-7: db1's disk is gone, db2 is the newest")
    journal.append(Event.STEP_STARTED, step="promote", effect="mutate", summary="promote")
    clock.wait(0.05)
    journal.append(Event.STEP_FINISHED, step="promote", ok=True, outcome="ok", summary="db2 promoted", effect="mutate")
    journal.append(Event.RUN_FINISHED, end="done", success=True, summary="db2 is the primary")
    journal.close()
    return run_dir


def test_the_reason_typed_at_a_gate_is_in_the_risk_table_and_the_steps(tmp_path: Path) -> None:
    text = markdown(write_run(tmp_path / "r"))
    risks = text.split("## Risks accepted")[1].split("##")[0]
    assert ('- promote: writes not on db2 are lost (accepted by ann@jump, typed the cluster name at the terminal, '
            'reason: "INC-7: db1\'s disk is gone, db2 is the newest")') in risks
    promote = next(line for line in text.splitlines() if line.startswith("| promote |"))
    assert 'reason: "INC-7: db1\'s disk is gone, db2 is the newest"' in promote
    assert "INC-7" in html(tmp_path / "r").split("Risks accepted")[1]


def test_a_gate_wait_is_not_the_step_time(tmp_path: Path) -> None:
    record = read_run(write_run(tmp_path / "r"))
    observe, promote = record.steps
    assert round(observe.work_seconds, 3) == 0.002
    assert round(promote.work_seconds, 3) == 0.05 and round(promote.gate_seconds, 1) == 10.7
    text = markdown(tmp_path / "r")
    assert re.search(r"^\| promote \| [^|]+ \| 0\.050 s \| 10\.7 s \(dangerous, proceed by ann@jump", text, re.M), text
    cases = {c["name"]: float(c["time"]) for c in (m.groupdict() for m in
             re.finditer(r'<testcase name="(?P<name>[^"]+)" classname="[^"]+" time="(?P<time>[^"]+)"', junit(tmp_path / "r")))}
    assert cases == {"observe": 0.002, "promote": 0.05}


def test_a_stop_and_resume_shows_as_a_gap(tmp_path: Path) -> None:
    record = read_run(write_run(tmp_path / "r", resume_after=600.0))
    assert len(record.interruptions) == 1
    stopped, resumed = record.interruptions[0]
    assert round(resumed - stopped, 3) == 600.0
    text = markdown(tmp_path / "r")
    assert "600.0 s in between, counted in no step" in text
    bars = text.split("```")[1].strip().splitlines()
    gap = next(b for b in bars if b.startswith("(stopped)"))
    assert "~" in gap and gap.endswith("600.0 s until resumed")
    assert round(record.steps[1].work_seconds, 3) == 0.05  # the stop is not promote's time
    assert round(record.steps[1].gate_seconds, 3) == 13.7  # nor its gate's: 3 s before the stop, 10.7 s after
    assert "stopped 10 min" in html(tmp_path / "r") or "stopped 600 s" in html(tmp_path / "r")
    assert read_run(tmp_path / "r").title_word == "DONE"


def test_a_simulated_report_says_its_time_is_simulated(tmp_path: Path) -> None:
    sim = markdown(write_drill(tmp_path / "sim", 1000.0, 0.056, 0))
    assert "SIMULATED" in sim.split("## ")[0] and "not those of a real recovery" in sim
    assert 'id="simulated"' in html(tmp_path / "sim")
    assert "SIMULATED" not in markdown(write_run(tmp_path / "real"))


def test_history_has_no_green_banner_above_failed_drills(tmp_path: Path) -> None:
    write_drill(tmp_path / "a", 1000.0, None, 0)
    write_drill(tmp_path / "b", 2000.0, None, 0)
    series = history(tmp_path)
    page = history_html(series, last=5, threshold=50)
    assert "No regression" not in page
    banner = page.split('id="regressions"')[0].rsplit("<div", 1)[1]
    assert 'class="verdict failed"' in banner
    assert "2 drill(s) did not pass" in page and 'id="failed"' in page
    write_drill(tmp_path / "c", 3000.0, 1.0, 0)
    write_drill(tmp_path / "d", 4000.0, 1.0, 0)
    passed = history_html(history(tmp_path / "c"), last=5, threshold=50)
    assert "No regression" in passed and "every drill passed" in passed


def _tamper(run_dir: Path) -> None:
    journal = run_dir / "journal.jsonl"
    lines = journal.read_text().splitlines()
    last = json.loads(lines[-1])
    last["data"]["summary"] = "everything fine"
    lines[-1] = json.dumps(last, separators=(",", ":"), sort_keys=True)
    journal.write_text("\n".join(lines) + "\n")


def test_a_tampered_journal_report_says_tampered_and_exits_1(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r")
    _tamper(run)
    text = markdown(run)
    assert text.startswith("# Run TAMPERED: rb on prod-db") and "Run DONE" not in text
    assert "**TAMPERED: JOURNAL FAILED VERIFICATION" in text
    assert "<h1>Run TAMPERED" in html(run) and 'id="tampered"' in html(run)
    assert 'name="journal integrity"' in junit(run)
    code, out = cli("report", str(run))
    assert code == 1, out
    assert "TAMPERED" in out and "journal.jsonl:" in out
    assert (run / "report.md").read_text().startswith("# Run TAMPERED")
    drill = write_drill(tmp_path / "d", 1000.0, 1.0, 0)
    _tamper(drill)
    assert "drengine_drill_success{" in prometheus(drill)
    assert re.search(r"^drengine_drill_success\{[^}]*\} 0\.0$", prometheus(drill), re.M)


def test_status_words_for_a_down_member_do_not_repeat_the_error() -> None:
    """Issue 25, item 12: "dead (nothing listens: the process is not running): error 2003:
    connection refused: nothing listens on the port (server not running)" said it twice."""
    from drengine.status import MemberState, down_words

    refused = "error 2003: connection refused: nothing listens on the port (server not running)"
    assert down_words(MemberState.DEAD, refused) == f"dead: {refused}"
    assert down_words(MemberState.HUNG, "no answer within 2.0 s") == "hung: no answer within 2.0 s"
    assert down_words(MemberState.DEAD, "error 2013: lost connection") == \
        "dead (nothing listens: the process is not running): error 2013: lost connection"
    assert down_words(MemberState.DEAD, None) == "dead (nothing listens: the process is not running)"


def test_mongodb_positions_read_as_utc_times() -> None:
    from drengine.datastores.mongodb.setview import OpTimeView

    shown = OpTimeView(term=3, seconds=1796675731, increment=2).show()
    assert shown == "term 3, 2026-12-07 20:35:31 UTC #2"
    assert "1796675731" not in shown


def test_elasticsearch_says_a_returned_node_is_back() -> None:
    """Issue 25, item 12: "its node node-3 left the cluster" beside node-3 listed reachable."""
    from drengine.datastores.elasticsearch.diagnosis import _why_unassigned
    from drengine.datastores.elasticsearch.esview import EsNode, EsView, Health, ShardCopy

    shard = ShardCopy(index="orders", shard=1, primary=False, state="UNASSIGNED", reason="NODE_LEFT",
                      details="node_left [n3id]")
    nodes = [EsNode(id="n1id", name="node-1", roles=["data"]), EsNode(id="n2id", name="node-2", roles=["data"])]
    gone = EsView(cluster="c", url="u", health=Health(status="yellow"), nodes=nodes,
                  inventory_members=["node-1", "node-2", "node-3"])
    assert _why_unassigned(gone, shard) == "its node node-3 (id n3id) left the cluster and is not back"
    back = EsView(cluster="c", url="u", health=Health(status="yellow"),
                  nodes=[*nodes, EsNode(id="n3id", name="node-3", roles=["data"])],
                  inventory_members=["node-1", "node-2", "node-3"])
    assert _why_unassigned(back, shard) == "its node node-3 left the cluster and is back now; the copy is not assigned again yet"

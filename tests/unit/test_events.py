"""One event renderer: the terminal (`journal show`) and the report describe each event alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from drengine.events import RENDERERS, describe
from drengine.journal import Entry, Event, JournalWriter
from drengine.report import markdown
from tests.helpers import cli

pytestmark = pytest.mark.unit


def test_every_event_type_has_words_even_with_missing_fields() -> None:
    assert set(RENDERERS) == set(Event)
    for event in Event:
        text = describe(Entry(seq=1, ts=0.0, type=event, data={}, line=1))
        assert text.line.strip(), event


def test_terminal_and_report_use_the_same_words(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path)
    journal.append(Event.RUN_STARTED, run_id="r1", runbook="mariadb-promote-survivor", cluster="lab", mode="run",
                   simulated=True, kind="mariadb", runbook_sha256="0" * 64, policy="flags", operator="ops")
    journal.append(Event.STEP_STARTED, step="promote", summary="promote db2", effect="mutate",
                   statements=["[db2] STOP SLAVE"])
    journal.append(Event.GATE_ASKED, step="promote", level="dangerous", summary="promote db2")
    journal.append(Event.GATE_ANSWERED, step="promote", answer="proceed", who="ops", policy="flags", reason="paged")
    journal.append(Event.OVERRIDE, step="check", who="ops", risk="split brain")
    journal.append(Event.STEP_FINISHED, step="promote", ok=False, outcome="failed", summary="db2 | refused",
                   evidence=["db2 is read-only"], refusal=["observed: x"])
    journal.append(Event.RUN_FINISHED, end="failed", success=False, summary="db2 refused")
    journal.close()

    code, shown = cli("journal", "show", str(tmp_path))
    assert code == 0
    report = markdown(tmp_path)
    assert "-> promote: promote db2" in shown and "     [db2] STOP SLAVE" in shown
    assert "   gate promote: proceed by ops (flags: paged)" in shown
    assert "   OVERRIDE by ops at check: risk accepted: split brain" in shown
    assert "   promote FAILED [failed]: db2 | refused" in shown and "     db2 is read-only" in shown
    # Events the terminal shows another way (the gate prompt, the verdict) are in the report only.
    assert "gate (dangerous) asked" not in shown and "failed: db2 refused" not in shown
    for line in ("-> promote: promote db2", "gate promote: proceed by ops (flags: paged)",
                 "OVERRIDE by ops at check: risk accepted: split brain", "promote FAILED [failed]: db2 \\| refused",
                 "gate (dangerous) asked at promote: promote db2", "failed: db2 refused"):
        assert f"| {line} |" in report, line

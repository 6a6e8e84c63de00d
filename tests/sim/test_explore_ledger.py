"""The explorer's ledger invariant: a run whose temporary changes are missing from its change
ledger is caught (Ceph flags and min_size, Elasticsearch settings), and the shipped runbooks
keep it (tests/sim/test_explore.py explores them on seeds 0-4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drengine.explore.report import summary
from drengine.explore.search import explore
from drengine.ledger import Change, LedgerEntry, RunLedger

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("runbook", ["ceph-degrade", "elasticsearch-reallocate"])
def test_a_change_left_out_of_the_ledger_is_caught(runbook: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forgets(self: RunLedger, change: Change) -> LedgerEntry:  # a step that does not declare its change
        return LedgerEntry(id="-", cluster="-", kind=change.kind, target=change.target, what=change.what, run_id="-")

    monkeypatch.setattr(RunLedger, "opened", forgets)
    report = explore(runbook, tmp_path, count=60, seed=0)
    found = {v.invariant for v in report.found}
    assert "ledger.change-left-unrecorded" in found, "\n".join(summary(report))


def test_a_change_closed_without_being_undone_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = RunLedger.opened

    def opens_and_closes(self: RunLedger, change: Change) -> LedgerEntry:  # closed at once: as if undone
        entry = real(self, change)
        self.undone(change.kind, change.target)
        return entry

    monkeypatch.setattr(RunLedger, "opened", opens_and_closes)
    report = explore("ceph-degrade", tmp_path, count=60, seed=0)
    assert "ledger.change-left-unrecorded" in {v.invariant for v in report.found}, "\n".join(summary(report))

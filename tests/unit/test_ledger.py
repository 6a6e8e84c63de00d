"""The change ledger's parts without a cluster: the run's ledger calls journal entries (one per
thing changed, closed by kind and target), the ledger folds back from journals, durations and
kinds in the inventory are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from drengine.errors import InputError
from drengine.inventory import Inventory
from drengine.journal import JournalWriter, read_entries
from drengine.ledger import Change, LedgerEntry, RunIdentity, RunLedger, age_words, check_expectations, fold, listing

pytestmark = pytest.mark.unit


def run_ledger(tmp_path: Path, others: list[LedgerEntry] | None = None) -> tuple[RunLedger, JournalWriter]:
    journal = JournalWriter(tmp_path / "run")
    ledger = RunLedger(
        journal=journal,
        run=RunIdentity(run_id="R1", run_dir=str(tmp_path / "run"), runbook="ceph-degrade", cluster="c1",
                        inventory_path="inv.yaml"),
        step=lambda: "set-flags", approved_by=lambda step: f"ann (--yes) at {step}", wall=lambda: 100.0,
        others=lambda: list(others or []),
    )
    return ledger, journal


NOOUT = Change(kind="ceph.flag", target="noout", what="OSD flag noout set", before="unset", after="set",
               undo="ceph osd unset noout", undo_runbook="ceph-restore", undo_inputs=(("degrade_run", "{run_dir}"),))


def test_a_change_is_journaled_once_with_who_when_and_undo(tmp_path: Path) -> None:
    ledger, journal = run_ledger(tmp_path)
    first = ledger.opened(NOOUT)
    again = ledger.opened(NOOUT)  # a retried or resumed step declares it again
    journal.close()
    assert again.id == first.id == "R1.1"
    assert first.approved_by == "ann (--yes) at set-flags" and first.opened == 100.0 and first.step == "set-flags"
    assert first.undo_runbook == f"drengine run ceph-restore -i inv.yaml -c c1 --input degrade_run={tmp_path / 'run'}"
    events = [e for e in read_entries(tmp_path / "run" / "journal.jsonl")]
    assert [e.type.value for e in events] == ["change_opened"]
    assert fold(events) == {"R1.1": first}


def test_undone_closes_this_runs_and_earlier_runs_entries_of_that_kind_and_target(tmp_path: Path) -> None:
    earlier = LedgerEntry(id="R0.1", cluster="c1", kind="ceph.flag", target="noout", what="x", run_id="R0")
    other = LedgerEntry(id="R0.2", cluster="c1", kind="ceph.flag", target="norebalance", what="y", run_id="R0")
    ledger, journal = run_ledger(tmp_path, [earlier, other])
    ledger.opened(NOOUT)
    closed = ledger.undone("ceph.flag", "noout")
    journal.close()
    assert sorted(e.id for e in closed) == ["R0.1", "R1.1"]
    assert all(e.closed == 100.0 and e.closed_how.startswith("by runbook ceph-degrade (run R1") for e in closed)
    assert ledger.still_open() == []
    folded = fold(read_entries(tmp_path / "run" / "journal.jsonl"))
    assert {k: v.is_open for k, v in folded.items()} == {"R1.1": False, "R0.1": False}


def test_listing_names_every_open_entry_and_its_undo() -> None:
    entry = LedgerEntry(id="R1.1", cluster="c1", kind="ceph.flag", target="noout", what="OSD flag noout set",
                        before="unset", undo="ceph osd unset noout", undo_runbook="drengine run ceph-restore",
                        run_id="R1", step="set-flags")
    lines = listing([entry])
    assert lines[0].startswith("left changed by this run (1 open")
    assert "R1.1 [ceph.flag] OSD flag noout set (was unset; run R1, step set-flags)" in lines[1]
    assert lines[2:] == ["    undo: ceph osd unset noout", "    or:   drengine run ceph-restore"]
    assert listing([]) == []


def test_durations_and_kinds_in_the_inventory() -> None:
    inv = Inventory.model_validate({"expect_undo_within": {"ceph.flag": "4h", "ceph.min_size": 90}, "clusters": {}})
    assert inv.expect_undo_within == {"ceph.flag": 14400.0, "ceph.min_size": 90.0}
    check_expectations(inv)
    with pytest.raises(ValueError, match="not a duration"):
        Inventory.model_validate({"expect_undo_within": {"ceph.flag": "soon"}, "clusters": {}})
    wrong = Inventory.model_validate({"expect_undo_within": {"ceph.flags": "1h"}, "clusters": {}})
    with pytest.raises(InputError, match="no kind of ledger entry is called 'ceph.flags'.*ceph.flag"):
        check_expectations(wrong)


def test_ages_in_words() -> None:
    assert [age_words(s) for s in (5, 600, 3 * 3600, 3 * 86400)] == ["5 s", "10 min", "3.0 h", "3.0 days"]

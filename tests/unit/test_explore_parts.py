"""Parts of the fault-space explorer that need no simulator: the journal invariants on
hand-written journals, the ledger of accepted risks, the case file, the packed generators,
and the journal's own encoding (appends encode the data once: the lines must be the bytes
json.dumps gave before)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from drengine import journal as journal_module
from drengine.errors import InputError
from drengine.explore import invariants
from drengine.explore.kit import Ledger, pick, portion
from drengine.explore.scenario import MemberSpec, Scenario, WorldChange, dump, load, write
from drengine.journal import Event, JournalWriter, cut_after, read_entries, verified_entries, verify
from drengine.machine import ScratchDisk
from drengine.runbook import load_runbook


def test_journal_lines_are_the_bytes_json_dumps_gives() -> None:
    rng = random.Random(7)
    for n in range(500):
        data = {"b": [1, 2.5, "x\u00e9\"\\", None], "a": {"z": True, f"k{n}": rng.random()}, "\u00fc": "\u00fcmlaut"}
        ts, seq, kind = round(rng.random() * 1e9, 6), rng.randint(1, 10**6), "statement_sent"
        body = json.dumps({"seq": seq, "ts": ts, "type": kind, "data": data}, sort_keys=True, separators=(",", ":"))
        assert journal_module._body(seq, ts, kind, data) == body
        line = json.dumps({"seq": seq, "ts": ts, "type": kind, "data": data, "prev": "cd" * 32, "hash": "ab" * 32},
                          sort_keys=True, separators=(",", ":"))
        encoded = journal_module._encode(data)
        assert journal_module._line_of(encoded, "ab" * 32, "cd" * 32, str(seq), float.__repr__(ts), f'"{kind}"') == line


def test_a_cut_journal_is_what_a_kill_leaves_and_verifies(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, disk=ScratchDisk())
    for i in range(5):
        writer.append(Event.NOTE, text=f"event {i}")
    writer.close()
    cut_after(tmp_path, 3)
    assert verify(tmp_path) == 3
    assert [e.data["text"] for e in verified_entries(tmp_path)] == ["event 0", "event 1", "event 2"]
    again = JournalWriter(tmp_path, disk=ScratchDisk())  # a resumed run appends after the cut
    again.append(Event.NOTE, text="after the resume")
    again.close()
    assert verify(tmp_path) == 4


def journal(tmp_path: Path, *events: tuple[Event, dict[str, object]]) -> list[journal_module.Entry]:
    writer = JournalWriter(tmp_path, disk=ScratchDisk())
    for event, data in events:
        if writer.finished:  # a resume writes with a writer of its own
            writer.close()
            writer = JournalWriter(tmp_path, disk=ScratchDisk())
        writer.append(event, **data)
    writer.close()
    return list(read_entries(tmp_path / "journal.jsonl"))


def sql(step: str, text: str, target: str = "db2") -> tuple[Event, dict[str, object]]:
    return Event.STATEMENT_SENT, {"step": step, "target": target, "text": text, "language": "sql", "result": "ok"}


def mutating(language: str, text: str) -> bool:
    return not text.startswith("SELECT")


RUNBOOK = load_runbook("mariadb-promote-survivor")


def test_a_statement_without_a_proceed_for_its_step_is_found(tmp_path: Path) -> None:
    entries = journal(tmp_path / "a",
                      (Event.GATE_ANSWERED, {"step": "promote", "answer": "proceed"}),
                      (Event.STEP_STARTED, {"step": "promote"}), sql("promote", "STOP SLAVE"),
                      (Event.RUN_RESUMED, {}), sql("promote", "RESET SLAVE ALL"),
                      sql("verify", "REPLACE INTO drengine.heartbeat VALUES (1)"))  # verify needs no gate
    found = invariants.gated_statements(entries, RUNBOOK, mutating)
    assert [v.invariant for v in found] == ["journal.gate-before-statement"]
    assert "RESET SLAVE ALL" in found[0].detail


def test_a_statement_sent_again_after_a_resume_is_found_unless_the_world_changed(tmp_path: Path) -> None:
    entries = journal(tmp_path / "b", sql("promote", "RESET SLAVE ALL"), (Event.RUN_RESUMED, {}),
                      sql("promote", "RESET SLAVE ALL"), sql("promote", "SELECT 1"), (Event.RUN_RESUMED, {}),
                      sql("promote", "SELECT 1"))
    found = invariants.sent_once(entries, RUNBOOK, mutating, lambda first, then: False)
    assert [(v.invariant, "RESET" in v.detail) for v in found] == [("journal.sent-once-across-resume", True)]
    assert not invariants.sent_once(entries, RUNBOOK, mutating, lambda first, then: True)


def test_only_a_resume_may_follow_a_resumable_end(tmp_path: Path) -> None:
    fine = journal(tmp_path / "c", (Event.RUN_FINISHED, {"end": "stopped"}), (Event.LOCK_TAKEN, {}),
                   (Event.LOCK_TAKEN, {}), (Event.RUN_RESUMED, {}), (Event.RUN_FINISHED, {"end": "done"}))
    assert not invariants.nothing_after_finish(fine)
    bad = journal(tmp_path / "d", (Event.RUN_FINISHED, {"end": "done"}), (Event.NOTE, {"text": "late"}))
    assert [v.invariant for v in invariants.nothing_after_finish(bad)] == ["journal.nothing-after-finish"]


def test_the_ledger_keeps_facts_and_explicit_choices_never_risk_text(tmp_path: Path) -> None:
    entries = journal(tmp_path / "e",
                      (Event.RUN_STARTED, {"inputs": {"survivor": "db3", "hosts": "db4, db5"}, "gone_for_good": ["db6"]}),
                      (Event.GATE_ASKED, {"step": "promote", "level": "dangerous", "risks": ["db2 loses 3 transactions"]}),
                      (Event.GATE_ANSWERED, {"step": "promote", "answer": "proceed"}),
                      (Event.GATE_ASKED, {"step": "check", "level": "dangerous", "override": True,
                                          "risks": ["db1 keeps writing"]}),
                      (Event.GATE_ANSWERED, {"step": "check", "answer": "proceed"}),
                      (Event.GATE_ASKED, {"step": "repoint", "level": "dangerous", "risks": ["db7 may lose writes"]}),
                      (Event.GATE_ANSWERED, {"step": "repoint", "answer": "abort"}))
    ledger = Ledger()
    for entry in entries:
        ledger.see(entry)
    # Named by the operator: an input value (alone or in a list) or a member gone for good.
    assert ledger.chose("db3") and ledger.chose("db5") and ledger.chose("db6")
    # A risk the runbook itself named, even approved at a dangerous gate, is no choice of the operator's.
    assert not ledger.chose("db2") and not ledger.chose("db1") and not ledger.chose("db7")
    assert not ledger.chose("db") and not ledger.chose("survivor")
    assert ledger.overrides == ["check"] and ledger.overrode("check") and ledger.dangerous == ["promote"]


def test_a_case_file_round_trips_and_bad_ones_are_refused_clearly(tmp_path: Path) -> None:
    case = Scenario(runbook="mariadb-rejoin", kind="mariadb", members=[MemberSpec(name="db1")], state={"servers": []},
                    answers=["skip", "proceed"], crashes=[0, 7],
                    changes=[WorldChange(when="gate", index=1, op="kill", member="db1", advance=2.0)],
                    found=["mariadb.x: something"])
    path = write(case, tmp_path / "case.yaml")
    assert load(path) == case
    assert "world changes: kill db1 while gate #1 waits, 2 s later" in case.describe()
    assert "engine killed and resumed: segment 2: after event #7" in case.describe()
    (tmp_path / "bad.yaml").write_text(dump(case).replace("crashes:", "crashes: nope\nx:"))
    with pytest.raises(InputError):
        load(tmp_path / "bad.yaml")
    with pytest.raises(InputError, match="not a drengine explore case"):
        (tmp_path / "other.yaml").write_text("a: 1\n")
        load(tmp_path / "other.yaml")


def test_packed_digits_shrink_towards_the_usual_case() -> None:
    assert pick(0, "usual", "rare", "rarer") == "usual"
    assert pick(74, "usual", "rare", "rarer") == "usual"
    assert [pick(d, "usual", "rare", "rarer") for d in (75, 87, 88, 99)] == ["rare", "rare", "rarer", "rarer"]
    assert portion(0, 8) == 0 and portion(99, 8) == 8 and portion(50, 8) == 4


def test_seeds_are_one_a_range_or_a_list() -> None:
    from drengine.explore.command import seeds

    assert seeds("7") == [7]
    assert seeds("0-3") == [0, 1, 2, 3]
    assert seeds("0,5-6,9") == [0, 5, 6, 9]
    with pytest.raises(InputError, match="ends before it starts"):
        seeds("3-1")
    with pytest.raises(InputError, match="expected a seed"):
        seeds("x")

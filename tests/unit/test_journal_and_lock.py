"""The journal detects any edited, removed, inserted or reordered line (the lock: test_lock_local.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drengine.errors import JournalCorrupt
from drengine.journal import Event, JournalWriter, verify
from drengine.redact import REDACTOR
from tests.helpers import cli


def journal(tmp_path: Path, n: int = 5) -> Path:
    w = JournalWriter(tmp_path)
    for i in range(n):
        w.append(Event.NOTE, step=f"s{i}", text=f"event {i}")
    w.close()
    return tmp_path / "journal.jsonl"


def lines(p: Path) -> list[str]:
    return p.read_text().splitlines(keepends=True)


def test_intact_journal_verifies(tmp_path: Path) -> None:
    journal(tmp_path)
    assert verify(tmp_path) == 5
    code, out = cli("journal", "verify", str(tmp_path))
    assert code == 0 and "5 events" in out


def test_edit_is_detected_at_its_line(tmp_path: Path) -> None:
    p = journal(tmp_path)
    ls = lines(p)
    ls[2] = ls[2].replace("event 2", "event X")
    p.write_text("".join(ls))
    with pytest.raises(JournalCorrupt, match=r"journal.jsonl:3: .*edited"):
        verify(tmp_path)
    code, out = cli("journal", "verify", str(tmp_path))
    assert code == 1 and "journal.jsonl:3" in out


@pytest.mark.parametrize("how,line", [("delete", 2), ("swap", 2), ("insert", 3), ("truncate", 5)])
def test_structural_tampering_is_detected(tmp_path: Path, how: str, line: int) -> None:
    p = journal(tmp_path)
    ls = lines(p)
    if how == "delete":
        del ls[1]
    elif how == "swap":
        ls[1], ls[2] = ls[2], ls[1]
    elif how == "insert":
        ls.insert(2, ls[1])
    else:
        ls = ls[:4]
    p.write_text("".join(ls))
    with pytest.raises(JournalCorrupt, match=rf"journal.jsonl:{line}:"):
        verify(tmp_path)


def test_recomputed_hash_with_wrong_prev_is_detected(tmp_path: Path) -> None:
    p = journal(tmp_path)
    ls = lines(p)
    raw = json.loads(ls[3])
    raw["prev"] = "f" * 64
    ls[3] = json.dumps(raw) + "\n"
    p.write_text("".join(ls))
    with pytest.raises(JournalCorrupt, match="journal.jsonl:4: chain broken"):
        verify(tmp_path)


def test_secrets_are_redacted_before_disk(tmp_path: Path) -> None:
    REDACTOR.add("s3cr3t-pass")
    w = JournalWriter(tmp_path)
    w.append(Event.NOTE, text="password is s3cr3t-pass", nested={"k": ["s3cr3t-pass"]})
    w.close()
    assert "s3cr3t-pass" not in (tmp_path / "journal.jsonl").read_text()
    assert verify(tmp_path) == 1


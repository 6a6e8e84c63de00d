"""The journal detects any edited, removed, inserted or reordered line; the lock names its holder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drengine.errors import JournalCorrupt, LockHeld
from drengine.journal import Event, JournalWriter, verify
from drengine.lock import ClusterLock
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


def test_lock_names_its_holder_and_frees_a_dead_one(tmp_path: Path) -> None:
    lock = ClusterLock("c1", tmp_path)
    lock.acquire("run-a", "alice")
    with pytest.raises(LockHeld, match=r"held by run run-a \(pid \d+, user alice"):
        lock.acquire("run-b", "bob")
    taken = lock.acquire("run-c", "carol", break_lock=True)
    assert taken.replaced is not None and taken.replaced.run_id == "run-a"
    lock.release("run-c")
    # A holder whose process is gone is detected and replaced without --break-lock.
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(child.stdout)
    (tmp_path / "c1.lock").write_text(json.dumps({"run_id": "ghost", "pid": dead_pid, "user": "x", "host": os.uname().nodename,
                                                   "started": 0.0, "pid_start": "1"}))
    again = lock.acquire("run-d", "dave")
    assert again.replaced is not None and again.replaced_alive is False

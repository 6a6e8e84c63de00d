"""Journals anchored in the run registry: the hash chain alone lets whoever can write the run
directory cut `run_finished` off and rewrite `journal.head`, or rewrite the journal whole and
re-chain it; the head kept beside the lock catches both (`journal verify` exit 1, the report
TAMPERED), and an unreachable registry is said (exit 4), never taken as a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drengine.anchor import Head, head_key
from drengine.engine import RunRequest, start_run
from drengine.errors import OperatorStop
from drengine.gates import FlagPolicy
from drengine.inventory import load_inventory
from drengine.journal import HEAD_FILE, JOURNAL_FILE, Event, JournalWriter, _body, _digest, verify
from drengine.lock.store import LocalStore
from drengine.runbook import load_runbook
from drengine.runrecord import read_run
from drengine.steps import Mode
from tests.helpers import cli, of_type
from tests.lockhelpers import CLUSTER, ROOT


@pytest.fixture
def finished(tmp_path: Path) -> tuple[Path, Path, str]:
    """A run of mariadb-promote-survivor on the simulated cluster, its lock and registry under tmp_path."""
    inventory = load_inventory(ROOT / "inventory" / "simulated.yaml")
    run_dir, locks = tmp_path / "run", tmp_path / "locks"
    outcome = start_run(RunRequest(
        runbook=load_runbook(str(ROOT / "runbooks" / "mariadb-promote-survivor.yaml")), inventory=inventory,
        cluster=inventory.cluster(CLUSTER), mode=Mode.RUN, gates=FlagPolicy(yes=True), run_dir=run_dir, lock_dir=locks))
    assert outcome.success
    return run_dir, locks, outcome.run_id


def rechain(run_dir: Path, lines: list[dict[str, object]]) -> None:
    """Write events as the writer would, with a fresh chain and head: what a forger with the code can do."""
    prev = "0" * 64
    out = []
    for seq, raw in enumerate(lines, start=1):
        raw = {**raw, "seq": seq, "prev": prev}
        raw["hash"] = _digest(prev, _body(seq, raw["ts"], str(raw["type"]), raw["data"]))  # type: ignore[arg-type]
        prev = str(raw["hash"])
        out.append(json.dumps(raw, sort_keys=True, separators=(",", ":")))
    (run_dir / JOURNAL_FILE).write_text("\n".join(out) + "\n")
    (run_dir / HEAD_FILE).write_text(f"{len(out):012d} {prev}\n")


def lines_of(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / JOURNAL_FILE).read_text().splitlines()]


def test_a_finished_run_matches_the_head_kept_in_the_registry(finished: tuple[Path, Path, str]) -> None:
    run_dir, locks, run_id = finished
    [taken] = of_type(run_dir, "lock_taken")
    assert taken.data["anchor"] == {"backend": "local", "dir": str(locks), "key": f"heads/{run_id}"}
    head = Head.model_validate_json(LocalStore(CLUSTER, locks).get(head_key(run_id)) or "")
    count = len(lines_of(run_dir))
    assert head.seq == count and head.hash == lines_of(run_dir)[-1]["hash"]
    code, out = cli("journal", "verify", str(run_dir))
    assert code == 0 and f"{count} events, chain intact; matches the head kept in the run registry" in out, out
    assert read_run(run_dir).integrity_ok


def test_dropping_run_finished_and_rewriting_the_head_is_caught(finished: tuple[Path, Path, str]) -> None:
    run_dir, _, run_id = finished
    kept = lines_of(run_dir)[:-1]
    assert kept[-1]["type"] != "run_finished"
    (run_dir / JOURNAL_FILE).write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in kept))
    (run_dir / HEAD_FILE).write_text(f"{len(kept):012d} {kept[-1]['hash']}\n")
    assert verify(run_dir) == len(kept)  # the chain alone cannot tell
    code, out = cli("journal", "verify", str(run_dir))
    assert code == 1 and f"run {run_id}" in out and f"ends at event #{len(kept)}" in out
    assert f"#{len(kept) + 1} were removed" in out or f"#{len(kept) + 1} to" in out, out
    code, out = cli("report", str(run_dir))
    assert code == 1 and "TAMPERED" in out, out
    assert (run_dir / "report.md").read_text().startswith("# Run TAMPERED")
    code, out = cli("journal", "verify", "--no-registry", str(run_dir))
    assert code == 0 and "not compared with the run registry" in out


def test_a_journal_rewritten_and_chained_afresh_is_caught(finished: tuple[Path, Path, str]) -> None:
    run_dir, _, run_id = finished
    lines = lines_of(run_dir)
    end = lines[-1]
    end["data"] = {**end["data"], "summary": "nothing happened here"}  # type: ignore[dict-item]
    rechain(run_dir, lines)
    assert verify(run_dir) == len(lines)
    code, out = cli("journal", "verify", str(run_dir))
    assert code == 1 and f"run {run_id}: event #{len(lines)} of the journal" in out and "was rewritten" in out, out
    record = read_run(run_dir)
    assert not record.integrity_ok and "was rewritten" in record.integrity


def test_a_removed_registry_head_fails_and_a_lagging_one_is_said(finished: tuple[Path, Path, str]) -> None:
    run_dir, locks, run_id = finished
    store = LocalStore(CLUSTER, locks)
    lines = lines_of(run_dir)
    # After a crash the registry may be an event behind: said, not failed.
    store.put(head_key(run_id), Head(run_id=run_id, seq=len(lines) - 1, hash=str(lines[-2]["hash"])).model_dump_json())
    code, out = cli("journal", "verify", str(run_dir))
    assert code == 0 and "the last 1 event(s) came after the registry last heard" in out, out
    store.delete_under("heads/")
    code, out = cli("journal", "verify", str(run_dir))
    assert code == 1 and "the registry has no head for it" in out and run_id in out, out


def test_an_unreachable_registry_is_exit_4_never_a_pass(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path / "r")
    journal.append(Event.LOCK_TAKEN, lock="etcd", backend="etcd", anchor={"backend": "etcd", "endpoints": ["http://127.0.0.1:9"],
                                                         "prefix": "/drengine", "key": "/drengine/clusters/c/heads/r"})
    journal.append(Event.RUN_STARTED, run_id="r", cluster="c", inventory=str(tmp_path / "gone.yaml"))
    journal.close()
    code, out = cli("journal", "verify", str(tmp_path / "r"))
    assert code == 4 and "chain is intact (2 events)" in out and "--no-registry" in out, out
    assert "not compared with the run registry" in read_run(tmp_path / "r").integrity


def test_a_stopped_run_closed_by_hand_still_matches_its_registry_head(tmp_path: Path) -> None:
    inventory = load_inventory(ROOT / "inventory" / "simulated.yaml")
    run_dir = tmp_path / "run"
    with pytest.raises(OperatorStop):  # no flag and no terminal for the first gate
        start_run(RunRequest(
            runbook=load_runbook(str(ROOT / "runbooks" / "mariadb-promote-survivor.yaml")), inventory=inventory,
            cluster=inventory.cluster(CLUSTER), mode=Mode.RUN, gates=FlagPolicy(), run_dir=run_dir,
            lock_dir=tmp_path / "locks"))
    code, out = cli("runs", "close", str(run_dir), "--reason", "promoted by hand, INC-7")
    assert code == 0, out
    code, out = cli("journal", "verify", str(run_dir))
    assert code == 0 and "matches the head kept in the run registry" in out, out

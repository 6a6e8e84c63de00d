"""The two-person rule on the simulated MariaDB cluster whose best replica lacks transactions
(its promote gate is dangerous): the run waits for a second person through the local registry,
counts each person once, voids approvals when the decision changes, stops (resumable) when the
wait is bounded or Ctrl-C ends it, and lets one person through only with `--alone --reason`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drengine.approvals import (
    Approval,
    Identity,
    check_not_approved_by,
    find_request,
    given_prefix,
    identity_now,
    record_approval,
    request_key,
)
from drengine.clock import wait_until
from drengine.engine import RunOutcome, RunRequest, start_run
from drengine.errors import InputError, OperatorStop
from drengine.gates import FlagPolicy
from drengine.inventory import load_inventory
from drengine.lock.store import LocalStore
from drengine.report import html, markdown
from drengine.runbook import load_runbook
from drengine.steps import Mode
from tests.helpers import cli, of_type
from tests.lockhelpers import ROOT, machine_env
from tests.webhook import receiver

CLUSTER = "sim-mariadb"
BOB = Identity(user="bob", host="laptop-bob")


def inventory(tmp_path: Path, policy: str = "{dangerous: 2}", where: str = "cluster", extra: str = "") -> Path:
    text = (ROOT / "inventory" / "simulated.yaml").read_text()
    text = text.replace("scenario: primary-dead-replica-lagging", "scenario: best-replica-without-binlog")
    if where == "cluster":
        text = text.replace("  sim-mariadb:\n    kind: mariadb\n", f"  sim-mariadb:\n    kind: mariadb\n    approvals: {policy}\n", 1)
    else:
        text += f"approvals: {policy}\n"
    path = tmp_path / "inventory.yaml"
    path.write_text(text + extra)
    return path


@dataclass
class Background:
    """A run in a thread of this process (its gates answered by flags), and what it ended with."""

    thread: threading.Thread
    run_dir: Path
    outcome: list[RunOutcome] = field(default_factory=list)
    error: list[BaseException] = field(default_factory=list)
    backend: list[Any] = field(default_factory=list)

    def join(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end"

    def requested(self, count: int = 1) -> None:
        def asked() -> bool:
            journal = self.run_dir / "journal.jsonl"
            return not self.thread.is_alive() or journal.exists() and len(of_type(self.run_dir, "approval_requested")) >= count

        assert wait_until(asked, 30, interval=0.05)
        assert len(of_type(self.run_dir, "approval_requested")) >= count, self.error


def start(inv: Path, run_dir: Path, lock_dir: Path, alone: str | None = None, listeners: list[Any] | None = None) -> Background:
    inventory_ = load_inventory(inv)
    request = RunRequest(runbook=load_runbook(str(ROOT / "runbooks" / "mariadb-promote-survivor.yaml")),
                         inventory=inventory_, cluster=inventory_.cluster(CLUSTER), mode=Mode.RUN,
                         gates=FlagPolicy(yes=True, accept_data_loss=True, reason="paged at 3 am"), run_dir=run_dir,
                         lock_dir=lock_dir, alone_reason=alone, listeners=list(listeners or []))
    box = Background(threading.Thread(target=lambda: None), run_dir)

    def around(journal: Any, backend: Any, walk: Any) -> Any:
        box.backend.append(backend)
        return walk()

    request.around_walk = around

    def go() -> None:
        try:
            box.outcome.append(start_run(request))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box.error.append(exc)

    box.thread = threading.Thread(target=go, daemon=True)
    box.thread.start()
    return box


def promoted(run_dir: Path) -> bool:
    """The promote step ran and did what it said (the runbook's end is the scenario's business:
    here the old primary's extra transactions keep db2 from following the new primary)."""
    return any(e.data["step"] == "promote" and e.data["ok"] for e in of_type(run_dir, "step_finished"))


def run_id_of(run_dir: Path) -> str:
    return str(of_type(run_dir, "run_started")[0].data["run_id"])


def test_the_policy_is_read_per_cluster_or_for_the_whole_inventory(tmp_path: Path) -> None:
    inv = load_inventory(inventory(tmp_path))
    assert inv.approvals_for(inv.cluster(CLUSTER)).needed(dangerous=True) == 2
    assert inv.approvals_for(inv.cluster(CLUSTER)).needed(dangerous=False) == 1
    assert inv.approvals_for(inv.cluster("sim-mariadb-healthy")).needed(dangerous=True) == 1
    top = load_inventory(inventory(tmp_path, "{dangerous: 2, confirm: 2}", where="top"))
    assert top.approvals_for(top.cluster("sim-mariadb-healthy")).needed(dangerous=False) == 2
    code, out = cli("inventory", "check", "-i", str(inventory(tmp_path, "{dangerous: 0}")))
    assert code == 2 and "approvals.dangerous" in out, out


def test_the_run_waits_for_a_second_person_and_the_same_one_never_counts_twice(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    run = start(inv, tmp_path / "r", tmp_path / "locks")
    run.requested()
    assert not [e for e in of_type(run.run_dir, "step_started") if e.data["step"] == "promote"]
    [first] = of_type(run.run_dir, "approval_given")
    assert first.data["who"] == identity_now().words() and first.data["reason"] == "paged at 3 am"
    [asked] = of_type(run.run_dir, "approval_requested")
    run_id = run_id_of(run.run_dir)
    assert asked.data["command"] == f"drengine approve {run_id} -i {os.path.realpath(inv)}"

    found = find_request(load_inventory(inv), run_id, lock_dir=tmp_path / "locks")
    assert found.request.step == "promote" and found.request.risks and found.request.statements
    assert any("from step choose-survivor" in line for line in found.request.evidence)
    with pytest.raises(InputError, match="already count as"):
        check_not_approved_by(found, identity_now())
    # Written behind the approver's back, the same person is refused by the run itself too.
    store = LocalStore(CLUSTER, tmp_path / "locks")
    again = Approval(request_id=found.request.request_id, decision=found.request.decision, who=identity_now(),
                     reason="me again")
    store.put(f"{given_prefix(run_id)}{found.request.request_id}-x", again.model_dump_json())
    assert wait_until(lambda: bool(of_type(run.run_dir, "approval_refused")), 10, interval=0.05)
    assert run.thread.is_alive() and not run.outcome

    record_approval(found, BOB, "checked the GTIDs myself")
    run.join()
    assert run.outcome and promoted(run.run_dir), run.error
    given = of_type(run.run_dir, "approval_given")
    assert [(g.data["who"], g.data["number"]) for g in given] == [(identity_now().words(), 1), ("bob@laptop-bob", 2)]
    [answer] = [e for e in of_type(run.run_dir, "gate_answered") if e.data["step"] == "promote"
                and not e.data.get("standing")]
    assert answer.data["who"] == f"{identity_now().words()} and bob@laptop-bob"
    assert answer.data["policy"].startswith("two-person")
    report = markdown(run.run_dir)
    [line] = [line for line in report.splitlines() if line.startswith("- promote:")]
    assert "two-person rule: 2 people approved" in line and "bob@laptop-bob" in line and identity_now().words() in line
    assert "checked the GTIDs myself" in line and "paged at 3 am" in line
    assert store.get(request_key(run_id)) is None  # withdrawn once answered


def test_flags_alone_never_pass_the_rule_and_a_bounded_wait_stops_the_run_resumably(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "{dangerous: 2, wait: 1}")
    run = start(inv, tmp_path / "r", tmp_path / "locks")
    run.join()
    assert not run.outcome and isinstance(run.error[0], OperatorStop) and run.error[0].resumable
    assert "waited 1 s" in str(run.error[0]) and "--alone" in str(run.error[0])
    assert not [e for e in of_type(run.run_dir, "step_started") if e.data["step"] == "promote"]
    [end] = of_type(run.run_dir, "run_finished")
    assert end.data["end"] == "stopped" and end.data["resumable"]
    assert LocalStore(CLUSTER, tmp_path / "locks").get(request_key(run_id_of(run.run_dir))) is None


def test_break_glass_alone_is_journaled_notified_and_flagged(tmp_path: Path) -> None:
    with receiver() as hook:
        inv = inventory(tmp_path, extra=f"notify:\n  - {{name: ops, url: '{hook.url}'}}\n")
        from drengine.notify import Notifier

        notifier = Notifier(load_inventory(inv).notify, str(inv), run_dir=tmp_path / "r")
        run = start(inv, tmp_path / "r", tmp_path / "locks", alone="the second DBA is unreachable",
                    listeners=[notifier.on_event])
        run.join()
        notifier.close()
        assert run.outcome and promoted(run.run_dir), run.error
        [alone] = of_type(run.run_dir, "approval_alone")
        assert alone.data["reason"] == "the second DBA is unreachable" and alone.data["needed"] == 2
        assert not of_type(run.run_dir, "approval_requested")
        notice = hook.wait_for(lambda b: b.get("event") == "break_glass")
        assert "BREAK GLASS" in notice.body["text"] and "the second DBA is unreachable" in notice.body["text"]
    [line] = [line for line in markdown(run.run_dir).splitlines() if line.startswith("- promote:")]
    assert "ALONE: two-person rule broken" in line and "the second DBA is unreachable" in line
    assert "<b>ALONE</b>" in html(run.run_dir)


def test_the_request_is_notified_with_the_command_to_approve(tmp_path: Path) -> None:
    with receiver() as hook:
        inv = inventory(tmp_path, extra=f"notify:\n  - {{name: ops, url: '{hook.url}'}}\n")
        from drengine.notify import Notifier

        notifier = Notifier(load_inventory(inv).notify, str(inv), run_dir=tmp_path / "r")
        run = start(inv, tmp_path / "r", tmp_path / "locks", listeners=[notifier.on_event])
        run.requested()
        run_id = run_id_of(run.run_dir)
        notice = hook.wait_for(lambda b: b.get("title", "").startswith("approval needed"))
        assert f"drengine approve {run_id}" in notice.body["text"] and notice.body["step"] == "promote"
        record_approval(find_request(load_inventory(inv), run_id, lock_dir=tmp_path / "locks"), BOB, "")
        run.join()
        notifier.close()
    assert run.outcome and promoted(run.run_dir)


def test_a_changed_decision_voids_the_approvals_and_asks_again(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    run = start(inv, tmp_path / "r", tmp_path / "locks")
    run.requested()
    run_id = run_id_of(run.run_dir)
    found = find_request(load_inventory(inv), run_id, lock_dir=tmp_path / "locks")
    run.backend[0].kill("db2")  # while the others read: the replica with the extra transactions dies
    record_approval(found, BOB, "looks right")
    run.requested(2)
    [voided] = of_type(run.run_dir, "approvals_invalidated")
    assert "bob@laptop-bob" in voided.data["who"] and "no longer count" in voided.data["text"]
    assert of_type(run.run_dir, "decision_changed")
    first, second = of_type(run.run_dir, "approval_requested")
    assert first.data["request_id"] != second.data["request_id"]
    stale = find_request(load_inventory(inv), run_id, lock_dir=tmp_path / "locks")
    assert stale.request.request_id == second.data["request_id"] and not stale.approvals
    with pytest.raises(OperatorStop, match="no longer waits on what you were shown"):
        record_approval(found, BOB, "the old question")  # shown before the change: nothing is approved
    record_approval(stale, BOB, "still right")
    run.join()
    assert run.outcome, run.error
    promote = [e for e in of_type(run.run_dir, "step_started") if e.data["step"] == "promote"]
    assert len(promote) == 1 and "db2 could not be reached" in " ".join(promote[0].data["risks"])


def test_approve_on_the_command_line_shows_the_gate_and_refuses_the_same_person(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    inv = inventory(tmp_path)
    monkeypatch.setenv("DRENGINE_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("DRENGINE_OPERATOR", "alice")
    run = start(inv, tmp_path / "r", tmp_path / "locks")
    run.requested()
    run_id = run_id_of(run.run_dir)
    code, out = cli("approve", run_id, "-i", str(inv), input=f"{CLUSTER}\n")
    assert code == 2 and "already count as alice" in out, out
    assert "DANGEROUS GATE" in out and "RISK: db2 has transactions db3 lacks" in out and "exact statements" in out
    monkeypatch.setenv("DRENGINE_OPERATOR", "bob")
    code, out = cli("approve", run_id, "-i", str(inv), input="sim-wrong\n")
    assert code == 3 and "nothing was approved" in out, out
    code, out = cli("approve", run_id, "-i", str(inv), input=f"{CLUSTER}\nsecond pair of eyes\n")
    assert code == 0 and "approved by bob" in out, out
    run.join()
    assert run.outcome and promoted(run.run_dir)
    code, out = cli("approve", run_id, "-i", str(inv), input=f"{CLUSTER}\n")
    assert code == 2 and "is not waiting for an approval" in out, out


def test_ctrl_c_while_waiting_stops_the_run_and_resume_asks_again(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    locks = tmp_path / "locks"
    run_dir = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "drengine.cli", "run", "mariadb-promote-survivor", "-i", str(inv), "-c", CLUSTER,
         "--yes", "--accept-data-loss", "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, stdin=subprocess.DEVNULL,
        env=machine_env(locks))
    try:
        assert wait_until(lambda: (run_dir / "journal.jsonl").exists() and bool(of_type(run_dir, "approval_requested")),
                          60, interval=0.05)
        run_id = run_id_of(run_dir)
        time.sleep(0.5)  # journaled, then shown: let the terminal line out before the interrupt
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, out
    assert f"drengine approve {run_id}" in out, out
    [end] = of_type(run_dir, "run_finished")
    assert end.data["end"] == "stopped" and end.data["resumable"]
    with pytest.raises(InputError, match="is not waiting"):
        find_request(load_inventory(inv), run_id, lock_dir=locks)

    resumed = subprocess.Popen(
        [sys.executable, "-m", "drengine.cli", "run", "--resume", str(run_dir), "--yes", "--accept-data-loss"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, stdin=subprocess.DEVNULL,
        env=machine_env(locks))
    try:
        assert wait_until(lambda: len(of_type(run_dir, "approval_requested")) == 2, 60, interval=0.05)
        record_approval(find_request(load_inventory(inv), run_id, lock_dir=locks), BOB, "after the resume")
        out, _ = resumed.communicate(timeout=60)
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert resumed.returncode == 1 and promoted(run_dir), out  # the scenario's db2 cannot follow (exit 1)
    assert [g.data["number"] for g in of_type(run_dir, "approval_given")] == [1, 1, 2]


def test_identities(monkeypatch: pytest.MonkeyPatch) -> None:
    alice = Identity(user="alice", host="h1")
    assert alice.same_person(Identity(user="alice", host="h1"))
    assert not alice.same_person(Identity(user="alice", host="h2"))
    assert not alice.same_person(Identity(user="bob", host="h1"))
    # A name the site sets tells people apart on a shared account, and is one person everywhere.
    assert not Identity(user="root", host="jump", name="alice").same_person(Identity(user="root", host="jump", name="bob"))
    assert Identity(user="root", host="a", name="alice").same_person(Identity(user="ops", host="b", name="alice"))
    assert Identity(user="root", host="jump", name="alice").same_person(Identity(user="root", host="jump"))
    # $USER and $LOGNAME are anyone's to set: the account of the real user id decides.
    monkeypatch.setenv("USER", "somebody-else")
    monkeypatch.setenv("LOGNAME", "somebody-else")
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.delenv("DRENGINE_OPERATOR", raising=False)
    import pwd

    assert identity_now().user == pwd.getpwuid(os.getuid()).pw_name
    monkeypatch.setenv("DRENGINE_OPERATOR", "Alice Smith")
    assert identity_now().name == "Alice Smith" and identity_now().words().startswith("Alice Smith (")
    if os.getuid() == 0:
        monkeypatch.setenv("SUDO_USER", "alice")
        assert identity_now().user == "alice"


def test_a_drill_is_not_held_by_the_rule_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = inventory(tmp_path, where="top")
    monkeypatch.setenv("DRENGINE_LOCK_DIR", str(tmp_path / "locks"))
    code, out = cli("drill", "run", "mariadb-promote-survivor", "-i", str(inv), "-c", "sim-mariadb-healthy",
                    "--fault", "kill-primary", "--run-dir", str(tmp_path / "drill"))
    assert code == 0, out
    notes = [e.data["text"] for e in of_type(tmp_path / "drill", "note")]
    assert any("approved by the drill policy alone" in n for n in notes), notes

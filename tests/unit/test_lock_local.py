"""The local lock: a kernel lock (flock) on a file. It names its holder and run directory, a dead
holder (even SIGKILLed) frees it, of many processes taking over a stale lock exactly one wins,
of many breakers exactly one wins, and a broken holder learns it at its next look."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drengine.errors import InputError, LockHeld, LockLost
from drengine.inventory import LocalLockSettings, load_inventory
from drengine.journal import Entry, Event
from drengine.lock import Holder, RunState, me
from drengine.lock.local import LocalLock, kernel_lock_pid
from drengine.lock.registry import RunPublisher, RunStatus, list_runs, state_after

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent


def test_holder_is_named_with_its_run_directory_and_break_lock_takes_it(tmp_path: Path) -> None:
    lock = LocalLock("c1", tmp_path)
    first = lock.acquire(me("run-a", tmp_path / "runs" / "a"))
    assert kernel_lock_pid(lock.path) == os.getpid()
    with pytest.raises(LockHeld) as held:
        LocalLock("c1", tmp_path).acquire(me("run-b", tmp_path / "runs" / "b"))
    message = str(held.value)
    assert "locked by run run-a (pid" in message and f"run directory {tmp_path / 'runs' / 'a'}" in message
    assert "--break-lock" in message and held.value.exit_code == 4
    assert first.lost() is None

    second = LocalLock("c1", tmp_path).acquire(me("run-c", tmp_path / "runs" / "c"), break_lock=True)
    assert second.replaced is not None and second.replaced.run_id == "run-a" and second.replaced_alive is True
    why = first.lost()
    assert why is not None and "--break-lock gave it to run run-c" in why
    with pytest.raises(LockLost, match="sends nothing further"):
        first.check()
    first.release()  # a broken holder's release leaves the new holder alone
    assert lock.holder() is not None and lock.holder().run_id == "run-c"  # type: ignore[union-attr]
    assert second.lost() is None
    second.release()
    assert lock.path.read_text() == "" and lock.holder() is None


def test_a_holder_that_died_without_releasing_is_taken_over(tmp_path: Path) -> None:
    lock = LocalLock("c1", tmp_path)
    tmp_path.mkdir(exist_ok=True)
    lock.path.write_text(json.dumps({"run_id": "ghost", "pid": 999999, "user": "x", "host": "h", "started": 0.0}))
    assert lock.holder() is None  # content without a kernel lock is not a holder
    held = lock.acquire(me("run-d", tmp_path))
    assert held.replaced is not None and held.replaced.run_id == "ghost" and held.replaced_alive is False
    held.release()


def _worker(settings: LocalLockSettings, run_id: str, mode: str, start: Path, release: Path, lock_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(TESTS / "lockworker.py"), settings.model_dump_json(), "c1", run_id, mode, str(start), str(release),
         str(lock_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_a_sigkilled_holder_frees_the_lock_and_is_named_as_gone(tmp_path: Path) -> None:
    settings = LocalLockSettings(backend="local")
    start, release = tmp_path / "go", tmp_path / "release"
    start.touch()
    holder = _worker(settings, "run-killed", "take", start, release, tmp_path)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "won"
    with pytest.raises(LockHeld, match="run-killed"):
        LocalLock("c1", tmp_path).acquire(me("run-next", tmp_path))
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    taken = LocalLock("c1", tmp_path).acquire(me("run-next", tmp_path))
    assert taken.replaced is not None and taken.replaced.run_id == "run-killed" and taken.replaced_alive is False
    taken.release()


def _race(workers: list[subprocess.Popen[str]], start: Path, release: Path) -> list[str]:
    """Start every worker at once; once each has said whether it won, let the winners go."""
    time.sleep(1.0)  # let every interpreter start and wait on the start file
    start.touch()
    first = [w.stdout.readline().strip() if w.stdout else "" for w in workers]
    release.touch()
    return [f"{line}\n{w.communicate(timeout=60)[0].strip()}".strip() for line, w in zip(first, workers, strict=True)]


def test_of_many_processes_taking_over_a_stale_lock_at_once_exactly_one_wins(tmp_path: Path) -> None:
    settings = LocalLockSettings(backend="local")
    lock = LocalLock("c1", tmp_path)
    lock.dir.mkdir(parents=True, exist_ok=True)
    lock.path.write_text(Holder(run_id="stale", user="x", host="h", pid=999999).model_dump_json())
    start, release = tmp_path / "go", tmp_path / "release"
    out = _race([_worker(settings, f"racer-{i}", "take", start, release, tmp_path) for i in range(12)], start, release)
    assert [o for o in out if o.startswith("won")] == ["won\nkept"], out
    losers = [o for o in out if o.startswith("held:")]
    assert len(losers) == 11 and all("is locked by run racer-" in o for o in losers), losers


def test_many_breakers_at_once_leave_exactly_one_holder_and_tell_every_other(tmp_path: Path) -> None:
    """Breakers are serialised: each replaces only the file whose holder it saw, so a later one may
    break an earlier one, but in the end one holds the lock and every other one has been told."""
    settings = LocalLockSettings(backend="local")
    live = LocalLock("c1", tmp_path).acquire(me("live-holder", tmp_path))
    start, release = tmp_path / "go", tmp_path / "release"
    out = _race([_worker(settings, f"breaker-{i}", "break", start, release, tmp_path) for i in range(12)], start, release)
    kept = [o for o in out if o == "won\nkept"]
    told = [o for o in out if o.startswith("held: ") or o.startswith("won\nlost: --break-lock gave it to")]
    assert len(kept) == 1 and len(told) == 11, out
    assert live.lost() is not None
    live.release()


def _entry(kind: Event, **data: object) -> Entry:
    return Entry(seq=1, ts=0.0, type=kind, data=dict(data), line=1)


def test_the_registry_state_follows_the_journal() -> None:
    s = RunState(cluster="c1", run_id="r1", runbook="rb")
    s = state_after(s, _entry(Event.RUN_STARTED), 1.0)
    assert not s.finished and s.updated == 1.0
    s = state_after(s, _entry(Event.GATE_ASKED, step="promote", level="dangerous"), 2.0)
    assert s.step == "promote" and s.gate == "promote (dangerous)"
    s = state_after(s, _entry(Event.GATE_ANSWERED, step="promote"), 3.0)
    assert s.gate is None
    same = state_after(s, _entry(Event.STATEMENT_SENT, step="promote"), 4.0)
    assert same is s
    s = state_after(s, _entry(Event.RUN_FINISHED, end="stopped", success=False, summary="lock lost"), 5.0)
    assert s.finished and s.resumable and s.summary == "lock lost"


class _Published:
    """A held lock that keeps what is published (the registry's record, as written)."""

    def __init__(self) -> None:
        self.records: list[RunState] = []

    def publish(self, state: RunState) -> None:
        self.records.append(state)


def test_a_run_publishes_each_change_a_reader_sees_and_nothing_else() -> None:
    """Every run, the explorer's too, publishes its record at each change of its state (a
    statement sent changes nothing a reader of `drengine runs` sees)."""
    events = [_entry(Event.RUN_STARTED), _entry(Event.STEP_STARTED, step="fence"),
              _entry(Event.GATE_ASKED, step="promote", level="dangerous"), _entry(Event.GATE_ANSWERED, step="promote"),
              _entry(Event.STATEMENT_SENT, step="promote"), _entry(Event.STEP_STARTED, step="verify"),
              _entry(Event.RUN_FINISHED, end="incomplete", success=False, summary="left: db3")]
    every = _Published()
    publish = RunPublisher(every, RunState(cluster="c1", run_id="r1", runbook="rb"), clock=lambda: 7.0)  # type: ignore[arg-type]
    for event in events:
        publish(event)
    assert len(every.records) == 6 and not every.records[0].finished
    assert every.records[-1].step == "verify" and every.records[-1].end == "incomplete" and every.records[-1].gate is None


def test_list_runs_shows_holder_running_interrupted_and_finished(tmp_path: Path) -> None:
    inv_path = tmp_path / "inv.yaml"
    inv_path.write_text(f"""\
lock: {{backend: local, dir: {tmp_path / 'locks'}}}
clusters:
  c1:
    kind: mariadb
    members: [{{name: db1}}]
""")
    inventory = load_inventory(inv_path)
    lock = LocalLock("c1", tmp_path / "locks")
    crashed = lock.acquire(me("r-crashed", tmp_path))
    crashed.publish(RunState(cluster="c1", run_id="r-crashed", started=1.0, step="promote"))
    os.close(crashed.fd)  # dies without releasing or finishing
    done = lock.acquire(me("r-done", tmp_path))
    done.publish(RunState(cluster="c1", run_id="r-done", started=2.0, finished=True, end="success", success=True))
    done.release()
    live = lock.acquire(me("r-live", tmp_path))
    live.publish(RunState(cluster="c1", run_id="r-live", started=3.0, step="promote", gate="promote (dangerous)"))
    [found] = list_runs(inventory)
    assert found.problem is None and found.holder is not None and found.holder.run_id == "r-live"
    assert [(v.run.run_id, v.status, v.holds_lock) for v in found.runs] == [
        ("r-live", RunStatus.WAITING, True), ("r-done", RunStatus.FINISHED, False), ("r-crashed", RunStatus.INTERRUPTED, False),
    ]
    live.release()


@pytest.mark.parametrize(("lock", "problem"), [
    ("{backend: etcd, endpoints: [127.0.0.1:2379]}", "lock.etcd.endpoints.0: expected an etcd client URL"),
    ("{backend: etcd, endpoints: ['http://e1:2379'], lease_ttl: 3, timeout: 2}", "must be at least twice the request timeout"),
    ("{backend: etcd, endpoints: ['http://e1:2379'], user: drengine}", "needs both `user` and `password`"),
    ("{backend: etcd, endpoints: ['http://e1:2379'], tls: {ca_file: /ca.pem}}", "not every endpoint is https://"),
    ("{backend: zookeeper}", "lock: Input tag 'zookeeper' found using 'backend' does not match"),
])
def test_bad_lock_sections_are_named_with_file_and_line(tmp_path: Path, lock: str, problem: str) -> None:
    p = tmp_path / "inv.yaml"
    p.write_text(f"lock: {lock}\nclusters:\n  c1:\n    kind: mariadb\n    members: [{{name: db1}}]\n")
    with pytest.raises(InputError) as err:
        load_inventory(p)
    assert any(problem in line and line.startswith(f"{p}:1") for line in err.value.problems), err.value.problems


def test_a_cluster_lock_overrides_the_inventory_lock(tmp_path: Path) -> None:
    p = tmp_path / "inv.yaml"
    p.write_text("""\
lock: {backend: etcd, endpoints: ['https://etcd1.example:2379'], password: {env: ETCD_PW}, user: drengine}
clusters:
  c1: {kind: mariadb, members: [{name: db1}]}
  c2: {kind: mariadb, members: [{name: db1}], lock: {backend: local, dir: /var/lock/dr}}
""")
    inv = load_inventory(p)
    assert inv.lock_for(inv.cluster("c1")).backend == "etcd"
    assert inv.lock_for(inv.cluster("c2")) == LocalLockSettings(backend="local", dir="/var/lock/dr")

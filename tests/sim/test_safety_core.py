"""The safety core on the MariaDB simulator: decisions made from what is true now (resume,
retry, a gate that waited), steps that never outlive their run, verdicts judged from the
final observation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drengine.clock import SimulatedClock
from drengine.datastores.mariadb.sim import SimCluster, scenario_lagging
from drengine.engine import RunOutcome, RunRequest, start_run
from drengine.errors import OperatorStop
from drengine.gates import Answer, GateAnswer, GateRequest
from drengine.inventory import load_inventory
from drengine.journal import verify
from drengine.machine import Machine
from drengine.runbook import load_runbook
from drengine.steps import Mode
from tests.helpers import ROOT, SIM_MARIADB, cli, events, of_type

INVENTORY = SIM_MARIADB


def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    return path


def seed(tmp_path: Path, run_dir: Path, **changes: dict[str, object]) -> SimCluster:
    """Write the run's simulator state before the run: the lagging scenario with `changes` per server."""
    cluster = load_inventory(str(inventory(tmp_path))).cluster("sim")
    sim = scenario_lagging(cluster)
    for name, fields in changes.items():
        for key, value in fields.items():
            setattr(sim.server(name), key, value)
    save(run_dir, sim)
    return sim


def save(run_dir: Path, sim: SimCluster) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "sim-state.json").write_text(sim.model_dump_json())


def load(run_dir: Path) -> SimCluster:
    return SimCluster.model_validate_json((run_dir / "sim-state.json").read_text())


def writable(sim: SimCluster) -> list[str]:
    return [s.name for s in sim.servers if s.alive and not s.read_only and s.source is None]


def follows(sim: SimCluster, name: str, primary: str) -> bool:
    s = sim.server(name)
    return s.source == primary and s.io_on and s.sql_on


def sent(run_dir: Path) -> list[tuple[str, str]]:
    return [(e.data["target"], e.data["text"]) for e in of_type(run_dir, "statement_sent")]


def last_is_run_finished(run_dir: Path) -> None:
    entries = events(run_dir)
    assert entries[-1].type.value == "run_finished"
    assert sum(1 for e in entries if e.type.value == "run_finished") >= 1
    verify(run_dir)


# -- fresh decisions ------------------------------------------------------------------------------------


def test_resume_observes_again_and_promotes_the_replica_that_came_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seed(tmp_path, run_dir, db2={"hung": True})
    code, out = cli("run", "mariadb-promote-survivor", "-i", str(inventory(tmp_path)), "-c", "sim",
                    "--run-dir", str(run_dir), "--yes")
    assert code == 3, out  # the dangerous gate: db2, the most advanced replica, does not answer
    asked = of_type(run_dir, "gate_asked")
    assert asked[-1].data["summary"] == "promote db3 to primary" and asked[-1].data["level"] == "dangerous"
    assert f"resume: drengine run --resume {run_dir}" in out
    sim = load(run_dir)
    sim.server("db2").hung = False  # db2 wakes up while the operator reads the gate
    save(run_dir, sim)

    code, out = cli("run", "--resume", str(run_dir), "--yes", "--accept-data-loss")
    assert code == 0, out
    sim = load(run_dir)
    assert writable(sim) == ["db2"]
    assert follows(sim, "db3", "db2")
    assert "0-1-100" in [t.gtid for t in sim.server("db2").applied]  # nothing lost: db2 held 0-1-100
    again = of_type(run_dir, "observed_again")
    assert again and "resume" in again[0].data["reason"]
    summaries = [e.data["summary"] for e in of_type(run_dir, "gate_asked") if e.data["step"] == "promote"]
    assert summaries == ["promote db3 to primary", "promote db2 to primary"]  # both proposals journaled
    assert not any(target == "db3" and "RESET SLAVE" in text for target, text in sent(run_dir))


class Scripted:
    """A gate policy that answers from a script and may change the world while it 'waits'."""

    name = "scripted"

    def __init__(self, answers: list[str], on_ask: object = None, clock: SimulatedClock | None = None,
                 wait: float = 0.0) -> None:
        self.answers = answers
        self.requests: list[GateRequest] = []
        self.on_ask = on_ask
        self.clock = clock
        self.wait = wait

    def ask(self, request: GateRequest) -> GateAnswer:
        self.requests.append(request)
        if callable(self.on_ask):
            self.on_ask(request)
        if self.clock is not None:
            self.clock.advance(self.wait)
        answer = self.answers.pop(0)
        if answer == "interrupt":
            raise KeyboardInterrupt
        return GateAnswer(Answer(answer), "tester", self.name, f"scripted {answer}")


class World:
    """The run's simulated backend, caught as the walk starts, so a test can change the
    cluster while a gate waits (as the real world does)."""

    backend: Any = None

    def around(self, journal: Any, backend: Any, walk: Callable[[], RunOutcome]) -> RunOutcome:
        self.backend = backend
        return walk()


def engine_request(tmp_path: Path, run_dir: Path, gates: object, clock: SimulatedClock,
                   runbook: str = "mariadb-promote-survivor", world: World | None = None) -> RunRequest:
    inv = load_inventory(str(inventory(tmp_path)))
    return RunRequest(runbook=load_runbook(runbook), inventory=inv, cluster=inv.cluster("sim"), mode=Mode.RUN,
                      gates=gates, run_dir=run_dir, machine=Machine(clock),  # type: ignore[arg-type]
                      around_walk=world.around if world else None)


def test_a_gate_that_waited_acts_on_what_is_true_now_and_asks_again_when_it_changed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seed(tmp_path, run_dir, db2={"hung": True})
    clock = SimulatedClock()
    world = World()

    def db2_wakes(request: GateRequest) -> None:
        if request.step == "promote" and request.proposal.summary == "promote db3 to primary":
            world.backend.resume("db2")

    # promote (db3, dangerous): the operator takes a minute and approves; promote again (db2): approve;
    # repoint: approve.
    gates = Scripted(["proceed", "proceed", "proceed"], on_ask=db2_wakes, clock=clock, wait=60.0)
    outcome = start_run(engine_request(tmp_path, run_dir, gates, clock, world=world))
    assert outcome.success, outcome.summary
    second = [r for r in gates.requests if r.step == "promote"][1]
    assert second.proposal.summary == "promote db2 to primary"
    assert "approved: promote db3 to primary (dangerous gate); now: promote db2 to primary (confirm gate)" in second.change
    assert "risk gone:" in second.change
    changed = of_type(run_dir, "decision_changed")
    assert changed and changed[0].data["before"] == "promote db3 to primary"
    assert writable(load(run_dir)) == ["db2"]


def test_an_unchanged_decision_keeps_its_approval_after_observing_again(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seed(tmp_path, run_dir)
    clock = SimulatedClock()
    gates = Scripted(["proceed", "proceed"], clock=clock, wait=30.0)
    outcome = start_run(engine_request(tmp_path, run_dir, gates, clock))
    assert outcome.success, outcome.summary
    # Asked once per gate: the re-observation found the same decision, so the approval stood.
    assert [r.step for r in gates.requests] == ["promote", "repoint-replicas"]
    standing = [e for e in of_type(run_dir, "gate_answered") if e.data.get("standing")]
    assert standing and standing[0].data["who"] == "tester"
    # Journaled once: the question when it was asked, then the one event saying the approval stands.
    assert [e.data["step"] for e in of_type(run_dir, "gate_asked")] == ["promote", "repoint-replicas"]
    assert len([e for e in of_type(run_dir, "gate_answered") if e.data["step"] == "promote"]) == 2


def test_yes_never_approves_a_proposal_that_became_dangerous(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seed(tmp_path, run_dir)
    clock = SimulatedClock()
    world = World()

    def db2_hangs(request: GateRequest) -> None:
        if request.step == "promote" and request.proposal.summary == "promote db2 to primary":
            world.backend.hang("db2")

    from drengine.gates import FlagPolicy

    class SlowYes(FlagPolicy):
        def ask(self, request: GateRequest) -> GateAnswer:
            db2_hangs(request)
            clock.advance(10.0)
            return super().ask(request)

    with pytest.raises(OperatorStop) as stop:
        start_run(engine_request(tmp_path, run_dir, SlowYes(yes=True), clock, world=world))
    assert "dangerous gate" in str(stop.value) and "changed since it was last shown" in str(stop.value)
    assert not sent(run_dir)
    assert stop.value.run_dir == run_dir and stop.value.resumable


def test_retry_at_a_gate_observes_again(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seed(tmp_path, run_dir, db2={"hung": True})
    world = World()

    def db2_wakes(request: GateRequest) -> None:
        world.backend.resume("db2")

    gates = Scripted(["retry", "proceed", "proceed"], on_ask=db2_wakes)
    outcome = start_run(engine_request(tmp_path, run_dir, gates, SimulatedClock(), world=world))
    assert outcome.success, outcome.summary
    assert [r.proposal.summary for r in gates.requests[:2]] == ["promote db3 to primary", "promote db2 to primary"]
    assert "proposed: promote db3 to primary" in gates.requests[1].change
    assert writable(load(run_dir)) == ["db2"]


def test_ctrl_c_at_a_gate_is_journaled_as_the_operator(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seed(tmp_path, run_dir)
    with pytest.raises(OperatorStop) as stop:
        start_run(engine_request(tmp_path, run_dir, Scripted(["interrupt"]), SimulatedClock()))
    finished = of_type(run_dir, "run_finished")[-1].data
    assert finished["end"] == "stopped" and finished["who"] != "nobody" and "Ctrl-C" in finished["summary"]
    assert stop.value.resumable
    last_is_run_finished(run_dir)


# -- bounded steps --------------------------------------------------------------------------------------


def tiny_timeout_runbook(tmp_path: Path) -> Path:
    text = (ROOT / "runbooks" / "mariadb-promote-survivor.yaml").read_text()
    text = text.replace("action: mariadb.promote\n    gate: confirm\n    timeout: 600",
                        "action: mariadb.promote\n    gate: confirm\n    timeout: 0.001")
    assert "timeout: 0.001" in text
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def test_a_step_past_its_deadline_sends_nothing_more_and_resume_finishes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seed(tmp_path, run_dir, db2={"latency": 0.01})  # each statement to db2 takes 10 ms, on the run's clock too
    runbook = tiny_timeout_runbook(tmp_path)
    code, out = cli("run", str(runbook), "-i", str(inventory(tmp_path)), "-c", "sim", "--run-dir", str(run_dir), "--yes")
    assert code == 1, out
    assert "INTERRUPTED" in out and f"resume: drengine run --resume {run_dir}" in out
    last_is_run_finished(run_dir)
    finished = of_type(run_dir, "run_finished")[-1].data
    assert finished["end"] == "interrupted"
    assert of_type(run_dir, "step_interrupted")[0].data["effect_known"] is False
    for _ in range(6):  # each attempt sends at least one statement before it sees its deadline
        code, out = cli("run", "--resume", str(run_dir), "--yes")
        last_is_run_finished(run_dir)
        if code == 0:
            break
        assert code == 1 and "INTERRUPTED" in out, out
    assert code == 0, out
    statements = sent(run_dir)
    promote = [s for s in statements if s[0] == "db2"]
    assert len(promote) == len(set(promote)), f"a statement was sent twice: {promote}"
    sim = load(run_dir)
    assert writable(sim) == ["db2"] and follows(sim, "db3", "db2")


def test_a_step_given_more_time_on_resume_finishes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seed(tmp_path, run_dir, db2={"latency": 0.01})
    runbook = tiny_timeout_runbook(tmp_path)
    code, out = cli("run", str(runbook), "-i", str(inventory(tmp_path)), "-c", "sim", "--run-dir", str(run_dir), "--yes")
    assert code == 1 and "INTERRUPTED" in out, out
    assert "--timeout promote=SECONDS" in out  # the interruption says how to give it longer
    code, out = cli("run", "--resume", str(run_dir), "--yes", "--timeout", "promte=60")
    assert code == 2 and "has no step 'promte'" in out and "did you mean" in out.lower(), out
    code, out = cli("run", "--resume", str(run_dir), "--yes", "--timeout", "promote=60")
    assert code == 0, out  # one resume is enough: the step has a minute now
    resumed = of_type(run_dir, "run_resumed")
    assert resumed[-1].data["timeouts"] == {"promote": 60.0}
    code, report = cli("report", str(run_dir), "--format", "md", "--out", "-")
    assert "| timeouts given | promote: 60 s (--timeout, given at the resume of " in report, report[:1500]
    code, page = cli("report", str(run_dir), "--format", "html", "--out", "-")
    assert 'id="timeouts">promote: 60 s (--timeout, given at the resume of' in page
    sim = load(run_dir)
    assert writable(sim) == ["db2"] and follows(sim, "db3", "db2")
    code, out = cli("run", "mariadb-promote-survivor", "-i", str(inventory(tmp_path)), "-c", "sim",
                    "--run-dir", str(tmp_path / "bad"), "--yes", "--timeout", "promote=0")
    assert code == 2 and "SECONDS above 0" in out, out


def test_sigkill_while_a_statement_is_in_flight_then_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seed(tmp_path, run_dir, db2={"latency": 3.0})
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRENGINE_TEST_")}
    proc = subprocess.Popen([sys.executable, "-m", "drengine.cli", "run", "mariadb-promote-survivor", "-i",
                             str(inventory(tmp_path)), "-c", "sim", "--run-dir", str(run_dir), "--yes"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (run_dir / "journal.jsonl").exists() and any(
                    e.type.value == "step_started" and e.data["step"] == "promote" for e in events(run_dir)):
                break
            time.sleep(0.05)
        time.sleep(1.0)  # STOP SLAVE has taken effect on db2; its answer takes 3 s
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert not of_type(run_dir, "run_finished")
    assert sent(run_dir) == []  # in flight: not journaled yet
    assert not load(run_dir).server("db2").io_on  # ... but it took effect
    sim = load(run_dir)
    sim.server("db2").latency = 0.0
    save(run_dir, sim)
    code, out = cli("run", "--resume", str(run_dir), "--yes")
    assert code == 0, out
    reconciled = of_type(run_dir, "step_reconciled")
    assert reconciled and reconciled[0].data["step"] == "promote" and reconciled[0].data["took_effect"] is False
    db2 = [text for target, text in sent(run_dir) if target == "db2"]
    assert "STOP SLAVE" not in db2  # it had taken effect: not sent again
    assert db2 == ["RESET SLAVE ALL", "SET GLOBAL read_only=0"] + db2[2:]
    assert writable(load(run_dir)) == ["db2"]


# -- honest verdicts -----------------------------------------------------------------------------------


def test_skipping_repoint_is_incomplete_with_what_is_left(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seed(tmp_path, run_dir)
    gates = Scripted(["proceed", "skip"])
    outcome = start_run(engine_request(tmp_path, run_dir, gates, SimulatedClock()))
    assert not outcome.success and outcome.end == "incomplete"
    assert "db3 replicates from 127.0.1.11:3306, not from db2" in outcome.summary
    assert "skipped: repoint-replicas (by tester)" in outcome.summary
    assert any("mariadb-rejoin" in line for line in outcome.left)
    goal = of_type(run_dir, "goal_checked")[-1].data
    assert goal["holds"] is False
    from drengine.report import write_markdown

    report = write_markdown(run_dir).read_text()
    assert "incomplete" in report


class SkipOne:
    name = "skip-one"

    def __init__(self, step: str) -> None:
        self.step = step

    def ask(self, request: GateRequest) -> GateAnswer:
        answer = "skip" if request.step == self.step else "proceed"
        return GateAnswer(Answer(answer), "tester", self.name, answer)


def test_skip_never_yields_success_unless_the_goal_holds(tmp_path: Path) -> None:
    """Skip each gated step of promote-survivor in turn: DONE only when the simulator itself
    shows one writable primary that every reachable server follows."""
    for skipped in ("promote", "repoint-replicas"):
        run_dir = tmp_path / skipped
        seed(tmp_path, run_dir)

        outcome = start_run(engine_request(tmp_path, run_dir, SkipOne(skipped), SimulatedClock()))
        sim = load(run_dir)
        primaries = writable(sim)
        holds = len(primaries) == 1 and all(
            follows(sim, s.name, primaries[0]) for s in sim.servers if s.alive and not s.hung and s.name != primaries[0])
        assert outcome.success == holds, (skipped, outcome.summary)
        assert not outcome.success


def test_a_failed_run_names_its_cause_before_what_the_failure_branch_did(tmp_path: Path) -> None:
    text = """\
name: fail-then-look
kind: mariadb
summary: a check refuses, the failure branch looks once more
goal:
  action: mariadb.goal_replication
start: check
steps:
  - id: look
    action: mariadb.observe
    next: check
  - id: check
    action: mariadb.check_no_primary
    next: done
    branches: {failed: after}
  - id: after
    action: mariadb.observe
    next: failed
"""
    runbook = tmp_path / "fail-then-look.yaml"
    runbook.write_text(text.replace("start: check", "start: look"))
    inv = tmp_path / "alive.yaml"
    inv.write_text(INVENTORY.replace("primary-dead-replica-lagging", "primary-alive"))
    code, out = cli("run", str(runbook), "-i", str(inv), "-c", "sim", "--run-dir", str(tmp_path / "r"), "--yes")
    assert code == 1, out
    verdict = [line for line in out.splitlines() if line.startswith("FAILED:")][0]
    assert verdict.startswith("FAILED: step check failed: a writable primary is reachable: db1"), verdict
    assert "then: 3 of 3 servers answered" in verdict

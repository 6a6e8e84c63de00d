"""Running one scenario: the real engine and runbook, in-process, on the datastore's simulator
and a simulated clock, with the operator's answers scripted, the engine killed at chosen
journal boundaries and resumed (`resume_run` on the same run directory, as an operator would
after a crash), and the world changed under the run through the simulator's fault operations.
Every journal event is shown to the datastore's invariants; the journal and the final state
are judged at the end.

The engine is killed in-process: a journal listener raises `Killed` (a BaseException, which
nothing in the engine handles) right after the chosen event is written; whatever the
unwinding engine still journals is cut away (`journal.cut_after`), which leaves the run
directory exactly as a SIGKILL at that boundary would.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drengine.clock import SimulatedClock
from drengine.engine import FRESH_FOR, ResumeRequest, RunOutcome, RunRequest, resume_run, start_run
from drengine.errors import DrengineError, InputError, OperatorStop, StepInterrupted
from drengine.explore import invariants
from drengine.explore.kit import Kit, Ledger, Violation, Watch, kit_for
from drengine.explore.scenario import MemberSpec, Scenario, WorldChange
from drengine.gates import Answer, GateAnswer, GateRequest
from drengine.inventory import Cluster, Inventory, load_inventory
from drengine.journal import Entry, Event, JournalWriter, cut_after, read_entries
from drengine.machine import Disk, Machine, ScratchDisk
from drengine.runbook import Runbook, load_runbook
from drengine.simstate import load_state, save_state
from drengine.steps import Mode

CLUSTER = "explore"
MAX_SEGMENTS = 6  # a run and at most five resumes
WHO = "explorer"


class Killed(BaseException):
    """The engine dies right after journal event `seq` (the explorer's in-process SIGKILL)."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"killed after journal event #{seq}")
        self.seq = seq


@dataclass
class Result:
    scenario: Scenario
    violations: list[Violation]
    end: str  # the run's last end: done, incomplete, failed, stopped, interrupted, killed, error
    segments: int = 1
    kills: int = 0
    events: int = 0
    run_dir: Path | None = None
    journal: list[Entry] = field(default_factory=list)
    error: str = ""  # the engine's error that ended the last segment, if any
    # Each kill as the engine's crash hook spells it (`TYPE:STEP:N`, see engine.CRASH_ENV).
    kill_points: list[str] = field(default_factory=list)


class ScriptedGates:
    """The operator of a scenario: answers from the script, then approves every ordinary and
    dangerous gate and lets every refused check stand. While a gate waits, the world may change
    (and the clock moves on past the engine's freshness limit)."""

    name = "explore"

    def __init__(self, run: ScenarioRun) -> None:
        self.run = run
        self.asked = 0

    def remaining(self) -> bool:
        return self.asked < len(self.run.scenario.answers)

    def ask(self, request: GateRequest) -> GateAnswer:
        index = self.asked
        self.asked += 1
        for change in self.run.changes_at("gate", index):
            self.run.apply(change)
        answers = self.run.scenario.answers
        scripted = answers[index] if index < len(answers) else ("stop" if request.is_override else "proceed")
        when = self.run.clock.wall()
        if scripted == "stop":
            # Nobody at a terminal and no flag: the run stops here; a refused check stands.
            raise OperatorStop(f"stopped at step {request.step}: no answer (scripted)", who="nobody")
        return GateAnswer(Answer(scripted), WHO, self.name, f"scripted {scripted}", when=when)


class ScenarioRun:
    """One scenario, from its first run to its last resume."""

    def __init__(self, runner: Runner, scenario: Scenario, run_dir: Path) -> None:
        self.runner = runner
        self.kit = runner.kit
        self.scenario = scenario
        self.run_dir = run_dir
        self.prelude_dir = run_dir.parent / "prelude"
        # The scenario's own lock directory: the lock's run registry beside it would otherwise
        # keep every scenario's record, and read them all at the end of each run.
        self.locks = run_dir.parent / "locks"
        self.clock = SimulatedClock()
        # The explorer's machine: the scenario's own clock, and its scratch disk (a tmpfs) or,
        # replaying a case to keep, a real one.
        self.machine = Machine(self.clock, runner.disk)
        self.ledger = Ledger()
        self.watch: Watch = runner.kit.watch(scenario.runbook)
        self.gates = ScriptedGates(self)
        self.backend: Any = None
        self.violations: list[Violation] = []
        self.segment = 0
        self.segment_events = 0
        self.crash_at = 0
        self.dead = False
        self.goal_state: Any = None
        self.kills = 0
        self.kill_points: list[str] = []
        self.segment_seen: list[tuple[str, str]] = []
        self.error = ""
        self.promise: str | None = None  # the liveness oracle's reason a recovery is possible
        self.start_model: Any = None  # the simulator's state when the explored run starts (after any prelude)
        self.finished_end = ""  # the end of the last run_finished journaled (and not cut away)
        self.changed_in: set[int] = set()  # segments during or after which the world changed
        self._changes: dict[tuple[str, int], list[WorldChange]] = {}  # asked at every journal event
        for change in scenario.changes:
            self._changes.setdefault((change.when, change.index), []).append(change)

    # -- the world ----------------------------------------------------------------------------
    def changes_at(self, when: str, index: int) -> list[WorldChange]:
        return self._changes.get((when, index), [])

    def apply(self, change: WorldChange, backend: Any = None) -> None:
        target = backend if backend is not None else self.backend
        if target is None:
            return
        self.clock.advance(change.advance)
        if self.kit.applies(self.kit.model(target), change.op, change.member):
            self.kit.change(target, change.op, change.member)
            self.changed_in.add(self.segment)
            self.watch.world(self.kit.model(target), change.describe())

    def world_changed(self, first: int, then: int) -> bool:
        return any(first <= s < then for s in self.changed_in)

    # -- the listener and the walk wrapper -------------------------------------------------------
    def on_event(self, entry: Entry) -> None:
        if self.dead:
            return  # the engine is dead: what it still journals while unwinding is cut away
        self.segment_events += 1
        self.segment_seen.append((entry.type.value, str(entry.data.get("step", ""))))
        if entry.type is Event.RUN_FINISHED:
            self.finished_end = str(entry.data.get("end"))
        self.ledger.see(entry)
        model = self.kit.model(self.backend) if self.backend is not None else None
        try:
            found = self.watch.after_event(entry, model, self.ledger)
        except Exception as exc:  # noqa: BLE001 - an invariant that crashes is a finding too
            found = [Violation("explore.invariant-error", f"{type(exc).__name__}: {exc}")]
        if entry.type.value == "goal_checked" and model is not None:
            self.goal_state = self.kit.copy(model)  # what a success verdict is judged on
        for violation in found:
            where = f"after event #{self.ledger.events} ({entry.type.value}, step {self.ledger.step or '-'})"
            self.violations.append(Violation(violation.invariant, violation.detail, violation.at or where))
        for change in self.changes_at("event", self.ledger.events):
            if change.op == "slow":
                self.clock.advance(change.advance)  # the statement took this long: deadlines may pass
                self.changed_in.add(self.segment)
            elif self.backend is not None and change.op in self.kit.flaps:
                self.apply(change)
        if self.crash_at and self.segment_events == self.crash_at:
            self.dead = True
            kind, step = self.segment_seen[-1]
            same = sum(1 for k, s in self.segment_seen if k == kind and (not step or s == step))
            self.kill_points.append(f"{kind}:{step}:{same}")
            raise Killed(entry.seq)

    def around(self, journal: JournalWriter, backend: Any, walk: Callable[[], RunOutcome]) -> RunOutcome:
        self.kit.attach(backend, self.clock)
        self.backend = backend
        try:
            return walk()
        finally:
            self.backend = None

    # -- the segments ---------------------------------------------------------------------------
    def go(self) -> Result:
        runner = self.runner
        runner.write_state(self.scenario.state)
        if self.scenario.prelude is not None:
            self._prelude()
        self.promise = self._promise()
        self.start_model = self.kit.copy(self.runner.final_model())  # what the ledger invariant compares with
        return self._segments()

    def _promise(self) -> str | None:
        """The liveness oracle's word on this scenario's starting state, asked only when the
        scenario leaves the run alone: every scripted answer approves and nothing changes under it."""
        scenario = self.scenario
        if any(a not in ("proceed", "retry") for a in scenario.answers):
            return None
        if any(c.when != "prelude" for c in scenario.changes):
            return None
        return self.kit.expect_done(scenario.runbook, self.runner.final_model())

    def _segments(self) -> Result:
        end = "error"
        while True:
            self.segment_events, self.dead, self.segment_seen = 0, False, []
            crashes = self.scenario.crashes
            self.crash_at = crashes[self.segment] if self.segment < len(crashes) else 0
            try:
                outcome = self._segment()
                end = outcome.end
                break
            except Killed as killed:
                end = "killed"
                self.kills += 1
                cut_after(self.run_dir, killed.seq)
                self._lock_of_the_dead()
                self._while_dead()
                if self._finished_on_disk():
                    end = "finished"  # killed right after run_finished: the run was over
                    self.kill_points.pop()
                    break
            except (OperatorStop, StepInterrupted) as stop:
                end = "stopped" if isinstance(stop, OperatorStop) else "interrupted"
                if not stop.resumable:
                    break
                if isinstance(stop, OperatorStop) and not self.gates.remaining():
                    break  # the operator stopped and has nothing more to say; an interrupted step is resumed
            except InputError as exc:
                if self.segment and not self._started_on_disk():
                    end = "never-started"  # killed before run_started: nothing was done, nothing to resume
                    break
                name = "engine.resume-refused" if self.segment else "explore.cannot-start"
                self.violations.append(Violation(name, str(exc), f"segment {self.segment + 1}"))
                break
            except DrengineError as exc:
                end = "failed"
                self.error = f"{type(exc).__name__}: {exc}"
                break
            except Exception as exc:  # noqa: BLE001 - the engine must never raise anything else
                end = "error"
                self.violations.append(Violation("engine.internal-error", f"{type(exc).__name__}: {exc}",
                                                 f"segment {self.segment + 1}, step {self.ledger.step or '-'}"))
                break
            self.segment += 1
            if self.segment >= MAX_SEGMENTS:
                break
        return self._judge(end)

    def _segment(self) -> RunOutcome:
        runner = self.runner
        if self.segment == 0:
            return start_run(RunRequest(
                runbook=runner.runbook, inventory=runner.inventory, cluster=runner.cluster, mode=Mode.RUN,
                gates=self.gates, run_dir=self.run_dir, lock_dir=self.locks, listeners=[self.on_event],
                around_walk=self.around, machine=self.machine, inputs=self._inputs(),
            ))
        return resume_run(ResumeRequest(self.run_dir, self.gates, [self.on_event], lock_dir=self.locks,
                                        around_walk=self.around, machine=self.machine,
                                        loaded=(runner.runbook, runner.inventory)))

    def _lock_of_the_dead(self) -> None:
        """A killed engine leaves its lock behind, held by a process that is gone: the resume
        takes it over. In-process the holder is still alive, so the lock is taken away here."""
        for path in self.locks.glob("*.lock"):
            path.unlink()

    def _inputs(self) -> dict[str, str]:
        """The runbook inputs: the prelude's run directory, where the runbook asks for it."""
        prelude = self.scenario.prelude
        given = dict(self.scenario.inputs)
        if prelude is not None and prelude.input:
            given[prelude.input] = str(self.prelude_dir)
        return given

    def _while_dead(self) -> None:
        changes = self.changes_at("crash", self.kills)
        if not changes:
            return
        from drengine.backends import open_backend

        backend = open_backend(self.runner.cluster, self.runner.inventory, self.run_dir, self.clock, self.machine.disk)
        self.kit.attach(backend, self.clock)
        try:
            for change in changes:
                self.apply(change, backend)
        finally:
            backend.close()

    def _started_on_disk(self) -> bool:
        return any(e.type.value == "run_started" for e in read_entries(self.run_dir / "journal.jsonl"))

    def _finished_on_disk(self) -> bool:
        # What the kill left on disk is every event this scenario's engines journaled while
        # alive (the rest was cut away), and those are the events `on_event` saw.
        return bool(self.finished_end) and self.finished_end not in invariants.RESUMABLE

    def _prelude(self) -> None:
        prelude = self.scenario.prelude
        assert prelude is not None
        from drengine.gates import FlagPolicy

        runbook = self.runner.prelude_runbook(prelude.runbook)
        before = self.runner.final_model()
        try:
            start_run(RunRequest(
                runbook=runbook, inventory=self.runner.inventory, cluster=self.runner.cluster, mode=Mode.RUN,
                gates=FlagPolicy(yes=True, accept_data_loss=True), run_dir=self.prelude_dir,
                lock_dir=self.locks, machine=self.machine,
            ))
        except DrengineError:
            pass  # the explored run meets whatever the prelude left behind
        self.watch.prelude(before, self.runner.final_model())
        changes = self.changes_at("prelude", 0)
        if changes:
            from drengine.backends import open_backend

            backend = open_backend(self.runner.cluster, self.runner.inventory, self.prelude_dir, self.clock,
                                   self.machine.disk)
            self.kit.attach(backend, self.clock)
            try:
                for change in changes:
                    self.apply(change, backend)
            finally:
                backend.close()

    # -- the verdict ----------------------------------------------------------------------------
    def _judge(self, end: str) -> Result:
        runbook = self.runner.runbook
        entries, broken = invariants.journal_entries(self.run_dir)
        found = list(self.violations) + broken
        mutating = self.kit.mutating
        found += invariants.nothing_after_finish(entries)
        found += invariants.gated_statements(entries, runbook, mutating)
        found += invariants.sent_once(entries, runbook, self.kit.once, self.world_changed)
        found += invariants.sent_once_per_step(entries, runbook, self.kit.once)
        last = invariants.last_finish(entries)
        success = bool(last is not None and last.data.get("success"))
        if last is not None and end in ("finished", "killed"):
            end = str(last.data.get("end"))
        model = self.runner.final_model()
        if success:
            # Judged on the state the engine's goal check saw: the world may change after it.
            why = self.kit.goal(self.scenario.runbook, self.goal_state if self.goal_state is not None else model,
                                self.watch)
            if why is not None:
                found.append(Violation("goal.success-implies-goal",
                                       f"the run ended {last.data.get('end') if last else '?'} with success, but in the "
                                       f"simulator's final state the goal does not hold: {why}"))
        # Killed before run_started, nothing was done and nothing is resumed: the operator starts again.
        found += invariants.liveness(self.promise, end != "never-started", end, success)
        if self.start_model is not None:
            found += invariants.ledger_covers(self.kit.ledger_changes(self.scenario.runbook, self.start_model, model),
                                              entries)
        try:
            found += self.watch.at_end(model, self.ledger, success)
        except Exception as exc:  # noqa: BLE001
            found.append(Violation("explore.invariant-error", f"{type(exc).__name__}: {exc}", "at the end"))
        return Result(self.scenario, _unique(found), end, self.segment + 1, self.kills, self.ledger.events,
                      self.run_dir, entries, self.error, self.kill_points)


def _unique(found: list[Violation]) -> list[Violation]:
    seen: set[tuple[str, str]] = set()
    out = []
    for v in found:
        if (v.invariant, v.detail) not in seen:
            seen.add((v.invariant, v.detail))
            out.append(v)
    return out


class Runner:
    """Runs the scenarios of one runbook, one after the other, each in a fresh run directory
    under `work` (a tmpfs such as /dev/shm when there is one). On a scratch disk (the default:
    one of its own) nothing is flushed and the simulator's state file is kept in memory (see
    drengine/machine.py); a case replayed to be kept runs on a real disk, as every real run."""

    def __init__(self, runbook: str, work: Path, disk: Disk | None = None, keep: bool = False) -> None:
        self.runbook: Runbook = load_runbook(runbook)
        self.kit: Kit = kit_for(self.runbook.spec.kind)
        if self.runbook.name not in self.kit.runbooks:
            raise InputError(f"runbook {self.runbook.name} has no situations in the {self.kit.kind} explore kit; "
                             f"it explores: {', '.join(self.kit.runbooks)}")
        self.work = work
        self.disk = disk if disk is not None else ScratchDisk()
        self.keep = keep
        self.locks = work / "locks"
        self.state_file = work / "sim-state.json"
        self._inventories: dict[tuple[MemberSpec, ...], tuple[Inventory, Cluster]] = {}
        self._preludes: dict[str, Runbook] = {}
        self.inventory: Inventory
        self.cluster: Cluster
        self.count = 0

    def prelude_runbook(self, name: str) -> Runbook:
        if name not in self._preludes:
            self._preludes[name] = load_runbook(name)
        return self._preludes[name]

    def use_members(self, members: list[MemberSpec]) -> None:
        key = tuple(members)
        if key not in self._inventories:
            path = self.work / f"inventory-{len(self._inventories)}.yaml"
            hosts = self.kit.hosts(self.work)
            cluster = self.kit.inventory(CLUSTER, members)
            cluster["simulated"] = {**cluster["simulated"], "state_file": str(self.state_file)}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump({"lock_dir": str(self.locks), "clusters": {CLUSTER: cluster},
                                            **({"hosts": hosts} if hosts else {})}))
            inventory = load_inventory(path)
            self._inventories[key] = (inventory, inventory.cluster(CLUSTER))
        self.inventory, self.cluster = self._inventories[key]

    def write_state(self, state: dict[str, Any]) -> None:
        save_state(json.dumps(state), self.state_file, self.disk)

    def final_model(self) -> Any:
        return load_state(self.state_file, self.kit.saved_state(), self.kit.kind, self.disk)

    def run(self, scenario: Scenario) -> Result:
        if scenario.kind != self.kit.kind or scenario.runbook != self.runbook.name:
            raise InputError(f"the case is for runbook {scenario.runbook} ({scenario.kind}), not {self.runbook.name}")
        self.count += 1
        self.use_members(scenario.members)
        scenario_dir = self.work / f"scenario-{self.count}"
        if scenario_dir.exists():
            shutil.rmtree(scenario_dir)
        try:
            return ScenarioRun(self, scenario, scenario_dir / "run").go()
        finally:
            if not self.keep:
                shutil.rmtree(scenario_dir, ignore_errors=True)


__all__ = ["FRESH_FOR", "Killed", "Result", "Runner", "ScenarioRun", "ScriptedGates"]

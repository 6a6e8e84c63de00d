"""The engine: walks a runbook's state machine step by step, gating, acting, journaling
every event before moving on, and resuming an interrupted run without repeating a
mutating step that took effect or skipping one that did not.

The engine never prints: the CLI follows the journal (every appended entry is handed to
its listeners) and shows it.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drengine.clock import SYSTEM, Clock
from drengine.errors import (
    CommandFailed,
    ConnectError,
    DrengineError,
    InputError,
    JournalCorrupt,
    OperatorStop,
    StepFailed,
)
from drengine.gates import Answer, GateAnswer, GatePolicy, GateRequest
from drengine.inventory import Cluster, Inventory, load_inventory
from drengine.journal import Entry, Event, JournalWriter, read_entries, verify
from drengine.lock import Acquired, ClusterLock
from drengine.runbook import Runbook, StepSpec, load_runbook
from drengine.steps import Action, Effect, Facts, GateLevel, Mode, Proposal, RunContext, Statement, StepResult

CRASH_ENV = "DRENGINE_TEST_CRASH_AFTER"


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    end: str
    success: bool
    summary: str
    plan: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunRequest:
    runbook: Runbook
    inventory: Inventory
    cluster: Cluster
    mode: Mode
    gates: GatePolicy
    run_dir: Path | None = None
    runs_root: Path = Path("runs")
    break_lock: bool = False
    lock_dir: Path | None = None
    operator_said_gone: tuple[str, ...] = ()
    listeners: list[Callable[[Entry], None]] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    # Drills wrap the walk: health check, canaries and the fault before it, measurements after.
    around_walk: Callable[[JournalWriter, Any, Callable[[], RunOutcome]], RunOutcome] | None = None
    # The run's clock (steps' waits, and the simulator of a simulated cluster); None: the system's.
    clock: Clock | None = None


def new_run_id(cluster: str, clock: Callable[[], float] = time.time) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    return f"{stamp}-{cluster}-{secrets.token_hex(2)}"


class _Machine:
    """The model object the `transitions` machine drives; holds the current state."""

    state: str


def _crash_hook() -> Callable[[Entry], None] | None:
    """Test-only fault injection: SIGKILL this process right after a given journal event,
    to prove that resume works at every boundary. Format: `TYPE:STEP[:N]` (N-th match)."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return None
    parts = spec.split(":")
    kind, step = parts[0], parts[1] if len(parts) > 1 else ""
    wanted = int(parts[2]) if len(parts) > 2 else 1
    seen = [0]

    def hook(entry: Entry) -> None:
        if entry.type.value == kind and (not step or entry.data.get("step") == step):
            seen[0] += 1
            if seen[0] == wanted:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _run_with_deadline(fn: Callable[[], StepResult], seconds: float, what: str) -> StepResult:
    """Bound a step by its timeout. The worker is a daemon thread: if it is stuck in I/O past
    the deadline the run moves on (the connectors' own timeouts end it eventually)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the engine's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"step-{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise StepFailed(
            f"step {what} did not finish within its timeout of {seconds:g} s; it may still take effect. "
            f"Check the cluster, then resume the run (the step will be checked before anything is repeated)"
        )
    if "error" in box:
        raise box["error"]
    result: StepResult = box["result"]
    return result


class Engine:
    def __init__(self, request: RunRequest, backend: Any, journal: JournalWriter, run_id: str) -> None:
        self.request = request
        self.runbook = request.runbook
        self.journal = journal
        self.run_id = run_id
        self.facts = Facts()
        self.mode = request.mode
        self._mutated_in_plan = False
        self._plan_overrides: list[str] = []
        self.plan: list[dict[str, Any]] = []
        self._current_step = ""
        self._last_summary = ""
        self.ctx = RunContext(
            inventory=request.inventory,
            cluster=request.cluster,
            mode=request.mode,
            facts=self.facts,
            backend=backend,
            record_statement=self._record_statement,
            clock=request.clock or SYSTEM,
            operator_said_gone=request.operator_said_gone,
        )

    # -- journal helpers -------------------------------------------------------------------
    def _record_statement(self, statement: Statement, result: str) -> None:
        self.journal.append(
            Event.STATEMENT_SENT,
            step=self._current_step,
            target=statement.target,
            language=statement.language,
            text=statement.text,
            result=result,
        )

    # -- the walk --------------------------------------------------------------------------
    def walk(self, start: str, in_flight: str | None = None) -> RunOutcome:
        model = _Machine()
        self.runbook.machine(model, initial=start)
        reconcile = in_flight
        while not self.runbook.is_end(model.state):
            step = self.runbook.steps[model.state]
            result = self._step(step, reconcile=(reconcile == step.id))
            reconcile = None
            transitions = self.runbook.transitions_of(step)
            if result.outcome not in transitions:
                raise StepFailed(
                    f"step {step.id} reported outcome {result.outcome!r}, which the runbook does not map; "
                    f"add it under `branches:` in {self.runbook.path}"
                )
            model.trigger(result.outcome)  # type: ignore[attr-defined]
        end = self.runbook.spec.ends[model.state]
        last = self._last_summary
        if self._plan_overrides:
            steps = ", ".join(self._plan_overrides)
            flags = " ".join(f"--override {s}" for s in self._plan_overrides)
            return RunOutcome(self.run_id, self.journal.run_dir, "failed", False,
                              f"the run would stop at the failed safety check {steps}; the steps after it are shown as "
                              f"they would go with `{flags} --accept-data-loss` (break glass)", self.plan)
        return RunOutcome(self.run_id, self.journal.run_dir, model.state, end.success, end.summary or last, self.plan)

    def _step(self, step: StepSpec, reconcile: bool = False) -> StepResult:
        self._current_step = step.id
        cls = self.runbook.action(step.id)
        action = cls.build(step.params)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self._attempt(step, action, attempt, reconcile)
            except (ConnectError, CommandFailed, StepFailed) as exc:
                result = StepResult(ok=False, summary=str(exc))
                self.journal.append(
                    Event.STEP_FINISHED, step=step.id, ok=False, outcome="failed", summary=str(exc),
                    evidence=[], facts={}, attempt=attempt, error=type(exc).__name__,
                )
            reconcile = False
            if result.ok or result.refusal is not None or attempt > step.retries or self.mode is Mode.PLAN:
                self._last_summary = result.summary
                return result
            self.journal.append(Event.NOTE, step=step.id, text=f"attempt {attempt} failed; retrying in {step.retry_delay:g} s")
            self.ctx.clock.sleep(step.retry_delay)

    def _gate_level(self, step: StepSpec, action: Action[Any, Any], proposal: Proposal) -> GateLevel:
        return max(step.gate_level(), type(action).least_gate(), proposal.gate)

    def _attempt(self, step: StepSpec, action: Action[Any, Any], attempt: int, reconcile: bool) -> StepResult:
        effect = type(action).effect
        proposal = action.propose(self.ctx)
        if self.mode is Mode.PLAN:
            return self._plan_step(step, action, proposal)
        if reconcile and effect is Effect.MUTATE:
            done = action.took_effect(self.ctx, proposal)
            self.journal.append(
                Event.STEP_RECONCILED, step=step.id, took_effect=done,
                summary=("the interrupted step had taken effect; it is not repeated" if done else
                         "the interrupted step had not (fully) taken effect; it runs again, skipping what is done"),
            )
            if done:
                result = action.result_after_interruption(self.ctx, proposal)
                self._finish(step, result, attempt)
                return result
        if effect is Effect.MUTATE and proposal.nothing_to_do:
            result = StepResult(ok=True, summary=f"nothing to do: {proposal.summary}")
            self._finish(step, result, attempt)
            return result
        level = self._gate_level(step, action, proposal)
        while level > GateLevel.NONE:
            answer = self._ask(step, action, proposal, level)
            if answer.answer is Answer.PROCEED:
                break
            if answer.answer is Answer.SKIP:
                result = StepResult(ok=True, summary=f"skipped by {answer.who}", outcome="skipped")
                self._finish(step, result, attempt)
                return result
            if answer.answer is Answer.ABORT:
                raise OperatorStop(f"aborted by {answer.who} at step {step.id}; nothing further was changed")
            proposal = action.propose(self.ctx)  # retry: look again, decide again, ask again
            level = self._gate_level(step, action, proposal)
        self.journal.append(
            Event.STEP_STARTED, step=step.id, action=step.action, effect=effect.value, attempt=attempt,
            summary=proposal.summary, reason=proposal.reason,
            statements=[s.show() for s in proposal.statements], risks=proposal.risks,
        )
        result = _run_with_deadline(lambda: action.run(self.ctx, proposal), step.timeout, step.id)
        if not result.ok and result.refusal is not None:
            result = self._break_glass(step, action, proposal, result)
        self._finish(step, result, attempt)
        return result

    def _finish(self, step: StepSpec, result: StepResult, attempt: int) -> None:
        for name, value in result.facts.items():
            self.facts.put(name, value)
        self.journal.append(
            Event.STEP_FINISHED, step=step.id, ok=result.ok, outcome=result.outcome, summary=result.summary,
            effect=self.runbook.action(step.id).effect.value,
            evidence=result.evidence, facts=self.facts.dump(list(result.facts)), attempt=attempt,
            refusal=result.refusal.lines() if result.refusal else None,
        )

    def _ask(self, step: StepSpec, action: Action[Any, Any], proposal: Proposal, level: GateLevel,
             refusal: Any = None) -> GateAnswer:
        request = GateRequest(
            step=step.id, title=step.title or type(action).description, cluster=self.request.cluster.name,
            level=level, proposal=proposal, refusal=refusal,
        )
        self.journal.append(
            Event.GATE_ASKED, step=step.id, level=level.name.lower(), override=refusal is not None,
            summary=proposal.summary, reason=proposal.reason, risks=proposal.risks,
            statements=[s.show() for s in proposal.statements],
        )
        try:
            answer = self.request.gates.ask(request)
        except OperatorStop as stop:
            self.journal.append(Event.GATE_ANSWERED, step=step.id, answer="stopped", who="nobody",
                                policy=self.request.gates.name, reason=str(stop), when=time.time())
            raise
        self.journal.append(
            Event.GATE_ANSWERED, step=step.id, answer=answer.answer.value, who=answer.who,
            policy=answer.policy, reason=answer.reason, when=answer.when,
        )
        return answer

    def _break_glass(self, step: StepSpec, action: Action[Any, Any], proposal: Proposal, result: StepResult) -> StepResult:
        """A safety check refused. Say why, then let a human override it, journaling the risk."""
        assert result.refusal is not None
        self.journal.append(
            Event.NOTE, step=step.id, text=f"safety check refused: {result.summary}", refusal=result.refusal.lines(),
        )
        override = Proposal(
            summary=f"override the failed check {step.id}: {result.summary}",
            reason=result.refusal.why,
            risks=[result.refusal.risk_if_overridden],
            evidence=result.evidence,
        )
        try:
            answer = self._ask(step, action, override, GateLevel.DANGEROUS, refusal=result.refusal)
        except OperatorStop:
            # No one to ask and no flag: the refusal stands (the run fails, exit 1). Say how to override.
            self.journal.append(
                Event.NOTE, step=step.id,
                text=f"the check refused; to override it (break glass), rerun from a terminal or with "
                     f"--override {step.id} --accept-data-loss (resume: drengine run --resume RUN_DIR ...)",
            )
            return result
        if answer.answer is not Answer.PROCEED:
            if answer.answer is Answer.ABORT:
                raise OperatorStop(f"aborted by {answer.who} at the failed check {step.id}")
            return result
        self.journal.append(
            Event.OVERRIDE, step=step.id, who=answer.who, reason=answer.reason,
            risk=result.refusal.risk_if_overridden, refused=result.summary,
        )
        return StepResult(ok=True, summary=f"OVERRIDDEN by {answer.who}: {result.summary}",
                          facts=result.facts, evidence=result.evidence, outcome="ok")

    def _plan_step(self, step: StepSpec, action: Action[Any, Any], proposal: Proposal) -> StepResult:
        effect = type(action).effect
        level = self._gate_level(step, action, proposal)
        executes = effect is not Effect.MUTATE and not self._mutated_in_plan
        if executes:
            result = _run_with_deadline(lambda: action.run(self.ctx, proposal), step.timeout, step.id)
            for name, value in result.facts.items():
                self.facts.put(name, value)
        else:
            if effect is Effect.MUTATE:
                self._mutated_in_plan = True
            result = action.assumed_result(self.ctx, proposal)
        row = {
            "step": step.id, "action": step.action, "effect": effect.value, "ran": executes,
            "nothing_to_do": proposal.nothing_to_do and not executes,
            "gate": level.name.lower(), "summary": result.summary if executes else proposal.summary,
            "reason": proposal.reason, "statements": [s.show() for s in proposal.statements],
            "risks": proposal.risks, "ok": result.ok, "outcome": result.outcome,
            "refusal": result.refusal.lines() if result.refusal else None,
        }
        self.plan.append(row)
        self.journal.append(Event.PLAN_STEP, **row)
        if result.refusal is not None:
            # Show the rest of the path the override would take; the plan still fails (exit 1).
            self._plan_overrides.append(step.id)
            return StepResult(ok=True, summary=f"(plan) assuming --override {step.id}", facts=result.facts)
        return result


# -- starting and resuming runs -----------------------------------------------------------------

def _open_backend(cluster: Cluster, run_dir: Path, inventory: Inventory, clock: Clock | None = None) -> Any:
    from drengine.backends import open_backend

    return open_backend(cluster, inventory, run_dir, clock)


def _open_or_journal(cluster: Cluster, run_dir: Path, inventory: Inventory, journal: JournalWriter,
                     clock: Clock | None = None) -> Any:
    try:
        return _open_backend(cluster, run_dir, inventory, clock)
    except DrengineError as exc:
        journal.append(Event.RUN_FINISHED, end="failed", success=False, summary=f"cannot open the connector: {exc}")
        raise


def _take_lock(request: RunRequest, journal: JournalWriter, run_id: str) -> Acquired:
    lock_dir = request.lock_dir or (Path(request.inventory.lock_dir) if request.inventory.lock_dir else None)
    lock = ClusterLock(request.cluster.name, lock_dir)
    from drengine.gates import operator_name

    acquired = lock.acquire(run_id, operator_name(), break_lock=request.break_lock)
    if acquired.replaced is not None:
        gone = acquired.replaced_alive is False
        journal.append(
            Event.LOCK_BROKEN if not gone else Event.LOCK_TAKEN,
            lock=str(acquired.path), previous=acquired.replaced.describe(),
            previous_alive=acquired.replaced_alive,
            text=("previous holder is gone; lock taken over" if gone else "lock broken by --break-lock"),
        )
    else:
        journal.append(Event.LOCK_TAKEN, lock=str(acquired.path))
    return acquired


def start_run(request: RunRequest) -> RunOutcome:
    run_id = new_run_id(request.cluster.name)
    run_dir = request.run_dir or (request.runs_root / run_id)
    if (run_dir / "journal.jsonl").exists():
        raise InputError(f"{run_dir} already holds a run journal; choose another --run-dir or resume it with --resume")
    journal = JournalWriter(run_dir)
    for listener in request.listeners:
        _listen(journal, listener)
    hook = _crash_hook()
    if hook:
        _listen(journal, hook)
    acquired = None
    try:
        if request.mode is not Mode.PLAN:
            acquired = _take_lock(request, journal, run_id)
        from drengine.gates import operator_name

        journal.append(
            Event.RUN_STARTED, run_id=run_id, mode=request.mode.value, runbook=request.runbook.name,
            runbook_path=request.runbook.path, runbook_sha256=request.runbook.digest,
            inventory=str(Path(request.inventory.path).resolve()), cluster=request.cluster.name,
            kind=request.cluster.kind, simulated=request.cluster.simulated is not None,
            operator=operator_name(), pid=os.getpid(), host=socket.gethostname(),
            argv=request.argv, gone_for_good=list(request.operator_said_gone), policy=request.gates.name,
        )
        backend = _open_or_journal(request.cluster, run_dir, request.inventory, journal, request.clock)
        try:
            engine = Engine(request, backend, journal, run_id)
            around = request.around_walk

            def walk() -> RunOutcome:
                return engine.walk(request.runbook.spec.start)

            if around is not None:
                return _finish_run(engine, journal, lambda: around(journal, backend, walk))
            return _finish_run(engine, journal, walk)
        finally:
            backend.close()
    finally:
        if acquired is not None:
            ClusterLock(request.cluster.name, acquired.path.parent).release(run_id)
        journal.close()


def _listen(journal: JournalWriter, listener: Callable[[Entry], None]) -> None:
    previous = journal.after_append

    def chained(entry: Entry) -> None:
        if previous is not None:
            previous(entry)
        listener(entry)

    journal.after_append = chained


def _finish_run(engine: Engine, journal: JournalWriter, walk: Callable[[], RunOutcome]) -> RunOutcome:
    try:
        outcome = walk()
    except OperatorStop as stop:
        journal.append(Event.RUN_FINISHED, end="stopped", success=False, summary=str(stop), step=engine._current_step)
        raise
    except DrengineError as exc:
        journal.append(Event.RUN_FINISHED, end="failed", success=False, summary=str(exc), step=engine._current_step)
        raise
    except BaseException as exc:
        journal.append(Event.RUN_FINISHED, end="crashed", success=False,
                       summary=f"internal error: {type(exc).__name__}: {exc}", step=engine._current_step)
        raise
    journal.append(Event.RUN_FINISHED, end=outcome.end, success=outcome.success, summary=outcome.summary)
    return outcome


@dataclass
class ResumePoint:
    started: dict[str, Any]
    state: str
    in_flight: str | None
    facts: Facts
    finished: bool


def find_resume_point(run_dir: Path, runbook: Runbook | None = None) -> ResumePoint:
    verify(run_dir)
    entries = list(read_entries(run_dir / "journal.jsonl"))
    starts = [e for e in entries if e.type is Event.RUN_STARTED]
    if not starts:
        raise InputError(f"{run_dir}: the journal has no run_started event; nothing to resume")
    started = starts[0].data
    facts = Facts()
    rb = runbook or load_runbook(started["runbook_path"])
    state = rb.spec.start
    in_flight: str | None = None
    finished = False
    for entry in entries:
        if entry.type is Event.STEP_STARTED:
            in_flight = entry.data["step"]
        elif entry.type is Event.STEP_FINISHED:
            facts.load(entry.data.get("facts") or {})
            step = rb.steps[entry.data["step"]]
            state = rb.transitions_of(step).get(entry.data["outcome"], "failed")
            in_flight = None
        elif entry.type is Event.RUN_FINISHED and entry.data.get("end") not in ("stopped", "crashed"):
            finished = True
        elif entry.type is Event.RUN_FINISHED:
            finished = False
    if in_flight is not None:
        state = in_flight
    return ResumePoint(started, state, in_flight, facts, finished)


def resume_run(run_dir: Path, gates: GatePolicy, listeners: list[Callable[[Entry], None]],
               break_lock: bool = False, lock_dir: Path | None = None, argv: list[str] | None = None) -> RunOutcome:
    if not (run_dir / "journal.jsonl").is_file():
        raise InputError(f"{run_dir}: no journal.jsonl here; expected the run directory of an interrupted run")
    try:
        verify(run_dir)
    except JournalCorrupt as exc:
        raise InputError(f"cannot resume: {exc}. A journal that fails verification is not trusted to resume from") from None
    starts = [e.data for e in read_entries(run_dir / "journal.jsonl") if e.type is Event.RUN_STARTED]
    if not starts:
        raise InputError(f"{run_dir}: the journal has no run_started event; nothing to resume")
    started = starts[0]
    runbook = load_runbook(started["runbook_path"])
    if runbook.digest != started["runbook_sha256"]:
        raise InputError(
            f"cannot resume: runbook {runbook.path} changed since the run started (sha256 was "
            f"{started['runbook_sha256'][:12]}, now {runbook.digest[:12]}); restore it or start a new run"
        )
    point = find_resume_point(run_dir, runbook)
    if point.finished:
        raise InputError(f"{run_dir}: this run already finished; start a new run instead of resuming")
    if started["mode"] == Mode.PLAN.value:
        raise InputError(f"{run_dir}: this was a plan (dry run); plans are not resumed, run `drengine plan` again")
    inventory = load_inventory(started["inventory"])
    cluster = inventory.cluster(started["cluster"])
    request = RunRequest(
        runbook=runbook, inventory=inventory, cluster=cluster, mode=Mode(started["mode"]), gates=gates,
        run_dir=run_dir, break_lock=break_lock, lock_dir=lock_dir,
        operator_said_gone=tuple(started.get("gone_for_good", [])), listeners=listeners, argv=argv or [],
    )
    journal = JournalWriter(run_dir)
    for listener in listeners:
        _listen(journal, listener)
    hook = _crash_hook()
    if hook:
        _listen(journal, hook)
    run_id = started["run_id"]
    acquired = None
    try:
        acquired = _take_lock(request, journal, run_id)
        from drengine.gates import operator_name

        journal.append(Event.RUN_RESUMED, run_id=run_id, state=point.state, in_flight=point.in_flight,
                       operator=operator_name(), pid=os.getpid(), host=socket.gethostname(), argv=argv or [])
        backend = _open_or_journal(cluster, run_dir, inventory, journal)
        try:
            engine = Engine(request, backend, journal, run_id)
            engine.facts.update(point.facts)
            return _finish_run(engine, journal, lambda: engine.walk(point.state, in_flight=point.in_flight))
        finally:
            backend.close()
    finally:
        if acquired is not None:
            ClusterLock(cluster.name, acquired.path.parent).release(run_id)
        journal.close()

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
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from drengine.anchor import HeadAnchor, anchor_journal, anchor_location
from drengine.approvals import TWO_PERSON, TwoPersonRule, invalidated_text
from drengine.clock import SYSTEM, Clock, Deadline, SimulatedClock, wait_until
from drengine.errors import (
    CommandFailed,
    ConnectError,
    DrengineError,
    InputError,
    JournalCorrupt,
    LockLost,
    OperatorStop,
    StepFailed,
    StepInterrupted,
)
from drengine.gates import Answer, GateAnswer, GatePolicy, GateRequest, operator_name
from drengine.inventory import Cluster, EtcdLockSettings, Inventory, LocalLockSettings, load_inventory
from drengine.journal import Chain, Entry, Event, JournalWriter, verified_chain, verified_entries
from drengine.ledger import LedgerEntry, RunIdentity, RunLedger, fold, listing
from drengine.lock import HeldLock, RunState, open_lock
from drengine.lock import me as lock_holder
from drengine.lock.changes import ChangePublisher, held_store, reader
from drengine.lock.registry import RunPublisher
from drengine.machine import DISK, REAL, Disk, Machine
from drengine.runbook import Runbook, StepSpec, load_runbook, resolve_inputs
from drengine.steps import Action, Effect, Facts, GateLevel, Mode, Proposal, RunContext, RunInputs, Statement, StepResult, left_of
from drengine.worker import Job, StepWorker, StopSignal

CRASH_ENV = "DRENGINE_TEST_CRASH_AFTER"
HOLD_ENV = "DRENGINE_TEST_HOLD_AT"
HOLD_SECONDS = 120.0
LOCK_GATE = "cluster-lock"  # the gate `--lock local` answers, journaled like a runbook step's


# A gate answered later than this (seconds on the run's clock) approved a proposal that may no
# longer hold: the cluster is observed again before the step acts.
FRESH_FOR = 1.0


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    end: str  # an end state of the runbook, or "incomplete" when its goal does not hold
    success: bool
    summary: str
    plan: list[dict[str, Any]] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # what the goal check says is left to do
    open_changes: list[LedgerEntry] = field(default_factory=list)  # the run's open ledger entries at its end
    # A failed end after the run changed the cluster: the run can go on (`--resume`) at this step.
    resume_at: str | None = None
    changed: list[str] = field(default_factory=list)  # the mutating steps that took effect, with their summaries
    now: str = ""  # what the goal check says of the cluster now
    advice: str = ""  # the runbook's own advice for this end


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
    # Break glass (`--lock local --reason ...`): the operator's reason for taking only this machine's lock.
    local_lock_reason: str | None = None
    operator_said_gone: tuple[str, ...] = ()
    # The runbook's inputs (`--input NAME=VALUE`); start_run adds the declared defaults.
    inputs: dict[str, str] = field(default_factory=dict)
    listeners: list[Callable[[Entry], None]] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    # Drills wrap the walk: health check, canaries and the fault before it, measurements after.
    around_walk: Callable[[JournalWriter, Any, Callable[[], RunOutcome]], RunOutcome] | None = None
    # What the run runs on: its clock (waits, retries, deadlines, simulators) and its disk.
    machine: Machine = REAL
    # `--timeout STEP=SECONDS`: the operator's timeouts, in place of the runbook's (journaled).
    timeouts: dict[str, float] = field(default_factory=dict)
    # Set from another thread to stop the run as a Ctrl-C would (a site run's Ctrl-C reaches the
    # cluster runs it has going side by side this way).
    stop: StopSignal | None = None
    # Break glass under the two-person rule (`--alone --reason ...`): one person passes its gates.
    alone_reason: str | None = None


@dataclass
class ResumeRequest:
    """Continue an interrupted run: the runbook, inventory, cluster, inputs and mode are the journal's."""

    run_dir: Path
    gates: GatePolicy
    listeners: list[Callable[[Entry], None]] = field(default_factory=list)
    break_lock: bool = False
    lock_dir: Path | None = None
    argv: list[str] = field(default_factory=list)
    local_lock_reason: str | None = None
    around_walk: Callable[[JournalWriter, Any, Callable[[], RunOutcome]], RunOutcome] | None = None
    machine: Machine = REAL
    # The runbook and inventory the caller already holds, used when they are the journal's own
    # (same runbook file, same inventory file) instead of reading them again (the explorer).
    loaded: tuple[Runbook, Inventory] | None = None
    # `--timeout STEP=SECONDS` given at this resume: added to those journaled before (journaled too).
    timeouts: dict[str, float] = field(default_factory=dict)
    stop: StopSignal | None = None  # as RunRequest.stop
    alone_reason: str | None = None  # `--alone --reason` at this resume (two-person rule)


def check_timeouts(runbook: Runbook, timeouts: dict[str, float]) -> dict[str, float]:
    """`--timeout STEP=SECONDS` must name a step of the runbook and a positive time."""
    from drengine.suggest import did_you_mean

    for step, seconds in timeouts.items():
        if step not in runbook.steps:
            raise InputError(f"--timeout {step}={seconds:g}: runbook {runbook.name} has no step {step!r}."
                             f"{did_you_mean(step, list(runbook.steps))} Its steps: {', '.join(runbook.steps)}")
        if not seconds > 0:
            raise InputError(f"--timeout {step}={seconds:g}: a timeout is a number of seconds above 0")
    return dict(timeouts)


def journaled_timeouts(entries: list[Entry]) -> dict[str, float]:
    """The timeouts the operator gave when the run started and at each resume, the latest winning."""
    found: dict[str, float] = {}
    for entry in entries:
        if entry.type in (Event.RUN_STARTED, Event.RUN_RESUMED):
            found.update({str(k): float(v) for k, v in (entry.data.get("timeouts") or {}).items()})
    return found


def run_clock(request: RunRequest) -> Clock:
    """The machine's clock, else: a simulated cluster runs on simulated time (its waits and
    retries cost no real time, as its twin's own changes take none), a real one on the system's."""
    if request.machine.clock is not None:
        return request.machine.clock
    return cluster_clock(request.cluster)


def cluster_clock(cluster: Cluster) -> Clock:
    """A simulated cluster's own time (simulated, starting now) or the system's."""
    return SimulatedClock(epoch=time.time()) if cluster.simulated is not None else SYSTEM


def with_clock(request: RunRequest, clock: Clock) -> RunRequest:
    return replace(request, machine=replace(request.machine, clock=clock))


def new_run_id(cluster: str, clock: Callable[[], float] = time.time) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    return f"{stamp}-{cluster}-{secrets.token_hex(2)}"


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


def _hold_hook() -> Callable[[Entry], None] | None:
    """Test-only: stop this run right after a journal event, still holding its lock, until a file
    appears. Format: `TYPE:STEP:PATH`; PATH.reached is created when the point is reached."""
    spec = os.environ.get(HOLD_ENV)
    if not spec:
        return None
    kind, step, path = spec.split(":", 2)
    release = Path(path)

    def hook(entry: Entry) -> None:
        if entry.type.value == kind and (not step or entry.data.get("step") == step):
            Path(f"{path}.reached").write_text(str(os.getpid()))
            wait_until(release.exists, HOLD_SECONDS, interval=0.02)

    return hook


def decision_key(proposal: Proposal) -> tuple[str, tuple[str, ...]]:
    """What an approval approved: the decision in words and the risks it carries. Exact
    statements may differ (a position moved on) without the decision changing."""
    return proposal.summary, tuple(sorted(proposal.risks))


@dataclass(frozen=True)
class _Earlier:
    """A proposal shown at a gate before: approved, or answered with retry."""

    proposal: Proposal
    level: GateLevel
    approved: bool
    who: str = ""
    policy: str = ""
    reason: str = ""

    def change_to(self, now: Proposal, level: GateLevel) -> str:
        verb = "approved" if self.approved else "proposed"
        words = f"{verb}: {self.proposal.summary}"
        if self.level != level:
            words += f" ({self.level.name.lower()} gate)"
        words += f"; now: {now.summary}" + (f" ({level.name.lower()} gate)" if self.level != level else "")
        new = sorted(set(now.risks) - set(self.proposal.risks))
        gone = sorted(set(self.proposal.risks) - set(now.risks))
        if new:
            words += "; new risk: " + "; ".join(new)
        if gone:
            words += "; risk gone: " + "; ".join(gone)
        return words


class _ObserveAgain(Exception):
    """Nothing has been changed yet and what was decided may be stale: walk again from the
    start, observing and deciding anew (an approval still stands if the decision is unchanged)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Engine:
    def __init__(self, request: RunRequest, backend: Any, journal: JournalWriter, run_id: str,
                 clock: Clock = SYSTEM, mutated: bool = False, lock: HeldLock | None = None,
                 ledger: dict[str, LedgerEntry] | None = None, changed: tuple[str, ...] = ()) -> None:
        self.request = request
        self.lock = lock
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
        # Has a mutating step started in this run (in this process or before a resume)? Until one
        # has, a stale decision is refreshed by walking again from the start.
        self._mutated = mutated
        self._earlier: dict[str, _Earlier] = {}
        self._skipped: list[str] = []
        self._overridden: list[str] = []
        self._first_failure = ""
        # Where a failed run goes on: the first step after the last change before the failure, so
        # that what was observed and decided after that change is observed and decided again.
        self._failed_at: str | None = None
        self._after_change: str | None = None
        self._changed: list[str] = list(changed)  # mutating steps that took effect (before a resume too)
        self.worker_alive = False
        self.worker = StepWorker(f"steps-{run_id}")
        self.approvals = _approval_rule(request, journal, lock, run_id)
        self.ctx: RunContext[Any] = RunContext(
            inventory=request.inventory,
            cluster=request.cluster,
            mode=request.mode,
            facts=self.facts,
            backend=backend,
            record_statement=self._record_statement,
            clock=clock,
            operator_said_gone=request.operator_said_gone,
            inputs=RunInputs(self.runbook.name, frozenset(self.runbook.spec.inputs), dict(request.inputs)),
        )
        self._approved: dict[str, str] = {}  # step -> who approved its gate (policy), for the ledger
        self.ledger = RunLedger(
            journal=journal,
            run=RunIdentity(run_id=run_id, run_dir=os.path.realpath(journal.run_dir), runbook=self.runbook.name,
                            cluster=request.cluster.name, inventory_path=request.inventory.path),
            step=lambda: self._current_step, approved_by=lambda step: self._approved.get(step, "no gate"),
            wall=clock.wall, others=reader(lock, self._ledger_unread),
            mine={k: v for k, v in (ledger or {}).items() if v.run_id == run_id},
        )
        self.ctx.ledger = self.ledger

    def _ledger_unread(self, why: str) -> None:
        self.journal.append(Event.NOTE, step=self._current_step,
                            text=f"the change ledger in the run registry could not be read: {why}; entries of earlier "
                                 f"runs this step undid stay open there (close them with `drengine changes close`)")

    # -- journal helpers -------------------------------------------------------------------
    def _record_statement(self, statement: Statement, result: str) -> None:
        """Called by a step's worker after each statement it sent."""
        if self.journal.finished:
            # Cannot happen while the engine waits for its workers; if a worker outlived its run
            # (the process is about to exit), the run's last entry already says a statement was in flight.
            return
        self.journal.append(
            Event.STATEMENT_SENT,
            step=self._current_step,
            target=statement.target,
            language=statement.language,
            text=statement.text,
            result=result,
        )

    def _check_stop(self) -> None:
        """At every step boundary: a stop asked from another thread ends the run as Ctrl-C does."""
        if self.request.stop is not None and self.request.stop.is_set():
            raise KeyboardInterrupt

    def _check_lock(self, step: str) -> None:
        """At every step boundary: a run whose lock was lost (lease expired, lock broken) sends nothing further."""
        if self.lock is None:
            return
        try:
            self.lock.check()
        except LockLost as lost:
            self.journal.append(Event.LOCK_LOST, step=step, lock=self.lock.where, backend=self.lock.backend, text=str(lost))
            raise

    # -- the walk --------------------------------------------------------------------------
    def walk(self, start: str, in_flight: str | None = None) -> RunOutcome:
        with self.runbook.walking(start) as walk:
            reconcile = in_flight
            while not self.runbook.is_end(walk.state):
                step = self.runbook.steps[walk.state]
                self._check_stop()
                self._check_lock(step.id)
                try:
                    result = self._step(step, reconcile=(reconcile == step.id))
                except _ObserveAgain as again:
                    self.journal.append(Event.OBSERVED_AGAIN, step=step.id, reason=again.why,
                                        start=self.runbook.spec.start)
                    walk.go_to(self.runbook.spec.start)
                    reconcile = None
                    continue
                reconcile = None
                if result.outcome not in walk.outcomes():
                    raise StepFailed(
                        f"step {step.id} reported outcome {result.outcome!r}, which the runbook does not map; "
                        f"add it under `branches:` in {self.runbook.path}"
                    )
                walk.follow(result.outcome)
            end = walk.state
        return self._verdict(end)

    def _step(self, step: StepSpec, reconcile: bool = False) -> StepResult:
        self._current_step = step.id
        cls = self.runbook.action(step.id)
        action = cls.build(step.params)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self._attempt(step, action, attempt, reconcile)
            except StepInterrupted as exc:
                if cls.effect is Effect.MUTATE or exc.by_operator:
                    raise
                result = self._failed(step, attempt, exc)
            except (ConnectError, CommandFailed, StepFailed) as exc:
                result = self._failed(step, attempt, exc)
            reconcile = False
            if not result.ok and not self._first_failure:
                self._first_failure = f"step {step.id} failed: {result.summary}"
            if result.ok or result.refusal is not None or attempt > step.retries or self.mode is Mode.PLAN:
                self._last_summary = result.summary
                self._after_change = self._after_change or step.id
                if not result.ok:
                    self._failed_at = self._after_change
                if took_effect(cls.effect.value, result.ok, result.outcome, result.summary):
                    self._after_change = None
                return result
            self.journal.append(Event.NOTE, step=step.id, text=f"attempt {attempt} failed; retrying in {step.retry_delay:g} s")
            self.ctx.clock.sleep(step.retry_delay)

    def _failed(self, step: StepSpec, attempt: int, exc: Exception) -> StepResult:
        self.journal.append(
            Event.STEP_FINISHED, step=step.id, ok=False, outcome="failed", summary=str(exc),
            evidence=[], facts={}, attempt=attempt, error=type(exc).__name__,
        )
        return StepResult(ok=False, summary=str(exc))

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
        approved = self._approve(step, action, proposal)
        if isinstance(approved, StepResult):
            self._finish(step, approved, attempt)
            return approved
        proposal = approved
        self._check_lock(step.id)  # a gate can wait for hours: look again right before sending anything
        self.journal.append(
            Event.STEP_STARTED, step=step.id, action=step.action, effect=effect.value, attempt=attempt,
            summary=proposal.summary, reason=proposal.reason,
            statements=[s.show() for s in proposal.statements], risks=proposal.risks,
        )
        if effect is Effect.MUTATE:
            self._mutated = True
        try:
            result = self._run_bounded(step, lambda: action.run(self.ctx, proposal))
        except StepInterrupted as exc:
            if effect is Effect.MUTATE:
                self.journal.append(
                    Event.STEP_INTERRUPTED, step=step.id, summary=str(exc), effect_known=False,
                    by_operator=exc.by_operator, worker_alive=self.worker_alive,
                )
            raise
        if not result.ok and result.refusal is not None:
            result = self._break_glass(step, action, proposal, result)
        self._finish(step, result, attempt)
        return result

    def _approve(self, step: StepSpec, action: Action[Any, Any], proposal: Proposal) -> Proposal | StepResult:
        """Ask the step's gate until the proposal to act on is approved (returned), skipped (a
        result), or the run stops. What was approved is acted on only while it still holds: a
        gate that waited is followed by a fresh observation, and a changed decision is asked again."""
        level = self._gate_level(step, action, proposal)
        earlier = self._earlier.pop(step.id, None)
        while level > GateLevel.NONE:
            if earlier is not None and earlier.approved and decision_key(earlier.proposal) == decision_key(proposal) \
                    and level <= earlier.level:
                self._journal_standing_approval(step, proposal, level, earlier)
                return proposal
            change = ""
            if earlier is not None and (decision_key(earlier.proposal) != decision_key(proposal) or earlier.level != level):
                change = earlier.change_to(proposal, level)
                self.journal.append(
                    Event.DECISION_CHANGED, step=step.id, before=earlier.proposal.summary, now=proposal.summary,
                    risks_before=earlier.proposal.risks, risks_now=proposal.risks,
                    level_before=earlier.level.name.lower(), level_now=level.name.lower(), approved=earlier.approved,
                    text=change,
                )
                if earlier.approved and earlier.policy.startswith(TWO_PERSON):
                    self.journal.append(Event.APPROVALS_INVALIDATED, step=step.id, who=earlier.who,
                                        text=invalidated_text(earlier.who, change))
            # A person answering takes real time even when the run's clock is simulated (training
            # on a simulator); a test or the explorer makes a gate wait by advancing the run's clock.
            asked_at, asked_real = self.ctx.clock.now(), time.monotonic()
            answer = self._ask(step, action, proposal, level, change=change)
            waited = self.ctx.clock.now() - asked_at
            if answer.policy == "interactive" or answer.policy.startswith(TWO_PERSON):
                # Only people's waits; policies answer at once, deterministically.
                waited = max(waited, time.monotonic() - asked_real)
            if answer.answer is Answer.SKIP:
                self._skipped.append(f"{step.id} (by {answer.who})")
                return StepResult(ok=True, summary=f"skipped by {answer.who}", outcome="skipped")
            if answer.answer is Answer.ABORT:
                raise OperatorStop(f"aborted by {answer.who} at step {step.id}; nothing further was changed", who=answer.who)
            earlier = _Earlier(proposal, level, answer.answer is Answer.PROCEED, answer.who, answer.policy, answer.reason)
            # Other people approved what the run published for them: always look again before acting.
            several = answer.policy.startswith(TWO_PERSON)
            if answer.answer is Answer.PROCEED and waited <= FRESH_FOR and not several:
                return proposal
            # A retry, or an approval given after a wait: look at the cluster again before acting.
            why = ("retry at the gate" if answer.answer is Answer.RETRY
                   else f"the gate waited {waited:.0f} s for its answer" + (" from several people" if several else ""))
            if not self._mutated:
                self._earlier[step.id] = earlier
                raise _ObserveAgain(f"{why}; nothing has been changed yet, so the cluster is observed again from the start")
            self.journal.append(Event.NOTE, step=step.id, text=f"{why}; observing again before acting")
            proposal = action.propose(self.ctx)
            level = self._gate_level(step, action, proposal)
        return proposal

    def _journal_standing_approval(self, step: StepSpec, proposal: Proposal, level: GateLevel, earlier: _Earlier) -> None:
        """One event: the approval given at the gate just before still holds (the same decision and
        risks after observing again); the question itself was journaled when it was asked."""
        self.journal.append(
            Event.GATE_ANSWERED, step=step.id, answer=Answer.PROCEED.value, who=earlier.who, policy=earlier.policy,
            reason=earlier.reason, standing=True, level=level.name.lower(), summary=proposal.summary,
            when=self.ctx.clock.wall(),
        )
        self._approved[step.id] = f"{earlier.who} ({earlier.policy})"

    def _run_bounded(self, step: StepSpec, fn: Callable[[], StepResult]) -> StepResult:
        """Run a step in a worker bounded by its timeout on the run's clock. At the deadline (or
        Ctrl-C) the step is told to stop (it sends nothing more after its statement in flight),
        its connections are interrupted, and the engine waits for the worker to end before
        anything else is journaled."""
        ctx = self.ctx
        ctx.cancel = threading.Event()
        timeout = self.request.timeouts.get(step.id, step.timeout)
        ctx.deadline = Deadline(timeout, ctx.clock)
        why, by_operator = "", False
        job = self.worker.submit(fn)
        stop = self.request.stop
        try:
            with stop.calling(self._stop_step) if stop is not None else nullcontext():
                if not ctx.clock.wait_for(job.done, timeout, self._stop_step):
                    why = (f"did not finish within its timeout of {timeout:g} s (to give it longer: "
                           f"drengine run --resume {self.run_id} --timeout {step.id}=SECONDS)")
                self._check_stop()
        except KeyboardInterrupt:
            why, by_operator = f"was interrupted by {operator_name()} (Ctrl-C)", True
            self._stop_step()
        try:
            if why:
                self._wait_for(job, step)
                raise StepInterrupted(
                    f"step {step.id} {why}; the statement in flight may or may not have taken effect. "
                    f"Resume the run: the step is checked against the cluster before anything is repeated",
                    by_operator=by_operator,
                )
        finally:
            ctx.deadline = None
        if job.error is not None:
            raise job.error
        result: StepResult = job.result
        return result

    def _stop_step(self) -> None:
        """The step's deadline passed (or Ctrl-C): it sends nothing more, its connections are closed."""
        self.ctx.cancel.set()
        self._interrupt_connections()

    def _interrupt_connections(self) -> None:
        interrupt = getattr(self.ctx.backend, "interrupt", None)
        if callable(interrupt):
            try:
                interrupt()
            except Exception as exc:  # noqa: BLE001 - best effort: the connectors' own timeouts still bound the statement
                self.journal.append(Event.NOTE, step=self._current_step, text=f"closing the step's connections failed: {exc}")

    def _wait_for(self, job: Job, step: StepSpec) -> None:
        """Wait for the worker to end; its statement in flight is bounded by the connector's own
        timeouts. A worker still alive after that keeps the lock held until the process exits."""
        t = self.request.cluster.timeouts
        grace = max(5.0, 2 * (t.connect + t.read) + 1)
        try:
            job.done.wait(grace)
        except KeyboardInterrupt:
            pass
        if not job.done.is_set():
            self.worker_alive = True
            self.journal.append(Event.NOTE, step=step.id,
                                text=f"the statement in flight did not end within {grace:g} s after the deadline; the "
                                     f"run ends and the process exits without sending anything more")

    def _finish(self, step: StepSpec, result: StepResult, attempt: int) -> None:
        for name, value in result.facts.items():
            self.facts.put(name, value)
        effect = self.runbook.action(step.id).effect
        if took_effect(effect.value, result.ok, result.outcome, result.summary):
            self._changed.append(f"{step.id}: {result.summary}")
        self.journal.append(
            Event.STEP_FINISHED, step=step.id, ok=result.ok, outcome=result.outcome, summary=result.summary,
            effect=effect.value,
            evidence=result.evidence, facts=self.facts.dump(list(result.facts)), attempt=attempt,
            refusal=result.refusal.lines() if result.refusal else None,
        )

    def _ask(self, step: StepSpec, action: Action[Any, Any], proposal: Proposal, level: GateLevel,
             refusal: Any = None, change: str = "") -> GateAnswer:
        request = GateRequest(
            step=step.id, title=step.title or type(action).description, cluster=self.request.cluster.name,
            level=level, proposal=proposal, refusal=refusal, change=change,
        )
        self.journal.append(
            Event.GATE_ASKED, step=step.id, level=level.name.lower(), override=refusal is not None,
            summary=proposal.summary, reason=proposal.reason, risks=proposal.risks,
            statements=[s.show() for s in proposal.statements], change=change,
        )
        try:
            answer = self.request.gates.ask(request)
            if answer.answer is Answer.PROCEED and self.approvals is not None:
                answer = self.approvals.approve(request, answer)
        except OperatorStop as stop:
            self.journal.append(Event.GATE_ANSWERED, step=step.id, answer="stopped", who=stop.who,
                                policy=self.request.gates.name, reason=str(stop), when=self.ctx.clock.wall())
            raise
        self.journal.append(
            Event.GATE_ANSWERED, step=step.id, answer=answer.answer.value, who=answer.who,
            policy=answer.policy, reason=answer.reason, when=answer.when,
        )
        if answer.answer is Answer.PROCEED:
            self._approved[step.id] = f"{answer.who} ({answer.policy})"
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
        except OperatorStop as stop:
            if stop.who != "nobody":
                raise
            # No one to ask and no flag: the refusal stands (the run fails, exit 1). Say how to override.
            self.journal.append(
                Event.NOTE, step=step.id,
                text=f"the check refused; to override it (break glass), rerun from a terminal or with "
                     f"--override {step.id} --accept-data-loss (resume: drengine run --resume RUN_DIR ...)",
            )
            return result
        if answer.answer is not Answer.PROCEED:
            if answer.answer is Answer.ABORT:
                raise OperatorStop(f"aborted by {answer.who} at the failed check {step.id}", who=answer.who)
            return result
        self.journal.append(
            Event.OVERRIDE, step=step.id, who=answer.who, reason=answer.reason,
            risk=result.refusal.risk_if_overridden, refused=result.summary,
        )
        self._overridden.append(f"{step.id} (by {answer.who})")
        return StepResult(ok=True, summary=f"OVERRIDDEN by {answer.who}: {result.summary}",
                          facts=result.facts, evidence=result.evidence, outcome="ok")

    # -- the verdict -----------------------------------------------------------------------
    def _verdict(self, state: str) -> RunOutcome:
        """Judge the run from the final observation, never from the path it took."""
        end = self.runbook.spec.ends[state]
        last = self._last_summary
        if self._plan_overrides:
            steps = ", ".join(self._plan_overrides)
            flags = " ".join(f"--override {s}" for s in self._plan_overrides)
            return RunOutcome(self.run_id, self.journal.run_dir, "failed", False,
                              f"the run would stop at the failed safety check {steps}; the steps after it are shown as "
                              f"they would go with `{flags} --accept-data-loss` (break glass)", self.plan)
        if self.mode is Mode.PLAN:
            # A failing plan leads with the step that fails (the real reason), not the clean-up after it.
            said = self._failure_first(end.summary or last) if not end.success else end.summary or last
            return RunOutcome(self.run_id, self.journal.run_dir, state, end.success, said, self.plan)
        path = self._path_notes()
        if not end.success and self._mutated and self.mode is Mode.RUN:
            return self._failed_after_change(state, self._failure_first(end.summary or last) + path)
        if not end.success:
            return RunOutcome(self.run_id, self.journal.run_dir, state, False,
                              self._failure_first(end.summary or last) + path, self.plan)
        holds, goal_summary, left = self._check_goal()
        if holds:
            summary = (end.summary or last) + (f" (goal holds: {goal_summary})" if goal_summary else "")
            return RunOutcome(self.run_id, self.journal.run_dir, state, True, summary + path, self.plan)
        return RunOutcome(self.run_id, self.journal.run_dir, "incomplete", False,
                          f"the runbook reached `{state}` but its goal does not hold now: {goal_summary}" + path,
                          self.plan, left=left)

    def _failed_after_change(self, state: str, summary: str) -> RunOutcome:
        """A failed end after the run changed the cluster is not a dead end: say what the run
        changed, what holds now (the goal checked on a fresh observation) and where the run goes
        on when resumed (the step that failed: observed and decided again, gated as before)."""
        holds, now, left = self._check_goal()
        if not now:
            now = "the runbook has no goal to check; look with `drengine status`"
        else:
            now += " (the runbook's goal holds)" if holds else " (the runbook's goal does not hold)"
        advice = self.runbook.spec.ends[state].advice.strip()
        return RunOutcome(self.run_id, self.journal.run_dir, state, False, summary, self.plan, left=left,
                          resume_at=self._failed_at or self.runbook.spec.start, changed=list(self._changed),
                          now=now, advice=advice)

    def _failure_first(self, summary: str) -> str:
        """The first failure of the run, then what the runbook's failed end says."""
        first = self._first_failure
        if not first or first in summary:
            return summary
        if summary and summary != first.split(": ", 1)[-1]:
            return f"{first}; then: {summary}"
        return first

    def _path_notes(self) -> str:
        notes = []
        if self._skipped:
            notes.append("skipped: " + ", ".join(self._skipped))
        if self._overridden:
            notes.append("overridden: " + ", ".join(self._overridden))
        return f" [{'; '.join(notes)}]" if notes else ""

    def _check_goal(self) -> tuple[bool, str, list[str]]:
        """Observe the cluster again and check the runbook's goal against it."""
        goal = self.runbook.spec.goal
        if goal is None:
            return True, "", []
        from drengine.steps import ACTIONS

        self._current_step = "goal"
        action = ACTIONS[goal.action].build(dict(goal.params))
        try:
            proposal = action.propose(self.ctx)
            result = self._run_bounded(StepSpec(id="goal", action=goal.action, timeout=goal.timeout),
                                       lambda: action.run(self.ctx, proposal))
        except (ConnectError, CommandFailed, StepFailed, StepInterrupted) as exc:
            result = StepResult(ok=False, summary=f"the goal could not be checked: {exc}")
        left = left_of(result)
        self.journal.append(Event.GOAL_CHECKED, action=goal.action, holds=result.ok, summary=result.summary,
                            evidence=result.evidence, left=left)
        return result.ok, result.summary, left

    def _plan_step(self, step: StepSpec, action: Action[Any, Any], proposal: Proposal) -> StepResult:
        effect = type(action).effect
        level = self._gate_level(step, action, proposal)
        executes = effect is not Effect.MUTATE and not self._mutated_in_plan
        if executes:
            result = self._run_bounded(step, lambda: action.run(self.ctx, proposal))
        else:
            # A mutating step with nothing to do changes nothing: the reads after it still run.
            if effect is Effect.MUTATE and not proposal.nothing_to_do:
                self._mutated_in_plan = True
            result = action.assumed_result(self.ctx, proposal)
        for name, value in result.facts.items():  # an assumed result may say what the plan assumes
            self.facts.put(name, value)
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

def _approval_rule(request: RunRequest, journal: JournalWriter, held: HeldLock | None, run_id: str) -> TwoPersonRule | None:
    """The two-person rule of the cluster's `approvals:` policy, for a run that holds its lock (a
    plan asks no one). Drills run on drill targets by the drill policy: said in the journal."""
    policy = request.inventory.approvals_for(request.cluster)
    if held is None or policy.needed(dangerous=True) <= 1:
        return None
    if request.mode is Mode.DRILL:
        journal.append(Event.NOTE, text=f"the inventory asks {policy.needed(dangerous=True)} people to approve "
                                        f"dangerous gates on {request.cluster.name}; a drill on a drill target is "
                                        f"approved by the drill policy alone")
        return None
    from drengine.lock.store import store_of

    return TwoPersonRule(journal, store_of(held, request.cluster.name), policy, run_id, request.cluster.name,
                         request.runbook.name, os.path.realpath(request.inventory.path), request.alone_reason)


def _keeps_to_itself(request: RunRequest) -> bool:
    """Does what this run does to a simulated cluster stay in its own copy? A plan's always (it
    changes nothing); a drill's when the cluster keeps its state in the shared place (each drill
    rehearses from the same start), not when the inventory (or a site run) names the state file
    its runs work on: then the drill breaks and recovers that cluster, as it would a real one."""
    from drengine.backends import rehearses_on_a_copy

    return request.mode is Mode.PLAN or (request.mode is Mode.DRILL and rehearses_on_a_copy(request.cluster))


def _open_backend(cluster: Cluster, run_dir: Path, inventory: Inventory, clock: Clock, disk: Disk, private: bool) -> Any:
    from drengine.backends import open_backend

    return open_backend(cluster, inventory, run_dir, clock, disk, private=private)


def _open_or_journal(cluster: Cluster, run_dir: Path, inventory: Inventory, journal: JournalWriter,
                     clock: Clock = SYSTEM, disk: Disk = DISK, private: bool = False) -> Any:
    """`private`: a plan or a drill, whose doings stay its own where the cluster allows it (a twin's copy)."""
    try:
        return _open_backend(cluster, run_dir, inventory, clock, disk, private)
    except DrengineError as exc:
        journal.append(Event.RUN_FINISHED, end="failed", success=False, summary=f"cannot open the connector: {exc}")
        raise


def _take_lock(request: RunRequest, journal: JournalWriter, run_id: str) -> HeldLock:
    settings = request.inventory.lock_for(request.cluster)
    if request.local_lock_reason is not None:
        settings = _lock_break_glass(request, journal, settings, request.local_lock_reason)
    backend = open_lock(settings, request.cluster.name, request.lock_dir, disk=request.machine.disk)
    held = backend.acquire(lock_holder(run_id, journal.run_dir), break_lock=request.break_lock)
    previous = held.replaced
    anchor = anchor_location(held, request.cluster.name, run_id)  # where the journal's head will be kept
    if previous is not None and held.replaced_alive is not False:
        journal.append(Event.LOCK_BROKEN, lock=held.where, backend=held.backend, previous=previous.describe(),
                       previous_alive=held.replaced_alive, text="lock broken by --break-lock", anchor=anchor)
    elif previous is not None:
        journal.append(Event.LOCK_TAKEN, lock=held.where, backend=held.backend, previous=previous.describe(),
                       previous_alive=False, text="previous holder is gone; lock taken over", anchor=anchor)
    else:
        journal.append(Event.LOCK_TAKEN, lock=held.where, backend=held.backend, anchor=anchor)
    for note in held.notes:
        journal.append(Event.NOTE, text=note)
    _publish_runs(request, journal, held, run_id)
    return held


def _lock_break_glass(request: RunRequest, journal: JournalWriter, settings: LocalLockSettings | EtcdLockSettings,
                      reason: str) -> LocalLockSettings | EtcdLockSettings:
    """`--lock local --reason ...`: the team lock is skipped (etcd down); journaled as a dangerous gate."""
    if settings.backend == "local":
        journal.append(Event.NOTE, text="--lock local: this cluster's lock is already the local one; nothing is skipped")
        return settings
    cluster = request.cluster.name
    who = operator_name()
    risk = (f"the team lock on etcd is not taken: someone may be recovering {cluster} from another machine right now, "
            f"and two recoveries at once can undo each other's steps or cause a split brain")
    summary = "take only this machine's lock instead of the team lock on etcd (--lock local)"
    journal.append(Event.GATE_ASKED, step=LOCK_GATE, level="dangerous", override=True, summary=summary, reason=reason,
                   risks=[risk], statements=[])
    journal.append(Event.GATE_ANSWERED, step=LOCK_GATE, answer="proceed", who=who, policy="--lock local",
                   reason=reason, when=time.time())
    journal.append(Event.OVERRIDE, step=LOCK_GATE, who=who, reason=reason, risk=risk,
                   refused=f"the team lock ({', '.join(settings.endpoints)})")
    return LocalLockSettings(backend="local", dir=request.inventory.lock_dir)


def _publish_runs(request: RunRequest, journal: JournalWriter, held: HeldLock, run_id: str) -> None:
    """Keep the run registry beside the lock up to date from the journal."""
    now = time.time()
    state = RunState(
        cluster=request.cluster.name, run_id=run_id, runbook=request.runbook.name, mode=request.mode.value,
        user=held.holder.user, host=held.holder.host, pid=held.holder.pid, run_dir=held.holder.run_dir,
        started=now, updated=now,
    )
    _listen(journal, RunPublisher(held, state))
    _listen(journal, ChangePublisher(held_store(held)))


def start_run(request: RunRequest) -> RunOutcome:
    request = replace(request, inputs=resolve_inputs(request.runbook, request.inputs),
                      timeouts=check_timeouts(request.runbook, request.timeouts))
    request = with_clock(request, run_clock(request))
    run_id = new_run_id(request.cluster.name)
    run_dir = request.run_dir or (request.runs_root / run_id)
    if (run_dir / "journal.jsonl").exists():
        raise InputError(f"{run_dir} already holds a run journal; choose another --run-dir or resume it with --resume")
    journal = JournalWriter(run_dir, disk=request.machine.disk)

    def started() -> None:
        journal.append(
            Event.RUN_STARTED, run_id=run_id, mode=request.mode.value, runbook=request.runbook.name,
            runbook_path=request.runbook.path, runbook_sha256=request.runbook.digest,
            inventory=os.path.realpath(request.inventory.path), cluster=request.cluster.name,
            kind=request.cluster.kind, simulated=request.cluster.simulated is not None,
            operator=operator_name(), pid=os.getpid(), host=socket.gethostname(),
            argv=request.argv, gone_for_good=list(request.operator_said_gone), policy=request.gates.name,
            inputs=request.inputs, **({"timeouts": request.timeouts} if request.timeouts else {}),
        )

    return _run(request, journal, run_id, started, _Walk(request.runbook.spec.start))


@dataclass(frozen=True)
class _Walk:
    """Where a run's walk begins: a new run at the runbook's start; a resumed one where its journal left it."""

    start: str
    in_flight: str | None = None
    facts: Facts = field(default_factory=Facts)
    mutated: bool = False
    ledger: dict[str, LedgerEntry] = field(default_factory=dict)  # what the journal's change events say so far
    changed: tuple[str, ...] = ()


def _run(request: RunRequest, journal: JournalWriter, run_id: str, begin: Callable[[], None], at: _Walk) -> RunOutcome:
    """A run, new or resumed: the lock (not for a plan), the journal's first event (`begin`), the
    connector, the walk (wrapped by a drill's `around_walk`), and everything given back at the end."""
    clock = run_clock(request)
    for listener in request.listeners:
        _listen(journal, listener)
    held = None
    anchor: HeadAnchor | None = None
    engine: Engine | None = None
    try:
        if request.mode is not Mode.PLAN:
            held = _take_lock(request, journal, run_id)
            anchor = _anchor(journal, held, request.cluster.name, run_id)
        _test_hooks(journal)
        begin()
        backend = _open_or_journal(request.cluster, journal.run_dir, request.inventory, journal, clock,
                                   request.machine.disk, private=_keeps_to_itself(request))
        try:
            engine = walking = Engine(request, backend, journal, run_id, clock=clock, mutated=at.mutated, lock=held,
                                      ledger=at.ledger, changed=at.changed)
            engine.facts.update(at.facts)

            def walk() -> RunOutcome:
                return walking.walk(at.start, in_flight=at.in_flight)

            around = request.around_walk
            if around is not None:
                return _finish_run(engine, journal, lambda: around(journal, backend, walk))
            return _finish_run(engine, journal, walk)
        finally:
            if engine is not None:
                engine.worker.close()
            if engine is None or not engine.worker_alive:
                backend.close()
    except DrengineError as exc:
        exc.run_dir = journal.run_dir
        raise
    finally:
        if anchor is not None:
            anchor.close()  # the last head is in the registry before the lock is given back
        _release(held, engine)
        journal.close()


def _anchor(journal: JournalWriter, held: HeldLock, cluster: str, run_id: str) -> HeadAnchor:
    """Keep the journal's head in the run registry as it is written (drengine/anchor.py; where is
    journaled with the lock taken)."""
    anchor = anchor_journal(journal, held, cluster, run_id)
    _listen(journal, anchor.on_event)
    return anchor


def _test_hooks(journal: JournalWriter) -> None:
    """Attached after the lock's registry publisher, so that a run held by a test has published its state."""
    for hook in (_crash_hook(), _hold_hook()):
        if hook is not None:
            _listen(journal, hook)


def _release(held: HeldLock | None, engine: Engine | None) -> None:
    """Give the lock back, unless a worker of the run is still alive: then the lock stays held
    until this process exits (a dead holder's lock is taken over by the next run: the kernel
    frees a local lock, an etcd lease expires)."""
    if held is None or (engine is not None and engine.worker_alive):
        return
    held.release()


def _listen(journal: JournalWriter, listener: Callable[[Entry], None]) -> None:
    previous = journal.after_append

    def chained(entry: Entry) -> None:
        if previous is not None:
            previous(entry)
        listener(entry)

    journal.after_append = chained


def _finish_run(engine: Engine, journal: JournalWriter, walk: Callable[[], RunOutcome]) -> RunOutcome:
    def step() -> str:
        return engine._current_step  # read at the time of the failure

    def left_changed(exc: DrengineError | None = None) -> dict[str, Any]:
        """The run's open ledger entries: named in its end event, and said by every stop."""
        still = engine.ledger.still_open()
        if exc is not None:
            exc.open_changes = tuple(listing(still))
        return {"open_changes": [e.id for e in still]} if still else {}

    try:
        outcome = walk()
    except StepInterrupted as exc:
        exc.resumable = True
        journal.append(Event.RUN_FINISHED, end="interrupted", success=False, summary=str(exc), step=step(),
                       resumable=True, worker_alive=engine.worker_alive, **left_changed(exc))
        raise
    except OperatorStop as stopped:
        stopped.resumable = True
        journal.append(Event.RUN_FINISHED, end="stopped", success=False, summary=str(stopped), step=step(),
                       who=stopped.who, resumable=True, **left_changed(stopped))
        raise
    except LockLost as lost:
        lost.resumable = True
        journal.append(Event.RUN_FINISHED, end="stopped", success=False, summary=str(lost), step=step(),
                       resumable=True, **left_changed(lost))
        raise
    except KeyboardInterrupt:
        who = operator_name()
        interrupted = OperatorStop(f"interrupted by {who} (Ctrl-C) at step {step()}; every event so far is journaled",
                                   who=who)
        interrupted.resumable = True
        journal.append(Event.RUN_FINISHED, end="stopped", success=False, summary=str(interrupted), step=step(),
                       who=who, resumable=True, **left_changed(interrupted))
        raise interrupted from None
    except DrengineError as exc:
        journal.append(Event.RUN_FINISHED, end="failed", success=False, summary=str(exc), step=step(),
                       **left_changed(exc))
        raise
    except BaseException as exc:
        journal.append(Event.RUN_FINISHED, end="crashed", success=False,
                       summary=f"internal error: {type(exc).__name__}: {exc}", step=step(), resumable=True,
                       **left_changed())
        raise
    outcome.open_changes = engine.ledger.still_open()
    went_on = {"resumable": True, "resume_at": outcome.resume_at, "changed": outcome.changed, "now": outcome.now,
               "advice": outcome.advice} if outcome.resume_at else {}
    journal.append(Event.RUN_FINISHED, end=outcome.end, success=outcome.success, summary=outcome.summary,
                   left=outcome.left, **left_changed(), **went_on)
    return outcome


RESUMABLE_ENDS = ("stopped", "crashed", "interrupted")


def took_effect(effect: str, ok: bool, outcome: str, summary: str) -> bool:
    """Did a finished step change the cluster (a mutating step that worked, not skipped, not idle)?"""
    return effect == Effect.MUTATE.value and ok and outcome != "skipped" and not summary.startswith("nothing to do")


@dataclass
class ResumePoint:
    started: dict[str, Any]
    state: str
    in_flight: str | None
    facts: Facts
    finished: bool
    mutated: bool  # a mutating step started before: decisions after it are the steps' own to refresh
    changed: tuple[str, ...] = ()  # the mutating steps that took effect, with their summaries


def find_resume_point(run_dir: Path, runbook: Runbook | None = None, entries: list[Entry] | None = None) -> ResumePoint:
    """Replay the journal's step outcomes through the runbook's state machine."""
    if entries is None:  # else: the journal's events, verified by the caller
        entries = verified_entries(run_dir)
    starts = [e for e in entries if e.type is Event.RUN_STARTED]
    if not starts:
        raise InputError(f"{run_dir}: the journal has no run_started event; nothing to resume")
    started = starts[0].data
    facts = Facts()
    rb = runbook or load_runbook(started["runbook_path"])
    in_flight: str | None = None
    finished = mutated = False
    changed: list[str] = []
    with rb.walking() as walk:
        for entry in entries:
            d = entry.data
            if entry.type is Event.STEP_STARTED:
                in_flight = d["step"]
                mutated = mutated or d.get("effect") == Effect.MUTATE.value
            elif entry.type is Event.STEP_FINISHED:
                facts.load(d.get("facts") or {})
                walk.go_to(d["step"])
                walk.follow(d["outcome"])
                in_flight = None
                if took_effect(str(d.get("effect", "")), bool(d.get("ok")), str(d.get("outcome")), str(d.get("summary", ""))):
                    changed.append(f"{d['step']}: {d.get('summary', '')}")
            elif entry.type is Event.OBSERVED_AGAIN:
                walk.go_to(rb.spec.start)
            elif entry.type is Event.RUN_FINISHED:
                finished = d.get("end") not in RESUMABLE_ENDS and not (d.get("resumable") and d.get("resume_at"))
                if d.get("resume_at") and not finished:
                    walk.go_to(str(d["resume_at"]))  # a failed end after a change goes on at the step that failed
        state = in_flight if in_flight is not None else walk.state
    return ResumePoint(started, state, in_flight, facts, finished, mutated, tuple(changed))


def chain_to_resume(run_dir: Path, expected: str) -> Chain:
    """The journal in `run_dir`, verified: a journal that fails its hash chain is not resumed from."""
    if not (run_dir / "journal.jsonl").is_file():
        raise InputError(f"{run_dir}: no journal.jsonl here; expected {expected}")
    try:
        return verified_chain(run_dir)
    except JournalCorrupt as exc:
        raise InputError(f"cannot resume: {exc}. A journal that fails verification is not trusted to resume from") from None


def resume_run(resume: ResumeRequest) -> RunOutcome:
    """Continue an interrupted run from where its journal left it (the explorer resumes the runs
    it killed on its own machine, watching the backend through `around_walk`)."""
    run_dir = resume.run_dir
    chain = chain_to_resume(run_dir, "the run directory of an interrupted run")
    entries = chain.entries
    starts = [e.data for e in entries if e.type is Event.RUN_STARTED]
    if not starts:
        raise InputError(f"{run_dir}: the journal has no run_started event; nothing to resume")
    started = starts[0]
    loaded = resume.loaded
    given = loaded if loaded is not None and loaded[0].path == started["runbook_path"] \
        and os.path.realpath(loaded[1].path) == started["inventory"] else None
    runbook = given[0] if given is not None else load_runbook(started["runbook_path"])
    if runbook.digest != started["runbook_sha256"]:
        raise InputError(
            f"cannot resume: runbook {runbook.path} changed since the run started (sha256 was "
            f"{started['runbook_sha256'][:12]}, now {runbook.digest[:12]}); restore it or start a new run"
        )
    point = find_resume_point(run_dir, runbook, entries)
    if point.finished:
        raise InputError(f"{run_dir}: this run already finished; start a new run instead of resuming")
    if started["mode"] == Mode.PLAN.value:
        raise InputError(f"{run_dir}: this was a plan (dry run); plans are not resumed, run `drengine plan` again")
    inventory = given[1] if given is not None else load_inventory(started["inventory"])
    request = RunRequest(
        runbook=runbook, inventory=inventory, cluster=inventory.cluster(started["cluster"]), mode=Mode(started["mode"]),
        gates=resume.gates, run_dir=run_dir, break_lock=resume.break_lock, lock_dir=resume.lock_dir,
        local_lock_reason=resume.local_lock_reason, operator_said_gone=tuple(started.get("gone_for_good", [])),
        inputs=dict(started.get("inputs", {})), listeners=resume.listeners, argv=resume.argv,
        around_walk=resume.around_walk, machine=resume.machine,
        timeouts={**journaled_timeouts(entries), **check_timeouts(runbook, resume.timeouts)}, stop=resume.stop,
        alone_reason=resume.alone_reason,
    )
    request = with_clock(request, run_clock(request))
    journal = JournalWriter(run_dir, disk=request.machine.disk, follows=chain)
    run_id = started["run_id"]
    # Decisions journaled before the interruption may be stale. Until a mutating step has
    # started, everything up to here only observed and decided: do it again from the start.
    again = not point.mutated and point.in_flight is None
    state = runbook.spec.start if again else point.state

    def resumed() -> None:
        journal.append(Event.RUN_RESUMED, run_id=run_id, state=state, in_flight=point.in_flight,
                       operator=operator_name(), pid=os.getpid(), host=socket.gethostname(), argv=resume.argv,
                       **({"timeouts": resume.timeouts} if resume.timeouts else {}))
        if again and point.state != state:
            journal.append(Event.OBSERVED_AGAIN, step=point.state, start=state,
                           reason="resume: nothing has been changed yet, so the cluster is observed and the "
                                  "decisions are made again from the start")

    return _run(request, journal, run_id, resumed, _Walk(state, point.in_flight, point.facts, point.mutated,
                                                         fold(entries), point.changed))

"""DR drills: check the cluster is healthy, write canaries at a steady rate, inject a named
fault, run the recovery runbook unattended under the drill policy, and measure the
recovery time (fault to first successful canary write) and the lost writes (canaries
acknowledged before the fault that are missing afterwards). Everything goes into the run's
journal; the reports are written from it.

Each datastore has a drill kit (`drengine/datastores/<kind>/drill.py`) that knows its faults, its
health check and how to write and read canaries, for real clusters and simulators alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from drengine.clock import SYSTEM, Clock, wait_until
from drengine.datastores import datastore, kinds
from drengine.engine import RunOutcome, RunRequest, run_clock, start_run, with_clock
from drengine.errors import DrengineError, InputError
from drengine.gates import DrillPolicy
from drengine.inventory import Cluster, Inventory
from drengine.journal import Entry, Event, JournalWriter
from drengine.notify import Notifier
from drengine.objectives import Objectives, judge, missed, missed_summary
from drengine.runbook import Runbook, RunbookSearch
from drengine.steps import Mode


@dataclass(frozen=True)
class Fault:
    name: str
    description: str


@dataclass
class Restore:
    """How a kit brings the cluster back after a drill: what it started, the runbook that
    finishes the job, and that runbook's inputs (e.g. which degrade run it undoes)."""

    text: str
    runbook: str
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Injected:
    """What a fault did, the members it hit, and the canaries it wrote and had acknowledged on
    its way (they count as acknowledged before the fault: e.g. writes the primary took after
    replication was cut)."""

    text: str
    acked: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)


class DrillKit(Protocol):
    """What a datastore brings to drills. `backend` is the runbook's connector (real or simulated);
    faults are injected through it (`drengine.faults.FaultTarget`), never by looking inside a
    simulator. A kit is a value: what one drill learns stays in the drill."""

    @property
    def faults(self) -> Mapping[str, Fault]: ...

    # Simulated clusters have no clock of their own: canaries are written at each journal event
    # instead of on a timer, which keeps sim drills deterministic.

    def health(self, cluster: Cluster, backend: Any) -> list[str]: ...

    def inject(self, cluster: Cluster, backend: Any, fault: str) -> Injected: ...

    def write_canary(self, cluster: Cluster, backend: Any, key: str) -> bool: ...

    def read_canaries(self, cluster: Cluster, backend: Any, keys: Sequence[str]) -> set[str]:
        """Which of these acknowledged canaries can be read back now."""
        ...

    def cleanup(self, cluster: Cluster, backend: Any, fault: str) -> str | None: ...

    def settled(self, cluster: Cluster, backend: Any, fault: str) -> bool:
        """True once the datastore itself shows the fault (a killed member marked down, the
        survivors no longer Primary...): the runbook must meet the failure, not a cluster
        still catching up with it."""
        ...

    def bring_back(self, cluster: Cluster, backend: Any, fault: str, run_dir: Path) -> Restore | None:
        """Start what the fault stopped and say which runbook finishes the restore; None when
        this datastore has no restore yet."""
        ...

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        """Members the fault removes for good (the runbook is told, as an operator would with --gone)."""
        ...

    def check_after(self, cluster: Cluster, backend: Any, fault: str) -> list[str]:
        """After the clean-up (a hung member woken, nothing else done to it): what the runbook
        failed to leave true, e.g. two writable primaries or a proxy sending writes elsewhere.
        Any problem fails the drill: a drill never does a runbook's work."""
        ...


def kit_for(kind: str) -> DrillKit:
    store = datastore(kind)
    if store.drill_kit is None:
        raise InputError(f"drills for {kind} clusters are not available yet")
    kit: DrillKit = store.load(store.drill_kit)
    return kit


def fault_names() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind in kinds():
        try:
            out[kind] = sorted(kit_for(kind).faults)
        except InputError:
            continue
    return out


@dataclass
class Canaries:
    """The canary ledger: every write attempt, acknowledged or not, with its time."""

    acked: list[tuple[str, float]] = field(default_factory=list)
    failed: list[tuple[str, float]] = field(default_factory=list)
    seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_key(self) -> str:
        with self.lock:
            self.seq += 1
            return f"canary-{self.seq:06d}"

    def record(self, key: str, ok: bool, when: float) -> None:
        with self.lock:
            (self.acked if ok else self.failed).append((key, when))


@dataclass(frozen=True)
class CanaryCount:
    """What the canaries measured, in the words of the report."""

    sent: int
    acknowledged: int
    failed_before_fault: int
    failed_during_outage: int  # refused between the fault and the first acknowledged write after it
    failed_after_recovery: int
    lost: list[str]

    @property
    def failed(self) -> int:
        return self.failed_before_fault + self.failed_during_outage + self.failed_after_recovery


def count_canaries(canaries: Canaries, fault_at: float, recovered_at: float | None, present: set[str] | None) -> CanaryCount:
    """Sort every write attempt by when it happened against the outage; lost = acknowledged yet missing."""
    with canaries.lock:
        acked, failed = list(canaries.acked), list(canaries.failed)
    end = recovered_at if recovered_at is not None else float("inf")
    lost = [] if present is None else sorted(k for k, _ in acked if k not in present)
    return CanaryCount(
        sent=len(acked) + len(failed), acknowledged=len(acked),
        failed_before_fault=sum(1 for _, t in failed if t < fault_at),
        failed_during_outage=sum(1 for _, t in failed if fault_at <= t < end),
        failed_after_recovery=sum(1 for _, t in failed if t >= end),
        lost=lost,
    )


@dataclass
class DrillRequest:
    runbook: Runbook
    inventory: Inventory
    cluster: Cluster
    fault: str
    run_dir: Path | None = None
    canary_interval: float = 0.05
    recovery_timeout: float = 120.0
    settle_timeout: float = 90.0
    restore: bool = False
    objectives: Objectives = field(default_factory=Objectives)
    notifier: Notifier | None = None
    listeners: list[Callable[[Entry], None]] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    # Where the restore runbook is looked up: the same search path as the drill's own runbook.
    runbooks: RunbookSearch | None = None


def check_target(cluster: Cluster, inventory: Inventory, kit: DrillKit, fault: str) -> None:
    if not cluster.drill_target:
        raise InputError(
            f"{inventory.path}: cluster {cluster.name} is not marked as a drill target; drills break clusters on "
            f"purpose, so the inventory must say `drill_target: true` for it (only for labs and staging)"
        )
    if fault not in kit.faults:
        from drengine.suggest import did_you_mean

        raise InputError(
            f"unknown fault {fault!r} for {cluster.kind} clusters.{did_you_mean(fault, kit.faults)} "
            f"Known faults: {', '.join(sorted(kit.faults))}"
        )


class _Drill:
    def __init__(self, request: DrillRequest, kit: DrillKit) -> None:
        self.request = request
        self.kit = kit
        self.canaries = Canaries()
        self.fault_at: float | None = None
        self.simulated = request.cluster.simulated is not None
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._backend: Any = None
        self._writing = threading.Lock()
        self.run_clock: Clock = SYSTEM  # the run's, set by run_drill

    # -- canaries ----------------------------------------------------------------------------------
    def _write_one(self) -> None:
        key = self.canaries.next_key()
        with self._writing:
            try:
                ok = self.kit.write_canary(self.request.cluster, self._backend, key)
            except Exception:  # noqa: BLE001 - a failed canary is data, not an error
                ok = False
        self.canaries.record(key, ok, self.request.clock())

    def _timer_loop(self) -> None:
        while not self._stop.wait(self.request.canary_interval):
            self._write_one()

    def on_event(self, entry: Entry) -> None:
        if self.simulated and self._backend is not None and not self._stop.is_set():
            self._write_one()

    def first_ack_after_fault(self) -> float | None:
        assert self.fault_at is not None
        with self.canaries.lock:
            after = [t for _, t in self.canaries.acked if t >= self.fault_at]
        return min(after) if after else None

    # -- the wrapped walk ------------------------------------------------------------------------------
    def around(self, journal: JournalWriter, backend: Any, walk: Callable[[], RunOutcome]) -> RunOutcome:
        cluster = self.request.cluster
        if self.request.notifier is not None:
            self.request.notifier.bind(journal)
        journal.append(Event.NOTE, text="objectives: " + _objectives_words(self.request.objectives),
                       objectives=self.request.objectives.model_dump())
        problems = self.kit.health(cluster, backend)
        journal.append(Event.NOTE, text="health check before the fault: " + ("healthy" if not problems else "; ".join(problems)),
                       healthy=not problems)
        if problems:
            raise InputError(
                f"drill refused: cluster {cluster.name} is not healthy before the fault ({'; '.join(problems)}); "
                f"a drill measures recovery from a known good state, so fix the cluster (or restore it) first"
            )
        self._backend = backend  # canaries from here on: the health check prepared where they go
        for _ in range(5):
            self._write_one()
        if not self.simulated:
            self._writer = threading.Thread(target=self._timer_loop, name="canary", daemon=True)
            self._writer.start()
            time.sleep(self.request.canary_interval * 5)
        with self._writing:
            before = self.request.clock()
            injected = self.kit.inject(cluster, backend, self.request.fault)
            self.fault_at = self.request.clock()
        for key in injected.acked:
            self.canaries.record(key, True, before)
        fault = self.kit.faults[self.request.fault]
        journal.append(Event.FAULT_INJECTED, fault=self.request.fault, description=fault.description,
                       members=injected.members, text=f"fault injected: {self.request.fault}: {injected.text}",
                       at=self.fault_at, canaries_written_during_fault=injected.acked)
        settled_in = self._wait_settled(backend)
        journal.append(Event.NOTE, text=(f"the cluster shows the fault after {settled_in:.2f} s" if settled_in is not None else
                                         f"the cluster did not show the fault within {self.request.settle_timeout:g} s; "
                                         f"the runbook runs anyway"), settled_seconds=settled_in)
        present: set[str] | None = None
        try:
            outcome = walk()
            recovered_at = self._wait_for_service()
            self._stop.set()
            if self._writer is not None:
                self._writer.join(5)
            # Count before the clean-up: a continued (SIGCONT) old primary must not be read from.
            with self.canaries.lock:
                acked = [k for k, _ in self.canaries.acked]
            try:
                present = self.kit.read_canaries(cluster, backend, acked)
            except DrengineError as exc:
                journal.append(Event.NOTE, text=f"the canaries could not be read back after the drill: {exc}")
        finally:
            self._stop.set()
            cleanup = self.kit.cleanup(cluster, backend, self.request.fault)
            if cleanup:
                journal.append(Event.NOTE, text=f"after the drill: {cleanup}")
        aftermath = self.kit.check_after(cluster, backend, self.request.fault)
        journal.append(Event.NOTE, text="check after the drill: " + ("; ".join(aftermath) or "as the runbook left it"),
                       problems=aftermath)
        return self._measure_and_judge(journal, outcome, recovered_at, present, aftermath)

    def _measure_and_judge(self, journal: JournalWriter, outcome: RunOutcome, recovered_at: float | None,
                           present: set[str] | None, aftermath: Sequence[str] = ()) -> RunOutcome:
        assert self.fault_at is not None
        rto = None if recovered_at is None else round(recovered_at - self.fault_at, 3)
        count = count_canaries(self.canaries, self.fault_at, recovered_at, present)
        lost = None if present is None else len(count.lost)
        journal.append(Event.MEASUREMENT, name="recovery_seconds", value=rto, unit="s",
                       text="fault to first acknowledged canary write")
        journal.append(Event.MEASUREMENT, name="lost_writes", value=lost, unit="writes",
                       text="acknowledged canaries missing after recovery", lost=count.lost)
        journal.append(Event.MEASUREMENT, name="canaries_sent", value=count.sent, unit="writes",
                       text="canary writes attempted, before, during and after the outage")
        journal.append(Event.MEASUREMENT, name="canaries_acknowledged", value=count.acknowledged, unit="writes",
                       text="canary writes the cluster acknowledged")
        journal.append(Event.MEASUREMENT, name="canaries_failed", value=count.failed, unit="writes",
                       text="canary writes refused or unanswered (expected during the outage; never counted as lost)",
                       before_fault=count.failed_before_fault, during_outage=count.failed_during_outage,
                       after_recovery=count.failed_after_recovery)
        judgements = judge(rto, lost, self.request.objectives)
        missed_now = missed(judgements)
        runbook_ok = outcome.success
        passed = runbook_ok and rto is not None and not missed_now and not aftermath
        reasons = []
        if not runbook_ok:
            reasons.append(f"the runbook did not succeed ({outcome.end}: {outcome.summary})")
        if aftermath:
            reasons.append("after the drill: " + "; ".join(aftermath))
        if rto is None:
            reasons.append("no canary write succeeded after the runbook")
        if missed_now:
            reasons.append("objective missed: " + missed_summary(judgements))
        journal.append(Event.DRILL_VERDICT, verdict="passed" if passed else "failed", fault=self.request.fault,
                       runbook_end=outcome.end, runbook_success=runbook_ok, runbook_summary=outcome.summary,
                       recovered=rto is not None, objectives=[j.as_dict() for j in judgements], reasons=reasons,
                       text=("PASSED" if passed else "FAILED: " + "; ".join(reasons)))
        figures = f"recovery {_figure(rto, 's', self.request.objectives.rto)}, " \
                  f"lost writes {_figure(lost, '', self.request.objectives.lost_writes)}"
        if passed:
            summary = f"{outcome.summary} ({figures})"
            end = outcome.end
        elif runbook_ok and aftermath:
            summary = "; ".join(reasons) + f" ({figures}); the runbook itself said: {outcome.summary}"
            end = "left-unsafe"
        elif runbook_ok and rto is not None:
            summary = "; ".join(reasons) + f"; the runbook itself succeeded: {outcome.summary}"
            end = "objective-missed"
        else:
            summary = "; ".join(reasons) + f" ({figures})"
            end = outcome.end if not runbook_ok else "not-recovered"
        return RunOutcome(outcome.run_id, outcome.run_dir, end, passed, summary, outcome.plan, outcome.left)

    def _wait_settled(self, backend: Any) -> float | None:
        clock = self.run_clock
        started = clock.now()

        def settled() -> bool:
            try:
                return self.kit.settled(self.request.cluster, backend, self.request.fault)
            except DrengineError:
                return False  # a probe failing is part of the fault: look again

        # On the run's clock: a simulator's failure detection (heartbeats, follower checks) takes
        # simulated time, which the wait lets pass; one that shows the fault at once is seen at the first look.
        if wait_until(settled, self.request.settle_timeout, interval=0.25, clock=clock):
            return round(clock.now() - started, 3)
        return None

    def _wait_for_service(self) -> float | None:
        if self.simulated:
            if self.first_ack_after_fault() is None:
                self._write_one()
            return self.first_ack_after_fault()
        wait_until(lambda: self.first_ack_after_fault() is not None, self.request.recovery_timeout,
                   interval=self.request.canary_interval)
        return self.first_ack_after_fault()


def _figure(value: float | int | None, unit: str, objective: float | int | None) -> str:
    shown = "never" if value is None else f"{value:g}{' ' + unit if unit else ''}"
    if objective is None:
        return shown
    return f"{shown} (objective {objective:g}{' ' + unit if unit else ''})"


def _objectives_words(objectives: Objectives) -> str:
    if objectives.empty:
        return "none set (the drill passes when the runbook succeeds and writes are acknowledged again)"
    parts = []
    if objectives.rto is not None:
        parts.append(f"recovery within {objectives.rto:g} s")
    if objectives.lost_writes is not None:
        parts.append(f"at most {objectives.lost_writes} lost write(s)")
    return ", ".join(parts)


def run_drill(request: DrillRequest) -> RunOutcome:
    kit = kit_for(request.cluster.kind)
    check_target(request.cluster, request.inventory, kit, request.fault)
    drill = _Drill(request, kit)
    run_request = RunRequest(
        runbook=request.runbook, inventory=request.inventory, cluster=request.cluster, mode=Mode.DRILL,
        gates=DrillPolicy(), run_dir=request.run_dir,
        operator_said_gone=tuple(request.cluster.gone_for_good) + kit.declares_gone(request.cluster, request.fault),
        listeners=[*request.listeners, drill.on_event, *([request.notifier.on_event] if request.notifier else [])],
        argv=request.argv, around_walk=drill.around,
    )
    # The run's clock (simulated time for a simulated cluster): the wait for the fault to show
    # sleeps on it, so that a simulator's failure detection (heartbeats, follower checks) runs.
    drill.run_clock = run_clock(run_request)
    run_request = with_clock(run_request, drill.run_clock)
    outcome = start_run(run_request)
    if request.restore:
        outcome = _restore(request, kit, outcome)
    return outcome


def _restore(request: DrillRequest, kit: DrillKit, outcome: RunOutcome) -> RunOutcome:
    """Bring the cluster back to full health after the drill: start what the fault stopped, then
    the rejoin runbook as its own run under `restore/`, whose journal records what was started,
    the restore and how long it took. The drill's own journal ended with the drill."""
    import shutil

    from drengine.backends import open_backend, rehearses_on_a_copy
    from drengine.runbook import load_runbook

    started = time.monotonic()
    backend = open_backend(request.cluster, request.inventory, outcome.run_dir,
                           private=rehearses_on_a_copy(request.cluster))
    try:
        brought = kit.bring_back(request.cluster, backend, request.fault, outcome.run_dir)
    finally:
        backend.close()
    if brought is None:
        return replace(outcome, summary=f"{outcome.summary}; restore: not available for {request.cluster.kind} drills "
                                        f"yet: bring the cluster back by hand before the next drill")
    restore_dir = outcome.run_dir / "restore"
    state = outcome.run_dir / "sim-state.json"
    if state.exists():  # a simulated cluster continues from where the drill left it
        restore_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(state, restore_dir / "sim-state.json")

    def around(journal: JournalWriter, backend: Any, walk: Callable[[], RunOutcome]) -> RunOutcome:
        journal.append(Event.NOTE, text=f"restore after drill {outcome.run_id}: {brought.text}; then {brought.runbook}",
                       drill_run=str(outcome.run_dir))
        rejoined = walk()
        journal.append(Event.MEASUREMENT, name="restore_seconds", value=round(time.monotonic() - started, 3), unit="s",
                       text="start of the restore to the cluster rejoined")
        journal.append(Event.MEASUREMENT, name="restored", value=1 if rejoined.success else 0, unit="")
        return rejoined

    try:
        rejoined = start_run(RunRequest(
            runbook=load_runbook(brought.runbook, request.runbooks), inventory=request.inventory,
            cluster=request.cluster, mode=Mode.DRILL, gates=DrillPolicy(), run_dir=restore_dir, listeners=request.listeners,
            argv=request.argv, around_walk=around, inputs=brought.inputs,
        ))
        ok, summary = rejoined.success, rejoined.summary
    except DrengineError as exc:
        ok, summary = False, str(exc)
    said = f"restored: {summary}" if ok else f"restore FAILED: {summary}"
    return replace(outcome, summary=f"{outcome.summary}; {said} (journal {restore_dir})")

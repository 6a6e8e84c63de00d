"""DR drills: check the cluster is healthy, write canaries at a steady rate, inject a named
fault, run the recovery runbook unattended under the drill policy, and measure the
recovery time (fault to first successful canary write) and the lost writes (canaries
acknowledged before the fault that are missing afterwards). Everything goes into the run's
journal; the reports are written from it.

Each datastore has a drill kit (`drengine/datastores/<kind>/drill.py`) that knows its faults, its
health check and how to write and read canaries, for real clusters and simulators alike.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from drengine.datastores import datastore, kinds
from drengine.engine import RunOutcome, RunRequest, start_run
from drengine.errors import DrengineError, InputError
from drengine.gates import DrillPolicy
from drengine.inventory import Cluster, Inventory
from drengine.journal import Entry, Event, JournalWriter
from drengine.runbook import Runbook
from drengine.steps import Mode


@dataclass(frozen=True)
class Fault:
    name: str
    description: str


@dataclass
class Restore:
    """How a kit brings the cluster back after a drill: what it started, the runbook that
    finishes the job, and environment the runbook reads (e.g. where the degrade run is)."""

    text: str
    runbook: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Injected:
    """What a fault did, and the canaries it wrote and had acknowledged on its way (they count
    as acknowledged before the fault: e.g. writes the primary took after replication was cut)."""

    text: str
    acked: list[str] = field(default_factory=list)


class DrillKit(Protocol):
    """What a datastore brings to drills. `backend` is the runbook's connector (real or simulated);
    faults are backend operations (`kill`, `hang`, `resume`...), so a kit never looks inside a
    simulator. A kit is a value: what one drill needs to remember lives in its backend."""

    @property
    def faults(self) -> Mapping[str, Fault]: ...
    # Simulated clusters have no clock of their own: canaries are written at each journal event
    # instead of on a timer, which keeps sim drills deterministic.

    def health(self, cluster: Cluster, backend: Any) -> list[str]: ...

    def inject(self, cluster: Cluster, backend: Any, fault: str) -> Injected: ...

    def write_canary(self, cluster: Cluster, backend: Any, key: str) -> bool: ...

    def read_canaries(self, cluster: Cluster, backend: Any) -> set[str]: ...

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
    listeners: list[Callable[[Entry], None]] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.time


def check_target(cluster: Cluster, inventory: Inventory, kit: DrillKit, fault: str) -> None:
    if not cluster.drill_target:
        raise InputError(
            f"{inventory.path}: cluster {cluster.name} is not marked as a drill target; drills break clusters on "
            f"purpose, so the inventory must say `drill_target: true` for it (only for labs and staging)"
        )
    if fault not in kit.faults:
        raise InputError(
            f"unknown fault {fault!r} for {cluster.kind} clusters; known faults: {', '.join(sorted(kit.faults))}"
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
        self._backend = backend
        problems = self.kit.health(cluster, backend)
        journal.append(Event.NOTE, text="health check before the fault: " + ("healthy" if not problems else "; ".join(problems)),
                       healthy=not problems)
        if problems:
            raise InputError(
                f"drill refused: cluster {cluster.name} is not healthy before the fault ({'; '.join(problems)}); "
                f"a drill measures recovery from a known good state, so fix the cluster (or restore it) first"
            )
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
        journal.append(Event.NOTE, text=f"fault injected: {self.request.fault}: {injected.text}", fault=self.request.fault,
                       at=self.fault_at, canaries_written_during_fault=injected.acked)
        settled_in = self._wait_settled(backend)
        journal.append(Event.NOTE, text=(f"the cluster shows the fault after {settled_in:.2f} s" if settled_in is not None else
                                         f"the cluster did not show the fault within {self.request.settle_timeout:g} s; "
                                         f"the runbook runs anyway"), settled_seconds=settled_in)
        acked_before_fault = [k for k, t in self.canaries.acked if t < self.fault_at]
        try:
            outcome = walk()
            recovered_at = self._wait_for_service()
            self._stop.set()
            if self._writer is not None:
                self._writer.join(5)
            # Count before the clean-up: a continued (SIGCONT) old primary must not be read from.
            present = self.kit.read_canaries(cluster, backend)
        finally:
            self._stop.set()
            cleanup = self.kit.cleanup(cluster, backend, self.request.fault)
            if cleanup:
                journal.append(Event.NOTE, text=f"after the drill: {cleanup}")
        lost = sorted(k for k in acked_before_fault if k not in present)
        acked_after = [k for k, t in self.canaries.acked if t >= self.fault_at]
        lost_after = sorted(k for k in acked_after if k not in present)
        rto = None if recovered_at is None else round(recovered_at - self.fault_at, 3)
        journal.append(Event.MEASUREMENT, name="recovery_seconds", value=rto, unit="s",
                       text="fault to first acknowledged canary write")
        journal.append(Event.MEASUREMENT, name="lost_writes", value=len(lost) + len(lost_after), unit="writes",
                       text="acknowledged canaries missing after recovery", lost=lost + lost_after)
        journal.append(Event.MEASUREMENT, name="canaries_acknowledged", value=len(self.canaries.acked), unit="writes")
        journal.append(Event.MEASUREMENT, name="canaries_failed", value=len(self.canaries.failed), unit="writes")
        success = outcome.success and rto is not None
        summary = outcome.summary if rto is not None else f"{outcome.summary}; but no canary write succeeded afterwards"
        summary += f" (recovery {rto if rto is not None else 'never'} s, lost writes {len(lost) + len(lost_after)})"
        return RunOutcome(outcome.run_id, outcome.run_dir, outcome.end if success else "failed", success, summary, outcome.plan)

    def _wait_settled(self, backend: Any) -> float | None:
        started = time.monotonic()
        while True:
            try:
                if self.kit.settled(self.request.cluster, backend, self.request.fault):
                    return round(time.monotonic() - started, 3)
            except DrengineError:
                pass  # a probe failing is part of the fault: look again
            # Simulated clusters take time to show a fault too (heartbeats, follower checks).
            if time.monotonic() - started > self.request.settle_timeout:
                return None
            time.sleep(0.25)

    def _wait_for_service(self) -> float | None:
        deadline = time.monotonic() + self.request.recovery_timeout
        while True:
            found = self.first_ack_after_fault()
            if found is not None:
                return found
            if self.simulated:
                self._write_one()
                found = self.first_ack_after_fault()
                return found
            if time.monotonic() > deadline:
                return None
            time.sleep(self.request.canary_interval)


def run_drill(request: DrillRequest) -> RunOutcome:
    kit = kit_for(request.cluster.kind)
    check_target(request.cluster, request.inventory, kit, request.fault)
    if hasattr(kit, "inventory"):  # kits that still signal processes themselves need the inventory
        setattr(kit, "inventory", request.inventory)  # noqa: B010
    drill = _Drill(request, kit)
    run_request = RunRequest(
        runbook=request.runbook, inventory=request.inventory, cluster=request.cluster, mode=Mode.DRILL,
        gates=DrillPolicy(), run_dir=request.run_dir,
        operator_said_gone=tuple(request.cluster.gone_for_good) + kit.declares_gone(request.cluster, request.fault),
        listeners=[*request.listeners, drill.on_event],
        argv=request.argv, around_walk=drill.around,
    )
    outcome = start_run(run_request)
    if request.restore:
        outcome = _restore(request, kit, outcome)
    return outcome


def _restore(request: DrillRequest, kit: DrillKit, outcome: RunOutcome) -> RunOutcome:
    """Bring the cluster back to full health after the drill (start what the fault stopped,
    then the rejoin runbook, as its own run under `restore/`), journaled in the drill's journal."""
    import shutil

    from drengine.backends import open_backend
    from drengine.runbook import load_runbook

    journal = JournalWriter(outcome.run_dir)

    def show(entry: Entry) -> None:
        for listener in request.listeners:
            listener(entry)

    journal.after_append = show
    try:
        started = time.monotonic()
        backend = open_backend(request.cluster, request.inventory, outcome.run_dir)
        try:
            brought = kit.bring_back(request.cluster, backend, request.fault, outcome.run_dir)
        finally:
            backend.close()
        if brought is None:
            journal.append(Event.NOTE, text=f"restore: not available for {request.cluster.kind} drills yet; "
                                            f"bring the cluster back by hand before the next drill")
            return outcome
        journal.append(Event.NOTE, text=f"restore: {brought.text}; then {brought.runbook}")
        restore_dir = outcome.run_dir / "restore"
        state = outcome.run_dir / "sim-state.json"
        if state.exists():  # a simulated cluster continues from where the drill left it
            restore_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(state, restore_dir / "sim-state.json")
        saved = {k: os.environ.get(k) for k in brought.env}
        os.environ.update(brought.env)
        try:
            rejoined = start_run(RunRequest(
                runbook=load_runbook(brought.runbook), inventory=request.inventory, cluster=request.cluster,
                mode=Mode.DRILL, gates=DrillPolicy(), run_dir=restore_dir, listeners=request.listeners,
                argv=request.argv,
            ))
            ok, summary = rejoined.success, rejoined.summary
        except DrengineError as exc:
            ok, summary = False, str(exc)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        journal.append(Event.NOTE, text=f"restore {'done' if ok else 'FAILED'}: {summary} (journal {restore_dir})")
        journal.append(Event.MEASUREMENT, name="restore_seconds", value=round(time.monotonic() - started, 3), unit="s",
                       text="start of the restore to the cluster rejoined")
        journal.append(Event.MEASUREMENT, name="restored", value=1 if ok else 0, unit="")
        if not ok:
            return RunOutcome(outcome.run_id, outcome.run_dir, outcome.end, outcome.success,
                              f"{outcome.summary}; restore FAILED: {summary}", outcome.plan)
        return RunOutcome(outcome.run_id, outcome.run_dir, outcome.end, outcome.success,
                          f"{outcome.summary}; restored: {summary}", outcome.plan)
    finally:
        journal.close()

"""The run registry: what every run on every cluster is doing, published by the runs beside the
cluster's lock (etcd keys for the etcd lock, files beside the lock file for the local one).

A run publishes as it journals: the journal events are turned into its state by one pure
function (`state_after`), so the registry never says something the journal does not. Readers
(`drengine runs`, `drengine status`) call `list_runs`, which never raises for an unreachable
lock service: the problem is reported in words on that cluster's entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from drengine.errors import DrengineError
from drengine.journal import Entry, Event
from drengine.lock import HeldLock, Holder, RunState, open_lock

if TYPE_CHECKING:
    from drengine.inventory import Inventory


def state_after(state: RunState, entry: Entry, now: float) -> RunState:
    """The run's state once `entry` is journaled."""
    change = change_of(entry)
    if change is None:
        return state
    return state.model_copy(update={**change, "updated": now})


def change_of(entry: Entry) -> dict[str, object] | None:
    """What `entry` changes in the run's state (None: nothing)."""
    d = entry.data
    t = entry.type
    if t in (Event.RUN_STARTED, Event.RUN_RESUMED):
        return {"finished": False, "end": None, "success": None, "summary": "", "gate": None, "goes_on": False}
    if t is Event.STEP_STARTED:
        return {"step": d.get("step"), "gate": None}
    if t is Event.GATE_ASKED:
        return {"step": d.get("step"), "gate": f"{d.get('step')} ({d.get('level')})"}
    if t is Event.GATE_ANSWERED:
        return {"gate": None}
    if t is Event.RUN_FINISHED:
        return {"finished": True, "gate": None, "end": d.get("end"), "success": d.get("success"),
                "summary": str(d.get("summary", "")), "goes_on": bool(d.get("resume_at"))}
    return None


class RunPublisher:
    """A journal listener that keeps the run's registry record up to date: every change a
    reader of `drengine runs` would see (a step started, a gate waiting, the run's end)."""

    def __init__(self, held: HeldLock, state: RunState, clock: Callable[[], float] = time.time) -> None:
        self.held = held
        self.state = state
        self.clock = clock

    def __call__(self, entry: Entry) -> None:
        after = state_after(self.state, entry, self.clock())
        if after is not self.state:
            self.state = after
            self.held.publish(after)


class RunStatus(str, Enum):
    RUNNING = "running"
    WAITING = "waiting at a gate"
    FINISHED = "finished"
    STOPPED = "stopped (resumable)"
    FAILED_AFTER_CHANGE = "failed after changing the cluster (resumable)"
    INTERRUPTED = "interrupted (resumable)"  # not finished, and no longer holds the lock: it crashed


class RunView(BaseModel):
    model_config = ConfigDict(frozen=True)

    run: RunState
    status: RunStatus
    holds_lock: bool


class ClusterRuns(BaseModel):
    """One cluster's lock holder and runs, or the problem that kept drengine from reading them."""

    model_config = ConfigDict(frozen=True)

    cluster: str
    backend: str
    where: str
    holder: Holder | None = None
    runs: list[RunView] = []
    problem: str | None = None


def _status(run: RunState, holder: Holder | None) -> tuple[RunStatus, bool]:
    holds = holder is not None and holder.run_id == run.run_id and not run.finished
    if run.finished:
        if run.goes_on:
            return RunStatus.FAILED_AFTER_CHANGE, False
        return (RunStatus.STOPPED if run.resumable else RunStatus.FINISHED), False
    if holds:
        return (RunStatus.WAITING if run.gate else RunStatus.RUNNING), True
    return RunStatus.INTERRUPTED, False


def cluster_runs(inventory: Inventory, cluster: str, lock_dir: Path | None = None) -> ClusterRuns:
    settings = inventory.lock_for(inventory.cluster(cluster))
    backend = open_lock(settings, cluster, lock_dir)
    try:
        holder = backend.holder()
        runs = backend.runs()
    except DrengineError as exc:
        return ClusterRuns(cluster=cluster, backend=backend.backend, where=backend.where, problem=str(exc))
    views = []
    for run in sorted(runs, key=lambda r: r.started, reverse=True):
        status, holds = _status(run, holder)
        views.append(RunView(run=run, status=status, holds_lock=holds))
    return ClusterRuns(cluster=cluster, backend=backend.backend, where=backend.where, holder=holder, runs=views)


def list_runs(inventory: Inventory, cluster: str | None = None, lock_dir: Path | None = None) -> list[ClusterRuns]:
    """Every cluster of the inventory (or one): who holds its lock and what its runs are doing.

    Clusters are read in parallel, so a fleet costs about one request timeout, not one per cluster."""
    names = [cluster] if cluster is not None else sorted(inventory.clusters)
    if cluster is not None:
        inventory.cluster(cluster)  # an unknown name is the caller's input error
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as pool:
        return list(pool.map(lambda name: cluster_runs(inventory, name, lock_dir), names))

"""Does a cluster of a site hold now? Asked on a fresh observation before a dependent cluster's
recovery starts, and of every cluster before the site's verdict.

A cluster that a runbook recovered holds when that runbook's goal holds now: its goal action,
run again on a new read-only connection, with the facts and inputs its run journaled (the same
goal the engine checked when the run ended). A cluster no runbook touched holds when its status
says healthy: a degraded cluster that no runbook applies to (a Galera node to start by hand)
still needs a person, and what depends on it waits for them.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from drengine.errors import DrengineError
from drengine.inventory import Cluster, Inventory


@dataclass(frozen=True)
class Holding:
    cluster: str
    holds: bool
    how: str  # "goal mariadb.goal_replication" or "status"
    summary: str
    left: list[str] = field(default_factory=list)

    def words(self) -> str:
        return f"{self.cluster}: {'holds' if self.holds else 'does NOT hold'} ({self.how}): {self.summary}"


def holds_now(inventory: Inventory, cluster: Cluster, run_dir: Path | None) -> Holding:
    """The goal of the run in `run_dir` (None: no runbook ran) on a fresh observation."""
    if run_dir is not None and (run_dir / "journal.jsonl").is_file():
        try:
            return _goal_of_run(inventory, cluster, run_dir)
        except DrengineError as exc:
            return Holding(cluster.name, False, "goal", f"the goal could not be checked: {exc}")
    return healthy_now(inventory, cluster)


def healthy_now(inventory: Inventory, cluster: Cluster) -> Holding:
    from drengine.status import probe_cluster

    try:
        status = probe_cluster(cluster, inventory)
    except DrengineError as exc:
        return Holding(cluster.name, False, "status", f"could not be asked: {exc}")
    advice = "; ".join(a.why for a in status.advice)
    return Holding(cluster.name, not status.verdict.needs_action, f"status {status.verdict.value}",
                   status.headline + (f"; what to do: {advice}" if advice and status.verdict.needs_action else ""))


def _goal_of_run(inventory: Inventory, cluster: Cluster, run_dir: Path) -> Holding:
    from drengine.engine import cluster_clock, find_resume_point
    from drengine.journal import Event, verified_entries
    from drengine.runbook import load_runbook
    from drengine.status import open_read_only
    from drengine.steps import ACTIONS, Mode, RunContext, RunInputs, left_of

    entries = verified_entries(run_dir)
    started = next(e.data for e in entries if e.type is Event.RUN_STARTED)
    runbook = load_runbook(str(started["runbook_path"]))
    goal = runbook.spec.goal
    if goal is None:
        return healthy_now(inventory, cluster)
    facts = find_resume_point(run_dir, runbook, entries).facts
    clock = cluster_clock(cluster)
    scratch = Path(tempfile.mkdtemp(prefix=f"drengine-goal-{cluster.name}-"))
    backend = None
    try:
        backend = open_read_only(cluster, inventory, scratch, clock)
        from drengine.clock import Deadline

        ctx = RunContext(inventory=inventory, cluster=cluster, mode=Mode.PLAN, facts=facts, backend=backend,
                         record_statement=lambda statement, result: None, clock=clock,
                         operator_said_gone=tuple(started.get("gone_for_good") or ()),
                         inputs=RunInputs(runbook.name, frozenset(runbook.spec.inputs),
                                          {str(k): str(v) for k, v in (started.get("inputs") or {}).items()}),
                         deadline=Deadline(goal.timeout, clock))
        action = ACTIONS[goal.action].build(dict(goal.params))
        result = action.run(ctx, action.propose(ctx))
    finally:
        if backend is not None:
            backend.close()
        shutil.rmtree(scratch, ignore_errors=True)
    left = left_of(result)
    return Holding(cluster.name, result.ok, f"goal of {runbook.name}", result.summary, left)

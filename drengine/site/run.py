"""`drengine site run`: recover every broken cluster of a site, dependencies first.

Each cluster's recovery is an ordinary run of the runbook its status names: the engine's
`start_run` (or `resume_run`), with its own journal and lock, in `SITE_DIR/CLUSTER/`. It starts
only once every cluster it depends on has had its turn and holds on a fresh observation
(drengine/site/goals.py); a cluster whose dependency does not hold is not touched. Clusters
whose dependencies hold may run side by side (`parallel` > 1: when no gate needs a person).

The site journal (`SITE_DIR/journal.jsonl`, the project's journal writer) records the order,
each cluster's turn (`site_cluster`: waiting, blocked, started with its run directory,
finished, nothing to do) and every goal checked; `resume_site` continues from it: a cluster
whose run was interrupted is resumed as `drengine run --resume` would, one that finished is
not run again. The verdict is the site's: DONE only when every cluster holds on a last fresh
observation, INCOMPLETE naming the ones that do not.

A simulated cluster without a `state_file` keeps its twin's state in the site directory
(`SITE_DIR/state/CLUSTER.json`): several runs and observations of one site share it, as a
single run shares its own state file.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drengine.errors import DrengineError, InputError, OperatorStop, StepInterrupted
from drengine.gates import GatePolicy, operator_name
from drengine.inventory import Cluster, Inventory, load_inventory
from drengine.journal import Entry, Event, JournalWriter, verified_chain
from drengine.runbook import RunbookSearch
from drengine.site.goals import Holding, holds_now
from drengine.site.graph import dependency_order
from drengine.site.inputs import SiteInputs, needed_inputs, needs_words, unknown_inputs
from drengine.steps import Mode
from drengine.worker import StopSignal

if TYPE_CHECKING:
    from drengine.status import Advice

SITE_MODE = "site"
RUNBOOK_NAME = "site"
MAX_PARALLEL = 4
POLL = 0.2  # seconds: how often the site's main thread looks up from the runs side by side (Ctrl-C)
Around = Callable[[JournalWriter, Any, Callable[[], Any]], Any]


@dataclass
class SiteRequest:
    inventory: Inventory
    gates: GatePolicy
    mode: Mode = Mode.RUN  # RUN, or DRILL for `drill site`
    site_dir: Path | None = None
    runs_root: Path = Path("runs")
    parallel: int = 1
    argv: list[str] = field(default_factory=list)
    # The listeners of one cluster's run (the terminal follows it when the runs go one at a time).
    listeners: Callable[[str], list[Callable[[Entry], None]]] = lambda cluster: []
    # Told every site event (the CLI prints a line for each).
    on_event: Callable[[Entry], None] | None = None
    # Drills: wraps one cluster's walk (canaries around the run).
    around: Callable[[str], Around | None] = lambda cluster: None
    runbooks: RunbookSearch | None = None  # where the clusters' runbooks are found (--runbooks)
    inputs: SiteInputs = field(default_factory=dict)  # --input CLUSTER:NAME=VALUE, for the runs started


@dataclass
class Turn:
    """One cluster's turn in a site run."""

    cluster: str
    phase: str  # healthy | recovered | failed | blocked | no-runbook | needs-input | stopped
    summary: str
    runbook: str | None = None
    run_dir: str | None = None
    holds: bool = False
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class SiteOutcome:
    site_id: str
    site_dir: Path
    success: bool
    summary: str
    turns: dict[str, Turn]
    holding: list[Holding]
    not_holding: list[str]

    @property
    def end(self) -> str:
        return "done" if self.success else "incomplete"


def with_site_state(inventory: Inventory, site_dir: Path) -> Inventory:
    """The inventory whose simulated clusters without a state file keep it in the site directory."""
    clusters = {}
    for name, cluster in inventory.clusters.items():
        if cluster.simulated is not None and cluster.simulated.state_file is None:
            state = str(site_dir / "state" / f"{name}.json")
            cluster = cluster.model_copy(update={"simulated": cluster.simulated.model_copy(update={"state_file": state})})
            cluster._hosts.update(inventory.clusters[name]._hosts)
        clusters[name] = cluster
    return inventory.model_copy(update={"clusters": clusters})


def new_site_id(clock: Callable[[], float] = time.time) -> str:
    from drengine.engine import new_run_id

    return new_run_id("site", clock)


class _Site:
    def __init__(self, request: SiteRequest, journal: JournalWriter, site_id: str) -> None:
        self.request = request
        self.inventory = request.inventory
        self.journal = journal
        self.site_id = site_id
        self.site_dir = journal.run_dir
        self.depends = self.inventory.depends()
        self.order = dependency_order(self.depends)
        self.turns: dict[str, Turn] = {}
        self.stopped: list[DrengineError] = []
        self.stop = StopSignal()  # Ctrl-C, handed to the cluster runs going side by side
        if request.on_event is not None:
            from drengine.engine import _listen

            _listen(journal, request.on_event)

    # -- the schedule ---------------------------------------------------------------------------
    def drive(self, in_flight: dict[str, str]) -> SiteOutcome:
        pending = [n for n in self.order if n not in self.turns]
        running: dict[Future[Turn], str] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(self.request.parallel, MAX_PARALLEL)),
                                thread_name_prefix="site") as pool:
            while pending or running:
                try:
                    for name in list(pending):
                        if self.stopped or self.stop.is_set():
                            break
                        if len(running) >= max(1, self.request.parallel):
                            break
                        if any(d not in self.turns for d in self.depends[name]):
                            continue  # a dependency has not had its turn yet
                        pending.remove(name)
                        if self.request.parallel <= 1:
                            # One at a time: the turn runs here, where Ctrl-C reaches the engine
                            # (which journals the stop and leaves the run resumable).
                            self.turns[name] = self._turn(name, in_flight.get(name))
                            continue
                        running[pool.submit(self._turn, name, in_flight.get(name))] = name
                    if (self.stopped or self.stop.is_set()) and not running:
                        break
                    if not running:
                        if pending:  # cannot happen: every dependency is in the order before its dependents
                            raise RuntimeError(f"site order broken: {', '.join(pending)} wait for clusters "
                                               f"that never run (a defect: please report it)")
                        break
                    # A bounded wait: Ctrl-C reaches this (main) thread between two waits.
                    done, _ = wait(list(running), timeout=POLL, return_when=FIRST_COMPLETED)
                    for fut in done:
                        name = running.pop(fut)
                        self.turns[name] = fut.result()
                except KeyboardInterrupt:
                    if not running:
                        raise
                    self._stop_in_flight(sorted(running.values()))
        if self.stop.is_set() and not self.stopped:
            # Ctrl-C came as the last runs in flight were ending: the site stops all the same.
            who = operator_name()
            self.stopped.append(OperatorStop(f"interrupted by {who} (Ctrl-C); every event so far is journaled", who=who))
        if self.stopped:
            first = self.stopped[0]
            self.journal.append(Event.RUN_FINISHED, end="stopped", success=False, summary=str(first), resumable=True)
            first.run_dir, first.resumable = self.site_dir, True
            first.resume_with = "drengine site run --resume"
            raise first
        return self._verdict()

    def _stop_in_flight(self, names: list[str]) -> None:
        """Ctrl-C while cluster runs go side by side (in threads Ctrl-C does not reach): each is told
        to stop as a Ctrl-C would stop it (journaled, resumable); no further turn starts. The
        site waits for them to end (a step in flight is bounded by its connectors' timeouts)."""
        if self.stop.is_set():
            return  # a second Ctrl-C: the runs are already stopping
        self.journal.append(Event.NOTE, text=f"interrupted by {operator_name()} (Ctrl-C): stopping the cluster "
                                             f"runs in flight ({', '.join(names)}); each ends resumable")
        self.stop.set()

    def _turn(self, name: str, in_flight: str | None) -> Turn:
        cluster = self.inventory.cluster(name)
        try:
            return self._recover(cluster, in_flight)
        except (OperatorStop, StepInterrupted) as exc:
            self.stopped.append(exc)
            self.journal.append(Event.SITE_CLUSTER, cluster=name, phase="stopped", summary=str(exc),
                                run_dir=str(exc.run_dir) if exc.run_dir else None)
            return Turn(name, "stopped", str(exc), run_dir=str(exc.run_dir) if exc.run_dir else None)
        except DrengineError as exc:
            turn = Turn(name, "failed", str(exc), run_dir=str(exc.run_dir) if exc.run_dir else None)
            self.journal.append(Event.SITE_CLUSTER, cluster=name, phase="failed", summary=str(exc),
                                run_dir=turn.run_dir)
            return turn

    def _dependencies_hold(self, cluster: Cluster) -> list[Holding]:
        checks = []
        for dep in self.depends[cluster.name]:
            turn = self.turns[dep]
            holding = holds_now(self.inventory, self.inventory.cluster(dep),
                                Path(turn.run_dir) if turn.run_dir else None)
            self.journal.append(Event.GOAL_CHECKED, cluster=dep, for_cluster=cluster.name, holds=holding.holds,
                                how=holding.how, summary=holding.summary, left=holding.left)
            checks.append(holding)
        return checks

    def _recover(self, cluster: Cluster, in_flight: str | None) -> Turn:
        name = cluster.name
        checks = self._dependencies_hold(cluster)
        failing = [c for c in checks if not c.holds]
        if failing:
            summary = ("not started: " + "; ".join(c.words() for c in failing)
                       + f"; recover {'them' if len(failing) > 1 else 'it'} first, then run the site again")
            self.journal.append(Event.SITE_CLUSTER, cluster=name, phase="blocked", summary=summary,
                                waits_for=[c.cluster for c in failing])
            return Turn(name, "blocked", summary)
        if in_flight is not None:
            return self._resume_cluster(cluster, Path(in_flight))
        from drengine.status import probe_cluster

        status = probe_cluster(cluster, self.inventory)
        if not status.verdict.needs_action:
            self.journal.append(Event.SITE_CLUSTER, cluster=name, phase="healthy", verdict=status.verdict.value,
                                summary=status.headline)
            return Turn(name, "healthy", status.headline, holds=True)
        advice = next((a for a in status.advice if a.runbook), None)
        if advice is None or advice.runbook is None:
            why = "; ".join(a.why for a in status.advice) or "no advice"
            summary = f"{status.verdict.value}: {status.headline}; no runbook applies: {why}"
            self.journal.append(Event.SITE_CLUSTER, cluster=name, phase="no-runbook", verdict=status.verdict.value,
                                summary=summary)
            return Turn(name, "no-runbook", summary)
        return self._start_cluster(cluster, advice, status.verdict.value, status.headline)

    def _start_cluster(self, cluster: Cluster, advice: Advice, verdict: str, headline: str) -> Turn:
        from drengine.engine import RunRequest, start_run
        from drengine.runbook import load_runbook

        if self.stop.is_set():
            who = operator_name()
            raise OperatorStop(f"interrupted by {who} (Ctrl-C) before the run of {cluster.name} started", who=who)
        runbook = load_runbook(str(advice.runbook), self.request.runbooks)
        given = dict(self.request.inputs.get(cluster.name, {}))
        unknown = unknown_inputs(cluster.name, runbook, given)
        if unknown is not None:
            raise InputError(unknown)
        needs = needed_inputs(runbook, advice, given)
        if needs:
            # Not on the runbook's defaults: the choice is the operator's. What depends on it waits.
            summary = (f"{verdict}: {headline}; not started: {needs_words(cluster.name, runbook.name, needs)}; "
                       f"run the site again with {'them' if len(needs) > 1 else 'it'}")
            self.journal.append(Event.SITE_CLUSTER, cluster=cluster.name, phase="needs-input", runbook=runbook.name,
                                verdict=verdict, summary=summary, needs=needs)
            return Turn(cluster.name, "needs-input", summary, runbook=runbook.name)
        gone = tuple(cluster.gone_for_good)
        run_dir = self._new_run_dir(cluster.name)
        self.journal.append(Event.SITE_CLUSTER, cluster=cluster.name, phase="started", runbook=runbook.name,
                            run_dir=str(run_dir), verdict=verdict, summary=headline)
        started_at = time.time()
        outcome = start_run(RunRequest(
            runbook=runbook, inventory=self.inventory, cluster=cluster, mode=self.request.mode,
            gates=self.request.gates, run_dir=run_dir, operator_said_gone=gone, inputs=given,
            listeners=self.request.listeners(cluster.name), argv=self.request.argv,
            around_walk=self.request.around(cluster.name), stop=self.stop,
        ))
        return self._finished(cluster, runbook.name, outcome, started_at)

    def _new_run_dir(self, name: str) -> Path:
        """SITE_DIR/CLUSTER, or CLUSTER.2, .3 ... when an earlier turn of this site left one there."""
        run_dir, n = self.site_dir / name, 1
        while (run_dir / "journal.jsonl").exists():
            n += 1
            run_dir = self.site_dir / f"{name}.{n}"
        return run_dir

    def _resume_cluster(self, cluster: Cluster, run_dir: Path) -> Turn:
        """The cluster's run was started before the site stopped: finish it as `run --resume` would."""
        from drengine.engine import RESUMABLE_ENDS, ResumeRequest, resume_run
        from drengine.runbook import load_runbook

        entries = verified_chain(run_dir).entries if (run_dir / "journal.jsonl").is_file() else []
        started = next((e.data for e in entries if e.type is Event.RUN_STARTED), None)
        if started is None:
            # Stopped before its run began (or it never took the lock): observed and started again.
            return self._recover(cluster, None)
        finish = next((e for e in reversed(entries) if e.type is Event.RUN_FINISHED), None)
        resumed = max((e.seq for e in entries if e.type is Event.RUN_RESUMED), default=0)
        started_at = time.time()
        if finish is not None and finish.seq > resumed and finish.data.get("end") not in RESUMABLE_ENDS:
            from drengine.engine import RunOutcome

            outcome = RunOutcome(str(started["run_id"]), run_dir, str(finish.data.get("end")),
                                 bool(finish.data.get("success")), str(finish.data.get("summary", "")),
                                 left=list(finish.data.get("left") or []))
            return self._finished(cluster, str(started["runbook"]), outcome, started_at)
        runbook = load_runbook(str(started["runbook_path"]))
        self.journal.append(Event.SITE_CLUSTER, cluster=cluster.name, phase="resumed", runbook=runbook.name,
                            run_dir=str(run_dir), summary="its run was interrupted: resumed from its journal")
        outcome = resume_run(ResumeRequest(run_dir, self.request.gates, self.request.listeners(cluster.name),
                                           argv=self.request.argv, loaded=(runbook, self.inventory),
                                           around_walk=self.request.around(cluster.name), stop=self.stop))
        return self._finished(cluster, runbook.name, outcome, started_at)

    def _finished(self, cluster: Cluster, runbook: str, outcome: Any, started_at: float) -> Turn:
        phase = "recovered" if outcome.success else "failed"
        self.journal.append(Event.SITE_CLUSTER, cluster=cluster.name, phase=phase, runbook=runbook,
                            run_dir=str(outcome.run_dir), end=outcome.end, success=outcome.success,
                            summary=outcome.summary, left=list(outcome.left))
        return Turn(cluster.name, phase, outcome.summary, runbook, str(outcome.run_dir), outcome.success,
                    started_at, time.time())

    # -- the verdict --------------------------------------------------------------------------------
    def _verdict(self) -> SiteOutcome:
        """Every cluster on a last fresh observation: the site is DONE only when all hold."""
        holding = []
        for name in self.order:
            turn = self.turns[name]
            check = holds_now(self.inventory, self.inventory.cluster(name), Path(turn.run_dir) if turn.run_dir else None)
            self.journal.append(Event.GOAL_CHECKED, cluster=name, holds=check.holds, how=check.how,
                                summary=check.summary, left=check.left)
            holding.append(check)
        not_holding = [h.cluster for h in holding if not h.holds]
        if not_holding:
            summary = "the site is not recovered: " + "; ".join(
                f"{h.cluster} does not hold ({h.summary}; its turn: {self.turns[h.cluster].phase}: "
                f"{self.turns[h.cluster].summary})" for h in holding if not h.holds)
        else:
            ran = [n for n in self.order if self.turns[n].runbook]
            summary = (f"every cluster holds ({', '.join(self.order)})"
                       + (f"; recovered in order: {', '.join(ran)}" if ran else "; nothing needed a runbook"))
        success = not not_holding
        self.journal.append(Event.RUN_FINISHED, end="done" if success else "incomplete", success=success,
                            summary=summary, left=not_holding)
        return SiteOutcome(self.site_id, self.site_dir, success, summary, self.turns, holding, not_holding)


def run_site(request: SiteRequest) -> SiteOutcome:
    """A new site run: the order, then each cluster's turn, then the site's verdict."""
    site_id = new_site_id()
    site_dir = request.site_dir or (request.runs_root / site_id)
    if (site_dir / "journal.jsonl").exists():
        raise InputError(f"{site_dir} already holds a journal; choose another --run-dir or resume it with --resume")
    inventory = with_site_state(request.inventory, site_dir)
    request = replace(request, inventory=inventory)
    journal = JournalWriter(site_dir)
    try:
        site = _Site(request, journal, site_id)
        journal.append(Event.RUN_STARTED, run_id=site_id, mode=SITE_MODE, runbook=RUNBOOK_NAME,
                       inventory=os.path.realpath(inventory.path), cluster=",".join(site.order), kind=SITE_MODE,
                       cluster_mode=request.mode.value, order=site.order, depends_on=site.depends,
                       parallel=request.parallel, operator=operator_name(), pid=os.getpid(), host=socket.gethostname(),
                       argv=request.argv, policy=request.gates.name)
        return site.drive({})
    finally:
        journal.close()


def resume_site(site_dir: Path, make: Callable[[Inventory], SiteRequest]) -> SiteOutcome:
    """Continue a site run from its journal: finished turns stay finished, an interrupted cluster
    run is resumed, the clusters after it take their turn."""
    from drengine.engine import chain_to_resume

    chain = chain_to_resume(site_dir, "the directory of a site run")
    entries = chain.entries
    started = next((e.data for e in entries if e.type is Event.RUN_STARTED), None)
    if started is None or started.get("mode") != SITE_MODE:
        raise InputError(f"{site_dir}: not the journal of a site run (`drengine run --resume` resumes a cluster's run)")
    finish = next((e for e in reversed(entries) if e.type is Event.RUN_FINISHED), None)
    resumed_at = max((e.seq for e in entries if e.type is Event.RUN_RESUMED), default=0)
    if finish is not None and finish.seq > resumed_at and finish.data.get("end") in ("done", "incomplete", "closed"):
        raise InputError(f"{site_dir}: this site run already finished ({finish.data.get('end')}); "
                         f"start a new one with `drengine site run`")
    inventory = load_inventory(str(started["inventory"]))
    inventory = with_site_state(inventory.model_copy(update={"path": str(started["inventory"])}), site_dir)
    request = replace(make(inventory), mode=Mode(str(started.get("cluster_mode", "run"))))
    turns, in_flight = _turns_from(entries)
    journal = JournalWriter(site_dir, follows=chain)
    try:
        site = _Site(request, journal, str(started["run_id"]))
        journal.append(Event.RUN_RESUMED, run_id=site.site_id, operator=operator_name(), pid=os.getpid(),
                       host=socket.gethostname(), argv=request.argv, finished=sorted(turns), in_flight=in_flight)
        site.turns.update(turns)
        return site.drive(in_flight)
    finally:
        journal.close()


def _turns_from(entries: list[Entry]) -> tuple[dict[str, Turn], dict[str, str]]:
    """The turns a site journal finished (recovered, failed by its runbook, healthy) and the runs
    it started without an end. Blocked, stopped and runbook-less turns are taken again."""
    turns: dict[str, Turn] = {}
    in_flight: dict[str, str] = {}
    for entry in entries:
        if entry.type is not Event.SITE_CLUSTER:
            continue
        data = entry.data
        name, phase = str(data["cluster"]), str(data["phase"])
        if phase in ("started", "resumed"):
            in_flight[name] = str(data["run_dir"])
            turns.pop(name, None)
        elif phase in ("recovered", "healthy") or (phase == "failed" and data.get("end") is not None):
            turns[name] = Turn(name, phase, str(data.get("summary", "")), data.get("runbook"), data.get("run_dir"),
                               holds=phase != "failed")
            in_flight.pop(name, None)
        elif phase in ("stopped", "failed") and data.get("run_dir"):
            in_flight[name] = str(data["run_dir"])
    return turns, in_flight

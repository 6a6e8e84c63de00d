"""Past and current runs, read from a runs directory's journals: `drengine runs list|show`.

A run is a directory holding `journal.jsonl` (drills keep their restore run in a
subdirectory). Everything shown comes from the journal alone, plus the cluster lock to tell
a run that is still going from one that was interrupted; the shared run registry of issue 17
can replace that look-up when it lands.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from drengine.engine import RESUMABLE_ENDS
from drengine.errors import DrengineError, InputError
from drengine.journal import JOURNAL_FILE, Entry, Event, read_entries, verify


class Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunSummary(Model):
    id: str
    run_dir: str
    cluster: str = ""
    kind: str = ""
    runbook: str = ""
    mode: str = ""
    operator: str = ""
    started: float = 0.0
    duration_seconds: float | None = None
    result: str  # done, failed, stopped, crashed, interrupted, running (or the runbook's own end)
    success: bool | None = None
    summary: str = ""
    resumable: bool = False
    resume_command: str = ""
    journal: str = "intact"  # or "BROKEN: <first bad line>"

    @property
    def started_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started)) if self.started else "-"


class StepRow(Model):
    step: str
    outcome: str
    ok: bool
    summary: str
    attempts: int = 1  # a step retried by its runbook is one row: its last attempt, and how many there were
    after_resume: bool = False  # the first step that ran after a `--resume`


class GateRow(Model):
    step: str
    answer: str
    who: str
    policy: str
    reason: str = ""


class RunDetail(Model):
    run: RunSummary
    argv: list[str] = Field(default_factory=list)
    steps: list[StepRow] = Field(default_factory=list)
    gates: list[GateRow] = Field(default_factory=list)
    overrides: list[str] = Field(default_factory=list)
    statements: int = 0
    notes: list[str] = Field(default_factory=list)
    reports: list[str] = Field(default_factory=list)
    # The change-ledger entries this run opened and its journal does not close (another run or a
    # manual close may have: `drengine changes` reads the registry), each with its undo command.
    left_changed: list[str] = Field(default_factory=list)


def resume_command(run_dir: Path, mode: str = "run") -> str:
    """How to continue it: a cluster's run, or a site run (drengine/site/run.py)."""
    command = "drengine site run --resume" if mode == "site" else "drengine run --resume"
    return f"{command} {shlex.quote(str(run_dir))}"


def journals(runs_dir: Path) -> list[Path]:
    if not runs_dir.is_dir():
        raise InputError(f"{runs_dir}: no such runs directory; runs are kept under runs/ where drengine was started "
                         f"(or where --run-dir pointed); give it with --runs-dir")
    return sorted(runs_dir.glob(f"**/{JOURNAL_FILE}"))


def _still_running(started: dict[str, Any], run_id: str, lock_dir: Path | None) -> bool:
    """Whether the run holds its cluster's lock now (the lock of the inventory it ran with)."""
    from drengine.inventory import LocalLockSettings, load_inventory
    from drengine.lock import open_lock

    cluster = str(started.get("cluster", ""))
    settings: Any = LocalLockSettings(backend="local")
    try:
        inventory = load_inventory(str(started.get("inventory", "")))
        settings = inventory.lock_for(inventory.cluster(cluster))
    except DrengineError:
        pass  # the inventory moved or changed: look at the local lock
    try:
        holder = open_lock(settings, cluster, lock_dir).holder()
    except DrengineError:
        return False
    return holder is not None and holder.run_id == run_id


def summarize(run_dir: Path, lock_dir: Path | None = None) -> tuple[RunSummary, list[Entry]]:
    journal = run_dir / JOURNAL_FILE
    try:
        entries = list(read_entries(journal))
    except DrengineError as exc:
        return RunSummary(id=run_dir.name, run_dir=str(run_dir), result="unreadable", journal=f"BROKEN: {exc}"), []
    try:
        verify(run_dir)
        health = "intact"
    except DrengineError as exc:
        health = f"BROKEN: {exc}"
    start = next((e for e in entries if e.type is Event.RUN_STARTED), None)
    d: dict[str, Any] = start.data if start else {}
    run_id = str(d.get("run_id", run_dir.name))
    finish = next((e for e in reversed(entries) if e.type is Event.RUN_FINISHED), None)
    last_resume = max((e.seq for e in entries if e.type is Event.RUN_RESUMED), default=0)
    if finish is not None and finish.seq < last_resume:
        finish = None  # resumed after that end: the newest part has not ended (yet)
    mode = str(d.get("mode", ""))
    if finish is not None:
        result = str(finish.data.get("end", ""))
        success: bool | None = bool(finish.data.get("success"))
        summary = str(finish.data.get("summary", ""))
        # The engine says so in the end event; older journals are judged by the end's name, as the engine does.
        open_ended = bool(finish.data.get("resumable", result in RESUMABLE_ENDS))
    elif mode != "plan" and _still_running(d, run_id, lock_dir):
        result, success, summary, open_ended = "running", None, "in progress (it holds the cluster lock)", False
    else:
        result, success, open_ended = "interrupted", None, True
        summary = "no end was journaled: the process died or was killed"
    resumable = open_ended and mode in ("run", "site") and health == "intact"
    duration = round(entries[-1].ts - entries[0].ts, 3) if entries else None
    return RunSummary(
        id=run_id, run_dir=str(run_dir), cluster=str(d.get("cluster", "")), kind=str(d.get("kind", "")),
        runbook=str(d.get("runbook", "")), mode=mode, operator=str(d.get("operator", "")),
        started=float(start.ts) if start else 0.0, duration_seconds=duration, result=result, success=success,
        summary=summary, resumable=resumable, resume_command=resume_command(run_dir, mode) if resumable else "",
        journal=health,
    ), entries


def list_runs(runs_dir: Path, lock_dir: Path | None = None) -> list[RunSummary]:
    """Every run under `runs_dir`, newest first."""
    runs = [summarize(j.parent, lock_dir)[0] for j in journals(runs_dir)]
    return sorted(runs, key=lambda r: r.started, reverse=True)


def find_run(runs_dir: Path, ref: str) -> Path:
    """A run by its directory, its id, or an unambiguous start of its id."""
    as_path = Path(ref)
    if (as_path / JOURNAL_FILE).is_file():
        return as_path
    candidates = {j.parent.name: j.parent for j in journals(runs_dir)}
    for path in list(candidates.values()):
        run_id = summarize(path)[0].id
        candidates.setdefault(run_id, path)
    if ref in candidates:
        return candidates[ref]
    starts = sorted({str(p) for name, p in candidates.items() if name.startswith(ref)})
    if len(starts) == 1:
        return Path(starts[0])
    from drengine.suggest import did_you_mean

    if len(starts) > 1:
        raise InputError(f"{ref!r} starts {len(starts)} runs under {runs_dir}: {', '.join(starts)}; give more of the id")
    raise InputError(f"no run {ref!r} under {runs_dir}.{did_you_mean(ref, candidates)} "
                     f"See `drengine runs list --runs-dir {runs_dir}`")


def show_run(run_dir: Path, lock_dir: Path | None = None) -> RunDetail:
    summary, entries = summarize(run_dir, lock_dir)
    steps: list[StepRow] = []
    gates, overrides, notes = [], [], []
    statements = 0
    argv: list[str] = []
    resumed = False
    for e in entries:
        d = e.data
        if e.type is Event.RUN_STARTED:
            argv = [str(a) for a in d.get("argv", [])]
        elif e.type is Event.RUN_RESUMED:
            resumed = True
        elif e.type is Event.STEP_FINISHED:
            row = StepRow(step=str(d.get("step")), outcome=str(d.get("outcome")), ok=bool(d.get("ok")),
                          summary=str(d.get("summary", "")), attempts=int(d.get("attempt") or 1), after_resume=resumed)
            if row.attempts > 1 and steps and steps[-1].step == row.step and not resumed:
                row = row.model_copy(update={"after_resume": steps.pop().after_resume})
            steps.append(row)
            resumed = False
        elif e.type is Event.PLAN_STEP:
            steps.append(StepRow(step=str(d.get("step")), outcome="would run" if not d.get("ran") else str(d.get("outcome")),
                                 ok=bool(d.get("ok")), summary=str(d.get("summary", ""))))
        elif e.type is Event.GATE_ANSWERED and not d.get("standing"):  # an approval standing is the same answer
            gates.append(GateRow(step=str(d.get("step")), answer=str(d.get("answer")), who=str(d.get("who")),
                                 policy=str(d.get("policy")), reason=str(d.get("reason") or "")))
        elif e.type is Event.OVERRIDE:
            overrides.append(f"{d.get('step')}: by {d.get('who')}; risk accepted: {d.get('risk')}")
        elif e.type is Event.STATEMENT_SENT:
            statements += 1
        elif e.type is Event.NOTE:
            notes.append(str(d.get("text", "")))
    reports = sorted(str(p) for p in run_dir.iterdir() if p.name.startswith("report.") or p.suffix in (".prom",)
                     or p.name == "junit.xml")
    return RunDetail(run=summary, argv=argv, steps=steps, gates=gates, overrides=overrides, statements=statements,
                     notes=notes, reports=reports, left_changed=left_changed(summary.id, entries))


def left_changed(run_id: str, entries: list[Entry]) -> list[str]:
    """The ledger entries the run opened that its own journal leaves open, in lines."""
    from drengine.ledger import fold, listing, open_entries

    return listing([e for e in open_entries(fold(entries)) if e.run_id == run_id])


def close_run(run_dir: Path, reason: str, who: str, lock_dir: Path | None = None) -> RunSummary:
    """Close a run left stopped or interrupted that nobody will resume: its journal ends with
    `closed`, who closed it and why, so that `runs` and `status` stop offering to resume it.
    Nothing is sent to the cluster; what the run changed stays as it is (say so in the reason)."""
    from drengine.journal import JournalWriter, verified_chain

    if not reason.strip():
        raise InputError("say why the run is closed without resuming it: --reason \"...\" (it is journaled)")
    summary, _ = summarize(run_dir, lock_dir)
    if summary.result == "running":
        raise InputError(f"run {summary.id} is running (it holds the cluster lock); it cannot be closed")
    if not summary.resumable:
        raise InputError(f"run {summary.id} ended {summary.result or 'without an end'} and is not resumable; "
                         "only a stopped or interrupted run is closed")
    journal = JournalWriter(run_dir, follows=verified_chain(run_dir))
    try:
        journal.append(Event.RUN_FINISHED, end="closed", success=False, resumable=False, closed_by=who,
                       reason=reason.strip(),
                       summary=f"closed by {who} without resuming it ({summary.result}): {reason.strip()}")
    finally:
        journal.close()
    from drengine.anchor import anchor_appended

    anchor_appended(run_dir)  # the registry's head follows the closing event (best effort: verify says if not)
    return summarize(run_dir, lock_dir)[0]

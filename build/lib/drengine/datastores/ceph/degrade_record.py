"""What ceph-degrade runs changed, read back from their journals, for ceph-restore.

Every setting ceph-degrade changes is recorded as a fact (`flags_set`, `min_size_changes`),
and the same changes can be read back from its `statement_sent` events (the statement that
lowers min_size carries the old value in its result), so ceph-restore undoes exactly what
drengine did, and nothing an operator did by hand, even after a crash between sending a
change and journaling its step. A journal that fails verification is never trusted.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from drengine.datastores.ceph.connector import CephSnapshot
from drengine.datastores.ceph.facts import DegradeRecord, FlagsSet, MinSizeChanges, PoolMinSize
from drengine.errors import JournalCorrupt
from drengine.steps import Facts, Mode

DEGRADE_RUNBOOK = "ceph-degrade"
RESTORE_RUNBOOK = "ceph-restore"
# The ceph-restore steps that put drengine's changes back: once both finished ok, its degrade runs are restored.
RESTORE_STEPS = frozenset({"restore-min-size", "unset-flags"})


def default_min_size(size: int) -> int:
    """Ceph's own default for a replicated pool: a majority of the copies (size - size/2)."""
    return size - size // 2


class DegradeRun(BaseModel):
    model_config = ConfigDict(frozen=True)
    run_dir: str
    started: float
    finished: str  # the end the run reached, or "unfinished"
    flags: list[str]
    min_size: list[PoolMinSize]
    min_size_statements: dict[str, int]  # pool -> min_size value sent, from statement_sent events


def read_degrade_run(run_dir: Path, cluster: str) -> DegradeRun | None:
    """The changes one ceph-degrade run made, from its facts and its statements; None when the
    directory holds some other run. A journal that fails verification raises JournalCorrupt."""
    from drengine.journal import Event, read_entries, verify

    journal = run_dir / "journal.jsonl"
    entries = list(read_entries(journal))
    start = next((e for e in entries if e.type is Event.RUN_STARTED), None)
    if start is None or start.data.get("runbook") != DEGRADE_RUNBOOK or start.data.get("cluster") != cluster:
        return None
    if start.data.get("mode") == Mode.PLAN.value:
        return None
    verify(run_dir)
    facts = Facts()
    flags: list[str] = []
    min_size: dict[str, PoolMinSize] = {}
    sent_min: dict[str, int] = {}
    finished = "unfinished"
    for entry in entries:
        if entry.type is Event.STEP_FINISHED and entry.data.get("facts"):
            facts.load(entry.data["facts"])
            flags_set = facts.maybe("flags_set", FlagsSet)
            if flags_set is not None:
                flags += [f for f in flags_set.set_by_drengine if f not in flags]
            changes = facts.maybe("min_size_changes", MinSizeChanges)
            if changes is not None:
                for c in changes.changes:
                    # The fact's record (with the pool's size) replaces the one read from its own statement.
                    if c.pool not in min_size or min_size[c.pool].size == 0:
                        min_size[c.pool] = c
        elif entry.type is Event.STATEMENT_SENT and entry.data.get("language") == "ceph-mon":
            # The statements cover the window between sending a change and journaling its step.
            try:
                cmd = json.loads(str(entry.data.get("text", "")))
            except ValueError:
                continue
            if cmd.get("prefix") == "osd set" and cmd.get("key") and cmd["key"] not in flags:
                flags.append(str(cmd["key"]))
            if cmd.get("prefix") == "osd pool set" and cmd.get("var") == "min_size":
                pool = str(cmd.get("pool"))
                sent_min[pool] = int(cmd.get("val", 0))
                old = parse_was_note(str(entry.data.get("result", "")))
                if old is not None and pool not in min_size:
                    min_size[pool] = PoolMinSize(pool=pool, size=0, old=old, new=int(cmd.get("val", 0)),
                                                 reason="read back from the statement's journal entry")
        elif entry.type is Event.RUN_FINISHED:
            finished = str(entry.data.get("end", "finished"))
    return DegradeRun(run_dir=str(run_dir), started=start.ts, finished=finished, flags=flags,
                      min_size=list(min_size.values()), min_size_statements=sent_min)


def _last_restore(runs_dir: Path, cluster: str) -> float:
    """When the latest ceph-restore of this cluster that put everything back started (0 when
    none): one whose min_size and flag steps both finished ok, even if health stayed not OK."""
    from drengine.journal import Event, read_entries

    latest = 0.0
    for journal in runs_dir.glob("*/journal.jsonl"):
        try:
            entries = list(read_entries(journal))
        except (OSError, JournalCorrupt):
            continue
        start = next((e for e in entries if e.type is Event.RUN_STARTED), None)
        if start is None or start.data.get("runbook") != RESTORE_RUNBOOK or start.data.get("cluster") != cluster:
            continue
        done = {str(e.data.get("step")) for e in entries if e.type is Event.STEP_FINISHED and e.data.get("ok")}
        if RESTORE_STEPS <= done or any(e.type is Event.RUN_FINISHED and e.data.get("success") for e in entries):
            latest = max(latest, start.ts)
    return latest


def _belongs_to(journal: Path, cluster: str) -> bool:
    """For a journal that cannot be parsed: does its text name a ceph-degrade run of this cluster?"""
    try:
        head = journal.read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return False
    return f'"runbook":"{DEGRADE_RUNBOOK}"' in head and f'"cluster":"{cluster}"' in head


def find_degrade_runs(runs_dir: Path, cluster: str) -> list[DegradeRun]:
    """Every ceph-degrade run of this cluster started after its latest completed ceph-restore,
    oldest first: together they hold everything drengine changed and has not put back yet.
    A damaged journal of another run is skipped; a damaged one of this cluster's degrade raises."""
    since = _last_restore(runs_dir, cluster)
    runs = []
    for journal in sorted(runs_dir.glob("*/journal.jsonl")):
        try:
            run = read_degrade_run(journal.parent, cluster)
        except JournalCorrupt:
            if _belongs_to(journal, cluster):
                raise
            continue
        if run is not None and run.started > since:
            runs.append(run)
    return sorted(runs, key=lambda r: r.started)


def merge_degrade_runs(runs: list[DegradeRun], snap: CephSnapshot | None) -> DegradeRecord:
    """One record: the union of the flags drengine set, and per pool the oldest recorded
    min_size (the value before drengine's first change)."""
    flags: list[str] = []
    pools: dict[str, PoolMinSize] = {}
    notes: list[str] = []
    for run in runs:
        flags += [f for f in run.flags if f not in flags]
        for c in run.min_size:
            pools.setdefault(c.pool, c)
        for pool, val in run.min_size_statements.items():
            if pool in pools:
                continue
            # Sent, but the step did not finish and record the old value: fall back to Ceph's default.
            info = snap.pool(pool) if snap else None
            size = info.size if info else 3
            pools[pool] = PoolMinSize(pool=pool, size=size, old=default_min_size(size), new=val,
                                      reason="old value not recorded (the step was interrupted); Ceph's default for the size")
            notes.append(f"pool {pool}: min_size was changed to {val} but the old value was not recorded; "
                         f"restoring Ceph's default {default_min_size(size)} for size {size}")
        if run.finished != "done":
            notes.append(f"{run.run_dir} ended {run.finished}: its recorded changes are restored too")
    return DegradeRecord(runs=[r.run_dir for r in runs], flags=flags, min_size=list(pools.values()), notes=notes)



def was_note(old: int) -> str:
    """Journaled with the statement that lowers min_size: the old value survives a crash before the step's facts are."""
    return f"min_size was {old}"


def parse_was_note(result: str) -> int | None:
    marker = "min_size was "
    if marker not in result:
        return None
    digits = result.split(marker, 1)[1].split()[0].strip(";,.")
    return int(digits) if digits.isdigit() else None


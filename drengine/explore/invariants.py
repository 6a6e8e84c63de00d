"""The invariants every runbook must keep, whatever the datastore, checked on the journal a
scenario left behind (all its segments: the run and each resume):

- the journal verifies (hash chain and head record);
- nothing is journaled after `run_finished`, except a resume of a resumable end;
- no statement that changes the cluster is sent by a gated step without a journaled
  `proceed` for that step since it last started or resumed;
- no statement that changes the cluster is sent twice across a resume by the same step to
  the same target, unless the world changed in between;
- no statement that changes the cluster is sent twice by one attempt of a step to the same
  target, unless its action declares itself repeatable;
- the ledger: each temporary or diminishing change the simulator shows at the end against the
  run's starting state (a flag set, a min_size lowered, a setting changed) is an open entry of
  the run's change ledger (drengine/ledger.py), so that the stop or verdict named it;
- liveness: when the datastore's oracle says the recovery is possible from the scenario's
  state, and the operator approved every gate and the world was left alone, the run ends DONE.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from drengine.errors import JournalCorrupt
from drengine.explore.kit import Violation
from drengine.journal import Entry, Event, verified_entries
from drengine.runbook import Runbook
from drengine.steps import Effect, GateLevel

RESUMABLE = ("stopped", "crashed", "interrupted")


def journal_entries(run_dir: Path) -> tuple[list[Entry], list[Violation]]:
    try:
        return verified_entries(run_dir), []
    except JournalCorrupt as exc:
        return [], [Violation("journal.verifies", str(exc))]


def _where(entry: Entry) -> str:
    step = entry.data.get("step")
    return f"event #{entry.seq} ({entry.type.value}{', step ' + str(step) if step else ''})"


def nothing_after_finish(entries: list[Entry]) -> list[Violation]:
    """After run_finished only a resume may follow: the lock taken again (a resume killed right
    after taking it leaves that event behind), then run_resumed; and only after a resumable end."""
    out = []
    for i, entry in enumerate(entries):
        if entry.type is not Event.RUN_FINISHED or i + 1 == len(entries):
            continue
        after = entries[i + 1:]
        j = 0
        while j < len(after) and after[j].type in (Event.LOCK_TAKEN, Event.LOCK_BROKEN):
            j += 1
        resumed = j == len(after) or after[j].type is Event.RUN_RESUMED
        if not resumed or (entry.data.get("end") not in RESUMABLE and not entry.data.get("resumable")):
            bad = after[j] if j < len(after) else after[0]
            out.append(Violation("journal.nothing-after-finish",
                                 f"{bad.type.value} journaled after run_finished (end {entry.data.get('end')})",
                                 _where(bad)))
    return out


def gate_level(runbook: Runbook, step: str) -> GateLevel:
    spec = runbook.steps.get(step)
    if spec is None:
        return GateLevel.NONE
    return max(spec.gate_level(), runbook.action(step).least_gate())


def gated_statements(entries: list[Entry], runbook: Runbook, mutating: Callable[[str, str], bool]) -> list[Violation]:
    """Every statement that changes the cluster, sent by a gated step, follows a `proceed`
    for that step with no resume or end of that step in between."""
    out = []
    approved: dict[str, bool] = {}
    for entry in entries:
        data = entry.data
        if entry.type is Event.RUN_RESUMED:
            approved.clear()
        elif entry.type is Event.GATE_ANSWERED:
            approved[data["step"]] = data.get("answer") == "proceed"
        elif entry.type is Event.STEP_FINISHED:
            approved.pop(data["step"], None)
        elif entry.type is Event.STATEMENT_SENT:
            step = str(data.get("step", ""))
            if step not in runbook.steps or gate_level(runbook, step) is GateLevel.NONE:
                continue
            if not mutating(str(data.get("language", "")), str(data.get("text", ""))):
                continue
            if not approved.get(step):
                out.append(Violation("journal.gate-before-statement",
                                     f"step {step} sent `{data.get('text')}` to {data.get('target')} without a "
                                     f"journaled proceed for it", _where(entry)))
    return out


def _sent_once(entry: Entry, runbook: Runbook, once: Callable[[str, str], bool]) -> tuple[str, str, str] | None:
    """(step, target, text) of a statement that must reach its target once: sent by a step of
    the runbook whose action changes the cluster and is not repeatable; None for anything else."""
    if entry.type is not Event.STATEMENT_SENT:
        return None
    data = entry.data
    step = str(data.get("step", ""))
    if step not in runbook.steps:
        return None
    action = runbook.action(step)
    if action.effect is not Effect.MUTATE or action.repeatable:
        return None
    if not once(str(data.get("language", "")), str(data.get("text", ""))):
        return None
    return step, str(data.get("target")), str(data.get("text"))


def sent_once(entries: list[Entry], runbook: Runbook, once: Callable[[str, str], bool],
              world_changed: Callable[[int, int], bool]) -> list[Violation]:
    """A statement a step sent before a resume is not sent again after it (same step, same
    target, same text), unless the world changed between the two segments."""
    out = []
    segment = 0
    first: dict[tuple[str, str, str], int] = {}
    for entry in entries:
        if entry.type is Event.RUN_RESUMED:
            segment += 1
            continue
        key = _sent_once(entry, runbook, once)
        if key is None:
            continue
        before = first.setdefault(key, segment)
        if before < segment and not world_changed(before, segment):
            out.append(Violation("journal.sent-once-across-resume",
                                 f"step {key[0]} sent `{key[2]}` to {key[1]} again after a resume (first sent in "
                                 f"segment {before + 1}, again in segment {segment + 1}) although nothing changed "
                                 f"the cluster in between", _where(entry)))
    return out


def sent_once_per_step(entries: list[Entry], runbook: Runbook, once: Callable[[str, str], bool]) -> list[Violation]:
    """One attempt of a step (step_started to its end) sends each statement that changes the
    cluster at most once to each target: a doubled promotion, a reconfig sent twice."""
    out = []
    sent: set[tuple[str, str]] | None = None
    for entry in entries:
        if entry.type in (Event.STEP_STARTED, Event.RUN_RESUMED):
            sent = set() if entry.type is Event.STEP_STARTED else None
            continue
        if entry.type in (Event.STEP_FINISHED, Event.STEP_INTERRUPTED):
            sent = None
            continue
        found = _sent_once(entry, runbook, once)
        if found is None or sent is None:
            continue
        step, target, text = found
        if (target, text) in sent:
            out.append(Violation("effects.sent-once-per-step",
                                 f"step {step} sent `{text}` to {target} twice in one attempt", _where(entry)))
        sent.add((target, text))
    return out


def liveness(promise: str | None, clean: bool, end: str, success: bool) -> list[Violation]:
    """`promise`: the oracle's reason the recovery is possible (None: not demanded); `clean`:
    every gate approved and the world left alone. Then anything short of DONE is a defect."""
    # Killed before run_started: nothing was done and there is nothing to resume; the operator
    # starts the run again (a new run, not this scenario's).
    if promise is None or not clean or (end == "done" and success) or end == "never-started":
        return []
    return [Violation("liveness.recovery-possible",
                      f"the run ended {end or 'without an end'}{' with success' if success else ''}, although every gate "
                      f"was approved, nothing changed under it, and a recovery was possible: {promise}")]


def ledger_covers(changes: list[tuple[str, str, str]] | None, entries: list[Entry]) -> list[Violation]:
    """Every change the kit sees against the starting state is an open ledger entry of the run
    (the journal's change events, folded: opened, and not closed since)."""
    if not changes:
        return []
    from drengine.ledger import fold

    still = {(e.kind, e.target) for e in fold(entries).values() if e.is_open}
    return [Violation("ledger.change-left-unrecorded",
                      f"{words} at the end of the run, but the run's change ledger has no open {kind} entry for "
                      f"{target!r}: no stop, verdict or `drengine changes` names it", "at the end")
            for kind, target, words in changes if (kind, target) not in still]


def last_finish(entries: list[Entry]) -> Entry | None:
    finishes = [entry for entry in entries if entry.type is Event.RUN_FINISHED]
    return finishes[-1] if finishes else None

"""How a journal event reads to a person, written once: the terminal shows a run with it as it
is journaled (and `journal show` replays it), and the reports take their timeline from it, so
a step, a gate answer or an override is described the same way everywhere.

Every event gets a one-line `line` (what happened) and `details` (the exact statements, the
evidence, the refusal), and says whether the terminal shows it live: a gate's question is
shown by the gate prompt and the verdict by the command itself, so those events are only in
the reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drengine.journal import Entry, Event


@dataclass(frozen=True)
class EventText:
    line: str
    details: tuple[str, ...] = ()
    live: bool = True  # shown on the terminal as it happens
    nested: bool = False  # belongs to the step above it (indented on the terminal)


Data = Mapping[str, Any]


def _lines(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else ()


def _run_started(d: Data) -> EventText:
    inputs = d.get("inputs")
    given = tuple(f"input {name} = {value}" for name, value in inputs.items()) if isinstance(inputs, Mapping) else ()
    return EventText(f"run {d.get('run_id')}: {d.get('runbook')} on {d.get('cluster')} "
                     f"({d.get('mode')}{', simulated' if d.get('simulated') else ''})", given)


def _run_resumed(d: Data) -> EventText:
    flight = f" (step {d['in_flight']} was in flight)" if d.get("in_flight") else ""
    return EventText(f"resuming run {d.get('run_id')} at {d.get('state')}{flight}")


def _lock(d: Data) -> EventText:
    if not d.get("previous"):
        return EventText(f"lock taken: {d.get('lock')}", live=False)
    return EventText(f"lock: {d.get('text')} (was {d.get('previous')})")


def _step_started(d: Data) -> EventText:
    statements = _lines(d.get("statements")) if d.get("effect") == "mutate" else ()
    return EventText(f"-> {d.get('step')}: {d.get('summary', '')}", statements)


def _step_finished(d: Data) -> EventText:
    mark = "ok" if d.get("ok") else "FAILED"
    shown = not d.get("ok") or d.get("effect") in ("read", "check")
    details = (_lines(d.get("evidence")) if shown else ()) + _lines(d.get("refusal"))
    return EventText(f"{d.get('step')} {mark} [{d.get('outcome')}]: {d.get('summary', '')}", details, nested=True)


def _gate_asked(d: Data) -> EventText:
    return EventText(f"gate ({d.get('level')}) asked at {d.get('step')}: {d.get('summary', '')}", live=False, nested=True)


def _gate_answered(d: Data) -> EventText:
    why = f": {d['reason']}" if d.get("reason") else ""
    if d.get("standing"):
        return EventText(f"gate {d.get('step')}: the approval by {d.get('who')} stands (the decision is unchanged "
                         f"after observing again)", nested=True)
    return EventText(f"gate {d.get('step')}: {d.get('answer')} by {d.get('who')} ({d.get('policy')}{why})",
                     live=d.get("answer") != "stopped", nested=True)


def _plan_step(d: Data) -> EventText:
    ran = "observed" if d.get("ran") else ("WOULD RUN" if d.get("effect") == "mutate" else "would check")
    if d.get("nothing_to_do"):
        ran = "nothing to do"
    details = ((f"why: {d['reason']}",) if d.get("reason") else ()) + tuple(f"RISK: {r}" for r in _lines(d.get("risks")))
    details += _lines(d.get("statements")) + _lines(d.get("refusal"))
    return EventText(f"{d.get('step')} [{d.get('effect')}, gate: {d.get('gate')}] {ran}: {d.get('summary', '')}", details)


def _measurement(d: Data) -> EventText:
    return EventText(f"measured {d.get('name')}: {d.get('value')} {d.get('unit', '')}".rstrip(), nested=True)


def _goal_owner(d: Data) -> str:
    """A site journal checks the goals of several clusters: whose, and before whose run."""
    if "cluster" not in d:
        return ""
    before = f" (before {d['for_cluster']} starts)" if d.get("for_cluster") else ""
    how = f" [{d['how']}]" if d.get("how") else ""
    return f"{d['cluster']}{before}{how}: "


def _site_cluster(d: Data) -> EventText:
    runbook = f" {d['runbook']}" if d.get("runbook") else ""
    where = f" [{d['run_dir']}]" if d.get("run_dir") and d.get("phase") in ("started", "resumed") else ""
    return EventText(f"{d.get('cluster')}: {d.get('phase')}{runbook}: {d.get('summary', '')}{where}")


def _drill_verdict(d: Data) -> EventText:
    objectives = d.get("objectives")
    judged = tuple(f"{o.get('label')}: {o.get('text')}" for o in objectives if isinstance(o, Mapping)) \
        if isinstance(objectives, list) else ()
    return EventText(f"drill verdict: {d.get('text', d.get('verdict', ''))}", judged, nested=True)


def _entry(d: Data) -> Data:
    found = d.get("entry")
    return found if isinstance(found, Mapping) else {}


def _change_opened(d: Data) -> EventText:
    e = _entry(d)
    before = e.get("before")
    undo = tuple(f"undo: {u}" for u in (e.get("undo"), e.get("undo_runbook")) if u)
    return EventText(f"LEDGER {d.get('id')}: {e.get('what')} (was {'not set' if before is None else before})", undo,
                     nested=True)


def _change_closed(d: Data) -> EventText:
    e = _entry(d)
    return EventText(f"ledger {d.get('id')} closed {e.get('closed_how', '')}: {e.get('what')}", nested=True)


RENDERERS: dict[Event, Callable[[Data], EventText]] = {
    Event.RUN_STARTED: _run_started,
    Event.RUN_RESUMED: _run_resumed,
    Event.LOCK_TAKEN: _lock,
    Event.LOCK_BROKEN: _lock,
    Event.LOCK_LOST: lambda d: EventText(f"LOCK LOST before step {d.get('step')}: nothing further is sent", nested=True),
    Event.STEP_STARTED: _step_started,
    Event.STATEMENT_SENT: lambda d: EventText(f"[{d.get('target')}] {d.get('text')}", live=False, nested=True),
    Event.STEP_FINISHED: _step_finished,
    Event.STEP_RECONCILED: lambda d: EventText(f"{d.get('step')}: {d.get('summary', '')}", nested=True),
    Event.STEP_INTERRUPTED: lambda d: EventText(f"{d.get('step')} INTERRUPTED (effect unknown): {d.get('summary', '')}",
                                                nested=True),
    Event.OBSERVED_AGAIN: lambda d: EventText(f"observing again from {d.get('start')}: {d.get('reason', '')}", nested=True),
    Event.DECISION_CHANGED: lambda d: EventText(f"{d.get('step')}: the decision changed: {d.get('text', '')}", nested=True),
    Event.GOAL_CHECKED: lambda d: EventText(_goal_owner(d) + f"goal {'holds' if d.get('holds') else 'DOES NOT hold'}: "
                                                             f"{d.get('summary', '')}", nested=True),
    Event.GATE_ASKED: _gate_asked,
    Event.GATE_ANSWERED: _gate_answered,
    Event.OVERRIDE: lambda d: EventText(f"OVERRIDE by {d.get('who')} at {d.get('step')}: risk accepted: {d.get('risk')}",
                                        nested=True),
    Event.PLAN_STEP: _plan_step,
    Event.MEASUREMENT: _measurement,
    Event.NOTE: lambda d: EventText(f"note: {d.get('text', '')}", nested=True),
    Event.APPROVAL_GIVEN: lambda d: EventText(
        f"{d.get('step')}: approval {d.get('number')} of {d.get('needed')} by {d.get('who')} ({d.get('via')})"
        + (f": {d.get('reason')}" if d.get("reason") else ""), nested=True),
    Event.APPROVAL_REQUESTED: lambda d: EventText(f"WAITING FOR APPROVAL: {d.get('text', '')}", nested=True),
    Event.APPROVAL_REFUSED: lambda d: EventText(f"{d.get('step')}: approval REFUSED: {d.get('why', '')}", nested=True),
    Event.APPROVALS_INVALIDATED: lambda d: EventText(f"{d.get('step')}: {d.get('text', '')}", nested=True),
    Event.APPROVAL_ALONE: lambda d: EventText(f"BREAK GLASS at {d.get('step')}: passed ALONE by {d.get('who')} "
                                              f"(--alone): {d.get('reason', '')}", nested=True),
    Event.FAULT_INJECTED: lambda d: EventText(f"FAULT on {', '.join(_lines(d.get('members')) or ('?',))}: {d.get('text', '')}",
                                              nested=True),
    Event.DRILL_VERDICT: _drill_verdict,
    Event.SITE_CLUSTER: _site_cluster,
    Event.CHANGE_OPENED: _change_opened,
    Event.CHANGE_CLOSED: _change_closed,
    Event.RUN_FINISHED: lambda d: EventText(f"{d.get('end')}: {d.get('summary', '')}", live=False),
}


def describe(entry: Entry) -> EventText:
    return RENDERERS[entry.type](entry.data)

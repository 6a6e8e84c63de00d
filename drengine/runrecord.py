"""A run as people ask about it, read from its journal alone: who ran what where and when, the
span of every step (with the time its gate waited), the fault a drill injected and on which
members, its measurements and objectives, the risks accepted and by whom.

Reports (report.py) and the drill history (history.py) read runs through this one reader.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drengine.errors import DrengineError
from drengine.journal import Chain, Entry, Event, read_entries, resolve_journal, verified_chain
from drengine.objectives import Judgement


@dataclass
class StepSpan:
    """One step from when it began (the previous event: its proposal is observed then) to its
    last event. `gate_*` is the time its gate waited for an answer; `work` the stretches in which
    the action itself ran (one per attempt), so that a gate's wait or a Ctrl-C and resume in
    between is never counted as the step's own time."""

    step: str
    start: float
    end: float
    effect: str = ""
    gate_level: str | None = None
    gate_asked: float | None = None
    gate_answered: float | None = None
    gate_answer: str | None = None
    gate_who: str | None = None
    gate_reason: str = ""  # typed at the gate, or given with --reason
    work_start: float | None = None
    work: list[tuple[float, float]] = field(default_factory=list)  # its span without gate waits and stops
    # Each wait for an answer (asked again after a resume or a changed decision): a stop
    # between asking and resuming is the interruption's time, not the gate's.
    gate_waits: list[tuple[float, float]] = field(default_factory=list)
    asked_open: float | None = field(default=None, repr=False)
    ok: bool | None = None
    outcome: str | None = None
    summary: str = ""
    attempts: int = 0

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def work_seconds(self) -> float:
        """The step's own time: its attempts, without the gate's wait or an interruption."""
        return sum(max(0.0, b - a) for a, b in self.work)

    @property
    def gate_seconds(self) -> float:
        if self.gate_asked is None:
            return 0.0
        return sum(max(0.0, b - a) for a, b in self.all_gate_waits)

    @property
    def all_gate_waits(self) -> list[tuple[float, float]]:
        """The waits, with one still open (never answered) counted to the step's last event."""
        return self.gate_waits + ([(self.asked_open, self.end)] if self.asked_open is not None else [])

    @property
    def status(self) -> str:
        if self.ok is None:
            return "unfinished"
        if not self.ok:
            return "FAILED"
        return "skipped" if self.outcome == "skipped" else "ok"


@dataclass(frozen=True)
class Risk:
    """A risk someone accepted: at a gate (ordinary or dangerous) or by breaking glass."""

    step: str
    risk: str
    who: str
    how: str
    at: float
    override: bool
    alone: bool = False  # a gate the two-person rule gives to several people, passed by one (--alone)


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    members: list[str]
    text: str
    at: float
    settled_seconds: float | None


@dataclass(frozen=True)
class Measurement:
    name: str
    value: Any
    unit: str
    text: str
    data: dict[str, Any]

    def number(self) -> float | None:
        return float(self.value) if isinstance(self.value, (int, float)) and not isinstance(self.value, bool) else None


@dataclass(frozen=True)
class Canaries:
    sent: int | None
    acknowledged: int | None
    failed: int | None
    failed_before_fault: int | None
    failed_during_outage: int | None
    failed_after_recovery: int | None
    lost: int | None
    lost_keys: list[str]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    runbook_end: str
    runbook_success: bool
    runbook_summary: str
    recovered: bool
    reasons: list[str]
    objectives: list[Judgement]


@dataclass
class RunRecord:
    run_dir: Path
    entries: list[Entry]
    integrity: str
    integrity_ok: bool
    run_id: str = "?"
    runbook: str = "?"
    runbook_sha256: str = ""
    cluster: str = "?"
    kind: str = "?"
    simulated: bool = False
    mode: str = "?"
    policy: str = "?"
    operator: str = "?"
    host: str = "?"
    argv: list[str] = field(default_factory=list)
    # `--timeout STEP=SECONDS` given at the start and at each resume, in words (a postmortem asks why a step had longer).
    timeouts: list[str] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    end: str = "unfinished"
    success: bool = False
    summary: str = "the run was interrupted (resume it with `drengine run --resume RUN_DIR`)"
    left: list[str] = field(default_factory=list)  # what the goal check said is left to do
    steps: list[StepSpan] = field(default_factory=list)
    fault: Fault | None = None
    measurements: dict[str, Measurement] = field(default_factory=dict)
    verdict: Verdict | None = None
    risks: list[Risk] = field(default_factory=list)
    statements: list[tuple[str, str, str]] = field(default_factory=list)  # (step, target, text)
    notifications: list[dict[str, Any]] = field(default_factory=list)  # from notifications.jsonl, beside the journal
    restore: RunRecord | None = None  # `drill --restore`: the restore's own run, under restore/
    # (stopped, resumed): from the last event before each `run --resume` to the resume itself
    interruptions: list[tuple[float, float]] = field(default_factory=list)

    @property
    def is_drill(self) -> bool:
        return self.fault is not None or (self.mode == "drill" and "recovery_seconds" in self.measurements)

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def figure(self, name: str) -> float | None:
        m = self.measurements.get(name)
        return m.number() if m else None

    @property
    def rto(self) -> float | None:
        return self.figure("recovery_seconds")

    @property
    def lost_writes(self) -> float | None:
        return self.figure("lost_writes")

    @property
    def recovered_at(self) -> float | None:
        if self.fault is None or self.rto is None:
            return None
        return self.fault.at + self.rto

    @property
    def objectives(self) -> list[Judgement]:
        return self.verdict.objectives if self.verdict else []

    @property
    def canaries(self) -> Canaries:
        def value(name: str) -> int | None:
            n = self.figure(name)
            return None if n is None else int(n)

        failed = self.measurements.get("canaries_failed")
        extra = failed.data if failed else {}

        def part(key: str) -> int | None:
            v = extra.get(key)
            return int(v) if isinstance(v, int) else None

        lost = self.measurements.get("lost_writes")
        return Canaries(
            sent=value("canaries_sent"), acknowledged=value("canaries_acknowledged"), failed=value("canaries_failed"),
            failed_before_fault=part("before_fault"), failed_during_outage=part("during_outage"),
            failed_after_recovery=part("after_recovery"), lost=value("lost_writes"),
            lost_keys=[str(k) for k in (lost.data.get("lost") or [])] if lost else [],
        )

    @property
    def verdict_word(self) -> str:
        """PASSED/FAILED for drills; the end state for runs."""
        if self.is_drill:
            if self.finished is None:
                return "UNFINISHED"
            return "PASSED" if self.success else "FAILED"
        if self.finished is None:
            return "UNFINISHED"
        return "DONE" if self.success else self.end.upper()

    @property
    def title_word(self) -> str:
        """The headline's word: a journal that fails its hash chain is TAMPERED whatever it says."""
        return self.verdict_word if self.integrity_ok else "TAMPERED"


def _how(policy: str, reason: str, level: str, override: bool) -> str:
    """How a risk was accepted, with the reason the operator gave (a postmortem asks why)."""
    why = f': "{reason}"' if reason else ""
    if policy == "drill":
        return "approved by the drill policy (drill target)"
    if policy.startswith("interactive"):
        typed = "typed the cluster name at the terminal" if level == "dangerous" or override else "answered at the terminal"
        return typed + (f', reason{why}' if why else ", no reason given")
    return f"by flag, reason{why}" if why else "by flag, no reason given"


def read_run(run_dir: str | Path) -> RunRecord:
    """Read a run's journal (and check its chain) into a RunRecord. Damage is reported, not raised."""
    journal = resolve_journal(run_dir)
    try:
        chain = verified_chain(journal)
        integrity, ok = f"journal verified: {len(chain.entries)} events, hash chain intact", True
        integrity, ok = _anchored(journal, chain, integrity)
    except DrengineError as exc:
        integrity, ok = f"JOURNAL FAILED VERIFICATION: {exc}", False
    entries = list(read_entries(journal))
    record = RunRecord(run_dir=journal.parent, entries=entries, integrity=integrity, integrity_ok=ok,
                       notifications=_notifications(journal.parent))
    _read_start_and_end(record, entries)
    if (journal.parent / "restore" / "journal.jsonl").is_file():
        record.restore = read_run(journal.parent / "restore")
    record.steps = _spans(entries)
    record.interruptions = [(entries[i - 1].ts, e.ts) for i, e in enumerate(entries) if e.type is Event.RUN_RESUMED and i > 0]
    record.risks = _risks(entries)
    for e in entries:
        d = e.data
        if e.type is Event.MEASUREMENT:
            record.measurements[str(d.get("name"))] = Measurement(
                str(d.get("name")), d.get("value"), str(d.get("unit", "")), str(d.get("text", "")), d)
        elif e.type is Event.FAULT_INJECTED:
            record.fault = Fault(str(d.get("fault", "?")), str(d.get("description", "")),
                                 [str(m) for m in d.get("members") or []], str(d.get("text", "")),
                                 float(d.get("at") or e.ts), None)
        elif e.type is Event.NOTE and "settled_seconds" in d and record.fault is not None:
            s = d.get("settled_seconds")
            record.fault = Fault(record.fault.name, record.fault.description, record.fault.members, record.fault.text,
                                 record.fault.at, float(s) if isinstance(s, (int, float)) else None)
        elif e.type is Event.DRILL_VERDICT:
            record.verdict = Verdict(
                passed=d.get("verdict") == "passed", runbook_end=str(d.get("runbook_end", "")),
                runbook_success=bool(d.get("runbook_success")), runbook_summary=str(d.get("runbook_summary", "")),
                recovered=bool(d.get("recovered")), reasons=[str(r) for r in d.get("reasons") or []],
                objectives=[Judgement.from_dict(o) for o in d.get("objectives") or []],
            )
        elif e.type is Event.STATEMENT_SENT:
            record.statements.append((str(d.get("step", "")), str(d.get("target", "")), str(d.get("text", ""))))
    return record


def _anchored(journal: Path, chain: Chain, integrity: str) -> tuple[str, bool]:
    """The integrity line with the comparison against the head the run registry kept (drengine/anchor.py)."""
    from drengine.anchor import anchor_words

    check = anchor_words(journal, chain)
    if not check.ok:
        return f"JOURNAL FAILED VERIFICATION: {check.text}", False
    return f"{integrity}; {check.text}", True


def _notifications(run_dir: Path) -> list[dict[str, Any]]:
    """Who was told what, from the notifier's ledger (notifications sent as the run ended cannot be
    in the journal: nothing is journaled after the end)."""
    import json

    ledger = run_dir / "notifications.jsonl"
    if not ledger.is_file():
        return []
    out = []
    for line in ledger.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash: the others still tell
        if isinstance(item, dict):
            out.append(item)
    return out


def _read_start_and_end(record: RunRecord, entries: list[Entry]) -> None:
    start = next((e for e in entries if e.type is Event.RUN_STARTED), None)
    if start is not None:
        d = start.data
        record.run_id = str(d.get("run_id", "?"))
        record.runbook = str(d.get("runbook", "?"))
        record.runbook_sha256 = str(d.get("runbook_sha256", ""))
        record.cluster = str(d.get("cluster", "?"))
        record.kind = str(d.get("kind", "?"))
        record.simulated = bool(d.get("simulated"))
        record.mode = str(d.get("mode", "?"))
        record.policy = str(d.get("policy", "?"))
        record.operator = str(d.get("operator", "?"))
        record.host = str(d.get("host", "?"))
        record.argv = [str(a) for a in d.get("argv") or []]
        record.started = start.ts
    for e in entries:
        if e.type in (Event.RUN_STARTED, Event.RUN_RESUMED):
            when = "when the run started" if e.type is Event.RUN_STARTED else f"at the resume of {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(e.ts))}"
            record.timeouts += [f"{step}: {float(value):g} s (--timeout, given {when})"
                                for step, value in (e.data.get("timeouts") or {}).items()]
    finish = [e for e in entries if e.type is Event.RUN_FINISHED]
    if finish:
        f = finish[-1]
        record.finished = f.ts
        record.end = str(f.data.get("end", "?"))
        record.success = bool(f.data.get("success"))
        record.summary = str(f.data.get("summary", ""))
        record.left = [str(item) for item in f.data.get("left") or []]


def _spans(entries: list[Entry]) -> list[StepSpan]:
    """One span per step, in the order steps first appear. A step begins right after the event
    before its first one: the engine observes and proposes in that gap."""
    spans: dict[str, StepSpan] = {}
    stops: list[tuple[float, float]] = []
    previous_ts: float | None = None
    for e in entries:
        step = e.data.get("step")
        stepwise = e.type in (Event.GATE_ASKED, Event.GATE_ANSWERED, Event.STEP_STARTED, Event.STEP_FINISHED,
                              Event.STEP_RECONCILED, Event.STEP_INTERRUPTED, Event.OVERRIDE)
        if e.type is Event.RUN_RESUMED and previous_ts is not None:
            stops.append((previous_ts, e.ts))
            for open_span in spans.values():
                if open_span.asked_open is not None:  # asked, then the run stopped: the wait ended there
                    open_span.gate_waits.append((open_span.asked_open, previous_ts))
                    open_span.asked_open = None
        if stepwise and isinstance(step, str) and step:
            span = spans.get(step)
            if span is None:
                span = spans[step] = StepSpan(step=step, start=previous_ts if previous_ts is not None else e.ts, end=e.ts)
            span.end = max(span.end, e.ts)
            _apply(span, e)
        previous_ts = e.ts
    for span in spans.values():
        # The step's own time (observing, proposing, acting, verifying) is its span without the
        # waits for an answer and without a stop until resume: neither is the step at work.
        span.work = _without([(span.start, span.end)], [*span.all_gate_waits, *stops])
    return list(spans.values())


def _without(segments: list[tuple[float, float]], holes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    for h0, h1 in holes:
        cut: list[tuple[float, float]] = []
        for a, b in segments:
            if h1 <= a or h0 >= b:
                cut.append((a, b))
                continue
            if a < h0:
                cut.append((a, h0))
            if h1 < b:
                cut.append((h1, b))
        segments = cut
    return segments


def _apply(span: StepSpan, e: Entry) -> None:
    d = e.data
    if e.type is Event.GATE_ASKED:
        if span.gate_asked is None:
            span.gate_asked, span.gate_level = e.ts, str(d.get("level", ""))
        span.asked_open = span.asked_open if span.asked_open is not None else e.ts
    elif e.type is Event.GATE_ANSWERED:
        span.gate_answered, span.gate_answer, span.gate_who = e.ts, str(d.get("answer", "")), str(d.get("who", ""))
        if span.asked_open is not None:
            span.gate_waits.append((span.asked_open, e.ts))
            span.asked_open = None
        span.gate_reason = str(d.get("reason") or span.gate_reason)
    elif e.type is Event.STEP_STARTED:
        span.work_start = span.work_start if span.work_start is not None else e.ts
        span.effect = str(d.get("effect", span.effect))
    elif e.type is Event.STEP_FINISHED:
        span.ok, span.outcome, span.summary = bool(d.get("ok")), str(d.get("outcome", "")), str(d.get("summary", ""))
        span.attempts = max(span.attempts, int(d.get("attempt") or 1))
        span.effect = str(d.get("effect") or span.effect)


def _risks(entries: list[Entry]) -> list[Risk]:
    risks: list[Risk] = []
    asked: dict[str, Entry] = {}
    answered: dict[str, Entry] = {}
    approvals: dict[str, list[Entry]] = {}  # the two-person rule: each person's approval of the gate asked last
    for e in entries:
        d = e.data
        if e.type is Event.GATE_ASKED:
            asked[str(d.get("step"))] = e
            if not d.get("recheck"):
                approvals[str(d.get("step"))] = []
        elif e.type in (Event.APPROVAL_GIVEN, Event.APPROVAL_ALONE):
            approvals.setdefault(str(d.get("step")), []).append(e)
        elif e.type is Event.GATE_ANSWERED:
            answered[str(d.get("step"))] = e
        if e.type is Event.GATE_ANSWERED and d.get("answer") == "proceed":
            question = asked.get(str(d.get("step")))
            if question is None or question.data.get("override"):
                continue  # an override is listed from its own event, with the risk it names
            level = str(question.data.get("level", ""))
            how = _how(str(d.get("policy", "")), str(d.get("reason", "") or ""), level, False)
            people = approvals.get(str(d.get("step"))) or []
            if people:
                how = _people_words(people)
            alone = any(p.type is Event.APPROVAL_ALONE for p in people)
            for risk in question.data.get("risks") or []:
                if any(r.step == d.get("step") and r.risk == risk and r.who == d.get("who") for r in risks):
                    continue  # the same approval standing after the cluster was observed again
                risks.append(Risk(str(d.get("step")), str(risk), str(d.get("who", "?")), how, e.ts, False, alone))
        elif e.type is Event.OVERRIDE:
            answer = answered.get(str(d.get("step")))
            policy = str(answer.data.get("policy", "")) if answer else ""
            risks.append(Risk(str(d.get("step")), str(d.get("risk", "")), str(d.get("who", "?")),
                              "break glass: " + _how(policy, str(d.get("reason", "")), "dangerous", True), e.ts, True))
    return risks


def _people_words(people: list[Entry]) -> str:
    """How a gate under the two-person rule was passed: each person, how, when and why; or alone."""
    import time as _time

    def at(e: Entry) -> str:
        return _time.strftime("%H:%M:%S UTC", _time.gmtime(float(e.data.get("when") or e.ts)))

    alone = [p for p in people if p.type is Event.APPROVAL_ALONE]
    if alone:
        d = alone[-1].data
        return (f"BREAK GLASS: approved ALONE (--alone) by {d.get('who')} where the inventory asks {d.get('needed')} "
                f'people, reason: "{d.get("reason", "")}"')
    said = [f"{p.data.get('who')} ({p.data.get('via')}, {at(p)}, "
            + (f'reason: "{p.data.get("reason")}")' if p.data.get("reason") else "no reason given)") for p in people]
    return f"two-person rule: {len(people)} people approved: " + "; ".join(said)


def find_runs(root: Path) -> list[Path]:
    """Run directories directly under `root` (or `root` itself), oldest first by name (run ids start with the time)."""
    root = Path(root)
    if (root / "journal.jsonl").is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "journal.jsonl").is_file())


def drill_runs(root: Path) -> list[RunRecord]:
    """Every drill under `root`, oldest first (a restore run under a drill is not a drill of its own)."""
    records = []
    for run_dir in find_runs(root):
        try:
            record = read_run(run_dir)
        except DrengineError:
            continue  # an unreadable journal is not a drill to chart; `journal verify` explains it
        if record.is_drill and record.started is not None:
            records.append(record)
    records.sort(key=lambda r: r.started or 0.0)
    return records

"""Reports written from a run's journal alone: Markdown and a self-contained HTML page for
people, JUnit XML for CI, Prometheus text for monitoring.

A report answers what the person who reads it asks: did it pass, against which objective and
by how much; when (UTC and local), by whom, from which host; which fault on which member; how
long each step took and how long its gate waited; what the canaries saw; which risks were
accepted and by whom. Figures are explained in words next to their objective.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from drengine.errors import InputError
from drengine.events import describe
from drengine.files import atomic_write
from drengine.journal import Entry, Event
from drengine.objectives import Judgement
from drengine.runrecord import RunRecord, StepSpan, read_run

TEMPLATES = Path(__file__).parent / "templates"
SIMULATED_TIME = ("SIMULATED: the cluster was drengine's simulator; times are the simulator's and the engine's, "
                  "not those of a real recovery (no network, no disks, no server start-up)")
FORMATS = {"md": "report.md", "html": "report.html", "junit": "junit.xml", "prom": "drill.prom"}


# -- words shared by every format ---------------------------------------------------------------------

def utc(ts: float | None) -> str:
    return "?" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def local(ts: float | None) -> str:
    """Local time of the host writing the report (the drill's own host when written by `drill`)."""
    if ts is None:
        return "?"
    lt = time.localtime(ts)
    offset = lt.tm_gmtoff or 0
    sign = "+" if offset >= 0 else "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", lt) + f" {lt.tm_zone} (UTC{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d})"


def seconds(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def headline(record: RunRecord) -> str:
    what = "Drill" if record.is_drill else "Run"
    return f"{what} {record.title_word}: {record.runbook} on {record.cluster}"


def simulated_words(record: RunRecord) -> str:
    """A simulated cluster's times are the simulator's, not a real recovery's: a report says so
    next to every figure a reader could take for a measured RTO."""
    return SIMULATED_TIME if record.simulated else ""


def tampered_words(record: RunRecord) -> str:
    if record.integrity_ok:
        return ""
    return (f"TAMPERED: {record.integrity}. Nothing below can be trusted as what happened: "
            f"compare with a copy of the journal kept elsewhere (`drengine journal verify` names the first bad line)")


def verdict_reasons(record: RunRecord) -> list[str]:
    """Why it passed or failed, most important first; then what is left to do."""
    warnings = [w for w in (tampered_words(record), simulated_words(record)) if w]
    return warnings + _verdict_reasons(record)


def _verdict_reasons(record: RunRecord) -> list[str]:
    left = [f"left to do: {item}" for item in record.left]
    if record.verdict is not None:
        if record.verdict.passed:
            return [f"the runbook succeeded ({record.verdict.runbook_end}) and every objective set was met"]
        return (record.verdict.reasons or [record.summary]) + left
    return [record.summary] + left


def fault_words(record: RunRecord) -> str:
    if record.fault is None:
        return ""
    members = ", ".join(record.fault.members) if record.fault.members else "a member the drill kit did not name"
    settled = (f"; the cluster showed it after {seconds(record.fault.settled_seconds)}"
               if record.fault.settled_seconds is not None else "")
    return f"{record.fault.name} on {members}: {record.fault.description}{settled}"


def restore_words(record: RunRecord) -> str:
    r = record.restore
    if r is None:
        return ""
    state = "done" if r.success else ("unfinished" if r.finished is None else "FAILED")
    took = r.figure("restore_seconds")
    return f"{state}: {r.runbook}: {r.summary}" + (f" (took {seconds(took)}; journal restore/)" if took is not None else "")


def canary_lines(record: RunRecord) -> list[tuple[str, str, str]]:
    """(what, how many, what it means) for each canary figure."""
    c = record.canaries
    rows: list[tuple[str, str, str]] = []

    def n(value: int | None) -> str:
        return "?" if value is None else str(value)

    how = "one at each journal event (simulator)" if record.simulated else "at a steady rate"
    rows.append(("sent", n(c.sent), f"canary writes attempted, {how}, before, during and after the outage"))
    rows.append(("acknowledged", n(c.acknowledged), "writes the cluster confirmed: an application would count them as stored"))
    rows.append(("failed during the outage", n(c.failed_during_outage),
                 "writes refused or unanswered between the fault and the first acknowledged write after it: "
                 "what an application saw fail while the cluster was down; expected, and not lost (never confirmed)"))
    outside = None if c.failed_before_fault is None or c.failed_after_recovery is None else \
        c.failed_before_fault + c.failed_after_recovery
    rows.append(("failed outside the outage", n(outside),
                 "writes refused before the fault or after the recovery: should be 0; otherwise the cluster "
                 "was not fully serving"))
    rows.append(("lost", n(c.lost), "acknowledged writes missing after the recovery: the data an application would have lost"
                 + (f" ({', '.join(c.lost_keys[:5])}{', ...' if len(c.lost_keys) > 5 else ''})" if c.lost_keys else "")))
    return rows


def objective_row(j: Judgement) -> dict[str, str]:
    def fmt(value: float | None) -> str:
        if value is None:
            return "never" if j.name == "rto" else "?"
        return seconds(value) if j.unit == "s" else f"{int(value)}"

    result = {True: "met", False: "MISSED", None: "no objective"}[j.met]
    if j.met is False and j.by is not None:
        result += f" by {fmt(j.by)}"
    return {"name": j.name, "label": j.label, "measured": fmt(j.measured),
            "target": "not set" if j.target is None else fmt(j.target), "result": result,
            "state": {True: "met", False: "missed", None: "unset"}[j.met], "text": j.text}


def step_rows(record: RunRecord) -> list[dict[str, str]]:
    origin = record.fault.at if record.fault else (record.started or 0.0)
    rows = []
    for s in record.steps:
        reason = f'; reason: "{s.gate_reason}"' if s.gate_reason else ""
        rows.append({"step": s.step, "began": f"{s.start - origin:+.3f} s", "took": seconds(s.work_seconds),
                     "gate": (f"{seconds(s.gate_seconds)} ({s.gate_level}, {s.gate_answer or 'no answer'}"
                              f"{' by ' + s.gate_who if s.gate_who else ''}{reason})") if s.gate_asked is not None else "none",
                     "status": s.status, "summary": s.summary,
                     "attempts": str(s.attempts) if s.attempts > 1 else ""})
    return rows


# -- one line per journal event ------------------------------------------------------------------------

def _detail(e: Entry) -> str:
    """The event in the words the terminal uses too (drengine.events)."""
    return describe(e).line.replace("\n", " ")


def event_rows(record: RunRecord) -> list[dict[str, str]]:
    t0 = record.entries[0].ts if record.entries else 0.0
    return [{"t": f"{e.ts - t0:.3f}", "type": e.type.value, "step": str(e.data.get("step", "")), "detail": _detail(e)}
            for e in record.entries]


# -- Markdown ------------------------------------------------------------------------------------------

def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _text_bars(record: RunRecord, width: int = 48) -> list[str]:
    """The timeline as text: per step `#` where it worked, `:` where its gate waited (not its
    own time); a row `~` for each time the run was stopped and resumed."""
    rows: list[tuple[str, list[tuple[float, float, str]], str]] = []
    if record.fault is not None:
        end = record.recovered_at if record.recovered_at is not None else max([s.end for s in record.steps] or [record.fault.at])
        rows.append(("outage", [(record.fault.at, end, "#")], seconds(end - record.fault.at)))
    for s in record.steps:
        marks = [(a, b, "#") for a, b in s.work]
        marks[:0] = [(a, b, ":") for a, b in s.all_gate_waits]
        words = seconds(s.work_seconds) + (f" + gate {seconds(s.gate_seconds)}" if s.gate_asked is not None else "")
        rows.append((s.step, marks or [(s.start, s.end, "#")], words))
    for stopped, resumed in record.interruptions:
        rows.append(("(stopped)", [(stopped, resumed, "~")], f"{seconds(resumed - stopped)} until resumed"))
    times = [t for _, marks, _ in rows for a, b, _ in marks for t in (a, b)]
    if not times:
        return []
    t0, t1 = min(times), max(times)
    scale = width / max(t1 - t0, 1e-9)
    name_width = max(len(n) for n, *_ in rows)
    lines = []
    for name, marks, words in rows:
        cells = [" "] * width
        for a, b, mark in marks:
            lo = min(int((a - t0) * scale), width - 1)
            for i in range(lo, min(max(lo + 1, int(round((b - t0) * scale))), width)):
                cells[i] = mark
        lines.append(f"{name:<{name_width}} |{''.join(cells)}| {words}")
    return lines


def interruption_lines(record: RunRecord) -> list[str]:
    return [f"stopped at {utc(stopped)}, resumed at {utc(resumed)}: {seconds(resumed - stopped)} in between, "
            f"counted in no step" for stopped, resumed in record.interruptions]


def markdown(run_dir: Path) -> str:
    record = read_run(run_dir)
    lines = [f"# {headline(record)}", ""]
    lines += [f"**{_md(r)}**" for r in verdict_reasons(record)] + [""]
    lines += ["| | |", "|---|---|"]
    lines += [f"| started | {utc(record.started)} (local {local(record.started)}) |",
              f"| took | {seconds(record.seconds)} |",
              f"| operator | {_md(record.operator)}, on host {_md(record.host)} |"]
    if record.fault:
        lines.append(f"| fault | {_md(fault_words(record))} |")
    lines += [f"| runbook | `{record.runbook}` (sha256 {record.runbook_sha256[:12]}) |",
              f"| cluster | `{record.cluster}` ({record.kind}{', simulated' if record.simulated else ''}) |",
              f"| mode | {record.mode}, gates answered by the {record.policy} policy |",
              *([f"| timeouts given | {_md('; '.join(record.timeouts))} |"] if record.timeouts else []),
              *([f"| time | {_md(simulated_words(record))} |"] if record.simulated else []),
              f"| result | {_md(record.end)}: {_md(record.summary)} |",
              *([f"| restore | {_md(restore_words(record))} |"] if record.restore else []),
              f"| run | `{record.run_id}`; {record.integrity} |", ""]
    if record.objectives:
        lines += ["## Objectives", "", "| figure | measured | objective | result |", "|---|---|---|---|"]
        rows = [objective_row(j) for j in record.objectives]
        lines += [f"| {r['label']} | {r['measured']} | {r['target']} | **{r['result']}** |" for r in rows]
        lines += [""] + [f"- **{r['label']}**: {_md(r['text'])}" for r in rows] + [""]
    if record.is_drill:
        lines += ["## Canaries", "", "| canary writes | count | meaning |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {_md(c)} |" for a, b, c in canary_lines(record)] + [""]
    if record.steps:
        lines += ["## Steps", "", "| step | began | took | gate waited | result | summary |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['step']} | {r['began']} | {r['took']} | {_md(r['gate'])} | {r['status']} | {_md(r['summary'])} |"
                  for r in step_rows(record)]
        origin = "the fault" if record.fault else "the start of the run"
        lines += [""] + [f"- {_md(line)}" for line in interruption_lines(record)]
        lines += ["", f"Timeline (times from {origin}; `#` the step at work, `:` its gate waiting, `~` the run stopped"
                  f" until resumed; `took` is the step's own time, without its gate):", "", "```"]
        lines += _text_bars(record) + ["```", ""]
    lines += ["## Risks accepted", ""]
    lines += [f"- {r.step}: {_md(r.risk)} (accepted by {r.who}, {_md(r.how)}{'; OVERRIDE' if r.override else ''}"
              f"{'; **ALONE: two-person rule broken**' if r.alone else ''})" for r in record.risks] or ["- none"]
    lines += _left_changed(run_dir, record.run_id)
    if record.notifications:
        lines += ["", "## Notifications", "", "| webhook | event | result | detail |", "|---|---|---|---|"]
        lines += [f"| {_md(n.get('target', '?'))} | {_md(n.get('event', '?'))} | {'sent' if n.get('ok') else 'FAILED'} | "
                  f"{_md(n.get('detail', ''))} |" for n in record.notifications]
    if record.statements:
        lines += ["", "## Statements sent", "", "```"]
        lines += [f"[{target}] {text}" for _, target, text in record.statements] + ["```"]
    lines += ["", "## Journal", "", "| t (s) | event | step | detail |", "|---|---|---|---|"]
    lines += [f"| {r['t']} | {r['type']} | {r['step']} | {_md(r['detail'])} |" for r in event_rows(record)]
    return "\n".join(lines) + "\n"


def _left_changed(run_dir: Path, run_id: str) -> list[str]:
    """The change-ledger entries the run opened that its journal leaves open, with their undo."""
    from drengine.journal import read_entries
    from drengine.ledger import fold, open_entries

    left = [e for e in open_entries(fold(read_entries(Path(run_dir) / "journal.jsonl"))) if e.run_id == run_id]
    if not left:
        return []
    lines = ["", "## Left changed (open in the change ledger)", ""]
    for e in left:
        lines.append(f"- `{e.id}` {_md(e.what)} (was {_md(e.before or 'not set')}; step {e.step}, approved by "
                     f"{_md(e.approved_by)})" + "".join(f"<br>{_md(u)}" for u in e.undo_lines()))
    return lines + ["", "Another run or `drengine changes close` may have closed them since: `drengine changes` "
                        "reads the run registry."]


def write_markdown(run_dir: Path) -> Path:
    out = Path(run_dir) / "report.md"
    atomic_write(out, markdown(Path(run_dir)))
    return out


# -- HTML ----------------------------------------------------------------------------------------------

def templates() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def html(run_dir: Path) -> str:
    from markupsafe import Markup

    from drengine.charts import timeline_svg

    record = read_run(run_dir)
    return str(templates().get_template("report.html.j2").render(
        r=record, title=headline(record), reasons=verdict_reasons(record),
        verdict_class=("failed" if not record.integrity_ok else "passed" if record.success
                       else ("unfinished" if record.finished is None else "failed")),
        started_utc=utc(record.started), started_local=local(record.started), took=seconds(record.seconds),
        fault=fault_words(record), restore=restore_words(record), objectives=[objective_row(j) for j in record.objectives],
        canaries=canary_lines(record) if record.is_drill else [], steps=step_rows(record),
        timeline=Markup(timeline_svg(record)), events=event_rows(record), interruptions=interruption_lines(record),
        simulated=simulated_words(record), tampered=tampered_words(record),
        generated=utc(time.time()),
    ))


# -- JUnit XML -----------------------------------------------------------------------------------------

def junit(run_dir: Path) -> str:
    """One test case per step (the last attempt counts), one per objective set, the run as the suite."""
    import xml.etree.ElementTree as ET

    record = read_run(run_dir)
    cases: list[ET.Element] = []
    for s in record.steps:
        if s.ok is None:
            continue
        case = ET.Element("testcase", name=s.step, classname=record.runbook, time=f"{s.work_seconds:.3f}")
        if not s.ok:
            failure = ET.SubElement(case, "failure", message=s.summary[:500], type="StepFailed")
            failure.text = _step_evidence(record, s)
        elif s.outcome == "skipped":
            ET.SubElement(case, "skipped", message=s.summary)
        cases.append(case)
    for j in record.objectives:
        if j.target is None:
            continue
        case = ET.Element("testcase", name=f"objective {j.name}", classname=f"{record.runbook}.objectives", time="0")
        if j.met is False:
            row = objective_row(j)
            ET.SubElement(case, "failure", type="ObjectiveMissed",
                          message=f"{j.label}: measured {row['measured']}, objective {row['target']}: {row['result']}"
                          ).text = j.text
        else:
            ET.SubElement(case, "system-out").text = j.text
        cases.append(case)
    if not record.integrity_ok:
        case = ET.Element("testcase", name="journal integrity", classname="drill" if record.is_drill else "run", time="0")
        ET.SubElement(case, "failure", message=record.integrity[:500], type="JournalTampered").text = tampered_words(record)
        cases.append(case)
    if record.finished is not None and not record.success and not any(c.find("failure") is not None for c in cases):
        case = ET.Element("testcase", name="recovery", classname="drill" if record.is_drill else "run", time="0")
        ET.SubElement(case, "failure", message="; ".join(verdict_reasons(record))[:500], type="DrillFailed").text = record.summary
        cases.append(case)
    suite = ET.Element(
        "testsuite", name=f"{record.runbook} on {record.cluster}", tests=str(len(cases)),
        failures=str(sum(1 for c in cases if c.find("failure") is not None)), errors="0",
        skipped=str(sum(1 for c in cases if c.find("skipped") is not None)),
        time=f"{record.seconds or 0.0:.3f}", timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.started or 0)),
        hostname=record.host,
    )
    props = ET.SubElement(suite, "properties")
    for name, m in record.measurements.items():
        ET.SubElement(props, "property", name=name, value=str(m.value))
    for j in record.objectives:
        if j.target is not None:
            ET.SubElement(props, "property", name=f"objective_{j.name}", value=f"{j.target:g}")
    if record.fault:
        ET.SubElement(props, "property", name="fault", value=record.fault.name)
        ET.SubElement(props, "property", name="fault_members", value=",".join(record.fault.members))
    ET.SubElement(props, "property", name="operator", value=record.operator)
    ET.SubElement(props, "property", name="result", value=record.end)
    ET.SubElement(props, "property", name="verdict", value=record.title_word)
    ET.SubElement(props, "property", name="simulated", value="true" if record.simulated else "false")
    suite.extend(cases)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _step_evidence(record: RunRecord, span: StepSpan) -> str:
    finished = [e for e in record.entries if e.type is Event.STEP_FINISHED and e.data.get("step") == span.step]
    evidence = finished[-1].data.get("evidence") or [] if finished else []
    return "\n".join([span.summary, *map(str, evidence)])


# -- Prometheus text -----------------------------------------------------------------------------------

def prometheus(run_dir: Path) -> str:
    """Text exposition for the node-exporter textfile collector, built with prometheus_client:
    each measurement with its objective beside it, and which objective was missed by how much."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    record = read_run(run_dir)
    if not record.is_drill:
        raise InputError(f"{run_dir}: run {record.run_id} is a {record.mode}, not a drill; the Prometheus text "
                         f"(drengine_drill_*) is written for drills only: choose --format md, html or junit")
    labels = {"cluster": record.cluster, "runbook": record.runbook, "fault": record.fault.name if record.fault else ""}
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float, **extra: str) -> None:
        g = Gauge(name, doc, [*labels, *extra], registry=registry)
        g.labels(**labels, **extra).set(value)

    def number(value: float | None) -> float:
        return float("nan") if value is None else float(value)

    gauge("drengine_drill_success", "1 when the last drill passed (runbook succeeded and every objective met), else 0",
          1.0 if record.success and record.integrity_ok else 0.0)
    gauge("drengine_drill_recovery_seconds", "Seconds from the fault to the first acknowledged write (NaN: never)",
          number(record.rto))
    gauge("drengine_drill_lost_writes", "Acknowledged canary writes missing after recovery", number(record.lost_writes))
    by_name = {j.name: j for j in record.objectives}
    rto, lost = by_name.get("rto"), by_name.get("lost_writes")
    if rto is not None and rto.target is not None:
        gauge("drengine_drill_recovery_objective_seconds", "The recovery-time objective (RTO) of the drill", rto.target)
        gauge("drengine_drill_recovery_over_objective_seconds",
              "Seconds the recovery took beyond its objective (negative: to spare; NaN: never recovered)",
              number(None if rto.measured is None else rto.measured - rto.target))
    if lost is not None and lost.target is not None:
        gauge("drengine_drill_lost_writes_objective", "The most acknowledged writes the drill may lose", lost.target)
        gauge("drengine_drill_lost_writes_over_objective", "Lost writes beyond the objective (negative: within it)",
              number(None if lost.measured is None else lost.measured - lost.target))
    set_objectives = [j for j in record.objectives if j.target is not None]
    if set_objectives:
        g = Gauge("drengine_drill_objective_met", "1 when the objective was met, 0 when it was missed",
                  [*labels, "objective"], registry=registry)
        for j in set_objectives:
            g.labels(**labels, objective=j.name).set(1.0 if j.met else 0.0)
    c = record.canaries
    counts = {"sent": c.sent, "acknowledged": c.acknowledged, "failed_during_outage": c.failed_during_outage, "lost": c.lost}
    if any(v is not None for v in counts.values()):
        g = Gauge("drengine_drill_canary_writes", "Canary writes of the drill by what became of them",
                  [*labels, "outcome"], registry=registry)
        for outcome, value in counts.items():
            g.labels(**labels, outcome=outcome).set(number(value))
    gauge("drengine_drill_last_run_timestamp_seconds", "When the last drill finished (Unix time)",
          record.finished or record.started or 0.0)
    return generate_latest(registry).decode()


# -- all of them ---------------------------------------------------------------------------------------

def render(run_dir: Path, fmt: str) -> str:
    return {"md": markdown, "html": html, "junit": junit, "prom": prometheus}[fmt](Path(run_dir))


def write_all(run_dir: Path, textfile: Path | None = None) -> list[Path]:
    """Every report of a run, next to its journal (and the Prometheus text where asked)."""
    run_dir = Path(run_dir)
    outputs = {run_dir / name: render(run_dir, fmt) for fmt, name in FORMATS.items()}
    if textfile is not None:
        outputs[textfile] = outputs[run_dir / FORMATS["prom"]]
    paths = []
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)  # the textfile collector must never read half a file
        paths.append(path)
    return paths

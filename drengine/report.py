"""Reports written from a run's journal alone."""

from __future__ import annotations

import time
from pathlib import Path

from drengine.journal import Entry, Event, read_entries, resolve_journal, verify


def _when(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}"


def markdown(run_dir: Path) -> str:
    journal = resolve_journal(run_dir)
    try:
        count = verify(journal)
        integrity = f"journal verified: {count} events, hash chain intact"
    except Exception as exc:  # noqa: BLE001 - the report says so instead of failing
        integrity = f"JOURNAL FAILED VERIFICATION: {exc}"
    entries = list(read_entries(journal))
    start = next((e for e in entries if e.type is Event.RUN_STARTED), None)
    finish = [e for e in entries if e.type is Event.RUN_FINISHED]
    lines = [f"# drengine run {start.data['run_id'] if start else '?'}", ""]
    if start:
        d = start.data
        lines += [
            f"- runbook: `{d['runbook']}` (sha256 {d['runbook_sha256'][:12]})",
            f"- cluster: `{d['cluster']}` ({d['kind']}{', simulated' if d['simulated'] else ''})",
            f"- mode: {d['mode']}, gate policy: {d['policy']}",
            f"- operator: {d['operator']}, started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(start.ts))}",
        ]
    if finish:
        f = finish[-1].data
        took = finish[-1].ts - start.ts if start else 0.0
        lines.append(f"- result: **{'success' if f['success'] else f['end']}** after {took:.2f} s: {f['summary']}")
    else:
        lines.append("- result: **unfinished** (interrupted; resume with `drengine run --resume`)")
    lines += [f"- {integrity}", "", "## Timeline", "", "| time | event | step | detail |", "|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {_when(e.ts)} | {e.type.value} | {e.data.get('step', '')} | {_detail(e)} |")
    overrides = [e for e in entries if e.type is Event.OVERRIDE]
    if overrides:
        lines += ["", "## Overrides (break glass)", ""]
        lines += [f"- {e.data['step']}: by {e.data['who']}, risk accepted: {e.data['risk']}" for e in overrides]
    sent = [e for e in entries if e.type is Event.STATEMENT_SENT]
    if sent:
        lines += ["", "## Statements sent", "", "```"]
        lines += [f"[{e.data['target']}] {e.data['text']}" for e in sent]
        lines += ["```"]
    measurements = [e for e in entries if e.type is Event.MEASUREMENT]
    if measurements:
        lines += ["", "## Measurements", ""]
        lines += [f"- {e.data['name']}: {e.data['value']} {e.data.get('unit', '')}" for e in measurements]
    return "\n".join(lines) + "\n"


def _detail(e: Entry) -> str:
    d = e.data
    text = {
        Event.STEP_STARTED: lambda: d.get("summary", ""),
        Event.STEP_FINISHED: lambda: f"{'ok' if d.get('ok') else 'FAILED'} [{d.get('outcome')}]: {d.get('summary', '')}",
        Event.GATE_ANSWERED: lambda: f"{d.get('answer')} by {d.get('who')} ({d.get('policy')}) {d.get('reason', '')}",
        Event.GATE_ASKED: lambda: f"{d.get('level')}: {d.get('summary', '')}",
        Event.STATEMENT_SENT: lambda: f"[{d.get('target')}] {d.get('text')}",
        Event.PLAN_STEP: lambda: f"{'observed' if d.get('ran') else 'would run'}: {d.get('summary', '')}",
        Event.RUN_FINISHED: lambda: f"{d.get('end')}: {d.get('summary', '')}",
        Event.NOTE: lambda: d.get("text", ""),
        Event.OVERRIDE: lambda: f"by {d.get('who')}: {d.get('risk')}",
        Event.MEASUREMENT: lambda: f"{d.get('name')} = {d.get('value')} {d.get('unit', '')}",
    }.get(e.type, lambda: "")()
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_markdown(run_dir: Path) -> Path:
    out = Path(run_dir) / "report.md"
    out.write_text(markdown(Path(run_dir)))
    return out

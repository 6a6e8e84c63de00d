"""Reports written from a run's journal alone."""

from __future__ import annotations

import time
from pathlib import Path

from drengine.events import describe
from drengine.files import atomic_write
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
    return describe(e).line.replace("|", "\\|").replace("\n", " ")


def write_markdown(run_dir: Path) -> Path:
    out = Path(run_dir) / "report.md"
    atomic_write(out, markdown(Path(run_dir)))
    return out


# -- drill reports: HTML, JUnit XML, Prometheus text ------------------------------------------------

HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>drengine {{ run_id }}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 4px 6px; text-align: left; vertical-align: top; }
.ok { color: #176117; } .bad { color: #a31515; font-weight: bold; }
.bar { background: #4a78c2; height: 10px; }
</style></head>
<body>
<h1>drengine run {{ run_id }}</h1>
<p>runbook <code>{{ runbook }}</code> on <code>{{ cluster }}</code> ({{ mode }}) &mdash;
<span class="{{ 'ok' if success else 'bad' }}">{{ 'success' if success else result }}</span>: {{ summary }}</p>
<p>{{ integrity }}</p>
{% if measurements %}<h2>Measurements</h2><ul>
{% for m in measurements %}<li>{{ m.name }}: <b>{{ m.value }}</b> {{ m.unit }}</li>{% endfor %}
</ul>{% endif %}
<h2>Timeline</h2>
<table><tr><th>t (s)</th><th>event</th><th>step</th><th>detail</th><th></th></tr>
{% for e in events %}<tr><td>{{ '%.3f' % e.t }}</td><td>{{ e.type }}</td><td>{{ e.step }}</td><td>{{ e.detail }}</td>
<td style="width:20%"><div class="bar" style="width:{{ e.pct }}%"></div></td></tr>{% endfor %}
</table>
</body></html>
"""


def _run_facts(run_dir: Path) -> dict[str, object]:
    journal = resolve_journal(run_dir)
    entries = list(read_entries(journal))
    start = next((e for e in entries if e.type is Event.RUN_STARTED), None)
    finish = [e for e in entries if e.type is Event.RUN_FINISHED]
    end = finish[-1] if finish else None
    measurements = {str(e.data["name"]): e.data.get("value") for e in entries if e.type is Event.MEASUREMENT}
    return {"entries": entries, "start": start, "end": end, "measurements": measurements}


def html(run_dir: Path) -> str:
    import jinja2

    facts = _run_facts(run_dir)
    entries: list[Entry] = facts["entries"]  # type: ignore[assignment]
    start: Entry | None = facts["start"]  # type: ignore[assignment]
    end: Entry | None = facts["end"]  # type: ignore[assignment]
    t0 = entries[0].ts if entries else 0.0
    span = max((entries[-1].ts - t0) if entries else 0.0, 1e-6)
    try:
        integrity = f"journal verified: {verify(resolve_journal(run_dir))} events, hash chain intact"
    except Exception as exc:  # noqa: BLE001 - the report says so instead of failing
        integrity = f"JOURNAL FAILED VERIFICATION: {exc}"
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(HTML_TEMPLATE).render(
        run_id=start.data["run_id"] if start else "?",
        runbook=start.data["runbook"] if start else "?",
        cluster=start.data["cluster"] if start else "?",
        mode=start.data["mode"] if start else "?",
        success=bool(end and end.data["success"]),
        result=end.data["end"] if end else "unfinished",
        summary=end.data["summary"] if end else "the run was interrupted",
        integrity=integrity,
        measurements=[{"name": e.data["name"], "value": e.data.get("value"), "unit": e.data.get("unit", "")}
                      for e in entries if e.type is Event.MEASUREMENT],
        events=[{"t": e.ts - t0, "type": e.type.value, "step": e.data.get("step", ""), "detail": _detail(e),
                 "pct": round(100 * (e.ts - t0) / span, 1)} for e in entries],
    )


def junit(run_dir: Path) -> str:
    """One test case per step (the last attempt counts), the run as the suite."""
    import xml.etree.ElementTree as ET

    facts = _run_facts(run_dir)
    entries: list[Entry] = facts["entries"]  # type: ignore[assignment]
    start: Entry | None = facts["start"]  # type: ignore[assignment]
    end: Entry | None = facts["end"]  # type: ignore[assignment]
    started: dict[str, float] = {}
    cases: dict[str, ET.Element] = {}
    for e in entries:
        step = str(e.data.get("step", ""))
        if e.type is Event.STEP_STARTED or (e.type is Event.GATE_ASKED and step not in started):
            started[step] = e.ts
        if e.type is Event.STEP_FINISHED:
            case = ET.Element("testcase", name=step, classname=f"{start.data['runbook'] if start else 'run'}",
                              time=f"{max(0.0, e.ts - started.get(step, e.ts)):.3f}")
            if not e.data.get("ok"):
                failure = ET.SubElement(case, "failure", message=str(e.data.get("summary", ""))[:500], type="StepFailed")
                failure.text = "\n".join([str(e.data.get("summary", "")), *map(str, e.data.get("evidence") or [])])
            elif e.data.get("outcome") == "skipped":
                ET.SubElement(case, "skipped", message=str(e.data.get("summary", "")))
            cases[step] = case
    suite = ET.Element(
        "testsuite",
        name=f"{start.data['runbook'] if start else 'run'} on {start.data['cluster'] if start else '?'}",
        tests=str(len(cases)),
        failures=str(sum(1 for c in cases.values() if c.find("failure") is not None)),
        errors="0",
        skipped=str(sum(1 for c in cases.values() if c.find("skipped") is not None)),
        time=f"{(end.ts - start.ts) if (start and end) else 0.0:.3f}",
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start.ts if start else 0)),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in facts["measurements"].items():  # type: ignore[attr-defined]
        ET.SubElement(props, "property", name=name, value=str(value))
    if end is not None:
        ET.SubElement(props, "property", name="result", value=str(end.data["end"]))
    suite.extend(cases.values())
    if end is not None and not end.data["success"] and not any(c.find("failure") is not None for c in cases.values()):
        case = ET.SubElement(suite, "testcase", name="recovery", classname="drill", time="0")
        ET.SubElement(case, "failure", message=str(end.data["summary"])[:500], type="DrillFailed")
        suite.set("tests", str(len(cases) + 1))
        suite.set("failures", str(int(suite.get("failures", "0")) + 1))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def prometheus(run_dir: Path) -> str:
    """Text exposition for the node-exporter textfile collector, built with prometheus_client."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    facts = _run_facts(run_dir)
    start: Entry | None = facts["start"]  # type: ignore[assignment]
    end: Entry | None = facts["end"]  # type: ignore[assignment]
    measurements: dict[str, object] = facts["measurements"]  # type: ignore[assignment]
    labels = {"cluster": str(start.data["cluster"]) if start else "", "runbook": str(start.data["runbook"]) if start else ""}
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float) -> None:
        g = Gauge(name, doc, list(labels), registry=registry)
        g.labels(**labels).set(value)

    gauge("drengine_drill_success", "1 when the last drill recovered the cluster, else 0",
          1.0 if end and end.data["success"] else 0.0)
    rto = measurements.get("recovery_seconds")
    gauge("drengine_drill_recovery_seconds", "Seconds from the fault to the first acknowledged write (NaN: never)",
          float(rto) if isinstance(rto, (int, float)) else float("nan"))
    lost = measurements.get("lost_writes")
    gauge("drengine_drill_lost_writes", "Acknowledged canary writes missing after recovery",
          float(lost) if isinstance(lost, (int, float)) else float("nan"))
    gauge("drengine_drill_last_run_timestamp_seconds", "When the last drill finished (Unix time)",
          end.ts if end else (start.ts if start else 0.0))
    return generate_latest(registry).decode()


def write_all(run_dir: Path, textfile: Path | None = None) -> list[Path]:
    """Every report of a run, next to its journal (and the Prometheus text where asked)."""
    run_dir = Path(run_dir)
    outputs = {run_dir / "report.md": markdown(run_dir), run_dir / "report.html": html(run_dir),
               run_dir / "junit.xml": junit(run_dir), run_dir / "drill.prom": prometheus(run_dir)}
    if textfile is not None:
        outputs[textfile] = outputs[run_dir / "drill.prom"]
    for path, text in outputs.items():
        atomic_write(path, text)  # the textfile collector must never read half a file
    return list(outputs)

"""The report of a site drill, from its journals alone: the verdict, each cluster's recovery
time and lost writes against the objectives, and the clusters' timelines on one chart (from the
host lost to each cluster's run and its first acknowledged write), in Markdown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drengine.journal import Entry, Event, verified_entries

WIDTH = 60


@dataclass
class Timeline:
    cluster: str
    members: list[str]
    started: float | None = None  # seconds after the loss: its run began
    finished: float | None = None  # its turn ended
    recovered: float | None = None  # its first acknowledged write
    lost: int | None = None
    phase: str = ""
    runbook: str = ""


def timelines(drill_dir: Path) -> tuple[list[Entry], list[Timeline], float]:
    entries = verified_entries(drill_dir)
    faults = [e for e in entries if e.type is Event.FAULT_INJECTED]
    loss = max((float(e.data.get("at", e.ts)) for e in faults), default=entries[0].ts)
    rows: dict[str, Timeline] = {}
    for e in entries:
        cluster = e.data.get("cluster")
        if e.type is Event.MEASUREMENT and cluster:
            row = rows.setdefault(str(cluster), Timeline(str(cluster), list(e.data.get("members_lost") or [])))
            if e.data["name"] == "recovery_seconds":
                row.recovered = e.data["value"]
            elif e.data["name"] == "lost_writes":
                row.lost = e.data["value"]
    site_journal = drill_dir / "site" / "journal.jsonl"
    if site_journal.is_file():
        for e in verified_entries(drill_dir / "site"):
            if e.type is not Event.SITE_CLUSTER or str(e.data["cluster"]) not in rows:
                continue
            row = rows[str(e.data["cluster"])]
            if e.data["phase"] in ("started", "resumed"):
                row.started = round(e.ts - loss, 3)
                row.runbook = str(e.data.get("runbook", ""))
            else:
                row.finished, row.phase = round(e.ts - loss, 3), str(e.data["phase"])
    return entries, list(rows.values()), loss


def chart(rows: list[Timeline], site_rto: float | None) -> list[str]:
    """One line per cluster on one time axis: `.` waiting, `=` its recovery run, `|` writes back."""
    span = max([r for row in rows for r in (row.started, row.finished, row.recovered) if r is not None] + [1e-3])
    scale = WIDTH / span
    width = max(len(row.cluster) for row in rows) if rows else 7
    lines = [f"{'':{width}}  0 s{'':{WIDTH - 8}}{span:.1f} s"]
    for row in rows:
        bar = [" "] * (WIDTH + 1)
        begin = row.started if row.started is not None else row.finished
        for i in range(0, int((begin or 0) * scale)):
            bar[i] = "."
        if row.started is not None and row.finished is not None:
            for i in range(int(row.started * scale), int(row.finished * scale) + 1):
                bar[min(i, WIDTH)] = "="
        if row.recovered is not None:
            bar[min(int(row.recovered * scale), WIDTH)] = "|"
        shown = "never" if row.recovered is None else f"{row.recovered:g} s"
        lines.append(f"{row.cluster:{width}}  {''.join(bar)}  {shown}")
    lines.append(f"{'site':{width}}  {'-' * int((site_rto or span) * scale)}|  "
                 f"{'never' if site_rto is None else f'{site_rto:g} s'}")
    return lines


def markdown(drill_dir: Path) -> str:
    entries, rows, _ = timelines(drill_dir)
    started = next(e.data for e in entries if e.type is Event.RUN_STARTED)
    verdict: dict[str, Any] = next((e.data for e in entries if e.type is Event.DRILL_VERDICT), {})
    finished: dict[str, Any] = next((e.data for e in reversed(entries) if e.type is Event.RUN_FINISHED), {})
    site_rto = next((e.data["value"] for e in entries if e.type is Event.MEASUREMENT
                     and e.data["name"] == "site_recovery_seconds"), None)
    out = [f"# Site drill {'PASSED' if finished.get('success') else 'FAILED'}: host {started.get('lost_host')} lost "
           f"({started.get('fault')})", "", str(finished.get("summary", "")), ""]
    out += [f"- {reason}" for reason in verdict.get("reasons") or []]
    out += ["", "| cluster | lost on the host | its run | turn | recovery | lost writes |", "|---|---|---|---|---|---|"]
    for row in rows:
        out.append(f"| {row.cluster} | {', '.join(row.members) or '-'} | {row.runbook or '-'} | {row.phase or '-'} | "
                   f"{'never' if row.recovered is None else f'{row.recovered:g} s'} | "
                   f"{'unknown' if row.lost is None else row.lost} |")
    out += ["", "## Timelines (from the host lost; `.` waiting, `=` its recovery run, `|` writes again)", "", "```"]
    out += chart(rows, site_rto)
    out += ["```", "", f"The site run: `{drill_dir / 'site'}` (`drengine journal show` it); each cluster's run below it.", ""]
    return "\n".join(out)


def write_markdown(drill_dir: Path) -> Path:
    from drengine.files import atomic_write

    path = drill_dir / "report.md"
    atomic_write(path, markdown(drill_dir))
    return path

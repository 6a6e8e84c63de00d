"""The site drill's HTML report (`DRILL_DIR/report.html`), from its journals alone, as a cluster
drill has one: the verdict and its reasons; the site's recovery time against its objective;
each cluster's recovery time and lost writes against the objectives; and every cluster's
timeline on one chart (waiting for its dependencies, its recovery run, writes acknowledged
again), with the site's outage above them. Self-contained: inline SVG, no script."""

from __future__ import annotations

import time
from html import escape
from pathlib import Path
from typing import Any

from drengine.charts import AXIS, BAR, ROW, TOP, WIDTH, _axis, _label, _rect, _Scale, _value, seconds_label
from drengine.journal import Event
from drengine.objectives import Judgement, judge_rto
from drengine.site.report import Timeline, timelines


def site_timeline_svg(rows: list[Timeline], site_rto: float | None, rto_objective: float | None) -> str:
    """Time from the host lost (0 s): a first row for the site (the outage until the last cluster
    takes writes again), then one per cluster."""
    ends = [t for row in rows for t in (row.started, row.finished, row.recovered) if t is not None]
    ends += [t for t in (site_rto, rto_objective) if t is not None]
    scale = _Scale(0.0, max(ends + [1e-3]))
    height = TOP + (1 + len(rows)) * ROW + AXIS
    out = [f'<svg class="timeline site" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="The clusters\' timelines">']
    out += _axis(scale, 0.0, TOP + (1 + len(rows)) * ROW, "since the host was lost")
    words = f"writes refused somewhere for {seconds_label(site_rto)} (site RTO)" if site_rto is not None \
        else "a cluster never took writes again"
    end = site_rto if site_rto is not None else scale.t1
    out += [_label(TOP, "site", "outage-label"),
            _rect(scale.x(0), TOP, scale.x(end) - scale.x(0), "bar outage", f"site: {words}"),
            _value(scale.x(end) + 6, TOP, words)]
    for i, row in enumerate(rows, 1):
        y = TOP + i * ROW
        out.append(f'<g class="cluster" data-cluster="{escape(row.cluster)}">')
        out.append(_label(y, row.cluster, "step-label"))
        begin = row.started if row.started is not None else row.finished
        if begin:
            out.append(_rect(scale.x(0), y + 4, scale.x(begin) - scale.x(0), "bar step skipped",
                             f"{row.cluster}: waiting {seconds_label(begin)} (its dependencies, the loss to settle)",
                             height=BAR - 8))
        if row.started is not None and row.finished is not None:
            kind = "ok" if row.phase == "recovered" else "failed"
            out.append(_rect(scale.x(row.started), y, scale.x(row.finished) - scale.x(row.started), f"bar step {kind}",
                             f"{row.cluster}: {row.runbook or 'its run'} from {seconds_label(row.started)} to "
                             f"{seconds_label(row.finished)} ({row.phase})"))
        if row.recovered is not None:
            x = scale.x(row.recovered)
            out.append(f'<line class="recovered-line" x1="{x}" y1="{y - 2}" x2="{x}" y2="{y + BAR + 2}">'
                       f'<title>{escape(row.cluster)}: writes acknowledged again at {seconds_label(row.recovered)}'
                       f'</title></line>')
        shown = f"writes again at {seconds_label(row.recovered)}" if row.recovered is not None else "no write taken again"
        last = max([t for t in (row.finished, row.recovered) if t is not None] + [0.0])
        out.append(_value(scale.x(last) + 6, y, shown + (f" · lost {row.lost}" if row.lost else "")))
        out.append("</g>")
    if rto_objective is not None:
        x = scale.x(rto_objective)
        out.append(f'<line class="objective-line" x1="{x}" y1="{TOP - 14}" x2="{x}" y2="{TOP + (1 + len(rows)) * ROW}"/>')
        out.append(f'<text class="objective-label" x="{x - 3}" y="{TOP - 16}" text-anchor="end">'
                   f'site RTO objective {escape(seconds_label(rto_objective))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def html(drill_dir: Path) -> str:
    from markupsafe import Markup

    from drengine.report import objective_row, templates, utc

    entries, rows, loss = timelines(drill_dir)
    started: dict[str, Any] = next(e.data for e in entries if e.type is Event.RUN_STARTED)
    verdict: dict[str, Any] = next((e.data for e in entries if e.type is Event.DRILL_VERDICT), {})
    finished: dict[str, Any] = next((e.data for e in reversed(entries) if e.type is Event.RUN_FINISHED), {})
    objectives: dict[str, Any] = dict(started.get("objectives") or {})
    site_rto = verdict.get("site_rto")
    site_judgement = judge_rto(site_rto, objectives.get("rto"))
    clusters: dict[str, dict[str, Any]] = dict(verdict.get("clusters") or {})
    per_cluster = []
    for row in rows:
        judged = [Judgement.from_dict(j) for j in clusters.get(row.cluster, {}).get("objectives") or []]
        per_cluster.append({"row": row, "objectives": [objective_row(j) for j in judged if j.target is not None or
                                                       j.name == "rto"]})
    passed = bool(finished.get("success"))
    title = (f"Site drill {'PASSED' if passed else 'FAILED' if finished else 'UNFINISHED'}: host "
             f"{started.get('lost_host')} lost ({started.get('fault')})")
    return str(templates().get_template("site-report.html.j2").render(
        title=title, verdict_class="passed" if passed else ("failed" if finished else "unfinished"),
        summary=str(finished.get("summary", "the drill did not finish")), reasons=list(verdict.get("reasons") or []),
        started=started, started_utc=utc(entries[0].ts), loss_utc=utc(loss), site=objective_row(site_judgement),
        clusters=per_cluster, chart=Markup(site_timeline_svg(rows, site_rto, objectives.get("rto"))),
        site_run=str(drill_dir / "site"), generated=utc(time.time()),
    ))


def write_html(drill_dir: Path) -> Path:
    from drengine.files import atomic_write

    path = drill_dir / "report.html"
    atomic_write(path, html(drill_dir))
    return path

"""Drill history: past drills read from their journals, grouped per cluster, runbook and fault
(a hung primary and a killed one do not recover alike), with the recovery time and lost writes
of each drill against the median of the drills before it. A regression is flagged when the
RTO is up by more than a threshold (and by more than a floor, so that the jitter of
millisecond recoveries is not called a regression), when a drill never recovered where the
ones before it did, or when it lost more writes than they usually did.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from drengine.runrecord import RunRecord, drill_runs

MIN_EARLIER = 3  # fewer earlier drills than this make no median worth comparing with
MIN_INCREASE = 0.1  # seconds: an RTO must also be up by this much to be called a regression


@dataclass
class HistoryRow:
    run_id: str
    run_dir: Path
    started: float
    cluster: str
    runbook: str
    fault: str
    verdict: str
    rto: float | None
    lost_writes: float | None
    rto_objective: float | None
    lost_objective: float | None
    missed: list[str]
    rto_median: float | None = None
    lost_median: float | None = None
    regressions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"run_id": self.run_id, "run_dir": str(self.run_dir), "started": self.started, "cluster": self.cluster,
                "runbook": self.runbook, "fault": self.fault, "verdict": self.verdict, "rto_seconds": self.rto,
                "lost_writes": self.lost_writes, "rto_objective": self.rto_objective,
                "lost_writes_objective": self.lost_objective, "objectives_missed": self.missed,
                "rto_median_before": self.rto_median, "lost_writes_median_before": self.lost_median,
                "regressions": self.regressions}


@dataclass
class Series:
    cluster: str
    runbook: str
    fault: str
    rows: list[HistoryRow]

    @property
    def title(self) -> str:
        return f"{self.cluster} · {self.runbook} · {self.fault}"


def _row(record: RunRecord) -> HistoryRow:
    objectives = {j.name: j for j in record.objectives}
    rto, lost = objectives.get("rto"), objectives.get("lost_writes")
    return HistoryRow(
        run_id=record.run_id, run_dir=record.run_dir, started=record.started or 0.0, cluster=record.cluster,
        runbook=record.runbook, fault=record.fault.name if record.fault else "?", verdict=record.title_word,
        rto=record.rto, lost_writes=record.lost_writes, rto_objective=rto.target if rto else None,
        lost_objective=lost.target if lost else None, missed=[j.name for j in record.objectives if j.met is False],
    )


def judge_regressions(rows: list[HistoryRow], last: int, threshold: float, min_increase: float = MIN_INCREASE) -> None:
    """Compare each drill with the median of the `last` drills before it (oldest first)."""
    for i, row in enumerate(rows):
        earlier = rows[max(0, i - last):i]
        rtos = [r.rto for r in earlier if r.rto is not None]
        losts = [r.lost_writes for r in earlier if r.lost_writes is not None]
        if len(earlier) < min(MIN_EARLIER, last):
            continue
        if rtos:
            row.rto_median = statistics.median(rtos)
        if losts:
            row.lost_median = statistics.median(losts)
        if row.rto is None and rtos:
            row.regressions.append(f"never recovered, where {len(rtos)} of the last {len(earlier)} drills did")
        elif row.rto is not None and row.rto_median is not None:
            limit = row.rto_median * (1 + threshold)
            if row.rto > limit and row.rto - row.rto_median > min_increase:
                up = (row.rto / row.rto_median - 1) * 100 if row.rto_median > 0 else float("inf")
                row.regressions.append(
                    f"RTO {row.rto:.3f} s is {up:.0f}% above the median {row.rto_median:.3f} s of the last "
                    f"{len(earlier)} drills (threshold {threshold * 100:g}%)")
        if row.lost_writes is not None and row.lost_median is not None and row.lost_writes > row.lost_median:
            row.regressions.append(
                f"{row.lost_writes:g} writes lost, more than the median {row.lost_median:g} of the last {len(earlier)} drills")


def history(root: Path, cluster: str | None = None, last: int = 5, threshold: float = 0.5,
            min_increase: float = MIN_INCREASE) -> list[Series]:
    from drengine.site.history import is_site_drill, site_rows

    groups: dict[tuple[str, str, str], list[HistoryRow]] = {}
    for record in drill_runs(root):
        rows = site_rows(record) if is_site_drill(record) else [_row(record)]
        for row in rows:
            if cluster is None or row.cluster == cluster:
                groups.setdefault((row.cluster, row.runbook, row.fault), []).append(row)
    series = []
    for (cl, rb, fault), rows in sorted(groups.items()):
        judge_regressions(rows, last, threshold, min_increase)
        series.append(Series(cl, rb, fault, rows))
    return series


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f} s"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def history_lines(series: list[Series], last: int, threshold: float) -> list[str]:
    """A table per series, for the terminal."""
    lines: list[str] = []
    header = f"  {'started (UTC)':19}  {'verdict':8}  {'RTO':>10}  {'objective':>9}  {'lost':>5}  {'objective':>9}  vs earlier drills"
    for s in series:
        lines += [f"{s.title}: {len(s.rows)} drill(s)", header]
        for r in s.rows:
            flag = "REGRESSION: " + "; ".join(r.regressions) if r.regressions else (
                f"median RTO before: {_s(r.rto_median)}" if r.rto_median is not None else "")
            rto_objective = "-" if r.rto_objective is None else f"{r.rto_objective:g} s"
            lines.append(f"  {_when(r.started):19}  {r.verdict:8}  {_s(r.rto):>10}  {rto_objective:>9}  "
                         f"{_n(r.lost_writes):>5}  {_n(r.lost_objective):>9}  {flag}".rstrip())
        lines.append("")
    flagged = sum(1 for s in series for r in s.rows if r.regressions)
    failed = failed_drills(series)
    lines.append(f"{sum(len(s.rows) for s in series)} drill(s) in {len(series)} series; {len(failed)} not passed; "
                 f"{flagged} regression(s) flagged "
                 f"(RTO more than {threshold:g}% above the median of the last {last} drills, lost writes above it)")
    return lines


def failed_drills(series: list[Series]) -> list[tuple[str, HistoryRow]]:
    """Every drill that did not pass (FAILED, UNFINISHED, TAMPERED): a page about drills never
    opens with good news above them, whatever the regression check says."""
    return [(s.title, r) for s in series for r in s.rows if r.verdict != "PASSED"]


def history_html(series: list[Series], last: int, threshold: float) -> str:
    from markupsafe import Markup

    from drengine.charts import Point, trend_svg
    from drengine.report import templates, utc

    stamps = [r.started for s in series for r in s.rows]
    one_day = bool(stamps) and time.gmtime(min(stamps))[:3] == time.gmtime(max(stamps))[:3]
    axis_format = "%H:%M:%S" if one_day else "%m-%d %H:%M"
    blocks = []
    for s in series:
        def point(r: HistoryRow, value: float | None, unit: str) -> Point:
            shown = "never recovered" if value is None else (f"{value:.3f} s" if unit == "s" else f"{value:g} writes")
            return Point(label=time.strftime(axis_format, time.gmtime(r.started)), value=value,
                         regression=bool(r.regressions), passed=r.verdict == "PASSED",
                         tip=f"{_when(r.started)} UTC, {r.verdict}: {shown}" + (
                             "; " + "; ".join(r.regressions) if r.regressions else ""))

        latest = s.rows[-1]
        blocks.append({
            "title": s.title, "rows": s.rows, "count": len(s.rows),
            "rto_chart": Markup(trend_svg([point(r, r.rto, "s") for r in s.rows], "recovery time (RTO)", "s",
                                          latest.rto_objective, "rto")),
            "lost_chart": Markup(trend_svg([point(r, r.lost_writes, "") for r in s.rows], "lost writes", "",
                                           latest.lost_objective, "lost")),
        })
    flagged = [(s.title, r) for s in series for r in s.rows if r.regressions]
    return str(templates().get_template("history.html.j2").render(
        blocks=blocks, flagged=flagged, failed=failed_drills(series), last=last, threshold=threshold, when=_when, s=_s, n=_n,
        total=sum(len(s.rows) for s in series), generated=utc(time.time()),
    ))

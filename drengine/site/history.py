"""Site drills in `drengine drill history`: each `drill site --lose-host` gives a row to the
series of the site as a whole (the site's recovery time against its objective, the writes lost
across its clusters) and one to the series of each cluster in it (its recovery time and lost
writes in that drill), apart from the cluster's own drills: losing a host is another fault.
Read from the drill's journal alone (the `drill_verdict` event and the objectives it started
with)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drengine.history import HistoryRow
from drengine.journal import Event
from drengine.runrecord import RunRecord

MODE = "drill-site"


def is_site_drill(record: RunRecord) -> bool:
    return record.mode == MODE


def site_series_name(inventory: str) -> str:
    return f"site {Path(inventory).stem}"


def site_rows(record: RunRecord) -> list[HistoryRow]:
    """The site's row first, then one per cluster, of one site drill."""
    started = next((e.data for e in record.entries if e.type is Event.RUN_STARTED), {})
    verdict: dict[str, Any] = next((e.data for e in record.entries if e.type is Event.DRILL_VERDICT), {})
    objectives: dict[str, Any] = dict(started.get("objectives") or {})
    host, fault = str(started.get("lost_host", "?")), str(started.get("fault", "?"))
    drill = f"site drill: host {host} lost"
    fault_name = f"lose-host-{fault}"

    def row(cluster: str, verdict_word: str, rto: float | None, lost: float | None, rto_objective: float | None,
            lost_objective: float | None, missed: list[str]) -> HistoryRow:
        return HistoryRow(run_id=record.run_id, run_dir=record.run_dir, started=record.started or 0.0, cluster=cluster,
                          runbook=drill, fault=fault_name, verdict=verdict_word, rto=rto, lost_writes=lost,
                          rto_objective=rto_objective, lost_objective=lost_objective, missed=missed)

    clusters: dict[str, dict[str, Any]] = dict(verdict.get("clusters") or {})
    losts: list[float] = [float(c["lost"]) for c in clusters.values() if c.get("lost") is not None]
    site_missed = any(str(r).startswith("site: objective missed") for r in verdict.get("reasons") or [])
    rows = [row(site_series_name(str(started.get("inventory", "?"))), record.title_word, verdict.get("site_rto"),
                sum(losts) if clusters and len(losts) == len(clusters) else None, objectives.get("rto"), None,
                ["rto"] if site_missed else [])]
    for name, figures in clusters.items():
        judged = [j for j in figures.get("objectives") or [] if isinstance(j, dict)]
        failed = [str(j.get("name")) for j in judged if j.get("met") is False]
        word = "TAMPERED" if not record.integrity_ok else (
            "PASSED" if figures.get("rto") is not None and not failed else "FAILED")
        rows.append(row(name, word, figures.get("rto"), figures.get("lost"), None, objectives.get("lost_writes"), failed))
    return rows

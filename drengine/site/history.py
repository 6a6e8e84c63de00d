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
    common = {"run_id": record.run_id, "run_dir": record.run_dir, "started": record.started or 0.0,
              "fault": f"lose-host-{fault}"}
    clusters: dict[str, dict[str, Any]] = dict(verdict.get("clusters") or {})
    losts = [c.get("lost") for c in clusters.values()]
    site_rto = verdict.get("site_rto")
    missed = [str(r) for r in verdict.get("reasons") or [] if "objective missed" in str(r)]
    rows = [HistoryRow(
        **common, cluster=site_series_name(str(started.get("inventory", "?"))), runbook=drill,
        verdict=record.title_word, rto=site_rto,
        lost_writes=None if not losts or any(v is None for v in losts) else float(sum(losts)),
        rto_objective=objectives.get("rto"), lost_objective=None,
        missed=["rto"] if any(r.startswith("site:") for r in missed) else [])]
    for name, figures in clusters.items():
        judged = [j for j in figures.get("objectives") or [] if isinstance(j, dict)]
        failed = [str(j.get("name")) for j in judged if j.get("met") is False]
        ok = figures.get("rto") is not None and not failed and record.integrity_ok
        rows.append(HistoryRow(
            **common, cluster=name, runbook=drill, verdict="PASSED" if ok else (
                "TAMPERED" if not record.integrity_ok else "FAILED"),
            rto=figures.get("rto"), lost_writes=figures.get("lost"), rto_objective=None,
            lost_objective=objectives.get("lost_writes"), missed=failed))
    return rows

"""`drengine site plan`: the site's recovery as one ordered plan, without changing anything.

Every cluster is probed at once (as `drengine status` does); each one that needs action gets
the runbook its status names, planned by the engine in plan mode (read-only probes, the exact
statements each step would send), in dependency order. A dependent cluster is planned against
what is true now: `site run` observes it again once its dependencies hold, and the plan may
then differ (it says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drengine.errors import DrengineError
from drengine.gates import FlagPolicy
from drengine.inventory import Inventory
from drengine.runbook import RunbookSearch
from drengine.site.inputs import SiteInputs, needed_inputs, needs_words, unknown_inputs
from drengine.site.view import SiteStatus, Standing, site_status
from drengine.status import FleetStatus, probe_fleet
from drengine.steps import Mode


@dataclass
class PlannedCluster:
    cluster: str
    verdict: str
    standing: str
    after: list[str]  # dependencies whose goal must hold first
    runbook: str | None
    why: str
    success: bool = False
    summary: str = ""
    run_dir: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)  # given: --input CLUSTER:NAME=VALUE
    needs: dict[str, str] = field(default_factory=dict)  # not given and needed: NAME -> what to give


@dataclass
class SitePlan:
    inventory: str
    order: list[str]
    clusters: list[PlannedCluster]
    site: SiteStatus

    @property
    def success(self) -> bool:
        """A recovery path exists for every cluster that needs one."""
        return all(c.runbook is not None and c.success for c in self.clusters)


def plan_site(inventory: Inventory, plan_dir: Path, runbooks: RunbookSearch | None = None,
              fleet: FleetStatus | None = None, inputs: SiteInputs | None = None) -> SitePlan:
    from drengine.engine import RunRequest, start_run
    from drengine.runbook import load_runbook

    fleet = fleet or probe_fleet(inventory)
    site = site_status(inventory, fleet)
    planned = []
    for row in site.clusters:
        if row.standing in (Standing.HEALTHY, Standing.AT_RISK):
            continue
        entry = PlannedCluster(cluster=row.cluster, verdict=row.verdict.value, standing=row.standing.value,
                               after=list(row.depends_on), runbook=row.runbook, why=row.why)
        planned.append(entry)
        if row.runbook is None:
            entry.summary = f"no runbook applies: {row.why or 'see its status'}"
            continue
        entry.inputs = dict((inputs or {}).get(row.cluster, {}))
        try:
            runbook = load_runbook(row.runbook, runbooks)
            unknown = unknown_inputs(row.cluster, runbook, entry.inputs)
            if unknown is not None:
                entry.summary = unknown
                continue
            status = next(c for c in fleet.clusters if c.cluster == row.cluster)
            advice = next(a for a in status.advice if a.runbook == row.runbook)
            entry.needs = needed_inputs(runbook, advice, entry.inputs)
            if entry.needs:
                entry.summary = f"not planned: {needs_words(row.cluster, runbook.name, entry.needs)}"
                continue
            outcome = start_run(RunRequest(
                runbook=runbook, inventory=inventory, inputs=entry.inputs,
                cluster=inventory.cluster(row.cluster), mode=Mode.PLAN,
                gates=FlagPolicy(yes=True, accept_data_loss=True), run_dir=plan_dir / row.cluster,
                operator_said_gone=tuple(inventory.cluster(row.cluster).gone_for_good),
            ))
        except DrengineError as exc:
            entry.summary = f"the plan could not be made: {exc}"
            continue
        entry.success, entry.summary, entry.steps = outcome.success, outcome.summary, outcome.plan
        entry.run_dir = str(outcome.run_dir)
    fleet.wait_closed(2.0)
    return SitePlan(inventory=inventory.path, order=site.order, clusters=planned, site=site)

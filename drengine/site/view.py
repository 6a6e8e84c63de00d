"""`drengine status` for a site: the clusters' answers read together with their dependencies.

Pure: from the fleet's answers and the inventory's `depends_on:`, each cluster's place in the
dependency order, what it depends on and what depends on it, and one word for its standing:
  healthy   nothing to do
  broken    needs action, and everything it depends on serves: recover it now
  waits     needs action while something it depends on does not serve: recover that first
            (it may be broken only because of it), then look again
  at-risk   healthy, but something it depends on does not serve
and what to do first: the broken clusters whose dependencies serve, in dependency order.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from drengine.inventory import Inventory
from drengine.site.graph import all_dependencies, dependency_order, dependents
from drengine.status import ClusterStatus, FleetStatus, Verdict

# A cluster that is degraded still serves (less redundancy): what depends on it can run.
SERVING = (Verdict.HEALTHY, Verdict.DEGRADED)


class Standing(str, Enum):
    HEALTHY = "healthy"
    BROKEN = "broken"
    WAITS = "waits"
    AT_RISK = "at-risk"


class SiteCluster(BaseModel):
    model_config = ConfigDict(frozen=True)

    cluster: str
    kind: str
    verdict: Verdict
    standing: Standing
    depth: int  # how many dependencies deep (0: depends on nothing)
    depends_on: list[str] = Field(default_factory=list)
    dependents: list[str] = Field(default_factory=list)
    waits_for: list[str] = Field(default_factory=list)  # dependencies (direct or not) that do not serve
    why: str = ""
    runbook: str | None = None
    command: str = ""


class SiteStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    order: list[str]
    clusters: list[SiteCluster]
    first: list[str] = Field(default_factory=list)  # what to do first, in order
    first_words: list[str] = Field(default_factory=list)

    def cluster(self, name: str) -> SiteCluster:
        return next(c for c in self.clusters if c.cluster == name)


def serves(status: ClusterStatus) -> bool:
    return status.verdict in SERVING


def site_status(inventory: Inventory, fleet: FleetStatus) -> SiteStatus:
    """The site view of a fleet's answers (clusters not probed are left out)."""
    answers = {c.cluster: c for c in fleet.clusters}
    depends = {n: [d for d in deps if d in answers] for n, deps in inventory.depends().items() if n in answers}
    order = dependency_order(depends)
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = 1 + max((depth[d] for d in depends[name]), default=-1)
    rows = []
    for name in order:
        status = answers[name]
        not_serving = [d for d in all_dependencies(depends, name) if not serves(answers[d])]
        advice = next((a for a in status.advice if a.runbook), status.advice[0] if status.advice else None)
        if not status.verdict.needs_action:
            standing = Standing.AT_RISK if not_serving else Standing.HEALTHY
        else:
            standing = Standing.WAITS if not_serving else Standing.BROKEN
        rows.append(SiteCluster(
            cluster=name, kind=status.kind, verdict=status.verdict, standing=standing, depth=depth[name],
            depends_on=depends[name], dependents=dependents(depends, name), waits_for=not_serving,
            why=advice.why if advice else "", runbook=advice.runbook if advice else None,
            command=advice.command if advice else "",
        ))
    first = [r.cluster for r in rows if r.standing is Standing.BROKEN]
    words = []
    for row in rows:
        if row.standing is Standing.BROKEN:
            what = f"$ {row.command}" if row.command else row.why or "look at its status above"
            words.append(f"{row.cluster} ({row.verdict.value}): {what}")
        elif row.standing is Standing.WAITS:
            words.append(f"{row.cluster} ({row.verdict.value}) waits for {', '.join(row.waits_for)}: "
                         f"recover that first, then look again (it may be broken only because of it)")
    return SiteStatus(order=order, clusters=rows, first=first, first_words=words)


def has_dependencies(inventory: Inventory) -> bool:
    return any(c.depends_on for c in inventory.clusters.values())

"""What an Elasticsearch observation means for `drengine status`: cluster health, which of the
inventory's nodes are in the cluster and how many shard copies each holds, unassigned copies
and why (from `_cat/shards`, no allocation-explain calls), and whether
elasticsearch-reallocate applies."""

from __future__ import annotations

from collections import Counter

from drengine.datastores.elasticsearch.connector import ElasticAPI
from drengine.datastores.elasticsearch.diagnosis import _why_unassigned
from drengine.datastores.elasticsearch.esview import EsView
from drengine.errors import CommandFailed, ConnectError
from drengine.inventory import Cluster
from drengine.status import Advice, MemberState, MemberStatus, Reading, Verdict, classify_error

SHOWN = 5


def assess(cluster: Cluster, backend: ElasticAPI) -> Reading:
    try:
        view = backend.observe()
    except (ConnectError, CommandFailed) as exc:
        state = classify_error(str(exc))
        rows = [MemberStatus(name=m.name, role="node", state=state, error=str(exc)) for m in cluster.members]
        return Reading(verdict=Verdict.DOWN, members=rows, headline=f"no node answered: {exc}",
                       advice=[Advice(why="start the nodes, or check the inventory's addresses and ports")])
    return read_view(cluster, view)


def _rows(cluster: Cluster, view: EsView) -> list[MemberStatus]:
    copies = Counter(s.node for s in view.shards if s.node)
    primaries = Counter(s.node for s in view.shards if s.node and s.primary)
    live = {n.name: n for n in view.nodes}
    rows = []
    for m in cluster.members:
        node = live.get(m.name)
        if node is None:
            rows.append(MemberStatus(name=m.name, role="node", state=MemberState.ABSENT,
                                     error="not in the cluster (left it, dead or cut off)"))
            continue
        roles = ",".join(r.removeprefix("data_") if r.startswith("data_") else r for r in node.roles) or "-"
        rows.append(MemberStatus(name=m.name, role=roles, state=MemberState.REACHABLE,
                                 position=f"{copies[m.name]} shard copies ({primaries[m.name]} primaries)"))
    return rows


def read_view(cluster: Cluster, view: EsView) -> Reading:
    h = view.health
    rows = _rows(cluster, view)
    facts = [h.line()]
    if view.allocation_enable.value != "all":
        facts.append(f"cluster.routing.allocation.enable: {view.allocation_enable.value} ({view.allocation_enable.scope})")
    absent = [r.name for r in rows if r.state is MemberState.ABSENT]
    unassigned = view.unassigned
    evidence = []
    for copy in unassigned[:SHOWN]:
        evidence.append(f"{copy.label} unassigned: {_why_unassigned(view, copy)}")
    if len(unassigned) > SHOWN:
        evidence.append(f"... and {len(unassigned) - SHOWN} more unassigned copies")
    if absent:
        evidence.insert(0, f"not in the cluster: {', '.join(absent)}")
    reallocate = Advice(runbook="elasticsearch-reallocate",
                        why="explain every unassigned copy and fix each, least risky first (stale or empty "
                            "primaries only behind a dangerous gate)")
    if h.status == "red":
        lost = sorted({c.index for c in unassigned if c.primary})
        return Reading(verdict=Verdict.DOWN, members=rows, facts=facts, evidence=evidence, advice=[reallocate],
                       headline=f"health red: {len([c for c in unassigned if c.primary])} primary shard(s) unassigned "
                                f"(index {', '.join(lost[:SHOWN])}): reads and writes to them fail")
    if h.status == "yellow" or unassigned or absent:
        return Reading(verdict=Verdict.DEGRADED, members=rows, facts=facts, evidence=evidence, advice=[reallocate],
                       headline=f"health {h.status}: every primary is assigned, {h.unassigned_shards} replica copy(ies) "
                                f"unassigned" + (f"; {', '.join(absent)} not in the cluster" if absent else ""))
    return Reading(verdict=Verdict.HEALTHY, members=rows, facts=facts,
                   headline=f"health green: {h.number_of_nodes} node(s), every shard copy assigned")

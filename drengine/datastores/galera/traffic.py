"""Galera steps around a bootstrap: fence the nodes that are not bootstrapped and may still
be alive (hung, unreachable, or running on the other side of an overridden partition), switch
the proxies' write backends to the bootstrapped node once it is verified, and put the nodes
that rejoined back in the proxies. The step bodies are shared with MariaDB (mysql_steps)."""

from __future__ import annotations

from typing import cast

from drengine.datastores.galera.actions import Ctx, _chosen
from drengine.datastores.galera.connector import GaleraAPI, GaleraView, NodeView
from drengine.datastores.galera.decisions import components
from drengine.datastores.galera.ledger import BOOTSTRAP, DATASTORE, KEPT_OUT
from drengine.datastores.mariadb.traffic import FenceParams
from drengine.datastores.mysql_fencing import Fencing
from drengine.datastores.mysql_ledger import declare_fences, declare_found_fenced, declare_maint, fenced_kind, undo_maint
from drengine.datastores.mysql_steps import (
    Target,
    fence_proposal,
    fence_targets,
    fenced_before_interruption,
    readmit,
    readmit_proposal,
    switch_traffic,
    traffic_proposal,
    traffic_settled,
)
from drengine.steps import Action, Effect, NoParams, Proposal, StepResult, register


def _targets(ctx: Ctx) -> list[Target]:
    """Nodes other than the chosen one that could still take writes or form a component of their
    own: any node that does not answer (unless refused: not running), and nodes that answer from
    a group other than the chosen node's; as this run's observation saw them (the engine
    observes again from the start when a gate waited, on retry and on resume)."""
    _, chosen = _chosen(ctx)
    view = ctx.facts.get("view", GaleraView)
    group = next((g for g in components(view) if chosen in g), [chosen])
    return [(n.name, n.state, n.error) for n in view.nodes
            if n.name != chosen and (n.state != "up" or n.name not in group)]


@register
class FenceOthers(Action[GaleraAPI, FenceParams]):
    name = "galera.fence_others"
    effect = Effect.MUTATE
    Params = FenceParams
    description = "Fence the nodes left out of the bootstrap that may be alive (read-only, stopped, killed, out of the proxies)"

    def propose(self, ctx: Ctx) -> Proposal:
        return fence_proposal(ctx.backend, _targets(ctx), "nodes left out of the bootstrap")

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return all(_safe_now(ctx.backend.probe(name)) for name, _, _ in _targets(ctx))

    def result_after_interruption(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        targets = _targets(ctx)
        probes = [ctx.backend.probe(name) for name, _, _ in targets]
        declare_found_fenced(DATASTORE, {n: state for n, state, _ in targets}, [(n.name, n.state) for n in probes],
                             BOOTSTRAP, ctx.changed)
        return fenced_before_interruption([(n.name, n.state, n.state) for n in probes])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        result = fence_targets(ctx.backend, _targets(ctx), ctx.sent, ctx.clock, self.params.fence_timeout)
        declare_fences(DATASTORE, cast(Fencing, result.facts["fencing"]), BOOTSTRAP, ctx.changed)
        return result


def _safe_now(node: NodeView) -> bool:
    return node.state == "down"


def _out(ctx: Ctx, primary: str) -> frozenset[str]:
    view = ctx.facts.get("view", GaleraView)
    fencing = ctx.facts.maybe("fencing", Fencing)
    out = {n.name for n in view.nodes if n.state != "up"} | ({m.member for m in fencing.members} if fencing else set())
    return frozenset(out - {primary})


@register
class SwitchTraffic(Action[GaleraAPI, NoParams]):
    name = "galera.switch_traffic"
    effect = Effect.MUTATE
    description = "Point every proxy's write backend at the bootstrapped node and prove it with a write through each frontend"

    def propose(self, ctx: Ctx) -> Proposal:
        _, chosen = _chosen(ctx)
        views = ctx.backend.proxy_views() if ctx.cluster.proxies else []
        return traffic_proposal(ctx.backend, chosen, _out(ctx, chosen), views)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        _, chosen = _chosen(ctx)
        return traffic_settled(ctx.backend, chosen, _out(ctx, chosen))

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        _, chosen = _chosen(ctx)
        return switch_traffic(ctx.backend, chosen, _out(ctx, chosen), ctx.sent, with_gtid=False,
                              applied=lambda changes: declare_maint(ctx.cluster, changes, BOOTSTRAP, ctx.changed))


def _rejoined(ctx: Ctx) -> tuple[list[str], str]:
    _, chosen = _chosen(ctx)
    view = ctx.backend.observe()
    return [n.name for n in view.nodes if n.name != chosen and n.is_primary and n.local_state == "Synced"], chosen


@register
class Readmit(Action[GaleraAPI, NoParams]):
    name = "galera.readmit"
    effect = Effect.MUTATE
    description = "Put the nodes that rejoined back in the proxies as the inventory says (read backends ready, or maint)"

    def propose(self, ctx: Ctx) -> Proposal:
        members, chosen = _rejoined(ctx)
        return readmit_proposal(ctx.backend, members, chosen)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return False  # setting a server's state again is harmless

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        members, chosen = _rejoined(ctx)
        for member in members:  # back in the Primary component: no longer fenced or kept out
            ctx.undone(fenced_kind(DATASTORE), member)
            ctx.undone(KEPT_OUT, member)
        return readmit(ctx.backend, members, chosen, ctx.sent,
                       readmitted=lambda servers: undo_maint(ctx, DATASTORE, servers))

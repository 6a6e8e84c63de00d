"""MariaDB steps around a promotion: fence the old primary before it (sql, service, signal,
proxy, in the inventory's order), switch the proxies' write backends to the new primary
after it, and put rejoined servers back in the proxies. The step bodies are shared with
Galera (mysql_steps); this module decides which members they apply to."""

from __future__ import annotations

from typing import cast

from pydantic import Field

from drengine.datastores.mariadb.actions import Ctx, NewPrimary, RejoinDecision, SurvivorDecision
from drengine.datastores.mariadb.connector import ClusterView, MariaDBAPI, ServerView
from drengine.datastores.mariadb.ledger import DATASTORE, REJOIN
from drengine.datastores.mysql_fencing import Fencing
from drengine.datastores.mysql_ledger import declare_fences, declare_found_fenced, declare_maint, undo_maint
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
from drengine.errors import StepFailed
from drengine.steps import Action, Effect, NoParams, Proposal, StepParams, StepResult, register


def _targets(ctx: Ctx) -> list[Target]:
    """The old primary (the server the replicas followed) and any other writable server that is
    not the chosen survivor, as this run's observation saw them. That observation is fresh: the
    engine observes again from the start when a gate waited, on retry and on resume; probing a
    hung server once more would only cost another read timeout before the fence."""
    decision = ctx.facts.get("survivor", SurvivorDecision)
    view = ctx.facts.get("view", ClusterView)
    # Every server some replica still follows is a primary that may take writes (found by the
    # explorer: after an earlier failover, a hung old primary that one replica still followed
    # was left unfenced beside the new one).
    sources = {(ch.master_host, ch.master_port) for s in view.servers for ch in s.channels}
    followed = {s.name for s in view.servers if (s.address, s.port) in sources}
    wanted = {decision.old_primary} | followed | {s.name for s in view.servers if s.is_writable_primary}
    return [(s.name, s.state, s.error) for s in view.servers if s.name in wanted and s.name != decision.chosen]


class FenceParams(StepParams):
    fence_timeout: float = Field(default=60.0, gt=0, le=3600,
                                 description="seconds a stop command, or the process's exit, may take")


@register
class FenceOldPrimary(Action[MariaDBAPI, FenceParams]):
    name = "mariadb.fence_old_primary"
    effect = Effect.MUTATE
    Params = FenceParams
    description = "Fence the old primary (read-only, stopped, killed by pid, or out of the proxies) before the promotion"

    def propose(self, ctx: Ctx) -> Proposal:
        return fence_proposal(ctx.backend, _targets(ctx), "old primary")

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return all(_safe_now(s) for s in (ctx.backend.probe(n) for n, _, _ in _targets(ctx)))

    def result_after_interruption(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        # took_effect held: each target is down, or answers read-only.
        targets = _targets(ctx)
        probes = [ctx.backend.probe(n) for n, _, _ in targets]
        found: list[Target] = [(s.name, s.state, "read-only" if s.reachable else s.state) for s in probes]
        declare_found_fenced(DATASTORE, {n: state for n, state, _ in targets}, [(n, seen) for n, _, seen in found],
                             REJOIN, ctx.changed)
        return fenced_before_interruption(found)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        _old_primary_not_back(ctx)
        result = fence_targets(ctx.backend, _targets(ctx), ctx.sent, ctx.clock, self.params.fence_timeout)
        declare_fences(DATASTORE, cast(Fencing, result.facts["fencing"]), REJOIN, ctx.changed)
        return result


def _old_primary_not_back(ctx: Ctx) -> None:
    """Right before the first statement: an old primary the run saw hung, down or unreachable that
    now answers as a working writable primary has come back (woken while drengine was down after
    this step began, so the run resumed here without the check-no-primary step). Fencing it now
    would stop a working primary and fail over for nothing: stop, and let the runbook run again,
    whose check refuses while a primary answers (and fences it if the operator overrides that).
    A primary the run already saw writable is fenced: the operator overrode that check."""
    decision = ctx.facts.get("survivor", SurvivorDecision)
    seen = {s.name: s for s in ctx.facts.get("view", ClusterView).servers}
    old = decision.old_primary
    if not old or old not in seen or seen[old].is_writable_primary:
        return
    now = ctx.backend.probe(old)
    if now.is_writable_primary:
        raise StepFailed(f"{old} answers again and takes writes (read_only=0, no replication), although this run saw "
                         f"it {seen[old].state}: the primary is back, so nothing was fenced or sent. Run the runbook "
                         f"again: it refuses while a primary answers (override that check to replace {old} anyway)")


def _safe_now(server: ServerView) -> bool:
    return server.state == "down" or (server.reachable and server.read_only)


def _out(ctx: Ctx, primary: str) -> frozenset[str]:
    """Members that must take no traffic: the fenced old primary and whatever does not answer."""
    decision = ctx.facts.maybe("survivor", SurvivorDecision)
    view = ctx.facts.get("view", ClusterView)
    out = {s.name for s in view.servers if not s.reachable}
    if decision is not None and decision.old_primary:
        out.add(decision.old_primary)
    return frozenset(out - {primary})


@register
class SwitchTraffic(Action[MariaDBAPI, NoParams]):
    name = "mariadb.switch_traffic"
    effect = Effect.MUTATE
    description = "Point every proxy's write backend at the new primary and prove it with a write through each frontend"

    def propose(self, ctx: Ctx) -> Proposal:
        primary = ctx.facts.get("new_primary", NewPrimary).name
        views = ctx.backend.proxy_views() if ctx.cluster.proxies else []
        return traffic_proposal(ctx.backend, primary, _out(ctx, primary), views)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        primary = ctx.facts.get("new_primary", NewPrimary).name
        return traffic_settled(ctx.backend, primary, _out(ctx, primary))

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        primary = ctx.facts.get("new_primary", NewPrimary).name
        return switch_traffic(ctx.backend, primary, _out(ctx, primary), ctx.sent, with_gtid=True,
                              applied=lambda changes: declare_maint(ctx.cluster, changes, REJOIN, ctx.changed))


def _rejoined(ctx: Ctx) -> tuple[list[str], str]:
    decision = ctx.facts.get("rejoin", RejoinDecision)
    primary = ctx.facts.get("new_primary", NewPrimary)
    return [s.name for s in decision.strays], primary.name


@register
class Readmit(Action[MariaDBAPI, NoParams]):
    name = "mariadb.readmit"
    effect = Effect.MUTATE
    description = "Put the rejoined servers back in the proxies as the inventory says (read backends ready, or maint)"

    def propose(self, ctx: Ctx) -> Proposal:
        members, primary = _rejoined(ctx)
        return readmit_proposal(ctx.backend, members, primary)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return False  # setting a server's state again is harmless

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        members, primary = _rejoined(ctx)
        return readmit(ctx.backend, members, primary, ctx.sent,
                       readmitted=lambda servers: undo_maint(ctx, DATASTORE, servers))

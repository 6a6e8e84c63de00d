"""Elasticsearch: reallocate shards after losing nodes. The steps the
`elasticsearch-reallocate` runbook names, in four modules: this one (observe, explain,
plan: read only), `repairs` (the mutating fixes, least risky first), `finishing` (wait for
the expected health, restore the settings changed). The pure decisions live in `diagnosis`
(why each copy is unassigned) and `planning` (what to do about it). Every request a step
sends is shown, before and after, as the exact HTTP text (`Statement(language="http")`);
every setting a step changes is recorded as a fact so the last step can put it back.
"""

from __future__ import annotations

from pydantic import Field

from drengine.datastores.elasticsearch import finishing, repairs  # noqa: F401 - their steps register
from drengine.datastores.elasticsearch.calls import (
    ENABLE_SETTING,
    cat_shards_call,
    cluster_settings_call,
    explain_call,
    health_call,
    index_settings_call,
    nodes_call,
)
from drengine.datastores.elasticsearch.connector import ElasticAPI
from drengine.datastores.elasticsearch.diagnosis import (
    SHOWN_ROWS,
    Explanations,
    absent_members,
    explain_table,
    shards_to_explain,
    table_lines,
    with_explanations,
)
from drengine.datastores.elasticsearch.esview import EsView
from drengine.datastores.elasticsearch.planning import plan_reallocation
from drengine.datastores.elasticsearch.stepkit import Ctx
from drengine.steps import (
    Action,
    Effect,
    NoParams,
    Proposal,
    StepParams,
    StepResult,
    register,
)

# -- actions ---------------------------------------------------------------------------------------


@register
class Observe(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.observe"
    effect = Effect.READ
    description = "Read health, nodes, every shard copy and the allocation settings (five requests)"

    def propose(self, ctx: Ctx) -> Proposal:
        calls = [health_call(), nodes_call(), cat_shards_call(), cluster_settings_call(), index_settings_call()]
        return Proposal(summary="read the cluster's health, nodes, shards and allocation settings",
                        statements=[c.statement() for c in calls])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.backend.observe()
        evidence = [view.health.line(), f"nodes in the cluster: {', '.join(n.name for n in view.nodes) or 'none'}"]
        absent = absent_members(view)
        if absent:
            evidence.append(f"inventory members not in the cluster: {', '.join(absent)}")
        evidence.append(f"{ENABLE_SETTING}: {view.allocation_enable.value} ({view.allocation_enable.scope})")
        return StepResult(ok=True, summary=view.health.line(), facts={"es_view": view}, evidence=evidence)


class ExplainParams(StepParams):
    explain_all_up_to: int = Field(default=50, ge=0, le=100000,
                                   description="explain every unassigned replica up to this many; beyond, a sample per kind")
    per_group: int = Field(default=3, ge=1, le=1000)


@register
class ExplainUnassigned(Action[ElasticAPI, ExplainParams]):
    name = "elasticsearch.explain_unassigned"
    effect = Effect.READ
    Params = ExplainParams
    description = "Explain every unassigned shard: why, and what would assign it"

    def _targets(self, ctx: Ctx) -> list[tuple[str, int, bool]]:
        params = self.params
        return shards_to_explain(ctx.facts.get("es_view", EsView), params.explain_all_up_to, params.per_group)

    def propose(self, ctx: Ctx) -> Proposal:
        targets = self._targets(ctx)
        return Proposal(summary=f"explain {len(targets)} unassigned shard copies",
                        statements=[explain_call(*t).statement() for t in targets])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.facts.get("es_view", EsView)
        targets = self._targets(ctx)
        items = [ctx.backend.explain(*t) for t in targets]
        explained = Explanations(items=items, sampled=len(targets) < len({(s.index, s.shard, s.primary) for s in view.unassigned}))
        rows = explain_table(with_explanations(view, explained))
        summary = (f"{len(rows)} unassigned shard copies, {len(items)} explained"
                   + (" (a sample of each kind of replica)" if explained.sampled else "")) if rows else "no unassigned shard copies"
        return StepResult(ok=True, summary=summary, facts={"es_explanations": explained}, evidence=table_lines(rows))


@register
class PlanReallocation(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.plan_reallocation"
    effect = Effect.READ
    description = "Decide what to do about each unassigned shard, least risky first"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="decide the reallocation, least risky first")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = with_explanations(ctx.facts.get("es_view", EsView), ctx.facts.get("es_explanations", Explanations))
        plan = plan_reallocation(view, ctx.operator_said_gone)
        evidence = [f"left as is: {w}" for w in plan.waiting[:SHOWN_ROWS]]
        if len(plan.waiting) > SHOWN_ROWS:
            evidence.append(f"... and {len(plan.waiting) - SHOWN_ROWS} more left as is")
        evidence += [f"note: {n}" for n in plan.notes]
        evidence += [f"RISK: {p.lost}" for p in plan.stale_primaries + plan.empty_primaries]
        return StepResult(ok=True, summary=plan.reason, facts={"es_plan": plan}, evidence=evidence)



"""What the Elasticsearch steps share: the run context type, sending a request and
journaling it, the plan fact, the copies unassigned right now."""

from __future__ import annotations

from drengine.datastores.elasticsearch.calls import HttpCall
from drengine.datastores.elasticsearch.connector import ElasticAPI
from drengine.datastores.elasticsearch.planning import ReallocationPlan
from drengine.steps import Proposal, RunContext

Ctx = RunContext[ElasticAPI]


def send(ctx: Ctx, call: HttpCall) -> None:
    ctx.backend.send(call)
    ctx.sent(call.statement())


def plan_of(ctx: Ctx) -> ReallocationPlan:
    return ctx.facts.get("es_plan", ReallocationPlan)


def unassigned_now(ctx: Ctx) -> set[tuple[str, int, bool]]:
    return {(s.index, s.shard, s.primary) for s in ctx.backend.shards() if s.state == "UNASSIGNED"}



def nothing_to_do(summary: str) -> Proposal:
    return Proposal(summary=summary, nothing_to_do=True)



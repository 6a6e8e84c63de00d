"""The goal of the MongoDB runbooks, checked on a fresh observation before a run says DONE:
exactly one writable primary, and every reachable member of its config is a healthy member."""

from __future__ import annotations

from drengine.datastores.mongodb.connector import MongoAPI
from drengine.datastores.mongodb.setview import SetView
from drengine.steps import Action, Effect, GoalLook, NoParams, Proposal, RunContext, StepResult, judge_goal, register

Ctx = RunContext[MongoAPI]
SERVING = ("PRIMARY", "SECONDARY", "ARBITER")


def one_primary_goal(view: SetView) -> tuple[bool, str, list[str]]:
    primaries = [m for m in view.members if m.reachable and m.is_writable_primary]
    if not primaries:
        return False, "no reachable member is a writable primary", [
            "force a primary among the survivors (mongodb-force-primary) or wait for an election"]
    if len(primaries) > 1:
        names = ", ".join(m.name for m in primaries)
        return False, f"{len(primaries)} writable primaries ({names}): split brain", [
            "shut down every primary but the one in the newest config, then resync it (mongodb-rejoin)"]
    primary = primaries[0]
    config = primary.config
    in_config = {c.host for c in config.members} if config is not None else set()
    left, outside = [], []
    for m in view.members:
        if m is primary or not m.reachable:
            continue
        if m.config_host not in in_config:
            outside.append(m.name)
            continue
        if m.state not in SERVING:
            left.append(f"{m.name} is {m.state or 'in an unknown state'}, expected SECONDARY (wait for its sync, or look at its log)")
    if left:
        return False, f"{primary.name} is the only primary, but " + "; ".join(left), left
    summary = f"{primary.name} is the only writable primary (config version {config.version if config else '?'})"
    if outside:
        summary += f"; outside the config (keep them down until resynced with mongodb-rejoin): {', '.join(outside)}"
    return True, summary, []


@register
class OnePrimaryGoal(Action[MongoAPI, NoParams]):
    name = "mongodb.goal_one_primary"
    effect = Effect.READ
    description = "Goal: exactly one writable primary; every reachable member of its config serving"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="observe every member: one writable primary, the members of its config serving")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        def look() -> GoalLook:
            view = ctx.backend.observe()
            holds, summary, left = one_primary_goal(view)
            return GoalLook(holds, summary, left, [f"{m.name}: {m.state or ('unreachable: ' + m.error)}" for m in view.members])

        return judge_goal(ctx, look, seconds=10.0)

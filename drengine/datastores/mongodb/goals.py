"""The goal of the MongoDB runbooks, checked on a fresh observation before a run says DONE:
exactly one writable primary, every reachable member of its config is a healthy member, and
enough of its data-bearing voters serve for a w: majority write to be acknowledged."""

from __future__ import annotations

from drengine.datastores.mongodb.connector import MongoAPI
from drengine.datastores.mongodb.setview import MemberView, SetView
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
    short = majority_short(view, primary)
    if short:
        return False, f"{primary.name} is the only primary, but {short}", [
            f"{short}: bring back or resync the data-bearing voters it needs, then check again"]
    summary = f"{primary.name} is the only writable primary (config version {config.version if config else '?'})"
    if outside:
        summary += f"; outside the config (keep them down until resynced with mongodb-rejoin): {', '.join(outside)}"
    return True, summary, []


def majority_short(view: SetView, primary: MemberView) -> str | None:
    """Why a w: majority write cannot be acknowledged now, judged from the primary's config: fewer
    of its data-bearing voters serve (reachable, PRIMARY or SECONDARY, not delayed by design) than
    its write majority (the majority of the votes, at most the number of data-bearing voters:
    replica_set_config.cpp's writeMajorityCount). None when enough serve; whether they keep up is
    the verify step's canary to tell."""
    config = primary.config
    if config is None:
        return None
    voters = [c for c in config.members if c.votes and not c.arbiter_only]
    needed = min(config.majority(), len(voters))
    serving = []
    for entry in voters:
        member = primary if entry.host == primary.config_host else view.by_config_host(entry.host)
        if member is not None and member.reachable and member.state in ("PRIMARY", "SECONDARY") \
                and not entry.secondary_delay_secs:
            serving.append(member.name)
    if len(serving) >= needed:
        return None
    return (f"only {len(serving)} of the {needed} data-bearing voters w: majority needs serve "
            f"({', '.join(serving) or 'none'}): a majority cannot acknowledge writes")


@register
class OnePrimaryGoal(Action[MongoAPI, NoParams]):
    name = "mongodb.goal_one_primary"
    effect = Effect.READ
    description = ("Goal: exactly one writable primary; every reachable member of its config serving; a majority of "
                   "its data-bearing voters serving")

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="observe every member: one writable primary, the members of its config serving")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        def look() -> GoalLook:
            view = ctx.backend.observe()
            holds, summary, left = one_primary_goal(view)
            return GoalLook(holds, summary, left, [f"{m.name}: {m.state or ('unreachable: ' + m.error)}" for m in view.members])

        return judge_goal(ctx, look, seconds=10.0)

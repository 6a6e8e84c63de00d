"""What the MongoDB steps share: the run context type and the forced config of the chosen survivor."""

from __future__ import annotations

from drengine.datastores.mongodb.connector import MongoAPI
from drengine.datastores.mongodb.decisions import ForcedConfig, SurvivorDecision, forced_config, member_names, survivors_of
from drengine.datastores.mongodb.setview import ReplConfig, SetView, canary_insert_command
from drengine.errors import StepFailed
from drengine.steps import RunContext

Ctx = RunContext[MongoAPI]


def forced_for(ctx: Ctx) -> tuple[SurvivorDecision, ReplConfig, ForcedConfig]:
    view = ctx.facts.get("view", SetView)
    decision = ctx.facts.get("survivor", SurvivorDecision)
    config = view.newest_config()
    if decision.chosen is None or config is None:
        raise StepFailed(f"no survivor was chosen ({decision.reason}); nothing to force")
    forced = forced_config(config, survivors_of(view, config), decision.chosen_host, member_names(view))
    return decision, config, forced


def canary(run_marker: str, now: float) -> str:
    """The canary insert, stamped with `now` (the run's wall clock: a simulated run replays the same text)."""
    return canary_insert_command(run_marker, now)


def back_since_chosen(ctx: Ctx, removed: list[str]) -> list[str]:
    """The members the forced config removes (config hosts) that were unreachable when the survivor
    was chosen and answer now (one probe each, right before a step acts on that choice): the
    majority check and the choice are stale (the majority may be back, or a member may hold more)."""
    view = ctx.facts.get("view", SetView)
    back = []
    for host in removed:
        member = view.by_config_host(host)
        if member is not None and not member.reachable and ctx.backend.probe(member.name).reachable:
            back.append(member.name)
    return back


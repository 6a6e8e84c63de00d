"""The goal of the Galera runbook, checked on a fresh observation before a run says DONE:
one Primary component, every node that answers is in it and synced, every node that was
down is back (unless declared gone for good), and every proxy in the
inventory sends writes only to nodes of that component."""

from __future__ import annotations

from drengine.datastores.galera.actions import _evidence
from drengine.datastores.galera.connector import GaleraAPI, GaleraView
from drengine.datastores.galera.decisions import components
from drengine.haproxy import ProxyView
from drengine.steps import Action, Effect, GoalLook, NoParams, Proposal, RunContext, StepResult, judge_goal, register

Ctx = RunContext[GaleraAPI]


def primary_component_goal(view: GaleraView, gone: tuple[str, ...] = ()) -> tuple[bool, str, list[str]]:
    """`gone`: the members declared gone for good; every other node that is down must be back
    (a node refusing connections can be started; a hung or unreachable one cannot be judged)."""
    up = [n for n in view.nodes if n.state == "up"]
    groups = components(view)
    primary_groups = [g for g in groups if any(view_node.is_primary for view_node in up if view_node.name in g)]
    if not primary_groups:
        return False, "no node is in a Primary component", ["bootstrap the most advanced survivor (galera-bootstrap-survivor)"]
    if len(primary_groups) > 1:
        shown = " | ".join(", ".join(g) for g in primary_groups)
        return False, f"{len(primary_groups)} Primary components ({shown}): split brain", [
            "stop every component but the most advanced one, then start its nodes again so they rejoin by SST/IST"]
    component = primary_groups[0]
    left = []
    for node in up:
        if node.name not in component:
            left.append(f"{node.name} answers but is outside the Primary component ({node.cluster_status}); restart it to rejoin")
        elif not node.is_primary or node.local_state != "Synced":
            left.append(f"{node.name} is in the component but {node.cluster_status or 'not Primary'}/"
                        f"{node.local_state or 'unknown'}, expected Primary/Synced")
    for node in view.nodes:
        if node.state == "down" and node.name not in gone:
            left.append(f"{node.name} is down and did not rejoin the Primary component; start it (it rejoins by IST or "
                        f"SST), or declare it gone for good")
    if left:
        return False, "; ".join(left), left
    away = [f"{n.name} ({n.state})" for n in view.nodes if n.state != "up"]
    summary = f"one Primary component of {len(component)}: {', '.join(component)}, all Synced"
    if away:
        summary += f"; not running: {', '.join(away)}"
    return True, summary, []


def traffic_goal(view: GaleraView, proxies: list[ProxyView]) -> list[str]:
    """What is left for the proxies to send writes only to nodes of the Primary component."""
    primary = {n.name for n in view.nodes if n.is_primary}
    left = []
    for proxy in proxies:
        writers = set(proxy.ready_writers())
        if proxy.error:
            left.append(proxy.describe())
        elif not writers or writers - primary:
            left.append(f"proxy {proxy.proxy} sends writes to {', '.join(sorted(writers)) or 'no node'}, expected only "
                        f"nodes of the Primary component ({', '.join(sorted(primary))})")
    return left


@register
class PrimaryComponentGoal(Action[GaleraAPI, NoParams]):
    name = "galera.goal_primary_component"
    effect = Effect.READ
    description = "Goal: one Primary component; every answering node in it and Synced; no node left down"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="observe every node: one Primary component, every answering node Synced in it")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        def look() -> GoalLook:
            view = ctx.backend.observe()
            gone = tuple(ctx.cluster.gone_for_good) + tuple(ctx.operator_said_gone)
            holds, summary, left = primary_component_goal(view, gone)
            if holds and ctx.cluster.proxies:
                traffic = traffic_goal(view, ctx.backend.proxy_views())
                if traffic:
                    holds, summary, left = False, summary + "; but " + "; ".join(traffic), traffic
                else:
                    summary += "; the proxies send writes only to it"
            return GoalLook(holds, summary, left, _evidence(view))

        # A node that was just started may still be joining (Joiner, Donor): give it a moment.
        return judge_goal(ctx, look, seconds=10.0)

"""The goal of the MariaDB runbooks, checked on a fresh observation before a run says DONE:
exactly one writable primary, every other reachable server replicates from it, and every
proxy in the inventory sends writes to it alone."""

from __future__ import annotations

from drengine.datastores.mariadb.actions import NewPrimary, _follows, _points_at, _view_lines, writable_primaries
from drengine.datastores.mariadb.connector import ClusterView, MariaDBAPI, ServerView
from drengine.datastores.mysql_fencing import Fencing
from drengine.haproxy import ProxyView
from drengine.steps import Action, Effect, GoalLook, NoParams, Proposal, RunContext, StepResult, judge_goal, register

Ctx = RunContext[MariaDBAPI]


def _as_primary(server: ServerView) -> NewPrimary:
    return NewPrimary(name=server.name, address=server.address, port=server.port)


def _healthy_follower(server: ServerView, primary: NewPrimary) -> bool:
    return _follows(server, primary) and all(
        ch.io_running == "Yes" and ch.sql_running == "Yes" and not ch.last_io_errno and not ch.last_sql_errno
        for ch in server.channels)


def replication_goal(view: ClusterView, fenced: frozenset[str] = frozenset()) -> tuple[bool, str, list[str]]:
    """(holds, summary, what is left) for "one writable primary, every reachable server follows
    it". A hung server (alive, answering nothing) that was not fenced may take writes once it
    wakes: "one writable primary" cannot be said of the cluster while it is there."""
    primaries = writable_primaries(view)
    if not primaries:
        return False, "no reachable server is a writable primary", [
            "promote a survivor (mariadb-promote-survivor), or make the intended primary writable"]
    if len(primaries) > 1:
        names = ", ".join(p.name for p in primaries)
        return False, f"{len(primaries)} writable primaries ({names}): split brain", [
            "fence every primary but one (SET GLOBAL read_only=1 or stop it), then run mariadb-rejoin on it"]
    primary = _as_primary(primaries[0])
    left = [f"{s.name} is hung (it accepts connections and answers nothing) and was not fenced: once it wakes it may "
            f"take writes beside {primary.name} (split brain); stop it or kill it by its pid file, or, once it "
            f"answers, SET GLOBAL read_only=1 on it and run mariadb-rejoin"
            for s in view.servers if s.state == "hung" and s.name not in fenced]
    for s in view.servers:
        if s.name == primary.name or not s.reachable or _healthy_follower(s, primary):
            continue
        if not s.channels:
            left.append(f"{s.name} follows nobody (read_only={int(s.read_only)}); run mariadb-rejoin or repoint it")
        elif not _points_at(s, primary):  # by address: a replica whose threads stopped still points at it
            source = ", ".join(f"{ch.master_host}:{ch.master_port}" for ch in s.channels)
            left.append(f"{s.name} replicates from {source}, not from {primary.name}; run mariadb-rejoin")
        else:
            ch = s.channels[0]
            left.append(f"{s.name} points at {primary.name} but IO={ch.io_running} SQL={ch.sql_running}"
                        f"{' error ' + str(ch.last_io_errno or ch.last_sql_errno) if ch.last_io_errno or ch.last_sql_errno else ''}"
                        f"; look at SHOW SLAVE STATUS on it")
    if left:
        return False, f"{primary.name} is the only writable primary, but " + "; ".join(left), left
    followers = [s.name for s in view.servers if s.reachable and s.name != primary.name]
    away = [s.name for s in view.servers if not s.reachable]
    summary = f"{primary.name} is the only writable primary; {', '.join(followers) or 'no other server'} replicate(s) from it"
    if away:
        summary += f"; unreachable (rejoin when back): {', '.join(away)}"
    return True, summary, []


def traffic_goal(views: list[ProxyView], primary: str) -> list[str]:
    """What is left for the proxies to send writes to `primary` alone."""
    left = []
    for view in views:
        if view.error:
            left.append(f"{view.describe()}; check that HAProxy runs and its runtime API answers")
            continue
        writers = view.ready_writers()
        if set(writers) != {primary}:
            left.append(f"proxy {view.proxy} sends writes to {', '.join(writers) or 'no server'}, not to {primary} "
                        f"alone; rerun with the switch-traffic step or set the servers' states by hand")
    return left


@register
class ReplicationGoal(Action[MariaDBAPI, NoParams]):
    name = "mariadb.goal_replication"
    effect = Effect.READ
    description = "Goal: exactly one writable primary, every reachable server replicating from it"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="observe every server: one writable primary, the others replicate from it")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        fencing = ctx.facts.maybe("fencing", Fencing)
        fenced = frozenset(m.member for m in fencing.members if m.safe) if fencing is not None else frozenset()

        def look() -> GoalLook:
            view = ctx.backend.observe()
            holds, summary, left = replication_goal(view, fenced)
            primaries = writable_primaries(view)
            if ctx.cluster.proxies and len(primaries) == 1:
                traffic = traffic_goal(ctx.backend.proxy_views(), primaries[0].name)
                if traffic:
                    holds, summary, left = False, summary + "; but " + "; ".join(traffic), [*left, *traffic]
                else:
                    summary += f"; the proxies send writes to {primaries[0].name} alone"
            return GoalLook(holds, summary, left, _view_lines(view))

        # A replica repointed a moment ago may still be connecting: give it a few seconds.
        return judge_goal(ctx, look, seconds=min(5.0, ctx.cluster.timeouts.catch_up), interval=0.2)

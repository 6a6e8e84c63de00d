"""The bodies of the fencing and traffic steps MariaDB and Galera share: fence the members
that must not take writes, switch each proxy's write backend to the new primary and prove
with a canary where writes land, put rejoined members back as the inventory says. Each
datastore's actions call these with its own facts (which primary, which members)."""

from __future__ import annotations

from collections.abc import Callable

from drengine.clock import Clock
from drengine.datastores.mysql_fencing import (
    FenceAttempt,
    Fencing,
    MemberFence,
    fence_member,
    fence_risk,
    fence_statements,
    needs_fencing,
)
from drengine.datastores.mysql_pool import HEARTBEAT_DDL, MemberState, Sql
from drengine.datastores.mysql_traffic import (
    TRAFFIC_CHECK,
    LandedOn,
    ProxyChange,
    Statements,
    TrafficAPI,
    apply_changes,
    change_statements,
    identities,
    readmit_changes,
    switch_changes,
    write_through,
)
from drengine.errors import DrengineError
from drengine.haproxy import ProxyView
from drengine.steps import GateLevel, Proposal, Statement, StepResult

Target = tuple[str, MemberState, str]  # member, state seen by the probe, its error
_SEEN: dict[MemberState, str] = {
    "up": "answers (the safety check was overridden)",
    "hung": "accepted the connection and then said nothing (hung, or overloaded)",
    "unreachable": "gave no answer (down, or cut off from drengine by a partition)",
    "down": "refused the connection (not running)",
}


# -- fencing ----------------------------------------------------------------------------------------


def fenced_before_interruption(found: list[tuple[str, MemberState, str]]) -> StepResult:
    """A fence step found to have taken effect when a killed run resumes: each target as probed
    now (member, state, what was seen), so the next gates and the goal know how it was left."""
    fencing = Fencing(members=[MemberFence(member=name, state=state, attempts=[FenceAttempt(
        member=name, method="resume", outcome="dead" if state == "down" else "fenced",
        detail=f"found {seen} on resume")]) for name, state, seen in found])
    return StepResult(ok=True, summary="fenced before the interruption", facts={"fencing": fencing},
                      evidence=fencing.lines())


def fence_proposal(api: TrafficAPI, targets: list[Target], role: str) -> Proposal:
    """What fencing would do: the exact commands of every method, and a dangerous gate while a
    target may be alive (anything but a refused connection)."""
    alive = [t for t in targets if needs_fencing(t[1])]
    if not alive:
        dead = "; ".join(f"{name} {_SEEN.get(state, state)}" for name, state, _ in targets)
        return Proposal(summary=f"nothing to fence: {dead}" if targets else f"nothing to fence: no {role} is known",
                        nothing_to_do=True)
    statements = [s for name, _, _ in alive for s in fence_statements(api, api.cluster.member(name))]
    order = ", ".join(m.value for m in api.cluster.fence_methods())
    names = ", ".join(name for name, _, _ in alive)
    return Proposal(
        summary=f"fence {names} ({role}) before anything is promoted: {order}, in this order, until one works",
        reason="; ".join(f"{name} {_SEEN[state]}" for name, state, _ in alive)
               + ". It may take writes; fencing makes sure it cannot before another member takes over",
        statements=statements, gate=GateLevel.DANGEROUS, risks=[fence_risk(api.cluster, alive)],
    )


def fence_targets(api: TrafficAPI, targets: list[Target], record: Statements, clock: Clock, timeout: float) -> StepResult:
    fencing = Fencing(members=[
        fence_member(api, api.cluster.member(name), state, record, clock, timeout)
        for name, state, _ in targets if needs_fencing(state)
    ])
    summary = "; ".join(f"{m.member} {m.how()}" for m in fencing.members if m.safe) or "nothing fenced"
    if fencing.unsafe:
        summary = (f"NOT FENCED: {', '.join(fencing.unsafe)} (every method failed or did not apply); "
                   f"the next step is held at a dangerous gate (split brain). " + summary)
    return StepResult(ok=True, summary=summary, facts={"fencing": fencing}, evidence=fencing.lines())


def split_brain_risks(fencing: Fencing | None, unknown: list[Target]) -> list[str]:
    """Risks for the step that hands writes to another member: members neither confirmed dead
    nor fenced. `unknown` are the members to judge when no fencing step ran."""
    if fencing is not None:
        left = [m for m in fencing.members if not m.safe]
        return [f"split brain: {m.member} is neither confirmed dead nor fenced ({m.how()}); if it is alive, clients "
                f"that still reach it write data the new primary never has" for m in left]
    return [f"split brain: {name} is neither confirmed dead nor fenced ({state}{': ' + error if error else ''}); "
            f"if it is alive, clients that still reach it write data the new primary never has"
            for name, state, error in unknown if needs_fencing(state)]


# -- traffic ------------------------------------------------------------------------------------------


def _check_write(api: TrafficAPI, primary: str) -> Sql:
    return Sql("REPLACE INTO drengine.heartbeat (id, written_at) VALUES (%s, %s)",
               (f"{TRAFFIC_CHECK}-{primary}", round(api.clock.wall(), 3)))


def traffic_proposal(api: TrafficAPI, primary: str, out: frozenset[str], views: list[ProxyView]) -> Proposal:
    if not api.cluster.proxies:
        return Proposal(summary="no proxy in the inventory: applications reach the new primary however they are "
                                "configured to", nothing_to_do=True)
    changes = switch_changes(api.cluster, views, primary, out)
    statements = change_statements(api.cluster, changes)
    statements += [ddl.on(primary) for ddl in HEARTBEAT_DDL]
    for proxy in api.cluster.proxies:
        if proxy.frontend is not None:
            statements.append(Statement(f"proxy {proxy.name} frontend {proxy.frontend.address}:{proxy.frontend.port}",
                                        f"{_check_write(api, primary).shown()}; SELECT @@hostname, @@port, @@server_id"))
    return Proposal(
        summary=f"send writes through {', '.join(p.name for p in api.cluster.proxies)} to {primary} only, then prove "
                f"it with a write through each frontend",
        reason="the application connects through the proxies; until they point at the new primary it still reaches "
               "the old one (or nothing). Now: " + "; ".join(v.describe() for v in views),
        statements=statements, evidence=[v.describe() for v in views],
    )


def traffic_settled(api: TrafficAPI, primary: str, out: frozenset[str]) -> bool:
    views = api.proxy_views()
    return all(not v.error for v in views) and not switch_changes(api.cluster, views, primary, out)


def switch_traffic(api: TrafficAPI, primary: str, out: frozenset[str], record: Statements,
                   with_gtid: bool, applied: Callable[[list[ProxyChange]], None] | None = None) -> StepResult:
    """`applied` is told the proxy changes made (the action declares them in the change ledger)."""
    views = api.proxy_views()
    broken = [v for v in views if v.error]
    if broken:
        return StepResult(ok=False, summary="cannot switch traffic: " + "; ".join(v.describe() for v in broken)
                          + ". The database recovery stands; point the proxy at " + primary + " by hand "
                          "(`set server BACKEND/SERVER state ready` on its runtime API), then resume",
                          evidence=[v.describe() for v in views])
    changes: list[ProxyChange] = switch_changes(api.cluster, views, primary, out)
    apply_changes(api, changes, record)
    if applied is not None:
        applied(changes)
    return prove_writes(api, primary, record, with_gtid, done=f"{len(changes)} change(s) on the proxies")


def prove_writes(api: TrafficAPI, primary: str, record: Statements, with_gtid: bool, done: str) -> StepResult:
    """A canary through each write frontend must land on `primary` (its identity, asked directly, matches)."""
    for ddl in HEARTBEAT_DDL:  # the canary's table, made by drengine's own account on the primary
        api.execute(primary, ddl)
        record(ddl.on(primary), "ok")
    views = api.proxy_views()
    evidence = [v.describe() for v in views]
    problems = [f"{v.proxy}: still sends writes to {', '.join(w for w in v.ready_writers() if w != primary)}"
                for v in views if set(v.ready_writers()) - {primary}]
    known = identities(api, [m.name for m in api.cluster.members if m.name == primary])
    for proxy in api.cluster.proxies:
        if proxy.frontend is None:
            continue
        write = _check_write(api, primary)
        try:
            landed: LandedOn = write_through(api, proxy.name, write, known, with_gtid)
        except DrengineError as exc:
            problems.append(f"{proxy.name}: the canary through {proxy.frontend.address}:{proxy.frontend.port} failed: {exc}")
            continue
        proof = f"{landed.identity}" + (f", GTID {landed.gtid}" if landed.gtid else "")
        record(Statement(f"proxy {proxy.name} frontend", write.shown()), f"landed on {landed.member or '?'} ({proof})")
        evidence.append(f"canary through {proxy.name} ({proxy.frontend.address}:{proxy.frontend.port}) landed on "
                        f"{landed.member or 'an unknown server'}: {proof}")
        if landed.member != primary:
            problems.append(f"{proxy.name}: the canary landed on {landed.identity}, not on {primary} ({known.get(primary)})")
    if problems:
        return StepResult(ok=False, summary="writes do not reach " + primary + " only: " + "; ".join(problems),
                          evidence=evidence)
    return StepResult(ok=True, summary=f"{done}; writes through {', '.join(p.name for p in api.cluster.proxies)} "
                                       f"reach {primary}", evidence=evidence)


def readmit_proposal(api: TrafficAPI, members: list[str], primary: str) -> Proposal:
    if not api.cluster.proxies or not members:
        return Proposal(summary="no proxy to update" if not api.cluster.proxies else "no rejoined member",
                        nothing_to_do=True)
    views = api.proxy_views()
    changes = readmit_changes(api.cluster, views, members, primary)
    return Proposal(summary=f"put {', '.join(members)} back in the proxies as the inventory says",
                    reason="read backends: " + ", ".join(f"{p.name} {p.rejoined}" for p in api.cluster.proxies)
                           + "; write backends: only the primary takes writes",
                    statements=change_statements(api.cluster, changes), nothing_to_do=not changes,
                    evidence=[v.describe() for v in views])


def readmit(api: TrafficAPI, members: list[str], primary: str, record: Statements,
            readmitted: Callable[[list[str]], None] | None = None) -> StepResult:
    """`readmitted` is told every read server of the members, now as the inventory says (ledger closes)."""
    views = api.proxy_views()
    broken = [v.describe() for v in views if v.error]
    if broken:
        return StepResult(ok=False, summary="cannot update the proxies: " + "; ".join(broken))
    changes = readmit_changes(api.cluster, views, members, primary)
    apply_changes(api, changes, record)
    if readmitted is not None:
        readmitted([f"{v.proxy} {s.backend}/{s.server}" for v in views for s in v.servers
                    if s.member in members and s.role == "read"])
    after = api.proxy_views()
    return StepResult(ok=True, summary=f"{len(changes)} change(s): " + ("; ".join(c.why for c in changes) or "none"),
                      evidence=[v.describe() for v in after])

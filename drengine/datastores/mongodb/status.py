"""What a MongoDB replica-set observation means for `drengine status`: the primary (or who
believes in one), each member's state and optime and how far it trails the newest, dead and
hung members with the error, and whether mongodb-force-primary or mongodb-rejoin applies.
Pure over the view; the refusals it quotes are the runbooks' own."""

from __future__ import annotations

from drengine.datastores.mongodb.connector import MongoAPI
from drengine.datastores.mongodb.decisions import check_majority_lost, choose_survivor, primaries_seen
from drengine.datastores.mongodb.setview import MemberView, SetView
from drengine.inventory import Cluster
from drengine.status import Advice, MemberState, MemberStatus, Reading, Verdict, classify_error, down_words

HEALTHY_STATES = ("PRIMARY", "SECONDARY", "ARBITER")
LAG_WARN_SECONDS = 60


def assess(cluster: Cluster, backend: MongoAPI) -> Reading:
    return read_view(backend.observe())


def _newest(view: SetView) -> int | None:
    stamps = [m.optime.seconds for m in view.reachable() if m.optime is not None and m.optime.term >= 0]
    return max(stamps) if stamps else None


def _row(m: MemberView, newest: int | None) -> MemberStatus:
    if not m.reachable:
        return MemberStatus(name=m.name, state=classify_error(m.error), error=m.error)
    role = m.state or "unknown"
    if m.config is not None:
        entry = m.config.member_with_host(m.config_host)
        if entry is not None and (entry.priority == 0 or entry.votes == 0 or entry.hidden):
            role += f" (priority {entry.priority:g}, votes {entry.votes}{', hidden' if entry.hidden else ''})"
    lag = ""
    if m.optime is not None and newest is not None and m.state not in ("ARBITER",):
        lag = f"{newest - m.optime.seconds} s"
    down = [p for p in m.peers if not p.healthy]
    note = f"sees {len(down)} member(s) unreachable" if down else ""
    return MemberStatus(name=m.name, role=role, state=MemberState.REACHABLE,
                        position=m.optime.show() if m.optime else "-", lag=lag, note=note)


def _down(m: MemberView) -> str:
    return f"{m.name} is {down_words(classify_error(m.error), m.error)}"


def read_view(view: SetView) -> Reading:
    newest = _newest(view)
    rows = [_row(m, newest) for m in view.members]
    if not view.reachable():
        return Reading(verdict=Verdict.DOWN, members=rows, headline="no member answered: the replica set is down "
                       "or cut off from here", evidence=[_down(m) for m in view.members],
                       advice=[Advice(why="start the members (or restore the network to them); nothing can be "
                                          "forced on a set where no member answers")])
    primaries = primaries_seen(view)
    if len(primaries) > 1:
        names = ", ".join(sorted(primaries))
        return Reading(verdict=Verdict.SPLIT, members=rows,
                       headline=f"{len(primaries)} members are believed PRIMARY ({names}): both sides may take writes",
                       evidence=[primaries[n] for n in sorted(primaries)],
                       advice=[Advice(why=f"decide which of {names} survives; shut the other down (its writes are "
                                          f"rolled back when it rejoins), then plan mongodb-rejoin for it",
                                      runbook="mongodb-rejoin")])
    if primaries:
        return _with_primary(view, next(iter(primaries)), rows)
    refusal = check_majority_lost(view)
    if refusal is not None:
        return Reading(verdict=Verdict.DEGRADED, members=rows,
                       headline="no primary yet, but a voting majority is healthy: the set should elect one by itself",
                       evidence=[f"observed: {refusal.observed}", refusal.why],
                       advice=[Advice(why="wait a few seconds and ask again; if no primary is elected, look at "
                                          "priorities, frozen members and replication lag")])
    decision = choose_survivor(view)
    evidence = [_down(m) for m in view.members if not m.reachable]
    evidence += [f"{c.name}: optime {c.optime}" + ("" if c.eligible else f" (cannot be primary: {c.note})")
                 for c in decision.ranking]
    headline = f"the majority is lost and no member is PRIMARY ({len(view.reachable())} of {len(view.members)} answer)"
    if decision.chosen is None:
        return Reading(verdict=Verdict.DOWN, members=rows, headline=headline, evidence=[*evidence, decision.reason],
                       advice=[Advice(why="bring members back; no survivor holds data that can be promoted")])
    evidence.append(f"the most advanced survivor is {decision.chosen}: {decision.reason}")
    evidence += [f"RISK: {r}" for r in decision.risks]
    return Reading(verdict=Verdict.DOWN, members=rows, headline=f"{headline}. Most advanced survivor: {decision.chosen}",
                   evidence=evidence,
                   advice=[Advice(runbook="mongodb-force-primary",
                                  why=f"force a config of the survivors so that {decision.chosen} becomes primary "
                                      f"(a dangerous gate: the removed members must stay down)")])


def _with_primary(view: SetView, primary: str, rows: list[MemberStatus]) -> Reading:
    problems: list[str] = []
    rejoin: list[str] = []
    head = view.member(primary)
    for m in view.members:
        if m.name == primary:
            continue
        if not m.reachable:
            problems.append(_down(m))
        elif m.state in ("REMOVED", "STARTUP"):
            rejoin.append(m.name)
            problems.append(f"{m.name} is {m.state}: it is not part of the set's config")
        elif m.state not in HEALTHY_STATES:
            problems.append(f"{m.name} is {m.state}")
        elif head.optime and m.optime and head.optime.seconds - m.optime.seconds > LAG_WARN_SECONDS:
            problems.append(f"{m.name} is {head.optime.seconds - m.optime.seconds} s behind {primary}")
        elif not any(p.healthy and p.state == "PRIMARY" for p in m.peers) and m.peers:
            # drengine reaches it, but it does not see the primary: a partition between members.
            unseen = [view.name_of(p.host) for p in m.peers if not p.healthy]
            problems.append(f"{m.name} is {m.state} but does not see the primary (it sees {', '.join(unseen)} "
                            f"unreachable): a partition between members")
    if not problems:
        return Reading(verdict=Verdict.HEALTHY, members=rows,
                       headline=f"{primary} is PRIMARY; every other member is healthy")
    advice = []
    if rejoin:
        advice.append(Advice(runbook="mongodb-rejoin", why=f"add {', '.join(rejoin)} back to the set (wiped first)"))
    dead = [m.name for m in view.members if not m.reachable]
    if dead:
        advice.append(Advice(why=f"bring {', '.join(dead)} back (start a dead member, restart a hung one); a member "
                                 f"that comes back rejoins by itself"))
    return Reading(verdict=Verdict.DEGRADED, members=rows, evidence=problems, advice=advice,
                   headline=f"{primary} is PRIMARY and takes writes, but {len(problems)} member(s) need attention")

"""MariaDB replication decisions, pure and without I/O: which replica to promote (and every
way data could be lost), which returned servers may rejoin (errant transactions), and the
facts they hand to the steps of the MariaDB runbooks (mariadb/actions.py)."""

from __future__ import annotations

from drengine import gtid
from drengine.datastores.mariadb.connector import ClusterView, ServerView
from drengine.steps import Fact, fact

# -- facts -----------------------------------------------------------------------------------------


@fact
class Candidate(Fact):
    name: str
    received: str
    applied: str
    eligible: bool
    note: str = ""


@fact
class SurvivorDecision(Fact):
    chosen: str | None
    reason: str
    ranking: list[Candidate] = []
    risks: list[str] = []
    catch_up_to: str = ""  # the chosen replica's received position, to apply before promotion
    old_primary: str = ""


@fact
class NewPrimary(Fact):
    name: str
    address: str
    port: int


@fact
class Stray(Fact):
    name: str
    errant: dict[int, int] = {}  # domain -> transactions the primary lacks
    errant_pos: str = ""


@fact
class RejoinDecision(Fact):
    primary: str | None
    reason: str
    strays: list[Stray] = []


# -- pure decisions --------------------------------------------------------------------------------


def _received(server: ServerView) -> gtid.Position:
    io = gtid.parse(server.channels[0].gtid_io_pos) if server.channels else {}
    return gtid.merge_max(io, gtid.parse(server.gtid_current_pos), gtid.parse(server.gtid_slave_pos))


def _applied(server: ServerView) -> gtid.Position:
    return gtid.merge_max(gtid.parse(server.gtid_slave_pos), gtid.parse(server.gtid_current_pos))


def _old_primary(view: ClusterView) -> str:
    for server in view.servers:
        for ch in server.channels:
            for other in view.servers:
                if (other.address, other.port) == (ch.master_host, ch.master_port) or other.name == ch.master_host:
                    return other.name
            return f"{ch.master_host}:{ch.master_port}"
    return ""


def _holdings(server: ServerView) -> gtid.State:
    """The last sequence number a server holds per (domain, originating server_id): its binary
    log state, and each of its positions (current, slave, received) on its own: merged per
    domain first, a local write on a replica without a binary log hid behind what it received
    (found by the explorer)."""
    state = gtid.parse_state(server.gtid_binlog_state)
    positions = [server.gtid_current_pos, server.gtid_slave_pos, *(ch.gtid_io_pos for ch in server.channels)]
    for text in positions:
        for d, g in gtid.parse(text).items():
            state[(d, g.server)] = max(state.get((d, g.server), 0), g.seq)
    return state


def _errant_against(other: ServerView, best: ServerView) -> dict[tuple[int, int], int]:
    """Transactions `other` holds that `best` never had, even where `best` is further on in
    the domain (found by the explorer: an errant transaction on a replica that is behind was
    not named, and promoting the most advanced replica lost it silently)."""
    mine = _holdings(best)
    return {key: seq for key, seq in _holdings(other).items() if seq > mine.get(key, 0)}


def _lost_elsewhere(view: ClusterView, best: ServerView) -> list[str]:
    """What every server that answers holds and `best` lacks, replica or not: a read-only old
    primary back without replication (or one the operator overrode the check for) may too."""
    best_rec = _received(best)
    risks: list[str] = []
    for other in (s for s in view.servers if s.reachable):
        if other is best:
            continue
        ahead = gtid.missing(best_rec, _received(other))
        if ahead:
            gaps = ", ".join(f"{n} in domain {d}" for d, n in sorted(ahead.items()))
            risks.append(f"{other.name} has transactions {best.name} lacks ({gaps}); they would be lost or make "
                         f"{other.name} fail to follow the new primary")
            continue
        errant = _errant_against(other, best)
        if errant:
            shown = ", ".join(f"{d}-{server}-{seq}" for (d, server), seq in sorted(errant.items()))
            risks.append(f"{other.name} has transactions {best.name} never had (errant GTIDs up to {shown}, written "
                         f"on it or on a server only it followed); they would be lost, and {other.name} would stop "
                         f"replicating from the new primary with a GTID strict-mode error")
    return risks


def choose_survivor(view: ClusterView) -> SurvivorDecision:
    """Pick the replica to promote: eligible (binary log and log_slave_updates on), then the
    highest received position domain by domain, then the highest applied position (what
    MaxScale and orchestrator do). Say why, and name every way data could be lost."""
    old = _old_primary(view)
    replicas = [s for s in view.servers if s.reachable and s.channels]
    rows: list[Candidate] = []
    eligible: list[ServerView] = []
    for s in replicas:
        note = ""
        if not s.log_bin:
            note = "binary log off: the other replicas could not follow it by GTID"
        elif not s.log_slave_updates:
            note = "log_slave_updates off: its binary log lacks the replicated transactions"
        rows.append(Candidate(name=s.name, received=gtid.render(_received(s)), applied=gtid.render(_applied(s)),
                              eligible=not note, note=note))
        if not note:
            eligible.append(s)
    unreachable = [s for s in view.servers if not s.reachable and s.name != old]
    if not eligible:
        seen = ", ".join(f"{s.name} ({'unreachable: ' + s.error if not s.reachable else 'no replication configured'})"
                         for s in view.servers) or "no members"
        why = "no reachable replica can be promoted"
        if replicas:
            why += " (" + "; ".join(f"{r.name}: {r.note}" for r in rows if r.note) + ")"
        return SurvivorDecision(chosen=None, reason=f"{why}. Observed: {seen}.", ranking=rows, old_primary=old)
    def key(s: ServerView) -> tuple[int, int, int, int]:
        rec = _received(s)
        dominates = sum(1 for o in eligible if gtid.covers(rec, _received(o)))
        return (dominates, gtid.total(rec), gtid.total(_applied(s)), -view.servers.index(s))
    ranked = sorted(eligible, key=key, reverse=True)
    best = ranked[0]
    best_rec = _received(best)
    risks = _lost_elsewhere(view, best)
    for s in unreachable:
        risks.append(f"{s.name} could not be reached ({s.error}); if it received more than {best.name}, "
                     f"those transactions are lost")
    applied = _applied(best)
    behind = gtid.missing(applied, best_rec)
    others = [r for r in ranked[1:]]
    reason = f"{best.name} has received the most from {old or 'the old primary'}: {gtid.render(best_rec) or 'nothing'}"
    if others:
        reason += "; " + ", ".join(f"{o.name} received {gtid.render(_received(o)) or 'nothing'}" for o in others)
    if behind:
        reason += (f". It has not applied everything it received yet (applied {gtid.render(applied) or 'nothing'}): "
                   f"it will apply its relay log first, or those transactions would be thrown away")
    excluded = [r for r in rows if not r.eligible]
    if excluded:
        reason += ". Not eligible: " + "; ".join(f"{r.name} ({r.note})" for r in excluded)
    return SurvivorDecision(
        chosen=best.name, reason=reason, ranking=rows, risks=risks,
        catch_up_to=gtid.render(best_rec) if behind else "", old_primary=old,
    )


def writable_primaries(view: ClusterView) -> list[ServerView]:
    return [s for s in view.servers if s.is_writable_primary]


def plan_rejoin(view: ClusterView) -> RejoinDecision:
    """Find the current primary (the writable server the replicas follow) and the servers
    that do not follow it; flag those holding transactions the primary lacks (errant GTIDs)."""
    writable = writable_primaries(view)
    followed: dict[str, int] = {}
    for s in view.servers:
        for ch in s.channels:
            for w in writable:
                if (w.address, w.port) == (ch.master_host, ch.master_port):
                    followed[w.name] = followed.get(w.name, 0) + 1
    if not writable:
        return RejoinDecision(primary=None, reason="no reachable server is a writable primary (read_only=0, no replication); "
                              "promote one first (mariadb-promote-survivor)")
    if len(writable) > 1 and len(followed) != 1:
        names = ", ".join(w.name for w in writable)
        return RejoinDecision(primary=None, reason=f"several writable servers ({names}) and the replicas do not tell which "
                              f"one is the primary; decide by hand which one keeps its data")
    primary = next(w for w in writable if not followed or w.name in followed)
    pstate = gtid.parse_state(primary.gtid_binlog_state)
    strays = []
    for s in view.servers:
        if s is primary or not s.reachable:
            continue
        if any((ch.master_host, ch.master_port) == (primary.address, primary.port) for ch in s.channels):
            continue
        own = gtid.merge_max(gtid.parse(s.gtid_binlog_pos), gtid.parse(s.gtid_current_pos))
        errant = gtid.errant(own, pstate)
        strays.append(Stray(name=s.name, errant=errant, errant_pos=gtid.render(own) if errant else ""))
    if not strays:
        reason = f"every reachable server already follows {primary.name}"
    else:
        reason = f"{primary.name} is the primary ({followed.get(primary.name, 0)} replica(s) follow it); " + \
            ", ".join(s.name for s in strays) + " do(es) not follow it"
    return RejoinDecision(primary=primary.name, reason=reason, strays=strays)

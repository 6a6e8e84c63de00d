"""What a MariaDB replication observation means for `drengine status`: who is primary, who
follows it and how far behind, who is dead or hung (and the error), and which runbook applies.
The reading is a pure function of the view; the decisions it quotes are the runbooks' own."""

from __future__ import annotations

from drengine.datastores.mariadb.connector import ClusterView, MariaDBAPI, ServerView
from drengine.datastores.mariadb.decisions import choose_survivor, writable_primaries
from drengine.datastores.mysql_traffic import proxy_statuses
from drengine.inventory import Cluster
from drengine.status import Advice, MemberState, MemberStatus, Reading, Verdict, down_words

# Replicas further behind than this are reported as lagging (the cluster stays healthy).
LAG_WARN_SECONDS = 60


# The probe already tells a dead server from a hung one (the pool reads the failure by type and errno).
STATES = {"up": MemberState.REACHABLE, "down": MemberState.DEAD, "hung": MemberState.HUNG,
          "unreachable": MemberState.UNREACHABLE}


def assess(cluster: Cluster, backend: MariaDBAPI) -> Reading:
    reading = read_view(backend.observe())
    if not cluster.proxies:
        return reading
    return reading.model_copy(update={"proxies": proxy_statuses(backend.proxy_views())})


def _source_of(view: ClusterView, server: ServerView) -> str:
    """The member (by name) a replica's first channel points at, else its host:port."""
    if not server.channels:
        return ""
    ch = server.channels[0]
    for other in view.servers:
        if (other.address, other.port) == (ch.master_host, ch.master_port) or other.name == ch.master_host:
            return other.name
    return f"{ch.master_host}:{ch.master_port}"


def _old_primary(view: ClusterView) -> str:
    """The server the replicas point at (the most named one)."""
    named: dict[str, int] = {}
    for s in view.servers:
        if s.reachable and s.channels:
            src = _source_of(view, s)
            named[src] = named.get(src, 0) + 1
    return max(named, key=lambda n: named[n]) if named else ""


def _row(view: ClusterView, s: ServerView, old: str) -> MemberStatus:
    if not s.reachable:
        role = "primary (the replicas point at it)" if s.name == old else ""
        return MemberStatus(name=s.name, role=role, state=STATES[s.state], error=s.error)
    if s.is_writable_primary:
        return MemberStatus(name=s.name, role="primary", state=MemberState.REACHABLE,
                            position=s.gtid_binlog_pos or s.gtid_current_pos or "-")
    if not s.channels:
        return MemberStatus(name=s.name, role="read-only, replicates from nobody", state=MemberState.REACHABLE,
                            position=s.gtid_current_pos or "-",
                            note="not a replica: an old primary that came back, or a replica whose replication was reset")
    ch = s.channels[0]
    received = ch.gtid_io_pos or "-"
    applied = s.gtid_slave_pos or "-"
    position = f"received {received}, applied {applied}" if received != applied else f"received and applied {applied}"
    if ch.io_running == "Yes" and ch.sql_running == "Yes":
        lag = f"{ch.seconds_behind_master} s" if ch.seconds_behind_master is not None else "?"
    else:
        lag = f"IO {ch.io_running}, SQL {ch.sql_running}"
    notes = []
    if ch.last_io_errno:
        notes.append(f"IO error {ch.last_io_errno}: {ch.last_io_error}".rstrip(": "))
    if ch.last_sql_errno:
        notes.append(f"SQL error {ch.last_sql_errno}: {ch.last_sql_error}".rstrip(": "))
    return MemberStatus(name=s.name, role=f"replica of {_source_of(view, s)}", state=MemberState.REACHABLE,
                        position=position, lag=lag, note="; ".join(notes))


def _down_words(s: ServerView) -> str:
    return down_words(STATES[s.state], s.error)


def read_view(view: ClusterView) -> Reading:
    old = _old_primary(view)
    rows = [_row(view, s, old) for s in view.servers]
    writable = writable_primaries(view)
    reachable = [s for s in view.servers if s.reachable]
    if not reachable:
        return Reading(verdict=Verdict.DOWN, members=rows,
                       headline="no server answered: the whole cluster is down or cut off from here",
                       evidence=[f"{s.name}: {_down_words(s)}" for s in view.servers],
                       advice=[Advice(why="start the servers (or restore the network to them); no runbook can act "
                                          "on a cluster where nothing answers")])
    if len(writable) > 1:
        return _split(view, writable, rows)
    if writable:
        return _with_primary(view, writable[0], rows)
    return _without_primary(view, old, rows)


def _split(view: ClusterView, writable: list[ServerView], rows: list[MemberStatus]) -> Reading:
    names = ", ".join(s.name for s in writable)
    return Reading(
        verdict=Verdict.SPLIT, members=rows,
        headline=f"{len(writable)} writable primaries ({names}): writes to each are never seen by the other (split brain)",
        evidence=[f"{s.name}: read_only=0, no replication, binlog {s.gtid_binlog_pos or '-'}" for s in writable],
        advice=[Advice(runbook="mariadb-rejoin",
                       why=f"decide which of {names} survives (the one the applications write to), set the other "
                           f"read-only (SET GLOBAL read_only=1) and plan its rejoin; a server holding writes the "
                           f"survivor lacks is refused and must be rebuilt")],
    )


def _with_primary(view: ClusterView, primary: ServerView, rows: list[MemberStatus]) -> Reading:
    problems: list[str] = []
    advice: list[Advice] = []
    strays: list[str] = []
    for s in view.servers:
        if s is primary:
            continue
        if not s.reachable:
            problems.append(f"replica {s.name} is {_down_words(s)}")
            continue
        if not s.channels:
            strays.append(s.name)
            problems.append(f"{s.name} is read-only and replicates from nobody")
            continue
        ch = s.channels[0]
        source = _source_of(view, s)
        if source != primary.name:
            strays.append(s.name)
            problems.append(f"{s.name} replicates from {source}, not from the primary {primary.name}")
        elif ch.io_running != "Yes" or ch.sql_running != "Yes":
            errors = "; ".join(e for e in (ch.last_io_error, ch.last_sql_error) if e)
            problems.append(f"{s.name} follows {primary.name} but IO={ch.io_running} SQL={ch.sql_running}"
                            + (f" ({errors})" if errors else ""))
        elif ch.seconds_behind_master is not None and ch.seconds_behind_master > LAG_WARN_SECONDS:
            problems.append(f"{s.name} is {ch.seconds_behind_master} s behind {primary.name}")
    dead = [s.name for s in view.servers if not s.reachable]
    if dead:
        advice.append(Advice(why=f"start {', '.join(dead)} again (the inventory's service.start, or by hand); a "
                                 f"restarted old primary comes back read-only and is rejoined with mariadb-rejoin"))
    if strays:
        advice.append(Advice(runbook="mariadb-rejoin",
                             why=f"make {', '.join(strays)} follow {primary.name} again (refused if it holds "
                                 f"transactions {primary.name} lacks)"))
    followers = len(view.servers) - 1 - len(problems)
    if not problems:
        lags = [s.channels[0].seconds_behind_master for s in view.servers if s is not primary and s.channels]
        worst = max((x for x in lags if x is not None), default=0)
        return Reading(verdict=Verdict.HEALTHY, members=rows,
                       headline=f"{primary.name} is the primary; {followers} replica(s) follow it with both threads "
                                f"running (at most {worst} s behind)")
    return Reading(verdict=Verdict.DEGRADED, members=rows, evidence=problems, advice=advice,
                   headline=f"{primary.name} is the primary and takes writes, but {len(problems)} of "
                            f"{len(view.servers) - 1} replica(s) need attention")


def _without_primary(view: ClusterView, old: str, rows: list[MemberStatus]) -> Reading:
    evidence: list[str] = []
    lost = next((s for s in view.servers if s.name == old), None)
    if lost is not None and not lost.reachable:
        headline = f"the primary {old} is down: {_down_words(lost)}"
    elif lost is not None:
        headline = f"no writable primary: {old}, which the replicas point at, answers but is read-only"
    else:
        headline = "no writable primary answers" + (f" (the replicas point at {old})" if old else "")
    receiving = [s.name for s in view.servers if s.reachable and any(ch.io_running == "Yes" for ch in s.channels)]
    if receiving:
        evidence.append(f"{', '.join(receiving)} still receive from {old or 'their primary'} (Slave_IO_Running: Yes): "
                        f"it may be alive and cut off from here, or hung and not yet noticed (slave_net_timeout); "
                        f"the runbook fences it before promoting, behind a dangerous gate")
    decision = choose_survivor(view)
    for c in decision.ranking:
        evidence.append(f"{c.name}: received {c.received or '-'}, applied {c.applied or '-'}"
                        + ("" if c.eligible else f" (cannot be promoted: {c.note})"))
    if decision.chosen is None:
        return Reading(verdict=Verdict.DOWN, members=rows, headline=headline,
                       evidence=[*evidence, f"no replica can be promoted: {decision.reason}"],
                       advice=[Advice(why="bring the primary back (start it), or a replica with its binary log on")])
    best = decision.chosen
    position = next((c.received for c in decision.ranking if c.name == best), "")
    line = f"the most advanced replica is {best} (received {position or '-'})"
    if decision.catch_up_to:
        line += "; it has not applied all it received yet: the runbook lets it apply its relay log before promoting it"
    evidence.append(line)
    evidence += [f"RISK: {r}" for r in decision.risks]
    return Reading(
        verdict=Verdict.DOWN, members=rows, headline=f"{headline}. Most advanced replica: {best}",
        evidence=evidence,
        advice=[Advice(runbook="mariadb-promote-survivor",
                       why=f"promote {best}, the most advanced replica, and repoint the others to it "
                           f"(the plan shows every statement; nothing is changed)")],
    )


"""The MariaDB oracle of `drengine explore`: from the simulator's own servers (never from the
runbooks' decisions or actions), what the best recovery could keep, which servers could take
writes, and whether a recovery can reach the goal at all.

Words, as the simulator's truth says them:
- reachable: running and answering (not hung);
- held: what a server has applied, and the relay log it can still apply (a relay log both
  threads stopped on is thrown away by the next start; a SQL thread stopped on an error does not
  apply it either);
- promotable: a reachable replica with its binary log and log_slave_updates on (the others could
  not follow it by GTID);
- accepts writes: a running or hung server with read_only=0 (a hung one takes writes when it wakes).
"""

from __future__ import annotations

from drengine.datastores.mariadb.sim import SimCluster, SimServer
from drengine.simstate import snapshot


def reachable(s: SimServer) -> bool:
    return s.alive and not s.hung


def accepts_writes(s: SimServer) -> bool:
    return s.alive and not s.read_only


def _domain_seq(gtid: str) -> tuple[str, int]:
    domain, _, seq = gtid.split("-")
    return domain, int(seq)


def held(s: SimServer) -> set[str]:
    """What the server could still hand on: applied, and a relay log its SQL thread can apply."""
    mine = {t.gtid for t in s.applied}
    if not s.relay_valid or s.sql_error:
        return mine
    last: dict[str, int] = {}  # domain -> highest sequence number applied
    for t in s.applied:
        domain, seq = _domain_seq(t.gtid)
        last[domain] = max(last.get(domain, 0), seq)
    for t in s.relay:
        if t.gtid in mine:
            continue
        domain, seq = _domain_seq(t.gtid)
        if seq <= last.get(domain, 0):
            break  # gtid_strict_mode stops the SQL thread here: this and what follows are never applied
        mine.add(t.gtid)
        last[domain] = seq
    return mine


def promotable(s: SimServer) -> bool:
    return reachable(s) and s.source is not None and s.log_bin and s.log_slave_updates


def better_choices(sim: SimCluster, promoted: SimServer, had: dict[str, set[str]]) -> list[tuple[str, list[str]]]:
    """The choices that would have lost strictly less than promoting `promoted` did: each
    promotable reachable server (the promoted one included, as it was before the run threw
    part of it away) whose holdings lose a strict subset of what the promotion lost, with the
    transactions it would have kept. `had`: what each server held before the run's statements
    discarded anything (a relay log reset, a CHANGE MASTER)."""
    everything: set[str] = set()
    for s in sim.servers:
        if reachable(s):
            everything |= had.get(s.name, set()) | held(s)
    kept = {t.gtid for t in promoted.applied}
    lost = everything - kept
    better = []
    for s in sim.servers:
        if s is not promoted and not promotable(s):
            continue
        theirs = had.get(s.name, set()) | held(s)
        would_lose = everything - theirs
        if would_lose < lost:
            better.append((s.name, sorted(lost - would_lose)))
    return better


def revived(sim: SimCluster) -> SimCluster:
    """A copy of the cluster where every dead server restarts (its configuration says
    read_only=1, as the lab's does) and every hung one wakes as it was."""
    copy = snapshot(sim)
    for s in copy.servers:
        if not s.alive:
            s.alive, s.hung, s.read_only = True, False, True
        s.hung = False
    return copy


def write_proxies(sim: SimCluster) -> dict[str, set[str]]:
    """Per simulated proxy, the members its write backends send writes to (admin state ready)."""
    return {p.name: {server for backend, servers in p.admin.items() if "write" in backend
                     for server, state in servers.items() if state == "ready"} for p in sim.proxies}


def replication_goal(sim: SimCluster) -> str | None:
    """None when exactly one server accepts writes, every other reachable server replicates from
    it with both threads running and no error, and every proxy sends writes to it alone."""
    sim = snapshot(sim)  # settled below: the state judged must not move
    sim.settle()
    writable = [s for s in sim.servers if accepts_writes(s)]
    if len(writable) != 1:
        return f"{len(writable)} servers accept writes ({', '.join(s.name for s in writable) or 'none'})"
    primary = writable[0]
    if not reachable(primary):
        return f"the only writable server, {primary.name}, does not answer"
    for s in sim.servers:
        if s is primary or not reachable(s):
            continue
        if s.source != primary.name or not (s.io_on and s.sql_on) or s.sql_error or s.io_error:
            return (f"{s.name} does not replicate from {primary.name} (source {s.source}, IO {s.io_on}, "
                    f"SQL {s.sql_on}, error {s.sql_error or s.io_error})")
    for proxy, writers in write_proxies(sim).items():
        if writers != {primary.name}:
            return f"proxy {proxy} sends writes to {', '.join(sorted(writers)) or 'no server'}, not to {primary.name} alone"
    return None


def _whole_relay_applicable(s: SimServer) -> bool:
    return held(s) == {t.gtid for t in s.applied} | {t.gtid for t in s.relay} and (s.relay_valid or not s.relay)


def promotion_possible(sim: SimCluster) -> str | None:
    """Can a recovery with every gate approved and no override promote a survivor that loses
    nothing and reach the goal? Only when no reachable server takes writes (the runbook's check
    refuses then), every hung server is one that takes writes (an old primary, fenced by its
    host), no reachable server follows nobody, and a promotable replica holds everything every
    reachable server holds."""
    if any(accepts_writes(s) and reachable(s) for s in sim.servers):
        return None
    if any(s.hung and (not accepts_writes(s) or indistinguishable(sim, s.name)) for s in sim.servers):
        return None  # only an old primary the replicas follow is fenced
    if any(reachable(s) and s.source is None for s in sim.servers):
        return None
    if any(reachable(s) and s.lag for s in sim.servers):
        return None  # the simulator's IO lag never ends: whoever follows with it misses the heartbeat
    if any(promotable(s) and not _whole_relay_applicable(s) for s in sim.servers):
        return None  # a runbook may rightly refuse to throw a received transaction away
    everything = set().union(*(held(s) for s in sim.servers if reachable(s)))
    for s in sim.servers:
        if promotable(s) and held(s) >= everything:
            return f"the primary is lost and {s.name}, a promotable replica, holds everything the reachable servers hold"
    return None


def rejoin_possible(sim: SimCluster) -> str | None:
    """Can a rejoin with every gate approved and no override reach the goal? When exactly one
    reachable server takes writes and follows nobody, nothing is hung, every reachable server
    that does not follow it holds nothing it lacks, and those that follow it replicate cleanly."""
    if any(s.hung for s in sim.servers):
        return None
    writable = [s for s in sim.servers if accepts_writes(s)]
    if len(writable) != 1 or not reachable(writable[0]) or writable[0].source is not None:
        return None
    primary = writable[0]
    theirs = {t.gtid for t in primary.applied}
    strays = []
    for s in sim.servers:
        if s is primary or not reachable(s):
            continue
        if s.lag or {t.gtid for t in s.applied} - theirs:
            return None  # the heartbeat never reaches it, or it holds what the primary lacks
        if s.source == primary.name:
            if not (s.io_on and s.sql_on) or s.sql_error or s.io_error:
                return None
            continue
        strays.append(s.name)
    if any(writers != {primary.name} for writers in write_proxies(sim).values()):
        return None  # the rejoin does not switch the write traffic
    return f"{primary.name} is the only primary; {', '.join(strays) or 'no server'} can rejoin it without losing anything"


def indistinguishable(sim: SimCluster, name: str) -> bool:
    """A hung server that no server replicates from: no recovery can tell a writable stray from
    a hung replica without fencing it, and fencing every hung replica would stop the one that
    may hold the most. Its taking writes beside a new primary is what no choice could avoid."""
    s = sim.server(name)
    return s.hung and not any(o.source == name for o in sim.servers)

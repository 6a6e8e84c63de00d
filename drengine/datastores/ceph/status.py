"""What a Ceph observation means for `drengine status`: monitors in and out of quorum, OSDs up
or down with their PG counts, PG states, pools whose I/O blocks, flags and lowered min_size a
degrade left behind, and which runbook applies (ceph-mon-quorum, ceph-degrade, ceph-restore).

Without a monitor quorum nothing can be read through librados: each monitor's port is then
tried through the backend (a refused port is a dead monitor; the simulated twin answers from
its model).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from drengine.datastores.ceph.backend import CephBackend, mon_id
from drengine.datastores.ceph.connector import CephSnapshot
from drengine.datastores.ceph.degrade_record import default_min_size
from drengine.datastores.ceph.explain import OPERATOR_FLAGS, explain_health, health_summary
from drengine.errors import ConnectError
from drengine.inventory import Cluster, Member
from drengine.status import Advice, MemberState, MemberStatus, Reading, Verdict


def assess(cluster: Cluster, backend: CephBackend) -> Reading:
    try:
        snap = backend.observe()
    except ConnectError as exc:
        if _quorum_answered(str(exc)):
            return partly_read(cluster, str(exc))
        mons = _mons(cluster)
        with ThreadPoolExecutor(max_workers=max(len(mons), 1), thread_name_prefix="mon-probe") as pool:
            alive = list(pool.map(lambda m: _mon_alive(backend, m), mons))
        return without_quorum(cluster, str(exc), alive)
    return read_snapshot(cluster, snap)


def _quorum_answered(error: str) -> bool:
    """`observe` asks `status` first: a later command that timed out means a quorum did answer
    (a PG listing waits for a manager, for instance)."""
    return "monitor command" in error and '"prefix": "status"' not in error


def partly_read(cluster: Cluster, error: str) -> Reading:
    rows = [MemberStatus(name=m.name, role=m.role or "", state=MemberState.UNKNOWN, error="not read") for m in cluster.members]
    return Reading(verdict=Verdict.UNKNOWN, members=rows, evidence=[error],
                   headline="the monitors answer, but the rest of the cluster could not be read in time "
                            "(PG listings need a running manager)",
                   advice=[Advice(why="check the manager (`ceph -s`: mgr), then ask again; raise timeouts.read if "
                                      "the cluster is only slow")])


def _mons(cluster: Cluster) -> list[Member]:
    return [m for m in cluster.members if m.role == "mon" or m.name.startswith("mon.")]


def _mon_alive(backend: CephBackend, member: Member) -> MemberStatus:
    """A monitor without quorum still runs: its port accepts. A refused port means it is dead."""
    port = backend.mon_listens(member)
    if port.state == "accepts":
        return MemberStatus(name=member.name, role="mon", state=MemberState.REACHABLE,
                            note="its port accepts connections, but it is not in a quorum")
    return MemberStatus(name=member.name, role="mon", state=MemberState.DEAD if port.state == "refused" else
                        MemberState.UNREACHABLE, error=port.error)


def without_quorum(cluster: Cluster, error: str, mons: list[MemberStatus]) -> Reading:
    rows = list(mons)
    names = {m.name for m in mons}
    rows += [MemberStatus(name=m.name, role=m.role or "", state=MemberState.UNKNOWN,
                          error="not readable without a monitor quorum") for m in cluster.members if m.name not in names]
    alive = [m.name for m in mons if m.state is MemberState.REACHABLE]
    dead = [m for m in mons if m.state is not MemberState.REACHABLE]
    evidence = [f"{m.name}: {m.state.value}: {m.error}" for m in dead]
    evidence.append(f"librados: {error}")
    if not alive and mons:
        return Reading(verdict=Verdict.DOWN, members=rows, evidence=evidence,
                       headline="no monitor answers: the cluster cannot be read or changed",
                       advice=[Advice(why="start the monitors (the inventory's service.start); with a majority "
                                          "back, the quorum forms by itself")])
    survivors = ", ".join(alive) or "none known"
    return Reading(verdict=Verdict.DOWN, members=rows, evidence=evidence,
                   headline=f"the monitors have lost quorum: {len(alive)} of {len(mons)} run ({survivors}); "
                            f"no monitor command answers (OSD I/O may still work)",
                   advice=[Advice(why=f"if the dead monitors come back, start them and the quorum forms by itself; "
                                      f"if they are gone for good, rebuild the quorum from {survivors} by monmap surgery",
                                  runbook="ceph-mon-quorum")])


def _rows(cluster: Cluster, snap: CephSnapshot) -> list[MemberStatus]:
    st = snap.status
    acting = Counter(o for pg in snap.pgs for o in pg.acting)
    primary = Counter(pg.primary for pg in snap.pgs)
    osds = {o.name: o for o in snap.osds}
    leader = st.quorum_names[0] if st.quorum_names else ""
    rows = []
    for m in cluster.members:
        if m.role == "mon" or m.name.startswith("mon."):
            name = mon_id(m.name)
            if name in st.quorum_names:
                rows.append(MemberStatus(name=m.name, role="mon (leader)" if name == leader else "mon",
                                         state=MemberState.REACHABLE, position="in quorum"))
            else:
                rows.append(MemberStatus(name=m.name, role="mon", state=MemberState.UNREACHABLE,
                                         error="out of quorum (dead, hung or cut off from the other monitors)"))
        elif m.name in osds:
            o = osds[m.name]
            where = f"{acting[o.id]} PGs ({primary[o.id]} as primary)"
            if o.up:
                rows.append(MemberStatus(name=m.name, role="osd", state=MemberState.REACHABLE, position=where,
                                         note="" if o.in_ else "out: holds no data by placement"))
            else:
                rows.append(MemberStatus(name=m.name, role="osd", state=MemberState.UNREACHABLE, position=where,
                                         error=f"down in the OSD map, {'still in' if o.in_ else 'out'}: the monitors "
                                               f"lost its heartbeats (dead, hung or cut off)"))
        elif m.role == "osd" or m.name.startswith("osd."):
            rows.append(MemberStatus(name=m.name, role="osd", state=MemberState.ABSENT,
                                     error="not in the OSD map"))
        else:
            rows.append(MemberStatus(name=m.name, role=m.role or "", state=MemberState.UNKNOWN,
                                     note="not probed by status (only monitors and OSDs are)"))
    return rows


def read_snapshot(cluster: Cluster, snap: CephSnapshot) -> Reading:
    rows = _rows(cluster, snap)
    facts = explain_health(snap)
    states = ", ".join(f"{n} {s}" for s, n in sorted(Counter(pg.state for pg in snap.pgs).items(), key=lambda kv: -kv[1]))
    facts.insert(1, f"PG states: {states or 'no PGs'}")
    down = [o.name for o in snap.down_osds]
    blocked = snap.pools_blocked()
    out_of_quorum = snap.status.monitors_out_of_quorum
    flags = [f for f in snap.flags if f in OPERATOR_FLAGS]
    lowered = [p for p in snap.pools if p.min_size < default_min_size(p.size)]
    unfound = sum(p.unfound for p in snap.pgs_with_unfound)
    advice: list[Advice] = []
    if blocked:
        waits = sorted({o for pg in snap.inactive_pgs for o in pg.waiting_for})
        headline = (f"I/O is blocked on pool(s) {', '.join(p.name for p in blocked)}: {len(snap.inactive_pgs)} PG(s) "
                    f"inactive" + (f", waiting for {', '.join(f'osd.{o}' for o in waits)}" if waits else ""))
        advice.append(Advice(runbook="ceph-degrade", why="serve again with reduced redundancy (noout, min_size on "
                                                          "exactly the blocked pools), shown command by command"))
        return Reading(verdict=Verdict.DOWN, members=rows, facts=facts, headline=headline,
                       evidence=[health_summary(snap)], advice=advice)
    problems: list[str] = []
    if unfound:
        problems.append(f"{unfound} unfound object(s): reads of them block until their copies return or they are "
                        f"given up")
        advice.append(Advice(runbook="ceph-degrade", why="bring back the OSDs that hold the unfound objects, or "
                                                          "decide about them (revert or delete) behind a dangerous gate"))
    if down:
        problems.append(f"{', '.join(down)} down; every PG still serves I/O")
        advice.append(Advice(why=f"start {', '.join(down)} again; while it is being fixed, ceph-degrade sets noout so "
                                 f"that no data is shuffled", runbook=None if unfound else "ceph-degrade"))
    if out_of_quorum:
        problems.append(f"monitor(s) {', '.join(out_of_quorum)} out of quorum; the quorum holds")
        advice.append(Advice(why=f"start mon.{', mon.'.join(out_of_quorum)} again"))
    if not down and (flags or lowered):
        changed = [f"flag {f} set" for f in flags] + [f"pool {p.name} min_size {p.min_size} (size {p.size})"
                                                      for p in lowered]
        problems.append("redundancy still reduced: " + ", ".join(changed))
        advice.append(Advice(runbook="ceph-restore", why="put back what a degrade changed (unset the flags, "
                                                          "restore min_size) now that every OSD is up"))
    if not problems and not snap.all_active_clean:
        problems.append("some PGs are not active+clean yet (recovering or backfilling)")
        advice.append(Advice(why="wait for recovery to finish; ask again"))
    if not problems and snap.status.health != "HEALTH_OK":
        problems.append(f"Ceph reports {snap.status.health}: " + "; ".join(c.summary for c in snap.status.checks))
    if not problems:
        return Reading(verdict=Verdict.HEALTHY, members=rows, facts=facts,
                       headline=f"HEALTH_OK: {snap.status.num_up_osds} OSDs up, every PG active+clean, "
                                f"{len(snap.status.quorum_names)} monitor(s) in quorum")
    return Reading(verdict=Verdict.DEGRADED, members=rows, facts=facts, evidence=problems, advice=advice,
                   headline=f"serving, with reduced redundancy: {problems[0]}")

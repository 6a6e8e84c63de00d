"""Pure decisions of the Ceph runbooks, each with a reason in operator words.

ceph-degrade: which OSD flags to set, which pools need a lower min_size (and to what), which
OSDs declared gone to mark out or lost, which PGs' unfound objects to give up, which pools to
prove I/O on. ceph-restore: which min_size to put back (only once enough copies are up) and
which flags to unset (only drengine's). ceph-mon-quorum: which monitors survive the monmap
surgery. No I/O: every function decides on snapshots and records given to it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from drengine.datastores.ceph.backend import MonProbe
from drengine.datastores.ceph.connector import CephSnapshot, PgInfo, PoolInfo
from drengine.datastores.ceph.explain import OPERATOR_FLAGS, osd_names, pg_list, pgs_of
from drengine.datastores.ceph.facts import DegradeRecord, MonSurgery, PoolMinSize

# Pools the manager owns: drengine never writes test objects into them.
MANAGER_APPLICATIONS = frozenset({"mgr", "mgr_devicehealth"})


# -- ceph-degrade ----------------------------------------------------------------------------------


class FlagDecision(BaseModel):
    model_config = ConfigDict(frozen=True)
    to_set: list[str]
    already: list[str]
    reason: str


def decide_flags(snap: CephSnapshot, wanted: Iterable[str]) -> FlagDecision:
    """Set noout/norebalance while OSDs are down, so Ceph neither marks them out (and starts
    copying their data elsewhere) nor shuffles data while hosts are being fixed."""
    wanted = list(dict.fromkeys(wanted))
    already = [f for f in wanted if f in snap.flags]
    missing = [f for f in wanted if f not in snap.flags]
    down = snap.down_osds
    if not down and not snap.inactive_pgs:
        return FlagDecision(to_set=[], already=already, reason="no OSD is down and every PG is active: nothing to hold still")
    what = f"{osd_names(o.id for o in down)} down" if down else f"{len(snap.inactive_pgs)} PGs inactive"
    if not missing:
        return FlagDecision(to_set=[], already=already, reason=f"{what}; {', '.join(already)} already set before this run "
                            f"(ceph-restore unsets only the flags a ceph-degrade run set)")
    reason = (f"{what}: {', '.join(missing)} keep(s) Ceph from marking them out after mon_osd_down_out_interval and "
              f"from moving data around while they are being fixed")
    if already:
        reason += f"; {', '.join(already)} already set before this run (ceph-restore unsets only flags a ceph-degrade run set)"
    return FlagDecision(to_set=missing, already=already, reason=reason)


class MinSizeDecision(BaseModel):
    model_config = ConfigDict(frozen=True)
    changes: list[PoolMinSize]
    not_helped: list[str]  # pools blocked for a reason a lower min_size does not fix, and why
    reason: str


def _helped_by_min_size(pg: PgInfo, pool: PoolInfo) -> bool:
    """A PG is short of copies, not of data: peered (it holds the latest data) with 1..min_size-1 copies up."""
    states = pg.states
    if states & {"down", "incomplete", "stale"}:
        return False
    return "peered" in states and 1 <= len(pg.acting) < pool.min_size


def decide_min_size(snap: CephSnapshot) -> MinSizeDecision:
    """Pools whose PGs are inactive only because too few copies are up: lower min_size to the
    copies that are up (1 when only one is), and on exactly those pools."""
    changes: list[PoolMinSize] = []
    not_helped: list[str] = []
    for pool in snap.pools:
        inactive = [pg for pg in pgs_of(snap, pool) if not pg.active]
        if not inactive:
            continue
        helped = [pg for pg in inactive if _helped_by_min_size(pg, pool)]
        others = [pg for pg in inactive if pg not in helped]
        if helped:
            up = min(len(pg.acting) for pg in helped)
            new = max(1, up)
            waiting = sorted({o for pg in helped for o in pg.waiting_for})
            changes.append(PoolMinSize(
                pool=pool.name, size=pool.size, old=pool.min_size, new=new,
                reason=(f"{len(helped)} PGs of {pool.name} have {up} of {pool.size} copies up, fewer than min_size "
                        f"{pool.min_size}, waiting for {osd_names(waiting)}"),
            ))
        if others:
            down = [pg for pg in others if pg.states & {"down", "incomplete"}]
            stale = [pg for pg in others if "stale" in pg.states or not pg.acting]
            rest = [pg for pg in others if pg not in down and pg not in stale]
            why = []
            if down:
                why.append(f"{len(down)} PGs ({pg_list(down)}) are down: only {osd_names({o for pg in down for o in pg.waiting_for})} "
                           f"hold(s) their latest data; bring it back, or declare it gone (--gone osd.N) to mark it lost")
            if stale:
                why.append(f"{len(stale)} PGs ({pg_list(stale)}) have no copy up at all (waiting for "
                           f"{osd_names({o for pg in stale for o in pg.waiting_for})}); bring one of those OSDs back")
            if rest:
                why.append(f"{len(rest)} PGs ({pg_list(rest)}) are still peering ({', '.join(sorted({pg.state for pg in rest}))}); "
                           f"look again in a few seconds")
            not_helped.append(f"pool {pool.name}: a lower min_size does not help: " + "; ".join(why))
    if changes:
        reason = "; ".join(c.reason for c in changes) + (". Lowering min_size lets them serve I/O on the copies that are up")
    elif snap.inactive_pgs:
        reason = "PGs are inactive, but not for want of copies up: " + " | ".join(not_helped)
    else:
        degraded = [p.name for p in snap.pools if any(not pg.clean for pg in pgs_of(snap, p))]
        reason = ("every PG is active: client I/O is served" +
                  (f" (pools {', '.join(degraded)} run degraded, with fewer copies)" if degraded else "") +
                  "; min_size stays as it is")
    return MinSizeDecision(changes=changes, not_helped=not_helped, reason=reason)


def gone_osd_ids(names: Iterable[str]) -> list[int]:
    """OSD ids among the members the operator declared gone for good (`osd.3`)."""
    ids = []
    for name in names:
        if name.startswith("osd.") and name[4:].isdigit():
            ids.append(int(name[4:]))
    return sorted(set(ids))


class OutDecision(BaseModel):
    model_config = ConfigDict(frozen=True)
    to_out: list[int]
    notes: list[str]
    reason: str


def decide_out(snap: CephSnapshot, gone: list[int]) -> OutDecision:
    """Mark OSDs declared gone `out`: Ceph then re-replicates their PGs onto the other OSDs
    (noout only stops the automatic marking, not this)."""
    to_out, notes = [], []
    by_id = {o.id: o for o in snap.osds}
    for i in gone:
        osd = by_id.get(i)
        if osd is None:
            notes.append(f"osd.{i} is not in the OSD map (already removed?)")
        elif osd.up:
            notes.append(f"osd.{i} was declared gone but is up; not marking it out (stop it first if it is really going away)")
        elif not osd.in_:
            notes.append(f"osd.{i} is already out")
        else:
            to_out.append(i)
    if not gone:
        reason = "no OSD was declared gone for good (--gone osd.N); waiting for the down OSDs to come back"
    elif to_out:
        reason = (f"{osd_names(to_out)} declared gone for good: marking out lets Ceph copy their PGs to the other OSDs "
                  f"(if there is room under the CRUSH rule)")
    else:
        reason = "; ".join(notes)
    return OutDecision(to_out=to_out, notes=notes, reason=reason)


class UnfoundSource(BaseModel):
    model_config = ConfigDict(frozen=True)
    pgid: str
    objects: int
    might_have: dict[int, str]  # OSD -> what the primary says about it ("osd is down", "already probed")


class LostDecision(BaseModel):
    model_config = ConfigDict(frozen=True)
    to_lose: list[int]
    reason: str
    risks: list[str]


def decide_lost(snap: CephSnapshot, gone: list[int], lost_already: set[int], unfound: list[UnfoundSource]) -> LostDecision:
    """Mark a gone OSD lost only when something waits for it: down PGs that only it can bring
    back, or unfound objects it may hold. Otherwise `out` is enough and nothing is given up."""
    by_id = {o.id: o for o in snap.osds}
    to_lose: list[int] = []
    why: list[str] = []
    for i in gone:
        osd = by_id.get(i)
        if osd is None or osd.up or i in lost_already:
            continue
        waiting = [pg for pg in snap.inactive_pgs if i in pg.waiting_for and pg.states & {"down", "incomplete", "stale"}]
        holding = [u for u in unfound if u.might_have.get(i, "") == "osd is down"]
        if waiting or holding:
            to_lose.append(i)
            parts = []
            if waiting:
                parts.append(f"{len(waiting)} PGs ({pg_list(waiting)}) wait for it to peer")
            if holding:
                parts.append(f"{sum(u.objects for u in holding)} unfound objects may be on it")
            why.append(f"osd.{i}: " + " and ".join(parts))
    if not to_lose:
        reason = ("no PG waits for an OSD declared gone" if gone else "no OSD was declared gone for good") + \
            ": nothing needs to be marked lost"
        return LostDecision(to_lose=[], reason=reason, risks=[])
    return LostDecision(
        to_lose=to_lose,
        reason="; ".join(why) + ". Marking it lost tells Ceph to stop waiting and peer with what the other OSDs have",
        risks=[f"writes only {osd_names(to_lose)} had are given up for good; if it comes back, its newer data is ignored"],
    )


class UnfoundDecision(BaseModel):
    model_config = ConfigDict(frozen=True)
    pgs: list[str]
    blocked: list[str]  # why some PGs cannot give up their unfound objects yet
    objects: int
    reason: str


def decide_unfound(unfound: list[UnfoundSource], lost: set[int], mode: str) -> UnfoundDecision:
    """`mark_unfound_lost` is only possible (and only wise) once every OSD that may hold the
    newest version has been probed or marked lost: otherwise bringing that OSD back finds them."""
    ready, blocked = [], []
    objects = 0
    for u in unfound:
        waiting = sorted(o for o, status in u.might_have.items() if status == "osd is down" and o not in lost)
        if waiting:
            blocked.append(f"PG {u.pgid}: {u.objects} unfound objects may be on {osd_names(waiting)}, which is down but "
                           f"not marked lost; bring it back (the objects are then found), or declare it gone for good "
                           f"(--gone {' --gone '.join(f'osd.{o}' for o in waiting)}) so it is marked lost first")
        else:
            ready.append(u.pgid)
            objects += u.objects
    if not unfound:
        reason = "no unfound objects"
    elif ready:
        action = "roll back to their previous version (or delete those that have none)" if mode == "revert" else "delete them"
        reason = f"{objects} objects in PGs {', '.join(ready)} have no copy anywhere that is up: {action} so the PGs can recover"
    else:
        reason = "unfound objects remain, but every one may still be on an OSD that can come back"
    return UnfoundDecision(pgs=ready, blocked=blocked, objects=objects, reason=reason)


def io_check_pools(before: CephSnapshot | None, now: CephSnapshot, changed: list[PoolMinSize]) -> tuple[list[str], list[str]]:
    """Pools to prove I/O on: the ones whose min_size was lowered and every pool the outage
    touched (a PG not active+clean). Pools the manager owns are left alone. Returns (pools, notes)."""
    names = {c.pool for c in changed}
    for snap in (before, now):
        if snap is None:
            continue
        for pool in snap.pools:
            if any(not pg.clean for pg in pgs_of(snap, pool)):
                names.add(pool.name)
    pools, notes = [], []
    for name in sorted(names):
        info = now.pool(name)
        if info is None:
            notes.append(f"pool {name} no longer exists")
        elif info.applications and set(info.applications) <= MANAGER_APPLICATIONS:
            notes.append(f"pool {name} belongs to the manager ({', '.join(info.applications)}): not written to")
        else:
            pools.append(name)
    return pools, notes


# -- ceph-restore ----------------------------------------------------------------------------------


class RestoreDecision(BaseModel):
    model_config = ConfigDict(frozen=True)
    changes: list[PoolMinSize]  # old = what it is now, new = what to put back
    held: list[str]  # pools not restored yet, and why
    reason: str


def decide_restore_min_size(record: DegradeRecord, snap: CephSnapshot) -> RestoreDecision:
    """Put each pool's recorded min_size back, but only once enough copies are up: a min_size
    above the copies a PG has would block its I/O again."""
    changes: list[PoolMinSize] = []
    held: list[str] = []
    done: list[str] = []
    for rec in record.min_size:
        pool = snap.pool(rec.pool)
        if pool is None:
            held.append(f"pool {rec.pool} no longer exists; nothing to restore")
            continue
        if pool.min_size == rec.old:
            done.append(rec.pool)
            continue
        short = [pg for pg in pgs_of(snap, pool) if len(pg.acting) < rec.old or not pg.active]
        if short:
            waiting = sorted({o for pg in short for o in pg.waiting_for} | {o.id for o in snap.down_osds})
            held.append(f"pool {rec.pool}: {len(short)} PGs ({pg_list(short)}) have fewer than {rec.old} copies up "
                        f"(down: {osd_names(waiting)}); restoring min_size {rec.old} now would block their I/O again. "
                        f"Bring the OSDs back (or replace them) and rerun ceph-restore")
            continue
        changes.append(PoolMinSize(pool=rec.pool, size=pool.size, old=pool.min_size, new=rec.old,
                                   reason=f"{rec.pool} was lowered from {rec.old} to {rec.new} by ceph-degrade"))
    parts = []
    if changes:
        parts.append("restore " + ", ".join(f"{c.pool} min_size {c.old} -> {c.new}" for c in changes))
    if done:
        parts.append(f"already back: {', '.join(done)}")
    if not record.min_size:
        parts.append("ceph-degrade lowered no pool's min_size")
    return RestoreDecision(changes=changes, held=held, reason="; ".join(parts) or "nothing recorded")


def decide_unset(record: DegradeRecord, snap: CephSnapshot) -> tuple[list[str], list[str]]:
    """Flags to unset (drengine's, still set) and the ones left alone (set, but not by drengine)."""
    ours = [f for f in record.flags if f in snap.flags]
    theirs = [f for f in snap.flags if f in OPERATOR_FLAGS and f not in record.flags]
    return ours, theirs



# -- ceph-mon-quorum -------------------------------------------------------------------------------


class SurgeryDecision(BaseModel):
    model_config = ConfigDict(frozen=True)
    surgery: MonSurgery | None
    reason: str  # why no surgery, when surgery is None


def decide_mon_surgery(probes: list[MonProbe], members: dict[str, str]) -> SurgeryDecision:
    """From what each monitor's admin socket says: the running ones survive, every other
    member of the newest monmap among them is removed. Refused when a majority still runs
    (they can form a quorum by themselves: surgery would only shrink the cluster).
    `members` maps monitor id -> inventory member name."""
    running = [p for p in probes if p.running]
    if not running:
        seen = "; ".join(f"mon.{p.name}: {p.error or 'not running'}" for p in probes) or "no monitor in the inventory"
        return SurgeryDecision(surgery=None, reason=f"no monitor is running, so there is no monmap to keep ({seen}). "
                               f"Start at least one monitor whose store is intact, then rerun")
    source = max(running, key=lambda p: (p.monmap_epoch, p.name))
    monmap = source.monmap or [p.name for p in probes]
    alive = [p.name for p in running if p.name in monmap]
    dead = [m for m in monmap if m not in alive]
    if len(alive) * 2 > len(monmap):
        return SurgeryDecision(surgery=None, reason=(
            f"{len(alive)} of {len(monmap)} monitors run ({', '.join(alive)}): a majority, which forms a quorum by itself; "
            f"states: {', '.join(f'mon.{p.name} {p.state}' for p in running)}. Check their logs and the network between "
            f"them rather than removing monitors"))
    survivors = [members.get(n, f"mon.{n}") for n in alive]
    reason = (f"only {', '.join(alive)} of the monmap's {', '.join(monmap)} (epoch {source.monmap_epoch}) run(s): "
              f"{len(alive)} of {len(monmap)} cannot form a majority. Removing {', '.join(dead)} from the monmap of "
              f"{', '.join(alive)} lets them form a quorum alone")
    return SurgeryDecision(surgery=MonSurgery(survivors=survivors, removed=dead, members_before=monmap,
                                              source=members.get(source.name, f"mon.{source.name}"),
                                              epoch=source.monmap_epoch, reason=reason), reason=reason)


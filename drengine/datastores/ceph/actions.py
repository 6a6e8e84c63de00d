"""Ceph: keep serving with reduced redundancy (ceph-degrade), put redundancy back
(ceph-restore), and bring back a monitor quorum by monmap surgery (ceph-mon-quorum).

Pure decisions first, each with a reason in operator words: the health explanation (which
checks, which PGs are inactive and which OSDs they wait for), which OSD flags to set, which
pools need a lower min_size (and to what), which OSDs declared gone to mark out or lost,
which PGs' unfound objects to give up, and, for the restore, what a degrade run changed and
how to put it back. Then the steps the runbooks name.

Every command a step sends is shown as the JSON monitor command (`Statement(language=
"ceph-mon")`), PG command (`"ceph-pg"`) or the `rados` command line of an object check.
Every setting ceph-degrade changes is recorded as a fact (`flags_set`, `min_size_changes`)
and the same changes can be read back from its `statement_sent` events, so ceph-restore
undoes exactly what drengine did and nothing an operator did by hand.

Decisions read PG states from `pg ls`, never health checks alone: Pacific raises
PG_AVAILABILITY for peered PGs only once they are stuck, and `status` can lag `pg ls`.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from drengine.datastores.ceph.backend import CephBackend, MonitorControl, MonProbe, mon_id
from drengine.datastores.ceph.connector import FLAG_NAMES, CephSnapshot, JsonDoc, PgInfo, PoolInfo
from drengine.errors import ConnectError, JournalCorrupt, StepFailed
from drengine.steps import (
    Action,
    Effect,
    Fact,
    Facts,
    GateLevel,
    Mode,
    NoParams,
    Proposal,
    Refusal,
    RunContext,
    Statement,
    StepParams,
    StepResult,
    fact,
    register,
)

DEGRADE_RUNBOOK = "ceph-degrade"
RESTORE_RUNBOOK = "ceph-restore"
# The ceph-restore steps that put drengine's changes back: once both finished ok, its degrade runs are restored.
RESTORE_STEPS = frozenset({"restore-min-size", "unset-flags"})
DEGRADE_RUN_ENV = "DRENGINE_DEGRADE_RUN"
RUNS_DIR_ENV = "DRENGINE_RUNS_DIR"
DEFAULT_FLAGS = ("noout", "norebalance")
IO_CHECK_OBJECT = "drengine-io-check"
# Pools the manager owns: drengine never writes test objects into them.
MANAGER_APPLICATIONS = frozenset({"mgr", "mgr_devicehealth"})
# Flags an operator sets on purpose (the osdmap also carries internal ones such as sortbitwise).
OPERATOR_FLAGS = (*FLAG_NAMES, "noscrub", "nodeep-scrub", "nosnaptrim", "notieragent")
SHOWN_PGS = 12
# PG states that pass by themselves within seconds; decisions wait (bounded) until they are gone.
TRANSIENT_STATES = frozenset({"peering", "activating", "creating", "unknown"})
SETTLE_SECONDS = 20.0  # PG ids listed per line; the journal's facts keep all of them

# -- facts -----------------------------------------------------------------------------------------


@fact
class Observation(Fact):
    snapshot: CephSnapshot


@fact
class FlagsSet(Fact):
    """OSD flags a degrade run wanted, which it set itself and which were already set (not its to unset)."""

    wanted: list[str] = []
    set_by_drengine: list[str] = []
    already_set: list[str] = []


class PoolMinSize(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: str
    size: int
    old: int
    new: int
    reason: str = ""


@fact
class MinSizeChanges(Fact):
    changes: list[PoolMinSize] = []


@fact
class OsdsMarked(Fact):
    out: list[int] = []
    lost: list[int] = []


@fact
class UnfoundGivenUp(Fact):
    mode: str
    pgs: list[str] = []
    objects: int = 0


@fact
class IoChecked(Fact):
    pools: list[str] = []
    seconds: float = 0.0


@fact
class DegradeRecord(Fact):
    """What earlier ceph-degrade runs on this cluster changed, read back from their journals."""

    runs: list[str] = []
    flags: list[str] = []
    min_size: list[PoolMinSize] = []
    notes: list[str] = []


# -- pure decisions: explaining ------------------------------------------------------------------------


def osd_names(ids: Iterable[int]) -> str:
    return ", ".join(f"osd.{i}" for i in sorted(ids)) or "none"


def _pg_list(pgs: list[PgInfo]) -> str:
    ids = [p.pgid for p in pgs]
    shown = ", ".join(ids[:SHOWN_PGS])
    return shown + (f" and {len(ids) - SHOWN_PGS} more" if len(ids) > SHOWN_PGS else "")


def pgs_of(snap: CephSnapshot, pool: PoolInfo) -> list[PgInfo]:
    return [p for p in snap.pgs if p.pool_id == pool.id]


def explain_health(snap: CephSnapshot) -> list[str]:
    """The cluster in plain lines: health and its checks, OSDs down, flags, and per pool which
    PGs do not serve I/O and which OSDs they wait for."""
    st = snap.status
    lines = [
        f"health {st.health}; monitors in quorum: {', '.join(st.quorum_names) or 'none'} of {len(st.monitors) or st.monitors_count}; "
        f"OSDs: {st.num_up_osds} up, {st.num_in_osds} in, of {st.num_osds}"
    ]
    for check in st.checks:
        lines.append(f"  {check.severity} {check.code}: {check.summary}" + (" (muted)" if check.muted else ""))
    down = snap.down_osds
    if down:
        lines.append(
            "OSDs down: "
            + ", ".join(f"{o.name}{' on ' + o.host if o.host else ''} ({'in' if o.in_ else 'out'})" for o in down)
        )
    flags = [f for f in snap.flags if f in OPERATOR_FLAGS]
    if flags:
        lines.append(f"OSD flags set: {', '.join(flags)}")
    for pool in snap.pools:
        pgs = pgs_of(snap, pool)
        by_state: dict[str, int] = defaultdict(int)
        for pg in pgs:
            by_state[pg.state] += 1
        states = ", ".join(f"{n} {s}" for s, n in sorted(by_state.items(), key=lambda kv: -kv[1]))
        line = f"pool {pool.name} (size {pool.size}, min_size {pool.min_size}): {len(pgs)} PGs: {states or 'none'}"
        inactive = [pg for pg in pgs if not pg.active]
        if inactive:
            waits: dict[tuple[int, ...], list[PgInfo]] = defaultdict(list)
            for pg in inactive:
                waits[tuple(pg.waiting_for)].append(pg)
            parts = [
                f"{len(group)} inactive ({_pg_list(group)}) waiting for {osd_names(key) if key else 'peering to finish'}"
                for key, group in waits.items()
            ]
            line += "; I/O BLOCKED: " + "; ".join(parts)
        lines.append(line)
    unfound = snap.pgs_with_unfound
    if unfound:
        lines.append(f"unfound objects: {sum(p.unfound for p in unfound)} in PGs {_pg_list(unfound)}")
    return lines


def health_summary(snap: CephSnapshot) -> str:
    blocked = snap.pools_blocked()
    inactive = snap.inactive_pgs
    down = snap.down_osds
    parts = [snap.status.health]
    if down:
        parts.append(f"{osd_names(o.id for o in down)} down")
    if inactive:
        parts.append(f"{len(inactive)} PGs inactive, I/O blocked on pool(s) {', '.join(p.name for p in blocked)}")
    elif snap.all_active_clean:
        parts.append("every PG active+clean")
    else:
        parts.append("every PG active (serving I/O), some not clean")
    return "; ".join(parts)


# -- pure decisions: degrade ---------------------------------------------------------------------------


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
                why.append(f"{len(down)} PGs ({_pg_list(down)}) are down: only {osd_names({o for pg in down for o in pg.waiting_for})} "
                           f"hold(s) their latest data; bring it back, or declare it gone (--gone osd.N) to mark it lost")
            if stale:
                why.append(f"{len(stale)} PGs ({_pg_list(stale)}) have no copy up at all (waiting for "
                           f"{osd_names({o for pg in stale for o in pg.waiting_for})}); bring one of those OSDs back")
            if rest:
                why.append(f"{len(rest)} PGs ({_pg_list(rest)}) are still peering ({', '.join(sorted({pg.state for pg in rest}))}); "
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
                parts.append(f"{len(waiting)} PGs ({_pg_list(waiting)}) wait for it to peer")
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


# -- pure decisions: restore ---------------------------------------------------------------------------


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
            held.append(f"pool {rec.pool}: {len(short)} PGs ({_pg_list(short)}) have fewer than {rec.old} copies up "
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


def default_min_size(size: int) -> int:
    """Ceph's own default for a replicated pool: a majority of the copies (size - size/2)."""
    return size - size // 2


# -- reading the degrade journals ------------------------------------------------------------------------


class DegradeRun(BaseModel):
    model_config = ConfigDict(frozen=True)
    run_dir: str
    started: float
    finished: str  # the end the run reached, or "unfinished"
    flags: list[str]
    min_size: list[PoolMinSize]
    min_size_statements: dict[str, int]  # pool -> min_size value sent, from statement_sent events


def read_degrade_run(run_dir: Path, cluster: str) -> DegradeRun | None:
    """The changes one ceph-degrade run made, from its facts and its statements; None when the
    directory holds some other run. A journal that fails verification raises JournalCorrupt."""
    from drengine.journal import Event, read_entries, verify

    journal = run_dir / "journal.jsonl"
    entries = list(read_entries(journal))
    start = next((e for e in entries if e.type is Event.RUN_STARTED), None)
    if start is None or start.data.get("runbook") != DEGRADE_RUNBOOK or start.data.get("cluster") != cluster:
        return None
    if start.data.get("mode") == Mode.PLAN.value:
        return None
    verify(run_dir)
    facts = Facts()
    flags: list[str] = []
    min_size: dict[str, PoolMinSize] = {}
    sent_min: dict[str, int] = {}
    finished = "unfinished"
    for entry in entries:
        if entry.type is Event.STEP_FINISHED and entry.data.get("facts"):
            facts.load(entry.data["facts"])
            flags_set = facts.maybe("flags_set", FlagsSet)
            if flags_set is not None:
                flags += [f for f in flags_set.set_by_drengine if f not in flags]
            changes = facts.maybe("min_size_changes", MinSizeChanges)
            if changes is not None:
                for c in changes.changes:
                    # The fact's record (with the pool's size) replaces the one read from its own statement.
                    if c.pool not in min_size or min_size[c.pool].size == 0:
                        min_size[c.pool] = c
        elif entry.type is Event.STATEMENT_SENT and entry.data.get("language") == "ceph-mon":
            # The statements cover the window between sending a change and journaling its step.
            try:
                cmd = json.loads(str(entry.data.get("text", "")))
            except ValueError:
                continue
            if cmd.get("prefix") == "osd set" and cmd.get("key") and cmd["key"] not in flags:
                flags.append(str(cmd["key"]))
            if cmd.get("prefix") == "osd pool set" and cmd.get("var") == "min_size":
                pool = str(cmd.get("pool"))
                sent_min[pool] = int(cmd.get("val", 0))
                old = parse_was_note(str(entry.data.get("result", "")))
                if old is not None and pool not in min_size:
                    min_size[pool] = PoolMinSize(pool=pool, size=0, old=old, new=int(cmd.get("val", 0)),
                                                 reason="read back from the statement's journal entry")
        elif entry.type is Event.RUN_FINISHED:
            finished = str(entry.data.get("end", "finished"))
    return DegradeRun(run_dir=str(run_dir), started=start.ts, finished=finished, flags=flags,
                      min_size=list(min_size.values()), min_size_statements=sent_min)


def _last_restore(runs_dir: Path, cluster: str) -> float:
    """When the latest ceph-restore of this cluster that put everything back started (0 when
    none): one whose min_size and flag steps both finished ok, even if health stayed not OK."""
    from drengine.journal import Event, read_entries

    latest = 0.0
    for journal in runs_dir.glob("*/journal.jsonl"):
        try:
            entries = list(read_entries(journal))
        except (OSError, JournalCorrupt):
            continue
        start = next((e for e in entries if e.type is Event.RUN_STARTED), None)
        if start is None or start.data.get("runbook") != RESTORE_RUNBOOK or start.data.get("cluster") != cluster:
            continue
        done = {str(e.data.get("step")) for e in entries if e.type is Event.STEP_FINISHED and e.data.get("ok")}
        if RESTORE_STEPS <= done or any(e.type is Event.RUN_FINISHED and e.data.get("success") for e in entries):
            latest = max(latest, start.ts)
    return latest


def _belongs_to(journal: Path, cluster: str) -> bool:
    """For a journal that cannot be parsed: does its text name a ceph-degrade run of this cluster?"""
    try:
        head = journal.read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return False
    return f'"runbook":"{DEGRADE_RUNBOOK}"' in head and f'"cluster":"{cluster}"' in head


def find_degrade_runs(runs_dir: Path, cluster: str) -> list[DegradeRun]:
    """Every ceph-degrade run of this cluster started after its latest completed ceph-restore,
    oldest first: together they hold everything drengine changed and has not put back yet.
    A damaged journal of another run is skipped; a damaged one of this cluster's degrade raises."""
    since = _last_restore(runs_dir, cluster)
    runs = []
    for journal in sorted(runs_dir.glob("*/journal.jsonl")):
        try:
            run = read_degrade_run(journal.parent, cluster)
        except JournalCorrupt:
            if _belongs_to(journal, cluster):
                raise
            continue
        if run is not None and run.started > since:
            runs.append(run)
    return sorted(runs, key=lambda r: r.started)


def merge_degrade_runs(runs: list[DegradeRun], snap: CephSnapshot | None) -> DegradeRecord:
    """One record: the union of the flags drengine set, and per pool the oldest recorded
    min_size (the value before drengine's first change)."""
    flags: list[str] = []
    pools: dict[str, PoolMinSize] = {}
    notes: list[str] = []
    for run in runs:
        flags += [f for f in run.flags if f not in flags]
        for c in run.min_size:
            pools.setdefault(c.pool, c)
        for pool, val in run.min_size_statements.items():
            if pool in pools:
                continue
            # Sent, but the step did not finish and record the old value: fall back to Ceph's default.
            info = snap.pool(pool) if snap else None
            size = info.size if info else 3
            pools[pool] = PoolMinSize(pool=pool, size=size, old=default_min_size(size), new=val,
                                      reason="old value not recorded (the step was interrupted); Ceph's default for the size")
            notes.append(f"pool {pool}: min_size was changed to {val} but the old value was not recorded; "
                         f"restoring Ceph's default {default_min_size(size)} for size {size}")
        if run.finished != "done":
            notes.append(f"{run.run_dir} ended {run.finished}: its recorded changes are restored too")
    return DegradeRecord(runs=[r.run_dir for r in runs], flags=flags, min_size=list(pools.values()), notes=notes)


# -- statements ---------------------------------------------------------------------------------------------


def mon_cmd(**cmd: Any) -> dict[str, Any]:
    return dict(cmd)


def flag_cmd(verb: Literal["set", "unset"], flag: str) -> dict[str, Any]:
    return mon_cmd(prefix=f"osd {verb}", key=flag)


def min_size_cmd(pool: str, value: int) -> dict[str, Any]:
    # Ceph wants the value as a string.
    return mon_cmd(prefix="osd pool set", pool=pool, var="min_size", val=str(value))


def out_cmd(osd: int) -> dict[str, Any]:
    return mon_cmd(prefix="osd out", ids=[str(osd)])


def lost_cmd(osd: int) -> dict[str, Any]:
    return mon_cmd(prefix="osd lost", id=osd, yes_i_really_mean_it=True)


def unfound_cmd(mode: str) -> dict[str, Any]:
    return {"prefix": "mark_unfound_lost", "mulcmd": mode}


def mon_statement(ctx: Ctx, cmd: Mapping[str, Any]) -> Statement:
    return Statement(target=ctx.cluster.name, text=json.dumps(dict(cmd)), language="ceph-mon")


def pg_statement(pgid: str, cmd: Mapping[str, Any]) -> Statement:
    return Statement(target=f"pg {pgid}", text=json.dumps(dict(cmd)), language="ceph-pg")


Ctx = RunContext[CephBackend]


def _send(ctx: Ctx, cmd: Mapping[str, Any], note: str = "") -> JsonDoc:
    answer = ctx.backend.mon_command(cmd)
    message = answer.get("message", "") if isinstance(answer, dict) else ""
    ctx.sent(mon_statement(ctx, cmd), result=str(message or "ok") + (f"; {note}" if note else ""))
    return answer


def was_note(old: int) -> str:
    """Journaled with the statement that lowers min_size: the old value survives a crash before the step's facts are."""
    return f"min_size was {old}"


def parse_was_note(result: str) -> int | None:
    marker = "min_size was "
    if marker not in result:
        return None
    digits = result.split(marker, 1)[1].split()[0].strip(";,.")
    return int(digits) if digits.isdigit() else None


def _observe(ctx: Ctx) -> CephSnapshot:
    return ctx.backend.observe()


def transient_pgs(snap: CephSnapshot) -> list[PgInfo]:
    """Inactive PGs still on their way somewhere (peering after an OSD went down): deciding on
    them would mistake a moment for a state."""
    return [pg for pg in snap.inactive_pgs if pg.states & TRANSIENT_STATES and "peered" not in pg.states]


def _observe_settled(ctx: Ctx, settle: float = SETTLE_SECONDS, poll: float = 0.5) -> CephSnapshot:
    """Look until no inactive PG is still peering, at most `settle` seconds; then decide on what is seen."""
    backend = ctx.backend
    started = backend.clock()
    snap = backend.observe()
    while transient_pgs(snap) and backend.clock() - started < settle and ctx.mode is not Mode.PLAN:
        backend.sleep(poll)
        snap = backend.observe()
    return snap


def _lost_osds(ctx: Ctx) -> set[int]:
    dump = ctx.backend.mon_command({"prefix": "osd dump"})
    if not isinstance(dump, dict):
        return set()
    return {int(o["osd"]) for o in dump.get("osds", []) if int(o.get("lost_at", 0) or 0) > 0}


def _unfound_sources(ctx: Ctx, snap: CephSnapshot) -> list[UnfoundSource]:
    sources = []
    for pg in snap.pgs_with_unfound:
        listing = ctx.backend.pg_command(pg.pgid, {"prefix": "list_unfound"})
        might: dict[int, str] = {}
        if isinstance(listing, dict):
            for item in listing.get("might_have_unfound", []):
                might[int(item["osd"])] = str(item.get("status", ""))
        sources.append(UnfoundSource(pgid=pg.pgid, objects=pg.unfound, might_have=might))
    return sources


# -- actions: degrade ------------------------------------------------------------------------------------------


@register
class ExplainHealth(Action[CephBackend, NoParams]):
    name = "ceph.explain_health"
    effect = Effect.READ
    description = "Look at the cluster: health checks, OSDs down, which PGs are inactive and what they wait for"

    def propose(self, ctx: Ctx) -> Proposal:
        stmts = [mon_statement(ctx, {"prefix": p}) for p in ("status", "mon dump", "osd dump", "osd tree", "pg ls")]
        return Proposal(summary="observe health, monitors, OSDs, pools and every PG", statements=stmts)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        try:
            snap = _observe_settled(ctx)
        except ConnectError as exc:
            ctx.backend.reconnect()
            raise StepFailed(f"{exc}. Nothing else can be done while the monitors have no quorum; when a majority of "
                             f"them is gone for good, the runbook ceph-mon-quorum restores a quorum from the survivors "
                             f"(drengine run ceph-mon-quorum -c {ctx.cluster.name} ...)") from None
        return StepResult(ok=True, summary=health_summary(snap), facts={"observed": Observation(snapshot=snap)},
                          evidence=explain_health(snap))


class FlagParams(StepParams):
    flags: list[str] = Field(default_factory=lambda: list(DEFAULT_FLAGS))


@register
class SetFlags(Action[CephBackend, FlagParams]):
    name = "ceph.set_flags"
    effect = Effect.MUTATE
    Params = FlagParams
    description = "Set noout and norebalance so nothing is marked out or shuffled while OSDs are fixed"

    def _decide(self, ctx: Ctx) -> FlagDecision:
        return decide_flags(_observe(ctx), self.params.flags)

    def propose(self, ctx: Ctx) -> Proposal:
        d = self._decide(ctx)
        return Proposal(
            summary=f"set {', '.join(d.to_set)}" if d.to_set else f"no OSD flag to set: {d.reason}",
            reason=d.reason,
            statements=[mon_statement(ctx, flag_cmd("set", f)) for f in d.to_set],
            nothing_to_do=not d.to_set,
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        # Never skip: run() sets only what is missing and records what it set.
        return False

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        d = self._decide(ctx)
        for flag in d.to_set:
            _send(ctx, flag_cmd("set", flag))
        after = _observe(ctx)
        missing = [f for f in d.to_set if f not in after.flags]
        if missing:
            raise StepFailed(f"sent `osd set` for {', '.join(missing)} but the OSD map does not show them set "
                             f"(flags now: {', '.join(after.flags) or 'none'}); check the monitors and rerun")
        wanted = self.params.flags
        record = FlagsSet(wanted=list(wanted), set_by_drengine=d.to_set, already_set=d.already)
        summary = f"set {', '.join(d.to_set) or 'nothing'}" + (f"; already set before: {', '.join(d.already)}" if d.already else "")
        return StepResult(ok=True, summary=summary, facts={"flags_set": record})


@register
class LowerMinSize(Action[CephBackend, NoParams]):
    name = "ceph.lower_min_size"
    effect = Effect.MUTATE
    description = "Lower min_size on exactly the pools whose PGs are inactive for want of copies"

    def propose(self, ctx: Ctx) -> Proposal:
        snap = _observe_settled(ctx)
        d = decide_min_size(snap)
        evidence = list(d.not_helped)
        return Proposal(
            summary=("lower min_size: " + ", ".join(f"{c.pool} {c.old} -> {c.new}" for c in d.changes))
            if d.changes else f"no pool needs a lower min_size: {d.reason}",
            reason=d.reason,
            statements=[mon_statement(ctx, min_size_cmd(c.pool, c.new)) for c in d.changes],
            gate=GateLevel.DANGEROUS if d.changes else GateLevel.NONE,
            risks=[f"writes to pool {c.pool} are acknowledged with only {c.new} copy(ies) up: if "
                   f"{'that OSD' if c.new == 1 else 'those OSDs'} fail(s) before the others return, those writes are lost"
                   for c in d.changes],
            evidence=evidence,
            nothing_to_do=not d.changes,
        )

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        snap = _observe_settled(ctx)
        d = decide_min_size(snap)
        # A resumed run may find its own change made already: keep the record of the original value.
        earlier = ctx.facts.maybe("min_size_changes", MinSizeChanges)
        done = list(earlier.changes) if earlier else []
        for c in d.changes:
            _send(ctx, min_size_cmd(c.pool, c.new), note=was_note(c.old))
            if all(x.pool != c.pool for x in done):
                done.append(c)
        after = _observe(ctx)
        wrong = [c for c in d.changes if (p := after.pool(c.pool)) is None or p.min_size != c.new]
        if wrong:
            raise StepFailed("min_size did not change on " + ", ".join(c.pool for c in wrong) + "; check `osd pool get POOL min_size`")
        return StepResult(
            ok=True,
            summary="lowered min_size: " + (", ".join(f"{c.pool} {c.old} -> {c.new}" for c in d.changes) or "none")
            + "".join(f"; {n}" for n in d.not_helped),
            facts={"min_size_changes": MinSizeChanges(changes=done)},
            evidence=d.not_helped,
        )


class IoParams(StepParams):
    io_timeout: float = Field(default=30.0, gt=0, le=3600, description="seconds to wait for a test write to be acknowledged")
    poll: float = Field(default=1.0, gt=0, le=60)


@register
class VerifyIo(Action[CephBackend, IoParams]):
    name = "ceph.verify_io"
    effect = Effect.MUTATE
    # It only writes drengine's own test object (`drengine-io-check`), so it needs no confirmation.
    min_gate = GateLevel.NONE
    Params = IoParams
    description = "Write and read back a test object in each pool the outage touched"

    def _pools(self, ctx: Ctx, snap: CephSnapshot) -> tuple[list[str], list[str]]:
        before = ctx.facts.maybe("observed", Observation)
        changes = ctx.facts.maybe("min_size_changes", MinSizeChanges)
        return io_check_pools(before.snapshot if before else None, snap, changes.changes if changes else [])

    def propose(self, ctx: Ctx) -> Proposal:
        pools, notes = self._pools(ctx, _observe(ctx))
        stmts = []
        for pool in pools:
            stmts.append(Statement(pool, f"rados -p {pool} put {IO_CHECK_OBJECT} <test data>", language="rados"))
            stmts.append(Statement(pool, f"rados -p {pool} get {IO_CHECK_OBJECT} -", language="rados"))
        return Proposal(summary=f"prove client I/O on {', '.join(pools) or 'no pool'}",
                        reason="a write acknowledged and read back is what applications need; PG states alone do not prove it",
                        statements=stmts, evidence=notes, nothing_to_do=not pools)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        params = self.params
        backend = ctx.backend
        pools, notes = self._pools(ctx, _observe(ctx))
        started = ctx.backend.clock()
        deadline = started + params.io_timeout
        evidence = list(notes)
        for pool in pools:
            data = f"drengine I/O check at {time.time():.3f}\n".encode()
            last: Exception | None = None
            while True:
                attempt = max(1.0, min(deadline - ctx.backend.clock(), ctx.cluster.timeouts.read))
                try:
                    backend.write_object(pool, IO_CHECK_OBJECT, data, timeout=attempt)
                    ctx.sent(Statement(pool, f"rados -p {pool} put {IO_CHECK_OBJECT} <{len(data)} bytes>", "rados"))
                    break
                except ConnectError as exc:  # ProbeTimeout included: the PG still blocks
                    last = exc
                if ctx.backend.clock() >= deadline:
                    snap = _observe(ctx)
                    raise StepFailed(
                        f"client I/O on pool {pool} is still blocked after {params.io_timeout:g} s ({last}). "
                        f"Observed now: {health_summary(snap)}. Expected: every PG of {pool} active. "
                        f"See the explanation below; bring the OSDs back, or lower min_size / declare OSDs gone "
                        f"(--gone osd.N) and rerun. Details: " + " | ".join(explain_health(snap))
                    )
                ctx.backend.sleep(params.poll)
            read = backend.read_object(pool, IO_CHECK_OBJECT)
            ctx.sent(Statement(pool, f"rados -p {pool} get {IO_CHECK_OBJECT} -", "rados"), result=f"{len(read)} bytes")
            if read != data:
                raise StepFailed(f"pool {pool}: read back {len(read)} bytes that differ from the {len(data)} bytes just "
                                 f"written to {IO_CHECK_OBJECT}; the pool does not serve consistent I/O")
            evidence.append(f"pool {pool}: wrote and read back {IO_CHECK_OBJECT} ({len(data)} bytes)")
        seconds = ctx.backend.clock() - started
        # One object lands in one PG: the pool serves only if none of its PGs is still inactive.
        after = _observe_settled(ctx)
        names = {p.id: p.name for p in after.pools}
        still = [pg for pg in after.inactive_pgs if names.get(pg.pool_id) in pools]
        if still:
            raise StepFailed(
                f"the test object was written and read back, but {len(still)} PGs ({_pg_list(still)}) of "
                f"{', '.join(sorted({names[pg.pool_id] for pg in still}))} "
                f"still do not serve I/O ({', '.join(sorted({pg.state for pg in still}))}, waiting for "
                f"{osd_names({o for pg in still for o in pg.waiting_for})}); objects in them stay blocked. Expected every PG "
                f"active. Bring those OSDs back, or declare them gone (--gone osd.N) and rerun. "
                + " | ".join(explain_health(after)))
        return StepResult(ok=True, summary=f"client I/O works on {', '.join(pools) or 'no pool'} ({seconds:.1f} s)",
                          facts={"io_checked": IoChecked(pools=pools, seconds=round(seconds, 3))}, evidence=evidence)


@register
class MarkOut(Action[CephBackend, NoParams]):
    name = "ceph.mark_out"
    effect = Effect.MUTATE
    description = "Mark OSDs declared gone for good `out` so their data is copied elsewhere"

    def propose(self, ctx: Ctx) -> Proposal:
        d = decide_out(_observe(ctx), gone_osd_ids(ctx.operator_said_gone))
        return Proposal(summary=f"mark {osd_names(d.to_out)} out" if d.to_out else f"no OSD to mark out: {d.reason}", reason=d.reason,
                        statements=[mon_statement(ctx, out_cmd(i)) for i in d.to_out], evidence=d.notes,
                        nothing_to_do=not d.to_out)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        d = decide_out(_observe(ctx), gone_osd_ids(ctx.operator_said_gone))
        for i in d.to_out:
            _send(ctx, out_cmd(i))
        marked = ctx.facts.maybe("osds_marked", OsdsMarked) or OsdsMarked()
        record = OsdsMarked(out=sorted(set(marked.out) | set(d.to_out)), lost=marked.lost)
        return StepResult(ok=True, summary=f"marked {osd_names(d.to_out)} out", facts={"osds_marked": record}, evidence=d.notes)


@register
class MarkLost(Action[CephBackend, NoParams]):
    name = "ceph.mark_lost"
    effect = Effect.MUTATE
    # Ceph gives up on whatever only this OSD had: always a dangerous gate, whatever the YAML says.
    min_gate = GateLevel.DANGEROUS
    description = "Mark OSDs declared gone `lost` when PGs or unfound objects wait for them (data loss)"

    def _decide(self, ctx: Ctx) -> LostDecision:
        gone = gone_osd_ids(ctx.operator_said_gone)
        if not gone:
            # Nothing can be marked lost: no need to wait for PGs still peering after a min_size change.
            return decide_lost(_observe(ctx), [], set(), [])
        snap = _observe_settled(ctx)
        return decide_lost(snap, gone, _lost_osds(ctx), _unfound_sources(ctx, snap))

    def propose(self, ctx: Ctx) -> Proposal:
        d = self._decide(ctx)
        return Proposal(summary=f"mark {osd_names(d.to_lose)} lost" if d.to_lose else f"no OSD to mark lost: {d.reason}", reason=d.reason,
                        statements=[mon_statement(ctx, lost_cmd(i)) for i in d.to_lose], risks=d.risks,
                        gate=GateLevel.DANGEROUS, nothing_to_do=not d.to_lose)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        d = self._decide(ctx)
        for i in d.to_lose:
            _send(ctx, lost_cmd(i))
        marked = ctx.facts.maybe("osds_marked", OsdsMarked) or OsdsMarked()
        record = OsdsMarked(out=marked.out, lost=sorted(set(marked.lost) | set(d.to_lose)))
        return StepResult(ok=True, summary=f"marked {osd_names(d.to_lose)} lost", facts={"osds_marked": record})


class UnfoundParams(StepParams):
    mode: Literal["revert", "delete"] = "revert"


@register
class MarkUnfoundLost(Action[CephBackend, UnfoundParams]):
    name = "ceph.mark_unfound_lost"
    effect = Effect.MUTATE
    Params = UnfoundParams
    # The newest version of each unfound object is given up for good.
    min_gate = GateLevel.DANGEROUS
    description = "Give up unfound objects no OSD that is up holds (revert to the previous version, or delete)"

    def _decide(self, ctx: Ctx, planning: bool) -> UnfoundDecision:
        snap = _observe(ctx)
        mode = self.params.mode
        if not snap.pgs_with_unfound:
            return decide_unfound([], set(), mode)
        lost = _lost_osds(ctx)
        if planning:
            # The mark-lost step before this one marks the down OSDs declared gone lost; a plan
            # (which does not run it) must still show what would follow.
            lost |= {i for i in gone_osd_ids(ctx.operator_said_gone) if any(o.id == i and not o.up for o in snap.osds)}
        d = decide_unfound(_unfound_sources(ctx, snap), lost, mode)
        if d.blocked and not d.pgs:
            raise StepFailed("unfound objects remain and cannot be given up yet: " + " | ".join(d.blocked))
        return d

    def propose(self, ctx: Ctx) -> Proposal:
        d = self._decide(ctx, planning=True)
        mode = self.params.mode
        return Proposal(
            summary=f"mark_unfound_lost {mode} on PGs {', '.join(d.pgs)}" if d.pgs else f"no unfound objects to give up: {d.reason}",
            reason=d.reason,
            statements=[pg_statement(p, unfound_cmd(mode)) for p in d.pgs],
            gate=GateLevel.DANGEROUS,
            risks=[f"the newest version of {d.objects} object(s) is given up for good: "
                   + ("readers get the previous version, objects new since then are deleted" if mode == "revert"
                      else "the objects are deleted")] if d.pgs else [],
            evidence=d.blocked,
            nothing_to_do=not d.pgs,
        )

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        d = self._decide(ctx, planning=False)
        mode = self.params.mode
        for pgid in d.pgs:
            answer = ctx.backend.pg_command(pgid, unfound_cmd(mode))
            message = answer.get("message", "") if isinstance(answer, dict) else ""
            ctx.sent(pg_statement(pgid, unfound_cmd(mode)), result=str(message or "ok"))
        if d.blocked:
            return StepResult(ok=False, summary=f"gave up unfound objects in {', '.join(d.pgs)}, but others remain: "
                              + " | ".join(d.blocked), evidence=d.blocked)
        return StepResult(ok=True, summary=f"{mode}: {d.objects} unfound object(s) in PGs {', '.join(d.pgs)}",
                          facts={"unfound_given_up": UnfoundGivenUp(mode=mode, pgs=d.pgs, objects=d.objects)})


# -- actions: restore ------------------------------------------------------------------------------------------


class FindParams(StepParams):
    degrade_run: str | None = Field(default=None, description=f"the degrade run's directory; default ${DEGRADE_RUN_ENV}, "
                                    f"else every unrestored ceph-degrade run of this cluster under the runs directory")
    runs_dir: str | None = Field(default=None, description=f"where run directories live; default ${RUNS_DIR_ENV}, else ./runs")


@register
class FindDegradeRecord(Action[CephBackend, FindParams]):
    name = "ceph.find_degrade_record"
    effect = Effect.CHECK
    Params = FindParams
    description = "Read back from the ceph-degrade journal(s) which flags and min_size drengine changed"

    def _where(self, ctx: Ctx) -> tuple[Path | None, Path]:
        p = self.params
        single = p.degrade_run or os.environ.get(DEGRADE_RUN_ENV)
        runs = p.runs_dir or os.environ.get(RUNS_DIR_ENV) or "runs"
        return (Path(single) if single else None), Path(runs)

    def propose(self, ctx: Ctx) -> Proposal:
        single, runs = self._where(ctx)
        where = f"the run {single}" if single else f"unrestored ceph-degrade runs of {ctx.cluster.name} under {runs}/"
        return Proposal(summary=f"read what ceph-degrade changed from {where}")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        single, runs_dir = self._where(ctx)
        snap = _observe(ctx)
        try:
            if single is not None:
                run_dir = single.parent if single.name == "journal.jsonl" else single
                if not (run_dir / "journal.jsonl").is_file():
                    return self._nothing(f"{run_dir} holds no journal.jsonl",
                                         f"a ceph-degrade run directory ({DEGRADE_RUN_ENV} or degrade_run)")
                one = read_degrade_run(run_dir, ctx.cluster.name)
                if one is None:
                    return self._nothing(f"{run_dir} is not a ceph-degrade run of cluster {ctx.cluster.name}",
                                         f"the directory of a ceph-degrade run on {ctx.cluster.name}")
                runs = [one]
            else:
                runs = find_degrade_runs(runs_dir, ctx.cluster.name) if runs_dir.is_dir() else []
        except JournalCorrupt as exc:
            return StepResult(ok=False, summary=f"a degrade journal failed verification: {exc}", refusal=Refusal(
                observed=str(exc),
                expected="an intact, hash-chained journal of the ceph-degrade run",
                why="drengine restores only what its journal proves it changed; an edited journal could make it unset "
                    "flags or change min_size that someone else set",
                next_steps=f"point {DEGRADE_RUN_ENV} at an intact degrade run, or restore by hand from the journal; "
                           f"or override to go on with nothing to restore (only waiting for recovery and checking health)",
                risk_if_overridden="flags and min_size drengine lowered stay as they are until restored by hand",
            ), facts={"degrade_record": DegradeRecord()})
        if not runs:
            return self._nothing(f"no unrestored ceph-degrade run of {ctx.cluster.name} under {runs_dir}/",
                                 f"the journal of the ceph-degrade run (set {DEGRADE_RUN_ENV}=RUN_DIR or {RUNS_DIR_ENV})")
        record = merge_degrade_runs(runs, snap)
        evidence = [f"degrade run {r.run_dir} ({r.finished}): flags set {', '.join(r.flags) or 'none'}; min_size "
                    + (", ".join(f"{c.pool} {c.old} -> {c.new}" for c in r.min_size) or "unchanged") for r in runs]
        evidence += record.notes
        summary = (f"from {len(runs)} degrade run(s): flags drengine set: {', '.join(record.flags) or 'none'}; "
                   f"min_size to restore: " + (", ".join(f"{c.pool} -> {c.old}" for c in record.min_size) or "none"))
        return StepResult(ok=True, summary=summary, facts={"degrade_record": record}, evidence=evidence)

    @staticmethod
    def _nothing(observed: str, expected: str) -> StepResult:
        return StepResult(ok=False, summary=f"no record of what ceph-degrade changed: {observed}", refusal=Refusal(
            observed=observed,
            expected=expected,
            why="without it drengine cannot tell the flags and min_size it changed from those an operator set on purpose",
            next_steps=f"set {DEGRADE_RUN_ENV} to the degrade run's directory (or {RUNS_DIR_ENV} to where runs are kept) "
                       f"and rerun; or override to go on with nothing to restore (wait for recovery, check health)",
            risk_if_overridden="flags and min_size lowered by an earlier degrade stay as they are until restored by hand",
        ), facts={"degrade_record": DegradeRecord()})


class WaitParams(StepParams):
    recovery_timeout: float = Field(default=120.0, gt=0, le=86400, description="seconds to wait for every PG active+clean")
    poll: float = Field(default=1.0, gt=0, le=60)


@register
class WaitForRecovery(Action[CephBackend, WaitParams]):
    name = "ceph.wait_for_recovery"
    effect = Effect.READ
    Params = WaitParams
    description = "Wait, bounded, until the OSDs are back and every PG is active+clean"

    def propose(self, ctx: Ctx) -> Proposal:
        p = self.params
        return Proposal(summary=f"wait up to {p.recovery_timeout:g} s for every OSD up and every PG active+clean",
                        statements=[mon_statement(ctx, {"prefix": "pg ls"})])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        p = self.params
        started = ctx.backend.clock()
        while True:
            snap = _observe(ctx)
            if snap.all_active_clean and not snap.inactive_pgs:
                waited = ctx.backend.clock() - started
                return StepResult(ok=True, summary=f"every PG is active+clean after {waited:.1f} s", evidence=explain_health(snap))
            if ctx.backend.clock() - started >= p.recovery_timeout or ctx.mode is Mode.PLAN:
                break
            ctx.backend.sleep(p.poll)
        unclean = [pg for pg in snap.pgs if not pg.clean]
        down = snap.down_osds
        advice = (f"{osd_names(o.id for o in down)} still down: start them again (or replace them), then rerun ceph-restore"
                  if down else "the OSDs are up but recovery has not finished: wait and rerun, or raise recovery_timeout "
                  "(check norecover/nobackfill flags)")
        return StepResult(
            ok=False,
            summary=(f"after {p.recovery_timeout:g} s, {len(unclean)} of {len(snap.pgs)} PGs are not active+clean "
                     f"({', '.join(sorted({pg.state for pg in unclean}))}); expected every PG active+clean before putting "
                     f"min_size back. {advice}"),
            evidence=explain_health(snap),
        )


@register
class RestoreMinSize(Action[CephBackend, NoParams]):
    name = "ceph.restore_min_size"
    effect = Effect.MUTATE
    description = "Put back each pool's min_size as it was before ceph-degrade"

    def propose(self, ctx: Ctx) -> Proposal:
        d = decide_restore_min_size(ctx.facts.get("degrade_record", DegradeRecord), _observe(ctx))
        return Proposal(summary=("restore min_size: " + ", ".join(f"{c.pool} {c.old} -> {c.new}" for c in d.changes))
                        if d.changes else f"no min_size to restore: {d.reason}",
                        reason=d.reason, statements=[mon_statement(ctx, min_size_cmd(c.pool, c.new)) for c in d.changes],
                        evidence=d.held, nothing_to_do=not d.changes and not d.held)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        d = decide_restore_min_size(ctx.facts.get("degrade_record", DegradeRecord), _observe(ctx))
        for c in d.changes:
            _send(ctx, min_size_cmd(c.pool, c.new))
        if d.held:
            return StepResult(ok=False, summary="min_size not restored everywhere: " + " | ".join(d.held), evidence=d.held)
        return StepResult(ok=True, summary="restored min_size: " + (", ".join(f"{c.pool} {c.new}" for c in d.changes) or "none"),
                          facts={"min_size_restored": MinSizeChanges(changes=d.changes)})


@register
class UnsetFlags(Action[CephBackend, NoParams]):
    name = "ceph.unset_flags"
    effect = Effect.MUTATE
    description = "Unset the OSD flags drengine set, and only those"

    def propose(self, ctx: Ctx) -> Proposal:
        ours, theirs = decide_unset(ctx.facts.get("degrade_record", DegradeRecord), _observe(ctx))
        reason = (f"ceph-degrade set {', '.join(ours)}" if ours else "no flag drengine set is still set")
        if theirs:
            reason += f"; left alone (not set by drengine): {', '.join(theirs)}"
        return Proposal(summary=f"unset {', '.join(ours)}" if ours else f"no OSD flag to unset: {reason}", reason=reason,
                        statements=[mon_statement(ctx, flag_cmd("unset", f)) for f in ours], nothing_to_do=not ours)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        ours, theirs = decide_unset(ctx.facts.get("degrade_record", DegradeRecord), _observe(ctx))
        for flag in ours:
            _send(ctx, flag_cmd("unset", flag))
        summary = f"unset {', '.join(ours) or 'nothing'}"
        if theirs:
            summary += f"; left alone (not set by drengine): {', '.join(theirs)}"
        return StepResult(ok=True, summary=summary)


class HealthParams(StepParams):
    settle_timeout: float = Field(default=20.0, ge=0, le=3600, description="seconds to let health catch up with the PG states")
    poll: float = Field(default=1.0, gt=0, le=60)


@register
class VerifyHealth(Action[CephBackend, HealthParams]):
    name = "ceph.verify_health"
    effect = Effect.READ
    Params = HealthParams
    outcomes = ("not-ok",)
    description = "Verify HEALTH_OK, or explain what remains"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="check that health is HEALTH_OK", statements=[mon_statement(ctx, {"prefix": "status"})])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        p = self.params
        started = ctx.backend.clock()
        while True:
            # `status` lags `pg ls` by a few seconds after recovery: give it a bounded while.
            snap = _observe(ctx)
            if snap.status.health == "HEALTH_OK":
                return StepResult(ok=True, summary="HEALTH_OK: " + health_summary(snap), evidence=explain_health(snap))
            if ctx.backend.clock() - started >= p.settle_timeout or ctx.mode is Mode.PLAN:
                break
            ctx.backend.sleep(p.poll)
        checks = "; ".join(f"{c.code}: {c.summary}" for c in snap.status.checks) or "no check listed"
        return StepResult(ok=False, outcome="not-ok",
                          summary=f"health is {snap.status.health}, expected HEALTH_OK; what remains: {checks}",
                          evidence=explain_health(snap))


# -- monitor quorum -------------------------------------------------------------------------------------------


@fact
class MonSurgery(Fact):
    """The monitor surgery decided: who survives, who is removed, whose monmap is the newest."""

    survivors: list[str]  # member names, mon.a
    removed: list[str]  # monitor ids removed from the monmap: b, c
    members_before: list[str]
    source: str  # the survivor with the newest monmap
    epoch: int
    reason: str


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


def _monitors(ctx: Ctx) -> MonitorControl:
    return ctx.backend.monitors


@register
class CheckQuorum(Action[CephBackend, NoParams]):
    name = "ceph.check_quorum"
    effect = Effect.READ
    outcomes = ("quorate",)
    description = "Ask the monitors for status; a quorum that answers needs no surgery"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="ask the monitors for status (bounded by the connect timeout)",
                        statements=[mon_statement(ctx, {"prefix": "status"})])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        try:
            snap = _observe(ctx)
        except ConnectError as exc:  # ProbeTimeout included
            ctx.backend.reconnect()
            return StepResult(ok=True, summary=f"the monitors have no quorum: {exc}")
        return StepResult(ok=True, outcome="quorate",
                          summary=f"monitors {', '.join(snap.status.quorum_names)} are in quorum and answer: no surgery needed",
                          evidence=explain_health(snap))


@register
class FindSurvivingMons(Action[CephBackend, NoParams]):
    name = "ceph.find_surviving_mons"
    effect = Effect.READ
    description = "Ask each monitor's admin socket on its host whether it runs and which monmap it holds"

    def propose(self, ctx: Ctx) -> Proposal:
        conf = (ctx.cluster.ceph.conf_file if ctx.cluster.ceph else "/etc/ceph/ceph.conf")
        return Proposal(summary="probe every monitor through its admin socket",
                        statements=[Statement(m, f"ceph -c {conf} daemon {m} mon_status", "shell")
                                    for m in _monitors(ctx).monitors()])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        control = _monitors(ctx)
        names = control.monitors()
        if not names:
            raise StepFailed(f"cluster {ctx.cluster.name} lists no monitor in the inventory (members named mon.X or with "
                             f"role: mon); expected every monitor, so that drengine can find the survivors")
        probes = [control.probe(m) for m in names]
        decision = decide_mon_surgery(probes, {mon_id(m): m for m in names})
        evidence = [f"{p.name}: " + (f"running, {p.state}, monmap epoch {p.monmap_epoch}: {', '.join(p.monmap)}"
                                     if p.running else f"not running ({p.error})") for p in probes]
        if decision.surgery is None:
            return StepResult(ok=False, summary=decision.reason, evidence=evidence)
        return StepResult(ok=True, summary=f"survivors: {', '.join(decision.surgery.survivors)}; to remove from the monmap: "
                          f"{', '.join(decision.surgery.removed)}", facts={"mon_surgery": decision.surgery}, evidence=evidence)


@register
class MonmapSurgery(Action[CephBackend, NoParams]):
    name = "ceph.monmap_surgery"
    effect = Effect.MUTATE
    # Removing monitors from the monmap is hard to undo and, if a removed one was in fact ahead,
    # loses what it committed alone.
    min_gate = GateLevel.DANGEROUS
    description = "Stop the survivors, remove the dead monitors from their monmap, start them again"

    def propose(self, ctx: Ctx) -> Proposal:
        s = ctx.facts.get("mon_surgery", MonSurgery)
        control = _monitors(ctx)
        stmts = [Statement(m, control.stop_command(m), "shell") for m in s.survivors]
        for m in s.survivors:
            stmts += [Statement(m, c, "shell") for c in control.extract_commands(m, s.removed)]
        stmts += [Statement(m, control.start_command(m), "shell") for m in s.survivors]
        return Proposal(
            summary=f"remove {', '.join(s.removed)} from the monmap of {', '.join(s.survivors)} and restart them",
            reason=s.reason + ". The original monmap is kept beside each store (*.monmap.before-drengine)",
            statements=stmts,
            gate=GateLevel.DANGEROUS,
            risks=[f"{', '.join(s.removed)} leave(s) the cluster: to come back they must be re-added as new monitors "
                   f"(their stores are stale); if one of them is in fact running behind a partition, there are now two "
                   f"monitor clusters"],
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        s = ctx.facts.get("mon_surgery", MonSurgery)
        probes = [_monitors(ctx).probe(m) for m in s.survivors]
        return all(p.running and not set(s.removed) & set(p.monmap) for p in probes)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        s = ctx.facts.get("mon_surgery", MonSurgery)
        control = _monitors(ctx)
        evidence = []
        for m in s.survivors:
            # Check, then act: a resumed run skips a monitor already edited and running.
            probe = control.probe(m)
            if probe.running and not set(s.removed) & set(probe.monmap):
                evidence.append(f"{m}: already runs with monmap {', '.join(probe.monmap)}")
                continue
            if probe.running:
                control.stop(m)
                ctx.sent(Statement(m, control.stop_command(m), "shell"))
            kept = control.edit_monmap(m, s.removed)
            for c in control.extract_commands(m, s.removed):
                ctx.sent(Statement(m, c, "shell"))
            if set(s.removed) & set(kept):
                raise StepFailed(f"{m}: the edited monmap still lists {', '.join(set(s.removed) & set(kept))}; "
                                 f"it was not injected as expected. The backup is beside the store; check by hand")
            evidence.append(f"{m}: monmap now {', '.join(kept)}")
        for m in s.survivors:
            if not control.probe(m).running:
                control.start(m)
                ctx.sent(Statement(m, control.start_command(m), "shell"))
        ctx.backend.reconnect()
        return StepResult(ok=True, summary=f"removed {', '.join(s.removed)}; started {', '.join(s.survivors)}", evidence=evidence)


class QuorumParams(StepParams):
    quorum_timeout: float = Field(default=60.0, gt=0, le=3600)
    poll: float = Field(default=1.0, gt=0, le=60)


@register
class VerifyQuorum(Action[CephBackend, QuorumParams]):
    name = "ceph.verify_quorum"
    effect = Effect.READ
    Params = QuorumParams
    description = "Wait (bounded) for the survivors to form a quorum and the cluster to answer"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="wait for a quorum of the survivors", statements=[mon_statement(ctx, {"prefix": "status"})])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        p = self.params
        s = ctx.facts.maybe("mon_surgery", MonSurgery)
        wanted = sorted(mon_id(m) for m in s.survivors) if s else []
        backend = ctx.backend
        started = backend.clock()
        last = ""
        while True:
            try:
                snap = backend.observe()
                if not wanted or sorted(snap.status.quorum_names) == wanted:
                    conf = ctx.cluster.ceph.conf_file if ctx.cluster.ceph else "ceph.conf"
                    note = (f"; clients still list the removed monitors in `mon host` of {conf}: rewrite it to "
                            f"{', '.join(wanted)} so they stop trying dead ones") if s else ""
                    return StepResult(ok=True, summary=f"quorum {', '.join(snap.status.quorum_names)} answers after "
                                      f"{backend.clock() - started:.1f} s{note}", evidence=explain_health(snap))
                last = f"quorum is {', '.join(snap.status.quorum_names)}, expected {', '.join(wanted)}"
            except ConnectError as exc:
                last = str(exc)
                backend.reconnect()
            if backend.clock() - started >= p.quorum_timeout or ctx.mode is Mode.PLAN:
                break
            backend.sleep(p.poll)
        raise StepFailed(f"no quorum of {', '.join(wanted) or 'the monitors'} within {p.quorum_timeout:g} s: {last}. "
                         f"Check the monitors' logs; the original monmaps are kept beside their stores")

"""The cluster in operator words, from one snapshot: health and its checks, OSDs down, flags
set, and per pool which PGs do not serve I/O and which OSDs they wait for. Pure functions.

PG states come from `pg ls`, never from health checks alone: Pacific raises
PG_AVAILABILITY for peered PGs only once they are stuck, and `status` can lag `pg ls`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from drengine.datastores.ceph.connector import FLAG_NAMES, CephSnapshot, PgInfo, PoolInfo

# Flags an operator sets on purpose (the osdmap also carries internal ones such as sortbitwise).
OPERATOR_FLAGS = (*FLAG_NAMES, "noscrub", "nodeep-scrub", "nosnaptrim", "notieragent")
# PG ids listed per line; the journal's facts keep all of them.
SHOWN_PGS = 12


def osd_names(ids: Iterable[int]) -> str:
    return ", ".join(f"osd.{i}" for i in sorted(ids)) or "none"


def pg_list(pgs: list[PgInfo]) -> str:
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
                f"{len(group)} inactive ({pg_list(group)}) waiting for {osd_names(key) if key else 'peering to finish'}"
                for key, group in waits.items()
            ]
            line += "; I/O BLOCKED: " + "; ".join(parts)
        lines.append(line)
    unfound = snap.pgs_with_unfound
    if unfound:
        lines.append(f"unfound objects: {sum(p.unfound for p in unfound)} in PGs {pg_list(unfound)}")
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


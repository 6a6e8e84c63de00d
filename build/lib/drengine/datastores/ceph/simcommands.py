"""What the simulated Ceph cluster answers: the JSON documents a Pacific cluster prints for
the monitor commands `observe()` and the runbooks send (`status`, `mon dump`, `osd dump`,
`osd tree`, `pg ls`, ...), the monitor commands that change the model (`osd set`, `osd out`,
`osd lost`, `osd pool set`, ...), and the PG commands (`query`, `list_unfound`,
`mark_unfound_lost`). Each is a function of the `CephSim` it answers for; `MON_COMMANDS`
maps a command's prefix to its function."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from drengine.datastores.ceph.connector import JsonDoc
from drengine.datastores.ceph.simmodel import BASE_FLAGS, FLAGS, PgView, SimOsd, SimPg, UnfoundObject, plural
from drengine.errors import CommandFailed

if TYPE_CHECKING:
    from drengine.datastores.ceph.simcluster import CephSim


# -- answers that only look ----------------------------------------------------------------------


def status(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    views = sim.pg_views()
    by_state: dict[str, int] = {}
    for v in views:
        by_state[v.state] = by_state.get(v.state, 0) + 1
    epoch, members = sim.monmap()
    quorum = sim.quorum()
    return {
        "fsid": sim.state.fsid,
        "health": health(sim, views),
        "election_epoch": 6 + 2 * epoch,
        "quorum": [members.index(m) for m in quorum],
        "quorum_names": quorum,
        "quorum_age": int(sim.state.clock),
        "monmap": {"epoch": epoch, "min_mon_release_name": "pacific", "num_mons": len(members)},
        "osdmap": {
            "epoch": sim.state.epoch,
            "num_osds": len(sim.state.osds),
            "num_up_osds": sum(o.up for o in sim.state.osds),
            "osd_up_since": 0,
            "num_in_osds": sum(o.in_ for o in sim.state.osds),
            "osd_in_since": 0,
            "num_remapped_pgs": sum("remapped" in v.states for v in views),
        },
        "pgmap": {
            "pgs_by_state": [{"state_name": s, "count": n} for s, n in sorted(by_state.items(), key=lambda kv: -kv[1])],
            "num_pgs": len(views),
            "num_pools": len(sim.state.pools),
            "num_objects": sum(v.objects for v in views),
        },
        "mgrmap": {"available": True, "num_standbys": 0, "modules": ["iostat", "nfs", "restful"], "services": {}},
        "progress_events": {},
    }


def health(sim: CephSim, views: list[PgView]) -> dict[str, Any]:
    checks: dict[str, dict[str, Any]] = {}

    def add(code: str, severity: str, message: str, count: int) -> None:
        checks[code] = {"severity": severity, "summary": {"message": message, "count": count}, "muted": False}

    _, members = sim.monmap()
    quorum = sim.quorum()
    if len(quorum) < len(members):
        add(
            "MON_DOWN",
            "HEALTH_WARN",
            f"{len(members) - len(quorum)}/{len(members)} mons down, quorum {','.join(quorum)}",
            len(members) - len(quorum),
        )
    set_flags = [f for f in FLAGS if f in sim.state.flags]
    if set_flags:
        add("OSDMAP_FLAGS", "HEALTH_WARN", f"{','.join(set_flags)} flag(s) set", len(set_flags))
    down = [o for o in sim.state.osds if not o.up and o.in_]
    if down:
        add("OSD_DOWN", "HEALTH_WARN", f"{len(down)} osds down", len(down))
    unfound = sum(v.unfound for v in views)
    objects = sum(v.objects for v in views)
    if unfound:
        pct = 100.0 * unfound / max(objects, 1)
        add(
            "OBJECT_UNFOUND",
            "HEALTH_WARN",
            f"{unfound}/{objects} objects unfound ({pct:.3f}%)",
            len([v for v in views if v.unfound]),
        )
    inactive = [v for v in views if not v.serving]
    if inactive:
        parts = [f"{plural(len(inactive), 'pg')} inactive"]
        n_down = sum("down" in v.states for v in inactive)
        n_stale = sum("stale" in v.states for v in inactive)
        if n_down:
            parts.append(f"{plural(n_down, 'pg')} down")
        if n_stale:
            parts.append(f"{plural(n_stale, 'pg')} stale")
        add("PG_AVAILABILITY", "HEALTH_WARN", "Reduced data availability: " + ", ".join(parts), len(inactive))
    damaged = [v for v in views if "recovery_unfound" in v.states]
    if damaged:
        add("PG_DAMAGED", "HEALTH_ERR", f"Possible data damage: {plural(len(damaged), 'pg')} recovery_unfound", len(damaged))
    degraded_pgs = [v for v in views if "degraded" in v.states]
    if degraded_pgs:
        deg = sum(v.degraded for v in views)
        total = sum(v.copies_expected for v in views)
        pct = 100.0 * deg / max(total, 1)
        add(
            "PG_DEGRADED",
            "HEALTH_WARN",
            f"Degraded data redundancy: {deg}/{total} objects degraded ({pct:.3f}%), {plural(len(degraded_pgs), 'pg')} degraded",
            len(degraded_pgs),
        )
    severities = {c["severity"] for c in checks.values()}
    status = "HEALTH_ERR" if "HEALTH_ERR" in severities else "HEALTH_WARN" if checks else "HEALTH_OK"
    return {"status": status, "checks": dict(sorted(checks.items())), "mutes": []}


def mon_dump(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    epoch, members = sim.monmap()
    quorum = sim.quorum()
    mons = []
    for rank, name in enumerate(members):
        port = sim.mon(name).port
        mons.append(
            {
                "rank": rank,
                "name": name,
                "public_addrs": {"addrvec": [{"type": "v2", "addr": f"127.0.0.1:{port}", "nonce": 0}]},
                "addr": f"127.0.0.1:{port}/0",
                "public_addr": f"127.0.0.1:{port}/0",
                "priority": 0,
                "weight": 0,
                "crush_location": "{}",
            }
        )
    return {
        "epoch": epoch,
        "fsid": sim.state.fsid,
        "min_mon_release": 16,
        "min_mon_release_name": "pacific",
        "mons": mons,
        "quorum": [members.index(m) for m in quorum],
    }


def osd_dump(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    flags = [*BASE_FLAGS, *(f for f in FLAGS if f in sim.state.flags)]
    pools = [
        {
            "pool": p.id,
            "pool_name": p.name,
            "flags": 1,
            "flags_names": "hashpspool",
            "type": 1,
            "size": p.size,
            "min_size": p.min_size,
            "crush_rule": p.crush_rule,
            "pg_autoscale_mode": "off",
            "pg_num": p.pg_num,
            "pg_placement_num": p.pg_num,
            "application_metadata": {p.application: {}},
        }
        for p in sim.state.pools
    ]
    osds = [
        {
            "osd": o.id,
            "uuid": f"00000000-0000-4000-8000-{o.id:012d}",
            "up": int(o.up),
            "in": int(o.in_),
            "weight": 1.0 if o.in_ else 0.0,
            "primary_affinity": 1,
            "lost_at": sim.state.epoch if o.lost else 0,
            "state": ["exists", "up"] if o.up else ["exists"],
        }
        for o in sim.state.osds
    ]
    return {
        "epoch": sim.state.epoch,
        "fsid": sim.state.fsid,
        "flags": ",".join(flags),
        "flags_set": sorted(flags),
        "pools": pools,
        "osds": osds,
    }


def osd_tree(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    hosts: dict[str, list[int]] = {}
    for o in sim.state.osds:
        hosts.setdefault(o.host, []).append(o.id)
    nodes: list[dict[str, Any]] = [
        {"id": -1, "name": "default", "type": "root", "type_id": 11, "children": [-2 - i for i in range(len(hosts))]}
    ]
    for i, (host, ids) in enumerate(hosts.items()):
        nodes.append(
            {
                "id": -2 - i,
                "name": host,
                "type": "host",
                "type_id": 1,
                "pool_weights": {},
                "children": sorted(ids, reverse=True),
            }
        )
    for o in sim.state.osds:
        nodes.append(
            {
                "id": o.id,
                "device_class": o.device_class,
                "name": f"osd.{o.id}",
                "type": "osd",
                "type_id": 0,
                "crush_weight": 1.0,
                "depth": 2,
                "exists": 1,
                "status": "up" if o.up else "down",
                "reweight": 1 if o.in_ else 0,
                "primary_affinity": 1,
            }
        )
    return {"nodes": nodes, "stray": []}


def pg_stat(sim: CephSim, v: PgView) -> dict[str, Any]:
    return {
        "pgid": v.pgid,
        "state": v.state,
        "reported_epoch": sim.state.epoch,
        "stat_sum": {
            "num_objects": v.objects,
            "num_object_copies": v.copies_expected,
            "num_objects_degraded": v.degraded,
            "num_objects_unfound": v.unfound,
            "num_objects_missing_on_primary": v.unfound,
        },
        "up": v.up,
        "acting": v.acting,
        "blocked_by": v.blocked_by,
        "up_primary": v.up[0] if v.up else -1,
        "acting_primary": v.acting[0] if v.acting else -1,
    }


def pg_ls(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    views = sim.pg_views()
    pool_name = cmd.get("poolstr") or cmd.get("pool")
    if pool_name is not None:
        pool_id = sim.pool(str(pool_name)).id
        views = [v for v in views if v.pgid.startswith(f"{pool_id}.")]
    return {"pg_ready": True, "pg_stats": [pg_stat(sim, v) for v in views]}


def pg_dump_stuck(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    wanted = set(cmd.get("stuckops") or ["unclean"])
    stuck = []
    for v in sim.pg_views():
        s = set(v.states)
        if (
            ("inactive" in wanted and not v.serving)
            or ("unclean" in wanted and "clean" not in s)
            or ("undersized" in wanted and "undersized" in s)
            or ("degraded" in wanted and "degraded" in s)
            or ("stale" in wanted and "stale" in s)
        ):
            stuck.append(pg_stat(sim, v))
    return {"pg_ready": True, "stuck_pg_stats": stuck}


def health_cmd(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    return health(sim, sim.pg_views())


def quorum_status(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    quorum = sim.quorum()
    return {
        "election_epoch": 6,
        "quorum_names": quorum,
        "quorum_leader_name": quorum[0] if quorum else "",
        "monmap": mon_dump(sim, cmd),
    }


# -- commands that change the model ---------------------------------------------------------------


def osd_set(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    key = str(cmd.get("key", ""))
    if key not in FLAGS:
        raise CommandFailed(f"unrecognized flag '{key}' (EINVAL)")
    if key not in sim.state.flags:
        sim.state.flags.append(key)
        sim.state.epoch += 1
    return {"message": f"{key} is set"}


def osd_unset(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    key = str(cmd.get("key", ""))
    if key not in FLAGS:
        raise CommandFailed(f"unrecognized flag '{key}' (EINVAL)")
    if key in sim.state.flags:
        sim.state.flags.remove(key)
        sim.state.epoch += 1
    return {"message": f"{key} is unset"}


def osds_named(sim: CephSim, cmd: Mapping[str, Any]) -> list[SimOsd]:
    raw = cmd.get("ids", [])
    ids = [raw] if isinstance(raw, str | int) else list(raw)
    return [sim.osd(int(str(i).removeprefix("osd."))) for i in ids]


def osd_out(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    msgs = []
    for osd in osds_named(sim, cmd):
        if osd.in_:
            osd.in_ = False
            sim.state.epoch += 1
            msgs.append(f"marked out osd.{osd.id}. ")
        else:
            msgs.append(f"osd.{osd.id} is already out. ")
    return {"message": "".join(msgs)}


def osd_in(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    msgs = []
    for osd in osds_named(sim, cmd):
        if not osd.in_:
            osd.in_ = True
            sim.state.epoch += 1
            msgs.append(f"marked in osd.{osd.id}. ")
        else:
            msgs.append(f"osd.{osd.id} is already in. ")
    return {"message": "".join(msgs)}


def osd_lost(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    if not cmd.get("yes_i_really_mean_it"):
        raise CommandFailed(
            "are you SURE?  this might mean real, permanent data loss.  pass --yes-i-really-mean-it if you really do. (EPERM)"
        )
    osd = sim.osd(int(cmd["id"]))
    if osd.up:
        raise CommandFailed(f"osd.{osd.id} is not down (EBUSY)")
    osd.lost = True
    sim.state.epoch += 1
    for pg in sim.state.pgs:
        if osd.id not in pg.copies:
            continue
        pg.copies.remove(osd.id)
        if not pg.copies and pg.objects:
            # The lost OSD held the only copy of the newest data: the survivors peer without
            # it, and every object they cannot vouch for is unfound.
            for name in pg.objects:
                pg.unfound.setdefault(name, UnfoundObject(osd=osd.id))
    return {"message": f"marked osd lost in epoch {sim.state.epoch}"}


def pool_set(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    pool = sim.pool(str(cmd.get("pool", "")))
    var, val = str(cmd.get("var", "")), str(cmd.get("val", ""))
    if var not in ("size", "min_size"):
        raise CommandFailed(f"the Ceph simulator only sets size and min_size, not {var!r} (EINVAL)")
    try:
        n = int(val)
    except ValueError:
        raise CommandFailed(f"error parsing integer value '{val}' (EINVAL)") from None
    if var == "min_size" and not 1 <= n <= pool.size:
        raise CommandFailed(f"pool min_size must be between 1 and size, which is set to {pool.size} (EINVAL)")
    if var == "size" and not 1 <= n <= 10:
        raise CommandFailed("pool size must be between 1 and 10 (EINVAL)")
    setattr(pool, var, n)
    if var == "size":
        pool.min_size = min(pool.min_size, n)
    sim.state.epoch += 1
    return {"message": f"set pool {pool.id} {var} to {n}"}


def pool_application_enable(sim: CephSim, cmd: Mapping[str, Any]) -> JsonDoc:
    pool = sim.pool(str(cmd.get("pool", "")))
    pool.application = str(cmd.get("app", "rados"))
    return {"message": f"enabled application '{pool.application}' on pool '{pool.name}'"}


MON_COMMANDS: dict[str, Callable[[CephSim, Mapping[str, Any]], JsonDoc]] = {
    "status": status,
    "health": health_cmd,
    "quorum_status": quorum_status,
    "mon dump": mon_dump,
    "osd dump": osd_dump,
    "osd tree": osd_tree,
    "pg ls": pg_ls,
    "pg ls-by-pool": pg_ls,
    "pg dump_stuck": pg_dump_stuck,
    "osd set": osd_set,
    "osd unset": osd_unset,
    "osd out": osd_out,
    "osd in": osd_in,
    "osd lost": osd_lost,
    "osd pool set": pool_set,
    "osd pool application enable": pool_application_enable,
}


# -- PG commands ------------------------------------------------------------------------------------


def list_unfound(sim: CephSim, pg: SimPg, view: PgView) -> JsonDoc:
    objects = [
        {
            "oid": {
                "oid": name,
                "key": "",
                "snapid": -2,
                "hash": zlib.crc32(name.encode()),
                "max": 0,
                "pool": pg.pool,
                "namespace": "",
            },
            "need": "1'1",
            "have": "0'0",
            "flags": "none",
            "clean_regions": "",
            "locations": [],
        }
        for name in sorted(pg.unfound)
    ]
    holders = sorted({u.osd for u in pg.unfound.values()})
    might_have = [{"osd": str(o), "status": "osd is down" if not sim.osd(o).up else "already probed"} for o in holders]
    return {
        "num_missing": len(objects),
        "num_unfound": len(objects),
        "objects": objects,
        "state": "NotRecovering",
        "might_have_unfound": might_have,
        "more": False,
    }


def mark_unfound_lost(sim: CephSim, pg: SimPg, how: str) -> JsonDoc:
    if how not in ("revert", "delete"):
        raise CommandFailed(f"mode must be 'revert' or 'delete'; got '{how}' (EINVAL)")
    if not pg.unfound:
        raise CommandFailed(f"pg {pg.pgid} has no unfound objects (EINVAL)")
    unprobed = sorted({u.osd for u in pg.unfound.values() if not sim.osd(u.osd).lost})
    if unprobed:
        raise CommandFailed(
            f"pg has {len(pg.unfound)} unfound objects but we haven't probed all sources, not marking lost "
            f"(osd.{', osd.'.join(map(str, unprobed))} down but not marked lost) (EINVAL)"
        )
    n = len(pg.unfound)
    for name, lost in pg.unfound.items():
        if how == "revert" and lost.previous is not None:
            pg.objects[name] = lost.previous
        else:
            pg.objects.pop(name, None)
    pg.unfound.clear()
    return {"message": f"pg has {n} objects unfound and apparently lost marking"}


"""The explorer's oracle for the Ceph runbooks: what the simulated cluster's ground truth says
any recovery could do from a state, computed on the simulator's model alone (never by asking
the runbooks' decisions or actions, which it judges).

- `min_size_relief`: the pools with PGs blocked by min_size AND NOTHING ELSE (a lower min_size
  makes them active), each with the highest min_size that unblocks all of them (lower than that
  gives up redundancy for nothing). Found by trying each lower min_size on the model itself.
- `blocked_otherwise`: inactive PGs that no min_size unblocks (no copy up, or the latest data
  only on OSDs that are down): what ceph-degrade cannot save without the OSDs.
- `running_mons` / `dead_mons`: the monitors that survive (run) and the ones that are gone.
"""

from __future__ import annotations

from typing import Any

from drengine.datastores.ceph.simcluster import CephSim
from drengine.datastores.ceph.simmodel import FLAGS


def as_sim(model: Any) -> CephSim:
    return model if isinstance(model, CephSim) else CephSim(model)


def settled_copy(model: Any) -> CephSim:
    """A copy of the model as a real cluster would show it at the next look (recovery done,
    time applied), so that looking changes nothing in the model the run works on."""
    sim = CephSim(as_sim(model).state.model_copy(deep=True))
    sim.pg_views()
    return sim


def min_size_relief(model: Any) -> dict[str, int]:
    """Pool name -> the highest min_size that makes every PG of it active that a lower min_size
    can make active at all; only pools that have such a PG."""
    sim = settled_copy(model)
    relief: dict[str, int] = {}
    for pool in sim.state.pools:
        pgs = [pg for pg in sim.state.pgs if pg.pool == pool.id]
        inactive = [pg for pg in pgs if not sim.pg_view(pg).serving]
        if not inactive or pool.min_size <= 1:
            continue
        original = pool.min_size
        unblocked: dict[int, set[str]] = {}
        for k in range(original - 1, 0, -1):
            pool.min_size = k
            unblocked[k] = {pg.pgid for pg in inactive if sim.pg_view(pg).serving}
        pool.min_size = original
        if unblocked[1]:
            relief[pool.name] = max(k for k, pgs_ok in unblocked.items() if pgs_ok == unblocked[1])
    return relief


def blocked_otherwise(model: Any) -> list[str]:
    """PGs inactive whatever the min_size: no copy up at all, or their latest data only on
    OSDs that are down."""
    sim = settled_copy(model)
    stuck = []
    for pool in sim.state.pools:
        original, pool.min_size = pool.min_size, 1
        stuck += [pg.pgid for pg in sim.state.pgs if pg.pool == pool.id and not sim.pg_view(pg).serving]
        pool.min_size = original
    return stuck


def inactive_pgs(model: Any) -> list[str]:
    sim = settled_copy(model)
    return [v.pgid for v in (sim.pg_view(pg) for pg in sim.state.pgs) if not v.serving]


def unfound_objects(model: Any) -> dict[str, int]:
    """(pgid/object) -> the OSD that holds the object's only newest version."""
    return {f"{pg.pgid}/{name}": u.osd for pg in as_sim(model).state.pgs for name, u in pg.unfound.items()}


def running_mons(model: Any) -> set[str]:
    return {m.name for m in as_sim(model).state.mons if m.up}


def dead_mons(model: Any) -> set[str]:
    """Monitors neither running nor stopped (SIGSTOP): gone until someone starts them."""
    return {m.name for m in as_sim(model).state.mons if not m.up and not m.hung}


def quorums(model: Any) -> list[list[str]]:
    """Monitors that run or may run again (stopped by SIGSTOP), grouped by the monmap they hold,
    where they are a majority of it: each group is a quorum now or once its hung members resume."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for mon in as_sim(model).state.mons:
        if mon.up or mon.hung:
            groups.setdefault(tuple(mon.monmap), []).append(mon.name)
    return [names for monmap, names in groups.items() if 2 * len([n for n in names if n in monmap]) > len(monmap)]


def warning_flags(flags: list[str]) -> list[str]:
    """Flags that keep health at HEALTH_WARN (OSDMAP_FLAGS)."""
    return [f for f in flags if f in FLAGS]

"""Named situations of the simulated Ceph cluster, used by tests, drills and dry-run
simulations (`simulated: {scenario: NAME}` in an inventory): healthy, OSDs down, unfound
objects, several pools of which only some are affected, monitor quorum lost."""

from __future__ import annotations

from collections.abc import Callable

from drengine.datastores.ceph.simcluster import CephSim
from drengine.datastores.ceph.simmodel import SimMon, SimOsd, SimPg, SimPool, SimState, UnfoundObject, b64
from drengine.errors import InputError


def _cluster(n_osds: int = 3, hosts: list[str] | None = None, classes: list[str] | None = None) -> CephSim:
    names = ["a", "b", "c"]
    state = SimState(
        mons=[SimMon(name=n, port=3300 + i, monmap=list(names)) for i, n in enumerate(names)],
        osds=[
            SimOsd(
                id=i, host=(hosts or [f"ceph{j + 1}" for j in range(n_osds)])[i], device_class=(classes or ["hdd"] * n_osds)[i]
            )
            for i in range(n_osds)
        ],
    )
    return CephSim(state)


def _add_pool(
    sim: CephSim,
    name: str,
    size: int = 3,
    min_size: int = 2,
    pg_num: int = 8,
    device_class: str | None = None,
    rule: int = 0,
    objects: int = 4,
) -> SimPool:
    pool = SimPool(
        id=len(sim.state.pools) + 1,
        name=name,
        size=size,
        min_size=min_size,
        pg_num=pg_num,
        device_class=device_class,
        crush_rule=rule,
    )
    sim.state.pools.append(pool)
    for seed in range(pg_num):
        pg = SimPg(pool=pool.id, seed=seed)
        pg.copies = sim.mapping(pool, pg)
        pg.past = list(pg.copies)
        sim.state.pgs.append(pg)
    for i in range(objects):
        sim.write_object(name, f"{name}-object-{i}", f"{name} object {i}\n".encode(), timeout=1.0)
    return pool


def healthy() -> CephSim:
    """Three monitors, three OSDs on three hosts, pool `drengine` (size 3, min_size 2) with 4 objects."""
    sim = _cluster()
    _add_pool(sim, "drengine")
    sim.close()
    return sim


def one_osd_down() -> CephSim:
    sim = healthy()
    sim.kill_osds([2])
    return sim


def two_osds_down() -> CephSim:
    sim = healthy()
    sim.kill_osds([1, 2])
    return sim


def unfound_objects() -> CephSim:
    """Objects written while only osd.0 was up, then osd.0 died: their newest version is on osd.0 alone.

    osd.1 and osd.2 are back and the PGs active again, but those objects are unfound until
    osd.0 returns, or until it is marked lost and the objects reverted or deleted.
    """
    sim = healthy()
    pool = sim.pool("drengine")
    pool.min_size = 1
    sim.kill_osds([1, 2])
    lonely = {"drengine-object-0", "drengine-object-1", "drengine-new-object"}
    for name in sorted(lonely):
        sim.write_object("drengine", name, f"{name}: written while only osd.0 was up\n".encode(), timeout=1.0)
    previous = {f"drengine-object-{i}": b64(f"drengine object {i}\n".encode()) for i in range(2)}
    sim.kill_osds([0])
    sim.start_osds([1, 2])
    pool.min_size = 2
    for pg in sim.state.pgs:
        if pg.copies == [0]:
            # osd.1 and osd.2 hold the older versions: the PG peers on them, the new versions are unfound.
            for name in pg.objects:
                if name in lonely:
                    pg.unfound[name] = UnfoundObject(osd=0, previous=previous.get(name))
            pg.copies = [1, 2]
    sim.close()
    return sim


def several_pools_some_affected() -> CephSim:
    """Six OSDs, three on SSD and three on HDD; two HDD OSDs are down.

    `images` (SSD rule) is untouched, `volumes` (HDD, size 3 / min_size 2) is blocked, and
    `backups` (HDD, size 3 / min_size 1) is degraded but still serving, on one copy.
    """
    sim = _cluster(6, hosts=[f"ceph{i + 1}" for i in range(6)], classes=["ssd"] * 3 + ["hdd"] * 3)
    _add_pool(sim, "images", device_class="ssd", rule=1, pg_num=8)
    _add_pool(sim, "volumes", device_class="hdd", rule=2, pg_num=8)
    _add_pool(sim, "backups", size=3, min_size=1, device_class="hdd", rule=2, pg_num=8)
    sim.kill_osds([4, 5])
    sim.close()
    return sim


def mon_quorum_lost() -> CephSim:
    sim = healthy()
    sim.kill_mons(["b", "c"])
    return sim


SCENARIOS: dict[str, Callable[[], CephSim]] = {
    "healthy": healthy,
    "one-osd-down": one_osd_down,
    "two-osds-down": two_osds_down,
    "unfound-objects": unfound_objects,
    "several-pools-some-affected": several_pools_some_affected,
    "mon-quorum-lost": mon_quorum_lost,
}


def scenario(name: str) -> CephSim:
    """A fresh simulated cluster in the named state."""
    if name not in SCENARIOS:
        raise InputError(f"no Ceph simulation scenario named {name!r}; known: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]()

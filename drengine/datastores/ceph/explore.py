"""The fault space of the Ceph runbooks, for `drengine explore`: generated clusters (three to
six OSDs on HDD or SSD, one to three pools of size 2 or 3 with min_size 1 or 2, some on a
device class, OSDs down, down long enough to be marked out, objects whose newest version is
unfound, flags an operator set before, monitors lost), and the invariants, computed from
the simulator's own model:

- ceph-degrade lowers min_size only on a pool that had PGs inactive for want of copies
  (peered: fewer acting OSDs than min_size) just before; its goal: every PG active;
- ceph-restore (after a ceph-degrade run on the same cluster, and the OSDs back or not):
  never unsets a flag that was set before the degrade run, never sets a min_size the pool
  did not have before it; on success every flag and min_size the degrade changed is back;
- ceph-mon-quorum: never two monitor quorums (running monitors of two different monmaps
  each a majority of their own); its goal: a quorum.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from drengine.datastores.ceph.scenarios import _add_pool, _cluster
from drengine.datastores.ceph.sim import READ_ONLY_PREFIXES
from drengine.datastores.ceph.simcluster import CephSim
from drengine.datastores.ceph.simmodel import SimMon, SimState, UnfoundObject, b64
from drengine.explore.kit import Kit, Ledger, Situation, Violation, Watch, digits, mostly, pick
from drengine.explore.scenario import MemberSpec, Prelude, WorldChange
from drengine.journal import Entry

CLUSTER = digits(7)
POOL = digits(5)
DOWN = digits(6)  # one digit per OSD


def _members(state: SimState) -> list[MemberSpec]:
    mons = [MemberSpec(name=f"mon.{m.name}", port=m.port) for m in state.mons]
    return mons + [MemberSpec(name=f"osd.{o.id}") for o in state.osds]


def _unfound(sim: CephSim, pool: str) -> None:
    """The newest version of some objects is on osd.0 alone (written while the other copies were
    down, which came back since), and osd.0 died: those objects are unfound."""
    target = sim.pool(pool)
    for pg in sim.state.pgs:
        if pg.pool != target.id or 0 not in pg.copies or len(pg.copies) < 2 or not pg.objects:
            continue
        pg.unfound[sorted(pg.objects)[0]] = UnfoundObject(osd=0, previous=b64(b"the older version\n"))
        pg.copies = [o for o in pg.copies if o != 0]
    sim.kill_osds([0])


@st.composite
def osds_lost(draw: st.DrawFn, quorum: bool = False) -> Situation:
    c = draw(CLUSTER)  # one draw for the cluster, one per pool, one for the OSDs down (see kit.digits)
    count = pick(c[0], 3, 4, 5, 6, percent=55)
    mixed = pick(c[1], False, True, percent=75)
    classes = ["ssd" if mixed and i % 2 else "hdd" for i in range(count)]
    sim = _cluster(count, hosts=[f"ceph{i + 1}" for i in range(count)], classes=classes)
    mon_count = pick(c[2], 3, 5, percent=80)
    if mon_count != len(sim.state.mons):
        names = [chr(ord("a") + i) for i in range(mon_count)]
        sim.state.mons = [SimMon(name=n, port=3300 + i, monmap=list(names)) for i, n in enumerate(names)]
    pools = []
    for i in range(pick(c[3], 1, 2, 3, percent=60)):
        d = draw(POOL)
        size = min(pick(d[0], 3, 2, percent=80), count)
        min_size = min(pick(d[1], 2, 1, percent=80), size)
        device = None
        if pick(d[2], False, True, percent=70) and mixed:
            device = classes[i % 2]
            size = min(size, classes.count(device))
            min_size = min(min_size, size)
        name = ["rbd", "volumes", "backups"][i]
        _add_pool(sim, name, size=size, min_size=min_size, pg_num=4, device_class=device, rule=i,
                  objects=pick(d[3], 2, 0, 1, 3, percent=70))
        pools.append(name)
    if pick(c[4], False, True, percent=85) and count >= 3:
        _unfound(sim, pools[0])
    sim.state.flags = sorted({*sim.state.flags, *pick(c[5], (), ("noout",), ("norebalance",), ("norecover",), percent=80)})
    d = draw(DOWN)
    down = [o.id for o in sim.state.osds if pick(d[o.id], False, True, percent=70)]
    hung = [i for i in down if d[i] >= 96]  # now and then stopped (SIGSTOP) rather than dead
    sim.kill_osds([i for i in down if i not in hung])
    sim.hang_osds(hung)
    if down and pick(c[6] % 10, False, True, percent=8):
        sim.elapse(700.0)  # past mon_osd_down_out_interval: marked out unless noout
    lost = pick(c[6] // 10, 2, 1, 0, 3, percent=7) if quorum else pick(c[6] // 10, 0, 1, 2, percent=7)
    gone = [m.name for m in sim.state.mons[len(sim.state.mons) - min(lost, len(sim.state.mons)):]]
    if gone and pick(c[5] // 10 if c[5] >= 80 else 0, False, True, percent=7):
        sim.hang_mon(gone[0])  # one of the lost monitors is stopped, not dead: it may come back
        gone = gone[1:]
    sim.kill_mons(gone)
    sim.close()
    label = (f"{count} OSDs ({'/'.join(sorted(set(classes)))}), pools {', '.join(pools)}, "
             f"down {', '.join(f'osd.{i}' for i in down) or 'none'}, flags {', '.join(sim.state.flags) or 'none'}, "
             f"{lost} of {mon_count} monitors down")
    return Situation(label, _members(sim.state), json.loads(sim.to_json()))


def _sim(model: Any) -> CephSim:
    return model if isinstance(model, CephSim) else CephSim(model)


def _copy(model: Any) -> CephSim:
    return CephSim(_sim(model).state.model_copy(deep=True))


def peered_pools(model: Any) -> set[int]:
    """Pools with a PG inactive for want of copies: fewer acting OSDs than min_size (on a copy:
    looking settles the model)."""
    sim = _copy(model)
    return {pg.pool for pg, view in zip(sim.state.pgs, sim.pg_views(), strict=True)
            if "peered" in view.states and "stale" not in view.states}


def quorums(model: Any) -> list[list[str]]:
    """Monitors that run or may run again (stopped by SIGSTOP), grouped by the monmap they hold,
    where they are a majority of it: each group is a quorum now or once its hung members resume."""
    sim = _sim(model)
    groups: dict[tuple[str, ...], list[str]] = {}
    for mon in sim.state.mons:
        if mon.up or mon.hung:
            groups.setdefault(tuple(mon.monmap), []).append(mon.name)
    return [names for monmap, names in groups.items() if 2 * len([n for n in names if n in monmap]) > len(monmap)]


class CephWatch(Watch):
    def __init__(self, runbook: str) -> None:
        self.runbook = runbook
        self.sizes: dict[int, int] | None = None  # min_size per pool at the last event
        self.peered: set[int] = set()  # pools inactive for want of copies when the last step started
        self.original: SimState | None = None  # before the prelude's degrade run
        self.degraded: SimState | None = None  # after it

    def prelude(self, before: Any, after: Any) -> None:
        self.original, self.degraded = _sim(before).state, _sim(after).state

    def after_event(self, entry: Entry, model: Any, ledger: Ledger) -> list[Violation]:
        if model is None:
            return []
        now = _sim(model)
        sizes = {p.id: p.min_size for p in now.state.pools}
        before, self.sizes = self.sizes, sizes
        if entry.type.value == "step_started":
            # Which pools are inactive for want of copies, just before a step acts (looking at the
            # PGs costs: once per step, not per event).
            self.peered = peered_pools(now)
        found = []
        if len(quorums(now)) > 1:
            found.append(Violation("ceph.one-monitor-quorum",
                                   "two monitor quorums: " + " | ".join(", ".join(q) for q in quorums(now))))
        if before is None:
            return found
        lowered = [p for p in now.state.pools if p.min_size < before.get(p.id, p.min_size)]
        if lowered and self.runbook != "ceph-restore":
            for pool in lowered:
                if pool.id not in self.peered and not ledger.chose(pool.name):
                    found.append(Violation("ceph.min-size-only-where-blocked",
                                           f"min_size of pool {pool.name} was lowered to {pool.min_size} although none "
                                           f"of its PGs was inactive for want of copies when the step started"))
        found += self._restore_keeps_the_operators(now)
        return found

    def _restore_keeps_the_operators(self, now: CephSim) -> list[Violation]:
        if self.runbook != "ceph-restore" or self.original is None or self.degraded is None:
            return []
        found = []
        for flag in sorted(set(self.original.flags) & set(self.degraded.flags) - set(now.state.flags)):
            found.append(Violation("ceph.restore-only-what-degrade-changed",
                                   f"flag {flag} was set before the degrade run and the restore unset it"))
        originals = {p.name: p.min_size for p in self.original.pools}
        degraded = {p.name: p.min_size for p in self.degraded.pools}
        for pool in now.state.pools:
            if pool.min_size != degraded.get(pool.name) and pool.min_size != originals.get(pool.name):
                found.append(Violation("ceph.restore-only-what-degrade-changed",
                                       f"pool {pool.name} got min_size {pool.min_size}; it had {originals.get(pool.name)} "
                                       f"before the degrade run and {degraded.get(pool.name)} after it"))
        return found

    def restored(self, model: Any) -> str | None:
        if self.original is None or self.degraded is None:
            return None
        now = _sim(model).state
        left = [f"flag {f} still set" for f in sorted(set(self.degraded.flags) - set(self.original.flags)) if f in now.flags]
        originals = {p.name: p.min_size for p in self.original.pools}
        for pool in now.pools:
            if pool.min_size != originals.get(pool.name, pool.min_size):
                left.append(f"pool {pool.name} min_size {pool.min_size}, was {originals[pool.name]} before the degrade run")
        return "; ".join(left) or None


def serving(model: Any) -> str | None:
    sim = _copy(model)
    inactive = [v.pgid for v in sim.pg_views() if not v.serving]
    return f"{len(inactive)} PG(s) inactive: {', '.join(inactive[:6])}" if inactive else None


class CephKit(Kit):
    kind = "ceph"
    runbooks = ("ceph-degrade", "ceph-restore", "ceph-mon-quorum")
    ops = ("kill", "hang", "resume", "start")
    flaps = ("kill", "hang")
    timeouts = {"connect": 1, "read": 2, "catch_up": 5}

    def situations(self, runbook: str) -> st.SearchStrategy[Situation]:
        return osds_lost(quorum=runbook == "ceph-mon-quorum")

    def prelude(self, runbook: str) -> Prelude | None:
        return Prelude(runbook="ceph-degrade", input="degrade_run") if runbook == "ceph-restore" else None

    def after_prelude(self, runbook: str, situation: Situation) -> st.SearchStrategy[list[WorldChange]]:
        """The OSDs and monitors come back after the degrade run (all of them, usually)."""
        state = SimState.model_validate(situation.state)
        down = [f"osd.{o.id}" for o in state.osds if not o.up] + [f"mon.{m.name}" for m in state.mons if not m.up]
        stopped = {f"osd.{o.id}" for o in state.osds if o.hung} | {f"mon.{m.name}" for m in state.mons if m.hung}

        def back(which: str) -> list[WorldChange]:
            chosen = down if which == "all" else ([] if which == "none" else down[::2])
            return [WorldChange(when="prelude", index=0, op="resume" if m in stopped else "start", member=m, advance=60.0)
                    for m in chosen]

        return mostly("all", "none", "some", percent=70).map(back)

    def model(self, backend: Any) -> Any:
        return backend.sim

    def load(self, state: dict[str, Any]) -> Any:
        return CephSim(SimState.model_validate(state))

    def copy(self, model: Any) -> Any:
        return _copy(model)

    def applies(self, model: Any, op: str, member: str) -> bool:
        sim = _sim(model)
        kind, _, name = member.partition(".")
        daemon = sim.osd(int(name)) if kind == "osd" else sim.mon(name)
        up, hung = daemon.up and not daemon.hung, daemon.hung
        return {"kill": up or hung, "hang": up, "resume": hung, "start": not up and not hung}.get(op, True)

    def goal(self, runbook: str, model: Any, watch: Watch) -> str | None:
        if runbook == "ceph-mon-quorum":
            return None if _sim(model).quorum() else "the monitors have no quorum"
        if runbook == "ceph-restore":
            return watch.restored(model) if isinstance(watch, CephWatch) else None
        return serving(model)

    def watch(self, runbook: str) -> Watch:
        return CephWatch(runbook)

    def mutating(self, language: str, text: str) -> bool:
        if language == "ceph-mon":
            return str(json.loads(text).get("prefix", "")) not in READ_ONLY_PREFIXES
        if language == "shell":
            return " daemon " not in text
        return language in ("ceph-pg", "rados") and " get " not in text and "list_unfound" not in text

    def once(self, language: str, text: str) -> bool:
        # Marking an OSD lost or giving up unfound objects cannot be undone; flags and min_size
        # are states, sent again when they are not in place.
        return (language == "ceph-mon" and str(json.loads(text).get("prefix", "")) == "osd lost") or \
            (language == "ceph-pg" and "mark_unfound_lost" in text)

    def inventory(self, name: str, members: list[MemberSpec]) -> dict[str, Any]:
        cluster = super().inventory(name, members)
        for member in cluster["members"]:
            member["role"] = member["name"].split(".")[0]
            if member["role"] == "osd":
                member.pop("port")
        return cluster


KIT = CephKit()

"""The fault space of the Ceph runbooks, for `drengine explore`, and what a recovery must reach.

Generated clusters: three to six OSDs on HDD or SSD, one to three pools (size 2 or 3, min_size
1 to 3, some on a device class of their own, so healthy pools stand beside blocked ones), OSDs
down or stopped independently of which PGs they hold, PGs whose latest data is only on an OSD
that is down (blocked whatever the min_size), objects whose newest version is unfound, flags
an operator set before, monitors dead or stopped in any order (five monitors as often as three
for ceph-mon-quorum). The invariants are in `ceph.invariants`, the oracle in `ceph.oracle`;
both read the simulator's model only, never the runbooks' decisions.

Liveness (`expect_done`), with every gate approved and the world left alone:
- ceph-degrade: a quorum, every inactive PG one that a lower min_size unblocks, no unfound
  object: DONE, with every PG serving;
- ceph-restore, after a degrade run: every OSD and monitor back, no flag but the degrade's:
  DONE, with the original flags and min_size back;
- ceph-mon-quorum: no quorum and at least one monitor running: DONE, with a quorum.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from drengine.datastores.ceph import oracle
from drengine.datastores.ceph.invariants import CephWatch
from drengine.datastores.ceph.scenarios import _add_pool, _cluster
from drengine.datastores.ceph.sim import READ_ONLY_PREFIXES
from drengine.datastores.ceph.simcluster import CephSim
from drengine.datastores.ceph.simmodel import SimMon, SimState, UnfoundObject, b64
from drengine.explore.kit import Kit, Situation, Watch, digits, mostly, pick
from drengine.explore.scenario import MemberSpec, Prelude, WorldChange

CLUSTER = digits(8)
POOL = digits(5)
DOWN = digits(6)  # one digit per OSD
MONS = digits(7)


def _members(state: SimState) -> list[MemberSpec]:
    mons = [MemberSpec(name=f"mon.{m.name}", port=m.port) for m in state.mons]
    return mons + [MemberSpec(name=f"osd.{o.id}") for o in state.osds]


def _unfound(sim: CephSim, pool: str, lost: bool) -> None:
    """The newest version of some objects is on osd.0 alone (written while the other copies were
    down, which came back since), and osd.0 died: those objects are unfound. `lost`: an operator
    marked osd.0 lost before (its disk is gone): nothing can bring them back."""
    target = sim.pool(pool)
    for pg in sim.state.pgs:
        if pg.pool != target.id or 0 not in pg.copies or len(pg.copies) < 2 or not pg.objects:
            continue
        pg.unfound[sorted(pg.objects)[0]] = UnfoundObject(osd=0, previous=b64(b"the older version\n"))
        pg.copies = [o for o in pg.copies if o != 0]
    sim.kill_osds([0])
    sim.osd(0).lost = lost


def _latest_only_on(sim: CephSim, pool: str, osd: int) -> None:
    """Writes acknowledged while only `osd` of the pool's PGs was up (min_size 1 then): the latest
    data of its PGs is on it alone; once it is down, they are `down` whatever the min_size."""
    target = sim.pool(pool)
    for pg in sim.state.pgs:
        if pg.pool == target.id and osd in sim.mapping(target, pg) and pg.objects:
            pg.copies = [osd]


def _pools(draw: st.DrawFn, sim: CephSim, c: list[int], count: int, classes: list[str], mixed: bool) -> list[str]:
    pools = []
    for i in range(pick(c[3], 1, 2, 3, percent=45)):
        d = draw(POOL)
        size = min(pick(d[0], 3, 2, percent=80), count)
        # min_size 3 (no write on a degraded PG) is a real configuration: two copies up are then
        # the safe value to lower to, not one.
        min_size = min(pick(d[1], 2, 1, 3, percent=70), size)
        device = None
        if pick(d[2], False, True, percent=60) and mixed:
            device = classes[i % 2]
            size = min(size, classes.count(device))
            min_size = min(min_size, size)
        name = ["rbd", "volumes", "backups"][i]
        _add_pool(sim, name, size=size, min_size=min_size, pg_num=4, device_class=device, rule=i,
                  objects=pick(d[3], 2, 0, 1, 3, percent=70))
        pools.append(name)
    return pools


def _lose_mons(sim: CephSim, m: list[int], quorum: bool) -> tuple[list[str], list[str]]:
    """Monitors dead, and one of them now and then stopped instead, chosen in any order."""
    mon_count = len(sim.state.mons)
    majority = mon_count // 2 + 1
    if quorum:
        lost = pick(m[0], majority, mon_count - 1, mon_count, 1, 0, percent=55)
    else:
        lost = pick(m[0], 0, 1, majority, percent=85)
    order = sorted(sim.state.mons, key=lambda mon: (m[1 + sim.state.mons.index(mon) % 5], mon.name))
    gone = [mon.name for mon in order[:lost]]
    hung = gone[:1] if gone and pick(m[6], False, True, percent=75) else []
    for name in hung:
        sim.hang_mon(name)
    sim.kill_mons([g for g in gone if g not in hung])
    return gone, hung


@st.composite
def osds_lost(draw: st.DrawFn, quorum: bool = False) -> Situation:
    c = draw(CLUSTER)  # one draw for the cluster, one per pool, one for the OSDs, one for the monitors
    count = pick(c[0], 3, 4, 5, 6, percent=55)
    mixed = pick(c[1], False, True, percent=60)
    classes = ["ssd" if mixed and i % 2 else "hdd" for i in range(count)]
    sim = _cluster(count, hosts=[f"ceph{i + 1}" for i in range(count)], classes=classes)
    mon_count = pick(c[2], 3, 5, percent=50 if quorum else 80)
    if mon_count != len(sim.state.mons):
        names = [chr(ord("a") + i) for i in range(mon_count)]
        sim.state.mons = [SimMon(name=n, port=3300 + i, monmap=list(names)) for i, n in enumerate(names)]
    pools = _pools(draw, sim, c, count, classes, mixed)
    if pick(c[4], False, True, percent=85) and count >= 3:
        _unfound(sim, pools[0], lost=c[4] >= 95)
    sim.state.flags = sorted({*sim.state.flags, *pick(c[5], (), ("noout",), ("norebalance",), ("norecover",), percent=80)})
    d = draw(DOWN)
    down = [o.id for o in sim.state.osds if pick(d[o.id], False, True, percent=70)]
    if pick(c[7], False, True, percent=85):
        alone = d[0] % count
        _latest_only_on(sim, pools[-1], alone)
        down = sorted({*down, alone})
    hung = [i for i in down if d[i] >= 96]  # now and then stopped (SIGSTOP) rather than dead
    sim.kill_osds([i for i in down if i not in hung])
    sim.hang_osds(hung)
    if down and pick(c[6] % 10, False, True, percent=8):
        sim.elapse(700.0)  # past mon_osd_down_out_interval: marked out unless noout
    gone, stopped = _lose_mons(sim, draw(MONS), quorum)
    sim.close()
    label = (f"{count} OSDs ({'/'.join(sorted(set(classes)))}), pools {', '.join(pools)}, "
             f"down {', '.join(f'osd.{i}' for i in down) or 'none'}, flags {', '.join(sim.state.flags) or 'none'}, "
             f"monitors down {', '.join(gone) or 'none'} of {mon_count}"
             + (f" ({', '.join(stopped)} stopped)" if stopped else ""))
    return Situation(label, _members(sim.state), json.loads(sim.to_json()))


def _copy(model: Any) -> CephSim:
    return CephSim(oracle.as_sim(model).state.model_copy(deep=True))


def serving(model: Any) -> str | None:
    inactive = oracle.inactive_pgs(model)
    return f"{len(inactive)} PG(s) inactive: {', '.join(inactive[:6])}" if inactive else None


def degrade_can_serve(start: Any) -> str | None:
    sim = oracle.as_sim(start)
    lost = {o.id for o in sim.state.osds if o.lost}
    recoverable = [name for name, holder in oracle.unfound_objects(sim).items() if holder not in lost]
    if not sim.quorum() or recoverable or oracle.blocked_otherwise(sim):
        return None  # unfound objects an OSD may bring back wait for it (or for the operator to name it)
    relief = oracle.min_size_relief(sim)
    if relief:
        return "every inactive PG is blocked by min_size alone (pools " + ", ".join(relief) + ")"
    return "every PG serves already"


def quorum_can_form(start: Any) -> str | None:
    sim = oracle.as_sim(start)
    running = sorted(oracle.running_mons(sim))
    if sim.quorum() or not running:
        return None
    return f"no quorum, and monitor(s) {', '.join(running)} run: monmap surgery leaves them a quorum of their own"


def restore_can_finish(start: Any, watch: CephWatch | None) -> str | None:
    if watch is None or watch.original is None or watch.degraded is None:
        return None
    sim = oracle.as_sim(start)
    state = sim.state
    if any(not o.up for o in state.osds) or any(not m.up for m in state.mons) or not sim.quorum():
        return None
    ours = set(watch.degraded.flags) - set(watch.original.flags)
    if oracle.unfound_objects(sim) or set(oracle.warning_flags(state.flags)) - ours:
        return None
    return "every OSD and monitor is back, and only the degrade run's flags are set"


class CephKit(Kit):
    kind = "ceph"
    runbooks = ("ceph-degrade", "ceph-restore", "ceph-mon-quorum")
    ops = ("kill", "hang", "resume", "start")
    flaps = ("kill", "hang")
    timeouts = {"connect": 1, "read": 2, "catch_up": 5}

    def __init__(self) -> None:
        # The watch of the scenario being run: ceph-restore's liveness needs the state its
        # prelude (the degrade run) started from, which only the watch saw.
        self._watch: CephWatch | None = None

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
        sim = oracle.as_sim(model)
        kind, _, name = member.partition(".")
        daemon = sim.osd(int(name)) if kind == "osd" else sim.mon(name)
        up, hung = daemon.up and not daemon.hung, daemon.hung
        return {"kill": up or hung, "hang": up, "resume": hung, "start": not up and not hung}.get(op, True)

    def goal(self, runbook: str, model: Any, watch: Watch) -> str | None:
        if runbook == "ceph-mon-quorum":
            return None if oracle.as_sim(model).quorum() else "the monitors have no quorum"
        if runbook == "ceph-restore":
            return watch.restored(model) if isinstance(watch, CephWatch) else None
        return serving(model)

    def ledger_changes(self, runbook: str, start: Any, end: Any) -> list[tuple[str, str, str]] | None:
        """OSD flags set and min_size lowered since the run started (drengine/datastores/ceph/ledger.py)."""
        # The ledger's names, written here: the explorer stays apart from the runbook's own modules.
        before, after = oracle.as_sim(start).state, oracle.as_sim(end).state
        found = [("ceph.flag", f, f"OSD flag {f} is set") for f in after.flags if f not in before.flags]
        was = {p.name: p.min_size for p in before.pools}
        found += [("ceph.min_size", f"pool {p.name}", f"pool {p.name}'s min_size is {p.min_size} (was {was[p.name]})")
                  for p in after.pools if p.name in was and p.min_size < was[p.name]]
        return found

    def watch(self, runbook: str) -> Watch:
        self._watch = CephWatch(runbook)
        return self._watch

    def expect_done(self, runbook: str, start: Any) -> str | None:
        if runbook == "ceph-degrade":
            return degrade_can_serve(start)
        if runbook == "ceph-mon-quorum":
            return quorum_can_form(start)
        return restore_can_finish(start, self._watch)

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

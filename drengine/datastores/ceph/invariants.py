"""The Ceph runbooks' invariants for `drengine explore`: what a run did to the simulated cluster,
compared with what the oracle (`ceph.oracle`, the simulator's truth) says any recovery could
do. A worse choice is excused only when the operator named the pool, OSD or monitor (an input
or --gone), never by a risk the runbook wrote. Between two events:

- ceph.one-monitor-quorum: never two monitor quorums (each a majority of its own monmap);
- ceph.min-size-only-where-it-unblocks: min_size lowered only on a pool whose PGs a lower
  min_size unblocks (not a healthy pool, not one blocked by OSDs that hold the only data);
- ceph.min-size-not-below-what-unblocks: and not below the highest value that unblocks them;
- ceph.out-only-when-named / ceph.lost-only-when-named: an OSD marked out or lost only when
  the operator declared it gone (an OSD that is down may come back with everything it holds);
- ceph.unfound-given-up-only-when-named: unfound objects reverted or deleted only when the OSD
  holding their newest version was declared gone;
- ceph.down-osds-kept-in: a degrade that ends with success while OSDs are down (since before
  it looked, and not by the explorer's doing) leaves noout set
  (else Ceph marks them out after 10 minutes and moves their data for nothing), unless the
  operator skipped a step;
- ceph.restore-only-what-degrade-changed, ceph.restore-keeps-io: a restore puts back the
  operator's flags and min_size as they were, and never raises a min_size that blocks I/O;
- ceph.surgery-keeps-live-monitors / ceph.surgery-removes-dead-monitors: the monmap after
  surgery keeps every monitor that ran throughout, and none that was dead throughout.

The moments compared: the state when the previous step started, when this one started, and
after each change the explorer itself made to the world (`world`): the run decided on one of
them, so a choice that one of them justifies is not blamed on the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drengine.datastores.ceph import oracle
from drengine.datastores.ceph.simmodel import DOWN_OUT_INTERVAL, SimState
from drengine.explore.kit import Ledger, Violation, Watch
from drengine.journal import Entry


@dataclass(frozen=True)
class Moment:
    """What the oracle said at one moment the run may have decided on."""

    step_start: bool
    step: str = ""  # the step that started at this moment (step_start)
    relief: dict[str, int] = field(default_factory=dict)  # pool -> min_size that unblocks it
    running: frozenset[str] = frozenset()  # monitors running
    dead: frozenset[str] = frozenset()  # monitors neither running nor stopped


@dataclass(frozen=True)
class Seen:
    """The parts of the model compared from one event to the next."""

    sizes: dict[str, int]
    down: frozenset[int]
    out: frozenset[int]
    noout: bool
    lost: frozenset[int]
    unfound: dict[str, int]
    monmaps: dict[str, tuple[int, tuple[str, ...]]]

    @classmethod
    def of(cls, state: SimState) -> Seen:
        return cls(sizes={p.name: p.min_size for p in state.pools},
                   down=frozenset(o.id for o in state.osds if not o.up),
                   out=frozenset(o.id for o in state.osds if not o.in_), noout="noout" in state.flags,
                   lost=frozenset(o.id for o in state.osds if o.lost),
                   unfound={f"{pg.pgid}/{n}": u.osd for pg in state.pgs for n, u in pg.unfound.items()},
                   monmaps={m.name: (m.monmap_epoch, tuple(m.monmap)) for m in state.mons})


class CephWatch(Watch):
    def __init__(self, runbook: str) -> None:
        self.runbook = runbook
        self.seen: Seen | None = None
        self.moments: list[Moment] = []  # since the previous step started
        self.original: SimState | None = None  # before the prelude's degrade run
        self.degraded: SimState | None = None  # after it
        self.down_first: frozenset[int] | None = None  # OSDs down when the run first looked
        self.world_osds: set[int] = set()  # OSDs the explorer itself killed, stopped or revived

    def prelude(self, before: Any, after: Any) -> None:
        self.original, self.degraded = oracle.as_sim(before).state, oracle.as_sim(after).state

    def _moment(self, model: Any, step_start: bool, step: str = "") -> Moment:
        relief = oracle.min_size_relief(model) if self.runbook == "ceph-degrade" else {}
        return Moment(step_start, step, relief, frozenset(oracle.running_mons(model)), frozenset(oracle.dead_mons(model)))

    def _since_previous_step(self, step: str) -> list[Moment]:
        """The moments from the first start of the step before this one. A step started again
        (resumed after the engine was killed in it, or retried) keeps the moments of its first
        start: what it had stopped itself by then (the surviving monitors, for the surgery) is not
        what the run decided on."""
        starts = [i for i, m in enumerate(self.moments) if m.step_start]
        if not starts:
            return []
        if self.moments[starts[-1]].step == step:
            return self.moments
        first = starts[-1]
        for i in reversed(starts[:-1]):
            if self.moments[i].step != self.moments[first].step:
                break
            first = i
        return self.moments[first:]

    def world(self, model: Any, what: str) -> None:
        self.moments.append(self._moment(model, step_start=False))
        up = {o.id: o.up for o in oracle.as_sim(model).state.osds}
        if self.seen is not None:
            self.world_osds |= {i for i, is_up in up.items() if (i in self.seen.down) == is_up}
        self.seen = Seen.of(oracle.as_sim(model).state)  # what the world did is not the run's doing

    def after_event(self, entry: Entry, model: Any, ledger: Ledger) -> list[Violation]:
        if model is None:
            return []
        state = oracle.as_sim(model).state
        now = Seen.of(state)
        before, self.seen = self.seen, now
        if self.down_first is None:
            self.down_first = now.down
        if entry.type.value == "step_started":
            self.moments = self._since_previous_step(entry.data.get("step", ""))
            self.moments.append(self._moment(model, step_start=True, step=entry.data.get("step", "")))
        found = []
        if len(oracle.quorums(model)) > 1:
            found.append(Violation("ceph.one-monitor-quorum",
                                   "two monitor quorums: " + " | ".join(", ".join(q) for q in oracle.quorums(model))))
        if before is None:
            return found
        if self.runbook != "ceph-restore":
            found += self._min_size(before, now, ledger)
        found += self._osds(before, now, state, ledger)
        found += self._surgery(before, now, ledger)
        if self.runbook == "ceph-restore":
            found += self._restore_keeps_the_operators(state) + self._restore_keeps_io(before, now, model)
        return found

    def _min_size(self, before: Seen, now: Seen, ledger: Ledger) -> list[Violation]:
        found = []
        for pool, size in now.sizes.items():
            old = before.sizes.get(pool, size)
            if size >= old or ledger.chose(pool):
                continue
            floors = [m.relief[pool] for m in self.moments if pool in m.relief]
            if not floors:
                found.append(Violation("ceph.min-size-only-where-it-unblocks",
                                       f"min_size of pool {pool} was lowered from {old} to {size}, although no PG of it "
                                       f"was blocked by min_size alone (healthy, or blocked by OSDs a lower min_size "
                                       f"cannot replace) and the operator did not name it"))
            elif size < min(floors):
                found.append(Violation("ceph.min-size-not-below-what-unblocks",
                                       f"min_size of pool {pool} was lowered from {old} to {size}; {min(floors)} already "
                                       f"unblocks its PGs, so writes are acknowledged on fewer copies for nothing"))
        return found

    def _osds(self, before: Seen, now: Seen, state: SimState, ledger: Ledger) -> list[Violation]:
        found = []
        for i in sorted(now.out - before.out):
            osd = next(o for o in state.osds if o.id == i)
            # Marked out by Ceph itself: down past mon_osd_down_out_interval while noout was not set.
            automatic = (not before.noout and osd.down_since is not None
                         and state.clock - osd.down_since >= DOWN_OUT_INTERVAL)
            if not automatic and not ledger.chose(f"osd.{i}"):
                found.append(Violation("ceph.out-only-when-named", f"osd.{i} was marked out although the operator did "
                                       f"not declare it gone: its data is moved while it may come back"))
        for i in sorted(now.lost - before.lost):
            if not ledger.chose(f"osd.{i}"):
                found.append(Violation("ceph.lost-only-when-named", f"osd.{i} was marked lost although the operator did "
                                       f"not declare it gone: what only it holds is given up, yet it could come back"))
        up = {o.id for o in state.osds if o.up}
        for name, holder in sorted(before.unfound.items()):
            # Given up while its holder was already lost: no choice could bring it back (the
            # marking itself is judged by ceph.lost-only-when-named).
            if name not in now.unfound and holder not in up | before.lost and not ledger.chose(f"osd.{holder}"):
                found.append(Violation("ceph.unfound-given-up-only-when-named",
                                       f"unfound object {name} was given up while osd.{holder}, which holds its newest "
                                       f"version, could come back (the operator did not declare it gone)"))
        return found

    def _surgery(self, before: Seen, now: Seen, ledger: Ledger) -> list[Violation]:
        found = []
        for mon, (epoch, members) in sorted(now.monmaps.items()):
            old_epoch, old_members = before.monmaps.get(mon, (epoch, members))
            if epoch == old_epoch or not self.moments:
                continue
            for removed in sorted(set(old_members) - set(members)):
                if all(removed in m.running for m in self.moments) and not ledger.chose(f"mon.{removed}"):
                    found.append(Violation("ceph.surgery-keeps-live-monitors",
                                           f"mon.{removed} was removed from the monmap of mon.{mon} although it ran "
                                           f"all along: it could be part of the quorum"))
            for kept in sorted(set(members) - {mon}):
                if all(kept in m.dead for m in self.moments):
                    found.append(Violation("ceph.surgery-removes-dead-monitors",
                                           f"the monmap of mon.{mon} after surgery keeps mon.{kept}, which was dead "
                                           f"all along: the quorum still counts on it"))
        return found

    def _restore_keeps_io(self, before: Seen, now: Seen, model: Any) -> list[Violation]:
        raised = {p: s for p, s in now.sizes.items() if s > before.sizes.get(p, s)}
        if not raised:
            return []
        sim = oracle.settled_copy(model)
        blocked_now = set(oracle.inactive_pgs(sim))
        for pool in sim.state.pools:
            if pool.name in raised:
                pool.min_size = before.sizes[pool.name]
        blocked_by_restore = sorted(blocked_now - set(oracle.inactive_pgs(sim)))
        if not blocked_by_restore:
            return []
        return [Violation("ceph.restore-keeps-io", f"raising min_size of {', '.join(sorted(raised))} blocked PGs "
                          f"{', '.join(blocked_by_restore[:6])}: they have fewer copies up than the new min_size")]

    def _restore_keeps_the_operators(self, now: SimState) -> list[Violation]:
        if self.original is None or self.degraded is None:
            return []
        found = []
        for flag in sorted(set(self.original.flags) & set(self.degraded.flags) - set(now.flags)):
            found.append(Violation("ceph.restore-only-what-degrade-changed",
                                   f"flag {flag} was set before the degrade run and the restore unset it"))
        originals = {p.name: p.min_size for p in self.original.pools}
        degraded = {p.name: p.min_size for p in self.degraded.pools}
        for pool in now.pools:
            if pool.min_size != degraded.get(pool.name) and pool.min_size != originals.get(pool.name):
                found.append(Violation("ceph.restore-only-what-degrade-changed",
                                       f"pool {pool.name} got min_size {pool.min_size}; it had {originals.get(pool.name)} "
                                       f"before the degrade run and {degraded.get(pool.name)} after it"))
        return found

    def at_end(self, model: Any, ledger: Ledger, success: bool) -> list[Violation]:
        if self.runbook != "ceph-degrade" or not success or model is None or ledger.skipped:
            return []  # an operator who skipped a step chose to leave something undone
        state = oracle.as_sim(model).state
        down = [f"osd.{o.id}" for o in state.osds if not o.up and not o.lost and not ledger.chose(f"osd.{o.id}")
                and o.id in (self.down_first or ()) and o.id not in self.world_osds]
        if down and "noout" not in state.flags:
            return [Violation("ceph.down-osds-kept-in", f"the degrade ended with success while {', '.join(down)} "
                              f"is/are down and noout is not set: Ceph marks them out after "
                              f"{DOWN_OUT_INTERVAL:g} s and moves their data although they may come back")]
        return []

    def restored(self, model: Any) -> str | None:
        """Why the redundancy the degrade run lowered is not back (None: it is)."""
        if self.original is None or self.degraded is None:
            return None
        now = oracle.as_sim(model).state
        left = [f"flag {f} still set" for f in sorted(set(self.degraded.flags) - set(self.original.flags)) if f in now.flags]
        originals = {p.name: p.min_size for p in self.original.pools}
        for pool in now.pools:
            if pool.min_size != originals.get(pool.name, pool.min_size):
                left.append(f"pool {pool.name} min_size {pool.min_size}, was {originals[pool.name]} before the degrade run")
        return "; ".join(left) or None

"""Simulated Ceph cluster: the in-memory twin of `drengine.datastores.ceph.connector.CephConnector`.

Owns a small model of a Ceph cluster (monitors with their monmaps, OSDs up/in/lost, pools,
placement groups holding objects, OSD map flags) and answers the `CephAPI` calls from it,
with the JSON shapes a Pacific cluster prints for the commands `observe()` sends, so the
same parsers and runbooks run on both. The state is in `simmodel`, the JSON answers and the
commands that change it in `simcommands`, the named fault scenarios in `scenarios`.

Model, in the words of the real system:
- A PG maps to `size` OSDs of its pool's rule that are `in` (a stable hash stands in for
  CRUSH, so a down-but-in OSD keeps its place and an `out` OSD is replaced); its acting set
  is the OSDs of that mapping that are up.
- A PG is active when its acting set has at least `min_size` members and one of them holds
  the PG's latest data; short of min_size it is `undersized+degraded+peered` and blocks I/O;
  when only down (not lost) OSDs hold the latest data it is `down`.
- Recovery and backfill complete instantly between two calls, unless `norecover` /
  `nobackfill` hold them (then `recovery_wait` / `backfill_wait`).
- A monitor that starts or resumes joins the quorum after an election (`ELECTION_SECONDS` of
  the model's time): whoever starts monitors must wait for their quorum.
- Time comes from the injected `Clock` (a `SimulatedClock` unless told otherwise): what has
  passed on it since the last call is applied first (long-down OSDs are marked out unless
  `noout` is set); `elapse()` moves the model's time by hand. The model's time is kept in
  the state file, so a later process continues it. Nothing sleeps and nothing runs in the
  background.

Differences from a real cluster, on purpose: state changes are immediate (a real cluster
needs seconds to mark an OSD down and repeer); health checks on inactive PGs appear at once
(Pacific raises PG_AVAILABILITY for `peered` PGs only once they are stuck, after 60 s).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from drengine.clock import Clock, SimulatedClock
from drengine.datastores.ceph.connector import JsonDoc
from drengine.datastores.ceph.simcommands import MON_COMMANDS, list_unfound, mark_unfound_lost, pg_stat
from drengine.datastores.ceph.simmodel import (
    DOWN_OUT_INTERVAL,
    ELECTION_SECONDS,
    STATE_ORDER,
    PgView,
    SimMon,
    SimOsd,
    SimPg,
    SimPool,
    SimState,
    b64,
    crush_score,
    unb64,
)
from drengine.errors import CommandFailed, ConnectError, InputError, ProbeTimeout


class CephSim:
    """A simulated cluster answering `CephAPI` calls; fault helpers change the model directly.

    `connect_timeout`/`op_timeout` only appear in error messages: a simulated timeout is
    reported at once, never waited for.
    """

    def __init__(self, state: SimState, connect_timeout: float = 2.0, op_timeout: float = 5.0,
                 clock: Clock | None = None) -> None:
        self.state = state
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self.clock: Clock = clock or SimulatedClock()
        self._seen = self.clock.now()
        self._connected = False

    # ------------------------------------------------------------------ serialisation

    def to_json(self) -> str:
        return self.state.model_dump_json(by_alias=True, indent=1)

    @classmethod
    def from_json(cls, text: str, connect_timeout: float = 2.0, op_timeout: float = 5.0,
                  clock: Clock | None = None) -> CephSim:
        try:
            state = SimState.model_validate_json(text)
        except ValueError as exc:
            raise InputError(f"the simulated Ceph state is not valid: {exc}") from None
        return cls(state, connect_timeout, op_timeout, clock)

    # ------------------------------------------------------------------ lookups

    def osd(self, osd_id: int) -> SimOsd:
        for o in self.state.osds:
            if o.id == osd_id:
                return o
        raise CommandFailed(f"osd.{osd_id} does not exist (ENOENT)")

    def mon(self, name: str) -> SimMon:
        name = name.removeprefix("mon.")
        for m in self.state.mons:
            if m.name == name:
                return m
        raise CommandFailed(f"mon.{name} does not exist (ENOENT)")

    def pool(self, name: str) -> SimPool:
        for p in self.state.pools:
            if p.name == name:
                return p
        raise CommandFailed(f"unrecognized pool '{name}' (ENOENT)")

    def _pool_by_id(self, pool_id: int) -> SimPool:
        return next(p for p in self.state.pools if p.id == pool_id)

    def _pg(self, pgid: str) -> SimPg:
        for pg in self.state.pgs:
            if pg.pgid == pgid:
                return pg
        raise CommandFailed(f"pgid '{pgid}' does not exist (ENOENT)")

    def _pg_of(self, pool: SimPool, name: str) -> SimPg:
        seed = zlib.crc32(name.encode()) % pool.pg_num
        return next(pg for pg in self.state.pgs if pg.pool == pool.id and pg.seed == seed)

    # ------------------------------------------------------------------ monitors

    def monmap(self) -> tuple[int, list[str]]:
        """The monmap that wins: the newest among the running monitors (all of them when none run)."""
        running = [m for m in self.state.mons if m.up] or self.state.mons
        best = max(running, key=lambda m: m.monmap_epoch)
        return best.monmap_epoch, list(best.monmap)

    def quorum(self) -> list[str]:
        """Running monitors of the winning monmap that have been elected, when they are a strict majority of it."""
        _, members = self.monmap()
        up = [m.name for m in self.state.mons
              if m.up and m.joins_at <= self.state.clock and m.name in members and m.monmap == members]
        return up if len(up) * 2 > len(members) else []

    def _require_quorum(self) -> None:
        if self.quorum():
            self._connected = True
            return
        _, members = self.monmap()
        up = [m.name for m in self.state.mons if m.up and m.name in members]
        electing = [m.name for m in self.state.mons if m.up and m.joins_at > self.state.clock]
        if not self._connected:
            raise ConnectError(
                f"no Ceph monitor quorum answered within {self.connect_timeout:g} s (simulated): "
                f"{len(up)} of {len(members)} monitors are up ({', '.join(up) or 'none'}), a quorum needs "
                f"{len(members) // 2 + 1}" + (f"; {', '.join(electing)} still electing" if electing else "")
            )
        raise ProbeTimeout(
            f"monitor command got no answer within {self.op_timeout:g} s (simulated): the monitors have "
            f"lost quorum ({len(up)} of {len(members)} up)"
        )

    # ------------------------------------------------------------------ placement and PG states

    def _rule_osds(self, pool: SimPool) -> list[SimOsd]:
        return [o for o in self.state.osds if pool.device_class in (None, o.device_class)]

    def mapping(self, pool: SimPool, pg: SimPg) -> list[int]:
        """The PG's OSDs by placement (CRUSH's raw set): `in` OSDs of the pool's rule, up or not."""
        candidates = [o.id for o in self._rule_osds(pool) if o.in_]
        candidates.sort(key=lambda o: crush_score(pool.id, pg.seed, o), reverse=True)
        return candidates[: pool.size]

    def _settle(self) -> None:
        """Apply what a real cluster does by itself between two looks: time passing (auto-out),
        found objects, recovery, backfill."""
        self._catch_up()
        for pg in self.state.pgs:
            pool = self._pool_by_id(pg.pool)
            acting = [o for o in self.mapping(pool, pg) if self.osd(o).up]
            for name, lost in list(pg.unfound.items()):
                if self.osd(lost.osd).up:  # the OSD holding the newest version is back: found
                    del pg.unfound[name]
                    if lost.osd not in pg.copies:
                        pg.copies.append(lost.osd)
            sources = [o for o in pg.copies if self.osd(o).up]
            if not sources or len(acting) < pool.min_size:
                continue  # not active: no recovery
            for o in acting:
                if o in pg.copies:
                    continue
                held = "norecover" if o in pg.past else "nobackfill"
                if held not in self.state.flags:
                    pg.copies.append(o)
                    if o not in pg.past:
                        pg.past.append(o)
            # Once the mapped OSDs are complete, copies on OSDs that left the mapping are dropped
            # (a real cluster deletes strays after backfill).
            if all(o in pg.copies for o in acting) and len(acting) == pool.size:
                pg.copies = [o for o in pg.copies if o in acting]

    def pg_view(self, pg: SimPg) -> PgView:
        pool = self._pool_by_id(pg.pool)
        mapping = self.mapping(pool, pg)
        acting = [o for o in mapping if self.osd(o).up]
        holders_up = [o for o in pg.copies if self.osd(o).up]
        holders_waiting = [o for o in pg.copies if not self.osd(o).up and not self.osd(o).lost]
        states: set[str] = set()
        blocked: list[int] = []
        n_objects = len(pg.objects)
        complete = [o for o in acting if o in pg.copies]
        if not acting:
            states = {"stale", "undersized", "peered"} | ({"degraded"} if n_objects else set())
        elif not holders_up and holders_waiting:
            states = {"down"}
            blocked = sorted(holders_waiting)
        else:
            states.add("active" if len(acting) >= pool.min_size else "peered")
            if len(acting) < pool.size:
                states.add("undersized")
            pending = [o for o in acting if o not in pg.copies]
            if pending:
                if any(o in pg.past for o in pending):
                    states.add("recovery_wait")
                if any(o not in pg.past for o in pending):
                    states |= {"remapped", "backfill_wait"}
            if pg.unfound:
                states.add("recovery_unfound")
            if n_objects and (len(complete) < pool.size or pg.unfound):
                states.add("degraded")
            if states == {"active"}:
                states.add("clean")
        ordered = [s for s in STATE_ORDER if s in states]
        degraded = n_objects * max(0, pool.size - len(complete)) if n_objects and "degraded" in states else 0
        return PgView(
            pgid=pg.pgid,
            states=ordered,
            up=acting if acting else mapping,
            acting=acting if acting else [o for o in mapping if o in pg.copies][:1],
            blocked_by=blocked,
            objects=n_objects,
            unfound=len(pg.unfound),
            degraded=degraded,
            copies_expected=n_objects * pool.size,
        )

    def pg_views(self) -> list[PgView]:
        self._settle()
        return [self.pg_view(pg) for pg in self.state.pgs]

    # ------------------------------------------------------------------ CephAPI

    def mon_command(self, cmd: Mapping[str, Any]) -> JsonDoc:
        self._catch_up()  # what happened while time passed comes first
        self._require_quorum()
        prefix = str(cmd.get("prefix", ""))
        handler = MON_COMMANDS.get(prefix)
        if handler is None:
            raise CommandFailed(f"monitor command {prefix!r} is not known to the Ceph simulator (EINVAL)")
        result = handler(self, cmd)
        self._settle()
        return result

    def pg_command(self, pgid: str, cmd: Mapping[str, Any]) -> JsonDoc:
        self._catch_up()
        self._require_quorum()  # the client must reach the monitors once to learn the PG's primary
        self._settle()
        pg = self._pg(pgid)
        view = self.pg_view(pg)
        if not view.acting or not self.osd(view.acting[0]).up:
            raise ProbeTimeout(
                f"PG {pgid} command got no answer within {self.op_timeout:g} s (simulated): its primary OSD is down"
            )
        prefix = str(cmd.get("prefix", ""))
        if prefix == "query":
            return {
                "state": view.state,
                "epoch": self.state.epoch,
                "up": view.up,
                "acting": view.acting,
                "info": {"pgid": pgid, "stats": pg_stat(self, view)},
            }
        if prefix == "list_unfound":
            return list_unfound(self, pg, view)
        if prefix == "mark_unfound_lost":
            return mark_unfound_lost(self, pg, str(cmd.get("mulcmd", "")))
        raise CommandFailed(f"PG command {prefix!r} is not known to the Ceph simulator (EINVAL)")

    def write_object(self, pool: str, name: str, data: bytes, timeout: float) -> None:
        self._require_client()
        self._settle()
        sim_pool = self.pool(pool)
        pg = self._pg_of(sim_pool, name)
        view = self.pg_view(pg)
        if not view.serving or name in pg.unfound or "pause" in self.state.flags:
            raise ProbeTimeout(
                f"writing object {name!r} to pool {pool!r} was not acknowledged within {timeout:g} s (simulated): "
                f"its placement group {pg.pgid} is {view.state}"
            )
        pg.objects[name] = b64(data)
        # Only the acting OSDs have the new version now; the others need recovery when they return.
        pg.copies = list(view.acting)
        for o in view.acting:
            if o not in pg.past:
                pg.past.append(o)

    def read_object(self, pool: str, name: str) -> bytes:
        self._require_client()
        self._settle()
        sim_pool = self.pool(pool)
        pg = self._pg_of(sim_pool, name)
        view = self.pg_view(pg)
        if not view.serving or name in pg.unfound or "pause" in self.state.flags:
            raise ProbeTimeout(
                f"reading object {name!r} from pool {pool!r} got no answer within {self.op_timeout:g} s (simulated): "
                f"its placement group {pg.pgid} is {view.state}"
            )
        if name not in pg.objects:
            raise CommandFailed(f"object {name!r} does not exist in pool {pool!r}")
        return unb64(pg.objects[name])

    def _require_client(self) -> None:
        # Object I/O goes to the OSDs and keeps working without monitor quorum, but only for a
        # client that connected (and got the maps) while a quorum existed.
        if not self._connected:
            self._require_quorum()

    def close(self) -> None:
        self._connected = False

    # ------------------------------------------------------------------ faults (what a drill does to the lab)

    def kill_osds(self, ids: list[int]) -> None:
        self._catch_up()
        for i in ids:
            osd = self.osd(i)
            osd.hung = False  # a stopped process killed is gone all the same
            self._mark_down(osd)
        self._settle()

    def hang_osds(self, ids: list[int]) -> None:
        """SIGSTOP: its peers stop hearing it and the monitors mark it down (at once here; a real
        cluster waits osd_heartbeat_grace), and it keeps its store locked."""
        self._catch_up()
        for i in ids:
            osd = self.osd(i)
            if osd.up:
                osd.hung = True
                self._mark_down(osd)
        self._settle()

    def resume_osds(self, ids: list[int]) -> None:
        """SIGCONT: a hung OSD notices it was marked down and boots again."""
        self._catch_up()
        for i in ids:
            osd = self.osd(i)
            if osd.hung:
                osd.hung = False
                self._boot(osd)
        self._settle()

    def start_osds(self, ids: list[int]) -> None:
        self._catch_up()
        for i in ids:
            osd = self.osd(i)
            if not osd.hung:  # a hung one still holds its store: a second daemon cannot start on it
                self._boot(osd)
        self._settle()

    def _mark_down(self, osd: SimOsd) -> None:
        if osd.up:
            osd.up = False
            osd.down_since = self.state.clock
            self.state.epoch += 1

    def _boot(self, osd: SimOsd) -> None:
        if not osd.up and "noup" not in self.state.flags:
            osd.up = True
            osd.down_since = None
            osd.lost = False
            if not osd.in_ and "noin" not in self.state.flags:
                osd.in_ = True  # a booting OSD that was auto-marked out comes back in
            self.state.epoch += 1

    def kill_mons(self, names: list[str]) -> None:
        for name in names:
            mon = self.mon(name)
            mon.up, mon.hung = False, False

    def hang_mon(self, name: str) -> None:
        mon = self.mon(name)
        if mon.up:
            mon.up, mon.hung = False, True

    def resume_mon(self, name: str) -> None:
        self._catch_up()
        mon = self.mon(name)
        if mon.hung:
            mon.up, mon.hung = True, False
            mon.joins_at = self.state.clock + ELECTION_SECONDS

    def start_mon(self, name: str) -> None:
        self._catch_up()
        mon = self.mon(name)
        if not mon.hung and not mon.up:
            mon.up = True
            mon.joins_at = self.state.clock + ELECTION_SECONDS

    def extract_monmap(self, name: str) -> list[str]:
        """`ceph-mon -i NAME --extract-monmap`: the monitor must be stopped, as on a real host."""
        mon = self.mon(name)
        if mon.up or mon.hung:
            raise CommandFailed(f"mon.{mon.name} is running{' (stopped by SIGSTOP)' if mon.hung else ''}; stop it "
                                f"before extracting its monmap (store is locked)")
        return list(mon.monmap)

    def inject_monmap(self, name: str, members: list[str]) -> None:
        """`monmaptool --rm` + `ceph-mon -i NAME --inject-monmap`: this monitor now believes in `members`."""
        mon = self.mon(name)
        if mon.up or mon.hung:
            raise CommandFailed(f"mon.{mon.name} is running{' (stopped by SIGSTOP)' if mon.hung else ''}; stop it "
                                f"before injecting a monmap (store is locked)")
        unknown = [m for m in members if m not in {x.name for x in self.state.mons}]
        if unknown or mon.name not in members:
            raise CommandFailed(f"monmap for mon.{mon.name} must list mon.{mon.name} and only known monitors; got {members}")
        mon.monmap = list(members)
        mon.monmap_epoch += 1

    def follow(self, clock: Clock) -> None:
        """From now on the model's time comes from `clock` (the run's)."""
        self._catch_up()
        self.clock, self._seen = clock, clock.now()

    def elapse(self, seconds: float) -> None:
        """Move the model's time by hand (the clock moves it by itself)."""
        self._advance(seconds)
        self._settle()

    def _catch_up(self) -> None:
        now = self.clock.now()
        passed, self._seen = now - self._seen, now
        if passed > 0:
            self._advance(passed)

    def _advance(self, seconds: float) -> None:
        """Time passes: down OSDs past mon_osd_down_out_interval are marked out unless `noout`."""
        self.state.clock += seconds
        if "noout" in self.state.flags:
            return
        for osd in self.state.osds:
            if not osd.up and osd.in_ and osd.down_since is not None and self.state.clock - osd.down_since >= DOWN_OUT_INTERVAL:
                osd.in_ = False
                self.state.epoch += 1

"""Simulated Ceph cluster: the in-memory twin of `drengine.datastores.ceph.connector.CephConnector`.

Owns a small model of a Ceph cluster (monitors with their monmaps, OSDs up/in/lost, pools,
placement groups holding objects, OSD map flags) and answers the `CephAPI` calls from it,
with the JSON shapes a Pacific cluster prints for the commands `observe()` sends, so the
same parsers and runbooks run on both. Also the named fault scenarios (`SCENARIOS`) used by
tests, drills and dry-run simulations.

Model, in the words of the real system:
- A PG maps to `size` OSDs of its pool's rule that are `in` (a stable hash stands in for
  CRUSH, so a down-but-in OSD keeps its place and an `out` OSD is replaced); its acting set
  is the OSDs of that mapping that are up.
- A PG is active when its acting set has at least `min_size` members and one of them holds
  the PG's latest data; short of min_size it is `undersized+degraded+peered` and blocks I/O;
  when only down (not lost) OSDs hold the latest data it is `down`.
- Recovery and backfill complete instantly between two calls, unless `norecover` /
  `nobackfill` hold them (then `recovery_wait` / `backfill_wait`).
- The clock is logical: `elapse()` advances it, which marks long-down OSDs out unless
  `noout` is set. Nothing sleeps and nothing runs in the background.

Differences from a real cluster, on purpose: state changes are immediate (a real cluster
needs seconds to mark an OSD down and repeer); health checks on inactive PGs appear at once
(Pacific raises PG_AVAILABILITY for `peered` PGs only once they are stuck, after 60 s).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from drengine.datastores.ceph.connector import JsonDoc
from drengine.errors import CommandFailed, ConnectError, InputError, ProbeTimeout

FLAGS = ("noout", "norebalance", "norecover", "nobackfill", "noup", "nodown", "noin", "pause", "noscrub", "nodeep-scrub")
# Flags every Pacific osdmap carries; shown in `osd dump` like the real cluster does.
BASE_FLAGS = ("sortbitwise", "recovery_deletes", "purged_snapdirs", "pglog_hardlimit")
DOWN_OUT_INTERVAL = 600.0  # mon_osd_down_out_interval
FSID = "5a1c0ffe-0000-4000-8000-00000000ce9f"


class State(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class SimMon(State):
    name: str
    port: int
    up: bool = True
    # Each monitor keeps its own copy of the monmap (epoch, members): monmap surgery edits one copy.
    monmap_epoch: int = 1
    monmap: list[str] = Field(default_factory=list)


class SimOsd(State):
    id: int
    host: str
    device_class: str = "hdd"
    up: bool = True
    in_: bool = Field(default=True, alias="in")
    lost: bool = False
    down_since: float | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SimPool(State):
    id: int
    name: str
    size: int = 3
    min_size: int = 2
    pg_num: int = 8
    application: str = "rados"
    crush_rule: int = 0
    device_class: str | None = None  # the rule's device class; None means every OSD


class UnfoundObject(State):
    osd: int  # the OSD that held the only copy of the newest version
    previous: str | None = None  # base64 of the older version `revert` goes back to; None: revert deletes


class SimPg(State):
    pool: int
    seed: int
    objects: dict[str, str] = Field(default_factory=dict)  # name -> base64 data
    copies: list[int] = Field(default_factory=list)  # OSDs that hold the PG's latest data
    past: list[int] = Field(default_factory=list)  # OSDs that ever held it (recovery rather than backfill)
    unfound: dict[str, UnfoundObject] = Field(default_factory=dict)

    @property
    def pgid(self) -> str:
        return f"{self.pool}.{self.seed:x}"


class SimState(State):
    fsid: str = FSID
    clock: float = 0.0
    epoch: int = 1
    flags: list[str] = Field(default_factory=list)
    mons: list[SimMon] = Field(default_factory=list)
    osds: list[SimOsd] = Field(default_factory=list)
    pools: list[SimPool] = Field(default_factory=list)
    pgs: list[SimPg] = Field(default_factory=list)


class PgView(BaseModel):
    """The computed state of one PG (never stored: derived from the model on every look)."""

    model_config = ConfigDict(frozen=True)

    pgid: str
    states: list[str]
    up: list[int]
    acting: list[int]
    blocked_by: list[int]
    objects: int
    unfound: int
    degraded: int
    copies_expected: int

    @property
    def state(self) -> str:
        return "+".join(self.states)

    @property
    def serving(self) -> bool:
        return "active" in self.states and "stale" not in self.states


# Ceph prints PG states in this order (pg_state_string in osd_types.cc).
STATE_ORDER = (
    "stale",
    "creating",
    "active",
    "activating",
    "clean",
    "recovery_wait",
    "recovering",
    "down",
    "recovery_unfound",
    "backfill_unfound",
    "undersized",
    "degraded",
    "remapped",
    "peering",
    "backfill_wait",
    "backfilling",
    "incomplete",
    "peered",
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


@lru_cache(maxsize=65536)  # pure, and computed for every PG and OSD at every look: once is enough
def _score(pool: int, seed: int, osd: int) -> int:
    """Rendezvous hashing standing in for CRUSH: stable, spreads PGs, keeps down-but-in OSDs mapped."""
    return int.from_bytes(hashlib.sha256(f"{pool}.{seed}.{osd}".encode()).digest()[:8], "big")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class CephSim:
    """A simulated cluster answering `CephAPI` calls; fault helpers change the model directly.

    `connect_timeout`/`op_timeout` only appear in error messages: a simulated timeout is
    reported at once, never waited for.
    """

    def __init__(self, state: SimState, connect_timeout: float = 2.0, op_timeout: float = 5.0) -> None:
        self.state = state
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self._connected = False

    # ------------------------------------------------------------------ serialisation

    def to_json(self) -> str:
        return self.state.model_dump_json(by_alias=True, indent=1)

    @classmethod
    def from_json(cls, text: str, connect_timeout: float = 2.0, op_timeout: float = 5.0) -> CephSim:
        try:
            state = SimState.model_validate_json(text)
        except ValueError as exc:
            raise InputError(f"the simulated Ceph state is not valid: {exc}") from None
        return cls(state, connect_timeout, op_timeout)

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
        """Running monitors of the winning monmap, when they are a strict majority of it."""
        _, members = self.monmap()
        up = [m.name for m in self.state.mons if m.up and m.name in members and m.monmap == members]
        return up if len(up) * 2 > len(members) else []

    def _require_quorum(self) -> None:
        if self.quorum():
            self._connected = True
            return
        _, members = self.monmap()
        up = [m.name for m in self.state.mons if m.up and m.name in members]
        if not self._connected:
            raise ConnectError(
                f"no Ceph monitor quorum answered within {self.connect_timeout:g} s (simulated): "
                f"{len(up)} of {len(members)} monitors are up ({', '.join(up) or 'none'}), a quorum needs "
                f"{len(members) // 2 + 1}"
            )
        raise ProbeTimeout(
            f"monitor command got no answer within {self.op_timeout:g} s (simulated): the monitors have "
            f"lost quorum ({len(up)} of {len(members)} up)"
        )

    # ------------------------------------------------------------------ placement and PG states

    def _rule_osds(self, pool: SimPool) -> list[SimOsd]:
        return [o for o in self.state.osds if pool.device_class in (None, o.device_class)]

    def _mapping(self, pool: SimPool, pg: SimPg) -> list[int]:
        """The PG's OSDs by placement (CRUSH's raw set): `in` OSDs of the pool's rule, up or not."""
        candidates = [o.id for o in self._rule_osds(pool) if o.in_]
        candidates.sort(key=lambda o: _score(pool.id, pg.seed, o), reverse=True)
        return candidates[: pool.size]

    def _settle(self) -> None:
        """Apply what a real cluster does by itself between two looks: found objects, recovery, backfill."""
        for pg in self.state.pgs:
            pool = self._pool_by_id(pg.pool)
            acting = [o for o in self._mapping(pool, pg) if self.osd(o).up]
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
        mapping = self._mapping(pool, pg)
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
        self._require_quorum()
        prefix = str(cmd.get("prefix", ""))
        handler = self._MON_COMMANDS.get(prefix)
        if handler is None:
            raise CommandFailed(f"monitor command {prefix!r} is not known to the Ceph simulator (EINVAL)")
        result = handler(self, cmd)
        self._settle()
        return result

    def pg_command(self, pgid: str, cmd: Mapping[str, Any]) -> JsonDoc:
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
                "info": {"pgid": pgid, "stats": self._pg_stat(view)},
            }
        if prefix == "list_unfound":
            return self._list_unfound(pg, view)
        if prefix == "mark_unfound_lost":
            return self._mark_unfound_lost(pg, str(cmd.get("mulcmd", "")))
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
        pg.objects[name] = _b64(data)
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
        return _unb64(pg.objects[name])

    def _require_client(self) -> None:
        # Object I/O goes to the OSDs and keeps working without monitor quorum, but only for a
        # client that connected (and got the maps) while a quorum existed.
        if not self._connected:
            self._require_quorum()

    def close(self) -> None:
        self._connected = False

    # ------------------------------------------------------------------ faults (what a drill does to the lab)

    def kill_osds(self, ids: list[int]) -> None:
        for i in ids:
            osd = self.osd(i)
            if osd.up:
                osd.up = False
                osd.down_since = self.state.clock
                self.state.epoch += 1
        self._settle()

    def start_osds(self, ids: list[int]) -> None:
        for i in ids:
            osd = self.osd(i)
            if not osd.up and "noup" not in self.state.flags:
                osd.up = True
                osd.down_since = None
                osd.lost = False
                if not osd.in_ and "noin" not in self.state.flags:
                    osd.in_ = True  # a booting OSD that was auto-marked out comes back in
                self.state.epoch += 1
        self._settle()

    def kill_mons(self, names: list[str]) -> None:
        for name in names:
            self.mon(name).up = False

    def start_mon(self, name: str) -> None:
        self.mon(name).up = True

    def extract_monmap(self, name: str) -> list[str]:
        """`ceph-mon -i NAME --extract-monmap`: the monitor must be stopped, as on a real host."""
        mon = self.mon(name)
        if mon.up:
            raise CommandFailed(f"mon.{mon.name} is running; stop it before extracting its monmap (store is locked)")
        return list(mon.monmap)

    def inject_monmap(self, name: str, members: list[str]) -> None:
        """`monmaptool --rm` + `ceph-mon -i NAME --inject-monmap`: this monitor now believes in `members`."""
        mon = self.mon(name)
        if mon.up:
            raise CommandFailed(f"mon.{mon.name} is running; stop it before injecting a monmap (store is locked)")
        unknown = [m for m in members if m not in {x.name for x in self.state.mons}]
        if unknown or mon.name not in members:
            raise CommandFailed(f"monmap for mon.{mon.name} must list mon.{mon.name} and only known monitors; got {members}")
        mon.monmap = list(members)
        mon.monmap_epoch += 1

    def elapse(self, seconds: float) -> None:
        """Advance the logical clock: down OSDs past mon_osd_down_out_interval are marked out unless `noout`."""
        self.state.clock += seconds
        if "noout" in self.state.flags:
            return
        for osd in self.state.osds:
            if not osd.up and osd.in_ and osd.down_since is not None and self.state.clock - osd.down_since >= DOWN_OUT_INTERVAL:
                osd.in_ = False
                self.state.epoch += 1
        self._settle()

    # ------------------------------------------------------------------ JSON answers

    def _status(self, cmd: Mapping[str, Any]) -> JsonDoc:
        views = self.pg_views()
        by_state: dict[str, int] = {}
        for v in views:
            by_state[v.state] = by_state.get(v.state, 0) + 1
        epoch, members = self.monmap()
        quorum = self.quorum()
        return {
            "fsid": self.state.fsid,
            "health": self._health(views),
            "election_epoch": 6 + 2 * epoch,
            "quorum": [members.index(m) for m in quorum],
            "quorum_names": quorum,
            "quorum_age": int(self.state.clock),
            "monmap": {"epoch": epoch, "min_mon_release_name": "pacific", "num_mons": len(members)},
            "osdmap": {
                "epoch": self.state.epoch,
                "num_osds": len(self.state.osds),
                "num_up_osds": sum(o.up for o in self.state.osds),
                "osd_up_since": 0,
                "num_in_osds": sum(o.in_ for o in self.state.osds),
                "osd_in_since": 0,
                "num_remapped_pgs": sum("remapped" in v.states for v in views),
            },
            "pgmap": {
                "pgs_by_state": [{"state_name": s, "count": n} for s, n in sorted(by_state.items(), key=lambda kv: -kv[1])],
                "num_pgs": len(views),
                "num_pools": len(self.state.pools),
                "num_objects": sum(v.objects for v in views),
            },
            "mgrmap": {"available": True, "num_standbys": 0, "modules": ["iostat", "nfs", "restful"], "services": {}},
            "progress_events": {},
        }

    def _health(self, views: list[PgView]) -> dict[str, Any]:
        checks: dict[str, dict[str, Any]] = {}

        def add(code: str, severity: str, message: str, count: int) -> None:
            checks[code] = {"severity": severity, "summary": {"message": message, "count": count}, "muted": False}

        _, members = self.monmap()
        quorum = self.quorum()
        if len(quorum) < len(members):
            add(
                "MON_DOWN",
                "HEALTH_WARN",
                f"{len(members) - len(quorum)}/{len(members)} mons down, quorum {','.join(quorum)}",
                len(members) - len(quorum),
            )
        set_flags = [f for f in FLAGS if f in self.state.flags]
        if set_flags:
            add("OSDMAP_FLAGS", "HEALTH_WARN", f"{','.join(set_flags)} flag(s) set", len(set_flags))
        down = [o for o in self.state.osds if not o.up and o.in_]
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
            parts = [f"{_plural(len(inactive), 'pg')} inactive"]
            n_down = sum("down" in v.states for v in inactive)
            n_stale = sum("stale" in v.states for v in inactive)
            if n_down:
                parts.append(f"{_plural(n_down, 'pg')} down")
            if n_stale:
                parts.append(f"{_plural(n_stale, 'pg')} stale")
            add("PG_AVAILABILITY", "HEALTH_WARN", "Reduced data availability: " + ", ".join(parts), len(inactive))
        damaged = [v for v in views if "recovery_unfound" in v.states]
        if damaged:
            add("PG_DAMAGED", "HEALTH_ERR", f"Possible data damage: {_plural(len(damaged), 'pg')} recovery_unfound", len(damaged))
        degraded_pgs = [v for v in views if "degraded" in v.states]
        if degraded_pgs:
            deg = sum(v.degraded for v in views)
            total = sum(v.copies_expected for v in views)
            pct = 100.0 * deg / max(total, 1)
            add(
                "PG_DEGRADED",
                "HEALTH_WARN",
                f"Degraded data redundancy: {deg}/{total} objects degraded ({pct:.3f}%), {_plural(len(degraded_pgs), 'pg')} degraded",
                len(degraded_pgs),
            )
        severities = {c["severity"] for c in checks.values()}
        status = "HEALTH_ERR" if "HEALTH_ERR" in severities else "HEALTH_WARN" if checks else "HEALTH_OK"
        return {"status": status, "checks": dict(sorted(checks.items())), "mutes": []}

    def _mon_dump(self, cmd: Mapping[str, Any]) -> JsonDoc:
        epoch, members = self.monmap()
        quorum = self.quorum()
        mons = []
        for rank, name in enumerate(members):
            port = self.mon(name).port
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
            "fsid": self.state.fsid,
            "min_mon_release": 16,
            "min_mon_release_name": "pacific",
            "mons": mons,
            "quorum": [members.index(m) for m in quorum],
        }

    def _osd_dump(self, cmd: Mapping[str, Any]) -> JsonDoc:
        flags = [*BASE_FLAGS, *(f for f in FLAGS if f in self.state.flags)]
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
            for p in self.state.pools
        ]
        osds = [
            {
                "osd": o.id,
                "uuid": f"00000000-0000-4000-8000-{o.id:012d}",
                "up": int(o.up),
                "in": int(o.in_),
                "weight": 1.0 if o.in_ else 0.0,
                "primary_affinity": 1,
                "lost_at": self.state.epoch if o.lost else 0,
                "state": ["exists", "up"] if o.up else ["exists"],
            }
            for o in self.state.osds
        ]
        return {
            "epoch": self.state.epoch,
            "fsid": self.state.fsid,
            "flags": ",".join(flags),
            "flags_set": sorted(flags),
            "pools": pools,
            "osds": osds,
        }

    def _osd_tree(self, cmd: Mapping[str, Any]) -> JsonDoc:
        hosts: dict[str, list[int]] = {}
        for o in self.state.osds:
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
        for o in self.state.osds:
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

    def _pg_stat(self, v: PgView) -> dict[str, Any]:
        return {
            "pgid": v.pgid,
            "state": v.state,
            "reported_epoch": self.state.epoch,
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

    def _pg_ls(self, cmd: Mapping[str, Any]) -> JsonDoc:
        views = self.pg_views()
        pool_name = cmd.get("poolstr") or cmd.get("pool")
        if pool_name is not None:
            pool_id = self.pool(str(pool_name)).id
            views = [v for v in views if v.pgid.startswith(f"{pool_id}.")]
        return {"pg_ready": True, "pg_stats": [self._pg_stat(v) for v in views]}

    def _pg_dump_stuck(self, cmd: Mapping[str, Any]) -> JsonDoc:
        wanted = set(cmd.get("stuckops") or ["unclean"])
        stuck = []
        for v in self.pg_views():
            s = set(v.states)
            if (
                ("inactive" in wanted and not v.serving)
                or ("unclean" in wanted and "clean" not in s)
                or ("undersized" in wanted and "undersized" in s)
                or ("degraded" in wanted and "degraded" in s)
                or ("stale" in wanted and "stale" in s)
            ):
                stuck.append(self._pg_stat(v))
        return {"pg_ready": True, "stuck_pg_stats": stuck}

    def _osd_set(self, cmd: Mapping[str, Any]) -> JsonDoc:
        key = str(cmd.get("key", ""))
        if key not in FLAGS:
            raise CommandFailed(f"unrecognized flag '{key}' (EINVAL)")
        if key not in self.state.flags:
            self.state.flags.append(key)
            self.state.epoch += 1
        return {"message": f"{key} is set"}

    def _osd_unset(self, cmd: Mapping[str, Any]) -> JsonDoc:
        key = str(cmd.get("key", ""))
        if key not in FLAGS:
            raise CommandFailed(f"unrecognized flag '{key}' (EINVAL)")
        if key in self.state.flags:
            self.state.flags.remove(key)
            self.state.epoch += 1
        return {"message": f"{key} is unset"}

    def _ids(self, cmd: Mapping[str, Any]) -> list[SimOsd]:
        raw = cmd.get("ids", [])
        ids = [raw] if isinstance(raw, str | int) else list(raw)
        return [self.osd(int(str(i).removeprefix("osd."))) for i in ids]

    def _osd_out(self, cmd: Mapping[str, Any]) -> JsonDoc:
        msgs = []
        for osd in self._ids(cmd):
            if osd.in_:
                osd.in_ = False
                self.state.epoch += 1
                msgs.append(f"marked out osd.{osd.id}. ")
            else:
                msgs.append(f"osd.{osd.id} is already out. ")
        return {"message": "".join(msgs)}

    def _osd_in(self, cmd: Mapping[str, Any]) -> JsonDoc:
        msgs = []
        for osd in self._ids(cmd):
            if not osd.in_:
                osd.in_ = True
                self.state.epoch += 1
                msgs.append(f"marked in osd.{osd.id}. ")
            else:
                msgs.append(f"osd.{osd.id} is already in. ")
        return {"message": "".join(msgs)}

    def _osd_lost(self, cmd: Mapping[str, Any]) -> JsonDoc:
        if not cmd.get("yes_i_really_mean_it"):
            raise CommandFailed(
                "are you SURE?  this might mean real, permanent data loss.  pass --yes-i-really-mean-it if you really do. (EPERM)"
            )
        osd = self.osd(int(cmd["id"]))
        if osd.up:
            raise CommandFailed(f"osd.{osd.id} is not down (EBUSY)")
        osd.lost = True
        self.state.epoch += 1
        for pg in self.state.pgs:
            if osd.id not in pg.copies:
                continue
            pg.copies.remove(osd.id)
            if not pg.copies and pg.objects:
                # The lost OSD held the only copy of the newest data: the survivors peer without
                # it, and every object they cannot vouch for is unfound.
                for name in pg.objects:
                    pg.unfound.setdefault(name, UnfoundObject(osd=osd.id))
        return {"message": f"marked osd lost in epoch {self.state.epoch}"}

    def _pool_set(self, cmd: Mapping[str, Any]) -> JsonDoc:
        pool = self.pool(str(cmd.get("pool", "")))
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
        self.state.epoch += 1
        return {"message": f"set pool {pool.id} {var} to {n}"}

    def _pool_application_enable(self, cmd: Mapping[str, Any]) -> JsonDoc:
        pool = self.pool(str(cmd.get("pool", "")))
        pool.application = str(cmd.get("app", "rados"))
        return {"message": f"enabled application '{pool.application}' on pool '{pool.name}'"}

    def _health_cmd(self, cmd: Mapping[str, Any]) -> JsonDoc:
        return self._health(self.pg_views())

    def _quorum_status(self, cmd: Mapping[str, Any]) -> JsonDoc:
        quorum = self.quorum()
        return {
            "election_epoch": 6,
            "quorum_names": quorum,
            "quorum_leader_name": quorum[0] if quorum else "",
            "monmap": self._mon_dump(cmd),
        }

    _MON_COMMANDS: ClassVar[dict[str, Callable[[CephSim, Mapping[str, Any]], JsonDoc]]] = {
        "status": _status,
        "health": _health_cmd,
        "quorum_status": _quorum_status,
        "mon dump": _mon_dump,
        "osd dump": _osd_dump,
        "osd tree": _osd_tree,
        "pg ls": _pg_ls,
        "pg ls-by-pool": _pg_ls,
        "pg dump_stuck": _pg_dump_stuck,
        "osd set": _osd_set,
        "osd unset": _osd_unset,
        "osd out": _osd_out,
        "osd in": _osd_in,
        "osd lost": _osd_lost,
        "osd pool set": _pool_set,
        "osd pool application enable": _pool_application_enable,
    }

    def _list_unfound(self, pg: SimPg, view: PgView) -> JsonDoc:
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
        might_have = [{"osd": str(o), "status": "osd is down" if not self.osd(o).up else "already probed"} for o in holders]
        return {
            "num_missing": len(objects),
            "num_unfound": len(objects),
            "objects": objects,
            "state": "NotRecovering",
            "might_have_unfound": might_have,
            "more": False,
        }

    def _mark_unfound_lost(self, pg: SimPg, how: str) -> JsonDoc:
        if how not in ("revert", "delete"):
            raise CommandFailed(f"mode must be 'revert' or 'delete'; got '{how}' (EINVAL)")
        if not pg.unfound:
            raise CommandFailed(f"pg {pg.pgid} has no unfound objects (EINVAL)")
        unprobed = sorted({u.osd for u in pg.unfound.values() if not self.osd(u.osd).lost})
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


# ---------------------------------------------------------------------- scenarios


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
        pg.copies = sim._mapping(pool, pg)
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
    previous = {f"drengine-object-{i}": _b64(f"drengine object {i}\n".encode()) for i in range(2)}
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

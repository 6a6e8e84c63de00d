"""Ceph connector: the thin librados layer and the snapshot the Ceph runbooks read.

Owns three things:
- `CephAPI`, the interface both the real connector and the simulator (`drengine.datastores.ceph.simcluster`)
  implement: JSON monitor commands, PG commands, one object write and read.
- `CephConnector`, which speaks librados with every call bounded in time. librados' own
  `timeout=` arguments are ignored or do not cover the monitor hunt, so the bounds are the
  client options `client_mount_timeout`, `rados_mon_op_timeout` and `rados_osd_op_timeout`.
- the pydantic models of what the runbooks read (`CephStatus`, `OsdInfo`, `PoolInfo`,
  `PgInfo`, `CephSnapshot`) with parsers written against the JSON a Pacific (16.2) cluster
  prints, and `observe()`, which gathers them through any `CephAPI`.

`rados` is imported inside the connector so that importing this module (and `drengine
--help`) does not load librados.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field

from drengine.clock import SYSTEM, Clock, wait_until
from drengine.errors import CommandFailed, ConnectError, DrengineError, InputError, ProbeTimeout

JsonDoc = dict[str, Any] | list[Any]

# States in which a PG serves client I/O; anything else blocks reads and writes to it.
ACTIVE = "active"
FLAG_NAMES = ("noout", "norebalance", "norecover", "nobackfill", "noup", "nodown", "noin", "pause")


def _rados() -> Any:
    """Debian's librados binding (python3-rados: not on PyPI), or a message saying how to get it."""
    try:
        import rados
    except ImportError:
        raise DrengineError(
            "drengine reaches a real Ceph cluster through librados' Python binding, which this Python cannot "
            "import. Install Debian's python3-rados (`apt-get install python3-rados`) and run drengine with "
            "the system's python3, or in a virtual environment made with --system-site-packages (the "
            "project's scripts/setup.sh does that for its own). Simulated Ceph clusters need none of it"
        ) from None
    return rados


class CephAPI(Protocol):
    """What runbooks may ask of a Ceph cluster; the real connector and the simulator both provide it."""

    def mon_command(self, cmd: Mapping[str, Any]) -> JsonDoc:
        """Send one JSON monitor command; returns its parsed JSON output.

        Commands that print nothing (most mutating ones) return `{"message": <status text>}`.
        """
        ...

    def pg_command(self, pgid: str, cmd: Mapping[str, Any]) -> JsonDoc:
        """Send one JSON command to the primary OSD of a placement group (`pg query`, `mark_unfound_lost`)."""
        ...

    def write_object(self, pool: str, name: str, data: bytes, timeout: float) -> None:
        """Write a whole object; ProbeTimeout when it is not acknowledged within `timeout` seconds."""
        ...

    def read_object(self, pool: str, name: str) -> bytes:
        """Read a whole object (bounded by the connector's operation timeout)."""
        ...

    def close(self) -> None:
        """Release the connection; safe to call twice."""
        ...


# --------------------------------------------------------------------------- connector


def _whole_seconds(value: float) -> str:
    """Pacific parses these timeout options as whole seconds ("2.5" is refused); never round a bound down to 0 (= no bound)."""
    return str(max(1, math.ceil(value)))


def _command_text(cmd: Mapping[str, Any]) -> str:
    return json.dumps({**cmd, "format": "json"}, sort_keys=True)


class CephConnector:
    """librados client for one cluster. Connects on first use; every call is bounded in time.

    `connect_timeout` bounds reaching a monitor quorum (client_mount_timeout); `op_timeout`
    bounds each monitor command (rados_mon_op_timeout) and each object or PG operation
    (rados_osd_op_timeout). A cluster without monitor quorum therefore fails a first call
    within connect_timeout and a call on an already connected client within op_timeout.
    """

    def __init__(
        self,
        conf_file: str,
        client_name: str = "client.admin",
        connect_timeout: float = 2.0,
        op_timeout: float = 5.0,
        keyring: str | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.conf_file = conf_file
        self.clock = clock
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self.keyring = keyring
        self._cluster: Any = None
        self._ioctxs: dict[str, Any] = {}
        # Writes given up on locally while librados still holds them; kept referenced so their
        # callbacks never run against freed Python objects before close().
        self._abandoned: list[Any] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return f"Ceph cluster of {self.conf_file} as {self.client_name}"

    def connect(self) -> None:
        """Reach the monitors now (otherwise the first call does); ConnectError when no quorum answers in time."""
        if self._cluster is not None:
            return
        if not Path(self.conf_file).is_file():
            raise InputError(f"Ceph configuration file {self.conf_file} does not exist; expected a ceph.conf listing `mon host`")
        rados = _rados()  # lazy: librados is heavy and only needed when a Ceph cluster is really used

        conf = {
            "client_mount_timeout": _whole_seconds(self.connect_timeout),
            "rados_mon_op_timeout": _whole_seconds(self.op_timeout),
            "rados_osd_op_timeout": _whole_seconds(self.op_timeout),
        }
        if self.keyring:
            conf["keyring"] = self.keyring
        name = self.client_name
        try:
            cluster = rados.Rados(conffile=self.conf_file, name=name, conf=conf)
        except rados.Error as exc:
            raise InputError(f"cannot load the Ceph configuration {self.conf_file}: {exc}") from None
        started = self.clock.now()
        try:
            cluster.connect()
        except rados.Error as exc:
            elapsed = self.clock.now() - started
            _shutdown(cluster)
            raise ConnectError(
                f"no Ceph monitor quorum answered within {self.connect_timeout:g} s "
                f"(waited {elapsed:.1f} s; monitors from `mon host` in {self.conf_file}): {_rados_text(exc)}. "
                f"Either the monitors are down or fewer than a majority of them are up, so they cannot form a "
                f"quorum; check the ceph-mon processes and, if a majority is gone for good, consider the "
                f"monitor-quorum recovery (monmap surgery)"
            ) from None
        self._cluster = cluster

    def close(self) -> None:
        cluster, self._cluster = self._cluster, None
        for ioctx in self._ioctxs.values():
            # Closing must not hide the error that got us here.
            with contextlib.suppress(Exception):
                ioctx.close()
        self._ioctxs.clear()
        if cluster is not None:
            _shutdown(cluster)
        self._abandoned.clear()

    def _connected(self) -> Any:
        self.connect()
        return self._cluster

    def mon_command(self, cmd: Mapping[str, Any]) -> JsonDoc:
        text = _command_text(cmd)
        ret, out, outs = self._connected().mon_command(text, b"")
        return self._answer(ret, out, outs, f"monitor command {text}", self.op_timeout)

    def pg_command(self, pgid: str, cmd: Mapping[str, Any]) -> JsonDoc:
        text = _command_text({**cmd, "pgid": pgid})
        ret, out, outs = self._connected().pg_command(pgid, text, b"")
        return self._answer(ret, out, outs, f"PG {pgid} command {text}", self.op_timeout)

    def _answer(self, ret: int, out: bytes, outs: str, what: str, timeout: float) -> JsonDoc:
        if ret == -errno.ETIMEDOUT:
            raise ProbeTimeout(
                f"{what} got no answer within {timeout:g} s: the monitors have probably lost quorum "
                f"(or the target OSD is down); librados gave up with: {outs or 'timed out'}"
            )
        if ret < 0:
            raise CommandFailed(f"{what} was refused ({errno.errorcode.get(-ret, ret)}): {outs or 'no message'}")
        if not out.strip():
            return {"message": outs}
        try:
            parsed = json.loads(out)
        except ValueError:
            return {"message": outs, "output": out.decode(errors="replace")}
        if isinstance(parsed, dict | list):
            return parsed
        return {"message": outs, "output": parsed}

    def _ioctx(self, pool: str) -> Any:
        if pool not in self._ioctxs:
            rados = _rados()
            try:
                self._ioctxs[pool] = self._connected().open_ioctx(pool)
            except rados.ObjectNotFound:
                raise CommandFailed(f"pool {pool!r} does not exist in the {self.describe()}") from None
        return self._ioctxs[pool]

    def write_object(self, pool: str, name: str, data: bytes, timeout: float) -> None:
        """Write an object, waiting at most `timeout` (and never longer than op_timeout, librados' own bound).

        A write given up on here may still be applied if its PG becomes active before librados
        drops it (op_timeout after sending): the caller must treat it as "unknown", not "lost".
        """
        ioctx = self._ioctx(pool)
        completion = ioctx.aio_write_full(name, data)
        # Waiting on librados' completion, not a decision.
        if not wait_until(completion.is_complete, min(timeout, self.op_timeout + 1.0), interval=0.02, clock=self.clock):
            self._abandoned.append(completion)
            raise ProbeTimeout(
                f"writing object {name!r} to pool {pool!r} was not acknowledged within {timeout:g} s: "
                f"its placement group is probably inactive (fewer copies up than the pool's min_size)"
            )
        ret = completion.get_return_value()
        if ret == -errno.ETIMEDOUT:
            raise ProbeTimeout(
                f"writing object {name!r} to pool {pool!r} timed out in librados after {self.op_timeout:g} s: "
                f"its placement group is probably inactive"
            )
        if ret < 0:
            raise CommandFailed(f"writing object {name!r} to pool {pool!r} failed: {errno.errorcode.get(-ret, ret)}")

    def read_object(self, pool: str, name: str) -> bytes:
        rados = _rados()
        ioctx = self._ioctx(pool)
        try:
            size = ioctx.stat(name)[0]
            data: bytes = ioctx.read(name, length=max(size, 1))
            return data
        except rados.TimedOut:
            raise ProbeTimeout(
                f"reading object {name!r} from pool {pool!r} got no answer within {self.op_timeout:g} s: "
                f"its placement group is probably inactive"
            ) from None
        except rados.ObjectNotFound:
            raise CommandFailed(f"object {name!r} does not exist in pool {pool!r}") from None
        except rados.Error as exc:
            raise CommandFailed(f"reading object {name!r} from pool {pool!r} failed: {_rados_text(exc)}") from None


def _shutdown(cluster: Any) -> None:
    # Best effort: the handle is being dropped anyway, and an error here would hide the real one.
    with contextlib.suppress(Exception):
        cluster.shutdown()


def _rados_text(exc: Exception) -> str:
    return str(exc).strip() or type(exc).__name__


# --------------------------------------------------------------------------- models


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class HealthCheck(Model):
    code: str  # OSD_DOWN, PG_AVAILABILITY, PG_DEGRADED, OSDMAP_FLAGS, MON_DOWN, OBJECT_UNFOUND ...
    severity: str  # HEALTH_WARN or HEALTH_ERR
    summary: str
    count: int = 0
    muted: bool = False


class CephStatus(Model):
    fsid: str = ""
    health: str  # HEALTH_OK, HEALTH_WARN, HEALTH_ERR
    checks: list[HealthCheck] = Field(default_factory=list)
    quorum_names: list[str] = Field(default_factory=list)
    monitors: list[str] = Field(default_factory=list)  # every monitor in the monmap, in quorum or not
    monitors_count: int = 0  # monmap.num_mons
    num_osds: int = 0
    num_up_osds: int = 0
    num_in_osds: int = 0
    num_pgs: int = 0
    pgs_by_state: dict[str, int] = Field(default_factory=dict)

    def check(self, code: str) -> HealthCheck | None:
        return next((c for c in self.checks if c.code == code), None)

    @property
    def monitors_out_of_quorum(self) -> list[str]:
        return [m for m in self.monitors if m not in self.quorum_names]


class OsdInfo(Model):
    id: int
    up: bool
    in_: bool = Field(alias="in")
    host: str | None = None
    weight: float = 1.0

    @property
    def name(self) -> str:
        return f"osd.{self.id}"


class PoolInfo(Model):
    name: str
    id: int
    size: int
    min_size: int
    pg_num: int = 0
    applications: list[str] = Field(default_factory=list)


class PgInfo(Model):
    pgid: str
    state: str  # "+"-joined as Ceph prints it, e.g. active+undersized+degraded
    up: list[int] = Field(default_factory=list)
    acting: list[int] = Field(default_factory=list)
    primary: int = -1
    objects: int = 0
    unfound: int = 0
    degraded: int = 0
    # For a PG that does not serve I/O: the OSDs it waits for before it can serve again.
    waiting_for: list[int] = Field(default_factory=list)

    @property
    def pool_id(self) -> int:
        return int(self.pgid.split(".", 1)[0])

    @property
    def states(self) -> set[str]:
        return set(self.state.split("+"))

    @property
    def active(self) -> bool:
        """Serving client I/O: `active`, and not `stale` (a stale state is the last report of a primary that died)."""
        return ACTIVE in self.states and "stale" not in self.states

    @property
    def clean(self) -> bool:
        return self.states == {"active", "clean"}


class CephSnapshot(Model):
    """One look at the cluster: everything the Ceph runbooks decide on."""

    taken_at: float
    status: CephStatus
    flags: list[str] = Field(default_factory=list)
    osds: list[OsdInfo] = Field(default_factory=list)
    pools: list[PoolInfo] = Field(default_factory=list)
    pgs: list[PgInfo] = Field(default_factory=list)

    def pool(self, name: str) -> PoolInfo | None:
        return next((p for p in self.pools if p.name == name), None)

    def pool_by_id(self, pool_id: int) -> PoolInfo | None:
        return next((p for p in self.pools if p.id == pool_id), None)

    @property
    def down_osds(self) -> list[OsdInfo]:
        return [o for o in self.osds if not o.up]

    @property
    def inactive_pgs(self) -> list[PgInfo]:
        return [p for p in self.pgs if not p.active]

    @property
    def pgs_with_unfound(self) -> list[PgInfo]:
        return [p for p in self.pgs if p.unfound > 0]

    def pools_blocked(self) -> list[PoolInfo]:
        """Pools with at least one inactive PG: client I/O to them blocks."""
        ids = {pg.pool_id for pg in self.inactive_pgs}
        return [p for p in self.pools if p.id in ids]

    @property
    def all_active_clean(self) -> bool:
        return bool(self.pgs) and all(p.clean for p in self.pgs)


# --------------------------------------------------------------------------- parsers


def _obj(doc: JsonDoc, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise CommandFailed(f"{what}: expected a JSON object from the cluster, got {type(doc).__name__}")
    return doc


def parse_status(doc: JsonDoc) -> CephStatus:
    """`{"prefix": "status"}`: health with check summaries, quorum, OSD counts, PG states."""
    raw = _obj(doc, "status")
    health = raw.get("health", {})
    checks = [
        HealthCheck(
            code=code,
            severity=str(check.get("severity", "")),
            summary=str(check.get("summary", {}).get("message", "")),
            count=int(check.get("summary", {}).get("count", 0)),
            muted=bool(check.get("muted", False)),
        )
        for code, check in sorted(health.get("checks", {}).items())
    ]
    osdmap = raw.get("osdmap", {})
    # Before Octopus the counters sat one level deeper, under osdmap.osdmap.
    osdmap = osdmap.get("osdmap", osdmap)
    pgmap = raw.get("pgmap", {})
    # Pacific's status only counts the monitors (monmap.num_mons); older releases listed them.
    monitors = [str(m["name"]) for m in raw.get("monmap", {}).get("mons", []) if "name" in m]
    return CephStatus(
        fsid=str(raw.get("fsid", "")),
        health=str(health.get("status", "HEALTH_ERR")),
        checks=checks,
        quorum_names=[str(n) for n in raw.get("quorum_names", [])],
        monitors=monitors,
        monitors_count=int(raw.get("monmap", {}).get("num_mons", len(monitors))),
        num_osds=int(osdmap.get("num_osds", 0)),
        num_up_osds=int(osdmap.get("num_up_osds", 0)),
        num_in_osds=int(osdmap.get("num_in_osds", 0)),
        num_pgs=int(pgmap.get("num_pgs", 0)),
        pgs_by_state={str(s["state_name"]): int(s["count"]) for s in pgmap.get("pgs_by_state", [])},
    )


def parse_mon_dump(doc: JsonDoc) -> list[str]:
    """`{"prefix": "mon dump"}`: the monitor names of the monmap."""
    return [str(m["name"]) for m in _obj(doc, "mon dump").get("mons", [])]


def parse_osd_flags(doc: JsonDoc) -> list[str]:
    """`osd dump` prints the flags as one comma-joined string; `flags_set` (Octopus+) as a list."""
    raw = _obj(doc, "osd dump")
    if isinstance(raw.get("flags_set"), list):
        return [str(f) for f in raw["flags_set"]]
    return [f for f in str(raw.get("flags", "")).split(",") if f]


def parse_osds(doc: JsonDoc, hosts: Mapping[int, str] | None = None) -> list[OsdInfo]:
    """`osd dump` -> osds[] with up/in as 0/1 and the CRUSH weight; hosts come from `osd tree`."""
    raw = _obj(doc, "osd dump")
    hosts = hosts or {}
    return [
        OsdInfo(
            id=int(o["osd"]),
            up=bool(o.get("up", 0)),
            in_=bool(o.get("in", 0)),
            host=hosts.get(int(o["osd"])),
            weight=float(o.get("weight", 0.0)),
        )
        for o in raw.get("osds", [])
    ]


def parse_pools(doc: JsonDoc) -> list[PoolInfo]:
    """`osd dump` -> pools[] (`pool_name`, `pool`, `size`, `min_size`, `pg_num`, `application_metadata`)."""
    raw = _obj(doc, "osd dump")
    return [
        PoolInfo(
            name=str(p["pool_name"]),
            id=int(p["pool"]),
            size=int(p["size"]),
            min_size=int(p["min_size"]),
            pg_num=int(p.get("pg_num", 0)),
            applications=sorted(p.get("application_metadata", {})),
        )
        for p in raw.get("pools", [])
    ]


def parse_osd_hosts(doc: JsonDoc) -> dict[int, str]:
    """`osd tree` -> {osd id: host name} from the host buckets' children."""
    hosts: dict[int, str] = {}
    for node in _obj(doc, "osd tree").get("nodes", []):
        if node.get("type") == "host":
            for child in node.get("children", []):
                if int(child) >= 0:
                    hosts[int(child)] = str(node["name"])
    return hosts


def _pg_stats(doc: JsonDoc) -> list[dict[str, Any]]:
    """`pg ls` prints {"pg_ready": .., "pg_stats": [..]}, `pg dump_stuck` {"pg_ready": .., "stuck_pg_stats": [..]}."""
    if isinstance(doc, list):
        return [p for p in doc if isinstance(p, dict)]
    stats = doc.get("pg_stats", doc.get("stuck_pg_stats", []))
    return [p for p in stats if isinstance(p, dict)] if isinstance(stats, list) else []


def parse_pgs(doc: JsonDoc, osds: list[OsdInfo] | None = None) -> list[PgInfo]:
    """PG stats from `pg ls`, `pg ls-by-pool` or `pg dump_stuck`.

    What a PG that does not serve I/O waits for: the OSDs peering names as blocking it
    (`blocked_by`, set for `down` PGs), else the down OSDs of its last acting set (a `stale`
    PG's acting set is its dead primary's last report), else, for a PG short of copies
    (`undersized+peered`), every OSD that is down but still `in`: Pacific's `pg ls` keeps no
    per-PG record of which OSDs dropped out, so in a large cluster this is a superset.
    `osds` (from `osd dump`) tells which OSDs are down and in.
    """
    down = {o.id for o in osds or [] if not o.up}
    down_in = sorted(o.id for o in osds or [] if not o.up and o.in_)
    pgs: list[PgInfo] = []
    for p in _pg_stats(doc):
        stat_sum = p.get("stat_sum", {})
        info = PgInfo(
            pgid=str(p["pgid"]),
            state=str(p.get("state", "unknown")),
            up=[int(o) for o in p.get("up", []) if int(o) >= 0],
            acting=[int(o) for o in p.get("acting", []) if int(o) >= 0],
            primary=int(p.get("acting_primary", p.get("up_primary", -1))),
            objects=int(stat_sum.get("num_objects", 0)),
            unfound=int(stat_sum.get("num_objects_unfound", 0)),
            degraded=int(stat_sum.get("num_objects_degraded", 0)),
        )
        if not info.active:
            blocked = sorted({int(o) for o in p.get("blocked_by", [])})
            dead_acting = sorted(o for o in info.acting if o in down)
            info = info.model_copy(update={"waiting_for": blocked or dead_acting or down_in})
        pgs.append(info)
    return sorted(pgs, key=lambda pg: _pg_sort_key(pg.pgid))


def _pg_sort_key(pgid: str) -> tuple[int, int]:
    pool, _, seed = pgid.partition(".")
    return int(pool), int(seed or "0", 16)


def observe(api: CephAPI, clock: Any = time.time) -> CephSnapshot:
    """Take one snapshot: status, osd dump (flags, pools, OSDs), osd tree (hosts), pg ls.

    The first command that cannot be answered (no quorum, timeout) raises; nothing is retried
    here, so the caller's timeouts bound the whole observation.
    """
    status = parse_status(api.mon_command({"prefix": "status"}))
    if not status.quorum_names:
        # A monitor that has lost quorum still answers `status` to a client already connected
        # to it, from its stale maps: nothing in that answer can be trusted.
        raise ConnectError(
            f"the monitor that answered is not part of a quorum (quorum_names is empty); its health "
            f"({status.health}) and maps are stale. Fewer than a majority of the {status.monitors_count} "
            f"monitors are up; bring monitors back or, if a majority is gone for good, recover the quorum "
            f"by monmap surgery"
        )
    # `status` only counts the monitors; `mon dump` names them, so the ones out of quorum are known.
    status = status.model_copy(update={"monitors": parse_mon_dump(api.mon_command({"prefix": "mon dump"}))})
    dump = api.mon_command({"prefix": "osd dump"})
    hosts = parse_osd_hosts(api.mon_command({"prefix": "osd tree"}))
    osds = parse_osds(dump, hosts)
    pgs = parse_pgs(api.mon_command({"prefix": "pg ls"}), osds)
    return CephSnapshot(
        taken_at=float(clock()),
        status=status,
        flags=parse_osd_flags(dump),
        osds=osds,
        pools=parse_pools(dump),
        pgs=pgs,
    )

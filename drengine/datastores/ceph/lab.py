"""Ceph lab: a real Pacific cluster on 127.0.0.1 for drills and tests.

Owns the lab cluster's whole life under `<lab>/ceph`: the ceph.conf, three monitors (a, b, c),
one manager, three memstore OSDs, the `drengine` test pool, the inventory fragment that
points drengine at it, stopping it in the right order, and the faults drills inject
(killing OSDs or monitors, starting them again with the same command line).

Every daemon runs in the foreground (`-f`) in its own session and is recorded in the lab's
`lab.json`, so it is stopped by PID and only by PID. memstore keeps the OSDs' data in
memory: no disks, up in about 20 s, and a killed OSD comes back empty or with its last
saved contents and is backfilled by its peers.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from drengine.clock import wait_until
from drengine.datastores.ceph.connector import CephConnector, parse_pgs
from drengine.errors import ConnectError, ProbeTimeout
from drengine.lab.procs import (
    LOCAL_HOST,
    LOCAL_HOSTS,
    LabDir,
    LabError,
    LabProcess,
    NodeStart,
    drengine_command,
    ensure_ports_free,
    is_ours,
    merge_inventory,
    signal_process,
    template_literal,
)

CLUSTER_NAME = "lab-ceph"
KIND = "ceph"
POOL = "drengine"
MONS = ("a", "b", "c")
MGR = "x"
OSD_IDS = (0, 1, 2)
TEST_OBJECTS = {f"drengine-test-{i}": f"drengine lab object {i}\n".encode() for i in range(4)}
PG_NUM = 8
MGR_POOL = "device_health_metrics"  # created by the manager's devicehealth module
MGR_POOL_WAIT = 15.0
UP_TIMEOUT = 90.0

# Keep lab clients snappy: a lab probe should fail in a couple of seconds, not minutes.
LAB_CONNECT_TIMEOUT = 5.0
LAB_OP_TIMEOUT = 5.0


def _root(lab: LabDir) -> Path:
    return lab.path("ceph")


def conf_path(lab: LabDir) -> Path:
    return _root(lab) / "ceph.conf"


def mon_port(port_base: int, name: str) -> int:
    return port_base + MONS.index(name)


def _conf_text(root: Path, fsid: str, port_base: int) -> str:
    mon_host = ",".join(f"[v2:127.0.0.1:{mon_port(port_base, m)}]" for m in MONS)
    mon_sections = "".join(f"\n[mon.{m}]\npublic addrv = [v2:127.0.0.1:{mon_port(port_base, m)}]\n" for m in MONS)
    return f"""# drengine lab cluster: every path lives under {root}
[global]
fsid = {fsid}
mon host = {mon_host}
mon initial members = {", ".join(MONS)}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = {root}/run
admin socket = {root}/run/$cluster-$name.asok
pid file = {root}/run/$cluster-$name.pid
log file = {root}/log/$cluster-$name.log
crash dir = {root}/crash
exporter sock dir = {root}/run
mon data = {root}/mon/$cluster-$id
mgr data = {root}/mgr/$cluster-$id
osd data = {root}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = 268435456
# All OSDs sit on one host: replicate across OSDs, not hosts.
osd crush chooseleaf type = 0
osd pool default size = 3
osd pool default min size = 2
osd pool default pg autoscale mode = off
# One OSD's report is enough to mark a peer down (they all share one host, one subtree).
mon osd min down reporters = 1
osd heartbeat interval = 1
osd heartbeat grace = 5
mon allow pool delete = true
# A monitor refuses to start when its filesystem has less than `crit` percent free (default 5):
# a lab's monitors hold a few MB, and CI's big, mostly full disks sit near 5% (seen: 15 GiB free,
# 5%: mon.c exited, no quorum). Warn at 2%, refuse only below 1%.
mon data avail warn = 2
mon data avail crit = 1
mon warn on pool no redundancy = false
# Without cephx there is no global_id to reclaim; the warning would only be noise.
mon warn on insecure global id reclaim allowed = false
# PG states reach the monitors (and `status`) within about a second instead of five.
mgr stats period = 1
mon mgr digest period = 1
osd op num shards = 2
osd op num threads per shard = 1
{mon_sections}"""


def daemon_argv(conf: Path, name: str) -> list[str]:
    """The one command line of a lab daemon (`mon.a`, `mgr.x`, `osd.0`); the inventory's start template repeats it."""
    daemon_type = name.split(".", 1)[0]
    return [f"/usr/bin/ceph-{daemon_type}", "-f", "--cluster", "ceph", "--name", name, "-c", str(conf)]


def _run(argv: list[str], what: str, timeout: float = 30.0) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what} did not finish within {timeout:g} s: {shlex.join(argv)}") from None
    if done.returncode != 0:
        raise LabError(f"{what} failed (exit {done.returncode}): {shlex.join(argv)}\n{done.stdout}{done.stderr}".strip())


def _spawn(lab: LabDir, name: str, argv: list[str]) -> LabProcess:
    return lab.spawn(kind=KIND, name=name, argv=argv, log=_root(lab) / "log" / f"{name}.out")


def lab_connector(lab: LabDir, connect_timeout: float = LAB_CONNECT_TIMEOUT, op_timeout: float = LAB_OP_TIMEOUT) -> CephConnector:
    return CephConnector(str(conf_path(lab)), "client.admin", connect_timeout, op_timeout)


def _connect_when_quorate(lab: LabDir, timeout: float) -> CephConnector:
    """Monitors need several seconds to elect; retry short bounded connects until one succeeds."""
    connected: list[CephConnector] = []

    def connects() -> bool:
        api = lab_connector(lab, connect_timeout=3.0)
        try:
            api.connect()
        except ConnectError:
            api.close()
            return False
        connected.append(api)
        return True

    if not wait_until(connects, timeout, interval=0.0):
        raise LabError(f"the lab monitors did not form a quorum within {timeout:g} s; see {_root(lab)}/log")
    return connected[0]


def up(lab: LabDir, port_base: int = 3300, inventory_out: str | Path | None = None) -> dict[str, Any]:
    """Create and start the lab cluster; return its inventory fragment and merge it into `inventory_out`.

    Raises LabError (after stopping whatever it started) when the cluster does not come up.
    """
    running = [p for p in lab.processes() if p.kind == KIND and is_ours(p)]
    if running:
        raise LabError(
            f"a Ceph lab is already running in {lab.root} ({', '.join(p.name for p in running)}); "
            f"run `drengine lab down ceph` first"
        )
    for gone in (p for p in lab.processes() if p.kind == KIND):
        lab.forget(gone)
    # Checked as ceph-mon binds (SO_REUSEADDR): ports left in TIME_WAIT by a lab just stopped are free.
    ensure_ports_free(lab, KIND, [(f"mon.{m}", "127.0.0.1", mon_port(port_base, m)) for m in MONS])
    root = _root(lab)
    # A previous lab's monitor stores and OSD folders would make --mkfs fail: start from nothing.
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("run", "log", "crash", "mon", "mgr", "osd"):
        lab.path("ceph", sub)
    fsid = str(uuid.uuid4())
    conf = conf_path(lab)
    conf.write_text(_conf_text(root, fsid, port_base))
    monmap = root / "monmap"
    addv: list[str] = []
    for m in MONS:
        addv += ["--addv", m, f"[v2:127.0.0.1:{mon_port(port_base, m)}]"]
    _run(
        [
            "monmaptool",
            "--create",
            "--clobber",
            "--fsid",
            fsid,
            "--enable-all-features",
            "--set-min-mon-release",
            "pacific",
            *addv,
            str(monmap),
        ],
        "creating the monmap",
    )
    mkfs = [
        subprocess.Popen(
            ["ceph-mon", "--mkfs", "-i", m, "--monmap", str(monmap), "-c", str(conf)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for m in MONS
    ]
    for m, proc in zip(MONS, mkfs, strict=True):
        out, _ = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise LabError(f"ceph-mon --mkfs for mon.{m} failed: {out.decode(errors='replace')}")
    try:
        for m in MONS:
            _spawn(lab, f"mon.{m}", daemon_argv(conf, f"mon.{m}"))
        (root / "mgr" / f"ceph-{MGR}").mkdir(parents=True, exist_ok=True)
        _spawn(lab, f"mgr.{MGR}", daemon_argv(conf, f"mgr.{MGR}"))
        api = _connect_when_quorate(lab, UP_TIMEOUT)
        try:
            _create_osds(lab, api, conf)
            _create_pool(api)
            _wait_active_clean(api, UP_TIMEOUT)
            for name, data in TEST_OBJECTS.items():
                api.write_object(POOL, name, data, timeout=LAB_OP_TIMEOUT)
        finally:
            api.close()
    except BaseException:
        down(lab)
        raise
    fragment = inventory_fragment(lab, port_base)
    if inventory_out is not None:
        merge_inventory(inventory_out, LOCAL_HOSTS, {CLUSTER_NAME: fragment})
    return fragment


def _create_osds(lab: LabDir, api: CephConnector, conf: Path) -> None:
    uuids = {i: str(uuid.uuid4()) for i in OSD_IDS}
    for i in OSD_IDS:
        api.mon_command({"prefix": "osd new", "uuid": uuids[i], "id": i})
        (_root(lab) / "osd" / f"ceph-{i}").mkdir(parents=True, exist_ok=True)
    mkfs = {
        i: subprocess.Popen(
            ["ceph-osd", "-i", str(i), "--mkfs", "--osd-uuid", uuids[i], "-c", str(conf)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in OSD_IDS
    }
    for i, proc in mkfs.items():
        out, _ = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise LabError(f"ceph-osd --mkfs for osd.{i} failed: {out.decode(errors='replace')}")
    for i in OSD_IDS:
        _spawn(lab, f"osd.{i}", daemon_argv(conf, f"osd.{i}"))


def _create_pool(api: CephConnector) -> None:
    api.mon_command({"prefix": "osd pool create", "pool": POOL, "pg_num": PG_NUM, "pgp_num": PG_NUM, "pool_type": "replicated"})
    api.mon_command({"prefix": "osd pool set", "pool": POOL, "var": "size", "val": "3"})
    api.mon_command({"prefix": "osd pool set", "pool": POOL, "var": "min_size", "val": "2"})
    api.mon_command({"prefix": "osd pool application enable", "pool": POOL, "app": "rados"})


def pool_pgs_active_clean(api: CephConnector, pool: str = POOL) -> bool:
    pgs = parse_pgs(api.mon_command({"prefix": "pg ls-by-pool", "poolstr": pool}))
    return len(pgs) > 0 and all(pg.clean for pg in pgs)


def _all_pgs_active_clean(api: CephConnector) -> bool:
    pgs = parse_pgs(api.mon_command({"prefix": "pg ls"}))
    return len(pgs) > 0 and all(pg.clean for pg in pgs)


def _mgr_pool_created(api: CephConnector) -> bool:
    pools = api.mon_command({"prefix": "osd pool ls"})
    return isinstance(pools, list) and MGR_POOL in pools


def _not_yet_on_timeout(check: Callable[[], bool]) -> Callable[[], bool]:
    """PG listings are answered by the manager, which may still be starting (slowly, on a loaded
    machine): a command that times out means "not yet", not a failed lab."""

    def checked() -> bool:
        try:
            return check()
        except ProbeTimeout:
            return False

    return checked


def _wait_active_clean(api: CephConnector, timeout: float) -> None:
    if not wait_until(_not_yet_on_timeout(lambda: pool_pgs_active_clean(api)), timeout, interval=0.25):
        raise LabError(f"pool {POOL!r} did not become active+clean within {timeout:g} s")
    # The manager creates its own pool a few seconds after it starts; wait for it too, so the
    # lab is handed over with every PG clean, not with one PG still `creating+peering`.
    mgr_pool = wait_until(_not_yet_on_timeout(lambda: _mgr_pool_created(api)), MGR_POOL_WAIT, interval=0.25)
    if mgr_pool and not wait_until(_not_yet_on_timeout(lambda: _all_pgs_active_clean(api)), timeout, interval=0.25):
        raise LabError(f"the PGs of pool {MGR_POOL!r} did not become active+clean within {timeout:g} s")


def inventory_fragment(lab: LabDir, port_base: int = 3300) -> dict[str, Any]:
    """The lab cluster as an inventory entry (`clusters: {lab-ceph: ...}`)."""
    root = _root(lab)
    conf = conf_path(lab)
    members: list[dict[str, Any]] = [
        {
            "name": f"mon.{m}",
            "address": "127.0.0.1",
            "port": mon_port(port_base, m),
            "role": "mon",
            "host": LOCAL_HOST,
            "data_dir": f"{root}/mon/ceph-{m}",
            "pid_file": f"{root}/run/ceph-mon.{m}.pid",
        }
        for m in MONS
    ]
    members.append({"name": f"mgr.{MGR}", "address": "127.0.0.1", "role": "mgr", "host": LOCAL_HOST,
                    "data_dir": f"{root}/mgr/ceph-{MGR}", "pid_file": f"{root}/run/ceph-mgr.{MGR}.pid"})
    # pid_file lets drills signal a daemon through its host, as on a real cluster.
    members += [{"name": f"osd.{i}", "address": "127.0.0.1", "role": "osd", "host": LOCAL_HOST,
                 "data_dir": f"{root}/osd/ceph-{i}", "pid_file": f"{root}/run/ceph-osd.{i}.pid"} for i in OSD_IDS]
    # {name} is the member name (mon.a, osd.0), which is also the daemon's --name; the start
    # command is the lab's own command line, detached because the daemon runs in the foreground.
    # No shell braces: drengine's template renderer reads `{...}` as placeholders.
    qroot = shlex.quote(str(root))
    # The lab's own entry point starts the daemon detached and records its PID, so that
    # `drengine lab down` stops a daemon that a runbook or a drill started again.
    start = f"{drengine_command('lab', 'node', 'start', KIND)} {{name}} --lab-dir {template_literal(str(lab.root))}"
    # The daemon's own pid file names exactly the process to stop (no pattern matching).
    stop = f'n={{name}}; kill -TERM "$(cat {qroot}/run/ceph-"$n".pid)"'
    return {
        "kind": "ceph",
        "drill_target": True,
        "ceph": {"conf_file": str(conf), "client_name": "client.admin"},
        "timeouts": {"connect": LAB_CONNECT_TIMEOUT, "read": LAB_OP_TIMEOUT},
        "members": members,
        "service": {"start": start, "stop": stop},
    }


def down(lab: LabDir) -> list[LabProcess]:
    """Stop the lab cluster: OSDs, then the manager, then the monitors (so nothing waits on a dead mon)."""
    procs = [p for p in lab.processes() if p.kind == KIND]
    order = {"osd": 0, "mgr": 1, "mon": 2}
    procs.sort(key=lambda p: order.get(p.name.split(".", 1)[0], 3))
    for proc in procs:
        lab.stop(proc)
    return procs


# --------------------------------------------------------------------------- faults


def _proc(lab: LabDir, name: str) -> LabProcess:
    proc = lab.find(KIND, name)
    if proc is None:
        raise LabError(f"no Ceph lab daemon {name} is recorded in {lab.state_file}")
    return proc


def kill_osds(lab: LabDir, ids: Iterable[int]) -> None:
    """SIGKILL OSDs (a crash); their records stay so that `restart_osds` reuses the command line."""
    for i in ids:
        signal_process(_proc(lab, f"osd.{i}"), signal.SIGKILL)


def restart_osds(lab: LabDir, ids: Iterable[int]) -> None:
    """Start OSDs again with the command line they were first started with."""
    for i in ids:
        proc = _proc(lab, f"osd.{i}")
        _respawn(lab, proc)


def kill_mons(lab: LabDir, names: Iterable[str]) -> None:
    for name in names:
        signal_process(_proc(lab, _mon_name(name)), signal.SIGKILL)


def start_mon(lab: LabDir, name: str) -> None:
    _respawn(lab, _proc(lab, _mon_name(name)))


def _mon_name(name: str) -> str:
    return name if name.startswith("mon.") else f"mon.{name}"


def _respawn(lab: LabDir, proc: LabProcess) -> None:
    if is_ours(proc):
        raise LabError(f"{proc.name} is still running (pid {proc.pid}); kill it first")
    _spawn(lab, proc.name, proc.argv)


def start_daemon(lab: LabDir, name: str) -> LabProcess:
    """Start a lab daemon (`osd.1`, `mon.a`, `mgr.x`) again with its recorded command line."""
    proc = lab.find(KIND, name)
    if proc is None:
        raise LabError(f"the Ceph lab in {lab.root} has no daemon {name}")
    if is_ours(proc):
        return proc
    return _spawn(lab, proc.name, proc.argv)


# What the lab inventory's start template runs (`drengine lab node start ceph NAME`).
NODE_OPTIONS: frozenset[str] = frozenset()


def node_start(lab: LabDir, name: str, how: NodeStart) -> str:
    proc = start_daemon(lab, name)
    return f"{name} running (pid {proc.pid})"

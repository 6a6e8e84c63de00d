"""A real Ceph Pacific cluster on loopback (3 monitors, 1 manager, 3 memstore OSDs): the
connector's observations and time bounds through a degrade-and-recover story, the same one
tests/sim/test_ceph_sim.py tells the simulator.

One module-scoped fixture starts the cluster in a temporary folder and always stops every
daemon by PID. The tests run in file order and each waits for the state it needs.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drengine.clock import wait_until
from drengine.datastores.ceph import lab as ceph_lab
from drengine.datastores.ceph.connector import CephConnector, CephSnapshot, observe
from drengine.errors import ConnectError, DrengineError, ProbeTimeout
from drengine.inventory import Cluster, load_inventory
from drengine.lab.procs import LabDir, LabProcess, cmdline_of, is_ours
from drengine.transport import render_service
from tests.helpers import require_ceph

pytestmark = pytest.mark.lab

POOL = ceph_lab.POOL
CONNECT_TIMEOUT = 2.0
OP_TIMEOUT = 3.0


@dataclass
class CephLab:
    dir: LabDir
    cluster: Cluster
    up_seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def connector(self) -> CephConnector:
        assert self.cluster.ceph is not None
        return CephConnector(self.cluster.ceph.conf_file, self.cluster.ceph.client_name, CONNECT_TIMEOUT, OP_TIMEOUT)

    def observe(self) -> CephSnapshot:
        with self.connector() as api:
            return observe(api)

    def wait_for(self, what: str, predicate: Callable[[CephSnapshot], bool], timeout: float = 30.0) -> CephSnapshot:
        """Poll observations until one satisfies `predicate`; fail naming the last state seen."""
        seen: list[Any] = []

        def check() -> bool:
            try:
                snap = self.observe()
            except DrengineError as exc:
                seen.append(exc)
                return False
            seen.append(snap)
            return predicate(snap)

        if not wait_until(check, timeout, interval=0.5):
            last = seen[-1] if seen else None
            state = last.status.pgs_by_state if isinstance(last, CephSnapshot) else last
            pytest.fail(f"{what}: not reached within {timeout:g} s; last seen {state}")
        result = seen[-1]
        assert isinstance(result, CephSnapshot)
        return result


def _port_base() -> int:
    """Three consecutive free ports on 127.0.0.1, away from the default 3300 a `drengine lab up` uses."""
    for base in range(3360, 3460, 10):
        try:
            for port in range(base, base + 3):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        return base
    pytest.fail("no free ports for the Ceph monitors on 127.0.0.1 (3360-3459): stop the Ceph labs holding them")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephLab]:
    require_ceph()
    root = tmp_path_factory.mktemp("ceph-lab")
    lab_dir = LabDir(root)
    inventory = root / "inventory.yaml"
    started = time.monotonic()
    try:
        ceph_lab.up(lab_dir, port_base=_port_base(), inventory_out=inventory)
        up_seconds = time.monotonic() - started
        cluster = load_inventory(inventory).cluster(ceph_lab.CLUSTER_NAME)
        yield CephLab(lab_dir, cluster, up_seconds)
    finally:
        ceph_lab.down(lab_dir)
        left = [p for p in lab_dir.processes() if p.kind == "ceph" and is_ours(p)]
        assert not left, f"ceph daemons still running after down(): {left}"


def test_up_writes_a_usable_inventory(lab: CephLab) -> None:
    assert lab.up_seconds < 40, f"lab up took {lab.up_seconds:.1f} s"
    cluster = lab.cluster
    assert cluster.kind == "ceph" and cluster.drill_target
    assert cluster.ceph is not None and Path(cluster.ceph.conf_file).is_file()
    roles = sorted((m.role or "", m.name) for m in cluster.members)
    assert [n for r, n in roles if r == "mon"] == ["mon.a", "mon.b", "mon.c"]
    assert [n for r, n in roles if r == "osd"] == ["osd.0", "osd.1", "osd.2"]
    assert [n for r, n in roles if r == "mgr"] == ["mgr.x"]
    assert all(m.data_dir and Path(m.data_dir).is_dir() for m in cluster.members if m.role == "mon")
    assert cluster.service.start and cluster.service.stop


def test_healthy_observe(lab: CephLab) -> None:
    started = time.monotonic()
    snap = lab.observe()
    lab.timings["observe"] = time.monotonic() - started
    assert lab.timings["observe"] < 2.0
    assert snap.status.quorum_names == ["a", "b", "c"] and snap.status.monitors == ["a", "b", "c"]
    assert snap.status.health == "HEALTH_OK", snap.status.checks
    assert (snap.status.num_osds, snap.status.num_up_osds, snap.status.num_in_osds) == (3, 3, 3)
    assert snap.all_active_clean
    pool = snap.pool(POOL)
    assert pool is not None and (pool.size, pool.min_size, pool.applications) == (3, 2, ["rados"])
    with lab.connector() as api:
        for name, data in ceph_lab.TEST_OBJECTS.items():
            assert api.read_object(POOL, name) == data
        query = api.pg_command(snap.pgs[0].pgid, {"prefix": "query"})
        assert isinstance(query, dict) and query["state"] == "active+clean"


def _pool_pgs(snap: CephSnapshot) -> list[Any]:
    pool = snap.pool(POOL)
    assert pool is not None
    return [pg for pg in snap.pgs if pg.pool_id == pool.id]


def test_one_osd_killed_degraded_but_active(lab: CephLab) -> None:
    ceph_lab.kill_osds(lab.dir, [2])
    snap = lab.wait_for(
        "osd.2 down and the pool's PGs active+undersized",
        lambda s: [o.id for o in s.down_osds] == [2] and all(pg.active and "undersized" in pg.states for pg in _pool_pgs(s)),
    )
    assert snap.status.check("OSD_DOWN") is not None
    assert {pg.state for pg in _pool_pgs(snap) if pg.objects} == {"active+undersized+degraded"}
    with lab.connector() as api:
        api.write_object(POOL, "one-osd-down", b"written with one OSD down", timeout=OP_TIMEOUT)


def test_two_osds_killed_a_write_times_out(lab: CephLab) -> None:
    ceph_lab.kill_osds(lab.dir, [1])
    snap = lab.wait_for(
        "the pool's PGs inactive",
        lambda s: len(s.down_osds) == 2 and all(not pg.active for pg in _pool_pgs(s)),
    )
    assert all(pg.waiting_for == [1, 2] for pg in _pool_pgs(snap))
    assert POOL in [p.name for p in snap.pools_blocked()]
    with lab.connector() as api:
        started = time.monotonic()
        with pytest.raises(ProbeTimeout, match="inactive"):
            api.write_object(POOL, "blocked-write", b"blocked", timeout=2.0)
        lab.timings["blocked write"] = time.monotonic() - started
    assert lab.timings["blocked write"] < 2.0 + 1.0


def test_min_size_one_serves_again(lab: CephLab) -> None:
    with lab.connector() as api:
        answer = api.mon_command({"prefix": "osd pool set", "pool": POOL, "var": "min_size", "val": "1"})
        assert answer == {"message": "set pool 1 min_size to 1"}
        started = time.monotonic()
        api.write_object(POOL, "min-size-one", b"written on one copy", timeout=10.0)
        lab.timings["write after min_size 1"] = time.monotonic() - started


def test_osds_restarted_active_clean(lab: CephLab) -> None:
    ceph_lab.restart_osds(lab.dir, [1, 2])
    started = time.monotonic()
    lab.wait_for("all PGs active+clean after the restart", lambda s: not s.down_osds and s.all_active_clean, timeout=45.0)
    lab.timings["active+clean after restart"] = time.monotonic() - started
    with lab.connector() as api:
        api.mon_command({"prefix": "osd pool set", "pool": POOL, "var": "min_size", "val": "2"})
        assert api.read_object(POOL, "min-size-one") == b"written on one copy"
    pool = lab.observe().pool(POOL)
    assert pool is not None and pool.min_size == 2


def _start_with_service_template(lab: CephLab, name: str) -> None:
    """Start a daemon with the inventory's start template, as a runbook would, and record its PID."""
    member = lab.cluster.member(name)
    assert lab.cluster.service.start is not None
    command = render_service(lab.cluster, member, "start")
    old = lab.dir.find("ceph", name)
    assert old is not None
    subprocess.run(["/bin/sh", "-c", command.text], check=True, timeout=10)
    pid_file = lab.dir.path("ceph", "run") / f"ceph-{name}.pid"

    def started_pid() -> int | None:
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        cmd = cmdline_of(pid)
        return pid if pid != old.pid and cmd and name in cmd else None

    assert wait_until(lambda: started_pid() is not None, 10.0)
    pid = started_pid()
    assert pid is not None
    lab.dir.record(LabProcess(kind="ceph", name=name, pid=pid, argv=old.argv, log=old.log))


def test_two_monitors_killed_observe_fails_within_its_timeout(lab: CephLab) -> None:
    connected = lab.connector()
    try:
        observe(connected)
        ceph_lab.kill_mons(lab.dir, ["b", "c"])
        killed = time.monotonic()
        # The surviving leader answers until its lease runs out (about 5 s here); then, for a few
        # seconds, a new client still connects but its commands time out; after that (about
        # 10 s) connecting itself fails. Either way the failure comes within its own timeout.
        assert wait_until(lambda: _fails(lab), 30.0, interval=0.5), "the lone monitor kept answering"
        lab.timings["quorum answers after kill"] = time.monotonic() - killed

        started = time.monotonic()
        with pytest.raises(ConnectError) as fresh:
            lab.observe()
        elapsed = time.monotonic() - started
        bound = OP_TIMEOUT if isinstance(fresh.value, ProbeTimeout) else CONNECT_TIMEOUT
        lab.timings[f"new client without quorum ({type(fresh.value).__name__}, timeout {bound:g})"] = elapsed
        assert elapsed < bound + 1.0
        assert "quorum" in str(fresh.value)

        assert wait_until(lambda: _connect_refused(lab), 20.0, interval=0.5), "a new client kept connecting"
        started = time.monotonic()
        with pytest.raises(ConnectError) as refused:
            lab.observe()
        lab.timings["new client, connect refused"] = time.monotonic() - started
        assert not isinstance(refused.value, ProbeTimeout)
        assert lab.timings["new client, connect refused"] < CONNECT_TIMEOUT + 1.0

        started = time.monotonic()
        with pytest.raises(ConnectError) as old:  # ProbeTimeout is a ConnectError
            observe(connected)
        lab.timings["connected client without quorum"] = time.monotonic() - started
        assert lab.timings["connected client without quorum"] < OP_TIMEOUT + 1.0
        assert "quorum" in str(old.value)
        # OSD I/O does not need the monitors.
        # Under load the OSDs can take more than one op timeout to serve the first write.
        for attempt in range(3):
            try:
                connected.write_object(POOL, "no-quorum", b"osds still serve", timeout=OP_TIMEOUT)
                break
            except ProbeTimeout:
                if attempt == 2:
                    raise
    finally:
        connected.close()

    ceph_lab.start_mon(lab.dir, "b")
    _start_with_service_template(lab, "mon.c")
    snap = lab.wait_for("quorum back", lambda s: s.status.quorum_names == ["a", "b", "c"], timeout=30.0)
    assert snap.all_active_clean


def _fails(lab: CephLab) -> bool:
    try:
        lab.observe()
    except ConnectError:
        return True
    return False


def _connect_refused(lab: CephLab) -> bool:
    try:
        with lab.connector() as api:
            api.connect()
    except ConnectError:
        return True
    return False


# What the lab notes (LAB.md) promise, as upper bounds in seconds: each timing a test above
# measures must have one here, so a new measurement states what it expects.
TIMING_BOUNDS = {
    "lab up": 40.0,  # a full cluster with a pool active+clean in about 20 s
    "observe": 2.0,
    "blocked write": 2.0 + 1.0,  # its own timeout
    "write after min_size 1": 10.0,  # about 1 s after min_size 1; its timeout is 10 s
    "active+clean after restart": 45.0,  # about 8 s
    "quorum answers after kill": 30.0,  # the leader's lease: about 10 s
    "new client without quorum": max(OP_TIMEOUT, CONNECT_TIMEOUT) + 1.0,
    "new client, connect refused": CONNECT_TIMEOUT + 1.0,
    "connected client without quorum": OP_TIMEOUT + 1.0,
}


def test_timings_fit_the_lab_notes(lab: CephLab) -> None:
    """Every timing the module measured is named in TIMING_BOUNDS and within its bound; the
    figures stay in the output (-rP) for the lab notes."""
    lab.timings["lab up"] = lab.up_seconds
    print({k: round(v, 2) for k, v in lab.timings.items()})
    for name, seconds in lab.timings.items():
        bound = next((b for key, b in TIMING_BOUNDS.items() if name == key or name.startswith(key + " (")), None)
        assert bound is not None, f"timing {name!r} has no bound in TIMING_BOUNDS"
        assert 0 < seconds < bound, f"{name}: {seconds:.2f} s, expected under {bound:g} s"

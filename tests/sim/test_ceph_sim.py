"""The Ceph simulator against the same expectations as the lab cluster (tests/lab/test_ceph_lab.py),
plus what only a model can show quickly: unfound objects, flags, auto-out, monmap surgery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drengine.datastores.ceph.connector import CephAPI, observe
from drengine.datastores.ceph.scenarios import SCENARIOS, scenario
from drengine.datastores.ceph.sim import SimCephBackend
from drengine.datastores.ceph.simcluster import CephSim
from drengine.datastores.ceph.simmodel import ELECTION_SECONDS
from drengine.errors import CommandFailed, ConnectError, InputError, ProbeTimeout
from drengine.inventory import load_inventory

pytestmark = pytest.mark.sim

POOL = "drengine"


def set_min_size(api: CephAPI, pool: str, value: int) -> None:
    api.mon_command({"prefix": "osd pool set", "pool": pool, "var": "min_size", "val": str(value)})


def test_every_scenario_round_trips_through_json() -> None:
    for name in SCENARIOS:
        sim = scenario(name)
        copy = CephSim.from_json(sim.to_json())
        assert json.loads(copy.to_json()) == json.loads(sim.to_json())
        if name != "mon-quorum-lost":
            assert observe(copy, clock=lambda: 0.0) == observe(sim, clock=lambda: 0.0)


def test_unknown_scenario_and_bad_state_are_input_errors() -> None:
    with pytest.raises(InputError, match="healthy"):
        scenario("no-such")
    with pytest.raises(InputError):
        CephSim.from_json('{"osds": "three"}')


def test_healthy() -> None:
    snap = observe(scenario("healthy"))
    assert snap.status.health == "HEALTH_OK" and snap.status.checks == []
    assert snap.status.quorum_names == ["a", "b", "c"]
    assert (snap.status.num_osds, snap.status.num_up_osds, snap.status.num_in_osds) == (3, 3, 3)
    assert snap.all_active_clean
    assert snap.pool(POOL) is not None and snap.pool(POOL).min_size == 2  # type: ignore[union-attr]


def test_same_story_as_the_lab() -> None:
    """Kill one OSD, then two, degrade min_size, restart, lose monitor quorum: as in the lab test."""
    sim = scenario("healthy")
    sim.kill_osds([2])
    snap = observe(sim)
    assert snap.inactive_pgs == [] and not snap.all_active_clean
    assert {pg.state for pg in snap.pgs if pg.objects} == {"active+undersized+degraded"}
    assert snap.status.check("OSD_DOWN") is not None
    sim.write_object(POOL, "one-down", b"1", timeout=2.0)

    sim.kill_osds([1])
    snap = observe(sim)
    assert snap.pgs and all(not pg.active for pg in snap.pgs)
    assert {pg.state for pg in snap.pgs} <= {"undersized+peered", "undersized+degraded+peered"}
    assert all(pg.waiting_for == [1, 2] for pg in snap.pgs)
    assert [p.name for p in snap.pools_blocked()] == [POOL]
    with pytest.raises(ProbeTimeout, match="undersized"):
        sim.write_object(POOL, "blocked", b"2", timeout=2.0)

    set_min_size(sim, POOL, 1)
    sim.write_object(POOL, "degraded-write", b"3", timeout=2.0)
    assert observe(sim).inactive_pgs == []

    sim.start_osds([1, 2])
    set_min_size(sim, POOL, 2)
    snap = observe(sim)
    assert snap.all_active_clean and snap.status.health == "HEALTH_OK"
    assert sim.read_object(POOL, "degraded-write") == b"3"

    sim.kill_mons(["b", "c"])
    # A client connected before the loss times out; a new one cannot connect.
    with pytest.raises(ProbeTimeout):
        observe(sim)
    sim.close()
    with pytest.raises(ConnectError, match="1 of 3 monitors are up"):
        observe(sim)
    sim.start_mon("b")
    with pytest.raises(ConnectError, match="b still electing"):
        observe(sim)  # a monitor joins the quorum after an election, not at once
    sim.elapse(ELECTION_SECONDS)
    assert observe(sim).status.quorum_names == ["a", "b"]


def test_object_io_keeps_working_without_quorum_for_a_connected_client() -> None:
    sim = scenario("healthy")
    observe(sim)
    sim.kill_mons(["b", "c"])
    sim.write_object(POOL, "still-works", b"x", timeout=1.0)
    assert sim.read_object(POOL, "still-works") == b"x"
    sim.close()
    with pytest.raises(ConnectError):
        sim.read_object(POOL, "still-works")


def test_mon_quorum_lost_scenario_and_monmap_surgery() -> None:
    sim = scenario("mon-quorum-lost")
    with pytest.raises(ConnectError, match="a quorum needs 2"):
        observe(sim)
    with pytest.raises(CommandFailed, match="running"):
        sim.extract_monmap("a")
    sim.kill_mons(["a"])  # stop the survivor
    monmap = sim.extract_monmap("a")
    assert monmap == ["a", "b", "c"]
    sim.inject_monmap("a", [m for m in monmap if m not in ("b", "c")])
    sim.start_mon("a")
    sim.elapse(ELECTION_SECONDS)
    snap = observe(sim)
    assert snap.status.quorum_names == ["a"] and snap.status.monitors == ["a"]
    assert snap.status.check("MON_DOWN") is None
    assert snap.all_active_clean


def test_unfound_objects_need_the_osd_marked_lost_before_revert() -> None:
    sim = scenario("unfound-objects")
    snap = observe(sim)
    assert snap.status.health == "HEALTH_ERR"
    assert snap.status.check("OBJECT_UNFOUND") is not None and snap.status.check("PG_DAMAGED") is not None
    damaged = snap.pgs_with_unfound
    assert damaged and all("recovery_unfound" in pg.states and pg.active for pg in damaged)
    assert sum(pg.unfound for pg in damaged) == 3
    with pytest.raises(ProbeTimeout):
        sim.read_object(POOL, "drengine-object-0")
    listed = sim.pg_command(damaged[0].pgid, {"prefix": "list_unfound"})
    assert isinstance(listed, dict) and listed["might_have_unfound"][0] == {"osd": "0", "status": "osd is down"}

    with pytest.raises(CommandFailed, match="haven't probed all sources"):
        sim.pg_command(damaged[0].pgid, {"prefix": "mark_unfound_lost", "mulcmd": "revert"})
    with pytest.raises(CommandFailed, match="yes-i-really-mean-it"):
        sim.mon_command({"prefix": "osd lost", "id": 0})
    sim.mon_command({"prefix": "osd lost", "id": 0, "yes_i_really_mean_it": True})
    for pg in damaged:
        sim.pg_command(pg.pgid, {"prefix": "mark_unfound_lost", "mulcmd": "revert"})
    snap = observe(sim)
    assert snap.pgs_with_unfound == [] and snap.status.check("OBJECT_UNFOUND") is None
    # Reverted to the older version; an object that had none is gone.
    assert sim.read_object(POOL, "drengine-object-0") == b"drengine object 0\n"
    with pytest.raises(CommandFailed, match="does not exist"):
        sim.read_object(POOL, "drengine-new-object")


def test_unfound_objects_are_found_when_their_osd_returns() -> None:
    sim = scenario("unfound-objects")
    sim.start_osds([0])
    snap = observe(sim)
    assert snap.pgs_with_unfound == [] and snap.all_active_clean
    assert sim.read_object(POOL, "drengine-new-object") == b"drengine-new-object: written while only osd.0 was up\n"


def test_several_pools_some_affected() -> None:
    snap = observe(scenario("several-pools-some-affected"))
    by_pool = {p.name: [pg for pg in snap.pgs if pg.pool_id == p.id] for p in snap.pools}
    assert all(pg.clean for pg in by_pool["images"])
    assert all(not pg.active and pg.waiting_for == [4, 5] for pg in by_pool["volumes"])
    assert all(pg.active and "undersized" in pg.states for pg in by_pool["backups"])
    assert [p.name for p in snap.pools_blocked()] == ["volumes"]


def test_flags_noout_and_auto_out() -> None:
    sim = scenario("one-osd-down")
    sim.mon_command({"prefix": "osd set", "key": "noout"})
    snap = observe(sim)
    assert "noout" in snap.flags
    assert snap.status.check("OSDMAP_FLAGS") is not None and snap.status.check("OSDMAP_FLAGS").summary == "noout flag(s) set"  # type: ignore[union-attr]
    sim.elapse(3600)
    assert all(o.in_ for o in observe(sim).osds)
    sim.mon_command({"prefix": "osd unset", "key": "noout"})
    sim.elapse(601)
    assert [o.id for o in observe(sim).osds if not o.in_] == [2]
    with pytest.raises(CommandFailed, match="unrecognized flag"):
        sim.mon_command({"prefix": "osd set", "key": "nosuch"})


def test_out_remaps_and_nobackfill_holds_the_backfill() -> None:
    sim = scenario("several-pools-some-affected")
    sim.mon_command({"prefix": "osd set", "key": "nobackfill"})
    sim.start_osds([4, 5])
    sim.mon_command({"prefix": "osd out", "ids": ["0"]})
    snap = observe(sim)
    images = [pg for pg in snap.pgs if pg.pool_id == snap.pool("images").id]  # type: ignore[union-attr]
    # Two SSD OSDs are left for size-3 PGs: undersized, serving, and nothing to backfill onto.
    assert all(pg.active and 0 not in pg.acting for pg in images)
    sim.mon_command({"prefix": "osd in", "ids": ["0"]})
    sim.mon_command({"prefix": "osd unset", "key": "nobackfill"})
    assert observe(sim).all_active_clean


def test_norecover_holds_recovery_of_a_returning_osd() -> None:
    sim = scenario("healthy")
    sim.kill_osds([2])
    sim.write_object(POOL, "while-down", b"new", timeout=1.0)
    sim.mon_command({"prefix": "osd set", "key": "norecover"})
    sim.start_osds([2])
    waiting = [pg for pg in observe(sim).pgs if "recovery_wait" in pg.states]
    assert len(waiting) == 1 and waiting[0].active
    sim.mon_command({"prefix": "osd unset", "key": "norecover"})
    assert observe(sim).all_active_clean


def test_refusals_name_the_problem() -> None:
    sim = scenario("healthy")
    with pytest.raises(CommandFailed, match="between 1 and size"):
        set_min_size(sim, POOL, 4)
    with pytest.raises(CommandFailed, match="unrecognized pool"):
        set_min_size(sim, "nosuch", 1)
    with pytest.raises(CommandFailed, match="not down"):
        sim.mon_command({"prefix": "osd lost", "id": 1, "yes_i_really_mean_it": True})
    with pytest.raises(CommandFailed, match="not known to the Ceph simulator"):
        sim.mon_command({"prefix": "osd crush rm"})
    assert sim.mon_command({"prefix": "osd pool set", "pool": POOL, "var": "min_size", "val": "1"}) == {
        "message": "set pool 1 min_size to 1"
    }


def test_pg_command_needs_an_up_primary() -> None:
    sim = scenario("healthy")
    pgid = observe(sim).pgs[0].pgid
    assert sim.pg_command(pgid, {"prefix": "query"})["state"] == "active+clean"  # type: ignore[call-overload]
    sim.kill_osds([0, 1, 2])
    with pytest.raises(ProbeTimeout, match="primary OSD is down"):
        sim.pg_command(pgid, {"prefix": "query"})


def _sim_backend(tmp_path: Path, name: str = "healthy") -> SimCephBackend:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "clusters:\n  sim:\n    kind: ceph\n"
        f"    simulated: {{scenario: {name}, state_file: {tmp_path / 'state.json'}}}\n"
        "    members:\n" + "".join(f"      - {{name: {m}}}\n" for m in ("mon.a", "mon.b", "mon.c", "osd.0", "osd.1", "osd.2"))
    )
    return SimCephBackend.open(load_inventory(inventory).cluster("sim"), tmp_path / "state.json")


def test_backend_faults_kill_start_hang_resume_osds(tmp_path: Path) -> None:
    """Drills inject faults through the backend by member name; the state file follows each one."""
    backend = _sim_backend(tmp_path)
    assert backend.kill("osd.2") == "simulated SIGKILL of osd.2"
    assert [o.id for o in backend.observe().down_osds] == [2]
    assert CephSim.from_json((tmp_path / "state.json").read_text()).osd(2).up is False  # saved at once
    backend.start("osd.2")
    assert backend.observe().down_osds == [] and backend.observe().all_active_clean

    assert backend.hang("osd.1") == "simulated SIGSTOP of osd.1"
    assert [o.id for o in backend.observe().down_osds] == [1]  # its peers stop hearing it: marked down
    backend.start("osd.1")  # a second daemon cannot take the store a stopped one holds
    assert [o.id for o in backend.observe().down_osds] == [1]
    assert backend.resume("osd.1") == "simulated SIGCONT of osd.1"
    assert backend.observe().down_osds == [] and backend.observe().all_active_clean
    backend.close()


def test_backend_faults_hang_monitors_and_refuse_unknown_members(tmp_path: Path) -> None:
    backend = _sim_backend(tmp_path)
    backend.hang("mon.b")
    backend.hang("mon.c")
    assert backend.sim.quorum() == []
    probe = backend.monitors.probe("mon.b")
    assert not probe.running and "stopped (SIGSTOP)" in probe.error
    with pytest.raises(CommandFailed, match="stopped by SIGSTOP"):
        backend.sim.extract_monmap("b")  # its store is still locked
    backend.resume("mon.b")
    assert backend.sim.quorum() == [] and backend.monitors.probe("mon.b").state == "electing"
    backend.sim.elapse(ELECTION_SECONDS)
    assert backend.sim.quorum() == ["a", "b"]
    with pytest.raises(InputError, match="no daemon 'mgr.x' to SIGKILL"):
        backend.kill("mgr.x")
    backend.close()


def test_the_drill_kit_is_a_value() -> None:
    import dataclasses

    from drengine.datastores.ceph.drill import KIT, CephKit

    assert KIT == CephKit()
    with pytest.raises(dataclasses.FrozenInstanceError):
        KIT.pool = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        KIT.faults["hang-osds"] = KIT.faults["kill-osds"]  # type: ignore[index]


def test_a_monitor_port_is_read_through_the_backend_on_both_twins(tmp_path: Path) -> None:
    """`drengine status` without quorum asks the backend whether each monitor listens: the real
    backend connects to the port, the simulated twin answers from its model (a stopped monitor's
    port still accepts, as the kernel completes the handshake)."""
    import socket

    from drengine.datastores.ceph.backend import CephBackend

    backend = _sim_backend(tmp_path)
    backend.kill("mon.b")
    backend.hang("mon.c")
    cluster = backend.cluster
    states = {m: backend.mon_listens(cluster.member(m)).state for m in ("mon.a", "mon.b", "mon.c")}
    assert states == {"mon.a": "accepts", "mon.b": "refused", "mon.c": "accepts"}
    backend.close()

    listening = socket.create_server(("127.0.0.1", 0))
    closed = socket.create_server(("127.0.0.1", 0))
    port, dead = listening.getsockname()[1], closed.getsockname()[1]
    closed.close()
    inventory = tmp_path / "real.yaml"
    inventory.write_text("clusters:\n  real:\n    kind: ceph\n    members:\n"
                         f"      - {{name: mon.a, address: 127.0.0.1, port: {port}}}\n"
                         f"      - {{name: mon.b, address: 127.0.0.1, port: {dead}}}\n")
    real = load_inventory(inventory).cluster("real")
    with listening:
        assert CephBackend(real, api=backend.sim).mon_listens(real.member("mon.a")).state == "accepts"
        answer = CephBackend(real, api=backend.sim).mon_listens(real.member("mon.b"))
    assert answer.state == "refused" and f":{dead}" in answer.error

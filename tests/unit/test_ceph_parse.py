"""Parsers of the Ceph connector on JSON captured from the Pacific (16.2) lab cluster.

Samples (tests/unit/data/ceph): a healthy cluster, one and two of three OSDs killed, PGs
gone stale after their only up OSD died, and a monitor answering `status` out of quorum.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from drengine.datastores.ceph.connector import (
    JsonDoc,
    observe,
    parse_mon_dump,
    parse_osd_flags,
    parse_osd_hosts,
    parse_osds,
    parse_pgs,
    parse_pools,
    parse_status,
)
from drengine.errors import CommandFailed, ConnectError

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent / "data" / "ceph"


def sample(name: str) -> JsonDoc:
    doc: JsonDoc = json.loads((DATA / f"{name}.json").read_text())
    return doc


class Replay:
    """A CephAPI answering from captured samples: `<scenario>-<command>.json`, healthy as fallback."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.sent: list[str] = []

    def mon_command(self, cmd: Mapping[str, Any]) -> JsonDoc:
        prefix = str(cmd["prefix"])
        self.sent.append(prefix)
        stem = prefix.replace(" ", "_")
        for candidate in (f"{self.scenario}-{stem}", f"healthy-{stem}"):
            if (DATA / f"{candidate}.json").exists():
                return sample(candidate)
        raise AssertionError(f"no sample for {prefix}")

    def pg_command(self, pgid: str, cmd: Mapping[str, Any]) -> JsonDoc:
        raise AssertionError("observe sends no PG commands")

    def write_object(self, pool: str, name: str, data: bytes, timeout: float) -> None:
        raise AssertionError("observe writes nothing")

    def read_object(self, pool: str, name: str) -> bytes:
        raise AssertionError("observe reads no objects")

    def close(self) -> None:
        pass


def test_healthy_status() -> None:
    status = parse_status(sample("healthy-status"))
    assert status.quorum_names == ["a", "b", "c"]
    assert status.monitors_count == 3
    assert (status.num_osds, status.num_up_osds, status.num_in_osds) == (3, 3, 3)
    assert status.pgs_by_state == {"active+clean": 9}
    assert status.num_pgs == 9
    # Captured before the lab muted it: the one warning a cephx-less cluster raises.
    assert [c.code for c in status.checks] == ["AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED"]
    assert status.checks[0].summary == "mons are allowing insecure global_id reclaim"


def test_osd_dump_pools_flags_and_hosts() -> None:
    dump = sample("healthy-osd_dump")
    assert parse_osd_flags(dump) == ["pglog_hardlimit", "purged_snapdirs", "recovery_deletes", "sortbitwise"]
    pools = {p.name: p for p in parse_pools(dump)}
    assert pools["drengine"].size == 3 and pools["drengine"].min_size == 2
    assert pools["drengine"].pg_num == 8 and pools["drengine"].applications == ["rados"]
    assert pools["device_health_metrics"].applications == ["mgr_devicehealth"]
    hosts = parse_osd_hosts(sample("healthy-osd_tree"))
    osds = parse_osds(dump, hosts)
    assert [(o.id, o.up, o.in_, o.host) for o in osds] == [(0, True, True, "vm"), (1, True, True, "vm"), (2, True, True, "vm")]


def test_flags_from_the_joined_string_when_flags_set_is_missing() -> None:
    assert parse_osd_flags({"flags": "noout,norebalance,sortbitwise"}) == ["noout", "norebalance", "sortbitwise"]


def test_mon_dump_names() -> None:
    assert parse_mon_dump(sample("healthy-mon_dump")) == ["a", "b", "c"]


def test_healthy_pgs_all_active_clean() -> None:
    pgs = parse_pgs(sample("healthy-pg_ls"))
    assert len(pgs) == 9
    assert all(pg.clean and pg.active for pg in pgs)
    assert [pg.pgid for pg in pgs][:3] == ["1.0", "1.1", "1.2"]
    assert sum(pg.objects for pg in pgs) == 4
    assert all(len(pg.acting) == 3 and pg.primary == pg.acting[0] for pg in pgs)


def test_one_osd_down_degraded_but_active() -> None:
    status = parse_status(sample("one-osd-down-status"))
    assert status.check("OSD_DOWN") is not None and status.check("OSD_DOWN").summary == "1 osds down"  # type: ignore[union-attr]
    degraded = status.check("PG_DEGRADED")
    assert degraded is not None and degraded.summary.startswith("Degraded data redundancy: 4/12 objects degraded")
    pgs = parse_pgs(sample("one-osd-down-pg_ls"))
    pool_pgs = [pg for pg in pgs if pg.pool_id == 1]
    assert all(pg.active and not pg.clean for pg in pool_pgs)
    assert all("undersized" in pg.states and len(pg.acting) == 2 for pg in pool_pgs)
    # Only PGs holding objects are degraded; empty ones are just undersized.
    assert {pg.state for pg in pool_pgs if pg.objects} == {"active+undersized+degraded"}
    assert all(pg.waiting_for == [] for pg in pgs)


def test_two_osds_down_pgs_inactive_and_waiting_for_the_dead_osds() -> None:
    dump = sample("two-osds-down-osd_dump")
    osds = parse_osds(dump)
    assert [o.id for o in osds if not o.up] == [1, 2]
    pgs = parse_pgs(sample("two-osds-down-pg_ls"), osds)
    assert pgs and all(not pg.active for pg in pgs)
    assert {pg.state for pg in pgs} <= {"undersized+peered", "undersized+degraded+peered"}
    assert all(pg.acting == [0] and pg.waiting_for == [1, 2] for pg in pgs)
    # Pacific raises no PG_AVAILABILITY for freshly peered PGs (only once stuck): read PG states, not checks.
    status = parse_status(sample("two-osds-down-status"))
    assert status.check("PG_AVAILABILITY") is None
    assert status.pgs_by_state == {"undersized+peered": 6, "undersized+degraded+peered": 3}


def test_dump_stuck_shape() -> None:
    pgs = parse_pgs(sample("two-osds-down-dump_stuck"))
    assert pgs and all(not pg.active for pg in pgs)


def test_stale_pgs_are_not_serving_and_wait_for_their_dead_primary() -> None:
    osds = parse_osds(sample("stale-osd_dump"))
    pgs = parse_pgs(sample("stale-pg_ls"), osds)
    stale = [pg for pg in pgs if "stale" in pg.states]
    assert stale and all(not pg.active for pg in stale)
    # "stale+active+undersized" still says active: the last report of a primary that died.
    assert any("active" in pg.states for pg in stale)
    assert all(pg.waiting_for == [0] for pg in stale)


def test_observe_on_samples() -> None:
    api = Replay("two-osds-down")
    snap = observe(api, clock=lambda: 1000.0)
    assert api.sent == ["status", "mon dump", "osd dump", "osd tree", "pg ls"]
    assert snap.taken_at == 1000.0
    assert snap.status.monitors == ["a", "b", "c"] and snap.status.monitors_out_of_quorum == []
    assert [o.id for o in snap.down_osds] == [1, 2]
    assert [p.name for p in snap.pools_blocked()] == ["drengine", "device_health_metrics"]
    assert not snap.all_active_clean
    healthy = observe(Replay("healthy"))
    assert healthy.all_active_clean and healthy.inactive_pgs == []


def test_observe_refuses_a_monitor_out_of_quorum() -> None:
    status = parse_status(sample("no-quorum-status"))
    assert status.quorum_names == []
    # The stale answer even looks plausible: a health status and checks from before the loss.
    assert status.health == "HEALTH_WARN"
    with pytest.raises(ConnectError, match="not part of a quorum"):
        observe(Replay("no-quorum"))


def test_a_non_object_answer_is_refused() -> None:
    with pytest.raises(CommandFailed):
        parse_status([])


def test_without_the_rados_binding_the_message_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from drengine.datastores.ceph.connector import CephConnector
    from drengine.errors import DrengineError

    conf = tmp_path / "ceph.conf"
    conf.write_text("[global]\nmon host = 127.0.0.1:1\n")
    monkeypatch.setitem(sys.modules, "rados", None)  # `import rados` raises ImportError, as in a venv without it
    with pytest.raises(DrengineError) as raised:
        CephConnector(str(conf)).connect()
    assert "python3-rados" in str(raised.value) and "--system-site-packages" in str(raised.value)

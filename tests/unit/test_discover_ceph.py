"""Ceph discovery's reading of the monmap, the OSD map and tree and the manager map: on the
simulated cluster's answers and on answers shaped as a Pacific cluster prints them."""

from __future__ import annotations

from pathlib import Path

import pytest

from drengine.datastores.ceph.scenarios import scenario
from drengine.discover import cluster_yaml
from drengine.discover_ceph import ceph_discovery
from drengine.inventory import load_inventory

pytestmark = pytest.mark.unit


def _v2_v1(host: str, port: int, nonce: int = 0) -> dict[str, object]:
    return {"addrvec": [{"type": "v1", "addr": f"{host}:{port + 1}", "nonce": nonce},
                        {"type": "v2", "addr": f"{host}:{port}", "nonce": nonce}]}


MON_DUMP = {"epoch": 4, "fsid": "f00d", "mons": [
    {"rank": 1, "name": "b", "public_addrs": _v2_v1("10.0.0.2", 3300), "addr": "10.0.0.2:6789/0"},
    {"rank": 0, "name": "a", "public_addrs": _v2_v1("10.0.0.1", 3300), "addr": "10.0.0.1:6789/0"}]}
OSD_DUMP = {"epoch": 91, "flags": "sortbitwise", "pools": [], "osds": [
    {"osd": 0, "up": 1, "in": 1, "weight": 1.0, "public_addrs": _v2_v1("10.0.1.1", 6800, 77),
     "public_addr": "10.0.1.1:6801/77"},
    {"osd": 1, "up": 0, "in": 1, "weight": 1.0, "public_addrs": {"addrvec": []}, "public_addr": "-"},
    {"osd": 2, "up": 1, "in": 0, "weight": 0.0, "public_addr": "10.0.1.2:6801/78"}]}
OSD_TREE = {"nodes": [
    {"id": -1, "name": "default", "type": "root", "children": [-3, -5]},
    {"id": -3, "name": "stor1", "type": "host", "children": [1, 0]},
    {"id": -5, "name": "stor2", "type": "host", "children": [2]},
    {"id": 0, "name": "osd.0", "type": "osd"}, {"id": 1, "name": "osd.1", "type": "osd"},
    {"id": 2, "name": "osd.2", "type": "osd"}], "stray": []}
MGR_DUMP = {"active_name": "stor1", "active_addrs": _v2_v1("10.0.1.1", 6810), "available": True,
            "standbys": [{"gid": 4242, "name": "stor2"}]}


def test_members_from_the_maps_as_pacific_prints_them() -> None:
    found = ceph_discovery(MON_DUMP, OSD_DUMP, OSD_TREE, MGR_DUMP, "the Ceph monitor at 10.0.0.1:3300")
    rows = [(m.name, m.address, m.port, m.role, m.hint) for m in found.members]
    assert rows == [
        ("mon.a", "10.0.0.1", 3300, "mon", ""),  # by rank, the v2 address
        ("mon.b", "10.0.0.2", 3300, "mon", ""),
        ("osd.0", "10.0.1.1", None, "osd", "CRUSH host stor1"),
        ("osd.1", "FILL-IN.invalid", None, "osd", "CRUSH host stor1, no address in the OSD map (never booted?)"),
        ("osd.2", "10.0.1.2", None, "osd", "CRUSH host stor2"),
        ("mgr.stor1", "10.0.1.1", None, "mgr", "active"),
        ("mgr.stor2", "FILL-IN.invalid", None, "mgr", "standby: the manager map gives no address"),
    ]
    assert "cluster f00d: monmap epoch 4, OSD map epoch 91" in found.notes[0]


def test_the_simulated_cluster_without_a_manager_map(tmp_path: Path) -> None:
    sim = scenario("healthy")
    mons, osds, tree = (sim.mon_command({"prefix": p}) for p in ("mon dump", "osd dump", "osd tree"))
    found = ceph_discovery(mons, osds, tree, None, "the simulated cluster")
    assert [(m.name, m.port, m.hint) for m in found.members] == [
        ("mon.a", 3300, ""), ("mon.b", 3301, ""), ("mon.c", 3302, ""),
        ("osd.0", None, "CRUSH host ceph1, no address in the OSD map (never booted?)"),
        ("osd.1", None, "CRUSH host ceph2, no address in the OSD map (never booted?)"),
        ("osd.2", None, "CRUSH host ceph3, no address in the OSD map (never booted?)")]
    assert any("add the managers" in n for n in found.notes)


def test_the_section_is_an_inventory_with_what_to_fill_in(tmp_path: Path) -> None:
    found = ceph_discovery(MON_DUMP, OSD_DUMP, OSD_TREE, MGR_DUMP, "a monitor")
    text = cluster_yaml(found, "prod-ceph", "client.admin", None)
    assert "conf_file: /etc/ceph/ceph.conf" in text and "# FILL IN: the ceph.conf" in text
    assert "pid_file: /var/run/ceph/ceph-osd.2.pid" in text and "credentials" not in text
    (tmp_path / "inv.yaml").write_text(text)
    cluster = load_inventory(tmp_path / "inv.yaml").clusters["prod-ceph"]
    assert cluster.ceph is not None and cluster.ceph.client_name == "client.admin"
    assert [(m.name, m.role, m.port) for m in cluster.members][:3] == [("mon.a", "mon", 3300), ("mon.b", "mon", 3300),
                                                                       ("osd.0", "osd", 0)]
    named = cluster_yaml(found, "prod-ceph", "admin", None, ceph_conf="/srv/ceph/ceph.conf")
    assert "ceph: {conf_file: /srv/ceph/ceph.conf, client_name: client.admin}\n" in named


def test_options_that_do_not_apply_are_refused() -> None:
    from tests.helpers import cli

    code, out = cli("inventory", "discover", "ceph", "10.0.0.1", "--password-env", "HOME")
    assert code == 2 and "Ceph authenticates with a keyring" in out, out
    code, out = cli("inventory", "discover", "mariadb", "10.0.0.1", "--ceph-conf", "/etc/ceph/ceph.conf")
    assert code == 2 and "--ceph-conf is for Ceph clusters, not mariadb" in out, out

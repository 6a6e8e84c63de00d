"""`drengine status` against the real labs (MariaDB, Galera, Ceph) and the served MongoDB and
Elasticsearch labs: healthy exits 0; broken exits 1, says what is down with the error, names
the most advanced survivor where there is one, and prints the exact `drengine plan` command
of the runbook that applies."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drengine.clock import wait_until
from drengine.datastores.mariadb import lab as lab_mariadb
from drengine.lab.procs import LabDir
from tests.helpers import cli, cli_subprocess, require_ceph


def status(inventory: Path | str, cluster: str, *extra: str) -> tuple[int, str]:
    return cli("status", "-i", str(inventory), "-c", cluster, *extra)


def status_json(inventory: Path | str, cluster: str) -> tuple[int, dict[str, Any]]:
    code, out = status(inventory, cluster, "--json")
    return code, json.loads(out)["clusters"][0]


def status_process(inventory: Path, cluster: str) -> tuple[int, str]:
    """`drengine status` as the operator runs it: its own process, whose connections end with it
    (in-process, pymongo's monitors close theirs a moment later, and a lab restarted at once would
    find its ports still held by the closing connections)."""
    done = cli_subprocess("status", "-i", str(inventory), "-c", cluster)
    return done.returncode, done.stdout + done.stderr


def member(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in doc["members"] if m["name"] == name)


@pytest.fixture
def mariadb_lab() -> Iterator[tuple[LabDir, Path]]:
    # Not under pytest's tmp_path: its parents are mode 700 and the servers run as mysql.
    root = tempfile.mkdtemp(prefix="drengine-status-mariadb-")
    os.chmod(root, 0o755)
    lab = LabDir(root)
    inventory = Path(root) / "inventory.yaml"
    try:
        lab_mariadb.up(lab, inventory_out=str(inventory))
        yield lab, inventory
    finally:
        lab_mariadb.down(lab)
        shutil.rmtree(root, ignore_errors=True)


def test_mariadb_lab_healthy_then_primary_killed(mariadb_lab: tuple[LabDir, Path]) -> None:
    lab, inventory = mariadb_lab
    code, out = status(inventory, "lab-mariadb")
    assert code == 0, out
    assert "HEALTHY" in out and "db1 is the primary; 2 replica(s) follow it" in out

    lab_mariadb.sql(lab, "db1", "CREATE DATABASE IF NOT EXISTS app", "CREATE TABLE app.t (id INT PRIMARY KEY)",
                    "INSERT INTO app.t VALUES (1)")
    lab_mariadb.wait_replicated(lab)
    lab_mariadb.sql(lab, "db3", "STOP SLAVE IO_THREAD")  # db3 falls behind: db2 must be named
    lab_mariadb.sql(lab, "db1", "INSERT INTO app.t VALUES (2)")
    lab_mariadb.wait_replicated(lab, replicas=("db2",))
    lab_mariadb.kill(lab, "db1")

    started = time.monotonic()
    code, out = status(inventory, "lab-mariadb")
    took = time.monotonic() - started
    assert code == 1, out
    assert "the primary db1 is down: dead" in out and "Can't connect" in out
    assert "Most advanced replica: db2" in out
    assert f"$ drengine plan mariadb-promote-survivor -i {inventory} -c lab-mariadb" in out
    assert took < 1.0 + 1.5 + 2.0, f"status took {took:.1f} s"  # connect + read timeouts of the lab, and start-up
    code, doc = status_json(inventory, "lab-mariadb")
    assert code == 1 and doc["verdict"] == "down"
    assert member(doc, "db1")["state"] == "dead" and "2003" in member(doc, "db1")["error"]
    assert doc["advice"][0]["runbook"] == "mariadb-promote-survivor"
    # The plan it prints is the one that promotes db2.
    code, out = cli("plan", "mariadb-promote-survivor", "-i", str(inventory), "-c", "lab-mariadb", "--run-dir",
                    str(lab.root / "plan"))
    assert code == 0 and "promote db2 to primary" in out, out


def test_mariadb_lab_hung_primary_is_reported_hung(mariadb_lab: tuple[LabDir, Path]) -> None:
    lab, inventory = mariadb_lab
    lab_mariadb.hang(lab, "db1")
    try:
        started = time.monotonic()
        code, doc = status_json(inventory, "lab-mariadb")
        took = time.monotonic() - started
        assert code == 1
        assert member(doc, "db1")["state"] == "hung", doc
        assert took < 1.0 + 1.5 + 2.0
    finally:
        lab_mariadb.resume(lab, "db1")


@pytest.fixture(scope="module")
def galera_lab() -> Iterator[tuple[LabDir, Path]]:
    from drengine.datastores.galera import lab as galera
    from drengine.lab import ssh as ssh_lab

    root = Path(tempfile.mkdtemp(prefix="drengine-status-galera-"))
    os.chmod(root, 0o755)
    lab = LabDir(root)
    inventory = root / "inventory.yaml"
    try:
        ssh_info = ssh_lab.up(lab, n_hosts=3, first_address="127.0.0.12", inventory_out=inventory)
        galera.up(lab, inventory_out=inventory, hosts=sorted(ssh_info["hosts"]))
        yield lab, inventory
    finally:
        galera.down(lab)
        ssh_lab.down(lab)
        shutil.rmtree(root, ignore_errors=True)


def test_galera_lab_healthy_then_two_nodes_killed(galera_lab: tuple[LabDir, Path]) -> None:
    from drengine.datastores.galera import lab as galera

    lab, inventory = galera_lab
    name = "lab-galera"
    code, out = status(inventory, name)
    assert code == 0, out
    assert "every node (3) is in the Primary component and Synced" in out
    galera.kill_node(lab, "g2")
    galera.kill_node(lab, "g3")
    # The survivor notices after the failure-detection timeouts (about 3 s in the lab).
    assert wait_until(lambda: galera.wsrep_status(lab, "g1")["wsrep_cluster_status"] != "Primary", 30)
    code, out = status(inventory, name)
    assert code == 1, out
    assert "no Primary component" in out and "Most advanced running node: g1" in out
    assert "g2" in out and "dead" in out
    assert f"$ drengine plan galera-bootstrap-survivor -i {inventory} -c {name}" in out


@pytest.fixture(scope="module")
def ceph_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabDir, Path]]:
    from drengine.datastores.ceph import lab as ceph_lab_module

    require_ceph()
    root = tmp_path_factory.mktemp("status-ceph")
    lab = LabDir(root)
    inventory = root / "inventory.yaml"
    try:
        ceph_lab_module.up(lab, port_base=3370, inventory_out=inventory)
        yield lab, inventory
    finally:
        ceph_lab_module.down(lab)


def test_ceph_lab_healthy_then_two_osds_killed(ceph_lab: tuple[LabDir, Path]) -> None:
    from drengine.datastores.ceph import lab as ceph_lab_module

    lab, inventory = ceph_lab
    name = ceph_lab_module.CLUSTER_NAME
    code, out = status(inventory, name)
    assert code == 0, out
    assert "HEALTHY" in out
    ceph_lab_module.kill_osds(lab, [1, 2])

    def blocked() -> bool:
        return bool(status_json(inventory, name)[1]["verdict"] == "down")

    assert wait_until(blocked, 60, interval=1.0)
    code, out = status(inventory, name)
    assert code == 1, out
    assert "I/O is blocked on pool" in out and "osd.1" in out and "osd.2" in out
    assert f"$ drengine plan ceph-degrade -i {inventory} -c {name}" in out


def test_mongodb_served_lab(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    lab = str(tmp_path / "lab")
    try:
        code, out = cli("lab", "up", "mongodb", "--scenario", "healthy-3", "--dir", lab, "--inventory-out", str(inventory))
        assert code == 0, out
        code, out = status_process(inventory, "lab-mongodb")
        assert code == 0, out
        assert "m0 is PRIMARY; every other member is healthy" in out
        code, out = cli("lab", "up", "mongodb", "--scenario", "majority-lost-5", "--dir", lab, "--inventory-out",
                        str(inventory))
        assert code == 0, out
        code, out = status_process(inventory, "lab-mongodb")
        assert code == 1, out
        assert "the majority is lost and no member is PRIMARY (2 of 5 answer)" in out
        assert "Most advanced survivor: m1" in out and "Connection refused" in out
        assert f"$ drengine plan mongodb-force-primary -i {inventory} -c lab-mongodb" in out
    finally:
        cli("lab", "down", "--dir", lab)


def test_elasticsearch_served_lab(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    lab = str(tmp_path / "lab")
    try:
        code, out = cli("lab", "up", "elasticsearch", "--scenario", "healthy-3", "--dir", lab, "--inventory-out",
                        str(inventory))
        assert code == 0, out
        code, out = status(inventory, "lab-elasticsearch")
        assert code == 0, out
        assert "health green" in out
        code, out = cli("lab", "up", "elasticsearch", "--scenario", "red-no-copy", "--dir", lab, "--inventory-out",
                        str(inventory))
        assert code == 0, out
        code, doc = status_json(inventory, "lab-elasticsearch")
        assert code == 1 and doc["verdict"] == "down", doc
        assert member(doc, "node-2")["state"] == "absent"
        code, out = status(inventory, "lab-elasticsearch")
        assert "health red" in out
        assert f"$ drengine plan elasticsearch-reallocate -i {inventory} -c lab-elasticsearch" in out
    finally:
        cli("lab", "down", "--dir", lab)


def test_ceph_lab_starts_again_right_after_down(ceph_lab: tuple[LabDir, Path]) -> None:
    """The monitors' ports sit in TIME_WAIT after `down`; the lab checks them as ceph-mon binds
    them (SO_REUSEADDR), so it starts again at once instead of failing for a minute."""
    import socket

    from drengine.datastores.ceph import lab as ceph_lab_module

    lab, inventory = ceph_lab
    ceph_lab_module.down(lab)
    with socket.socket() as plain:
        try:
            plain.bind(("127.0.0.1", 3370))
            in_time_wait = False
        except OSError:
            in_time_wait = True  # what made the old check refuse
    started = time.monotonic()
    ceph_lab_module.up(lab, port_base=3370, inventory_out=inventory)
    print(f"monitor port in TIME_WAIT after down: {in_time_wait}; up again in {time.monotonic() - started:.1f} s")
    code, out = status(inventory, ceph_lab_module.CLUSTER_NAME)
    assert code == 0, out

"""A real three-node MariaDB Galera cluster on loopback: quorum loss, pc.bootstrap, full
crash with position recovery, bootstrap from the most advanced node and rejoin, driven
partly through the inventory's service templates over SSH, as a runbook would."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from drengine.clock import wait_until
from drengine.datastores.galera import lab as galera
from drengine.inventory import Cluster, Host, Inventory, load_inventory
from drengine.lab import ssh as ssh_lab
from drengine.lab.procs import LabDir, is_ours
from drengine.transport import LocalTransport, ServiceAction, ShellCommand, render_service, transport_for

pytestmark = pytest.mark.lab

NODES = list(galera.NODE_NAMES)


class Lab:
    def __init__(self, lab: LabDir, inventory: Inventory, up_info: dict[str, Any]) -> None:
        self.dir = lab
        self.inventory = inventory
        self.up_info = up_info
        self.facts: dict[str, Any] = {}

    @property
    def cluster(self) -> Cluster:
        return self.inventory.cluster(galera.CLUSTER)

    def template(self, action: ServiceAction, node: str) -> ShellCommand:
        assert getattr(self.cluster.service, action) is not None
        return render_service(self.cluster, self.cluster.member(node), action)

    def host(self, node: str) -> tuple[str, Host]:
        name = self.cluster.member(node).host
        assert name is not None
        return name, self.inventory.hosts[name]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    # Not pytest's tmp_path: its parents are mode 700 and the nodes run as mysql.
    root = Path(tempfile.mkdtemp(prefix="drengine-galera-"))
    os.chmod(root, 0o755)
    lab_dir = LabDir(root)
    inventory_path = root / "inventory.yaml"
    try:
        ssh_info = ssh_lab.up(lab_dir, n_hosts=3, first_address="127.0.0.12", inventory_out=inventory_path)
        up_info = galera.up(lab_dir, inventory_out=inventory_path, hosts=sorted(ssh_info["hosts"]))
        yield Lab(lab_dir, load_inventory(inventory_path), up_info)
    finally:
        stopped = galera.down(lab_dir)
        ssh_lab.down(lab_dir)
        leftovers = lab_dir.processes()
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers, leftovers
        assert set(stopped) <= set(NODES)


def _query(lab: Lab, node: str, sql: str) -> list[tuple[Any, ...]]:
    conn = galera.connect(lab.dir, node)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def _cluster_status(lab: Lab, node: str) -> str:
    return galera.wsrep_status(lab.dir, node)["wsrep_cluster_status"]


def test_up_gives_three_synced_nodes_and_an_inventory(lab: Lab) -> None:
    for node in NODES:
        status = galera.wsrep_status(lab.dir, node)
        assert (status["wsrep_local_state_comment"], status["wsrep_cluster_size"]) == ("Synced", "3")
    assert lab.up_info["seconds"]["total"] < 60
    cluster = lab.cluster
    assert cluster.kind == "galera" and cluster.drill_target
    assert [m.port for m in cluster.members] == [3316, 3317, 3318]
    assert [m.host for m in cluster.members] == ["host1", "host2", "host3"]
    password_file = Path(lab.up_info["password_file"])
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert cluster.credentials.password is not None and cluster.credentials.password.file == str(password_file)
    with pytest.raises(pymysql.err.OperationalError) as err:
        pymysql.connect(host="127.0.0.1", port=3316, user="root", password="", connect_timeout=2).close()
    assert err.value.args[0] == 1045  # root needs the lab password over TCP
    _query(lab, "g1", "CREATE DATABASE drill")
    _query(lab, "g1", "CREATE TABLE drill.writes (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40))")
    _query(lab, "g1", "INSERT INTO drill.writes (note) VALUES ('before the outage')")


def test_survivor_of_two_crashes_is_non_primary_until_pc_bootstrap(lab: Lab) -> None:
    galera.kill_node(lab.dir, "g2")
    galera.kill_node(lab.dir, "g3")
    started = time.monotonic()
    assert wait_until(lambda: _cluster_status(lab, "g1") == "non-Primary", 20, interval=0.1)
    lab.facts["detect_seconds"] = time.monotonic() - started
    with pytest.raises(pymysql.err.OperationalError) as err:
        _query(lab, "g1", "SELECT COUNT(*) FROM drill.writes")
    assert err.value.args[0] == 1047

    _query(lab, "g1", "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
    assert wait_until(lambda: _cluster_status(lab, "g1") == "Primary", 5, interval=0.02)
    assert galera.wsrep_status(lab.dir, "g1")["wsrep_cluster_size"] == "1"
    _query(lab, "g1", "INSERT INTO drill.writes (note) VALUES ('written by the lone survivor')")


def test_after_a_full_crash_positions_come_from_wsrep_recover(lab: Lab) -> None:
    galera.kill_node(lab.dir, "g1")
    states = {node: galera.read_grastate(lab.dir, node) for node in NODES}
    assert all(s.seqno == -1 for s in states.values()), states  # crashed: grastate.dat knows nothing
    # pc.bootstrap=YES marked the survivor safe to bootstrap; the others are not.
    assert [states[n].safe_to_bootstrap for n in NODES] == [True, False, False]

    positions = {node: galera.wsrep_recover(lab.dir, node) for node in NODES}
    assert len({uuid for uuid, _ in positions.values()}) == 1
    assert positions["g1"][1] > positions["g2"][1] == positions["g3"][1]
    # The inventory's recover template, run as drengine would, prints the same position.
    output = LocalTransport().run(lab.template("recover", "g2"), timeout=60)
    assert output.ok, output.stderr
    assert galera.parse_recovered_position(output.stderr) == positions["g2"]
    lab.facts["positions"] = positions


def test_bootstrap_the_most_advanced_node_then_the_others_rejoin(lab: Lab) -> None:
    positions: dict[str, tuple[str, int]] = lab.facts["positions"]
    most_advanced = max(positions, key=lambda n: positions[n][1])
    assert most_advanced == "g1"
    uuid, seqno = positions["g1"]
    started = time.monotonic()
    galera.start_node(lab.dir, "g1", bootstrap=True, start_position=f"{uuid}:{seqno}")
    lab.facts["bootstrap_seconds"] = time.monotonic() - started
    # The history continues (same state UUID): the others can rejoin by IST, not full SST.
    assert galera.wsrep_status(lab.dir, "g1")["wsrep_cluster_state_uuid"] == uuid

    # g2 through the inventory's start template over SSH, as a runbook step would do it.
    host_name, host = lab.host("g2")
    transport = transport_for(host, host_name)
    try:
        started = time.monotonic()
        result = transport.run(lab.template("start", "g2"), timeout=90)
        lab.facts["rejoin_ssh_seconds"] = time.monotonic() - started
    finally:
        transport.close()
    assert result.ok, result.stdout + result.stderr
    assert "g2: started" in result.stdout and "Synced" in result.stdout

    started = time.monotonic()
    galera.start_node(lab.dir, "g3", recover=True)
    lab.facts["rejoin_seconds"] = time.monotonic() - started
    for node in NODES:
        galera.wait_synced(lab.dir, node, timeout=30, cluster_size=3)
        assert _query(lab, node, "SELECT COUNT(*) FROM drill.writes") == [(2,)]
    assert "IST received: " + uuid in (galera.node_dir(lab.dir, "g3") / "mariadbd.log").read_text()


def test_hung_node_times_out_probes_and_stop_template_stops_it(lab: Lab) -> None:
    galera.hang_node(lab.dir, "g3")
    try:
        started = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError):
            galera.wsrep_status(lab.dir, "g3", timeout=1.0)
        assert time.monotonic() - started < 3
    finally:
        galera.continue_node(lab.dir, "g3")
    local = LocalTransport("host3", command_timeout=60)
    assert local.run(lab.template("stop", "g3")).ok
    status = local.run(lab.template("status", "g3"))
    assert (status.exit_status, status.stdout.strip()) == (3, "g3: not running")
    proc = lab.dir.find("galera", "g3")
    assert proc is None or not is_ours(proc)
    assert galera.read_grastate(lab.dir, "g3").seqno >= 0  # a clean stop saves its position

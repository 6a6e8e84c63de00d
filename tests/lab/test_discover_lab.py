"""`drengine inventory discover` against the real MariaDB, Galera and Ceph labs and the served
MongoDB and Elasticsearch simulators: the members found, and `drengine status` on the discovered
section giving the lab inventory's verdict; `inventory check --connect` on a discovered section
(wrong password, an account lacking privileges)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from drengine.inventory import load_inventory
from drengine.lab.procs import LabDir
from drengine.status import probe_fleet
from tests.helpers import cli, require_ceph

pytestmark = pytest.mark.lab


@pytest.fixture
def root() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are mode 700 and the servers run as mysql.
    path = Path(tempfile.mkdtemp(prefix="drengine-discover-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _same_status(own_inventory: Path, cluster: str, section: str, tmp_path: Path) -> None:
    own = probe_fleet(load_inventory(own_inventory), [cluster]).clusters[0]
    (tmp_path / "inv.yaml").write_text(section)
    found = probe_fleet(load_inventory(tmp_path / "inv.yaml")).clusters[0]
    assert (found.verdict, sorted(m.role for m in found.members)) == (own.verdict, sorted(m.role for m in own.members))


def test_mariadb_from_a_replica(root: Path, tmp_path: Path) -> None:
    from drengine.datastores.mariadb import lab as lab_mariadb

    lab = LabDir(root)
    try:
        lab_mariadb.up(lab, inventory_out=str(root / "inventory.yaml"))
        lab_mariadb.wait_replicated(lab)
        section = tmp_path / "found.yaml"
        code, out = cli("inventory", "discover", "mariadb", "127.0.0.1:23062", "--name", "found",
                        "--password-file", str(root / "mariadb" / "root.password"), "--out", str(section))
        assert code == 0, out
        text = section.read_text()
        assert "FILL IN" in text and "password: {file: " in text
        found = yaml.safe_load(text)["clusters"]["found"]
        assert [(m["name"], m["port"]) for m in found["members"]] == [("db1", 23061), ("db2", 23062), ("db3", 23063)]
        _same_status(root / "inventory.yaml", "lab-mariadb", text, tmp_path)
        code, out = cli("inventory", "discover", "mariadb", "127.0.0.1:23062", "--out", str(section))
        assert code == 2 and "does not overwrite" in out
        # The discovered section with a wrong password: `inventory check --connect` names each member.
        (tmp_path / "wrong.pw").write_text("not-the-password\n")
        (tmp_path / "wrong.yaml").write_text(text.replace(str(root / "mariadb" / "root.password"),
                                                          str(tmp_path / "wrong.pw")))
        code, out = cli("inventory", "check", "-i", str(tmp_path / "wrong.yaml"), "--connect")
        assert code == 1, out
        failures = out.split("check(s) failed:")[1]
        assert "cluster found, member db1 (member):" in failures and "Access denied" in failures, failures
        assert "not-the-password" not in out
        # The right password: every member answers, and root holds what the runbooks send.
        code, out = cli("inventory", "check", "-i", str(section), "--connect")
        assert code == 0, out
        assert out.count(" grants  ok ") == 3 and "root@127.0.0.1 holds what the mariadb runbooks send" in out, out
        # A monitoring account: it answers, but could not fence or promote; each lack is named with its GRANT.
        (tmp_path / "mon.pw").write_text("mon-secret-pw\n")
        lab_mariadb.sql(lab, "db1", "CREATE USER 'drengine_mon'@'127.0.0.1' IDENTIFIED BY 'mon-secret-pw'",
                        "GRANT SLAVE MONITOR, PROCESS ON *.* TO 'drengine_mon'@'127.0.0.1'",
                        "GRANT SELECT ON drengine.* TO 'drengine_mon'@'127.0.0.1'")
        lab_mariadb.wait_replicated(lab)
        (tmp_path / "mon.yaml").write_text(text.replace("user: root", "user: drengine_mon").replace(
            str(root / "mariadb" / "root.password"), str(tmp_path / "mon.pw")))
        code, out = cli("inventory", "check", "-i", str(tmp_path / "mon.yaml"), "--connect")
        assert code == 1, out
        failures = out.split("check(s) failed:")[1]
        for member in ("db1", "db2", "db3"):
            assert f"cluster found, member {member} (grants): drengine_mon@127.0.0.1 lacks REPLICATION SLAVE ADMIN " \
                   f"or SUPER for STOP SLAVE" in failures, failures
        assert "READ_ONLY ADMIN for SET GLOBAL read_only" in failures
        assert "To grant: GRANT REPLICATION SLAVE ADMIN, READ_ONLY ADMIN, CONNECTION ADMIN ON *.* TO " \
               "'drengine_mon'@'127.0.0.1'; GRANT CREATE, INSERT, DELETE ON drengine.* TO" in failures, failures
        assert "(member):" not in failures and "mon-secret-pw" not in out
    finally:
        lab_mariadb.down(lab)


def test_galera_from_one_node(root: Path, tmp_path: Path) -> None:
    from drengine.datastores.galera import lab as galera
    from drengine.lab import ssh as ssh_lab

    lab = LabDir(root)
    inventory = root / "inventory.yaml"
    try:
        info = ssh_lab.up(lab, n_hosts=3, first_address="127.0.0.12", inventory_out=inventory)
        galera.up(lab, inventory_out=inventory, hosts=sorted(info["hosts"]))
        port = load_inventory(inventory).clusters[galera.CLUSTER].members[1].port
        code, text = cli("inventory", "discover", "galera", f"127.0.0.1:{port}", "--name", "found",
                         "--password-file", str(galera.password_file(lab)))
        assert code == 0, text
        found = yaml.safe_load(text)["clusters"]["found"]
        assert len(found["members"]) == 3
        _same_status(inventory, galera.CLUSTER, text, tmp_path)
        # Every node answers, and the lab's account holds what the Galera runbooks send (SUPER for pc.bootstrap).
        code, out = cli("inventory", "check", "-i", str(tmp_path / "inv.yaml"), "--connect")
        assert code == 0 and out.count("holds what the galera runbooks send") == 3, out
    finally:
        galera.down(lab)
        ssh_lab.down(lab)


def test_mongodb_from_one_member(root: Path, tmp_path: Path) -> None:
    from drengine.datastores.mongodb import lab as lab_mongodb

    lab = LabDir(root)
    try:
        fragment = lab_mongodb.up(lab, inventory_out=str(root / "inventory.yaml"), scenario="healthy-3")
        port = fragment["members"][1]["port"]
        code, text = cli("inventory", "discover", "mongodb", f"127.0.0.1:{port}", "--name", "found")
        assert code == 0, text
        found = yaml.safe_load(text)["clusters"]["found"]
        assert [(m["name"], m["port"]) for m in found["members"]] == [(m["name"], m["port"]) for m in fragment["members"]]
        _same_status(root / "inventory.yaml", "lab-mongodb", text, tmp_path)
    finally:
        lab_mongodb.down(lab)


def test_elasticsearch_from_one_node(root: Path, tmp_path: Path) -> None:
    from drengine.datastores.elasticsearch import lab as lab_es

    lab = LabDir(root)
    try:
        fragment = lab_es.up(lab, inventory_out=str(root / "inventory.yaml"), scenario="one-node-lost-3")
        port = fragment["members"][0]["port"]
        code, text = cli("inventory", "discover", "elasticsearch", f"127.0.0.1:{port}", "--name", "found",
                         "--user", "elastic")
        assert code == 0, text
        found = yaml.safe_load(text)["clusters"]["found"]
        # The nodes that answer the cluster (one of three is lost), each with the HTTP address it publishes.
        names = [m["name"] for m in found["members"]]
        assert names and set(names) <= {m["name"] for m in fragment["members"]}
        assert all(m["port"] == 9200 and m["address"] for m in found["members"])
        # The served simulator answers for every node on one local port, while each node publishes
        # its model's address: pointed where the nodes are served (as an operator would behind NAT),
        # the discovered section gives the lab inventory's verdict; only the lost node, which no
        # discovery can name, is missing from what it says.
        served = text
        for m in found["members"]:
            served = served.replace(f"address: {m['address']}, port: 9200", f"address: 127.0.0.1, port: {port}")
        own = probe_fleet(load_inventory(root / "inventory.yaml"), ["lab-elasticsearch"]).clusters[0]
        (tmp_path / "inv.yaml").write_text(served)
        seen = probe_fleet(load_inventory(tmp_path / "inv.yaml")).clusters[0]
        assert seen.verdict == own.verdict and seen.verdict.needs_action
        assert own.headline == f"{seen.headline}; node-3 not in the cluster", (own.headline, seen.headline)
    finally:
        lab_es.down(lab)


def test_ceph_from_one_monitor(tmp_path: Path) -> None:
    from drengine.datastores.ceph import lab as ceph_lab
    from tests.lab.test_ceph_lab import _port_base

    require_ceph()
    lab = LabDir(tmp_path / "lab")
    inventory = tmp_path / "lab" / "inventory.yaml"
    base = _port_base()
    try:
        ceph_lab.up(lab, port_base=base, inventory_out=inventory)
        conf = str(ceph_lab.conf_path(lab))
        # The second monitor, not the first of `mon host`: what it knows is the whole monmap.
        code, text = cli("inventory", "discover", "ceph", f"127.0.0.1:{base + 1}", "--name", "found",
                         "--ceph-conf", conf)
        assert code == 0, text
        found = yaml.safe_load(text)["clusters"]["found"]
        assert found["ceph"] == {"conf_file": conf, "client_name": "client.admin"}
        members = {m["name"]: m for m in found["members"]}
        assert sorted(members) == ["mgr.x", "mon.a", "mon.b", "mon.c", "osd.0", "osd.1", "osd.2"]
        assert [(members[f"mon.{m}"]["address"], members[f"mon.{m}"]["port"]) for m in "abc"] == \
            [("127.0.0.1", base + i) for i in range(3)]
        assert all(members[f"osd.{i}"]["role"] == "osd" and members[f"osd.{i}"]["address"] == "127.0.0.1"
                   and "port" not in members[f"osd.{i}"] for i in range(3))
        assert "CRUSH host " in text and "FILL IN" in text
        _same_status(inventory, ceph_lab.CLUSTER_NAME, text, tmp_path)
        # Without --ceph-conf (no ceph.conf on this machine): the monitor's address is enough; the
        # section says where the operator's ceph.conf usually is, to be filled in.
        code, text = cli("inventory", "discover", "ceph", f"127.0.0.1:{base}")
        assert code == 0, text
        assert "conf_file: /etc/ceph/ceph.conf" in text and "FILL IN: the ceph.conf" in text
        # Nothing listens: a clear error within the timeout, exit 1.
        code, text = cli("inventory", "discover", "ceph", "127.0.0.1:1")
        assert code == 1 and "did not let client.admin in" in text, text
    finally:
        ceph_lab.down(lab)

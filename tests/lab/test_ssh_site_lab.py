"""A site as operators run it, on real sshd and sudo: a non-root user with `become` (sudo -n, and
sudo asking for a password from the environment), and a host reached only through a bastion."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drengine.clock import wait_until
from drengine.errors import CommandFailed, ConnectError
from drengine.faults import signal_member, start_member
from drengine.inventory import Inventory, load_inventory
from drengine.lab import ssh as ssh_lab
from drengine.lab import ssh_site
from drengine.lab.procs import LabDir
from drengine.transport import SSHTransport, render_service, transport_for

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabDir, dict[str, Any]]]:
    lab_dir = LabDir(tmp_path_factory.mktemp("ssh-site"))
    try:
        info = ssh_site.up(lab_dir, inventory_out=lab_dir.root / "inventory.yaml")
        yield lab_dir, info
    finally:
        ssh_site.down(lab_dir)
        ssh_lab.down(lab_dir)
        assert not lab_dir.processes()
        assert not ssh_site.SUDOERS.exists()
        assert subprocess.run(["id", ssh_site.OPS_USER], check=False, capture_output=True).returncode != 0


@pytest.fixture
def inventory(site: tuple[LabDir, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.setenv(ssh_site.SUDO_PASSWORD_ENV, site[1]["sudo_password"])
    return load_inventory(site[0].root / "inventory.yaml")


def test_sudo_with_a_password_from_the_environment(inventory: Inventory) -> None:
    transport = transport_for(inventory.hosts["ops1"], "ops1")
    try:
        whoami = transport.run(["sh", "-c", "echo $SUDO_USER $(id -un)"]).check()
        assert whoami.stdout.split() == [ssh_site.OPS_PASSWORD_USER, "root"]
        assert whoami.command.startswith("sudo -S -p ")
        assert os.environ[ssh_site.SUDO_PASSWORD_ENV] not in whoami.stdout + whoami.stderr + whoami.command
        # Twice on one connection: sudo's ticket may mean it does not ask; nothing must be left waiting.
        assert transport.run(["id", "-u"]).check().stdout.strip() == "0"
    finally:
        transport.close()


def test_wrong_or_missing_sudo_password_is_explained(inventory: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    host = inventory.hosts["ops1"]
    monkeypatch.setenv(ssh_site.SUDO_PASSWORD_ENV, "not-the-password")
    transport = SSHTransport("ops1", host)
    try:
        with pytest.raises(CommandFailed, match="refused the become_password .*wrong password"):
            transport.run(["id", "-u"])
    finally:
        transport.close()
    no_password = host.model_copy(update={"become_password": None})
    transport = SSHTransport("ops1", no_password)
    try:
        with pytest.raises(CommandFailed, match="sudo asks for a password.*become_password"):
            transport.run(["id", "-u"])
    finally:
        transport.close()


def test_inner_is_reached_only_through_the_bastion(inventory: Inventory) -> None:
    inner = inventory.hosts["inner"]
    direct = inner.model_copy(update={"ssh": inner.ssh.model_copy(update={"proxy_jump": None})})
    direct._jump = None
    with pytest.raises(ConnectError, match="unreachable"):
        SSHTransport("inner", direct).run(["true"])
    plain = inner.model_copy(update={"become": False})
    plain._jump = inner.jump_host()
    transport = transport_for(plain, "inner")
    try:
        # sudo resets the environment: SSH_CONNECTION is read as the operator.
        client, _, server, _ = transport.run(["sh", "-c", "echo $SSH_CONNECTION"]).check().stdout.split()
        # inner saw the connection come from the bastion, and admitted the operator from there.
        assert (client, server) == (ssh_site.BASTION_ADDRESS, ssh_site.INNER_ADDRESS)
    finally:
        transport.close()
    transport = transport_for(inner, "inner")
    try:
        result = transport.run(["id", "-un"]).check()
        assert result.stdout.strip() == "root" and result.command == "sudo -n id -un"
    finally:
        transport.close()


def test_a_changed_inner_key_is_refused_through_the_bastion(inventory: Inventory, tmp_path: Path) -> None:
    inner = inventory.hosts["inner"]
    known = Path(inner.ssh.known_hosts).read_text().splitlines()
    other_key = Path(inner.ssh.key_file or "").with_suffix(".pub").read_text().split()
    forged = [line if not line.startswith(f"[{ssh_site.INNER_ADDRESS}]") else
              f"[{ssh_site.INNER_ADDRESS}]:{ssh_site.PORT} {other_key[0]} {other_key[1]}" for line in known]
    (tmp_path / "known_hosts").write_text("\n".join(forged) + "\n")
    forged_inv = inventory.model_copy(deep=True)
    host = forged_inv.hosts["inner"]
    spoofed = host.model_copy(update={"ssh": host.ssh.model_copy(update={"known_hosts": str(tmp_path / "known_hosts")})})
    jump = inventory.hosts["inner"].jump_host()
    assert jump is not None
    spoofed._jump = jump
    with pytest.raises(ConnectError, match="CHANGED"):
        SSHTransport("inner", spoofed).run(["true"])


def test_service_control_through_the_bastion_as_the_operator(site: tuple[LabDir, dict[str, Any]],
                                                              inventory: Inventory, tmp_path: Path) -> None:
    """Hosts from the team's Ansible INI inventory: the operator, sudo, and the bastion as Ansible
    would use them; drengine starts and kills a server on the inner host with its own code."""
    lab_dir = site[0]
    # A directory only root may enter: reading the pid file and starting the server need sudo.
    data = lab_dir.path("ssh", "service-data")
    data.chmod(0o700)
    (tmp_path / "hosts.ini").write_text(
        f"[bastions]\nbastion ansible_host={ssh_site.BASTION_ADDRESS}\n\n"
        f"[db]\ninner ansible_host={ssh_site.INNER_ADDRESS} ansible_become=true\n\n"
        f"[db:vars]\nansible_ssh_common_args='-o ProxyJump=bastion'\n\n"
        f"[site:children]\nbastions\ndb\n\n"
        f"[site:vars]\nansible_user={ssh_site.OPS_USER}\nansible_port={ssh_site.PORT}\n")
    lab_ssh = inventory.hosts["inner"].ssh
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({
        "hosts": {"ansible": {"path": "hosts.ini", "defaults": {"ssh": {
            "key_file": lab_ssh.key_file, "known_hosts": lab_ssh.known_hosts, "ssh_config": None}}}},
        "clusters": {"site-db": {
            "kind": "mariadb",
            "service": {"start": "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {data_dir}/server.pid"},
            "members": [{"name": "db1", "host": "inner", "data_dir": str(data),
                         "pid_file": str(data / "server.pid")}]}}}))
    inv = load_inventory(tmp_path / "inventory.yaml")
    assert inv.hosts["inner"].ssh.proxy_jump == "bastion" and inv.hosts["inner"].become
    cluster = inv.clusters["site-db"]
    member = cluster.members[0]
    shown = render_service(cluster, member, "start").text
    assert shown.startswith("sudo -n sh -c 'setsid sleep 300")  # what a plan shows is what is sent
    assert start_member(inv, cluster, member, timeout=20) == shown
    pid = int((data / "server.pid").read_text())
    assert "Uid:\t0\t" in Path(f"/proc/{pid}/status").read_text()  # started as root, by sudo
    done = signal_member(inv, cluster, member, "KILL")
    assert done.startswith(f"sudo -n kill -KILL {pid} ")
    assert wait_until(lambda: not Path(f"/proc/{pid}").exists()
                      or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", 5.0)


def test_inventory_check_connect_names_each_failure(site: tuple[LabDir, dict[str, Any]], inventory: Inventory,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import cli

    hosts = yaml.safe_load((site[0].root / "inventory.yaml").read_text())["hosts"]
    ops1 = hosts["ops1"]
    hosts["nopw"] = {**ops1, "become_password": None}  # sudo would prompt
    hosts["wrongpw"] = {**ops1, "become_password": {"env": "DRENGINE_TEST_WRONG_PW"}}
    hosts["unsetpw"] = {**ops1, "become_password": {"env": "DRENGINE_TEST_UNSET_PW"}}
    hosts["gone"] = {**hosts["bastion"], "address": "127.0.0.250"}
    (tmp_path / "empty_known_hosts").write_text("")
    hosts["stranger"] = {**hosts["bastion"], "ssh": {**hosts["bastion"]["ssh"],
                                                     "known_hosts": str(tmp_path / "empty_known_hosts")}}
    doc = {"hosts": hosts, "clusters": {"sim": {
        "kind": "mariadb", "simulated": {"scenario": "primary-dead-replica-lagging"},
        "timeouts": {"connect": 1, "read": 2},
        "members": [{"name": f"db{i}", "address": f"127.0.1.1{i}", "port": 3306} for i in (1, 2, 3)]}}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("DRENGINE_TEST_WRONG_PW", "not-the-password")
    monkeypatch.delenv("DRENGINE_TEST_UNSET_PW", raising=False)
    code, out = cli("inventory", "check", "-i", str(path), "--connect")
    assert code == 1, out
    failures = out.split("check(s) failed:")[1]
    assert "hosts.unsetpw.become_password (secret): environment variable DRENGINE_TEST_UNSET_PW is not set" in failures
    assert "host nopw (sudo): on host nopw, sudo asks for a password" in failures
    assert "host wrongpw (sudo): on host wrongpw, sudo refused the become_password" in failures
    assert "host gone (ssh): host gone (drengine-ops@127.0.0.250:2222) is unreachable over SSH" in failures
    assert "host stranger (ssh): host stranger" in failures and "is not in the known_hosts file" in failures
    assert "cluster sim, member db1 (member): dead" in failures
    for fine in ("host ops1 (", "host inner (", "host bastion (", "member db2"):
        assert fine not in failures, fine
    assert site[1]["sudo_password"] not in out and "not-the-password" not in out
    assert "drengine-ops@127.0.0.7:2222 via bastion" in out  # the row says how inner was reached


def _accepted_from_bastion(lab_dir: LabDir, host: str) -> int:
    """How many logins of the operator the inner host's sshd accepted, all from the bastion's address."""
    lines = [line for line in (lab_dir.path("ssh", host) / "sshd.log").read_text().splitlines()
             if f"Accepted publickey for {ssh_site.OPS_USER} from " in line]
    assert all(f" from {ssh_site.BASTION_ADDRESS} port " in line for line in lines), lines
    return len(lines)


def test_mariadb_recovery_through_the_bastion_with_sudo(site: tuple[LabDir, dict[str, Any]],
                                                        inventory: Inventory, tmp_path: Path) -> None:
    """The whole cluster's hosts (the three servers' and HAProxy's) are read from an Ansible INI
    file and reached only through the bastion, as the operator with sudo: the promotion fences the
    hung primary there (SIGKILL by its pid file), promotes a replica and switches HAProxy through
    its runtime API over its host; the journal shows the sudo commands, and the inner hosts' sshd
    saw every one of those logins come from the bastion."""
    import shutil
    import tempfile

    from drengine.datastores.mariadb import lab as lab_mariadb
    from tests.helpers import cli, of_type

    root = tempfile.mkdtemp(prefix="drengine-site-mariadb-")
    os.chmod(root, 0o755)
    db_lab = LabDir(root)
    inv_path = Path(root) / "inventory.yaml"
    hosts = {"dbhost1": "inner", "dbhost2": "inner2", "dbhost3": "inner3"}  # Ansible's names -> lab hosts
    try:
        lab_mariadb.up(db_lab, inventory_out=str(inv_path))
        data = yaml.safe_load(inv_path.read_text())
        data["hosts"] = {}  # no host of the lab's own: every one comes from the team's Ansible file
        (Path(root) / "hosts.ini").write_text(
            f"bastion ansible_host={ssh_site.BASTION_ADDRESS}\n\n[db]\n"
            + "".join(f"{name} ansible_host={ssh_site.INNER_HOSTS[lab_host]}\n" for name, lab_host in hosts.items())
            + f"\n[db:vars]\nansible_become=yes\nansible_ssh_common_args='-J bastion'\n\n"
              f"[all:vars]\nansible_user={ssh_site.OPS_USER}\nansible_port={ssh_site.PORT}\n")
        lab_ssh = inventory.hosts["inner"].ssh
        data["hosts"]["ansible"] = {"path": "hosts.ini", "defaults": {"ssh": {
            "key_file": lab_ssh.key_file, "known_hosts": lab_ssh.known_hosts, "ssh_config": None}}}
        cluster = data["clusters"]["lab-mariadb"]
        cluster["fencing"] = ["signal"]
        for member, name in zip(cluster["members"], hosts, strict=True):
            member["host"] = name
        cluster["proxies"][0]["host"] = "dbhost2"  # HAProxy's runtime API socket, read with socat over SSH
        inv_path.write_text(yaml.safe_dump(data, sort_keys=False))
        loaded = load_inventory(inv_path)
        assert sorted(loaded.hosts) == ["bastion", *hosts]
        assert all(loaded.hosts[h].ssh.proxy_jump == "bastion" and loaded.hosts[h].become for h in hosts)
        before = {h: _accepted_from_bastion(site[0], h) for h in ("inner", "inner2")}
        lab_mariadb.wait_replicated(db_lab)
        lab_mariadb.hang(db_lab, "db1")  # alive but silent: it must be fenced before a promotion
        code, out = cli("run", "mariadb-promote-survivor", "-i", str(inv_path), "-c", "lab-mariadb",
                        "--run-dir", str(tmp_path / "run"), "--yes", "--accept-data-loss")
        assert code == 0, out
        sent = [(e.data["target"], str(e.data["text"])) for e in of_type(tmp_path / "run", "statement_sent")]
        kills = [text for target, text in sent if target == "db1" and text.startswith("sudo -n kill -KILL ")]
        assert kills, sent
        fence = next(e for e in of_type(tmp_path / "run", "step_finished") if e.data["step"] == "fence-old-primary")
        assert any(line.startswith("db1: signal: FENCED") for line in fence.data["evidence"]), fence.data["evidence"]
        assert not lab_mariadb.is_running(db_lab, "db1")
        # HAProxy now sends writes to the promoted server: the runtime API was driven over dbhost2.
        proxy_commands = [text for target, text in sent if target.startswith("proxy ")]
        assert any("db2" in text and "ready" in text for text in proxy_commands), sent
        # Every SSH login the run made landed from the bastion: db1's host for the fence, HAProxy's for the switch.
        assert _accepted_from_bastion(site[0], "inner") > before["inner"]
        assert _accepted_from_bastion(site[0], "inner2") > before["inner2"]
    finally:
        if lab_mariadb.is_running(db_lab, "db1"):
            lab_mariadb.resume(db_lab, "db1")
        lab_mariadb.down(db_lab)
        shutil.rmtree(root, ignore_errors=True)

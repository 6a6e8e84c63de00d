"""Ansible inventories (INI and YAML) as the source of an inventory's hosts, read without Ansible."""

from __future__ import annotations

from pathlib import Path

import pytest

from drengine.errors import InputError
from drengine.inventory import load_inventory

pytestmark = pytest.mark.unit

INI = """\
# the team's inventory
bastion1 ansible_host=192.0.2.10 ansible_user=ops

[db]
db[1:3].prod ansible_become=yes
db9.prod ansible_host=10.0.0.9 ansible_user=carol

[db:vars]
ansible_user=alice
ansible_ssh_common_args='-o ProxyJump=bastion1'
app_port=8080

[prod:children]
db

[prod:vars]
ansible_user=bob
ansible_port=2200
ansible_python_interpreter=/usr/bin/python3
"""

YAML = """\
all:
  vars: {ansible_user: ops}
  hosts:
    bastion1: {ansible_host: 192.0.2.10}
  children:
    prod:
      vars: {ansible_port: 2200, ansible_user: bob}
      children:
        db:
          vars: {ansible_user: alice, ansible_become: true, ansible_ssh_common_args: "-J 192.0.2.10"}
          hosts:
            db1.prod:
            db9.prod: {ansible_host: 10.0.0.9, ansible_user: carol}
"""

USES = """\
hosts:
  ansible: {path: FILE, defaults: {ssh: {known_hosts: /etc/drengine/known_hosts}}}
  db2.prod: {address: 10.0.0.2}
clusters:
  c:
    kind: mariadb
    members: [{name: db1, host: db1.prod}, {name: db9, host: db9.prod}]
"""


def _load(tmp_path: Path, name: str, text: str) -> object:
    (tmp_path / name).write_text(text)
    inv = tmp_path / "inv.yaml"
    inv.write_text(USES.replace("FILE", name))
    return load_inventory(inv)


@pytest.mark.parametrize(("name", "text"), [("hosts.ini", INI), ("hosts.yml", YAML)])
def test_hosts_groups_children_and_vars(tmp_path: Path, name: str, text: str) -> None:
    from drengine.inventory import Inventory

    inv = _load(tmp_path, name, text)
    assert isinstance(inv, Inventory)
    db1 = inv.hosts["db1.prod"]
    # The child group's user beats its parent's; the parent's port applies; the jump is a host.
    assert (db1.address, db1.ssh.user, db1.ssh.port, db1.become, db1.ssh.proxy_jump) == \
        ("db1.prod", "alice", 2200, True, "bastion1")
    assert db1.ssh.known_hosts == "/etc/drengine/known_hosts"  # drengine's own defaults
    db9 = inv.hosts["db9.prod"]
    assert (db9.address, db9.ssh.user) == ("10.0.0.9", "carol")  # the host's own variables win
    assert inv.hosts["bastion1"].ssh.user == "ops" and inv.hosts["bastion1"].ssh.proxy_jump is None
    assert inv.hosts["db2.prod"].address == "10.0.0.2"  # written in the drengine inventory: it wins


def test_ini_ranges(tmp_path: Path) -> None:
    from drengine.inventory import Inventory

    inv = _load(tmp_path, "hosts.ini", INI)
    assert isinstance(inv, Inventory)
    assert {"db1.prod", "db2.prod", "db3.prod", "db9.prod", "bastion1"} <= set(inv.hosts)


@pytest.mark.parametrize(("text", "expected"), [
    ("[db]\ndb1 ansible_password=hunter2\n", r"hosts.ini:2: ansible_password holds a password"),
    ("[db]\ndb1 ansible_become_method=su\n", r"hosts.ini:2: ansible_become_method=su"),
    ("[db]\ndb1 ansible_ssh_common_args='-o StrictHostKeyChecking=no'\n", r"hosts.ini:2: .*follows only ProxyJump"),
    ("[db]\ndb1 ansible_ssh_common_args='-J elsewhere'\n", r"hosts.ini:2: .*'elsewhere', which is not a host"),
    ("[db:vars]\nansible_winrm_transport=ntlm\n[db]\ndb1\n", r"hosts.ini:2: ansible_winrm_transport is not supported"),
    ("[db\ndb1\n", r"hosts.ini:1: a section header"),
    ("[db]\ndb1 novalue\n", r"hosts.ini:2: expected `name=value`"),
    ("[db]\ndb1 ansible_become=maybe\n", r"hosts.ini:2: ansible_become='maybe' is not a boolean"),
])
def test_ini_errors_name_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "hosts.ini").write_text(text)
    inv = tmp_path / "inv.yaml"
    inv.write_text("hosts: {ansible: hosts.ini}\nclusters: {}\n")
    with pytest.raises(InputError, match=expected):
        load_inventory(inv)


def test_yaml_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text("all:\n  children:\n    db:\n      hots:\n        db1:\n")
    inv = tmp_path / "inv.yaml"
    inv.write_text("hosts: {ansible: hosts.yml}\nclusters: {}\n")
    with pytest.raises(InputError, match=r"hosts.yml:[45]: unknown key 'hots' in group db"):
        load_inventory(inv)


def test_a_member_naming_an_unknown_host_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text("[db]\ndb1.prod\n")
    inv = tmp_path / "inv.yaml"
    inv.write_text("hosts: {ansible: hosts.ini}\nclusters:\n  c:\n    kind: mariadb\n"
                   "    members: [{name: db1, host: db1.prd}]\n")
    with pytest.raises(InputError) as err:
        load_inventory(inv)
    assert "runs on host 'db1.prd', which is not under `hosts:`. Did you mean 'db1.prod'?" in str(err.value.problems)


def test_a_missing_ansible_file_is_named(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("hosts: {ansible: nowhere.ini}\nclusters: {}\n")
    with pytest.raises(InputError, match="nowhere.ini: the Ansible inventory does not exist"):
        load_inventory(inv)

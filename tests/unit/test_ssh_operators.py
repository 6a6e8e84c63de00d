"""SSH as operators run it, without a network: sudo (`become`) in the commands shown and sent,
the operator's ssh_config applied under the inventory, and bastions (`proxy_jump`) validated."""

from __future__ import annotations

import getpass
import shlex
from pathlib import Path

import pytest

from drengine.errors import InputError
from drengine.inventory import Cluster, Host, Inventory, Member, SSHSettings
from drengine.transport import (
    SUDO_PROMPT,
    LocalTransport,
    ShellCommand,
    as_sent,
    elevate,
    render_service,
    ssh_route,
    transport_for,
)

pytestmark = pytest.mark.unit


def _inventory(hosts: dict[str, object], service: dict[str, str] | None = None) -> Inventory:
    return Inventory.model_validate({
        "hosts": hosts,
        "clusters": {"db": {"kind": "mariadb", "service": service or {"stop": "systemctl stop mariadb@{name}"},
                            "members": [{"name": "db1", "host": "h1"}]}},
    })


def test_become_shows_and_sends_sudo_n() -> None:
    inv = _inventory({"h1": {"address": "10.0.0.5", "become": True}})
    cluster = inv.clusters["db"]
    stop = render_service(cluster, cluster.members[0], "stop")
    # The plan shows exactly what the host runs; the transport does not wrap it twice.
    assert stop.text == "sudo -n systemctl stop mariadb@db1"
    assert as_sent(inv.hosts["h1"], stop) == stop.text
    assert as_sent(inv.hosts["h1"], ["kill", "-KILL", "123"]) == "sudo -n kill -KILL 123"


def test_without_become_nothing_changes() -> None:
    inv = _inventory({"h1": {"address": "10.0.0.5"}})
    cluster = inv.clusters["db"]
    assert render_service(cluster, cluster.members[0], "stop").text == "systemctl stop mariadb@db1"
    assert as_sent(inv.hosts["h1"], ["kill", "1"]) == "kill 1"


def test_shell_syntax_runs_whole_under_sudo() -> None:
    host = Host(address="10.0.0.5", become=True)
    # Every part of a compound command needs root, not only its first word.
    line = elevate(host, "systemctl stop mariadb && rm -f /run/x.pid")
    assert line == "sudo -n sh -c 'systemctl stop mariadb && rm -f /run/x.pid'"
    assert elevate(host, "FOO=1 mariadbd") == "sudo -n sh -c 'FOO=1 mariadbd'"
    assert elevate(host, "cat -- '/a b;c'") == "sudo -n cat -- '/a b;c'"


def test_become_password_uses_our_prompt_never_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_PW_TEST", "s3cret-value")
    host = Host.model_validate({"address": "10.0.0.5", "become": True, "become_password": {"env": "SUDO_PW_TEST"}})
    line = elevate(host, "systemctl start mariadb")
    assert line == f"sudo -S -p {shlex.quote(SUDO_PROMPT)} systemctl start mariadb"
    assert "s3cret" not in line


def test_become_password_without_become_is_refused() -> None:
    with pytest.raises(ValueError, match="become: true"):
        Host.model_validate({"address": "10.0.0.5", "become_password": {"env": "X"}})


def test_local_become_runs_through_sudo(tmp_path: Path) -> None:
    host = Host(address="127.0.0.1", transport="local", become=True)
    transport = transport_for(host, "here")
    assert isinstance(transport, LocalTransport)
    # As root, sudo -n needs no password: what ran is the sudo line itself.
    result = transport.run(["id", "-u"])
    assert result.command == "sudo -n id -u"
    assert result.ok and result.stdout.strip() == "0"
    (tmp_path / "f").write_text("7\n")
    assert transport.read_file(str(tmp_path / "f")) == "7\n"
    assert transport.run(ShellCommand("echo $((1+1))")).command == "sudo -n sh -c 'echo $((1+1))'"


def test_local_become_password_is_refused_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_PW_TEST", "x")
    host = Host.model_validate({"address": "127.0.0.1", "transport": "local", "become": True,
                                "become_password": {"env": "SUDO_PW_TEST"}})
    with pytest.raises(InputError, match="supported over SSH only"):
        transport_for(host, "here").run(["true"])


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ssh_config"
    path.write_text(text)
    return str(path)


def test_ssh_config_fills_what_the_inventory_leaves_out(tmp_path: Path) -> None:
    key = tmp_path / "id_ops"
    key.write_text("not read here")
    cfg = _config(tmp_path, f"Host db1.prod\n  HostName 10.1.0.5\n  User alice\n  Port 2200\n"
                            f"  IdentityFile {key}\n  IdentityFile {tmp_path}/missing\n")
    route = ssh_route("db1", Host(address="db1.prod", ssh=SSHSettings(ssh_config=cfg)))
    assert (route.address, route.port, route.user) == ("10.1.0.5", 2200, "alice")
    assert route.key_files == (str(key),) and not route.only_key_files  # the agent is tried too
    assert route.jumps == ()


def test_the_inventory_wins_over_ssh_config(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "Host *\n  User alice\n  Port 2200\n  IdentityFile ~/.ssh/other\n")
    route = ssh_route("db1", Host(address="10.0.0.5", ssh=SSHSettings(ssh_config=cfg, user="bob", port=22,
                                                                         key_file=str(tmp_path / "k"))))
    assert (route.user, route.port, route.key_files, route.only_key_files) == ("bob", 22, (str(tmp_path / "k"),), True)


def test_user_defaults_to_the_login_user(tmp_path: Path) -> None:
    route = ssh_route("db1", Host(address="10.0.0.5", ssh=SSHSettings(ssh_config=None)))
    assert route.user == getpass.getuser() and route.port == 22


def test_ssh_config_proxyjump_becomes_a_chain(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "Host 10.9.*\n  ProxyJump ops@bastion1.example:2022,bastion2.example\n")
    route = ssh_route("db1", Host(address="10.9.0.1", ssh=SSHSettings(ssh_config=cfg)))
    assert [(n, h.address, h.ssh.user, h.ssh.port) for n, h in route.jumps] == [
        ("bastion1.example", "bastion1.example", "ops", 2022), ("bastion2.example", "bastion2.example", None, 22)]


def test_inventory_proxy_jump_is_chained_and_checked() -> None:
    inv = Inventory.model_validate({"hosts": {
        "outer": {"address": "192.0.2.1", "ssh": {"ssh_config": None}},
        "inner": {"address": "10.0.0.1", "ssh": {"proxy_jump": "outer", "ssh_config": None}},
        "db": {"address": "10.0.1.1", "ssh": {"proxy_jump": "inner", "ssh_config": None}},
    }})
    route = ssh_route("db", inv.hosts["db"])
    assert [n for n, _ in route.jumps] == ["outer", "inner"]
    with pytest.raises(ValueError, match="names no host"):
        Inventory.model_validate({"hosts": {"db": {"address": "10.0.1.1", "ssh": {"proxy_jump": "bastoin"}}}})
    with pytest.raises(ValueError, match="circle"):
        Inventory.model_validate({"hosts": {"a": {"address": "10.0.0.1", "ssh": {"proxy_jump": "b"}},
                                            "b": {"address": "10.0.0.2", "ssh": {"proxy_jump": "a"}}}})


def test_a_cluster_outside_an_inventory_renders_plainly() -> None:
    cluster = Cluster(name="db", kind="mariadb", members=[Member(name="db1", host="h1")],
                      service={"stop": "systemctl stop x"})
    assert render_service(cluster, cluster.members[0], "stop").text == "systemctl stop x"


# --------------------------------------------------------------------------- inventory check, offline

CHECKED = """\
hosts:
  h1: {address: 10.0.0.5, become: true, become_password: {env: DRENGINE_TEST_SUDO_PW}}
clusters:
  db:
    kind: mariadb
    credentials: {user: root, password: {file: FILE}}
    members:
      - {name: db1, host: h1}
"""


def test_check_names_an_unset_variable_and_a_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import cli

    monkeypatch.delenv("DRENGINE_TEST_SUDO_PW", raising=False)
    inv = tmp_path / "inv.yaml"
    inv.write_text(CHECKED.replace("FILE", str(tmp_path / "nope")))
    code, out = cli("inventory", "check", "-i", str(inv))
    assert code == 1, out
    assert "hosts.h1.become_password (secret): environment variable DRENGINE_TEST_SUDO_PW is not set" in out
    assert f"clusters.db.credentials.password (secret): file {tmp_path / 'nope'} does not exist" in out

    monkeypatch.setenv("DRENGINE_TEST_SUDO_PW", "hunter2-secret")
    (tmp_path / "nope").write_text("pw\n")
    (tmp_path / "nope").chmod(0o600)
    code, out = cli("inventory", "check", "-i", str(inv))
    assert code == 0, out
    assert "hunter2" not in out and "OK: structure and secrets" in out


def test_check_suggests_the_field_meant(tmp_path: Path) -> None:
    from tests.helpers import cli

    inv = tmp_path / "inv.yaml"
    inv.write_text("hosts:\n  h1: {adress: 10.0.0.5, ssh: {proxy_jmp: b}}\nclusters: {}\n")
    code, out = cli("inventory", "check", "-i", str(inv))
    assert code == 2
    assert "inv.yaml:2: hosts.h1.adress: unknown field. Did you mean 'address'?" in out
    assert "hosts.h1.ssh.proxy_jmp: unknown field. Did you mean 'proxy_jump'?" in out


# --------------------------------------------------------------------------- inventory init


@pytest.mark.parametrize("kind", ["mariadb", "galera", "mongodb", "ceph", "elasticsearch"])
def test_init_writes_an_example_that_validates(tmp_path: Path, kind: str) -> None:
    from drengine.inventory import load_inventory
    from tests.helpers import cli

    path = tmp_path / "inv.yaml"
    code, out = cli("inventory", "init", str(path), "--example", kind)
    assert code == 0, out
    inv = load_inventory(path)
    assert [c.kind for c in inv.clusters.values()] == [kind]
    assert inv.hosts["db-host-1"].become and inv.hosts["db-host-1"].ssh.proxy_jump == "bastion"
    assert "# " in path.read_text()  # commented
    code, out = cli("inventory", "init", str(path))
    assert code == 2 and "does not overwrite" in out

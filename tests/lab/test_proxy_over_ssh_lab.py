"""An HAProxy runtime API reached over an inventory host (`proxies: - host: ...`): a real HAProxy
on loopback, a real sshd in front of it, and drengine talking to the admin socket through
`socat` over SSH, as it does for a proxy on another machine.

Ports 23180-23185 and addresses 127.0.0.61-63 belong to this lab alone; the last test also
starts the MariaDB lab (its own ports) and moves its proxy behind the SSH host.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from drengine.clock import wait_until
from drengine.datastores.mariadb import lab as lab_mariadb
from drengine.datastores.mariadb.connector import MariaDBBackend
from drengine.datastores.mysql_traffic import apply_changes, switch_changes
from drengine.errors import DrengineError
from drengine.inventory import Inventory, load_inventory
from drengine.lab import haproxy
from drengine.lab import ssh as ssh_lab
from drengine.lab.procs import LabDir, listening
from drengine.steps import Statement
from tests.helpers import cli, of_type

pytestmark = pytest.mark.lab

SSH_PORT = 23180
WRITE_PORT, READ_PORT = 23181, 23182
MEMBER_PORTS = {"db1": 23183, "db2": 23184, "db3": 23185}  # nothing listens: HAProxy's checks see them down
PROXY_HOST = "host1"  # 127.0.0.61: sshd as it ships, socat on its PATH
NO_SOCAT_HOST = "host2"  # 127.0.0.62: sshd whose sessions get a PATH without socat
DEAD_HOST = "gone"  # 127.0.0.63: nothing listens
CLUSTER = "edge-db"
PROXY = "edge"


@dataclass(frozen=True)
class ProxyLab:
    lab: LabDir
    proxy: haproxy.LabProxy
    hosts: dict[str, Any]  # the inventory's `hosts:`

    def inventory(self, path: Path, host: str, socket_path: str | None = None) -> Path:
        """An inventory whose proxy is reached over `host`, at the lab HAProxy's admin socket."""
        entry = self.proxy.inventory({"user": "app"})
        entry.update(name=PROXY, host=host, api={"socket": socket_path or str(self.proxy.socket), "timeout": 2.0})
        del entry["frontend"], entry["credentials"]
        cluster = {
            "kind": "mariadb",
            "credentials": {"user": "root"},
            "timeouts": {"connect": 1.0, "read": 1.5},
            "members": [{"name": n, "address": "127.0.0.1", "port": p} for n, p in MEMBER_PORTS.items()],
            "proxies": [entry],
        }
        path.write_text(yaml.safe_dump({"hosts": self.hosts, "clusters": {CLUSTER: cluster}}, sort_keys=False))
        return path


def _without_socat(lab: LabDir, name: str) -> None:
    """Restart a lab sshd so that its sessions get a PATH where socat is not: a proxy host
    without socat installed (`echo` is a shell builtin and keeps working)."""
    proc = lab.find(ssh_lab.KIND, name)
    assert proc is not None
    lab.stop(proc)
    config = Path(proc.argv[-1])
    config.write_text(config.read_text() + "SetEnv PATH=/nonexistent\n")
    lab.spawn(ssh_lab.KIND, name, proc.argv, log=config.parent / "sshd.log")
    assert wait_until(lambda: listening("127.0.0.62", SSH_PORT), 10), f"sshd {name} did not come back"


@pytest.fixture(scope="module")
def proxy_lab() -> Iterator[ProxyLab]:
    root = Path(tempfile.mkdtemp(prefix="drengine-proxy-ssh-lab-"))
    lab = LabDir(root)
    try:
        info = ssh_lab.up(lab, n_hosts=2, first_address="127.0.0.61", port=SSH_PORT)
        _without_socat(lab, NO_SOCAT_HOST)
        proxy = haproxy.LabProxy(kind="edge", directory=lab.path("haproxy"), members=tuple(MEMBER_PORTS.items()),
                                 primary="db1", write_port=WRITE_PORT, read_port=READ_PORT)
        haproxy.start(lab, proxy)
        hosts = dict(info["hosts"])
        dead = copy.deepcopy(hosts[PROXY_HOST])
        dead["address"] = "127.0.0.63"
        hosts[DEAD_HOST] = dead
        yield ProxyLab(lab, proxy, hosts)
    finally:
        lab.stop_kind("edge")
        ssh_lab.down(lab)
        leftovers = lab.processes()
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers


def runtime(proxy: haproxy.LabProxy, command: str) -> str:
    """One runtime API command on the admin socket directly, not through drengine."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(2.0)
        conn.connect(str(proxy.socket))
        conn.sendall(command.encode() + b"\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer.decode()


def admin_states(proxy: haproxy.LabProxy, backend: str) -> dict[str, str]:
    """Each server's admin state in a backend, read on the socket: srv_admin_state 0x01 is forced
    maintenance, 0x08 forced drain; 0x04 only remembers `disabled` in the configuration."""
    lines = runtime(proxy, f"show servers state {backend}").splitlines()
    columns = next(line for line in lines if line.startswith("#")).lstrip("# ").split()
    rows = [dict(zip(columns, line.split(), strict=False)) for line in lines if line and line[0].isdigit() and " " in line]
    bits = {row["srv_name"]: int(row["srv_admin_state"]) for row in rows}
    return {name: "maint" if b & 0x01 else "drain" if b & 0x08 else "ready" for name, b in bits.items()}


def accepted_logins(lab: LabDir, host: str) -> int:
    return (lab.path("ssh", host) / "sshd.log").read_text(errors="replace").count("Accepted publickey for root")


def backend_for(inventory_path: Path) -> tuple[Inventory, MariaDBBackend]:
    inventory = load_inventory(inventory_path)
    return inventory, MariaDBBackend(inventory.cluster(CLUSTER), inventory)


def test_status_reads_the_proxy_over_ssh(proxy_lab: ProxyLab, tmp_path: Path) -> None:
    inventory = proxy_lab.inventory(tmp_path / "inventory.yaml", PROXY_HOST)
    logins = accepted_logins(proxy_lab.lab, PROXY_HOST)
    code, out = cli("status", "-i", str(inventory), "-c", CLUSTER, "--json")
    assert code == 1, out  # the members are not running: the cluster is down, the proxy answers
    proxies = json.loads(out)["clusters"][0]["proxies"]
    assert proxies == [{"name": PROXY, "state": "writes to one server", "points_to": "db1", "error": ""}]
    assert accepted_logins(proxy_lab.lab, PROXY_HOST) > logins  # it went through sshd, not the local socket

    _, backend = backend_for(inventory)
    try:
        [view] = backend.proxy_views()
    finally:
        backend.close()
    assert not view.error, view.error
    states = {(s.backend, s.member): s.admin for s in view.servers}
    assert states == {("edge_write", "db1"): "ready", ("edge_write", "db2"): "maint", ("edge_write", "db3"): "maint",
                      ("edge_read", "db1"): "ready", ("edge_read", "db2"): "ready", ("edge_read", "db3"): "ready"}
    assert {s.health for s in view.servers} == {"down"}  # HAProxy's own checks: nothing listens on the member ports


def test_switch_traffic_over_ssh_is_seen_on_the_socket(proxy_lab: ProxyLab, tmp_path: Path) -> None:
    inventory, backend = backend_for(proxy_lab.inventory(tmp_path / "inventory.yaml", PROXY_HOST))
    cluster = inventory.cluster(CLUSTER)
    sent: list[tuple[Statement, str]] = []
    try:
        # What switch-traffic does after a promotion: db2 takes the writes, the fenced db1 is out everywhere.
        changes = switch_changes(cluster, backend.proxy_views(), "db2", frozenset({"db1"}))
        assert [c.command for c in changes] == ["set server edge_write/db2 state ready",
                                                "set server edge_write/db1 state maint",
                                                "set server edge_read/db1 state maint"]
        apply_changes(backend, changes, lambda statement, result: sent.append((statement, result)))
        assert admin_states(proxy_lab.proxy, "edge_write") == {"db1": "maint", "db2": "ready", "db3": "maint"}
        assert admin_states(proxy_lab.proxy, "edge_read") == {"db1": "maint", "db2": "ready", "db3": "ready"}
        assert [s.text for s, _ in sent][0] == (f"echo 'set server edge_write/db2 state ready' | socat -t 2 stdio "
                                                f"UNIX-CONNECT:{proxy_lab.proxy.socket}")
        assert {s.target for s, _ in sent} == {f"proxy {PROXY}"}
        [view] = backend.proxy_views()
        assert view.ready_writers() == ["db2"]

        # And back, as a rejoin and a second switch would leave it.
        back = switch_changes(cluster, backend.proxy_views(), "db1", frozenset())
        apply_changes(backend, back, lambda statement, result: None)
        backend.proxy_command(PROXY, "set server edge_read/db1 state ready")
    finally:
        backend.close()
    assert admin_states(proxy_lab.proxy, "edge_write") == {"db1": "ready", "db2": "maint", "db3": "maint"}
    assert admin_states(proxy_lab.proxy, "edge_read") == {"db1": "ready", "db2": "ready", "db3": "ready"}


@pytest.mark.parametrize("case", ["host unreachable", "socat missing", "socat fails"])
def test_failures_name_the_proxy_and_the_host(proxy_lab: ProxyLab, tmp_path: Path, case: str) -> None:
    host, socket_path, why = {
        "host unreachable": (DEAD_HOST, None, "is unreachable over SSH: connection refused"),
        "socat missing": (NO_SOCAT_HOST, None, f"socat is not installed on host {NO_SOCAT_HOST}"),
        "socat fails": (PROXY_HOST, "/nonexistent/admin.sock", "No such file or directory"),
    }[case]
    inventory_path = proxy_lab.inventory(tmp_path / "inventory.yaml", host, socket_path)
    before = admin_states(proxy_lab.proxy, "edge_write")

    code, out = cli("status", "-i", str(inventory_path), "-c", CLUSTER, "--json")
    assert code == 1, out
    [status] = json.loads(out)["clusters"][0]["proxies"]
    assert status["state"] == "unreachable"
    assert f"proxy {PROXY}" in status["error"] and f"host {host}" in status["error"], status["error"]
    assert why in status["error"], status["error"]

    code, out = cli("status", "-i", str(inventory_path), "-c", CLUSTER)
    assert code == 1 and "Traceback" not in out and "unreachable" in out, out

    _, backend = backend_for(inventory_path)
    try:
        with pytest.raises(DrengineError) as err:
            backend.proxy_command(PROXY, "set server edge_write/db2 state ready")
    finally:
        backend.close()
    message = str(err.value)
    assert f"proxy {PROXY}" in message and f"host {host}" in message and why in message, message
    assert admin_states(proxy_lab.proxy, "edge_write") == before


def test_a_hung_haproxy_is_no_answer_not_success(proxy_lab: ProxyLab, tmp_path: Path) -> None:
    """socat exits 0 with no output when HAProxy never answers; that must not pass for the empty
    line with which HAProxy acknowledges `set server`."""
    proc = proxy_lab.lab.find("edge", haproxy.NAME)
    assert proc is not None
    _, backend = backend_for(proxy_lab.inventory(tmp_path / "inventory.yaml", PROXY_HOST))
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        [view] = backend.proxy_views()
        with pytest.raises(DrengineError) as err:
            backend.proxy_command(PROXY, "set server edge_write/db3 state drain")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        backend.close()
    assert view.error.startswith(f"proxy {PROXY}: the runtime API at {proxy_lab.proxy.socket} on host {PROXY_HOST} "
                                 f"gave no answer within 2 s"), view.error
    assert "gave no answer within 2 s to `set server edge_write/db3 state drain`" in str(err.value), err.value
    # HAProxy reads the command once it wakes, as the message warns.
    assert wait_until(lambda: admin_states(proxy_lab.proxy, "edge_write")["db3"] == "drain", 5)
    runtime(proxy_lab.proxy, "set server edge_write/db3 state maint")
    assert admin_states(proxy_lab.proxy, "edge_write") == {"db1": "ready", "db2": "maint", "db3": "maint"}


def test_promotion_switches_traffic_over_ssh(proxy_lab: ProxyLab, tmp_path: Path) -> None:
    """The whole path on real servers: the MariaDB lab's primary is killed, mariadb-promote-survivor
    runs with the lab HAProxy reached over SSH; switch-traffic moves the writes and its canary
    through the frontend lands on the new primary."""
    root = tempfile.mkdtemp(prefix="drengine-proxy-ssh-mariadb-")
    os.chmod(root, 0o755)  # the servers run as mysql
    lab = LabDir(root)
    inventory = Path(root) / "inventory.yaml"
    try:
        lab_mariadb.up(lab, inventory_out=str(inventory))
        data = yaml.safe_load(inventory.read_text())
        data["hosts"][PROXY_HOST] = proxy_lab.hosts[PROXY_HOST]
        data["clusters"][lab_mariadb.CLUSTER]["proxies"][0]["host"] = PROXY_HOST
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        mariadb_proxy = lab_mariadb.lab_proxy(lab)
        logins = accepted_logins(proxy_lab.lab, PROXY_HOST)

        lab_mariadb.kill(lab, "db1")
        code, out = cli("run", "mariadb-promote-survivor", "-i", str(inventory), "-c", lab_mariadb.CLUSTER,
                        "--run-dir", str(tmp_path / "run"), "--yes")
        assert code == 0, out
        assert accepted_logins(proxy_lab.lab, PROXY_HOST) > logins
        new = "db2" if "chose db2" in out else "db3"
        other = "db3" if new == "db2" else "db2"
        assert admin_states(mariadb_proxy, "mariadb_write") == {"db1": "maint", new: "ready", other: "maint"}
        assert admin_states(mariadb_proxy, "mariadb_read")["db1"] == "maint"
        traffic = next(e for e in of_type(tmp_path / "run", "step_finished") if e.data["step"] == "switch-traffic")
        assert any(f"landed on {new}" in line for line in traffic.data["evidence"]), traffic.data
        sent = [(e.data["target"], e.data["text"]) for e in of_type(tmp_path / "run", "statement_sent")]
        assert ("proxy mariadb-haproxy", f"echo 'set server mariadb_write/{new} state ready' | socat -t 2 stdio "
                                         f"UNIX-CONNECT:{mariadb_proxy.socket}") in sent, sent
    finally:
        lab_mariadb.down(lab)
        leftovers = lab.processes()
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers

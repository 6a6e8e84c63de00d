"""SSH transport against real sshd daemons on 127.0.0.2-4:2222 started by the SSH lab."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from drengine.errors import ConnectError, ProbeTimeout
from drengine.inventory import Host, SSHSettings
from drengine.lab import ssh as ssh_lab
from drengine.lab.procs import LabDir
from drengine.transport import CommandResult, SSHTransport, render_template, run_on_hosts, transport_for

pytestmark = pytest.mark.lab

NOTHING_LISTENS = "127.0.0.250"  # a loopback address no lab binds


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabDir, dict[str, Any]]]:
    lab_dir = LabDir(tmp_path_factory.mktemp("ssh-lab"))
    try:
        info = ssh_lab.up(lab_dir, n_hosts=3, inventory_out=lab_dir.root / "inventory.yaml")
        yield lab_dir, info
    finally:
        ssh_lab.down(lab_dir)
        assert not [p for p in lab_dir.processes() if p.kind == "ssh"]


@pytest.fixture(scope="module")
def hosts(lab: tuple[LabDir, dict[str, Any]]) -> dict[str, Host]:
    return {name: Host.model_validate(raw) for name, raw in lab[1]["hosts"].items()}


def _with(host: Host, **changes: Any) -> Host:
    return host.model_copy(update={"ssh": host.ssh.model_copy(update=changes)})


@contextmanager
def _hung(lab_dir: LabDir, name: str) -> Iterator[None]:
    proc = lab_dir.find("ssh", name)
    assert proc is not None and ssh_lab.is_running(proc)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def test_up_writes_inventory_and_known_hosts(lab: tuple[LabDir, dict[str, Any]]) -> None:
    lab_dir, info = lab
    from drengine.inventory import load_inventory

    inventory = load_inventory(lab_dir.root / "inventory.yaml")
    assert sorted(inventory.hosts) == ["host1", "host2", "host3"]
    assert inventory.hosts["host2"].address == "127.0.0.3"
    assert "[127.0.0.4]:2222 ssh-ed25519 " in Path(info["known_hosts"]).read_text()
    assert info["seconds"] < 5


def test_run_on_all_hosts_in_parallel(hosts: dict[str, Host]) -> None:
    # SSH_CONNECTION names the server address: each host really is its own sshd.
    results = run_on_hosts(hosts, render_template("echo $SSH_CONNECTION; echo {x} >&2", x="to stderr"))
    for name, host in hosts.items():
        result = results[name]
        assert isinstance(result, CommandResult), result
        assert result.ok and result.host == name
        assert result.stdout.split()[2] == host.address
        assert result.stderr == "to stderr\n"


def test_connect_exec_close_is_quick(hosts: dict[str, Host]) -> None:
    started = time.monotonic()
    transport = transport_for(hosts["host1"], "host1")
    try:
        assert transport.run(["true"]).ok
    finally:
        transport.close()
    assert time.monotonic() - started < 2.0


def test_exit_status_and_read_file(hosts: dict[str, Host], lab: tuple[LabDir, dict[str, Any]]) -> None:
    transport = transport_for(hosts["host2"], "host2")
    try:
        assert transport.run(["sh", "-c", "exit 7"]).exit_status == 7
        assert transport.read_file(lab[1]["known_hosts"]) == Path(lab[1]["known_hosts"]).read_text()
    finally:
        transport.close()


def test_hostile_names_stay_data(hosts: dict[str, Host], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    names = [
        f"g1; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        'it\'s "quoted" \\ back\\slash',
        "line\nbreak",
        "--help",
        "*",
    ]
    transport = transport_for(hosts["host1"], "host1")
    try:
        for name in names:
            assert transport.run(render_template("printf %s {name}", name=name)).stdout == name
            assert transport.run(["printf", "%s", name]).stdout == name
    finally:
        transport.close()
    assert not marker.exists()


def test_unknown_host_is_refused_with_instructions(hosts: dict[str, Host], tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    transport = transport_for(_with(hosts["host1"], known_hosts=str(empty)), "host1")
    with pytest.raises(ConnectError) as err:
        transport.run(["true"])
    message = str(err.value)
    assert "not in the known_hosts file" in message
    assert "ssh-keyscan -p 2222 127.0.0.2" in message
    assert "SHA256:" in message and "accept_unknown_host_keys" in message and "lab" in message


def test_accept_unknown_host_keys_is_for_labs_and_writes_nothing(hosts: dict[str, Host], tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    transport = transport_for(_with(hosts["host1"], known_hosts=str(empty), accept_unknown_host_keys=True), "host1")
    try:
        assert transport.run(["true"]).ok
    finally:
        transport.close()
    assert empty.read_text() == ""


def test_changed_host_key_is_refused_loudly(hosts: dict[str, Host], lab: tuple[LabDir, dict[str, Any]], tmp_path: Path) -> None:
    # known_hosts claims host1's address has host2's key: what a man in the middle looks like.
    lines = Path(lab[1]["known_hosts"]).read_text().splitlines()
    host2_key = next(line for line in lines if line.startswith("[127.0.0.3]")).split(" ", 1)[1]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"[127.0.0.2]:2222 {host2_key}\n")
    transport = transport_for(_with(hosts["host1"], known_hosts=str(forged)), "host1")
    with pytest.raises(ConnectError) as err:
        transport.run(["true"])
    message = str(err.value)
    assert "CHANGED" in message and "man-in-the-middle" in message and "reinstalled" in message
    assert message.count("SHA256:") == 2


def test_dead_host_fails_fast(hosts: dict[str, Host]) -> None:
    dead = Host(address=NOTHING_LISTENS, ssh=hosts["host1"].ssh.model_copy(update={"connect_timeout": 2.0}))
    started = time.monotonic()
    with pytest.raises(ConnectError, match="unreachable over SSH: connection refused"):
        transport_for(dead, "ghost").run(["true"])
    assert time.monotonic() - started < 2.0


def test_hung_host_fails_within_connect_timeout(hosts: dict[str, Host], lab: tuple[LabDir, dict[str, Any]]) -> None:
    transport = transport_for(_with(hosts["host3"], connect_timeout=1.0), "host3")
    started = time.monotonic()
    with _hung(lab[0], "host3"), pytest.raises(ConnectError, match="did not complete the handshake within 1 s"):
        transport.run(["true"])
    assert time.monotonic() - started < 2.5


def test_command_timeout_abandons_the_command(hosts: dict[str, Host]) -> None:
    transport = transport_for(_with(hosts["host2"], command_timeout=1.0), "host2")
    try:
        started = time.monotonic()
        with pytest.raises(ProbeTimeout, match="did not finish within 1 s; drengine abandoned it"):
            transport.run(["sleep", "30"])
        assert time.monotonic() - started < 2.5
        # The next command gets a fresh connection.
        assert transport.run(["echo", "again"]).stdout == "again\n"
    finally:
        transport.close()


def test_authentication_failure_is_explained(hosts: dict[str, Host], tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    transport = transport_for(_with(hosts["host1"], key_file=str(stranger)), "host1")
    with pytest.raises(ConnectError, match="authentication as root failed with key file .*authorized_keys"):
        transport.run(["true"])


def test_fan_out_is_bounded(hosts: dict[str, Host]) -> None:
    base = list(hosts.values())
    single = run_on_hosts({"one": base[0]}, ["true"])
    assert isinstance(single["one"], CommandResult)

    twenty = {f"n{i:02}": base[i % len(base)] for i in range(20)}
    started = time.monotonic()
    results = run_on_hosts(twenty, ["true"], max_parallel=8)
    elapsed = time.monotonic() - started
    assert all(isinstance(r, CommandResult) and r.ok for r in results.values()), results
    assert elapsed < 6.0  # three rounds of about 0.3 s on two cores, far below 20 sequential connects


def test_one_hung_host_does_not_stall_the_fan_out(hosts: dict[str, Host], lab: tuple[LabDir, dict[str, Any]]) -> None:
    quick = {name: _with(host, connect_timeout=1.0, command_timeout=2.0) for name, host in hosts.items()}
    started = time.monotonic()
    with _hung(lab[0], "host3"):
        results = run_on_hosts(quick, ["true"])
    assert time.monotonic() - started < 3.0
    assert isinstance(results["host3"], ConnectError)
    assert all(isinstance(results[n], CommandResult) for n in ("host1", "host2"))


def test_ssh_transport_type(hosts: dict[str, Host]) -> None:
    assert isinstance(transport_for(hosts["host1"]), SSHTransport)
    assert SSHSettings().accept_unknown_host_keys is False

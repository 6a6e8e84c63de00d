"""Issue 24's real test of the two-person rule: three real mariadbd (the primary and one replica
killed, so promoting the survivor is a dangerous gate), the etcd lab as the run registry, and
`approvals: {dangerous: 2}` on the cluster. The run waits at the promote gate; an approval from
the same OS user is refused; an approval from a second OS user (a throw-away local user, created
and removed here as the SSH site lab does) lets it go on; the journal and the report name both,
and the journal's head kept on etcd matches it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from drengine.clock import wait_until
from drengine.datastores.mariadb import lab as lab_mariadb
from drengine.lab import etcd as etcd_lab
from drengine.lab.procs import LabDir, port_free
from tests.helpers import ROOT, mariadb_lab, of_type

pytestmark = pytest.mark.lab

CLIENT_BASE, PEER_BASE = 23930, 23940  # away from the etcd lock tests (23890...) and `lab up etcd` (23791...)
APPROVER = "drengine-approver2"
CLUSTER = "lab-mariadb"


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    lab = LabDir(tmp_path_factory.mktemp("etcd-2p"))
    try:
        yield list(etcd_lab.up(lab, client_base=CLIENT_BASE, peer_base=PEER_BASE)["endpoints"])
    finally:
        etcd_lab.down(lab)


@pytest.fixture
def approver() -> Iterator[str]:
    """A second OS user on this machine, for this test only."""
    if os.getuid() != 0:
        pytest.skip("creating a second OS user needs root")
    subprocess.run(["userdel", "--force", "--remove", APPROVER], check=False, capture_output=True)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", APPROVER], check=True,
                   capture_output=True)
    try:
        yield APPROVER
    finally:
        subprocess.run(["userdel", "--force", "--remove", APPROVER], check=False, capture_output=True)
        assert subprocess.run(["id", "-u", APPROVER], check=False, capture_output=True).returncode != 0


def env() -> dict[str, str]:
    """This process's environment without anything that would name a person for drengine."""
    return {k: v for k, v in os.environ.items()
            if k not in ("SUDO_USER", "DRENGINE_OPERATOR") and not k.startswith("DRENGINE_TEST_")} | {"PYTHONPATH": str(ROOT)}


def approve(run_id: str, inventory: str, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["-m", "drengine.cli", "approve", run_id, "-i", inventory, "--reason", "checked db2's position"]
    if as_user is None:
        return subprocess.run([sys.executable, *command], input=f"{CLUSTER}\n", capture_output=True, text=True,
                              check=False, env=env(), cwd=ROOT, timeout=60)
    # The venv's interpreter may live where only root can reach it (/root/.pyenv): the other user runs
    # the system's Python of the same version, with the venv's packages on its path.
    system = Path("/usr/bin/python3")
    if not system.exists():
        pytest.skip("no /usr/bin/python3 for the second user")
    paths = {**env(), "PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}"}
    return subprocess.run(["runuser", "-u", as_user, "--", str(system), *command], input=f"{CLUSTER}\n",
                          capture_output=True, text=True, check=False, env=paths, cwd=ROOT, timeout=60)


def free_base(count: int, start: int) -> int:
    for base in range(start, start + 2000, 10):
        if all(port_free(p) for p in range(base, base + count)):
            return base
    pytest.fail(f"no {count} consecutive free ports from {start}")


def test_a_second_os_user_approves_the_promote_gate_through_etcd(etcd: list[str], approver: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Ports of their own: a MariaDB lab someone else runs on this machine is never disturbed.
    monkeypatch.setattr(lab_mariadb, "PORT_BASE", free_base(3, 27061))
    monkeypatch.setattr(lab_mariadb, "WRITE_PORT", free_base(2, 27161))
    monkeypatch.setattr(lab_mariadb, "READ_PORT", lab_mariadb.WRITE_PORT + 1)
    with mariadb_lab("drengine-2p-") as (lab, inventory):
        lab_mariadb.sql(lab, "db1", "CREATE DATABASE IF NOT EXISTS app", "CREATE TABLE IF NOT EXISTS app.t (id INT PRIMARY KEY)",
                        *[f"INSERT INTO app.t VALUES ({i})" for i in range(1, 11)])
        lab_mariadb.wait_replicated(lab)
        lab_mariadb.kill(lab, "db1")
        lab_mariadb.kill(lab, "db3")  # db2 is promoted not knowing what db3 had: a dangerous gate
        data = yaml.safe_load(Path(inventory).read_text())
        data["clusters"][CLUSTER]["approvals"] = {"dangerous": 2}
        data["lock"] = {"backend": "etcd", "endpoints": etcd, "prefix": f"/drengine-2p/{uuid.uuid4().hex[:8]}",
                        "lease_ttl": 5, "timeout": 1.0}
        Path(inventory).write_text(yaml.safe_dump(data))
        os.chmod(inventory, 0o644)  # the second person reads the inventory (the secrets it names stay unread)
        run_dir = tmp_path / "run"
        proc = subprocess.Popen(
            [sys.executable, "-m", "drengine.cli", "run", "mariadb-promote-survivor", "-i", inventory, "-c", CLUSTER,
             "--yes", "--accept-data-loss", "--reason", "db1 and db3 are down", "--run-dir", str(run_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, env=env())
        try:
            assert wait_until(lambda: (run_dir / "journal.jsonl").exists() and bool(of_type(run_dir, "approval_requested"))
                              or proc.poll() is not None, 90, interval=0.1)
            assert proc.poll() is None, proc.communicate()[0]
            [asked] = of_type(run_dir, "approval_requested")
            assert asked.data["step"] == "promote" and asked.data["level"] == "dangerous"
            assert "etcd keys /drengine-2p/" in asked.data["registry"]
            run_id = str(of_type(run_dir, "run_started")[0].data["run_id"])
            assert not [e for e in of_type(run_dir, "step_started") if e.data["step"] == "promote"]

            same = approve(run_id, inventory)
            assert same.returncode == 2, same.stdout + same.stderr
            assert "already count as root@" in same.stdout + same.stderr
            assert "RISK: db3 could not be reached" in same.stdout  # the same evidence and risks, shown first
            assert proc.poll() is None and not of_type(run_dir, "step_started")[-1].data["step"] == "promote"

            other = approve(run_id, inventory, as_user=approver)
            assert other.returncode == 0, other.stdout + other.stderr
            assert f"approved by {approver}@" in other.stdout
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        host = socket.gethostname()
        given = of_type(run_dir, "approval_given")
        assert [(g.data["who"], g.data["number"]) for g in given] == [(f"root@{host}", 1), (f"{approver}@{host}", 2)], out
        assert given[1].data["reason"] == "checked db2's position" and given[0].data["reason"] == "db1 and db3 are down"
        [promoted] = [e for e in of_type(run_dir, "step_finished") if e.data["step"] == "promote"]
        assert promoted.data["ok"], out
        assert lab_mariadb.sql(lab, "db2", "SELECT @@read_only")[0][0] == 0
        report = (run_dir / "report.md").read_text()
        [risk] = [line for line in report.splitlines() if line.startswith("- promote:")]
        assert f"root@{host} and {approver}@{host}" in risk and "two-person rule: 2 people approved" in risk
        verified = subprocess.run([sys.executable, "-m", "drengine.cli", "journal", "verify", str(run_dir)],
                                  capture_output=True, text=True, check=False, env=env(), cwd=ROOT, timeout=60)
        assert verified.returncode == 0 and "matches the head kept in the run registry (etcd keys" in verified.stdout, \
            verified.stdout + verified.stderr

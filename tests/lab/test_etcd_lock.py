"""The team lock on a real three-member etcd cluster (Debian's etcd-server) on loopback.

Runs are separate processes with separate lock directories ("two machines"): with etcd exactly
one proceeds (tests/sim/test_lock_runs.py shows both proceed with the local lock). A SIGKILLed
holder's lease expires and the next run takes over; a stopped holder whose lease expired stops
at its next step boundary; one dead member changes nothing; two dead members make the run
refuse with the break-glass hint, and `--lock local --reason` then proceeds, journaled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drengine.clock import wait_until
from drengine.errors import LockUnavailable
from drengine.inventory import EtcdLockSettings, load_inventory
from drengine.lab import etcd as etcd_lab
from drengine.lab.procs import LabDir
from drengine.lock import me, open_lock
from drengine.lock.registry import RunStatus, list_runs
from tests.helpers import of_type
from tests.lockhelpers import CLUSTER, ROOT, machine_env, resume, run, simulated_inventory, start_held

pytestmark = pytest.mark.lab

CLIENT_BASE, PEER_BASE = 23890, 23900  # away from `drengine lab up etcd` (23791...) and etcd's defaults
TTL = 3


@dataclass
class Etcd:
    lab: LabDir
    endpoints: list[str]

    def lock(self) -> dict[str, Any]:
        """A `lock:` section with a prefix of its own, so that tests never see each other's runs."""
        return {"backend": "etcd", "endpoints": self.endpoints, "prefix": f"/drengine-test/{uuid.uuid4().hex[:8]}",
                "lease_ttl": TTL, "timeout": 1.0}

    def all_healthy(self) -> bool:
        return all(etcd_lab.healthy(url) for url in self.endpoints)

    def kill(self, name: str) -> None:
        etcd_lab.kill(self.lab, name)

    def restart_all(self) -> None:
        for i in range(3):
            etcd_lab.start(self.lab, etcd_lab.member_name(i))
        assert wait_until(self.all_healthy, 30, interval=0.2), "the etcd members did not get a leader again"


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    lab = LabDir(tmp_path_factory.mktemp("etcd-lab"))
    try:
        info = etcd_lab.up(lab, client_base=CLIENT_BASE, peer_base=PEER_BASE)
        yield Etcd(lab, info["endpoints"])
    finally:
        etcd_lab.down(lab)
        assert not [p for p in lab.processes() if p.kind == "etcd"]


@pytest.fixture
def inventory(etcd: Etcd, tmp_path: Path) -> Path:
    if not etcd.all_healthy():
        etcd.restart_all()
    return simulated_inventory(tmp_path, lock=json.dumps(etcd.lock()))


def test_two_machines_exactly_one_proceeds(inventory: Path, tmp_path: Path) -> None:
    first = start_held(inventory, tmp_path / "r1", tmp_path / "machine-a", "step_finished:choose-survivor")
    code, out = run(inventory, tmp_path / "r2", tmp_path / "machine-b")
    assert code == 4, out
    assert "is locked on etcd by run" in out and f"run directory {tmp_path / 'r1'}" in out and "--break-lock" in out
    assert not of_type(tmp_path / "r2", "step_started")
    code, out = first.let_go()
    assert code == 0, out
    [taken] = of_type(tmp_path / "r1", "lock_taken")
    assert taken.data["backend"] == "etcd"
    code, out = run(inventory, tmp_path / "r3", tmp_path / "machine-b")  # released: the other machine's turn
    assert code == 0, out


def test_of_many_processes_at_once_exactly_one_wins(etcd: Etcd, tmp_path: Path) -> None:
    settings = EtcdLockSettings.model_validate(etcd.lock())
    start, release = tmp_path / "go", tmp_path / "release"
    workers = [
        subprocess.Popen([sys.executable, str(ROOT / "tests" / "lockworker.py"), settings.model_dump_json(), "c1", f"racer-{i}",
                          "take", str(start), str(release), str(tmp_path / f"machine-{i}")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=machine_env(tmp_path / f"machine-{i}"))
        for i in range(8)
    ]
    time.sleep(1.5)
    start.touch()
    first = [w.stdout.readline().strip() if w.stdout else "" for w in workers]
    release.touch()
    rest = [w.communicate(timeout=60)[0].strip() for w in workers]
    assert first.count("won") == 1, list(zip(first, rest, strict=True))
    assert rest[first.index("won")] == "kept"
    assert all(line.startswith("held: cluster c1 is locked on etcd by run racer-") for line in first if line != "won"), first


def test_a_sigkilled_holder_loses_its_lease_and_the_next_run_takes_over(inventory: Path, tmp_path: Path) -> None:
    first = start_held(inventory, tmp_path / "r1", tmp_path / "machine-a", "step_finished:choose-survivor")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    killed = time.monotonic()
    code, out = run(inventory, tmp_path / "r2", tmp_path / "machine-b")
    assert code == 4 and "its lease is kept alive" in out, out
    attempt = 3
    while code == 4 and time.monotonic() - killed < TTL + 10:
        time.sleep(0.5)
        code, out = run(inventory, tmp_path / f"r{attempt}", tmp_path / "machine-b")
        attempt += 1
    took_over = time.monotonic() - killed
    assert code == 0, out
    assert took_over < TTL + 6, f"took over {took_over:.1f} s after the kill with a {TTL} s lease"
    winner = tmp_path / f"r{attempt - 1}"
    notes = [e.data["text"] for e in of_type(winner, "note")]
    assert any("was interrupted at step choose-survivor" in n and str(tmp_path / "r1") in n for n in notes), notes
    [cluster] = list_runs(load_inventory(inventory), CLUSTER)
    interrupted = [v for v in cluster.runs if v.run.run_dir == str(tmp_path / "r1")]
    assert [v.status for v in interrupted] == [RunStatus.INTERRUPTED]


def test_a_holder_whose_lease_expired_stops_at_its_next_step_boundary(inventory: Path, tmp_path: Path) -> None:
    first = start_held(inventory, tmp_path / "r1", tmp_path / "machine-a", "step_finished:choose-survivor")
    first.proc.send_signal(signal.SIGSTOP)  # a hung holder: its keep-alive thread stops too
    try:
        time.sleep(TTL + 1.5)
        code, out = run(inventory, tmp_path / "r2", tmp_path / "machine-b")
        assert code == 0, out
        first.release.touch()
    finally:
        first.proc.send_signal(signal.SIGCONT)
    code, out = first.let_go()
    assert code == 4, out
    # The step after choose-survivor is the old primary's fencing: nothing after it starts.
    assert "LOCK LOST before step fence-old-primary" in out, out
    [lost] = of_type(tmp_path / "r1", "lock_lost")
    assert lost.data["step"] == "fence-old-primary" and lost.data["backend"] == "etcd"
    started = [e.data["step"] for e in of_type(tmp_path / "r1", "step_started")]
    assert "fence-old-primary" not in started and "promote" not in started
    assert of_type(tmp_path / "r1", "run_finished")[-1].data["end"] == "stopped"


def test_break_lock_takes_the_etcd_lock_and_the_holder_stops(inventory: Path, tmp_path: Path) -> None:
    first = start_held(inventory, tmp_path / "r1", tmp_path / "machine-a", "step_finished:choose-survivor")
    code, out = run(inventory, tmp_path / "r2", tmp_path / "machine-b", "--break-lock")
    assert code == 0, out
    [broken] = of_type(tmp_path / "r2", "lock_broken")
    assert broken.data["backend"] == "etcd" and str(tmp_path / "r1") in broken.data["previous"]
    code, out = first.let_go()
    assert code == 4 and "--break-lock gave it to run" in out, out
    code, out = resume(tmp_path / "r1", tmp_path / "machine-a")
    assert code == 0, out


def test_the_registry_on_etcd_shows_who_waits_at_a_gate_from_any_machine(inventory: Path, tmp_path: Path) -> None:
    first = start_held(inventory, tmp_path / "r1", tmp_path / "machine-a", "gate_asked:promote")
    inv = load_inventory(inventory)

    def published() -> bool:
        [cluster] = list_runs(inv, CLUSTER)
        return bool(cluster.runs) and cluster.runs[0].status is RunStatus.WAITING

    assert wait_until(published, 5)  # published by the keep-alive thread
    [cluster] = list_runs(inv, CLUSTER)
    assert cluster.backend == "etcd" and cluster.holder is not None and cluster.holder.run_dir == str(tmp_path / "r1")
    [view] = cluster.runs
    assert view.holds_lock and view.run.gate == "promote (confirm)" and view.run.host == os.uname().nodename
    assert first.let_go()[0] == 0
    [cluster] = list_runs(inv, CLUSTER)
    assert cluster.holder is None and [(v.status, v.run.success) for v in cluster.runs] == [(RunStatus.FINISHED, True)]


def test_one_dead_member_changes_nothing_two_make_the_run_refuse_with_the_break_glass_hint(
        etcd: Etcd, inventory: Path, tmp_path: Path) -> None:
    try:
        etcd.kill("e1")
        first = start_held(inventory, tmp_path / "r1", tmp_path / "machine-a", "step_finished:choose-survivor")
        code, out = run(inventory, tmp_path / "r2", tmp_path / "machine-b")
        assert code == 4 and "is locked on etcd by run" in out, out
        assert first.let_go()[0] == 0

        etcd.kill("e2")
        started = time.monotonic()
        code, out = run(inventory, tmp_path / "r3", tmp_path / "machine-b")
        took = time.monotonic() - started
        assert code == 4, out
        assert "etcd has lost its quorum" in out and "refuses connections" in out and "answers but has no leader" in out
        assert '--lock local --reason "..."' in out
        assert took < 15, f"refusing took {took:.1f} s"

        code, out = run(inventory, tmp_path / "r4", tmp_path / "machine-b", "--lock", "local", "--reason", "etcd lost quorum, INC-7")
        assert code == 0, out
        [asked] = [e for e in of_type(tmp_path / "r4", "gate_asked") if e.data["step"] == "cluster-lock"]
        assert asked.data["level"] == "dangerous" and asked.data["reason"] == "etcd lost quorum, INC-7"
        [override] = of_type(tmp_path / "r4", "override")
        assert override.data["reason"] == "etcd lost quorum, INC-7" and "split brain" in override.data["risk"]
        assert of_type(tmp_path / "r4", "lock_taken")[0].data["backend"] == "local"
    finally:
        etcd.restart_all()


def test_a_run_that_loses_etcd_midway_stops_and_resumes_with_break_glass(etcd: Etcd, inventory: Path, tmp_path: Path) -> None:
    first = start_held(inventory, tmp_path / "r1", tmp_path / "machine-a", "step_finished:choose-survivor")
    try:
        etcd.kill("e1")
        etcd.kill("e2")
        time.sleep(TTL + 1)
        code, out = first.let_go()
        assert code == 4, out
        assert "etcd has not confirmed the lease" in out and "--lock local" in out
        code, out = resume(tmp_path / "r1", tmp_path / "machine-a", "--lock", "local", "--reason", "etcd down")
        assert code == 0, out
        assert of_type(tmp_path / "r1", "override")[0].data["step"] == "cluster-lock"
    finally:
        etcd.restart_all()


def test_lab_up_etcd_merges_the_lock_section_and_down_stops_it(tmp_path: Path) -> None:
    inventory = simulated_inventory(tmp_path)
    lab_dir = tmp_path / "lab"
    env = machine_env(tmp_path / "locks")
    try:
        up = subprocess.run([sys.executable, "-m", "drengine.cli", "lab", "up", "etcd", "--dir", str(lab_dir),
                             "--inventory-out", str(inventory)], check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert up.returncode == 0, up.stdout + up.stderr
        inv = load_inventory(inventory)
        assert "sim-mariadb" in inv.clusters and inv.lock is not None and inv.lock.backend == "etcd"
        assert inv.lock_for(inv.cluster(CLUSTER)).endpoints == [etcd_lab.client_url(i) for i in range(3)]  # type: ignore[union-attr]
        code, out = run(inventory, tmp_path / "r1", tmp_path / "locks")
        assert code == 0, out
        assert of_type(tmp_path / "r1", "lock_taken")[0].data["backend"] == "etcd"
    finally:
        down = subprocess.run([sys.executable, "-m", "drengine.cli", "lab", "down", "etcd", "--dir", str(lab_dir)],
                              check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert down.returncode == 0 and down.stdout.count("stopped etcd/") == 3, down.stdout + down.stderr


# -- TLS and credentials ------------------------------------------------------------------------

def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def secure_etcd(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """One etcd member serving TLS, with authentication on (user root)."""
    certs = tmp_path / "certs"
    certs.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=drengine test CA",
             "-keyout", str(certs / "ca.key"), "-out", str(certs / "ca.pem"))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(certs / "server.key"),
             "-out", str(certs / "server.csr"))
    (certs / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(certs / "server.csr"), "-CA", str(certs / "ca.pem"), "-CAkey", str(certs / "ca.key"),
             "-CAcreateserial", "-days", "2", "-extfile", str(certs / "ext.cnf"), "-out", str(certs / "server.pem"))
    lab = LabDir(tmp_path / "lab")
    url = "https://127.0.0.1:23991"
    lab.spawn("etcd", "secure", [
        "/usr/bin/etcd", "--name", "secure", "--data-dir", str(lab.path("secure")),
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", "http://127.0.0.1:24001", "--initial-advertise-peer-urls", "http://127.0.0.1:24001",
        "--initial-cluster", "secure=http://127.0.0.1:24001", "--cert-file", str(certs / "server.pem"),
        "--key-file", str(certs / "server.key"), "--logger", "zap", "--log-outputs", "stderr",
    ], log=lab.root / "secure.log")
    try:
        ctl = ["etcdctl", "--endpoints", url, "--cacert", str(certs / "ca.pem")]
        ctl_env = {**os.environ, "ETCDCTL_API": "3"}
        assert wait_until(lambda: subprocess.run([*ctl, "endpoint", "health"], check=False, capture_output=True, env=ctl_env).returncode == 0,
                          20, interval=0.2)
        for args in (["user", "add", "root:s3cret-etcd-pw"], ["auth", "enable"]):
            subprocess.run([*ctl, *args], check=True, capture_output=True, env=ctl_env)
        yield url, certs / "ca.pem"
    finally:
        lab.stop_kind("etcd")


def test_tls_and_credentials_by_reference(secure_etcd: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca = secure_etcd
    lock = {"backend": "etcd", "endpoints": [url], "tls": {"ca_file": str(ca)}, "user": "root",
            "password": {"env": "TEST_ETCD_PASSWORD"}, "lease_ttl": TTL, "timeout": 1.0}
    monkeypatch.setenv("TEST_ETCD_PASSWORD", "s3cret-etcd-pw")
    inventory = simulated_inventory(tmp_path, lock=json.dumps(lock))
    code, out = run(inventory, tmp_path / "r1", tmp_path / "locks")
    assert code == 0, out
    assert of_type(tmp_path / "r1", "lock_taken")[0].data["backend"] == "etcd"
    assert "s3cret-etcd-pw" not in out + (tmp_path / "r1" / "journal.jsonl").read_text()

    wrong = EtcdLockSettings.model_validate({**lock, "password": {"env": "TEST_ETCD_WRONG"}})
    monkeypatch.setenv("TEST_ETCD_WRONG", "not-the-password")
    with pytest.raises(LockUnavailable) as refused:
        open_lock(wrong, "c1").acquire(me("r2", tmp_path))
    assert "refused to log in user root (password from environment variable TEST_ETCD_WRONG)" in str(refused.value)
    assert "not-the-password" not in str(refused.value)

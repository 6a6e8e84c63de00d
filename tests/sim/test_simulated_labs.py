"""`drengine lab up mongodb|elasticsearch`: simulators served over the real protocols by a
background process, reached through an inventory like any real cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from drengine.datastores.elasticsearch.sim import parse_model
from drengine.lab.procs import LabDir, is_ours
from tests.helpers import cli


def test_mongodb_lab_recovers_with_the_real_client(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    code, out = cli("lab", "up", "mongodb", "--dir", str(tmp_path / "lab"), "--inventory-out", str(inv))
    assert code == 0, out
    procs = LabDir(tmp_path / "lab").processes()
    try:
        assert "simulated" not in inv.read_text()
        code, out = cli("run", "mongodb-force-primary", "-i", str(inv), "-c", "lab-mongodb", "--yes", "--accept-data-loss",
                        "--run-dir", str(tmp_path / "r0"))
        # One process serves every member: no service or pid file stops one of them, and a refused
        # connection is not a fence. The operator who made sure they stay down overrides.
        assert code == 1 and "FAILED: step check-fenced failed: UNFENCED: m2, m3, m4" in out, out
        code, out = cli("run", "mongodb-force-primary", "-i", str(inv), "-c", "lab-mongodb", "--yes", "--accept-data-loss",
                        "--override", "check-fenced", "--run-dir", str(tmp_path / "r"))
        assert code == 0, out
        assert "one writable primary" in out
    finally:
        code, out = cli("lab", "down", "--dir", str(tmp_path / "lab"))
    assert code == 0 and "stopped mongodb/mongodb-sim" in out
    assert not any(is_ours(p) for p in procs)


def test_elasticsearch_lab_and_lab_status(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    code, out = cli("lab", "up", "elasticsearch", "--dir", str(tmp_path / "lab"), "--inventory-out", str(inv))
    assert code == 0, out
    try:
        code, out = cli("lab", "status", "--dir", str(tmp_path / "lab"))
        assert "elasticsearch-sim" in out and "running" in out
        code, out = cli("run", "elasticsearch-reallocate", "-i", str(inv), "-c", "lab-elasticsearch", "--yes",
                        "--gone", "node-3", "--run-dir", str(tmp_path / "r"))
        assert code == 0, out
    finally:
        cli("lab", "down", "--dir", str(tmp_path / "lab"))
    code, out = cli("lab", "status", "--dir", str(tmp_path / "lab"))
    assert "nothing running" in out
    # `lab down` (SIGTERM) lets the server write its state back: the recovered cluster is kept
    # (the scenario starts yellow with 4 unassigned replicas).
    saved = parse_model((tmp_path / "lab" / "elasticsearch" / "state.json").read_text())
    assert saved.health()["unassigned_shards"] == 0


def test_the_served_simulator_runs_as_a_hidden_lab_command(tmp_path: Path) -> None:
    code, out = cli("lab", "--help")
    assert code == 0 and "serve" not in out and "node" not in out
    served = subprocess.run([sys.executable, "-m", "drengine", "lab", "serve", "mongodb", "--scenario", "nonsense"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert served.returncode == 2 and "unknown MongoDB scenario 'nonsense'; known: " in served.stderr


def test_scenario_only_for_simulated_labs(tmp_path: Path) -> None:
    code, out = cli("lab", "up", "mariadb", "--dir", str(tmp_path / "lab"), "--scenario", "healthy-3")
    assert code == 2 and "--scenario applies to the simulated labs" in out

"""Drills on the real MariaDB lab: faults injected through the members' pid files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drengine.datastores.mariadb import lab as lab_mariadb
from drengine.lab.procs import LabDir
from tests.helpers import cli, mariadb_lab, of_type


@pytest.fixture
def lab() -> Iterator[tuple[LabDir, str]]:
    with mariadb_lab("drengine-mariadb-drill-") as made:
        yield made


def drill(inventory: str, run_dir: Path, fault: str) -> tuple[int, str]:
    return cli("drill", "mariadb-promote-survivor", "-i", inventory, "-c", "lab-mariadb", "--fault", fault,
               "--run-dir", str(run_dir), "--canary-interval", "0.02")


def measured(run_dir: Path) -> dict[str, object]:
    return {e.data["name"]: e.data for e in of_type(run_dir, "measurement")}


@pytest.mark.parametrize("fault", ["kill-primary", "hang-primary"])
def test_drill_recovers_without_loss(lab: tuple[LabDir, str], tmp_path: Path, fault: str) -> None:
    _, inventory = lab
    code, out = drill(inventory, tmp_path / "d", fault)
    assert code == 0, out
    m = measured(tmp_path / "d")
    assert m["lost_writes"]["value"] == 0  # type: ignore[index]
    rto = m["recovery_seconds"]["value"]  # type: ignore[index]
    assert isinstance(rto, float) and 0 < rto < 20
    assert (tmp_path / "d" / "junit.xml").exists() and (tmp_path / "d" / "drill.prom").exists()


def test_cut_replication_reports_exactly_the_unreplicated_writes(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    _, inventory = lab
    code, out = drill(inventory, tmp_path / "d", "cut-replication")
    assert code == 0, out
    lost = measured(tmp_path / "d")["lost_writes"]
    assert lost["value"] == 10, lost  # type: ignore[index]
    assert lost["lost"] == [f"canary-fault-{i:03d}" for i in range(10)]  # type: ignore[index]


def test_drill_refused_on_unhealthy_lab(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    lab_dir, inventory = lab
    lab_mariadb.kill(lab_dir, "db3")
    code, out = drill(inventory, tmp_path / "d", "kill-primary")
    assert code == 2
    assert "not healthy before the fault" in out and "db3 unreachable" in out
    assert lab_mariadb.is_running(lab_dir, "db1")  # nothing was injected

"""The hidden `drengine lab node` commands the lab inventories' service templates run: exit codes
the connectors read (status: 0 running, 3 not running), and refusals of what a lab does not take."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from drengine.datastores.galera.lab import service_templates
from drengine.lab.procs import LabDir, drengine_command
from tests.helpers import ROOT, cli

pytestmark = pytest.mark.unit


def test_node_status_speaks_lsb_and_refuses_what_a_lab_does_not_take(tmp_path: Path) -> None:
    lab = str(tmp_path / "lab")
    assert cli("lab", "node", "status", "mariadb", "db1", "--lab-dir", lab) == (3, "db1: not running\n")
    code, out = cli("lab", "node", "start", "mariadb", "db1", "--bootstrap", "--timeout", "3", "--lab-dir", lab)
    assert code == 2 and "mariadb lab nodes do not take --bootstrap, --timeout; they take no options" in out
    code, out = cli("lab", "node", "start", "mariadb", "db9", "--lab-dir", lab)
    assert code == 1 and "the MariaDB lab has no server 'db9'; its servers are db1, db2, db3" in out
    code, out = cli("lab", "node", "stop", "ceph", "osd.7", "--dir", lab)
    assert code == 1 and "has no node osd.7" in out
    code, out = cli("lab", "node", "start", "mongodb", "m0", "--lab-dir", lab)
    assert code == 2 and "'mongodb' is not one of 'ceph', 'galera', 'mariadb'" in out


def test_templates_call_this_drengine_through_python_m(tmp_path: Path) -> None:
    words = shlex.split(drengine_command("lab", "node", "start", "galera"))
    assert words[0] == f"PYTHONPATH={ROOT}" and words[2:] == ["-m", "drengine", "lab", "node", "start", "galera"]
    start = service_templates(LabDir(tmp_path / "odd {dir}"))["bootstrap"]
    assert "{name} --bootstrap --lab-dir" in start and "'" in start and "{{dir}}" in start

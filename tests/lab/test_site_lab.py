"""The real MariaDB, Galera and Ceph labs as one site (`drengine lab up site`): host1 carries the
MariaDB primary, two Galera nodes and a Ceph OSD, and MariaDB depends on Ceph. Losing host1:
`site plan` lists the order and the statements without changing anything, `site run` recovers
all three with Ceph before MariaDB, and `drill site --lose-host host1` does it unattended and
reports the site's recovery time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from drengine.backends import open_backend
from drengine.clock import wait_until
from drengine.inventory import Inventory, load_inventory
from drengine.lab import start_lab, stop_lab
from drengine.lab.procs import LabDir
from drengine.status import probe_cluster
from tests.helpers import cli, lab_root, of_type, require_ceph

pytestmark = pytest.mark.lab


@pytest.fixture
def site() -> Iterator[tuple[Path, Path]]:
    require_ceph()
    with lab_root("drengine-site-lab-") as root:
        inventory = root / "site.yaml"
        try:
            start_lab("site", str(root / "lab"), str(inventory))
            yield root, inventory
        finally:
            stop_lab(None, str(root / "lab"))
            assert not LabDir(root / "lab").processes()


def lose(inventory: Inventory, host: str) -> None:
    for cluster, member in inventory.members_on(host):
        backend = open_backend(cluster, inventory, Path(inventory.path).parent)
        try:
            backend.kill(member.name)
        finally:
            backend.close()


def test_site_plan_then_site_run_after_losing_a_host(site: tuple[Path, Path]) -> None:
    root, path = site
    inv = load_inventory(path)
    assert {c.name for c, _ in inv.members_on("host1")} == {"lab-mariadb", "lab-galera", "lab-ceph"}
    lose(inv, "host1")

    def verdicts() -> dict[str, str]:
        return {name: probe_cluster(inv.cluster(name), inv).verdict.value for name in inv.clusters}

    assert wait_until(lambda: verdicts() == {"lab-mariadb": "down", "lab-galera": "down", "lab-ceph": "degraded"},
                      60, interval=1.0), verdicts()
    code, out = cli("site", "plan", "-i", str(path), "--run-dir", str(root / "plan"))
    assert code == 0, out
    ceph, mariadb = out.index("lab-ceph: DEGRADED: ceph-degrade"), out.index("lab-mariadb: DOWN: mariadb-promote-survivor")
    assert ceph < mariadb and "lab-galera: DOWN: galera-bootstrap-survivor" in out
    assert '"prefix": "osd set", "key": "noout"' in out and "SET GLOBAL read_only=0" in out
    assert verdicts() == {"lab-mariadb": "down", "lab-galera": "down", "lab-ceph": "degraded"}  # nothing changed

    code, out = cli("site", "run", "-i", str(path), "--yes", "--accept-data-loss", "--run-dir", str(root / "site"))
    assert code == 0, out
    assert "DONE: every cluster holds" in out
    turns = [(e.data["cluster"], e.data["phase"]) for e in of_type(root / "site", "site_cluster")]
    assert turns.index(("lab-ceph", "recovered")) < turns.index(("lab-mariadb", "started"))
    assert ("lab-galera", "recovered") in turns
    code, doc = cli("status", "-i", str(path), "--json")
    standing = {c["cluster"]: c["verdict"] for c in json.loads(doc)["site"]["clusters"]}
    assert standing["lab-galera"] == "healthy" and standing["lab-ceph"] != "down" and standing["lab-mariadb"] != "down"


def test_drill_site_loses_a_host_and_recovers_the_site(site: tuple[Path, Path]) -> None:
    root, path = site
    code, out = cli("drill", "site", "--lose-host", "host1", "-i", str(path), "--rto", "240",
                    "--max-lost-writes", "0", "--run-dir", str(root / "drill"))
    assert code == 0, out
    assert "PASSED: site recovery" in out
    measured = {(m.data.get("cluster"), m.data["name"]): m.data["value"] for m in of_type(root / "drill", "measurement")}
    rtos = {c: measured[(c, "recovery_seconds")] for c in ("lab-ceph", "lab-mariadb", "lab-galera")}
    assert all(r is not None and r > 0 for r in rtos.values()), rtos
    assert measured[(None, "site_recovery_seconds")] == max(rtos.values())
    turns = [(e.data["cluster"], e.data["phase"]) for e in of_type(root / "drill" / "site", "site_cluster")]
    assert turns.index(("lab-ceph", "recovered")) < turns.index(("lab-mariadb", "started"))
    page = (root / "drill" / "report.html").read_text()
    assert "Site drill PASSED: host host1 lost (kill)" in page
    assert "state-met" in page.split('data-objective="site-rto"')[1].split("</tr>")[0]
    assert all(f'<g class="cluster" data-cluster="{c}">' in page for c in ("lab-ceph", "lab-mariadb", "lab-galera"))

"""Drills on the simulator: faults, canary accounting, refusals, and the reports."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ROOT, cli, of_type

INVENTORY = str(ROOT / "inventory" / "simulated.yaml")


def drill(tmp_path: Path, fault: str, cluster: str = "sim-mariadb-healthy", name: str = "d") -> tuple[int, str, Path]:
    run_dir = tmp_path / name
    code, out = cli("drill", "mariadb-promote-survivor", "-i", INVENTORY, "-c", cluster, "--fault", fault,
                    "--run-dir", str(run_dir))
    return code, out, run_dir


def measurement(run_dir: Path, name: str) -> Any:
    return next(e.data["value"] for e in of_type(run_dir, "measurement") if e.data["name"] == name)


@pytest.mark.parametrize("fault", ["kill-primary", "hang-primary", "lag-replica"])
def test_faults_recover_without_loss(tmp_path: Path, fault: str) -> None:
    code, out, run_dir = drill(tmp_path, fault)
    assert code == 0, out
    assert "DRILL PASSED" in out
    assert measurement(run_dir, "lost_writes") == 0
    rto = measurement(run_dir, "recovery_seconds")
    assert isinstance(rto, float) and 0 <= rto < 5
    injected = of_type(run_dir, "fault_injected")[0].data
    assert injected["fault"] == fault and injected["text"].startswith(f"fault injected: {fault}")
    assert injected["members"] == ["db1"]  # the primary


def test_cut_replication_loses_exactly_the_unreplicated_writes(tmp_path: Path) -> None:
    code, out, run_dir = drill(tmp_path, "cut-replication")
    assert code == 0, out
    lost = next(e.data for e in of_type(run_dir, "measurement") if e.data["name"] == "lost_writes")
    assert lost["value"] == 10
    assert lost["lost"] == [f"canary-fault-{i:03d}" for i in range(10)]


def test_hang_primary_passes_on_the_runbooks_own_fencing(tmp_path: Path) -> None:
    code, out, run_dir = drill(tmp_path, "hang-primary")
    assert code == 0, out
    notes = [e.data["text"] for e in of_type(run_dir, "note")]
    # The runbook fenced db1 (its stop command); the drill found nothing left to wake, and checked.
    assert "after the drill: db1: nothing to wake: the simulated server is not running; db2: nothing to wake" in "\n".join(notes)
    assert "check after the drill: as the runbook left it" in notes
    fence = next(e for e in of_type(run_dir, "step_finished") if e.data["step"] == "fence-old-primary")
    assert any(line.startswith("db1: service: FENCED") for line in fence.data["evidence"])


def test_hang_primary_fails_when_the_runbook_cannot_fence(tmp_path: Path) -> None:
    """Only SQL fencing allowed: it cannot reach a hung primary, so the promotion goes ahead behind the
    dangerous gate (the drill policy approves it); once woken, db1 is writable beside db2 and the
    drill fails. The drill does not fence anything itself."""
    inv = tmp_path / "inv.yaml"
    inv.write_text(Path(INVENTORY).read_text().replace("    members: *members\n    proxies: *proxies\n",
                                                       "    members: *members\n    fencing: [sql]\n"))
    run_dir = tmp_path / "d"
    code, out = cli("drill", "mariadb-promote-survivor", "-i", str(inv), "-c", "sim-mariadb-healthy", "--fault",
                    "hang-primary", "--run-dir", str(run_dir))
    assert code == 1, out
    assert "2 writable members after the drill (db1, db2): split brain, the runbook did not fence the old primary" in out
    promote = next(e for e in of_type(run_dir, "gate_asked") if e.data["step"] == "promote")
    assert promote.data["level"] == "dangerous" and any("split brain: db1" in r for r in promote.data["risks"])


def test_refused_on_unhealthy_cluster(tmp_path: Path) -> None:
    code, out, run_dir = drill(tmp_path, "kill-primary", cluster="sim-mariadb")
    assert code == 2
    assert "not healthy before the fault" in out and "db1 unreachable" in out
    assert not of_type(run_dir, "statement_sent")


def test_refused_on_cluster_not_marked_for_drills(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(Path(INVENTORY).read_text().replace("drill_target: true", "drill_target: false"))
    code, out = cli("drill", "mariadb-promote-survivor", "-i", str(inv), "-c", "sim-mariadb-healthy", "--fault",
                    "kill-primary", "--run-dir", str(tmp_path / "d"))
    assert code == 2
    assert "is not marked as a drill target" in out
    assert not (tmp_path / "d" / "journal.jsonl").exists()


def test_unknown_fault_names_the_known_ones(tmp_path: Path) -> None:
    code, out, _ = drill(tmp_path, "meteor-strike")
    assert code == 2
    assert "unknown fault 'meteor-strike'" in out and "kill-primary" in out


def test_help_lists_faults() -> None:
    code, out = cli("drill", "--help")
    assert code == 0
    assert "mariadb kill-primary" in out and "mariadb hang-primary" in out and "mariadb lag-replica" in out


class _StrictHTML(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("meta", "br", "link", "line", "polyline", "circle"):
            self.stack.append(tag)
        self._in_title = tag == "title"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        return  # <line .../> and friends in the SVG

    def handle_endtag(self, tag: str) -> None:
        if tag in ("line", "polyline", "circle") and (not self.stack or self.stack[-1] != tag):
            return
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title and len(self.stack) == 3:  # html > head > title, not an SVG tooltip
            self.title += data


def test_reports_validate(tmp_path: Path) -> None:
    code, out, run_dir = drill(tmp_path, "cut-replication")
    assert code == 0, out
    schema = xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit.xsd"))
    schema.validate(str(run_dir / "junit.xml"))
    junit: Any = schema.to_dict(str(run_dir / "junit.xml"))
    assert int(junit["@tests"]) == 8 and int(junit["@failures"]) == 0  # a case per step; no objective was set
    families = {f.name: f for f in text_string_to_metric_families((run_dir / "drill.prom").read_text())}
    assert set(families) == {"drengine_drill_success", "drengine_drill_recovery_seconds", "drengine_drill_lost_writes",
                             "drengine_drill_canary_writes", "drengine_drill_last_run_timestamp_seconds"}
    lost = families["drengine_drill_lost_writes"].samples[0]
    assert lost.value == 10 and lost.labels == {"cluster": "sim-mariadb-healthy", "runbook": "mariadb-promote-survivor",
                                                "fault": "cut-replication"}
    assert families["drengine_drill_success"].samples[0].value == 1
    canaries = {s.labels["outcome"]: s.value for s in families["drengine_drill_canary_writes"].samples}
    assert canaries["lost"] == 10 and canaries["sent"] >= canaries["acknowledged"] > 0
    parser = _StrictHTML()
    page = (run_dir / "report.html").read_text()
    parser.feed(page)
    assert parser.stack == [] and parser.title.startswith("drengine ")
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # figures are named in words, not by their journal field names
    assert "recovery_seconds" not in page.split("Every journal event")[0]
    assert "failed during the outage" in page and "lost writes" in page


def test_elasticsearch_kill_node_drill_goes_green(tmp_path: Path) -> None:
    run_dir = tmp_path / "es"
    code, out = cli("drill", "elasticsearch-reallocate", "-i", str(ROOT / "inventory" / "simulated-elasticsearch.yaml"),
                    "-c", "sim-es-healthy", "--fault", "kill-node", "--run-dir", str(run_dir))
    assert code == 0, out
    assert "cluster is green" in out
    assert measurement(run_dir, "lost_writes") == 0
    started = of_type(run_dir, "run_started")[0].data
    assert started["gone_for_good"] == ["node-3"] and started["mode"] == "drill"


def test_mongodb_kill_majority_drill(tmp_path: Path) -> None:
    run_dir = tmp_path / "mongo"
    code, out = cli("drill", "mongodb-force-primary", "-i", str(ROOT / "inventory" / "simulated-mongodb.yaml"),
                    "-c", "sim-mongo-healthy", "--fault", "kill-majority", "--run-dir", str(run_dir))
    assert code == 0, out
    assert measurement(run_dir, "lost_writes") == 0
    assert int(measurement(run_dir, "canaries_failed")) > 0  # writes failed while no majority was left
    assert "must stay down" in out


@pytest.mark.parametrize("fault", ["kill-two-nodes", "kill-all", "hang-two-nodes"])
def test_galera_drills(tmp_path: Path, fault: str) -> None:
    run_dir = tmp_path / "galera"
    code, out = cli("drill", "galera-bootstrap-survivor", "-i", str(ROOT / "inventory" / "simulated-galera.yaml"),
                    "-c", "sim-galera-healthy", "--fault", fault, "--run-dir", str(run_dir))
    assert code == 0, out
    assert measurement(run_dir, "lost_writes") == 0
    assert "Primary and Synced in one component of size 3" in out
    assert "check after the drill: as the runbook left it" in [e.data["text"] for e in of_type(run_dir, "note")]


def test_ceph_kill_osds_drill(tmp_path: Path) -> None:
    run_dir = tmp_path / "ceph"
    code, out = cli("drill", "ceph-degrade", "-i", str(ROOT / "inventory" / "simulated-ceph.yaml"),
                    "-c", "sim-ceph-healthy", "--fault", "kill-osds", "--run-dir", str(run_dir))
    assert code == 0, out
    assert measurement(run_dir, "lost_writes") == 0
    assert int(measurement(run_dir, "canaries_failed")) > 0  # I/O blocked until min_size was lowered
    statements = [e.data["text"] for e in of_type(run_dir, "statement_sent")]
    assert any('"var": "min_size"' in s and '"val": "1"' in s for s in statements), statements
    risks = (run_dir / "report.md").read_text().split("## Risks accepted")[1].split("##")[0]
    assert "- lower-min-size: writes to pool" in risks and "approved by the drill policy (drill target)" in risks
    assert "kill-osds on osd.1, osd.2" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize("fault", ["kill-primary", "hang-primary"])
def test_restore_rejoins_the_old_primary(tmp_path: Path, fault: str) -> None:
    run_dir = tmp_path / "d"
    code, out = cli("drill", "mariadb-promote-survivor", "-i", INVENTORY, "-c", "sim-mariadb-healthy", "--fault", fault,
                    "--restore", "--run-dir", str(run_dir))
    assert code == 0, out
    assert measurement(run_dir / "restore", "restored") == 1
    from drengine.datastores.mariadb.sim import SimCluster

    sim = SimCluster.model_validate_json((run_dir / "restore" / "sim-state.json").read_text())
    db1 = sim.server("db1")
    assert db1.alive and not db1.hung and db1.read_only and db1.source == "db2"


def test_restore_refuses_an_old_primary_with_unreplicated_writes(tmp_path: Path) -> None:
    run_dir = tmp_path / "d"
    code, out = cli("drill", "mariadb-promote-survivor", "-i", INVENTORY, "-c", "sim-mariadb-healthy", "--fault",
                    "cut-replication", "--restore", "--run-dir", str(run_dir))
    assert code == 0, out  # the drill itself passed: the loss was the deliberate, measured one
    assert measurement(run_dir / "restore", "restored") == 0
    assert "| restore | FAILED: mariadb-rejoin:" in (run_dir / "report.md").read_text()
    assert "restore FAILED" in out and "errant transactions: db1 has 10 transaction(s)" in out


def test_ceph_drill_restore_puts_min_size_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "ceph"
    code, out = cli("drill", "ceph-degrade", "-i", str(ROOT / "inventory" / "simulated-ceph.yaml"),
                    "-c", "sim-ceph-healthy", "--fault", "kill-osds", "--restore", "--run-dir", str(run_dir))
    assert code == 0, out
    assert measurement(run_dir / "restore", "restored") == 1
    restored = [e.data["text"] for e in of_type(run_dir / "restore", "statement_sent")]
    assert any('"var": "min_size"' in s and '"val": "2"' in s for s in restored), restored
    assert '{"prefix": "osd unset", "key": "noout"}' in restored


def test_a_simulated_drill_says_its_time_is_simulated(tmp_path: Path) -> None:
    """"RTO 0.056 s PASSED" alone reads like a real recovery: the screen and every report say
    the time is the simulator's (issue 25, item 10)."""
    code, out, run_dir = drill(tmp_path, "kill-primary")
    assert code == 0, out
    passed = out.index("DRILL PASSED")
    assert "SIMULATED: the cluster was drengine's simulator" in out[passed:]
    assert "SIMULATED" in (run_dir / "report.md").read_text().split("## ")[0]
    assert 'id="simulated"' in (run_dir / "report.html").read_text()
    assert '<property name="simulated" value="true" />' in (run_dir / "junit.xml").read_text()

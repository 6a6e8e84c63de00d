"""A site of simulated clusters: `status` as a dependency tree, `site plan`, and `site run`
recovering dependencies first, blocking what waits on a dependency that does not hold, and
resuming where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drengine.errors import ExitCode, OperatorStop
from drengine.gates import FlagPolicy
from drengine.inventory import load_inventory
from drengine.journal import Event, verify
from drengine.runs import summarize
from drengine.site.run import SiteRequest, resume_site, run_site
from tests.helpers import ROOT, cli, events, of_type

SITE = str(ROOT / "inventory" / "site-simulated.yaml")


def request(inventory: str, site_dir: Path, **kw: object) -> SiteRequest:
    gates = kw.pop("gates", FlagPolicy(yes=True, accept_data_loss=True))
    return SiteRequest(inventory=load_inventory(inventory), gates=gates, site_dir=site_dir,  # type: ignore[arg-type]
                       runs_root=site_dir.parent, **kw)  # type: ignore[arg-type]


def turns(site_dir: Path) -> list[tuple[str, str]]:
    return [(str(e.data["cluster"]), str(e.data["phase"])) for e in of_type(site_dir, "site_cluster")]


def test_status_shows_the_site_in_dependency_order() -> None:
    code, out = cli("status", "-i", SITE)
    assert code == ExitCode.FAILED
    tree = out[out.index("site, in dependency order"):]
    assert "site-ceph (ceph): DOWN, broken" in tree
    assert "└─ site-mariadb (mariadb): DOWN, waits; waits for site-ceph" in tree
    assert "1. site-ceph (down): $ drengine plan ceph-degrade" in tree
    code, text = cli("status", "-i", SITE, "--json")
    doc = json.loads(text)
    assert code == doc["exit_code"] == ExitCode.FAILED
    assert doc["site"]["order"] == ["site-ceph", "site-galera", "site-mariadb"]
    assert {c["cluster"]: c["standing"] for c in doc["site"]["clusters"]} == {
        "site-ceph": "broken", "site-mariadb": "waits", "site-galera": "broken"}
    assert doc["site"]["first"] == ["site-ceph", "site-galera"]


def test_site_plan_lists_the_order_and_the_statements(tmp_path: Path) -> None:
    code, out = cli("site", "plan", "-i", SITE, "--run-dir", str(tmp_path / "plan"))
    assert code == ExitCode.DONE, out
    first, second = out.index("1. site-ceph: DOWN: ceph-degrade"), out.index("3. site-mariadb: DOWN: mariadb-promote-survivor")
    assert first < second
    assert "starts once site-ceph holds on a fresh observation" in out
    assert '{"prefix": "osd pool set", "pool": "drengine", "var": "min_size", "val": "1"}' in out
    assert "[db2] SET GLOBAL read_only=0" in out
    assert first < out.index("2. site-galera: DOWN: galera-bootstrap-survivor") < out.index("3. site-mariadb")
    for cluster in ("site-ceph", "site-mariadb", "site-galera"):
        assert {e.data["mode"] for e in of_type(tmp_path / "plan" / cluster, "run_started")} == {"plan"}
        steps = of_type(tmp_path / "plan" / cluster, "plan_step")
        assert steps and not [s.data["step"] for s in steps if s.data["effect"] == "mutate" and s.data["ran"]]


def test_site_run_recovers_dependencies_first(tmp_path: Path) -> None:
    site_dir = tmp_path / "site"
    outcome = run_site(request(SITE, site_dir))
    assert outcome.success, outcome.summary
    assert outcome.summary.startswith("every cluster holds")
    assert turns(site_dir) == [("site-ceph", "started"), ("site-ceph", "recovered"), ("site-galera", "started"),
                               ("site-galera", "recovered"), ("site-mariadb", "started"), ("site-mariadb", "recovered")]
    # The dependency's goal was checked, holding, after its run ended and before the dependent's began.
    site_events = events(site_dir)
    seq = {(e.data.get("cluster"), e.data.get("phase")): e.seq for e in site_events if e.type is Event.SITE_CLUSTER}
    gate = [e for e in site_events if e.type is Event.GOAL_CHECKED and e.data.get("for_cluster") == "site-mariadb"]
    assert [g.data["cluster"] for g in gate] == ["site-ceph"] and gate[0].data["holds"] is True
    assert seq[("site-ceph", "recovered")] < gate[0].seq < seq[("site-mariadb", "started")]
    ceph_end = of_type(site_dir / "site-ceph", "run_finished")[-1]
    maria_start = of_type(site_dir / "site-mariadb", "run_started")[0]
    assert ceph_end.ts <= maria_start.ts
    for run in ("site-ceph", "site-galera", "site-mariadb"):
        verify(site_dir / run)
        assert of_type(site_dir / run, "run_finished")[-1].data["success"] is True
    verify(site_dir)
    assert (site_dir / "state" / "site-ceph.json").is_file()
    final = [e.data for e in site_events if e.type is Event.GOAL_CHECKED and "for_cluster" not in e.data]
    assert {d["cluster"]: d["holds"] for d in final} == {"site-ceph": True, "site-mariadb": True, "site-galera": True}
    assert site_events[-1].type is Event.RUN_FINISHED and site_events[-1].data["end"] == "done"


BLOCKED = """\
clusters:
  db:
    kind: mariadb
    simulated: {scenario: all-replicas-down}
    members:
      - {name: db1, address: 127.0.0.1, port: 3306}
      - {name: db2, address: 127.0.0.1, port: 3307}
  storage:
    kind: ceph
    depends_on: [db]
    simulated: {scenario: two-osds-down}
    members:
      - {name: mon.a, port: 3300, role: mon}
      - {name: mon.b, port: 3301, role: mon}
      - {name: mon.c, port: 3302, role: mon}
      - {name: osd.0, role: osd}
      - {name: osd.1, role: osd}
      - {name: osd.2, role: osd}
"""


def test_a_dependency_that_does_not_hold_blocks_its_dependents(tmp_path: Path) -> None:
    inventory = tmp_path / "site.yaml"
    inventory.write_text(BLOCKED)
    site_dir = tmp_path / "site"
    outcome = run_site(request(str(inventory), site_dir))
    assert not outcome.success
    assert outcome.not_holding == ["db", "storage"]
    assert turns(site_dir) == [("db", "no-runbook"), ("storage", "blocked")]
    assert not (site_dir / "storage").exists()  # its recovery never started
    assert "storage does not hold" in outcome.summary and "db does not hold" in outcome.summary
    code, out = cli("site", "run", "-i", str(inventory), "--yes", "--run-dir", str(tmp_path / "again"))
    assert code == ExitCode.FAILED
    assert "INCOMPLETE: the site is not recovered" in out and "storage: blocked" in out


def test_a_stopped_site_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    site_dir = tmp_path / "site"
    with pytest.raises(OperatorStop) as stopped:
        run_site(request(SITE, site_dir, gates=FlagPolicy(yes=True)))  # ceph-degrade has a dangerous gate
    assert stopped.value.resume_with == "drengine site run --resume" and stopped.value.run_dir == site_dir
    assert ("site-mariadb", "started") not in turns(site_dir)
    assert of_type(site_dir, "run_finished")[-1].data["end"] == "stopped"
    listed = summarize(site_dir)[0]
    assert listed.resumable and listed.resume_command == f"drengine site run --resume {site_dir}"

    def again(inv: object) -> SiteRequest:
        return SiteRequest(inventory=inv, gates=FlagPolicy(yes=True, accept_data_loss=True))  # type: ignore[arg-type]

    outcome = resume_site(site_dir, again)
    assert outcome.success, outcome.summary
    assert of_type(site_dir / "site-ceph", "run_resumed"), "the ceph run was resumed, not started again"
    assert not (site_dir / "site-ceph.2").exists()
    assert [p for p in turns(site_dir) if p[0] == "site-mariadb"] == [("site-mariadb", "started"),
                                                                      ("site-mariadb", "recovered")]
    assert [p for p in turns(site_dir) if p[0] == "site-galera"] == [("site-galera", "started"),
                                                                     ("site-galera", "recovered")]
    code, out = cli("site", "run", "--resume", str(site_dir), "--yes")
    assert code == ExitCode.INVALID_INPUT and "already finished (done)" in out


def test_independent_clusters_side_by_side_end_the_same(tmp_path: Path) -> None:
    outcome = run_site(request(SITE, tmp_path / "site", parallel=4))
    assert outcome.success, outcome.summary
    phases = turns(tmp_path / "site")
    assert phases.index(("site-ceph", "recovered")) < phases.index(("site-mariadb", "started"))


def test_losing_a_host_is_drilled_across_the_site(tmp_path: Path) -> None:
    healthy = str(ROOT / "inventory" / "site-simulated-healthy.yaml")
    drill_dir = tmp_path / "drill"
    code, out = cli("drill", "site", "--lose-host", "s3", "-i", healthy, "--rto", "120", "--max-lost-writes", "0",
                    "--run-dir", str(drill_dir))
    assert code == ExitCode.DONE, out
    assert "site-ceph: lost mon.c, osd.1, osd.2; recovery" in out and "site-mariadb: lost db1; recovery" in out
    assert "site-galera: lost g2, g3; recovery" in out and "PASSED: site recovery" in out
    faults = of_type(drill_dir, "fault_injected")
    assert sorted((f.data["cluster"], f.data["members"][0]) for f in faults) == [
        ("site-ceph", "mon.c"), ("site-ceph", "osd.1"), ("site-ceph", "osd.2"), ("site-galera", "g2"),
        ("site-galera", "g3"), ("site-mariadb", "db1")]
    measured = {(m.data.get("cluster"), m.data["name"]): m.data["value"] for m in of_type(drill_dir, "measurement")}
    rtos = [measured[(c, "recovery_seconds")] for c in ("site-ceph", "site-mariadb", "site-galera")]
    assert all(r is not None and r > 0 for r in rtos)
    assert measured[(None, "site_recovery_seconds")] == max(rtos)
    assert all(measured[(c, "lost_writes")] == 0 for c in ("site-ceph", "site-mariadb", "site-galera"))
    # The site run under the drill recovered the dependency first, under the drill policy.
    phases = turns(drill_dir / "site")
    assert phases.index(("site-ceph", "recovered")) < phases.index(("site-mariadb", "started"))
    assert {e.data["mode"] for e in of_type(drill_dir / "site" / "site-mariadb", "run_started")} == {"drill"}
    verify(drill_dir)
    report = (drill_dir / "report.md").read_text()
    assert report.startswith("# Site drill PASSED: host s3 lost (kill)")
    assert "| site-mariadb | db1 | mariadb-promote-survivor | recovered |" in report
    chart = report[report.index("## Timelines"):].splitlines()
    rows = {line.split()[0]: line for line in chart if line.startswith("site")}
    assert set(rows) == {"site-ceph", "site-mariadb", "site-galera", "site"}
    # On the one axis, MariaDB's run begins after Ceph's has ended.
    assert rows["site-mariadb"].index("=") > rows["site-ceph"].rindex("=")


def test_a_site_drill_refuses_a_host_that_carries_nothing(tmp_path: Path) -> None:
    healthy = str(ROOT / "inventory" / "site-simulated-healthy.yaml")
    code, out = cli("drill", "site", "--lose-host", "s9", "-i", healthy, "--run-dir", str(tmp_path / "d"))
    assert code == ExitCode.INVALID_INPUT and "no host named 's9'" in out
    code, out = cli("drill", "site", "--lose-host", "s3", "-i", SITE, "--run-dir", str(tmp_path / "d2"))
    assert code == ExitCode.INVALID_INPUT and "drill refused: cluster site-ceph is not healthy before the fault" in out


def test_site_plan_as_json(tmp_path: Path) -> None:
    code, text = cli("site", "plan", "-i", SITE, "--json", "--run-dir", str(tmp_path / "plan"))
    doc = json.loads(text)
    assert code == doc["exit_code"] == ExitCode.DONE and doc["success"] is True
    assert doc["order"] == ["site-ceph", "site-galera", "site-mariadb"]
    planned = {c["cluster"]: c for c in doc["clusters"]}
    assert planned["site-mariadb"]["after"] == ["site-ceph"] and planned["site-mariadb"]["runbook"] == "mariadb-promote-survivor"
    assert any(s["step"] == "promote" and "[db2] SET GLOBAL read_only=0" in s["statements"]
               for s in planned["site-mariadb"]["steps"])

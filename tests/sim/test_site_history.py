"""Site drills in `drengine drill history`: a series for the site (its recovery time against
its objective) and one per cluster in it, regressions flagged, HTML, --fail-on-regression."""

from __future__ import annotations

import json
from pathlib import Path

from drengine.errors import ExitCode
from tests.helpers import ROOT, cli
from tests.sim.test_site_inputs import strict_runbooks

HEALTHY = str(ROOT / "inventory" / "site-simulated-healthy.yaml")


def drill(runs: Path, name: str, *extra: str) -> int:
    code, out = cli("drill", "site", "--lose-host", "s3", "-i", HEALTHY, "--rto", "120", "--max-lost-writes", "0",
                    "--run-dir", str(runs / name), *extra)
    return code


def test_site_drills_have_a_history_with_regressions(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert drill(runs, "d1") == ExitCode.DONE
    assert drill(runs, "d2") == ExitCode.DONE
    # The third drill: Galera's runbook now needs an input nobody gives, so Galera never takes
    # writes again, where it did in the two drills before.
    assert drill(runs, "d3", "--runbooks", str(strict_runbooks(tmp_path))) == ExitCode.FAILED

    # Simulated drills take real time: on a loaded machine their RTO jitters by more than 50%, so
    # the RTO threshold is set out of reach here; a cluster that never recovered is flagged anyway.
    code, out = cli("drill", "history", "--runs", str(runs), "--last", "2", "--threshold", "10000")
    assert code == ExitCode.DONE, out
    for title in ("site site-simulated-healthy · site drill: host s3 lost · lose-host-kill: 3 drill(s)",
                  "site-ceph · site drill: host s3 lost · lose-host-kill: 3 drill(s)",
                  "site-galera · site drill: host s3 lost · lose-host-kill: 3 drill(s)",
                  "site-mariadb · site drill: host s3 lost · lose-host-kill: 3 drill(s)"):
        assert title in out, out
    site_block = out.split("site-ceph ·")[0]
    assert "120 s" in site_block and site_block.count("PASSED") == 2 and "FAILED" in site_block
    galera = out.split("site-galera ·")[1].split("site-mariadb ·")[0]
    assert "REGRESSION: never recovered, where 2 of the last 2 drills did" in galera
    assert "REGRESSION" not in out.split("site-ceph ·")[1].split("site-galera ·")[0]

    code, out = cli("drill", "history", "--runs", str(runs), "--last", "2", "--fail-on-regression",
                    "--html", str(tmp_path / "h.html"))
    assert code == ExitCode.FAILED
    page = (tmp_path / "h.html").read_text()
    assert "site site-simulated-healthy · site drill: host s3 lost · lose-host-kill" in page and "<svg" in page

    code, out = cli("drill", "history", "--runs", str(runs), "-c", "site-galera", "--json")
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["cluster"] for r in rows] == ["site-galera"] * 3
    assert [r["verdict"] for r in rows] == ["PASSED", "PASSED", "FAILED"]
    assert rows[0]["rto_seconds"] is not None and rows[2]["rto_seconds"] is None
    assert rows[0]["lost_writes"] == 0 and rows[0]["lost_writes_objective"] == 0

    # Each drill's HTML report: the site RTO and each cluster's figures against the objectives,
    # the clusters' timelines on one chart.
    page = (runs / "d1" / "report.html").read_text()
    assert "Site drill PASSED: host s3 lost (kill)" in page
    site_row = page.split('data-objective="site-rto"')[1].split("</tr>")[0]
    assert "<td>120.0 s</td>" in site_row and "state-met" in site_row
    for cluster in ("site-ceph", "site-mariadb", "site-galera"):
        assert f'<g class="cluster" data-cluster="{cluster}">' in page
        cells = page.split(f'<tr data-cluster="{cluster}">')[1].split("</tr>")[0]
        assert "lost writes: 0 (objective 0): met" in cells
    assert "site RTO objective 2 min" in page or "site RTO objective 120 s" in page
    failed = (runs / "d3" / "report.html").read_text()
    assert "Site drill FAILED" in failed and "site-galera took no write after the fault" in failed
    assert "state-missed" in failed.split('data-objective="site-rto"')[1].split("</tr>")[0]
    assert "<script" not in page

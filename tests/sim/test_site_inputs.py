"""A cluster runbook's inputs in a site's recovery (`--input CLUSTER:NAME=VALUE`): a recovery
that needs an input only the operator can give is not planned or run on the runbook's defaults."""

from __future__ import annotations

from pathlib import Path

from drengine.errors import ExitCode
from drengine.runbook import RunbookSearch, load_runbook
from drengine.site.inputs import needed_inputs
from drengine.status import Advice
from tests.helpers import ROOT, cli, of_type
from tests.sim.test_site_sim import SITE, turns


def strict_runbooks(tmp_path: Path) -> Path:
    """A copy of galera-bootstrap-survivor whose `bootstrap` input is required."""
    folder = tmp_path / "runbooks"
    folder.mkdir()
    text = (ROOT / "runbooks" / "galera-bootstrap-survivor.yaml").read_text()
    marker = "  bootstrap:\n    description: >-\n"
    assert marker in text
    (folder / "galera-bootstrap-survivor.yaml").write_text(text.replace(marker, "  bootstrap:\n    required: true\n"
                                                                                "    description: >-\n", 1))
    return folder


def test_site_plan_names_the_input_a_cluster_needs_and_plans_with_it(tmp_path: Path) -> None:
    folder = strict_runbooks(tmp_path)
    code, out = cli("site", "plan", "--runbooks", str(folder), "-i", SITE, "--run-dir", str(tmp_path / "p1"))
    assert code == ExitCode.FAILED, out
    assert "NEEDS INPUT" in out and "--input site-galera:bootstrap=VALUE (the node to bootstrap" in out
    assert not (tmp_path / "p1" / "site-galera").exists(), "not planned on the runbook's defaults"
    assert (tmp_path / "p1" / "site-ceph" / "journal.jsonl").is_file()
    assert "PLAN FAILS for site-galera" in out

    code, out = cli("site", "plan", "--runbooks", str(folder), "-i", SITE, "--run-dir", str(tmp_path / "p2"),
                    "--input", "site-galera:bootstrap=g1")
    assert code == ExitCode.DONE, out
    assert "input bootstrap=g1" in out and "--input site-galera:bootstrap=g1" in out
    assert of_type(tmp_path / "p2" / "site-galera", "run_started")[0].data["inputs"] == {"bootstrap": "g1"}


def test_site_run_refuses_a_cluster_whose_input_is_missing_then_takes_it(tmp_path: Path) -> None:
    folder = strict_runbooks(tmp_path)
    site_dir = tmp_path / "s1"
    code, out = cli("site", "run", "--runbooks", str(folder), "-i", SITE, "--yes", "--accept-data-loss",
                    "--run-dir", str(site_dir))
    assert code == ExitCode.FAILED, out
    assert "INCOMPLETE" in out and "site-galera does not hold" in out
    assert ("site-galera", "needs-input") in turns(site_dir) and ("site-galera", "started") not in turns(site_dir)
    needs = [e for e in of_type(site_dir, "site_cluster") if e.data["phase"] == "needs-input"][0]
    assert "--input site-galera:bootstrap=VALUE" in needs.data["summary"] and list(needs.data["needs"]) == ["bootstrap"]
    assert not (site_dir / "site-galera").exists()
    assert ("site-ceph", "recovered") in turns(site_dir) and ("site-mariadb", "recovered") in turns(site_dir)

    site_dir = tmp_path / "s2"
    code, out = cli("site", "run", "--runbooks", str(folder), "-i", SITE, "--yes", "--accept-data-loss",
                    "--run-dir", str(site_dir), "--input", "site-galera:bootstrap=g1")
    assert code == ExitCode.DONE, out
    started = of_type(site_dir / "site-galera", "run_started")[0].data
    assert started["inputs"] == {"bootstrap": "g1"}


def test_site_inputs_are_checked(tmp_path: Path) -> None:
    code, out = cli("site", "plan", "-i", SITE, "--input", "site-galra:bootstrap=g1", "--run-dir", str(tmp_path / "a"))
    assert code == ExitCode.INVALID_INPUT and "no cluster 'site-galra'" in out and "site-galera" in out
    code, out = cli("site", "run", "-i", SITE, "--input", "bootstrap=g1", "--run-dir", str(tmp_path / "b"))
    assert code == ExitCode.INVALID_INPUT and "expected CLUSTER:NAME=VALUE" in out
    assert not (tmp_path / "b").exists()
    code, out = cli("site", "plan", "-i", SITE, "--input", "site-galera:bootstrp=g1", "--run-dir", str(tmp_path / "c"))
    assert code == ExitCode.FAILED and "--input site-galera:bootstrp: runbook galera-bootstrap-survivor" in out


def test_a_choice_the_status_leaves_to_the_operator_is_needed() -> None:
    runbook = load_runbook("galera-bootstrap-survivor", RunbookSearch())
    advice = Advice(why="bootstrap", runbook=runbook.name, inputs={"bootstrap": "the histories tie"})
    assert needed_inputs(runbook, advice, {}) == {"bootstrap": "the histories tie"}
    assert needed_inputs(runbook, advice, {"bootstrap": "g2"}) == {}
    assert needed_inputs(runbook, Advice(why="x", runbook=runbook.name), {}) == {}

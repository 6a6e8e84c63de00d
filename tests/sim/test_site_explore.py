"""The site explorer: generated sites of simulated clusters lose hosts; the production site run
recovers them; the invariants (dependencies first, DONE means every goal holds) judge it from
the simulators' state. It must find nothing in the site run as written, and catch a site run
that does not wait for its dependencies or that trusts a goal it did not check."""

from __future__ import annotations

from pathlib import Path

import pytest

from drengine.explore.site import explore_sites, generate
from drengine.site.goals import Holding

SEEDS = range(10)


def test_generated_sites_vary() -> None:
    scenarios = [generate(seed) for seed in range(40)]
    assert {len(s.clusters) for s in scenarios} == {2, 3}
    assert any(any(s.depends.values()) for s in scenarios) and any(not any(s.depends.values()) for s in scenarios)
    assert {s.fault for s in scenarios} == {"kill", "hang"} and {len(s.lost) for s in scenarios} == {1, 2}
    assert generate(7) == generate(7)


def test_the_site_run_keeps_both_invariants(tmp_path: Path) -> None:
    findings = explore_sites(SEEDS, tmp_path)
    for finding in findings:
        assert not finding.violations, f"{finding.scenario.words()}: {[v.line() for v in finding.violations]}"
    verdicts = [f.verdict for f in findings]
    assert "done" in verdicts and "incomplete" in verdicts, verdicts


def test_it_catches_a_site_run_that_does_not_wait_for_dependencies(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("drengine.site.run._Site._dependencies_hold", lambda self, cluster: [])
    found = {v.invariant for f in explore_sites(SEEDS, tmp_path) for v in f.violations}
    assert "site.dependency-first" in found


def test_it_catches_a_site_run_that_trusts_goals_it_did_not_check(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("drengine.site.run.holds_now",
                        lambda inventory, cluster, run_dir: Holding(cluster.name, True, "assumed", "assumed"))
    found = {v.invariant for f in explore_sites(SEEDS, tmp_path) for v in f.violations}
    assert found == {"site.dependency-first", "site.done-means-done"}


def test_explore_site_from_the_command_line(tmp_path: Path) -> None:
    from tests.helpers import cli

    code, out = cli("explore", "--site", "--scenarios", "3", "--seed", "2", "--out", str(tmp_path))
    assert code == 0, out
    assert "3 site scenario(s):" in out and "0 with a violation" in out
    assert not list(tmp_path.iterdir())  # scenarios without a violation leave nothing behind
    code, out = cli("explore", "--site", "mariadb-promote-survivor")
    assert code == 2 and "--site explores generated sites" in out

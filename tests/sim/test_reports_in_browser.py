"""The drill report and the history page opened in headless Chromium, asserting what a person
would see: the verdict, the fault and member, one visible bar per step whose length is the
step's duration, the gates as waits, the history's points; and no script error, no console
error, no request leaving the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import Page, needs_chromium
from tests.helpers import ROOT, cli, of_type

INVENTORY = str(ROOT / "inventory" / "simulated.yaml")

pytestmark = needs_chromium


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    p = Page(tmp_path / "profile")
    try:
        yield p
    finally:
        p.close()


def drill(run_dir: Path, *extra: str, fault: str = "kill-primary") -> int:
    code, out = cli("drill", "mariadb-promote-survivor", "-i", INVENTORY, "-c", "sim-mariadb-healthy", "--fault", fault,
                    "--run-dir", str(run_dir), *extra)
    assert code in (0, 1), out
    return int(code)


def test_the_drill_report_shows_verdict_fault_and_one_bar_per_step(tmp_path: Path, page: Page) -> None:
    run_dir = tmp_path / "d"
    assert drill(run_dir, "--rto", "0.001") == 1
    page.open(run_dir / "report.html")
    verdict = page.evaluate("document.getElementById('verdict').innerText")
    assert verdict.startswith("FAILED") and "objective missed: recovery time (RTO)" in verdict
    assert "kill-primary on db1" in page.evaluate("document.getElementById('fault').innerText")
    missed = page.evaluate("document.querySelector('tr.objective.missed td.state-missed').innerText")
    assert missed.startswith("MISSED by")
    bars = page.evaluate("""[...document.querySelectorAll('svg.timeline g.step')].map(g => {
        const r = g.querySelector('rect.bar').getBoundingClientRect();
        const all = [...g.querySelectorAll('rect')].map(x => x.getBoundingClientRect());
        return {step: g.dataset.step, x: r.left, width: r.width, height: r.height,
                left: Math.min(...all.map(x => x.left)), right: Math.max(...all.map(x => x.right))}; })""")
    steps = [e.data["step"] for e in of_type(run_dir, "step_finished")]
    assert [b["step"] for b in bars] == steps and len(steps) == 8
    assert all(b["width"] >= 2 and b["height"] > 0 for b in bars)
    # Each step (its gate's wait, then its work) starts where the step before it ended: bars show
    # durations, not time since the start.
    for before, after in zip(bars, bars[1:], strict=False):
        assert abs(before["right"] - after["left"]) < 2.5, (before, after)
    gates = page.evaluate("document.querySelectorAll('svg.timeline rect.gate-wait').length")
    assert gates == 3  # promote, repoint-replicas and switch-traffic are gated (the dead primary needs no fence)
    assert page.evaluate("document.querySelectorAll('svg.timeline rect.bar.outage').length") == 1
    canaries = page.evaluate("document.querySelector('table.canaries').innerText")
    assert "failed during the outage" in canaries and "lost" in canaries
    assert page.problems() == []


def test_the_history_page_shows_five_points_per_figure_after_five_drills(tmp_path: Path, page: Page) -> None:
    runs = tmp_path / "runs"
    for i in range(5):
        drill(runs / f"drill-{i}", "--rto", "60", "--max-lost-writes", "0")
    # Simulated drills take real time: on a loaded machine their RTO jitters by more than the
    # default 50%, so the threshold is out of reach here (regressions have tests of their own).
    code, out = cli("drill", "history", "--runs", str(runs), "--html", str(tmp_path / "history.html"),
                    "--threshold", "10000")
    assert code == 0, out
    assert out.count("PASSED") == 5
    page.open(tmp_path / "history.html")
    assert page.evaluate("document.querySelectorAll('svg.trend.rto circle.point').length") == 5
    assert page.evaluate("document.querySelectorAll('svg.trend.lost circle.point').length") == 5
    visible = page.evaluate("""[...document.querySelectorAll('svg.trend circle.point')]
        .every(c => { const r = c.getBoundingClientRect(); return r.width > 0 && r.height > 0; })""")
    assert visible
    assert page.evaluate("document.getElementById('regressions').innerText").startswith("No regression")
    assert page.evaluate("document.querySelectorAll('table.history tr').length") == 6  # header + five drills
    assert page.problems() == []


def test_the_browser_check_sees_script_errors_and_requests(tmp_path: Path, page: Page) -> None:
    """The checks above can fail: a broken script and a request off the file are both caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
                   "<script>console.error('boom'); no_such_function();</script></body></html>")
    page.open(bad)
    problems = page.problems()
    assert any(p.startswith("script error") for p in problems), problems
    assert any(p.startswith("console error") for p in problems), problems
    assert any(p.startswith("network request: http://127.0.0.1:9/") for p in problems), problems

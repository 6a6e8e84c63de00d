"""`drengine status` on a loaded machine (issue 25, item 7): the probes' budgets fit a busy
machine, and when one runs out the answer names that budget, not the network."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from drengine import status
from drengine.inventory import load_inventory
from drengine.status import Verdict, probe_fleet
from tests.helpers import ROOT


@contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """`count` processes spinning on the CPU, stopped (by PID) when the block ends."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(1.0)  # let the scheduler feel them
        yield
    finally:
        for proc in loops:
            proc.kill()
        for proc in loops:
            proc.wait(timeout=10)


def test_every_simulated_mongodb_cluster_answers_under_cpu_load() -> None:
    inventory = load_inventory(str(ROOT / "inventory" / "simulated-mongodb.yaml"))
    with busy_loops(2 * (os.cpu_count() or 1)):
        fleet = probe_fleet(inventory)
    unknown = [f"{c.cluster}: {c.headline}" for c in fleet.clusters if c.verdict is Verdict.UNKNOWN]
    assert not unknown, unknown
    assert len(fleet.clusters) == len(inventory.clusters)


def test_a_probe_past_its_budget_names_that_budget_and_not_the_network(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text((ROOT / "inventory" / "simulated.yaml").read_text()
                    .replace("timeouts: {connect: 1, read: 2, catch_up: 10}", "timeouts: {connect: 0.1, read: 0.1}"))
    inventory = load_inventory(str(path))

    def stuck(cluster: Any, backend: Any) -> Any:  # a connector that does not honour its own timeouts
        time.sleep(5)
        raise AssertionError("the budget should have run out first")

    monkeypatch.setattr(status, "_assessor", lambda kind: stuck)
    started = time.monotonic()
    fleet = probe_fleet(inventory, ["sim-mariadb"])
    assert time.monotonic() - started < 4
    answer = fleet.clusters[0]
    assert answer.verdict is Verdict.UNKNOWN
    assert "the probe's budget (2 x (connect 0.1 s + read 0.1 s) + 1 s), counted from when its connector was open" \
        in answer.headline
    advice = " ".join(a.why for a in answer.advice)
    assert "the probe's budget ran out, not a member's timeout" in advice and "timeouts.read" in advice
    assert "network" not in advice
    for probe in fleet._probes:  # the stuck probe ends (and removes its scratch directory) before the test does
        probe.join(timeout=10)

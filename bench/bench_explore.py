"""Scenarios per second of `drengine explore`, per runbook (prints figures; no assertions).

For each runbook, the same scenarios (generated once, fixed seed) are run three ways in this
process:

1. explorer mode: run directories on tmpfs (/dev/shm), journals without fsync (the
   explorer's documented non-durable mode);
2. baseline: the same scenarios with durable journals (fsync on every event, as every real
   run) in a directory on disk;
3. the full search (`explore`): hypothesis generating and running the scenarios.

Figures: scenarios per second of wall time, and per second of this process's CPU time
(the machine is shared: CPU time is what "on one core" means), and the ratio of explorer
mode to the durable baseline. The explorer-mode batch is run `--passes` times (default 3) and
its best pass is shown: on a shared machine a neighbour's load inflates even CPU time (caches,
frequency), and the best pass is the least disturbed one (as timeit takes the minimum).
Usage: bench/bench_explore.py [--scenarios N] [--passes P] [RUNBOOK...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from drengine.explore.command import scratch  # noqa: E402
from drengine.explore.runner import Runner  # noqa: E402
from drengine.explore.scenario import Scenario  # noqa: E402
from drengine.explore.search import explore, scenarios  # noqa: E402

RUNBOOKS = ["mariadb-promote-survivor", "mariadb-rejoin", "galera-bootstrap-survivor", "mongodb-force-primary",
            "mongodb-rejoin", "ceph-degrade", "ceph-restore", "ceph-mon-quorum", "elasticsearch-reallocate"]


def generate(runner: Runner, count: int) -> tuple[list[Scenario], float]:
    out: list[Scenario] = []

    @seed(0)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(scenarios(runner.kit, runner.runbook.name))
    def collect(scenario: Scenario) -> None:
        out.append(scenario)

    cpu = time.process_time()
    collect()
    return out, time.process_time() - cpu


def run_all(runner: Runner, batch: list[Scenario]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for scenario in batch:
        runner.run(scenario)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=200)
    parser.add_argument("--passes", type=int, default=3, help="explorer-mode passes over the batch; the best is shown")
    parser.add_argument("runbooks", nargs="*", default=RUNBOOKS)
    args = parser.parse_args()
    print(f"{'runbook':28} {'explorer/s':>10} {'per CPU-s':>10} {'durable/s':>10} {'ratio':>6} "
          f"{'gen ms':>7} {'search/s':>9} {'search/CPU-s':>12}")
    for name in args.runbooks:
        fast_dir, disk_dir, search_dir = scratch(), Path(tempfile.mkdtemp(prefix="drengine-bench-")), scratch()
        try:
            fast = Runner(name, fast_dir, durable=False)
            batch, gen_cpu = generate(fast, args.scenarios)
            run_all(fast, batch[:10])  # warm-up: imports, caches
            wall, cpu = min((run_all(fast, batch) for _ in range(max(1, args.passes))), key=lambda t: t[1])
            durable_wall, _ = run_all(Runner(name, disk_dir, durable=True), batch)
            started_cpu = time.process_time()
            report = explore(name, search_dir, count=args.scenarios, seed=1,
                             ignore=frozenset({"mariadb.one-writable-primary", "goal.success-implies-goal"}))
            search_cpu = time.process_time() - started_cpu
        finally:
            for d in (fast_dir, disk_dir, search_dir):
                shutil.rmtree(d, ignore_errors=True)
        n = len(batch)
        print(f"{name:28} {n / wall:10.1f} {n / cpu:10.1f} {n / durable_wall:10.1f} {durable_wall / wall:6.2f} "
              f"{gen_cpu / n * 1e3:7.2f} {report.runs / report.seconds:9.1f} {report.runs / search_cpu:12.1f}")


if __name__ == "__main__":
    main()

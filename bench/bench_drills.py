"""Drill benchmarks (prints figures; no assertions).

1. A drill of every runbook on its simulator, end to end, in one process: total wall time
   (goal under 10 s) and peak memory.
2. Drill overhead on the real MariaDB lab: the time drengine adds around the recovery itself
   (health check and canary set-up before the fault, measurements and clean-up after the
   runbook, and writing the reports), goal under 1 s; the recovery's own time for scale.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import cli  # noqa: E402

from drengine.journal import Entry, Event, read_entries  # noqa: E402
from drengine.report import write_all  # noqa: E402

DRILLS = [
    ("mariadb-promote-survivor", "simulated.yaml", "sim-mariadb-healthy", "kill-primary"),
    ("mariadb-promote-survivor", "simulated.yaml", "sim-mariadb-healthy", "cut-replication"),
    ("elasticsearch-reallocate", "simulated-elasticsearch.yaml", "sim-es-healthy", "kill-node"),
    ("mongodb-force-primary", "simulated-mongodb.yaml", "sim-mongo-healthy", "kill-majority"),
    ("galera-bootstrap-survivor", "simulated-galera.yaml", "sim-galera-healthy", "kill-two-nodes"),
    ("ceph-degrade", "simulated-ceph.yaml", "sim-ceph-healthy", "kill-osds"),
]


def all_simulated() -> None:
    root = Path(tempfile.mkdtemp(prefix="drengine-bench-drills-"))
    os.environ.setdefault("DRENGINE_LOCK_DIR", str(root / "locks"))
    started = time.perf_counter()
    try:
        for runbook, inventory, cluster, fault in DRILLS:
            code, out = cli("drill", runbook, "-i", str(ROOT / "inventory" / inventory), "-c", cluster, "--fault", fault,
                            "--run-dir", str(root / f"{cluster}-{fault}"))
            if code != 0:
                print(f"drill {runbook} {fault} failed ({code}):\n{out[-1500:]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"all drills on the simulators: {len(DRILLS)} drills in {total:.2f} s (goal < 10 s), peak RSS {peak:.0f} MB")


@dataclass(frozen=True)
class Phases:
    """A drill's journal cut into what drengine adds and what the runbook takes (seconds)."""

    before_fault: float  # health check, canaries set up, the fault injected
    runbook: float  # first step started to last step finished
    after_runbook: float  # measurements and clean-up until the run's end


def phases(entries: list[Entry]) -> Phases:
    """From the journal alone. The fault is its own event (fault_injected); a drill without one
    is refused by name rather than stopping with StopIteration."""
    fault = next((e.ts for e in entries if e.type == Event.FAULT_INJECTED), None)
    steps = [e for e in entries if e.type in (Event.STEP_STARTED, Event.STEP_FINISHED)]
    if fault is None or not steps:
        kinds = sorted({e.type.value for e in entries})
        raise ValueError(f"not a drill journal: no fault_injected event or no step (events: {', '.join(kinds)})")
    runbook_start = next(e.ts for e in steps if e.type == Event.STEP_STARTED)
    runbook_end = [e for e in steps if e.type == Event.STEP_FINISHED][-1].ts
    return Phases(before_fault=fault - entries[0].ts, runbook=runbook_end - runbook_start,
                  after_runbook=entries[-1].ts - runbook_end)


def lab_overhead() -> None:
    from drengine.datastores.mariadb import lab as labdb
    from drengine.lab.procs import LabDir

    root = tempfile.mkdtemp(prefix="drengine-bench-drill-lab-")
    os.chmod(root, 0o755)
    lab = LabDir(root)
    inventory = Path(root) / "inventory.yaml"
    try:
        labdb.up(lab, inventory_out=str(inventory))
        run_dir = Path(root) / "drill"
        started = time.perf_counter()
        code, out = cli("drill", "mariadb-promote-survivor", "-i", str(inventory), "-c", "lab-mariadb", "--fault",
                        "kill-primary", "--run-dir", str(run_dir))
        whole = time.perf_counter() - started
        if code != 0:
            print(f"lab drill failed ({code}):\n{out[-2000:]}")
            return
        cut = phases(list(read_entries(run_dir / "journal.jsonl")))
        t = time.perf_counter()
        write_all(run_dir)
        reports = time.perf_counter() - t
        total = cut.before_fault + cut.after_runbook + reports
        print(f"lab drill (MariaDB kill-primary): whole command {whole:.2f} s; runbook {cut.runbook:.2f} s; "
              f"overhead: before the fault {cut.before_fault:.2f} s + after the runbook {cut.after_runbook:.2f} s "
              f"+ reports {reports:.2f} s = {total:.2f} s (goal < 1 s)")
    finally:
        labdb.down(lab)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    all_simulated()
    if "--sim-only" not in sys.argv:
        lab_overhead()

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
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import cli  # noqa: E402

from drengine.journal import read_entries  # noqa: E402
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
    for runbook, inventory, cluster, fault in DRILLS:
        code, out = cli("drill", runbook, "-i", str(ROOT / "inventory" / inventory), "-c", cluster, "--fault", fault,
                        "--run-dir", str(root / f"{cluster}-{fault}"))
        if code != 0:
            print(f"drill {runbook} {fault} failed ({code}):\n{out[-1500:]}")
    total = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"all drills on the simulators: {len(DRILLS)} drills in {total:.2f} s (goal < 10 s), peak RSS {peak:.0f} MB")


def lab_overhead() -> None:
    from drengine.datastores.mariadb import lab as labdb
    from drengine.lab.procs import LabDir

    root = tempfile.mkdtemp(prefix="drengine-bench-drill-lab-")
    os.chmod(root, 0o755)
    lab = LabDir(root)
    inventory = Path(root) / "inventory.yaml"
    labdb.up(lab, inventory_out=str(inventory))
    text = inventory.read_text()
    inventory.write_text(text)
    try:
        run_dir = Path(root) / "drill"
        started = time.perf_counter()
        code, out = cli("drill", "mariadb-promote-survivor", "-i", str(inventory), "-c", "lab-mariadb", "--fault",
                        "kill-primary", "--run-dir", str(run_dir))
        whole = time.perf_counter() - started
        if code != 0:
            print(f"lab drill failed ({code}):\n{out[-2000:]}")
            return
        entries = list(read_entries(run_dir / "journal.jsonl"))
        first = entries[0].ts
        fault = next(e.ts for e in entries if e.type.value == "note" and str(e.data.get("text", "")).startswith("fault injected"))
        steps = [e for e in entries if e.type.value in ("step_started", "step_finished")]
        runbook_start = next(e.ts for e in entries if e.type.value == "step_started")
        runbook_end = [e for e in steps if e.type.value == "step_finished"][-1].ts
        finished = entries[-1].ts
        t = time.perf_counter()
        write_all(run_dir)
        reports = time.perf_counter() - t
        before = fault - first
        after = finished - runbook_end
        print(f"lab drill (MariaDB kill-primary): whole command {whole:.2f} s; runbook {runbook_end - runbook_start:.2f} s; "
              f"overhead: before the fault {before:.2f} s + after the runbook {after:.2f} s + reports {reports:.2f} s "
              f"= {before + after + reports:.2f} s (goal < 1 s)")
    finally:
        labdb.down(lab)


if __name__ == "__main__":
    all_simulated()
    if "--sim-only" not in sys.argv:
        lab_overhead()

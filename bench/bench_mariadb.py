"""MariaDB benchmarks on the real lab (prints figures; no assertions).

1. Recovery time: `drengine run mariadb-promote-survivor --yes`, start to a writable new
   primary with the other replica repointed, against a minimal pymysql script sending the
   same statements, in the same run (each on a fresh lab with the primary killed).
2. Probe time of a three-member cluster with one member killed and one hung, against the
   configured timeouts.
3. `drengine --help` start-up time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from drengine.datastores.mariadb import lab as labdb  # noqa: E402
from drengine.lab.procs import LabDir  # noqa: E402


def fresh_lab() -> tuple[LabDir, str]:
    root = tempfile.mkdtemp(prefix="drengine-bench-")
    os.chmod(root, 0o755)
    lab = LabDir(root)
    inventory = str(Path(root) / "inventory.yaml")
    labdb.up(lab, inventory_out=inventory)
    labdb.sql(lab, "db1", "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)",
              *[f"INSERT INTO app.t VALUES ({i})" for i in range(100)])
    labdb.wait_replicated(lab)
    labdb.kill(lab, "db1")
    return lab, inventory


def minimal_script(lab: LabDir) -> float:
    import pymysql

    pw = (lab.root / "mariadb" / "root.password").read_text().strip()
    repl = (lab.root / "mariadb" / "repl.password").read_text().strip()
    started = time.perf_counter()

    def run(port: int, *stmts: str) -> None:
        conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password=pw, connect_timeout=1, read_timeout=2,
                               autocommit=True)
        with conn.cursor() as cur:
            for s in stmts:
                cur.execute(s)
        conn.close()

    run(23062, "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only=0")
    run(23063, "STOP SLAVE", f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=23062, MASTER_USER='repl', "
        f"MASTER_PASSWORD='{repl}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1", "START SLAVE")
    return time.perf_counter() - started


def drengine_run(inventory: str, run_dir: Path) -> tuple[float, float]:
    from helpers import cli

    from drengine.journal import read_entries

    started = time.perf_counter()
    code, out = cli("run", "mariadb-promote-survivor", "-i", inventory, "-c", "lab-mariadb", "--yes", "--run-dir", str(run_dir))
    total = time.perf_counter() - started
    assert code == 0, out
    entries = list(read_entries(run_dir / "journal.jsonl"))
    first = entries[0].ts
    repointed = next(e.ts for e in entries if e.type.value == "step_finished" and e.data["step"] == "repoint-replicas")
    return repointed - first, total


def recovery() -> None:
    os.environ.setdefault("DRENGINE_LOCK_DIR", tempfile.mkdtemp())
    script, engine, engine_total = [], [], []
    for _ in range(3):
        lab, _inv = fresh_lab()
        try:
            script.append(minimal_script(lab))
        finally:
            labdb.down(lab)
        lab, inv = fresh_lab()
        try:
            to_repoint, total = drengine_run(inv, lab.root / "run")
            engine.append(to_repoint)
            engine_total.append(total)
        finally:
            labdb.down(lab)
    s, e = statistics.median(script), statistics.median(engine)
    print(f"recovery: minimal pymysql script {s * 1000:.0f} ms; drengine start to replica repointed {e * 1000:.0f} ms "
          f"(ratio {e / s:.2f}x, goal <= 1.5x and < 1 s); whole run incl. verify {statistics.median(engine_total) * 1000:.0f} ms")


def probe() -> None:
    from drengine.datastores.mariadb.connector import MariaDBBackend
    from drengine.inventory import load_inventory

    root = tempfile.mkdtemp(prefix="drengine-bench-")
    os.chmod(root, 0o755)
    lab = LabDir(root)
    inventory = str(Path(root) / "inventory.yaml")
    labdb.up(lab, inventory_out=inventory)
    try:
        labdb.kill(lab, "db2")
        labdb.hang(lab, "db3")
        inv = load_inventory(inventory)
        cluster = inv.cluster("lab-mariadb")
        backend = MariaDBBackend(cluster, inv)
        t = cluster.timeouts
        times = []
        for _ in range(3):
            started = time.perf_counter()
            view = backend.observe()
            times.append(time.perf_counter() - started)
        assert [s.reachable for s in view.servers] == [True, False, False]
        worst = max(times)
        budget = t.connect + t.read
        print(f"probe: one killed, one hung: {worst:.2f} s worst of 3 (connect {t.connect:g} s + read {t.read:g} s = "
              f"{budget:g} s; goal within timeout + 0.5 s = {budget + 0.5:g} s)")
    finally:
        labdb.resume(lab, "db3")
        labdb.down(lab)


def startup() -> None:
    times = []
    exe = str(ROOT / ".venv" / "bin" / "drengine")
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([exe, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    baseline = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True)
        baseline.append(time.perf_counter() - started)
    print(f"startup: drengine --help {statistics.median(times) * 1000:.0f} ms median of 5 "
          f"(bare python {statistics.median(baseline) * 1000:.0f} ms; goal < 300 ms)")


if __name__ == "__main__":
    startup()
    probe()
    recovery()

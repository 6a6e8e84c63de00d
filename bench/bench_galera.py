"""Benchmarks for Galera recovery and host fan-out on the real lab (prints figures, no asserts).

1. Survivor bootstrap: after two of three nodes are SIGKILLed and the survivor has gone
   non-Primary (Galera's own failure detection is excluded), the time from starting
   `drengine run galera-bootstrap-survivor --yes` to its first successful write on the
   survivor, against a minimal pymysql script sending the same statements
   (pc.bootstrap=YES, wait for Primary, the heartbeat DDL and write). Both are measured as
   new processes (interpreter start included) and, for drengine, also from the journal's
   run_started event (in-process).
2. Command fan-out: the same command on 20 lab SSH hosts in parallel against one host
   alone, each with a fresh SSH connection (connect, exec, close), then again with the
   connections already open (as within a run, where the backend keeps one per host).

Run: .venv/bin/python bench/bench_galera.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from drengine.clock import wait_until
from drengine.datastores.galera import lab as galera
from drengine.inventory import Host, load_inventory
from drengine.journal import read_entries
from drengine.lab import ssh as ssh_lab
from drengine.lab.procs import LabDir
from drengine.transport import run_on_hosts, transport_for

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PORT_BASE = 3336
WRITE_PREFIX = "REPLACE INTO drengine.heartbeat"

MINIMAL = r'''
import sys, time
t0 = time.time()
import pymysql
port, password = int(sys.argv[1]), open(sys.argv[2]).read().strip()
c = pymysql.connect(host="127.0.0.1", port=port, user="root", password=password, autocommit=True,
                    connect_timeout=2, read_timeout=5)
cur = c.cursor()
cur.execute("SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
while True:
    cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_cluster_status'")
    if cur.fetchone()[1] == "Primary":
        break
    time.sleep(0.02)
cur.execute("CREATE DATABASE IF NOT EXISTS drengine")
cur.execute("CREATE TABLE IF NOT EXISTS drengine.heartbeat (id VARCHAR(64) PRIMARY KEY, written_at DOUBLE NOT NULL)")
cur.execute("REPLACE INTO drengine.heartbeat (id, written_at) VALUES (%s, %s)", ("galera-recovery", time.time()))
print(time.time() - t0)
print(time.time())
'''


def _break_quorum(lab: LabDir) -> None:
    galera.kill_node(lab, "g2")
    galera.kill_node(lab, "g3")
    assert wait_until(lambda: galera.wsrep_status(lab, "g1")["wsrep_cluster_status"] == "non-Primary", 30, 0.05)


def _whole(lab: LabDir) -> None:
    def ok() -> bool:
        try:
            return all(galera.is_synced(galera.wsrep_status(lab, n), cluster_size=3) for n in galera.NODE_NAMES)
        except Exception:  # noqa: BLE001 - still starting
            return False

    assert wait_until(ok, 90, 0.2), "the cluster did not become whole again"


def bench_drengine(lab: LabDir, inventory: Path, run_dir: Path) -> tuple[float, float]:
    """(process start to the write, run_started to the write), in seconds."""
    _break_quorum(lab)
    started = time.time()
    result = subprocess.run(
        [PYTHON, "-m", "drengine.cli", "run", "galera-bootstrap-survivor", "-i", str(inventory), "-c", galera.CLUSTER,
         "--yes", "--run-dir", str(run_dir)],
        check=False, capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"drengine run failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    entries = list(read_entries(run_dir / "journal.jsonl"))
    run_started = next(e.ts for e in entries if e.type.value == "run_started")
    wrote = next(e.ts for e in entries if e.type.value == "statement_sent" and e.data["text"].startswith(WRITE_PREFIX))
    _whole(lab)
    return wrote - started, wrote - run_started


def bench_minimal(lab: LabDir, port: int, password_file: str) -> tuple[float, float]:
    """(process start to the write, script's own time after its interpreter started)."""
    _break_quorum(lab)
    started = time.time()
    result = subprocess.run([PYTHON, "-c", MINIMAL, str(port), password_file], check=False, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"minimal script failed:\n{result.stderr}")
    own, wrote = (float(x) for x in result.stdout.split())
    for node in ("g2", "g3"):
        galera.start_node(lab, node, recover=True)
    _whole(lab)
    return wrote - started, own


def bench_fanout(root: Path, n_hosts: int = 20, repeats: int = 5) -> dict[str, float]:
    lab = LabDir(root / "fanout")
    info = ssh_lab.up(lab, n_hosts=n_hosts, first_address="127.0.0.60")
    hosts = {name: Host.model_validate(spec) for name, spec in info["hosts"].items()}
    command = ["cat", "/proc/loadavg"]
    try:
        figures: dict[str, list[float]] = {"one host": [], f"{n_hosts} hosts, 8 at a time": [],
                                           f"{n_hosts} hosts, {n_hosts} at a time": []}
        first = sorted(hosts)[0]
        for _ in range(repeats):
            for label, targets, parallel in (
                ("one host", {first: hosts[first]}, 1),
                (f"{n_hosts} hosts, 8 at a time", hosts, 8),
                (f"{n_hosts} hosts, {n_hosts} at a time", hosts, n_hosts),
            ):
                t = time.monotonic()
                results = run_on_hosts(targets, command, max_parallel=parallel, timeout=30)
                figures[label].append(time.monotonic() - t)
                failed = {k: v for k, v in results.items() if not hasattr(v, "exit_status")}
                if failed:
                    raise RuntimeError(f"fan-out failed on {failed}")
        # The same with the connections already open, as within a run (a backend keeps one per host).
        transports = {name: transport_for(host, name) for name, host in hosts.items()}
        try:
            run_on_hosts(transports, command, max_parallel=n_hosts, timeout=30)  # connect once
            for label, names in (("one host, connection open", [first]), (f"{n_hosts} hosts, connections open", list(hosts))):
                figures[label] = []
                for _ in range(repeats):
                    t = time.monotonic()
                    run_on_hosts({n: transports[n] for n in names}, command, max_parallel=n_hosts, timeout=30)
                    figures[label].append(time.monotonic() - t)
        finally:
            for transport in transports.values():
                transport.close()
        return {k: statistics.median(v) for k, v in figures.items()}
    finally:
        ssh_lab.down(lab)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="drg-bench-galera-"))
    os.chmod(root, 0o755)  # the nodes run as mysql
    lab = LabDir(root)
    inventory = root / "inventory.yaml"
    out: dict[str, object] = {}
    try:
        hosts = ssh_lab.up(lab, n_hosts=3, first_address="127.0.0.51", inventory_out=inventory)
        up = galera.up(lab, inventory_out=inventory, port_base=PORT_BASE, hosts=sorted(hosts["hosts"]))
        data = yaml.safe_load(inventory.read_text())
        data["clusters"][galera.CLUSTER]["timeouts"].update({"read": 2.0})
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        cluster = load_inventory(inventory).cluster(galera.CLUSTER)
        password_file = up["password_file"]
        drengine_runs, drengine_inproc, minimal_runs, minimal_own = [], [], [], []
        for i in range(args.rounds):
            total, inproc = bench_drengine(lab, inventory, root / f"run-{i}")
            drengine_runs.append(total)
            drengine_inproc.append(inproc)
            total, own = bench_minimal(lab, cluster.members[0].port, password_file)
            minimal_runs.append(total)
            minimal_own.append(own)
        d, m = statistics.median(drengine_runs), statistics.median(minimal_runs)
        di, mo = statistics.median(drengine_inproc), statistics.median(minimal_own)
        out["survivor_bootstrap_to_write_seconds"] = {
            "drengine run --yes (new process)": round(d, 3),
            "minimal pymysql script (new process)": round(m, 3),
            "ratio (processes)": round(d / m, 2),
            "drengine from run_started (in-process)": round(di, 3),
            "minimal script after its interpreter started": round(mo, 3),
            "ratio (in-process)": round(di / mo, 2),
            "rounds": args.rounds,
            "all drengine runs": [round(x, 3) for x in drengine_runs],
            "all minimal runs": [round(x, 3) for x in minimal_runs],
        }
        fan = bench_fanout(root)
        single = fan["one host"]
        out["fanout_seconds_median_of_5"] = {k: round(v, 3) for k, v in fan.items()}
        out["fanout_ratio_vs_one_host"] = {
            "20 hosts, 8 at a time (new connections)": round(fan["20 hosts, 8 at a time"] / single, 2),
            "20 hosts, 20 at a time (new connections)": round(fan["20 hosts, 20 at a time"] / single, 2),
            "20 hosts (connections open)": round(fan["20 hosts, connections open"] / fan["one host, connection open"], 2),
        }
    finally:
        galera.down(lab)
        ssh_lab.down(lab)
        leftovers = lab.processes()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out, indent=1))
    if leftovers:
        print(f"WARNING: processes left running: {leftovers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

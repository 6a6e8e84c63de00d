"""Fencing benchmark on the real MariaDB lab: recovery as the application sees it, through HAProxy.

A canary writer, with the lab's application account, writes a row through HAProxy's write
frontend every 20 ms, each on a new connection with a 0.5 s read timeout. The primary is hung
(SIGSTOP) at T0; then, on a fresh lab each time, either

  (a) a minimal script sends the commands drengine sends: one probe of every server with the
      inventory's timeouts (the observation that shows the primary hung), the fence (the
      inventory's service stop template, which continues and stops the hung server), STOP SLAVE,
      RESET SLAVE ALL and read_only=0 on db2, the repoint of db3, and the HAProxy runtime API
      commands that make db2 the only server of the write backend; or
  (b) `drengine run mariadb-promote-survivor --yes --accept-data-loss` (in-process, as `cli`).

Printed: fault to first canary acknowledged through HAProxy, median of the rounds, and the ratio
drengine / script (goal: at most 1.5x). Run under the lab lock:
    flock /tmp/drengine-lab.lock .venv/bin/python bench/bench_fencing.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import yaml  # noqa: E402

from drengine.datastores.mariadb import lab as labdb  # noqa: E402
from drengine.lab.procs import LabDir  # noqa: E402


class Canaries:
    """Writes through HAProxy's write frontend on a timer; remembers when each write was acknowledged."""

    def __init__(self, lab: LabDir, interval: float = 0.02) -> None:
        self.password = (lab.root / "mariadb" / "app.password").read_text().strip()
        self.interval = interval
        self.acked: list[float] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._seq = 0

    def _write(self) -> None:
        import pymysql

        self._seq += 1
        try:
            conn = pymysql.connect(host="127.0.0.1", port=labdb.WRITE_PORT, user="app", password=self.password,
                                   connect_timeout=0.5, read_timeout=0.5, write_timeout=0.5, autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO drengine.canary (id, written_at) VALUES (%s, %s)",
                                (f"bench-{self._seq:06d}", time.time()))
            finally:
                conn.close()
            self.acked.append(time.monotonic())
        except Exception:  # noqa: BLE001 - a failed canary is the outage being measured
            self.failed += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def start(self) -> None:
        self._thread.start()

    def first_after(self, t0: float, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            after = [t for t in self.acked if t > t0]
            if after:
                return min(after) - t0
            time.sleep(0.005)
        raise RuntimeError("no canary was acknowledged through HAProxy after the fault")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def fresh_lab() -> tuple[LabDir, str]:
    root = tempfile.mkdtemp(prefix="drengine-bench-fence-")
    os.chmod(root, 0o755)
    lab = LabDir(root)
    inventory = str(Path(root) / "inventory.yaml")
    labdb.up(lab, inventory_out=inventory)
    labdb.sql(lab, "db1", "CREATE DATABASE IF NOT EXISTS drengine",
              "CREATE TABLE drengine.canary (id VARCHAR(64) PRIMARY KEY, written_at DOUBLE NOT NULL)")
    labdb.wait_replicated(lab)
    return lab, inventory


def _admin(command: str, sock: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(2)
        conn.connect(sock)
        conn.sendall(command.encode() + b"\n")
        answer = conn.recv(4096).decode().strip()
    if answer:
        raise RuntimeError(f"HAProxy refused `{command}`: {answer}")


def minimal_script(lab: LabDir, inventory: str) -> None:
    """The commands drengine sends, and nothing else (no journal, no gates, no goal check)."""
    import pymysql

    cluster = yaml.safe_load(Path(inventory).read_text())["clusters"]["lab-mariadb"]
    pw = (lab.root / "mariadb" / "root.password").read_text().strip()
    repl = (lab.root / "mariadb" / "repl.password").read_text().strip()
    t = cluster["timeouts"]

    def connect(port: int) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        return pymysql.connect(host="127.0.0.1", port=port, user="root", password=pw, connect_timeout=t["connect"],
                               read_timeout=t["read"], autocommit=True)

    def probe(port: int) -> bool:
        try:
            conn = connect(port)
            with conn.cursor() as cur:
                cur.execute("SELECT @@read_only")
            conn.close()
            return True
        except pymysql.err.MySQLError:
            return False

    with ThreadPoolExecutor(3) as pool:
        answered = list(pool.map(probe, [23061, 23062, 23063]))
    assert answered == [False, True, True], answered
    stop = cluster["service"]["stop"].replace("{name}", "db1")
    subprocess.run(["/bin/sh", "-c", stop], check=True, capture_output=True, timeout=60)

    def run(port: int, *stmts: str) -> None:
        conn = connect(port)
        with conn.cursor() as cur:
            for s in stmts:
                cur.execute(s)
        conn.close()

    run(23062, "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only=0")
    run(23063, "STOP SLAVE", f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=23062, MASTER_USER='repl', "
        f"MASTER_PASSWORD='{repl}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1", "START SLAVE")
    sock = cluster["proxies"][0]["api"]["socket"]
    for command in ("set server mariadb_write/db2 state ready", "set server mariadb_write/db1 state maint",
                    "set server mariadb_read/db1 state maint"):
        _admin(command, sock)


def drengine_run(inventory: str, run_dir: Path) -> None:
    from helpers import cli

    code, out = cli("run", "mariadb-promote-survivor", "-i", inventory, "-c", "lab-mariadb", "--yes",
                    "--accept-data-loss", "--run-dir", str(run_dir))
    if code != 0:
        raise RuntimeError(out)


def steps_of(run_dir: Path) -> str:
    from drengine.journal import read_entries

    started: dict[str, float] = {}
    took = []
    for e in read_entries(run_dir / "journal.jsonl"):
        if e.type.value == "step_started":
            started[e.data["step"]] = e.ts
        elif e.type.value == "step_finished" and e.data["step"] in started:
            took.append(f"{e.data['step']} {e.ts - started.pop(e.data['step']):.2f}")
    return ", ".join(took)


def one_round(how: str) -> float:
    lab, inventory = fresh_lab()
    canaries = Canaries(lab)
    try:
        canaries.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        labdb.hang(lab, "db1")
        if how == "script":
            minimal_script(lab, inventory)
        else:
            run_dir = lab.root / "run"
            drengine_run(inventory, run_dir)
            print(f"    drengine steps (s): {steps_of(run_dir)}", flush=True)
        return canaries.first_after(t0)
    finally:
        canaries.stop()
        if labdb.is_running(lab, "db1"):
            labdb.resume(lab, "db1")
        labdb.down(lab)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DRENGINE_LOCK_DIR", tempfile.mkdtemp())
    script, engine = [], []
    for i in range(args.rounds):
        script.append(one_round("script"))
        engine.append(one_round("drengine"))
        print(f"  round {i + 1}: minimal script {script[-1]:.2f} s, drengine {engine[-1]:.2f} s", flush=True)
    s, e = statistics.median(script), statistics.median(engine)
    print(f"fencing: primary hung, fault to first write acknowledged through HAProxy: minimal script {s:.2f} s, "
          f"drengine {e:.2f} s (ratio {e / s:.2f}x, goal <= 1.5x; median of {args.rounds})")


if __name__ == "__main__":
    main()

"""Helpers for lock tests: drengine runs in their own processes (separate "machines" when
given separate lock directories), held at a journal event until the test lets them go."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = "mariadb-promote-survivor"
CLUSTER = "sim-mariadb"


def machine_env(lock_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRENGINE_TEST_")}
    env.update(DRENGINE_LOCK_DIR=str(lock_dir), PYTHONPATH=str(ROOT), **extra)
    return env


def simulated_inventory(tmp_path: Path, lock: str | None = None) -> Path:
    """The simulated MariaDB cluster of inventory/simulated.yaml, with an optional `lock:` section."""
    text = (ROOT / "inventory" / "simulated.yaml").read_text()
    if lock is not None:
        text += f"lock: {lock}\n"
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path


@dataclass
class HeldRun:
    proc: subprocess.Popen[str]
    run_dir: Path
    release: Path

    def let_go(self, timeout: float = 60) -> tuple[int, str]:
        self.release.touch()
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out


def own_cluster(run_dir: Path) -> str:
    """Each run of these tests recovers its own copy of the simulated cluster (they test the lock,
    not what an earlier run left: a second run on the shared state would rightly refuse, the
    first having promoted a replica); a resume continues its run's copy."""
    return str(run_dir.parent / f"{run_dir.name}.sim")


def run(inventory: Path, run_dir: Path, lock_dir: Path, *flags: str, timeout: float = 120, **env: str) -> tuple[int, str]:
    env.setdefault("DRENGINE_SIM_DIR", own_cluster(run_dir))
    done = subprocess.run(
        [sys.executable, "-m", "drengine.cli", "run", RUNBOOK, "-i", str(inventory), "-c", CLUSTER, "--yes",
         "--run-dir", str(run_dir), *flags],
        capture_output=True, text=True, check=False, env=machine_env(lock_dir, **env), cwd=ROOT, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout + done.stderr


def resume(run_dir: Path, lock_dir: Path, *flags: str, timeout: float = 120) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "drengine.cli", "run", "--resume", str(run_dir), "--yes", *flags],
        capture_output=True, text=True, check=False, env=machine_env(lock_dir, DRENGINE_SIM_DIR=own_cluster(run_dir)),
        cwd=ROOT, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout + done.stderr


def start_held(inventory: Path, run_dir: Path, lock_dir: Path, hold_at: str, *flags: str) -> HeldRun:
    """Start a run that stops after the journal event `TYPE:STEP`, holding its lock, until let go."""
    release = run_dir.parent / f"{run_dir.name}.release"
    proc = subprocess.Popen(
        [sys.executable, "-m", "drengine.cli", "run", RUNBOOK, "-i", str(inventory), "-c", CLUSTER, "--yes",
         "--run-dir", str(run_dir), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, stdin=subprocess.DEVNULL,
        env=machine_env(lock_dir, DRENGINE_TEST_HOLD_AT=f"{hold_at}:{release}", DRENGINE_SIM_DIR=own_cluster(run_dir)),
    )
    reached = Path(f"{release}.reached")
    deadline = time.monotonic() + 60
    while not reached.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.communicate(timeout=10)[0] if proc.poll() is not None else "(still running)"
            raise AssertionError(f"the run did not reach {hold_at} (exit {proc.returncode}):\n{out}")
        time.sleep(0.02)
    return HeldRun(proc, run_dir, release)

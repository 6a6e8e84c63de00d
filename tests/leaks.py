"""What a test run leaves behind: every temporary directory the suite makes in its own process
lands in one run directory (tests/conftest.py points `tempfile.tempdir` at it), so whatever is
still there when the session ends was made by this run and not removed by its fixture.

One `make test` once left 24 lab directories (2.5 GB) in /tmp, the disk that later stopped the
Ceph monitors at 5% free: a leak is reported and fails the run, then cleaned up anyway.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from drengine.lab.procs import LabDir, is_ours

# pytest's own base directory (tmp_path, tmp_path_factory): removed by pytest itself when the
# run passes (tmp_path_retention_policy = "failed"), kept for the failed tests otherwise.
PYTEST_BASE = "pytest-of-"


@dataclass(frozen=True)
class Leak:
    path: Path
    size: int  # bytes
    running: tuple[str, ...]  # lab processes recorded there that still run: kind/name pid N

    def describe(self) -> str:
        alive = f"; still running: {', '.join(self.running)}" if self.running else ""
        return f"{self.path} ({self.size / 1e6:.1f} MB){alive}"


def size_of(path: Path) -> int:
    total = 0
    for parent, _dirs, files in os.walk(path, onerror=lambda _e: None):
        for name in files:
            try:
                total += (Path(parent) / name).lstat().st_size
            except OSError:
                continue
    return total


def lab_dirs(path: Path) -> list[Path]:
    """Every lab directory (one holding a lab.json) at or under `path`."""
    return sorted(p.parent for p in path.rglob("lab.json")) if path.is_dir() else []


def running_in(path: Path) -> tuple[str, ...]:
    return tuple(f"{p.kind}/{p.name} pid {p.pid}" for lab in lab_dirs(path) for p in LabDir(lab).processes() if is_ours(p))


def leftovers(run_root: Path) -> list[Leak]:
    """What the run's fixtures left in the run directory (pytest's own base directory aside)."""
    if not run_root.is_dir():
        return []
    return [Leak(entry, size_of(entry), running_in(entry))
            for entry in sorted(run_root.iterdir()) if not entry.name.startswith(PYTEST_BASE)]


def stop_labs(path: Path) -> None:
    """Stop, by their recorded PIDs, the lab processes a leaked directory still runs."""
    for lab in lab_dirs(path):
        LabDir(lab).stop_kind()


def remove(path: Path) -> None:
    stop_labs(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

"""Scenarios per CPU-second of `drengine explore`, per runbook, measured on the command a user runs.

For each runbook, `python -m drengine explore RUNBOOK --scenarios N --seed S --out DIR` is run as
a child process, exactly as an operator would run it, and its CPU time (user + system, from
`resource.getrusage(RUSAGE_CHILDREN)`) is what the figure divides by: the machine is shared, and
CPU time is what "on one core" means. The process's start-up (interpreter, imports) is part of
the command and so of the figure; it is also measured alone (`drengine explore --help`) and shown,
so its share is visible. A violation found (exit 1) does not stop the bench: the scenarios were run.
The number of scenarios is the command's own default (500) unless `--scenarios` says otherwise.

The tree's modules are compiled to bytecode first (`compileall`, into its `__pycache__`), as an
installed drengine's are: with PYTHONDONTWRITEBYTECODE set (as on this project's machines) every
start would otherwise compile every module again, a third of the start-up.

With `--baseline TREE` (another checkout, e.g. /work/main) the same commands are run with that
tree's `drengine` too, and the ratio (this tree / baseline) is shown, so a change is measured
against what it replaces in the same run, under the same load.

Targets (issue 21 item 9): >= 50 scenarios per CPU-second for MongoDB and Elasticsearch,
>= 200 for MariaDB and Galera.

Usage: bench/bench_explore.py [--scenarios N] [--seed S] [--baseline TREE] [RUNBOOK...]
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RUNBOOKS = ["mariadb-promote-survivor", "mariadb-rejoin", "galera-bootstrap-survivor", "mongodb-force-primary",
            "mongodb-rejoin", "ceph-degrade", "ceph-restore", "ceph-mon-quorum", "elasticsearch-reallocate"]
TARGETS = {"mariadb": 200, "galera": 200, "mongodb": 50, "elasticsearch": 50}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(tree: Path, args: list[str]) -> tuple[float, float, int]:
    """CPU seconds and wall seconds of `python -m drengine ARGS` run with `tree`'s drengine, and its exit code."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cpu, wall = children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "drengine", *args], cwd=tree, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return children_cpu() - cpu, time.perf_counter() - wall, done.returncode


def explore_rate(tree: Path, runbook: str, count: int, seed: int) -> tuple[float, float, int]:
    """Scenarios per CPU-second and per wall second of the explore command, and its exit code."""
    out = Path(tempfile.mkdtemp(prefix="drengine-bench-out-"))
    try:
        cpu, wall, code = timed(tree, ["explore", runbook, "--scenarios", str(count), "--seed", str(seed),
                                       "--out", str(out)])
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return count / cpu, count / wall, code


def compiled(tree: Path) -> None:
    """The tree's bytecode, as an installed package has it (quiet; already compiled is kept)."""
    compileall.compile_dir(tree / "drengine", quiet=1)


def target(runbook: str) -> str:
    goal = TARGETS.get(runbook.split("-")[0])
    return f">={goal}" if goal else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with (its drengine, same commands)")
    parser.add_argument("runbooks", nargs="*", default=RUNBOOKS)
    args = parser.parse_args()
    compiled(ROOT)
    if args.baseline:
        compiled(args.baseline.resolve())
    startup, _, _ = timed(ROOT, ["explore", "--help"])
    print(f"start-up of the command (interpreter and imports): {startup * 1e3:.0f} ms CPU; "
          f"{args.scenarios} scenarios per runbook, seed {args.seed}")
    header = f"{'runbook':28} {'per CPU-s':>9} {'per s':>7} {'target':>6} {'exit':>4}"
    if args.baseline:
        header += f" {'baseline/CPU-s':>14} {'ratio':>6}"
    print(header)
    for name in args.runbooks:
        rate, wall_rate, code = explore_rate(ROOT, name, args.scenarios, args.seed)
        line = f"{name:28} {rate:9.1f} {wall_rate:7.1f} {target(name):>6} {code:4d}"
        if args.baseline:
            base, _, _ = explore_rate(args.baseline.resolve(), name, args.scenarios, args.seed)
            line += f" {base:14.1f} {rate / base:6.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()

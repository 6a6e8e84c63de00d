"""The `drengine explore` command's work, apart from printing (drengine/cli/explore.py prints the lines
these return): which runbooks, where the scenarios run, exploring, writing and replaying cases."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from drengine.errors import InputError


def runbooks(names: tuple[str, ...], every: bool) -> list[str]:
    """The runbooks to explore: those named, or with --all every one some explore kit covers."""
    from drengine.datastores import kinds
    from drengine.explore.kit import kit_for

    if every:
        if names:
            raise InputError("give runbook names or --all, not both")
        found: list[str] = []
        for kind in kinds():
            try:
                found += kit_for(kind).runbooks
            except InputError:
                continue
        return found
    if not names:
        raise InputError("name the runbook(s) to explore (see `drengine runbook list`), or --all")
    return list(names)


def seeds(text: str) -> list[int]:
    """`--seed`: one seed, a range `0-19`, or a list `0,3,7` (ranges allowed in it)."""
    found: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise InputError(f"--seed {text!r}: expected a seed, a range (0-19) or a list (0,3,7)") from None
        if high < low:
            raise InputError(f"--seed {text!r}: the range {part.strip()} ends before it starts")
        found += range(low, high + 1)
    return found


def scratch() -> Path:
    """A throw-away directory for the scenarios' runs: in memory (/dev/shm) where there is one."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="drengine-explore-", dir=base))


def one_core() -> None:
    """Keep this process on one core. A scenario's engine waits for each step in the step's
    worker thread, as every run does; handing over to a thread on the other core costs more
    (the run's objects are in this core's caches) than a simulated step itself."""
    try:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[os.getpid() % len(cores)]})
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: slower, the same


def explore(names: list[str], count: int, seeds: list[int], budget: float | None, out: Path,
            ignore: frozenset[str], say: Callable[[str], None]) -> tuple[list[str], bool]:
    from drengine.explore.report import summary
    from drengine.explore.search import explore as search
    from drengine.explore.search import save_cases

    one_core()
    lines: list[str] = []
    clean = True
    for name in names:
        for seed in seeds:
            work = scratch()
            try:
                report = search(name, work, count=count, seed=seed, budget=budget, ignore=ignore,
                                progress=lambda r: say(f"  {r.runbook}: {r.runs} runs..."))
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if report.found:
                save_cases(report, out)
                clean = False
            for line in summary(report):
                say(line)
    return lines, clean


def replay(case: Path, out: Path, export_to: Path | None) -> tuple[list[str], bool]:
    from drengine.explore.export import export
    from drengine.explore.report import replayed
    from drengine.explore.scenario import load
    from drengine.explore.search import replay as run_again

    scenario = load(case)
    work = out / f"replay-{case.stem}"
    if work.exists():
        shutil.rmtree(work)
    result = run_again(case, work)
    lines = replayed(result)
    if export_to is not None:
        lines += export(scenario, result, export_to)
    return lines, not result.violations

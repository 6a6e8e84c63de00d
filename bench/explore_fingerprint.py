"""What `drengine explore` concluded, scenario by scenario, as one line each: a speed-up of the
explorer must leave every line unchanged (the explorer is deterministic per seed).

For each scenario the seed generates, in order: the scenario itself (its hash), how the run
ended, where it was killed, the violations found, the journal (timestamps, run ids, pids, real
durations, the scratch directory and served ports masked: they differ between two runs by
design) and the simulator's final state. `--out FILE` writes the lines; `--compare FILE`
compares with lines written before and names the first scenario that differs.

String hashing is pinned (PYTHONHASHSEED=0, the script runs itself again with it when unset): a
simulator that iterates a set of names would otherwise order its state differently in each process.

Usage: bench/explore_fingerprint.py [--scenarios N] [--seed S] [--out F | --compare F] RUNBOOK...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from drengine.explore.runner import Result, Runner
from drengine.explore.scenario import Scenario
from drengine.explore.search import explore

_MOMENT_AND_PLACE = [
    (re.compile(r'"ts":[0-9.e+-]+'), '"ts":0'),
    (re.compile(r"\d{8}T\d{6}Z-[a-z0-9-]+"), "RUN-ID"),
    (re.compile(r'"(pid|probe_seconds)":[0-9.e+-]+'), r'"\1":0'),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"answered in \d+\.\d+ s\b"), "answered in N s"),
]


TREE = str(Path(__file__).resolve().parent.parent)  # runbooks' paths: this checkout's


def _masked(text: str, work: Path) -> str:
    text = text.replace(str(work), "WORK").replace(TREE, "TREE")
    for pattern, fixed in _MOMENT_AND_PLACE:
        text = pattern.sub(fixed, text)
    return text


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _state_text(model: Any, work: Path) -> str:
    """The simulator's state, its places masked and its maps in a fixed order: a served simulator
    binds the ports it used before when they are free, else others, and moving a member to
    another port re-inserts it into its peers' maps (same state, other order)."""
    for name in ("model_dump_json", "to_json", "snapshot_json"):
        if hasattr(model, name):
            text = getattr(model, name)()
            value = json.loads(text) if isinstance(text, str) else text
            return json.dumps(_ordered(value, work), sort_keys=True, default=str)
    return _masked(repr(model), work)


def _ordered(value: Any, work: Path) -> Any:
    if isinstance(value, dict):
        pairs = [(_masked(str(k), work), _ordered(v, work)) for k, v in value.items()]
        return sorted(([k, v] for k, v in pairs), key=lambda kv: json.dumps(kv, sort_keys=True, default=str))
    if isinstance(value, list):
        return [_ordered(v, work) for v in value]
    return _masked(value, work) if isinstance(value, str) else value


class Recording(Runner):
    """A runner that writes down what each scenario's run concluded."""

    lines: list[str]

    def run(self, scenario: Scenario) -> Result:
        result = super().run(scenario)
        journal = "\n".join(json.dumps({"type": e.type.value, "data": e.data}, sort_keys=True, separators=(",", ":"))
                            for e in result.journal)
        state = _state_text(self.final_model(), self.work)
        self.lines.append(" ".join([
            _digest(scenario.model_dump_json()), result.end, f"segments={result.segments}",
            f"kills={','.join(result.kill_points) or '-'}",
            f"violations={_digest(chr(10).join(sorted(v.line() for v in result.violations)))}:{len(result.violations)}",
            f"journal={_digest(_masked(journal, self.work))}:{len(result.journal)}",
            f"state={_digest(_masked(state, self.work))}",
        ]))
        return result


def fingerprint(runbook: str, count: int, seed: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="drengine-fingerprint-", dir="/dev/shm") as tmp:
        work = Path(tmp)
        runner = Recording(runbook, work)
        runner.lines = []
        explore(runbook, work, count=count, seed=seed, runner=runner)
        return [f"{runbook} #{n} {line}" for n, line in enumerate(runner.lines, 1)]


def main() -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path)
    parser.add_argument("runbooks", nargs="+")
    args = parser.parse_args()
    lines: list[str] = []
    for runbook in args.runbooks:
        lines += fingerprint(runbook, args.scenarios, args.seed)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    if args.compare:
        before = args.compare.read_text().splitlines()
        for n, (was, now) in enumerate(zip(before, lines, strict=False)):
            if was != now:
                print(f"differs at line {n + 1}:\n  before: {was}\n  now:    {now}")
                return 1
        if len(before) != len(lines):
            print(f"{len(before)} scenarios before, {len(lines)} now")
            return 1
        print(f"identical: {len(lines)} scenarios")
    return 0


if __name__ == "__main__":
    sys.exit(main())

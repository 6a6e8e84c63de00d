"""Explore one mutant (run by tests/mutants/mutate.py with PYTHONPATH on the mutated copy):
seed after seed, until the first scenario that violates an invariant. Prints one JSON line:
{"killed": bool, "invariant", "detail", "seed", "scenarios"}."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("runbook")
    parser.add_argument("--scenarios", type=int, required=True)
    parser.add_argument("--seeds", required=True)
    parser.add_argument("--tree", required=True)
    args = parser.parse_args()

    import drengine
    from drengine.explore.search import explore

    tree = Path(args.tree).resolve()
    if tree not in Path(drengine.__file__).resolve().parents:
        print(f"drengine was imported from {drengine.__file__}, not from the mutated copy {tree}", file=sys.stderr)
        return 2
    explored = 0
    for seed in (int(s) for s in args.seeds.split(",")):
        work = Path(tempfile.mkdtemp(prefix="explore-", dir=tree))
        try:
            report = explore(args.runbook, work, count=args.scenarios, seed=seed, first=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        explored += report.explored
        if report.found:
            found = report.found[0]
            detail = "; ".join(v.line() for v in found.violations)[:600]
            print(json.dumps({"killed": True, "invariant": found.invariant, "detail": detail, "seed": seed,
                              "scenarios": explored}))
            return 0
    print(json.dumps({"killed": False, "scenarios": explored}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

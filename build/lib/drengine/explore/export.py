"""A case for `drengine run`: the case's simulator state as a state file, a simulated inventory
naming it, and the commands that replay the case with the ordinary CLI. Answers become flags
(`--yes --accept-data-loss`) where they are "approve, let refused checks stand", or the
answers to type at a terminal otherwise; each kill becomes `DRENGINE_TEST_CRASH_AFTER`
(SIGKILL right after that journal event) followed by `drengine run --resume`. World changes
have no CLI equivalent: they are listed, for a person to make with the simulator."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

from drengine.engine import CRASH_ENV
from drengine.explore.kit import kit_for
from drengine.explore.runner import CLUSTER, Result
from drengine.explore.scenario import Scenario
from drengine.files import atomic_write


def export(scenario: Scenario, result: Result, into: Path) -> list[str]:
    """Write the inventory and state file under `into`; return the lines that say how to replay."""
    into = into.resolve()
    state = into / "sim-state.json"
    kit = kit_for(scenario.kind)
    hosts = kit.hosts(into)
    cluster = kit.inventory(CLUSTER, scenario.members)
    cluster["simulated"] = {**cluster["simulated"], "state_file": str(state)}
    inventory = into / "inventory.yaml"
    atomic_write(state, json.dumps(scenario.state))
    atomic_write(inventory, yaml.safe_dump({**({"hosts": hosts} if hosts else {}), "clusters": {CLUSTER: cluster}},
                                           sort_keys=False))
    run_dir = into / "run"
    flags_only = all(a == "proceed" for a in scenario.answers)
    flags = "--yes --accept-data-loss" if flags_only else "(at a terminal, no flags)"
    head = f"drengine run {scenario.runbook} -i {shlex.quote(str(inventory))} -c {CLUSTER} --run-dir {shlex.quote(str(run_dir))}"
    lines = [f"state file: {state} (the run changes it: export again to start over)", f"inventory: {inventory}"]
    if scenario.prelude is not None:
        lines.append(f"first: drengine run {scenario.prelude.runbook} -i {shlex.quote(str(inventory))} -c {CLUSTER} "
                     f"--yes --accept-data-loss")
    specs = result.kill_points
    commands = []
    for i, spec in enumerate([*specs, ""]):
        crash = f"{CRASH_ENV}={spec} " if spec else ""
        base = head if i == 0 else f"drengine run --resume {shlex.quote(str(run_dir))}"
        commands.append(f"{crash}{base} {flags if flags_only else ''}".rstrip())
    lines += ["commands:", *(f"  {c}" for c in commands)]
    if not flags_only:
        lines.append("answer the gates at the terminal, in order: " + ", ".join(scenario.answers)
                     + "; then proceed at every gate and refuse every override (type the cluster name where asked)")
    if scenario.changes:
        lines.append("world changes the explorer made (make them with the simulator's fault operations, at the "
                     "same moments): " + "; ".join(c.describe() for c in scenario.changes))
    return lines

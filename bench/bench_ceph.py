"""Ceph benchmarks on the simulator, in-process, on a SimulatedClock (prints figures; no assertions).

1. The degrade/restore cycle the fault-space explorer repeats: two OSDs down, `ceph-degrade`
   (flags, min_size lowered, I/O proven), the OSDs started, `ceph-restore` (min_size and flags
   put back, HEALTH_OK): cycles per second through the engine (journal, gates, locks), against
   a minimal script sending the same commands straight to the simulator, in the same process.
2. A restore whose OSDs stay down waits its whole recovery_timeout (120 s) on the run's clock:
   the real time that costs.

The real-cluster figure (ceph-degrade start to verified write against a minimal librados
script) is printed by tests/lab/test_ceph_lab_runbooks.py::test_benchmark_degrade_against_minimal_librados.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DRENGINE_LOCK_DIR", tempfile.mkdtemp(prefix="drengine-bench-locks-"))

from drengine.clock import SimulatedClock  # noqa: E402
from drengine.datastores.ceph.connector import observe  # noqa: E402
from drengine.datastores.ceph.scenarios import scenario  # noqa: E402
from drengine.datastores.ceph.simcluster import CephSim  # noqa: E402
from drengine.engine import RunRequest, start_run  # noqa: E402
from drengine.gates import FlagPolicy  # noqa: E402
from drengine.inventory import load_inventory  # noqa: E402
from drengine.machine import Machine  # noqa: E402
from drengine.runbook import load_runbook  # noqa: E402
from drengine.steps import Mode  # noqa: E402

INVENTORY = """\
clusters:
  sim:
    kind: ceph
    simulated: {{scenario: two-osds-down, state_file: {state}}}
    members: [{{name: mon.a}}, {{name: mon.b}}, {{name: mon.c}}, {{name: osd.0}}, {{name: osd.1}}, {{name: osd.2}}]
"""
CYCLES = 20


def _run(folder: Path, runbook: str, clock: SimulatedClock, **inputs: str) -> bool:
    inventory = load_inventory(folder / "inventory.yaml")
    outcome = start_run(RunRequest(
        runbook=load_runbook(str(ROOT / "runbooks" / f"{runbook}.yaml")), inventory=inventory,
        cluster=inventory.cluster("sim"), mode=Mode.RUN, gates=FlagPolicy(yes=True, accept_data_loss=True),
        run_dir=folder / "runs" / f"{runbook}-{len(list((folder / 'runs').glob('*')))}", machine=Machine(clock), inputs=inputs,
    ))
    return outcome.success


def engine_cycle(folder: Path) -> float:
    folder.mkdir(parents=True)
    state = folder / "state.json"
    (folder / "inventory.yaml").write_text(INVENTORY.format(state=state))
    (folder / "runs").mkdir()
    clock = SimulatedClock()
    started = time.perf_counter()
    assert _run(folder, "ceph-degrade", clock)
    sim = CephSim.from_json(state.read_text())
    sim.start_osds([1, 2])
    state.write_text(sim.to_json())
    assert _run(folder, "ceph-restore", clock, runs_dir=str(folder / "runs"))
    return time.perf_counter() - started


def minimal_cycle() -> float:
    sim = scenario("two-osds-down")
    started = time.perf_counter()
    observe(sim)
    for flag in ("noout", "norebalance"):
        sim.mon_command({"prefix": "osd set", "key": flag})
    sim.mon_command({"prefix": "osd pool set", "pool": "drengine", "var": "min_size", "val": "1"})
    sim.write_object("drengine", "drengine-io-check", b"x", timeout=1.0)
    assert sim.read_object("drengine", "drengine-io-check") == b"x"
    sim.start_osds([1, 2])
    assert observe(sim).all_active_clean
    sim.mon_command({"prefix": "osd pool set", "pool": "drengine", "var": "min_size", "val": "2"})
    for flag in ("noout", "norebalance"):
        sim.mon_command({"prefix": "osd unset", "key": flag})
    assert observe(sim).status.health == "HEALTH_OK"
    return time.perf_counter() - started


def waiting_restore(folder: Path) -> tuple[float, float]:
    folder.mkdir(parents=True)
    (folder / "inventory.yaml").write_text(INVENTORY.format(state=folder / "state.json"))
    (folder / "runs").mkdir()
    clock = SimulatedClock()
    assert _run(folder, "ceph-degrade", clock)
    before, started = clock.now(), time.perf_counter()
    assert not _run(folder, "ceph-restore", clock, runs_dir=str(folder / "runs"))
    return clock.now() - before, time.perf_counter() - started


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="drengine-bench-ceph-"))
    engine = [engine_cycle(root / f"cycle-{i}") for i in range(CYCLES)]
    minimal = [minimal_cycle() for _ in range(CYCLES)]
    per_engine, per_minimal = sum(engine) / CYCLES, sum(minimal) / CYCLES
    print(f"degrade/restore cycle through the engine: {per_engine * 1000:.1f} ms ({1 / per_engine:.1f} cycles/s)")
    print(f"same commands straight to the simulator:  {per_minimal * 1000:.1f} ms ({1 / per_minimal:.1f} cycles/s)")
    print(f"ratio engine / minimal: {per_engine / per_minimal:.1f}x")
    simulated, real = waiting_restore(root / "waiting")
    print(f"restore waiting for OSDs that stay down: {simulated:.0f} s simulated in {real:.3f} s real "
          f"({simulated / real:.0f}x)")


if __name__ == "__main__":
    main()

"""`drengine lab up mongodb`: the simulated replica set served as real mongod endpoints on
127.0.0.1 (MongoDB wire protocol) by a background process (`drengine lab serve mongodb`);
cluster `lab-mongodb`."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from drengine.lab.procs import LabDir
from drengine.lab.simulated import Served, cluster_fragment, serve, write

PORT_BASE = 27117
SIZES = {"healthy-3": 3, "healthy-5": 5, "majority-lost-5": 5, "partition-primary-alive": 5, "hung-member": 3,
         "arbiter-and-priority0": 5, "hidden-survivor": 5, "non-voting-survivor": 5, "delayed-survivor": 5,
         "lagging-survivor": 5, "hung-removed": 5}
DEFAULT_SCENARIO = "healthy-3"


def scenarios() -> list[str]:
    """The situations `--scenario` can start the served replica set in."""
    from drengine.datastores.mongodb.simulator import SCENARIOS

    return sorted(SCENARIOS)


def up(lab: LabDir, inventory_out: str | None = None, scenario: str = "majority-lost-5",
       speed: float = 1.0) -> dict[str, Any]:
    size = SIZES.get(scenario, 3)
    ports = [PORT_BASE + i for i in range(size)]
    state = lab.path("mongodb") / "state.json"
    # A new lab starts from the scenario asked for, never from the state an earlier lab wrote back.
    lab.stop_kind("mongodb")
    state.unlink(missing_ok=True)
    serve(lab, "mongodb", ["--scenario", scenario, "--port", str(PORT_BASE), "--state", str(state),
                           "--speed", str(speed)], ports,
          ready_lines=size, ready_prefix="member ")
    members = [{"name": f"m{i}", "address": "127.0.0.1", "port": port} for i, port in enumerate(ports)]
    fragment = cluster_fragment("mongodb", members, {"connect": 0.5, "read": 1.0})
    write(inventory_out, "lab-mongodb", fragment)
    return fragment


def down(lab: LabDir) -> None:
    lab.stop_kind("mongodb")


def serve_simulator(scenario: str | None, port: int | None, state: Path | None, speed: float = 1.0) -> Served:
    """Serve the replica set from `state` when it exists, else from the scenario; one member per
    port from `port` (any free ports when None); the state is written back when it stops."""
    from drengine.clock import clock_at_speed
    from drengine.datastores.mongodb.sim import scenario_factories
    from drengine.datastores.mongodb.simulator import SimulatedReplicaSet
    from drengine.datastores.mongodb.wire import WireCluster
    from drengine.simstate import build_scenario, load_state, save_state

    # The replica set's own time (heartbeats, elections, initial syncs) runs `speed` times faster.
    clock = clock_at_speed(speed)
    if state is not None and state.exists():
        model = load_state(state, partial(SimulatedReplicaSet.from_json, clock=clock), "MongoDB")
    else:
        model = build_scenario(scenario or DEFAULT_SCENARIO, scenario_factories(clock), "MongoDB")
    cluster = WireCluster(model, port_base=port)
    addresses = cluster.start()
    endpoints = [f"member {member_id}: mongodb://{host}:{p}/?directConnection=true"
                 for member_id, (host, p) in sorted(addresses.items())]

    def stop() -> None:
        try:
            save_state(cluster.snapshot_json(), state)
        finally:
            cluster.stop()

    return Served(endpoints, stop)

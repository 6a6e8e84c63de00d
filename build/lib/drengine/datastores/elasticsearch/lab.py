"""`drengine lab up elasticsearch`: the simulated cluster served over its REST API on
127.0.0.1 by a background process (`drengine lab serve elasticsearch`); cluster
`lab-elasticsearch`."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from drengine.lab.procs import LabDir
from drengine.lab.simulated import Served, cluster_fragment, serve, write

PORT = 19200
DEFAULT_SCENARIO = "one-node-lost-3"
DEFAULT_PORT = 9200


def scenarios() -> list[str]:
    """The situations `--scenario` can start the served cluster in."""
    from drengine.datastores.elasticsearch.simulator import SCENARIOS

    return sorted(SCENARIOS)


def up(lab: LabDir, inventory_out: str | None = None, scenario: str = DEFAULT_SCENARIO,
       speed: float = 1.0) -> dict[str, Any]:
    state = lab.path("elasticsearch") / "state.json"
    # A new lab starts from the scenario asked for, never from the state an earlier lab wrote back.
    lab.stop_kind("elasticsearch")
    state.unlink(missing_ok=True)
    serve(lab, "elasticsearch", ["--scenario", scenario, "--port", str(PORT), "--state", str(state),
                                 "--speed", str(speed)], [PORT],
          ready_prefix="simulated Elasticsearch")
    # Every node answers on the one simulated endpoint; member names are the node names.
    members = [{"name": f"node-{i}", "address": "127.0.0.1", "port": PORT} for i in (1, 2, 3)]
    fragment = cluster_fragment("elasticsearch", members, {"connect": 1.0, "read": 5.0})
    write(inventory_out, "lab-elasticsearch", fragment)
    return fragment


def down(lab: LabDir) -> None:
    lab.stop_kind("elasticsearch")


def serve_simulator(scenario: str | None, port: int | None, state: Path | None, speed: float = 1.0) -> Served:
    """Serve the cluster from `state` when it exists, else from the scenario, on `port`, its time
    running `speed` times faster than real time; the state is written back when it stops."""
    from drengine.clock import clock_at_speed
    from drengine.datastores.elasticsearch.rest import SimServer
    from drengine.datastores.elasticsearch.sim import parse_model
    from drengine.datastores.elasticsearch.simulator import SCENARIOS
    from drengine.simstate import build_scenario, load_state, save_state

    name = scenario or DEFAULT_SCENARIO
    clock = clock_at_speed(speed)
    if state is not None and state.exists():
        model = load_state(state, partial(parse_model, clock=clock), "Elasticsearch")
    else:
        model = build_scenario(name, {n: partial(f, clock=clock) for n, f in SCENARIOS.items()}, "Elasticsearch")
    server = SimServer(model, port=DEFAULT_PORT if port is None else port)
    url = server.start()

    def stop() -> None:
        server.stop()
        save_state(json.dumps(model.to_json()), state)

    return Served([f"simulated Elasticsearch ({name}) at {url}  (Ctrl-C to stop)"], stop)

"""`drengine lab up elasticsearch`: the simulated cluster served over its REST API on
127.0.0.1 by a background process; cluster `lab-elasticsearch`."""

from __future__ import annotations

from typing import Any

from drengine.lab.procs import LabDir
from drengine.lab.simulated import cluster_fragment, serve, write

PORT = 19200
DEFAULT_SCENARIO = "one-node-lost-3"


def scenarios() -> list[str]:
    """The situations `--scenario` can start the served cluster in."""
    from drengine.datastores.elasticsearch.simcluster import SCENARIOS

    return sorted(SCENARIOS)


def up(lab: LabDir, inventory_out: str | None = None, scenario: str = DEFAULT_SCENARIO) -> dict[str, Any]:
    state = lab.path("elasticsearch") / "state.json"
    # A new lab starts from the scenario asked for, never from what an earlier lab left behind.
    lab.stop_kind("elasticsearch")
    state.unlink(missing_ok=True)
    serve(lab, "elasticsearch", "drengine.datastores.elasticsearch.rest",
          ["--scenario", scenario, "--port", str(PORT), "--state", str(state)], [PORT],
          ready_prefix="simulated Elasticsearch")
    # Every node answers on the one simulated endpoint; member names are the node names.
    members = [{"name": f"node-{i}", "address": "127.0.0.1", "port": PORT} for i in (1, 2, 3)]
    fragment = cluster_fragment("elasticsearch", members, {"connect": 1.0, "read": 5.0})
    write(inventory_out, "lab-elasticsearch", fragment)
    return fragment


def down(lab: LabDir) -> None:
    lab.stop_kind("elasticsearch")

"""`drengine lab up elasticsearch`: the simulated cluster served over its REST API on
127.0.0.1 by a background process; cluster `lab-elasticsearch`."""

from __future__ import annotations

from typing import Any

from drengine.lab.procs import LabDir
from drengine.lab.simulated import cluster_fragment, serve, write

PORT = 19200


def up(lab: LabDir, inventory_out: str | None = None, scenario: str = "one-node-lost-3") -> dict[str, Any]:
    state = lab.path("elasticsearch") / "state.json"
    serve(lab, "elasticsearch", "drengine.datastores.elasticsearch.rest",
          ["--scenario", scenario, "--port", str(PORT), "--state", str(state)], [PORT])
    # Every node answers on the one simulated endpoint; member names are the node names.
    members = [{"name": f"node-{i}", "address": "127.0.0.1", "port": PORT} for i in (1, 2, 3)]
    fragment = cluster_fragment("elasticsearch", members, {"connect": 1.0, "read": 5.0})
    write(inventory_out, "lab-elasticsearch", fragment)
    return fragment


def down(lab: LabDir) -> None:
    lab.stop_kind("elasticsearch")

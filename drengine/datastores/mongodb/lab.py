"""`drengine lab up mongodb`: the simulated replica set served as real mongod endpoints on
127.0.0.1 (MongoDB wire protocol) by a background process; cluster `lab-mongodb`."""

from __future__ import annotations

from typing import Any

from drengine.lab.procs import LabDir
from drengine.lab.simulated import cluster_fragment, serve, write

PORT_BASE = 27117
SIZES = {"healthy-3": 3, "majority-lost-5": 5, "partition-primary-alive": 5, "hung-member": 3, "arbiter-and-priority0": 5,
         "hidden-survivor": 5, "non-voting-survivor": 5, "delayed-survivor": 5, "lagging-survivor": 5, "hung-removed": 5}


def up(lab: LabDir, inventory_out: str | None = None, scenario: str = "majority-lost-5") -> dict[str, Any]:
    size = SIZES.get(scenario, 3)
    ports = [PORT_BASE + i for i in range(size)]
    state = lab.path("mongodb") / "state.json"
    serve(lab, "mongodb", "drengine.datastores.mongodb.wire",
          ["--scenario", scenario, "--port-base", str(PORT_BASE), "--state", str(state)], ports, ready_lines=size)
    members = [{"name": f"m{i}", "address": "127.0.0.1", "port": port} for i, port in enumerate(ports)]
    fragment = cluster_fragment("mongodb", members, {"connect": 0.5, "read": 1.0})
    write(inventory_out, "lab-mongodb", fragment)
    return fragment


def down(lab: LabDir) -> None:
    lab.stop_kind("mongodb")

"""The simulated twin of the Elasticsearch connector: a simulated cluster (`EsCluster`)
served over the REST API on 127.0.0.1 by `SimServer`, and the real `ElasticBackend`
pointed at it, so that simulation runs the same client code path as production.

The model is loaded from the run's state file when it exists (a resumed run continues with
the cluster as it left it), else built from the inventory's scenario; it is saved after
every request that may change it and when the backend closes.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from drengine.clock import SYSTEM, Clock, clock_at_speed
from drengine.datastores.elasticsearch.calls import HttpCall
from drengine.datastores.elasticsearch.connector import ElasticBackend
from drengine.datastores.elasticsearch.rest import SimServer
from drengine.datastores.elasticsearch.simulator import SCENARIOS, EsCluster
from drengine.inventory import Cluster
from drengine.machine import DISK, Disk
from drengine.simstate import load_or_build, save_state


class SimElasticBackend(ElasticBackend):
    """`ElasticBackend` talking to a simulated cluster on a loopback port of its own."""

    def __init__(self, cluster: Cluster, model: EsCluster, state_file: Path, disk: Disk = DISK) -> None:
        self.model = model
        self.state_file = state_file
        self.disk = disk  # the run's: where the state file is kept
        self.server = SimServer(model, port=0)
        url = self.server.start()
        super().__init__(cluster, None, hosts=[url], clock=model.clock)

    @classmethod
    def open(cls, cluster: Cluster, state_file: Path, clock: Clock | None = None, disk: Disk = DISK) -> SimElasticBackend:
        """The simulated cluster on `clock` (the run's clock: a simulated one moves only when the
        run sleeps on it, so recoveries and delays take no real time); without one, real time at
        the inventory's `speed`."""
        speed = cluster.simulated.speed if cluster.simulated else 1.0
        return cls(cluster, load_model(cluster, state_file, clock or clock_at_speed(speed), disk), state_file, disk)

    def send(self, call: HttpCall) -> Any:
        try:
            return super().send(call)
        finally:
            # Saved even when the request failed: a refused request may still have changed nothing,
            # and a resumed run must see exactly what the cluster looks like now.
            if call.method != "GET":
                self.save()

    # -- faults: the simulated node ----------------------------------------------------------
    def kill(self, member: str) -> str:
        self.server.write(lambda model: model.kill_node(member))
        self.save()
        return f"simulated node {member} killed (it left the cluster)"

    def hang(self, member: str) -> str:
        self.server.write(lambda model: model.hang_node(member))
        self.save()
        return f"simulated node {member} hung (removed by the master once its follower checks time out)"

    def resume(self, member: str) -> str:
        self.server.write(lambda model: model.resume_node(member))
        self.save()
        return f"simulated node {member} running again"

    def start(self, member: str) -> str:
        return self.resume(member)

    def save(self) -> None:
        # pydantic's own JSON encoder: several times faster than dumping a dict on a big cluster.
        save_state(self.server.read(lambda model: model.state.model_dump_json()), self.state_file, self.disk)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.server is not None:
                self.save()
                self.server.stop()


def parse_model(text: str, clock: Clock = SYSTEM) -> EsCluster:
    return EsCluster.from_json(json.loads(text), clock=clock)


def load_model(cluster: Cluster, state_file: Path, clock: Clock = SYSTEM, disk: Disk = DISK) -> EsCluster:
    """The cluster a resumed run left in its state file, else the inventory's scenario, on `clock`."""
    factories = {name: partial(factory, clock=clock) for name, factory in SCENARIOS.items()}
    return load_or_build(cluster, state_file, partial(parse_model, clock=clock), factories, "Elasticsearch", disk)


def save_model(state: dict[str, Any], state_file: Path) -> None:
    save_state(json.dumps(state), state_file)

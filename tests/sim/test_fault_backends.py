"""Faults are backend operations (kill, hang, resume) on the simulated MongoDB and
Elasticsearch backends; drill kits are values that only call them; the simulators run on
the clock they are given."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from drengine.clock import SimulatedClock
from drengine.datastores.elasticsearch.drill import KIT as ES_KIT
from drengine.datastores.elasticsearch.sim import SimElasticBackend
from drengine.datastores.elasticsearch.simulator.cluster import HUNG_NODE_REMOVED_AFTER
from drengine.datastores.mongodb.drill import KIT as MONGO_KIT
from drengine.datastores.mongodb.sim import SimMongoBackend
from drengine.engine import RunRequest, start_run
from drengine.gates import FlagPolicy
from drengine.inventory import load_inventory
from drengine.machine import Machine
from drengine.runbook import load_runbook
from drengine.steps import Mode
from tests.helpers import ROOT

ES_INVENTORY = ROOT / "inventory" / "simulated-elasticsearch.yaml"
MONGO_INVENTORY = ROOT / "inventory" / "simulated-mongodb.yaml"


@pytest.mark.parametrize("kit", [MONGO_KIT, ES_KIT], ids=["mongodb", "elasticsearch"])
def test_drill_kits_are_values(kit: object) -> None:
    assert dataclasses.is_dataclass(kit)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(kit, "faults", {})  # noqa: B010 - assigning a field of a frozen value must fail
    assert not any(f.name.startswith("_") for f in dataclasses.fields(kit))


def test_a_hung_elasticsearch_node_leaves_only_when_its_follower_checks_time_out(tmp_path: Path) -> None:
    cluster = load_inventory(str(ES_INVENTORY)).cluster("sim-es-healthy")
    clock = SimulatedClock()
    backend = SimElasticBackend.open(cluster, tmp_path / "state.json", clock=clock)
    try:
        assert "hung" in backend.hang("node-3")
        clock.advance(HUNG_NODE_REMOVED_AFTER - 1)
        assert backend.health().number_of_nodes == 3  # the master still waits for its checks
        clock.advance(2)
        assert backend.health().number_of_nodes == 2
        backend.resume("node-3")
        assert backend.health().number_of_nodes == 3
        backend.kill("node-2")
        assert backend.health().number_of_nodes == 2  # a killed node's connections drop: removed at once
    finally:
        backend.close()


def test_mongodb_members_hang_die_and_resume_through_the_backend(tmp_path: Path) -> None:
    cluster = load_inventory(str(MONGO_INVENTORY)).cluster("sim-mongo-healthy")
    backend = SimMongoBackend.open(cluster, tmp_path / "state.json", clock=SimulatedClock())
    try:
        last = cluster.members[-1].name
        backend.hang(last)
        hung = backend.probe(last)
        assert not hung.reachable and "hung" in hung.error
        backend.resume(last)
        assert backend.probe(last).reachable
        backend.kill(last)
        killed = backend.probe(last)
        assert not killed.reachable and "refused" in killed.error.lower()
        backend.resume(last)
        assert backend.probe(last).reachable
    finally:
        backend.close()


def test_a_run_on_a_simulated_clock_drives_the_simulator_on_that_clock(tmp_path: Path) -> None:
    inventory = load_inventory(str(ES_INVENTORY))
    clock = SimulatedClock(epoch=2_000_000_000.0)
    outcome = start_run(RunRequest(
        runbook=load_runbook("elasticsearch-reallocate"), inventory=inventory,
        cluster=inventory.cluster("sim-es-node-returns"), mode=Mode.RUN,
        gates=FlagPolicy(yes=True), run_dir=tmp_path / "run", machine=Machine(clock),
    ))
    assert outcome.end in ("done", "failed")
    state = (tmp_path / "run" / "sim-state.json").read_text()
    # The scenario was built on the run's clock: its timestamps are on the simulated epoch.
    assert '"at":2000000' in state.replace(" ", "")

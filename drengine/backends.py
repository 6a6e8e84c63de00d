"""The choice between a cluster's real connector and its simulated twin."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from drengine.clock import Clock
from drengine.datastores import datastore
from drengine.inventory import Cluster, Inventory


def open_backend(cluster: Cluster, inventory: Inventory, run_dir: Path, clock: Clock | None = None) -> Any:
    """The real connector set for the cluster's kind, or its simulated twin when the
    inventory marks the cluster as simulated (its state kept in the run directory). A
    simulator given a clock runs on it (the run's clock, simulated in tests and exploration)."""
    store = datastore(cluster.kind)
    if cluster.simulated is not None:
        state = Path(cluster.simulated.state_file) if cluster.simulated.state_file else run_dir / "sim-state.json"
        simulator = store.load(store.simulator)
        # Only simulators that model time take a clock (their `open` has a `clock` parameter).
        if clock is None or "clock" not in inspect.signature(simulator.open).parameters:
            return simulator.open(cluster, state)
        return simulator.open(cluster, state, clock=clock)
    return store.load(store.connector)(cluster, inventory)

"""The choice between a cluster's real connector and its simulated twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drengine.clock import SYSTEM, Clock
from drengine.datastores import datastore
from drengine.inventory import Cluster, Inventory
from drengine.machine import DISK, Disk


def open_backend(cluster: Cluster, inventory: Inventory, run_dir: Path, clock: Clock = SYSTEM, disk: Disk = DISK) -> Any:
    """The real connector set for the cluster's kind, or its simulated twin when the
    inventory marks the cluster as simulated (its state kept in the run directory, on the run's
    disk). Datastores that take the run's clock get it, so their waits and their simulators' time
    follow the run."""
    store = datastore(cluster.kind)
    timed: dict[str, Any] = {"clock": clock} if store.takes_clock else {}
    if cluster.simulated is not None:
        state = Path(cluster.simulated.state_file) if cluster.simulated.state_file else run_dir / "sim-state.json"
        return store.load(store.simulator).open(cluster, state, disk=disk, **timed)
    return store.load(store.connector)(cluster, inventory, **timed)

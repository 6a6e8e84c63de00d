"""The choice between a cluster's real connector and its simulated twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drengine.clock import SYSTEM, Clock
from drengine.datastores import datastore
from drengine.inventory import Cluster, Inventory
from drengine.machine import DISK, Disk


def simulated_state_file(cluster: Cluster, inventory: Inventory) -> Path:
    """Where a simulated cluster's state lives between runs: the inventory's `state_file:`, else a
    file per inventory and cluster that every status and run reads (simstate.cluster_state_file)."""
    from drengine.simstate import cluster_state_file

    assert cluster.simulated is not None
    if cluster.simulated.state_file:
        return Path(cluster.simulated.state_file)
    return cluster_state_file(inventory.path, cluster.name)


def rehearses_on_a_copy(cluster: Cluster) -> bool:
    """A drill on a simulated cluster whose state is the shared one keeps what it does to its own
    copy (each drill rehearses from the same start); one whose inventory (or site run) names the
    state file breaks and recovers that file, as a drill breaks and recovers a real cluster."""
    return cluster.simulated is not None and not cluster.simulated.state_file


def open_backend(cluster: Cluster, inventory: Inventory, run_dir: Path, clock: Clock = SYSTEM, disk: Disk = DISK,
                 private: bool = False) -> Any:
    """The real connector set for the cluster's kind, or its simulated twin when the
    inventory marks the cluster as simulated. Datastores that take the run's clock get it, so
    their waits and their simulators' time follow the run.

    A simulated cluster's state is kept in the run directory (`sim-state.json`, started from the
    cluster's state, or from its scenario the first time), on the run's disk; a run writes every
    save through to the cluster's state, so that status and the next run see what it did.
    `private`: what is done stays in the run directory (a plan changes nothing; a drill rehearses
    on its own copy; status reads a copy)."""
    store = datastore(cluster.kind)
    timed: dict[str, Any] = {"clock": clock} if store.takes_clock else {}
    if cluster.simulated is not None:
        state = _run_state(cluster, inventory, run_dir, private, disk)
        return store.load(store.simulator).open(cluster, state, disk=disk, **timed)
    return store.load(store.connector)(cluster, inventory, **timed)


def _run_state(cluster: Cluster, inventory: Inventory, run_dir: Path, private: bool, disk: Disk) -> Path:
    from drengine.simstate import copy_state, share_state, state_exists

    assert cluster.simulated is not None
    kept = simulated_state_file(cluster, inventory)
    if cluster.simulated.state_file and not private:
        return kept  # the inventory names the file the runs work on
    own = run_dir / "sim-state.json"
    if not state_exists(own, disk) and state_exists(kept, disk):
        run_dir.mkdir(parents=True, exist_ok=True)
        copy_state(kept, own, disk)
    if not private and not cluster.simulated.state_file:
        share_state(own, kept)
    return own

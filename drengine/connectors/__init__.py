"""Connectors: thin I/O to each datastore, and the choice between the real connector and
its simulated twin for a cluster."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from drengine.errors import InputError
from drengine.inventory import Cluster, Inventory

REAL = {
    "mariadb": "drengine.connectors.mariadb:MariaDBBackend",
    "galera": "drengine.connectors.galera:GaleraBackend",
    "mongodb": "drengine.connectors.mongodb:MongoBackend",
    "ceph": "drengine.connectors.ceph_backend:CephBackend",
    "elasticsearch": "drengine.connectors.elasticsearch:ElasticBackend",
}
SIMULATED = {
    "mariadb": "drengine.sim.mariadb:SimMariaDBBackend",
    "galera": "drengine.sim.galera:SimGaleraBackend",
    "mongodb": "drengine.sim.mongodb_backend:SimMongoBackend",
    "ceph": "drengine.sim.ceph_backend:SimCephBackend",
    "elasticsearch": "drengine.sim.elasticsearch_backend:SimElasticBackend",
}


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise InputError(f"no connector available for this cluster kind yet ({ref}: {exc})") from None


def open_backend(cluster: Cluster, inventory: Inventory, run_dir: Path) -> Any:
    """The real connector set for the cluster's kind, or its simulated twin when the
    inventory marks the cluster as simulated (its state kept in the run directory)."""
    if cluster.simulated is not None:
        state = Path(cluster.simulated.state_file) if cluster.simulated.state_file else run_dir / "sim-state.json"
        return _load(SIMULATED[cluster.kind]).open(cluster, state)
    return _load(REAL[cluster.kind])(cluster, inventory)

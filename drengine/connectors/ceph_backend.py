"""The Ceph backend a runbook step receives as `ctx.backend`.

It wraps one `CephAPI` (the librados `CephConnector` for a real cluster, the simulator for a
simulated one, see `drengine.sim.ceph_backend`) and adds what every Ceph step needs on top:
one `observe()` for a snapshot, and a description for messages. The connector's time
bounds come from the inventory: `timeouts.connect` bounds reaching a monitor quorum,
`timeouts.read` each monitor command and object operation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from drengine.connectors.ceph import CephAPI, CephConnector, CephSnapshot, JsonDoc, observe
from drengine.inventory import CephOptions, Cluster, Inventory


class CephBackend:
    """What the Ceph actions talk to: the cluster's `CephAPI` plus snapshots."""

    def __init__(self, cluster: Cluster, inventory: Inventory | None = None, api: CephAPI | None = None) -> None:
        self.cluster = cluster
        if api is None:
            options = cluster.ceph or CephOptions()
            api = CephConnector(
                options.conf_file,
                options.client_name,
                connect_timeout=cluster.timeouts.connect,
                op_timeout=cluster.timeouts.read,
                keyring=options.keyring,
            )
        self.api: CephAPI = api

    def clock(self) -> float:
        """Seconds for bounded waits: real time here; the simulator's twin uses its logical clock."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # waiting for the cluster between two looks, never inside a decision

    def describe(self) -> str:
        options = self.cluster.ceph or CephOptions()
        return f"Ceph cluster {self.cluster.name} ({options.conf_file})"

    def observe(self, clock: Callable[[], float] = time.time) -> CephSnapshot:
        return observe(self.api, clock)

    def mon_command(self, cmd: Mapping[str, Any]) -> JsonDoc:
        return self.api.mon_command(cmd)

    def pg_command(self, pgid: str, cmd: Mapping[str, Any]) -> JsonDoc:
        return self.api.pg_command(pgid, cmd)

    def write_object(self, pool: str, name: str, data: bytes, timeout: float) -> None:
        self.api.write_object(pool, name, data, timeout)

    def read_object(self, pool: str, name: str) -> bytes:
        return self.api.read_object(pool, name)

    def close(self) -> None:
        self.api.close()

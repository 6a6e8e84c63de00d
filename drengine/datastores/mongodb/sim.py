"""The simulated twin of the MongoDB connector.

It serves the in-memory replica set (`drengine.datastores.mongodb.simulator`) as real mongod endpoints on
127.0.0.1 (`drengine.datastores.mongodb.wire`) and hands back a `MongoBackend` whose clients point at
those ports, so the runbooks exercise the real pymongo code path. Inventory members are
mapped to the scenario's members in order (the first inventory member is `_id` 0, and so
on); the inventory's addresses are ignored. The model is saved to the state file after
every command that may change it and on close, so a later run (or a resumed one) continues
from the same cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from drengine.clock import Clock, clock_at_speed
from drengine.datastores.mongodb.connector import MongoBackend
from drengine.datastores.mongodb.fencing import SHUTDOWN_WAIT_SECONDS, FenceAttempt
from drengine.datastores.mongodb.simulator import SCENARIOS, SimulatedReplicaSet, build_scenario
from drengine.datastores.mongodb.simulator.model import Process
from drengine.datastores.mongodb.wire import WireCluster
from drengine.errors import InputError
from drengine.faults import stop_command
from drengine.inventory import Cluster, FenceMethod
from drengine.machine import DISK, Disk
from drengine.simstate import load_or_build, save_state
from drengine.steps import Statement
from drengine.transport import command_text as command_text_of

# Commands after which the model may have changed (and the state file must follow).
READ_ONLY = ("hello", "isMaster", "ismaster", "ping", "replSetGetStatus", "replSetGetConfig", "count", "find",
             "buildInfo")


class SimMongoBackend(MongoBackend):
    def __init__(self, cluster: Cluster, model: SimulatedReplicaSet, wire: WireCluster,
                 member_ids: dict[str, int], state_file: Path | None, disk: Disk = DISK) -> None:
        addresses = wire.addresses()
        super().__init__(cluster, None, {name: addresses[mid] for name, mid in member_ids.items()}, clock=model.clock)
        self.model = model
        self.wire = wire
        self.member_ids = member_ids
        self.state_file = state_file
        self.disk = disk  # the run's: where the state file is kept

    @classmethod
    def open(cls, cluster: Cluster, state_file: Path, clock: Clock | None = None, disk: Disk = DISK) -> SimMongoBackend:
        """The simulated set on `clock` (the run's clock: a simulated one moves only when the run
        sleeps on it, so heartbeats, elections and initial syncs take no real time); without one,
        real time at the inventory's `speed`."""
        assert cluster.simulated is not None
        clock = clock or clock_at_speed(cluster.simulated.speed)
        model = load_or_build(cluster, state_file, partial(SimulatedReplicaSet.from_json, clock=clock),
                              scenario_factories(clock), "MongoDB", disk)
        ids = model.member_ids()
        if len(ids) != len(cluster.members):
            raise InputError(
                f"cluster {cluster.name}: the inventory lists {len(cluster.members)} member(s) but scenario "
                f"{cluster.simulated.scenario} has {len(ids)}; list exactly {len(ids)} members (mapped in order)"
            )
        wire = _serve(model)
        backend = cls(cluster, model, wire, {m.name: mid for m, mid in zip(cluster.members, ids, strict=True)}, state_file,
                      disk)
        backend.save()
        return backend

    def save(self) -> None:
        save_state(self.wire.snapshot_json(), self.state_file, self.disk)

    # -- faults: the simulated member's process ---------------------------------------------
    def kill(self, member: str) -> str:
        self.wire.kill(self.member_ids[member])
        self.save()
        return f"simulated member {member} killed (its port refuses connections)"

    def hang(self, member: str) -> str:
        self.wire.hang(self.member_ids[member])
        self.save()
        return f"simulated member {member} hung (it accepts connections and never answers)"

    def resume(self, member: str) -> str:
        self.wire.revive(self.member_ids[member])
        self.save()
        return f"simulated member {member} running again"

    def start(self, member: str) -> str:
        return self.resume(member)

    # -- fencing: the simulated member's process, as the host transport would reach it ------------
    def fence(self, member: str, method: FenceMethod) -> FenceAttempt:
        attempt = self._fence(member, method)
        if attempt.ok:
            with self.wire.locked() as model:
                model.node(self.member_ids[member]).fenced = True  # its service manager holds it stopped
            self.save()
        return attempt

    def _fence(self, member: str, method: FenceMethod) -> FenceAttempt:
        if method is FenceMethod.SERVICE:
            return self._fence_by_service(member)
        if method is FenceMethod.SIGNAL:
            entry = self.cluster.member(member)
            statement = Statement(entry.host or "localhost", f"kill -KILL <pid in {entry.pid_file}>", language="shell")
            self.wire.kill(self.member_ids[member])
            self.save()
            return FenceAttempt(True, [statement], "down: SIGKILL reaches even a stopped process")
        return super().fence(member, method)

    def _fence_by_service(self, member: str) -> FenceAttempt:
        entry = self.cluster.member(member)
        statement = Statement(entry.host or "localhost",
                              command_text_of(stop_command(self.cluster, entry)), language="shell")
        with self.wire.locked() as model:
            hung = model.node(self.member_ids[member]).process is Process.HUNG
        if hung:
            return FenceAttempt(False, [statement], f"it did not stop within {SHUTDOWN_WAIT_SECONDS:g} s: a stopped "
                                                     f"(hung) process ignores SIGTERM until it wakes")
        self.wire.kill(self.member_ids[member])
        self.save()
        return FenceAttempt(True, [statement], "down: its service stopped")

    def command(self, member: str, text: str) -> dict[str, Any]:
        try:
            return super().command(member, text)
        finally:
            if not any(f'"{name}"' in text.split(":", 1)[0] for name in READ_ONLY):
                self.save()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.save()
            self.wire.stop()


def scenario_factories(clock: Clock | None = None) -> dict[str, Callable[[], SimulatedReplicaSet]]:
    return {name: partial(build_scenario, name, clock=clock) for name in SCENARIOS}


def _serve(model: SimulatedReplicaSet) -> WireCluster:
    """Serve on the ports the saved model used, when they are free: facts journaled by an
    earlier run (hosts in configs) stay valid for a resumed run. Otherwise any free port."""
    previous: dict[int, int] = {}
    for mid in model.member_ids():
        host = model.node(mid).host
        if host.startswith("127.0.0.1:"):
            with contextlib.suppress(ValueError):
                previous[mid] = int(host.rsplit(":", 1)[1])
    if previous:
        wire = WireCluster(model, ports=previous)
        try:
            wire.start()
            return wire
        except OSError:
            wire.stop()
    wire = WireCluster(model)
    wire.start()
    return wire

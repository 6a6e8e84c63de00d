"""The simulated MongoDB replica set, served over the wire protocol by
`drengine.datastores.mongodb.wire`.

Parts, each a module of its own: `model` (state and mongod's errors), `config` (config
documents and their checks), `core` (members, faults, lookups), `replication`
(heartbeats, configs, initial sync, oplog, commit point), `elections`, `commands` (writes,
reads, reconfig, freeze, step-down), `views` (hello, replSetGetStatus), `replset`
(`SimulatedReplicaSet` assembled from them) and `scenarios`. No sockets and no threads:
time comes from an injected `drengine.clock.Clock`, randomness from a `random.Random`.

Every member keeps its *own* copy of the replica-set config, as a real mongod does. That
is what makes the split-brain risk visible: a member removed by a forced reconfig that
comes back still holding the old config, and that can see a majority of the old voters,
elects a second primary.
"""

from drengine.datastores.mongodb.simulator.replset import SimulatedReplicaSet
from drengine.datastores.mongodb.simulator.scenarios import SCENARIOS, build_scenario

__all__ = ["SCENARIOS", "SimulatedReplicaSet", "build_scenario"]

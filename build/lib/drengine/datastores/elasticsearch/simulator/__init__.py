"""The simulated Elasticsearch cluster (shard allocation, recoveries, settings, explain,
documents), served over the REST API by `drengine.datastores.elasticsearch.rest`.

Parts, each a module of its own: `model` (state, errors, setting names, value helpers),
`deciders`, `core` (lookups, creating nodes and indices), `routing` (moving one copy),
`allocator`, `recovery` (recoveries progressing on the clock), `reroute` (the reroute
commands), `explain`, `settings`, `views` (health, cat, info), `documents`, `cluster`
(`EsCluster` assembled from them, its faults and time passing) and `scenarios`.
No sockets and no sleeping: time comes from an injected `drengine.clock.Clock`; what each
answer follows in Elasticsearch's source or documentation is named where it is built.
"""

from drengine.datastores.elasticsearch.simulator.cluster import EsCluster
from drengine.datastores.elasticsearch.simulator.model import SimApiError
from drengine.datastores.elasticsearch.simulator.scenarios import SCENARIOS, big, build_scenario

__all__ = ["SCENARIOS", "EsCluster", "SimApiError", "big", "build_scenario"]

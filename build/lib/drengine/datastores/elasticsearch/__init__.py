"""Elasticsearch: explain and reallocate unassigned shards after losing nodes."""

from drengine.datastores import Datastore

DATASTORE = Datastore(kind="elasticsearch", title="Elasticsearch", default_port=9200,
                      connector="connector:ElasticBackend", simulator="sim:SimElasticBackend", simulated_lab=True, takes_clock=True)

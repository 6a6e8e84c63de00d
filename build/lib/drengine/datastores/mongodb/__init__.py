"""MongoDB replica sets: force a primary after the majority is lost, rejoin a wiped member."""

from drengine.datastores import Datastore

DATASTORE = Datastore(kind="mongodb", title="MongoDB replica set", default_port=27017,
                      connector="connector:MongoBackend", simulator="sim:SimMongoBackend", simulated_lab=True, takes_clock=True)

"""Ceph (RADOS): degrade to keep serving I/O, restore, monitor quorum surgery."""

from drengine.datastores import Datastore

DATASTORE = Datastore(kind="ceph", title="Ceph", default_port=3300,
                      connector="backend:CephBackend", simulator="sim:SimCephBackend", takes_clock=True)

"""MariaDB Galera Cluster: bring a survivor back as the Primary component."""

from drengine.datastores import Datastore

DATASTORE = Datastore(kind="galera", title="MariaDB Galera", default_port=3306,
                      connector="connector:GaleraBackend", simulator="sim:SimGaleraBackend",
                      default_data_dir="/var/lib/mysql", takes_clock=True)

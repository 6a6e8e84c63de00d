"""MariaDB with GTID replication: promote a surviving replica, rejoin an old primary."""

from drengine.datastores import Datastore

DATASTORE = Datastore(kind="mariadb", title="MariaDB (GTID replication)", default_port=3306,
                      connector="connector:MariaDBBackend", simulator="sim:SimMariaDBBackend",
                      default_data_dir="/var/lib/mysql", takes_clock=True)

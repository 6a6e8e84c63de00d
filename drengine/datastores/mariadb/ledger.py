"""The change-ledger entries MariaDB runbooks open (drengine/ledger.py): the old primary fenced
before a promotion (read_only set with its sessions killed, stopped, killed by pid, or out of
the proxies) and servers put in maint in the proxies' read backends. mariadb-rejoin closes
them as it makes the old primary a replica again and readmits it."""

from __future__ import annotations

from drengine.datastores.mariadb.connector import MariaDBAPI
from drengine.datastores.mysql_ledger import fence_look, kinds
from drengine.ledger import LedgerEntry, Look

DATASTORE = "mariadb"
REJOIN = "mariadb-rejoin"


def _check_fenced(backend: MariaDBAPI, entry: LedgerEntry) -> Look:
    server = backend.probe(entry.target)
    return fence_look(entry, server.state, server.error, serving=server.reachable and not server.read_only,
                      rejoined=server.reachable and server.read_only and server.is_replica)


KINDS = kinds(DATASTORE, _check_fenced)

"""The change-ledger entries galera-bootstrap-survivor opens (drengine/ledger.py): nodes fenced
because they were left out of the bootstrap and may be alive, nodes kept out (not started:
running outside the Primary component, or hung), and servers put in maint in the proxies'
read backends. The runbook's readmit step closes them for the nodes that rejoined."""

from __future__ import annotations

from drengine.datastores.galera.connector import GaleraAPI
from drengine.datastores.mysql_ledger import fence_look, kinds
from drengine.ledger import DAY, Change, ChangeKind, Holding, LedgerEntry, Look

DATASTORE = "galera"
BOOTSTRAP = "galera-bootstrap-survivor"
KEPT_OUT = "galera.kept_out"


def kept_out(node: str, why: str, start: str) -> Change:
    return Change(kind=KEPT_OUT, target=node, what=f"{node} kept out of the Primary component: {why}",
                  before="in the cluster", after="out", undo=start, undo_runbook=BOOTSTRAP)


def _node(backend: GaleraAPI, entry: LedgerEntry) -> tuple[str, str, bool]:
    node = backend.probe(entry.target)
    return node.state, node.error, node.is_primary and node.local_state == "Synced"


def _check_fenced(backend: GaleraAPI, entry: LedgerEntry) -> Look:
    state, error, joined = _node(backend, entry)
    return fence_look(entry, state, error, serving=False, rejoined=joined)


def _check_kept_out(backend: GaleraAPI, entry: LedgerEntry) -> Look:
    state, error, joined = _node(backend, entry)
    if joined:
        return Look(Holding.UNDONE, f"{entry.target} is back in the Primary component")
    return Look(Holding.IN_PLACE, f"{entry.target} is {state}" + (f": {error}" if error else ", outside the Primary component"))


KINDS = (*kinds(DATASTORE, _check_fenced), ChangeKind(KEPT_OUT, "a node kept out of the cluster", DAY, _check_kept_out))

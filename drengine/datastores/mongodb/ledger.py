"""The change-ledger entries MongoDB runbooks open (drengine/ledger.py): members a forced
reconfiguration removed from the replica set. They stay out (down, or fenced) until their
dbPath is emptied and mongodb-rejoin adds them back, which closes the entry; `drengine status`
checks the newest config the members answer with."""

from __future__ import annotations

from drengine.datastores.mongodb.connector import MongoAPI
from drengine.ledger import Change, ChangeKind, Holding, LedgerEntry, Look

REMOVED = "mongodb.removed"
REJOIN = "mongodb-rejoin"


def removed(member: str, host: str, forced_on: str) -> Change:
    return Change(kind=REMOVED, target=member,
                  what=f"{member} ({host}) removed from the replica set by the forced reconfig on {forced_on}",
                  before="member", after="removed",
                  undo=f"keep {member} stopped, empty its dbPath, start it, then on the primary: rs.add(\"{host}\")",
                  undo_runbook=REJOIN)


def _check_removed(backend: MongoAPI, entry: LedgerEntry) -> Look:
    view = backend.observe()
    config = view.newest_config()
    if config is None:
        return Look(Holding.UNKNOWN, "no member answered with a replica-set config")
    names = {view.name_of(m.host) for m in config.members}
    if entry.target in names:
        return Look(Holding.UNDONE, f"{entry.target} is in the set's config again (version {config.version})")
    return Look(Holding.IN_PLACE, f"{entry.target} is not in the set's config (version {config.version})")


KINDS = (
    # A member less in the set (one fewer copy, maybe one fewer vote) until it is added back.
    ChangeKind(REMOVED, "a member removed by a forced reconfig", 3 * 24 * 3600.0, _check_removed),
)

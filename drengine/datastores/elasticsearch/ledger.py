"""The change-ledger entries the Elasticsearch runbook opens (drengine/ledger.py): the delayed
allocation timeout set to 0, `cluster.routing.allocation.enable` changed, and replica counts
lowered. The runbook's restore step closes the ones it puts back (lowered replicas are kept
until data nodes return, so they stay open); `drengine status` checks each against the
cluster's settings."""

from __future__ import annotations

from collections.abc import Sequence

from drengine.datastores.elasticsearch.calls import DELAY_SETTING, ENABLE_SETTING, REPLICAS_SETTING
from drengine.datastores.elasticsearch.connector import ElasticAPI
from drengine.datastores.elasticsearch.planning import SettingChange, restore_calls
from drengine.ledger import DAY, HOUR, Change, ChangeKind, Holding, LedgerEntry, Look, compare

DELAY = "elasticsearch.delayed_timeout"
ENABLE = "elasticsearch.allocation"
REPLICAS = "elasticsearch.replicas"
KIND_OF = {DELAY_SETTING: DELAY, ENABLE_SETTING: ENABLE, REPLICAS_SETTING: REPLICAS}


def target(change: SettingChange) -> str:
    return f"{change.target} {change.key}"


def setting_changed(change: SettingChange) -> Change:
    where = "the cluster" if change.target == "cluster" else f"index {change.target}"
    return Change(kind=KIND_OF.get(change.key, DELAY), target=target(change),
                  what=f"{change.key} of {where} set to {change.new!r}", before=change.old,
                  after=str(change.new), undo=restore_calls([change])[0].statement().text)


def declare(changes: Sequence[SettingChange]) -> list[Change]:
    return [setting_changed(c) for c in changes]


def _value_now(backend: ElasticAPI, entry: LedgerEntry) -> str | None:
    name, _, key = entry.target.partition(" ")
    if key == ENABLE_SETTING:
        enable = backend.allocation_enable()
        return None if enable.scope == "default" else enable.value
    for info in backend.index_settings():
        if info.name == name:
            if key == DELAY_SETTING:
                return info.delayed_timeout if info.delayed_timeout_set else None
            return str(info.number_of_replicas)
    raise LookupError(name)


def _check(backend: ElasticAPI, entry: LedgerEntry) -> Look:
    try:
        now = _value_now(backend, entry)
    except LookupError:
        return Look(Holding.UNDONE, f"index {entry.target.split(' ')[0]} no longer exists")
    return compare(now, entry)


KINDS = (
    # Temporary by design: the runbook puts them back at its end; left behind, they change how the
    # cluster reacts to the next node that leaves.
    ChangeKind(DELAY, "the delayed allocation timeout shortened", 4 * HOUR, _check),
    ChangeKind(ENABLE, "cluster.routing.allocation.enable changed", 4 * HOUR, _check),
    # Fewer copies until data nodes return.
    ChangeKind(REPLICAS, "an index's replica count lowered", 7 * DAY, _check),
)

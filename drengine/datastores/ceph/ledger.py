"""The change-ledger entries Ceph runbooks open (drengine/ledger.py): OSD flags drengine set
(noout, norebalance) and pools whose min_size it lowered. ceph-restore closes them as it puts
them back; `drengine status` checks each against the OSD map."""

from __future__ import annotations

from drengine.datastores.ceph.backend import CephBackend
from drengine.ledger import DAY, HOUR, Change, ChangeKind, LedgerEntry, Look, compare

FLAG = "ceph.flag"
MIN_SIZE = "ceph.min_size"
RESTORE_RUNBOOK = "ceph-restore"


def flag_set(flag: str) -> Change:
    return Change(kind=FLAG, target=flag, what=f"OSD flag {flag} set", before="unset", after="set",
                  undo=f"ceph osd unset {flag}", undo_runbook=RESTORE_RUNBOOK, undo_inputs=(("degrade_run", "{run_dir}"),))


def min_size_lowered(pool: str, old: int, new: int) -> Change:
    return Change(kind=MIN_SIZE, target=f"pool {pool}", what=f"min_size of pool {pool} lowered from {old} to {new}",
                  before=str(old), after=str(new), undo=f"ceph osd pool set {pool} min_size {old}",
                  undo_runbook=RESTORE_RUNBOOK, undo_inputs=(("degrade_run", "{run_dir}"),))


def pool_target(pool: str) -> str:
    return f"pool {pool}"


def _check_flag(backend: CephBackend, entry: LedgerEntry) -> Look:
    flags = backend.observe().flags
    return compare("set" if entry.target in flags else "unset", entry)


def _check_min_size(backend: CephBackend, entry: LedgerEntry) -> Look:
    pool = backend.observe().pool(entry.target.removeprefix("pool "))
    return compare(None if pool is None else str(pool.min_size), entry)


KINDS = (
    # noout left set keeps a dead OSD's data from ever being re-replicated: a day at most.
    ChangeKind(FLAG, "an OSD flag set", DAY, _check_flag),
    # min_size 1 acknowledges writes on a single copy: the most dangerous thing left behind.
    ChangeKind(MIN_SIZE, "a pool's min_size lowered", 12 * HOUR, _check_min_size),
)

"""The change ledger against the cluster: each open entry checked with its datastore's check
(still in place, already undone by hand, changed again), its age against `expect_undo_within`
(`drengine status`), and `drengine changes close ID --reason`, which records an undo done by
hand once the cluster shows it, in a journal of its own (the one journal writer), then in the
run registry."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from drengine.errors import DrengineError, InputError, StepFailed
from drengine.inventory import Cluster, Inventory
from drengine.journal import Event, JournalWriter
from drengine.ledger import Holding, LedgerEntry, Look, age_words, expect_undo_within, kinds_of

CLOSE_RUNBOOK = "(changes close)"  # what a manual close's journal names as its runbook


class OpenChange(BaseModel):
    """One open entry as `drengine status` shows it."""

    model_config = ConfigDict(frozen=True)

    entry: LedgerEntry
    age_seconds: float
    expect_undo_within: float
    overdue: bool
    holding: Holding
    observed: str

    def line(self) -> str:
        due = (f"OVERDUE (expected undone within {age_words(self.expect_undo_within)})" if self.overdue
               else f"expected undone within {age_words(self.expect_undo_within)}")
        return f"{self.entry.id} [{self.entry.kind}] {self.entry.what}: open {age_words(self.age_seconds)}, {due}; " \
               f"{self.holding.value}: {self.observed}"


def look_at(cluster: Cluster, backend: Any, entry: LedgerEntry) -> Look:
    kind = kinds_of(cluster.kind).get(entry.kind)
    if kind is None:
        return Look(Holding.UNKNOWN, f"drengine does not know how to check a {entry.kind} entry on a {cluster.kind} cluster")
    if backend is None:
        return Look(Holding.UNKNOWN, "the cluster could not be asked")
    try:
        return kind.check(backend, entry)
    except DrengineError as exc:
        return Look(Holding.UNKNOWN, str(exc))


def check_open(cluster: Cluster, inventory: Inventory, backend: Any, entries: list[LedgerEntry],
               now: float | None = None) -> list[OpenChange]:
    """Every open entry checked against the cluster (`backend` None: not asked)."""
    at = time.time() if now is None else now
    found = []
    for entry in sorted((e for e in entries if e.is_open), key=lambda e: (e.opened, e.id)):
        within = expect_undo_within(inventory, cluster, entry.kind)
        look = look_at(cluster, backend, entry)
        found.append(OpenChange(entry=entry, age_seconds=round(entry.age(at), 1), expect_undo_within=within,
                                overdue=entry.age(at) > within, holding=look.holding, observed=look.observed))
    return found


def open_entries_of(inventory: Inventory, cluster: str) -> tuple[list[LedgerEntry], str]:
    """The cluster's entries in the registry, or why they could not be read."""
    from drengine.lock.changes import cluster_changes

    found = cluster_changes(inventory, cluster)
    if found.problem:
        return [], f"the change ledger ({found.backend}, {found.where}) could not be read: {found.problem}"
    return [e for e in found.entries if e.is_open], ""


# -- closing by hand -------------------------------------------------------------------------------


def find_entry(inventory: Inventory, ref: str, cluster: str | None) -> LedgerEntry:
    """An open entry by its id, or by an unambiguous end of it (`dcad.1`)."""
    from drengine.lock.changes import cluster_changes

    names = [cluster] if cluster else sorted(inventory.clusters)
    everything: list[LedgerEntry] = []
    problems = []
    for name in names:
        found = cluster_changes(inventory, name)
        if found.problem:
            problems.append(f"{name}: {found.problem}")
        everything += found.entries
    exact = [e for e in everything if e.id == ref]
    matches = exact or [e for e in everything if e.id.endswith(ref) or e.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InputError(f"{ref!r} names {len(matches)} ledger entries: {', '.join(e.id for e in matches)}; "
                         f"give the whole id")
    unread = f" (not read: {'; '.join(problems)})" if problems else ""
    raise InputError(f"no ledger entry {ref!r} in {inventory.path}{unread}; `drengine changes -i {inventory.path} --all` "
                     f"lists them")


def close_by_hand(inventory: Inventory, entry: LedgerEntry, reason: str, who: str, runs_dir: Path,
                  force: bool = False, open_backend: Callable[[Cluster, Inventory, Path], Any] | None = None) -> LedgerEntry:
    """Check that the entry is undone on the cluster, then journal its close (a journal of its own
    under `runs_dir`) and write it to the registry. Refused while the change is still in place."""
    from drengine.lock.changes import store_of
    from drengine.status import _open

    if not reason.strip():
        raise InputError("say how the change was undone: --reason \"...\" (it is journaled)")
    if not entry.is_open:
        raise InputError(f"ledger entry {entry.id} is already closed ({entry.closed_how} by {entry.closed_by})")
    cluster = inventory.cluster(entry.cluster)
    scratch = Path(tempfile.mkdtemp(prefix=f"drengine-close-{cluster.name}-"))
    backend = None
    try:
        try:
            backend = (open_backend or _open)(cluster, inventory, scratch)
            look = look_at(cluster, backend, entry)
        except DrengineError as exc:
            look = Look(Holding.UNKNOWN, str(exc))
    finally:
        if backend is not None:
            backend.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if look.holding is Holding.IN_PLACE:
        raise StepFailed(f"ledger entry {entry.id} is still in place on {cluster.name}: {look.observed}. Undo it first "
                         f"({'; '.join(entry.undo_lines()) or 'see drengine changes'}), then close it")
    if look.holding is not Holding.UNDONE and not force:
        raise StepFailed(f"ledger entry {entry.id} is {look.holding.value} on {cluster.name}: {look.observed}. Close it "
                         f"anyway with --force if you know it needs nothing more (journaled)")
    closed = entry.model_copy(update={
        "closed": time.time(), "closed_by": who, "closed_how": "by hand",
        "close_reason": f"{reason.strip()} (checked: {look.holding.value}: {look.observed})"
                        + (" [--force]" if look.holding is not Holding.UNDONE else ""),
    })
    run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{cluster.name}-close-{secrets.token_hex(2)}"
    journal = JournalWriter(runs_dir / run_id)
    try:
        journal.append(Event.RUN_STARTED, run_id=run_id, mode="close", runbook=CLOSE_RUNBOOK, cluster=cluster.name,
                       kind=cluster.kind, inventory=os.path.realpath(inventory.path), operator=who, pid=os.getpid(),
                       host=socket.gethostname())
        journal.append(Event.CHANGE_CLOSED, step="close", id=closed.id, entry=closed.model_dump(mode="json"),
                       checked=look.holding.value, observed=look.observed, force=force)
        journal.append(Event.RUN_FINISHED, end="done", success=True, summary=f"ledger entry {closed.id} closed by {who}")
    finally:
        journal.close()
    store_of(inventory, cluster.name).put(closed)
    return closed

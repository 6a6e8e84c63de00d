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
    from drengine.status import open_read_only

    if not reason.strip():
        raise InputError("say how the change was undone: --reason \"...\" (it is journaled)")
    if not entry.is_open:
        raise InputError(f"ledger entry {entry.id} is already closed ({entry.closed_how} by {entry.closed_by})")
    cluster = inventory.cluster(entry.cluster)
    scratch = Path(tempfile.mkdtemp(prefix=f"drengine-close-{cluster.name}-"))
    backend = None
    try:
        try:
            backend = (open_backend or open_read_only)(cluster, inventory, scratch)
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


# -- telling the team: Prometheus text and webhooks ------------------------------------------------------


def prometheus(checked: dict[str, list[OpenChange]], now: float | None = None) -> str:
    """Text exposition for the node-exporter textfile collector: one series per open entry (its
    age, the time it may stay open, overdue or not), and the count of open entries per cluster."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    labels = ["cluster", "kind", "id", "target"]
    age = Gauge("drengine_change_open_age_seconds", "Seconds a change-ledger entry has been open (a change a run "
                "left: flag, setting, fenced member)", labels, registry=registry)
    within = Gauge("drengine_change_expected_undo_seconds", "Seconds the entry may stay open (expect_undo_within)",
                   labels, registry=registry)
    overdue = Gauge("drengine_change_overdue", "1 when the entry is open past its expected undo time, else 0",
                    labels, registry=registry)
    count = Gauge("drengine_changes_open", "Open change-ledger entries of the cluster", ["cluster"], registry=registry)
    for cluster, changes in checked.items():
        count.labels(cluster=cluster).set(len(changes))
        for c in changes:
            values = {"cluster": cluster, "kind": c.entry.kind, "id": c.entry.id, "target": c.entry.target}
            age.labels(**values).set(c.age_seconds)
            within.labels(**values).set(c.expect_undo_within)
            overdue.labels(**values).set(1.0 if c.overdue else 0.0)
    stamp = Gauge("drengine_changes_checked_timestamp_seconds", "When the ledger was read (Unix time)", registry=registry)
    stamp.set(time.time() if now is None else now)
    return generate_latest(registry).decode()


def write_textfile(path: Path, checked: dict[str, list[OpenChange]]) -> None:
    from drengine.files import atomic_write

    atomic_write(path, prometheus(checked))  # the textfile collector must never read half a file


def tell_overdue(inventory: Inventory, checked: dict[str, list[OpenChange]]) -> list[str]:
    """A notification (the inventory's webhooks, event `change_overdue`) for each entry past its
    expected undo time, once per entry (the registry remembers it). Returns the failures in words."""
    from drengine.inventory import NotifyEvent
    from drengine.lock.changes import store_of
    from drengine.notify import Notice, Notifier

    targets = [t for t in inventory.notify if NotifyEvent.CHANGE_OVERDUE in t.events]
    due = [(cluster, c) for cluster, changes in checked.items() for c in changes
           if c.overdue and c.entry.overdue_notified is None]
    if not targets or not due:
        return []
    notifier = Notifier(targets, inventory.path)
    for cluster, c in due:
        e = c.entry
        notifier.send(Notice(
            NotifyEvent.CHANGE_OVERDUE, f"change left open too long on {cluster}",
            f"{e.what} ({e.kind}, ledger entry {e.id}) has been open {age_words(c.age_seconds)}, longer than the "
            f"{age_words(c.expect_undo_within)} expected; it is {c.holding.value}: {c.observed}. "
            + " ".join(e.undo_lines()),
            "warning", {"cluster": cluster, "kind": e.kind, "id": e.id, "target": e.target, "run_id": e.run_id,
                        "run_dir": e.run_dir, "runbook": e.runbook, "age_seconds": c.age_seconds,
                        "holding": c.holding.value},
        ))
    failed = notifier.close()
    sent = {d.event for d in notifier.deliveries if d.ok}
    problems = [f"notification {d.event} to {d.target} failed: {d.detail}" for d in failed]
    if NotifyEvent.CHANGE_OVERDUE.value in sent:
        for cluster, c in due:
            try:
                store = store_of(inventory, cluster)
                now = next((e for e in store.entries() if e.id == c.entry.id), None)
                if now is not None and now.is_open:  # a run may have closed it meanwhile: never reopen it
                    store.put(now.model_copy(update={"overdue_notified": time.time()}))
            except (DrengineError, OSError) as exc:
                problems.append(f"{c.entry.id}: could not remember the notification in the registry: {exc}")
    return problems

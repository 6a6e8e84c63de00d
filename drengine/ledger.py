"""The change ledger: what runs left changed on purpose, until it is undone.

Every change a run makes that is meant to be temporary (a Ceph flag, an Elasticsearch setting
a runbook puts back at its end) or that leaves the cluster diminished (a fenced member, a
lowered min_size, a member removed from a replica set) is an open ledger entry: what, where,
the value before, which run and step, who approved it, when, and the exact command (or the
runbook with its inputs) that undoes it.

A step declares one with `ctx.changed(Change(...))` and says it undid one with
`ctx.undone(kind, target)`; the engine journals both (`change_opened`, `change_closed`), so the
ledger is derivable from the journals alone (`fold`). The run registry keeps a copy of every
entry beside the cluster's lock (drengine/lock/changes.py), written from those journal events,
so that every machine of the team sees the same ledger. `drengine changes close ID` records a
manual undo in a journal of its own.

Each datastore declares its kinds of entries, and how to check one against the cluster, in
`drengine/datastores/<kind>/ledger.py` (`KINDS`).
"""

from __future__ import annotations

import importlib
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from drengine.errors import InputError
from drengine.journal import Entry, Event

if TYPE_CHECKING:
    from drengine.inventory import Cluster, Inventory

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class Change:
    """What a step declares it changed: `kind` (one its datastore declares, e.g. `ceph.flag`),
    `target` (what it is on: `noout`, `pool rbd`, `db1`), the value before and after, and how
    to undo it: the exact command, and the runbook (with its inputs) that does it."""

    kind: str
    target: str
    what: str
    before: str | None
    after: str
    undo: str
    undo_runbook: str = ""
    # The runbook's inputs; `{run_dir}` and `{run_id}` in a value stand for the run's own.
    undo_inputs: tuple[tuple[str, str], ...] = ()


class LedgerEntry(BaseModel):
    """One entry as the registry keeps it and `drengine changes` shows it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    cluster: str
    kind: str
    target: str
    what: str
    before: str | None = None
    after: str = ""
    undo: str = ""
    undo_runbook: str = ""  # the whole command: drengine run RUNBOOK -i INVENTORY -c CLUSTER --input ...
    run_id: str
    run_dir: str = ""
    runbook: str = ""
    step: str = ""
    approved_by: str = ""
    opened: float = 0.0
    closed: float | None = None
    closed_by: str = ""
    closed_how: str = ""  # "by runbook RUNBOOK (run ID)" or "by hand"
    close_reason: str = ""
    # Registry only (not journaled): when `drengine status` or `changes` told the inventory's
    # webhooks that this entry passed its expected undo time, so that it is told once.
    overdue_notified: float | None = None

    @property
    def is_open(self) -> bool:
        return self.closed is None

    def age(self, now: float) -> float:
        return max(0.0, now - self.opened)

    def undo_lines(self) -> list[str]:
        lines = [f"undo: {self.undo}"] if self.undo else []
        if self.undo_runbook:
            lines.append(f"or:   {self.undo_runbook}")
        return lines

    def line(self) -> str:
        before = "not set" if self.before is None else self.before
        return f"{self.id} [{self.kind}] {self.what} (was {before}; run {self.run_id}, step {self.step})"


def age_words(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * HOUR:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY:
        return f"{seconds / HOUR:.1f} h"
    return f"{seconds / DAY:.1f} days"


# -- what each datastore declares -------------------------------------------------------------------


class Holding(str, Enum):
    """An open entry checked against the cluster."""

    IN_PLACE = "still in place"
    UNDONE = "already undone"  # by hand, or by something drengine did not journal
    CHANGED = "changed again"  # neither the value the run set nor the one before
    UNKNOWN = "could not be checked"


@dataclass(frozen=True)
class Look:
    holding: Holding
    observed: str


Check = Callable[[Any, LedgerEntry], Look]


@dataclass(frozen=True)
class ChangeKind:
    """A kind of ledger entry a datastore declares: its name, what it is in words, how long it
    may stay before someone must act (the inventory's `expect_undo_within` overrides it), and
    how to check an entry against the cluster (given the datastore's backend)."""

    name: str
    title: str
    expect_undo_within: float
    check: Check


def compare(now: str | None, entry: LedgerEntry) -> Look:
    """The usual check: the value now against the value the run set and the one before."""
    shown = "not set" if now is None else now
    if now == entry.after:
        return Look(Holding.IN_PLACE, f"{entry.target} is {shown}")
    if now == entry.before:
        return Look(Holding.UNDONE, f"{entry.target} is {shown} again, as before the run")
    return Look(Holding.CHANGED, f"{entry.target} is {shown}: neither the run's {entry.after} nor {entry.before or 'not set'}")


def kinds_of(datastore: str) -> dict[str, ChangeKind]:
    """The kinds of entries a datastore declares (`drengine/datastores/<kind>/ledger.py`: KINDS)."""
    try:
        module = importlib.import_module(f"drengine.datastores.{datastore}.ledger")
    except ModuleNotFoundError as exc:
        if exc.name != f"drengine.datastores.{datastore}.ledger":
            raise
        return {}
    declared: Sequence[ChangeKind] = module.KINDS
    return {k.name: k for k in declared}


def all_kinds() -> dict[str, ChangeKind]:
    from drengine.datastores import kinds

    found: dict[str, ChangeKind] = {}
    for datastore in kinds():
        found.update(kinds_of(datastore))
    return found


def expect_undo_within(inventory: Inventory, cluster: Cluster, kind: str) -> float:
    """Seconds an entry of `kind` may stay open: the cluster's `expect_undo_within`, the
    inventory's, else the kind's own default (a day when the kind is not known here)."""
    for given in (cluster.expect_undo_within, inventory.expect_undo_within):
        if kind in given:
            return float(given[kind])
    declared = kinds_of(cluster.kind).get(kind)
    return declared.expect_undo_within if declared is not None else DAY


def check_expectations(inventory: Inventory) -> None:
    """Every kind named under `expect_undo_within` must be one a datastore declares."""
    known = all_kinds()
    for where, given in [("expect_undo_within", inventory.expect_undo_within),
                         *((f"clusters.{c.name}.expect_undo_within", c.expect_undo_within)
                           for c in inventory.clusters.values())]:
        for kind in given:
            if kind not in known:
                from drengine.suggest import did_you_mean

                raise InputError(f"{inventory.path}: {where}: no kind of ledger entry is called {kind!r}."
                                 f"{did_you_mean(kind, list(known))} Known kinds: {', '.join(sorted(known))}")


# -- derived from journals ---------------------------------------------------------------------------


def fold(entries: Iterable[Entry], ledger: dict[str, LedgerEntry] | None = None) -> dict[str, LedgerEntry]:
    """The ledger after these journal events (one journal, or many in order): entries opened,
    then closed by the same run, another run or a manual close."""
    found = {} if ledger is None else ledger
    for entry in entries:
        if entry.type is Event.CHANGE_OPENED:
            opened = LedgerEntry.model_validate(entry.data["entry"])
            found.setdefault(opened.id, opened)
        elif entry.type is Event.CHANGE_CLOSED:
            closed = LedgerEntry.model_validate(entry.data["entry"])
            found[closed.id] = closed
    return found


def open_entries(ledger: dict[str, LedgerEntry] | Iterable[LedgerEntry]) -> list[LedgerEntry]:
    items = ledger.values() if isinstance(ledger, dict) else ledger
    return sorted((e for e in items if e.is_open), key=lambda e: (e.opened, e.id))


def listing(entries: Sequence[LedgerEntry]) -> list[str]:
    """What a stop and a verdict say about the run's open entries: one line each, then how to undo it."""
    if not entries:
        return []
    lines = [f"left changed by this run ({len(entries)} open in the ledger; `drengine changes` lists them):"]
    for e in entries:
        lines.append(f"  {e.line()}")
        lines += [f"    {u}" for u in e.undo_lines()]
    return lines


# -- the engine's side: one writer, through the run's journal --------------------------------------


@dataclass
class RunIdentity:
    run_id: str
    run_dir: str
    runbook: str
    cluster: str
    inventory_path: str


@dataclass
class RunLedger:
    """The ledger calls of one run (`ctx.changed`, `ctx.undone`), journaled by the engine's
    journal. `others` reads the open entries of the cluster's registry (other runs' changes)."""

    journal: Any  # JournalWriter
    run: RunIdentity
    step: Callable[[], str]
    approved_by: Callable[[str], str]
    wall: Callable[[], float] = time.time
    others: Callable[[], list[LedgerEntry]] = list
    mine: dict[str, LedgerEntry] = field(default_factory=dict)

    def _next_id(self) -> str:
        return f"{self.run.run_id}.{len(self.mine) + 1}"

    def _undo_runbook(self, change: Change) -> str:
        if not change.undo_runbook:
            return ""
        words = ["drengine", "run", change.undo_runbook, "-i", self.run.inventory_path, "-c", self.run.cluster]
        for name, value in change.undo_inputs:
            value = value.replace("{run_dir}", self.run.run_dir).replace("{run_id}", self.run.run_id)
            words += ["--input", f"{name}={value}"]
        return " ".join(shlex.quote(w) for w in words)

    def opened(self, change: Change) -> LedgerEntry:
        """Journal a new open entry, unless this run already has one open for the same thing
        (a retried or resumed step declares its change again)."""
        for entry in self.mine.values():
            if entry.is_open and entry.kind == change.kind and entry.target == change.target:
                return entry
        step = self.step()
        entry = LedgerEntry(
            id=self._next_id(), cluster=self.run.cluster, kind=change.kind, target=change.target, what=change.what,
            before=change.before, after=change.after, undo=change.undo, undo_runbook=self._undo_runbook(change),
            run_id=self.run.run_id, run_dir=self.run.run_dir, runbook=self.run.runbook, step=step,
            approved_by=self.approved_by(step), opened=self.wall(),
        )
        self.mine[entry.id] = entry
        self.journal.append(Event.CHANGE_OPENED, step=step, id=entry.id, entry=entry.model_dump(mode="json"))
        return entry

    def undone(self, kind: str, target: str, reason: str = "") -> list[LedgerEntry]:
        """Close every open entry of the cluster for this kind and target (this run's, and
        earlier runs' in the registry): the step put it back."""
        step = self.step()
        seen = {e.id for e in self.mine.values()}
        candidates = [e for e in self.mine.values() if e.is_open]
        candidates += [e for e in self.others() if e.is_open and e.id not in seen]
        closed = []
        for entry in candidates:
            if entry.kind != kind or entry.target != target:
                continue
            done = entry.model_copy(update={
                "closed": self.wall(), "closed_by": self.approved_by(step) or "drengine",
                "closed_how": f"by runbook {self.run.runbook} (run {self.run.run_id}, step {step})",
                "close_reason": reason or f"step {step} put it back",
            })
            if entry.id in self.mine:
                self.mine[entry.id] = done
            self.journal.append(Event.CHANGE_CLOSED, step=step, id=done.id, entry=done.model_dump(mode="json"))
            closed.append(done)
        return closed

    def still_open(self) -> list[LedgerEntry]:
        return open_entries(self.mine)

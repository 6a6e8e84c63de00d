"""The change ledger's place in the run registry: every ledger entry (drengine/ledger.py) kept
beside the cluster's lock, so that every machine of the team sees what runs left changed.

- local lock: one file per entry, `DIR/CLUSTER.changes/ENTRY_ID.json`;
- etcd lock: one key per entry, `PREFIX/clusters/CLUSTER/changes/ENTRY_ID`.

Entries are written from the journal (`ChangePublisher`, a journal listener, like the run
registry's `RunPublisher`): the registry never says something no journal says. Writing is best
effort during a run (an unreachable etcd must not stop a recovery); closed entries are kept for
30 days, then forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from drengine.errors import DrengineError
from drengine.journal import Entry, Event
from drengine.ledger import LedgerEntry
from drengine.lock import HeldLock, LockBackend, open_lock

if TYPE_CHECKING:
    from drengine.inventory import Inventory

CLOSED_KEPT_SECONDS = 30 * 24 * 3600


class ChangeStore:
    """Where one cluster's ledger entries live."""

    def __init__(self, backend: LockBackend) -> None:
        self.backend = backend
        self.where = backend.where

    def entries(self) -> list[LedgerEntry]:
        from drengine.lock.local import LocalLock

        if isinstance(self.backend, LocalLock):
            return self._local_entries(self._local_dir(self.backend))
        return self._etcd_entries()

    def put(self, entry: LedgerEntry) -> None:
        """Write one entry (raises DrengineError or OSError when the registry cannot take it)."""
        from drengine.lock.local import LocalLock

        if isinstance(self.backend, LocalLock):
            from drengine.files import atomic_write

            folder = self._local_dir(self.backend)
            atomic_write(folder / f"{entry.id}.json", entry.model_dump_json(), disk=self.backend.disk)
            if entry.closed is not None:
                for old in self._local_entries(folder):
                    if old.closed is not None and entry.closed - old.closed > CLOSED_KEPT_SECONDS:
                        (folder / f"{old.id}.json").unlink(missing_ok=True)
            return
        self._etcd_put(entry)

    # -- local ------------------------------------------------------------------------------------
    @staticmethod
    def _local_dir(lock: Any) -> Path:
        folder: Path = lock.dir / f"{lock.cluster}.changes"
        return folder

    @staticmethod
    def _local_entries(folder: Path) -> list[LedgerEntry]:
        found = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                found.append(LedgerEntry.model_validate_json(path.read_text()))
            except (OSError, ValueError):
                continue  # being replaced, or damaged: the journals still say it
        return found

    # -- etcd -------------------------------------------------------------------------------------
    def _etcd_prefix(self) -> str:
        lock: Any = self.backend
        return f"{lock.settings.prefix}/clusters/{lock.cluster}/changes/"

    def _etcd_entries(self) -> list[LedgerEntry]:
        lock: Any = self.backend
        found = []
        for value, _meta in lock.call(lambda c: c.get_prefix(self._etcd_prefix()), "read the change ledger"):
            try:
                found.append(LedgerEntry.model_validate_json(value))
            except (ValueError, ValidationError):
                continue
        return found

    def _etcd_put(self, entry: LedgerEntry) -> None:
        """One pass over the members, each bounded by the lock's timeout: a run's journal listener
        must not wait out an election (the entry is tried again at the run's next event)."""
        from etcd3gw import exceptions

        from drengine.errors import LockUnavailable
        from drengine.lock.etcd import Unreachable

        lock: Any = self.backend
        key = f"{self._etcd_prefix()}{entry.id}"
        try:
            lease = lock.gateway.call(lambda c: c.lease(ttl=CLOSED_KEPT_SECONDS)) if entry.closed is not None else None
            lock.gateway.call(lambda c: c.put(key, entry.model_dump_json(), lease=lease))
        except Unreachable as exc:
            raise LockUnavailable(f"the change ledger on etcd could not be written: {'; '.join(exc.failures)}") from None
        except exceptions.Etcd3Exception as exc:
            raise LockUnavailable(f"etcd refused to write the change ledger: {exc}") from None


def held_store(held: HeldLock) -> ChangeStore:
    """The ledger of the cluster whose lock a run holds."""
    lock: LockBackend = getattr(held, "lock")  # noqa: B009 - LocalHeld and EtcdHeld both keep their backend
    return ChangeStore(lock)


class ChangePublisher:
    """A journal listener: every entry a run opens or closes is written to the registry. An
    entry the registry could not take is tried again at the run's next event."""

    def __init__(self, store: ChangeStore) -> None:
        self.store = store
        self.pending: dict[str, LedgerEntry] = {}

    def __call__(self, entry: Entry) -> None:
        if entry.type in (Event.CHANGE_OPENED, Event.CHANGE_CLOSED):
            record = LedgerEntry.model_validate(entry.data["entry"])
            self.pending[record.id] = record
        if not self.pending:
            return
        for record in list(self.pending.values()):
            try:
                self.store.put(record)
            except (DrengineError, OSError):
                return  # best effort: tried again at the next event
            self.pending.pop(record.id, None)


class ClusterChanges(BaseModel):
    """One cluster's ledger as the registry holds it, or why it could not be read."""

    model_config = ConfigDict(frozen=True)

    cluster: str
    backend: str
    where: str
    entries: list[LedgerEntry] = []
    problem: str | None = None


def cluster_changes(inventory: Inventory, cluster: str, lock_dir: Path | None = None) -> ClusterChanges:
    settings = inventory.lock_for(inventory.cluster(cluster))
    backend = open_lock(settings, cluster, lock_dir)
    try:
        entries = ChangeStore(backend).entries()
    except DrengineError as exc:
        return ClusterChanges(cluster=cluster, backend=backend.backend, where=backend.where, problem=str(exc))
    entries.sort(key=lambda e: (e.opened, e.id))
    return ClusterChanges(cluster=cluster, backend=backend.backend, where=backend.where, entries=entries)


def store_of(inventory: Inventory, cluster: str, lock_dir: Path | None = None) -> ChangeStore:
    return ChangeStore(open_lock(inventory.lock_for(inventory.cluster(cluster)), cluster, lock_dir))


def reader(held: HeldLock | None, on_error: Callable[[str], None]) -> Callable[[], list[LedgerEntry]]:
    """The open entries of the run's cluster, for a step that undoes an earlier run's change."""
    if held is None:
        return list

    def read() -> list[LedgerEntry]:
        try:
            return [e for e in held_store(held).entries() if e.is_open]
        except DrengineError as exc:
            on_error(str(exc))
            return []

    return read

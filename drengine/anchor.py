"""Journals anchored in the run registry. A journal's hash chain is unkeyed: whoever can write the
run directory can cut events off its end and rewrite `journal.head`, or rewrite it whole, and the
chain still checks out. So while a run holds its lock, the latest head (sequence number and hash)
is also kept beside the lock, in the run registry (etcd for a team lock, the local registry
directory otherwise: drengine/lock/store.py), as it is written; `journal verify` and the reports
compare the journal with it. A truncated or rewritten journal is caught unless the registry was
rewritten too.

The head is written by a thread of its own (the latest one wins; a recovery never waits for the
registry), and once more, waited for, before the run gives its lock back. After a crash the
registry may be an event or two behind the journal: said, not failed. A journal whose start
says it is anchored while the registry has no head for it fails.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from drengine.errors import DrengineError, InputError, JournalCorrupt, LockUnavailable
from drengine.journal import Chain, Entry, Event, JournalWriter, resolve_journal, verified_chain
from drengine.lock import HeldLock
from drengine.lock.store import EtcdStore, LocalStore, RegistryStore, store_of

FLUSH_SECONDS = 5.0


class Head(BaseModel):
    """A run's journal head as the registry keeps it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    seq: int
    hash: str
    at: float = 0.0
    run_dir: str = ""


def head_key(run_id: str) -> str:
    return f"heads/{run_id}"


class HeadAnchor:
    """A journal listener that keeps the run's latest head in the registry, from its own thread."""

    def __init__(self, journal: JournalWriter, store: RegistryStore, run_id: str) -> None:
        self.journal = journal
        self.store = store
        self.run_id = run_id
        self._latest: tuple[int, str] | None = None
        self._written: tuple[int, str] | None = None
        self._changed = threading.Condition()
        self._stopping = False
        self.failure = ""
        self._thread = threading.Thread(target=self._loop, name=f"anchor-{run_id}", daemon=True)
        self._thread.start()

    def on_event(self, entry: Entry) -> None:
        head = self.journal.head()
        with self._changed:
            if self._latest is None or head[0] > self._latest[0]:
                self._latest = head
                self._changed.notify_all()

    def _loop(self) -> None:
        while True:
            with self._changed:
                while not self._stopping and self._latest == self._written:
                    self._changed.wait()
                if self._latest == self._written:
                    return
                head = self._latest
            assert head is not None
            self._put(head)
            with self._changed:
                self._written = head
                self._changed.notify_all()

    def _put(self, head: tuple[int, str]) -> None:
        record = Head(run_id=self.run_id, seq=head[0], hash=head[1], at=time.time(), run_dir=str(self.journal.run_dir))
        try:
            self.store.put(head_key(self.run_id), record.model_dump_json())
            self.failure = ""
        except (DrengineError, OSError) as exc:
            self.failure = str(exc)  # the registry is behind until the next head gets through

    def close(self, timeout: float = FLUSH_SECONDS) -> None:
        """Write the last head (waiting at most `timeout`), then stop the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join(timeout)


def anchor_location(held: HeldLock, cluster: str, run_id: str) -> dict[str, Any]:
    """Where a run's head is kept, as journaled with the lock taken (verify finds the registry from it)."""
    store = store_of(held, cluster)
    if isinstance(store, EtcdStore):
        return {"backend": "etcd", "endpoints": list(store.settings.endpoints), "prefix": store.settings.prefix,
                "key": store.base + head_key(run_id)}
    assert isinstance(store, LocalStore)
    return {"backend": "local", "dir": str(store.root.parent), "key": head_key(run_id)}


def anchor_journal(journal: JournalWriter, held: HeldLock, cluster: str, run_id: str) -> HeadAnchor:
    """Start keeping the run's journal head in the registry beside its lock."""
    store = store_of(held, cluster)
    if isinstance(store, EtcdStore):
        store.patience = 0.0  # one pass over the members: a head that does not get through is followed by the next
    return HeadAnchor(journal, store, run_id)


def anchor_appended(run_dir: Path) -> str:
    """After an event is appended outside a run (`runs close`): keep the registry's head up with it.
    Returns what went wrong in words ("" when the head is kept or the run is not anchored)."""
    chain = verified_chain(run_dir)
    anchor = anchored_at(chain)
    if anchor is None or not chain.entries:
        return ""
    run_id = str(next((e.data for e in chain.entries if e.type is Event.RUN_STARTED), {}).get("run_id", run_dir.name))
    head = Head(run_id=run_id, seq=chain.entries[-1].seq, hash=chain.last, at=time.time(), run_dir=str(run_dir))
    try:
        _store_for(chain, anchor).put(head_key(run_id), head.model_dump_json())
    except (DrengineError, OSError) as exc:
        return f"the head kept in the run registry could not be updated ({exc}); `journal verify` will say so"
    return ""


# -- checking a journal against the registry ------------------------------------------------------

@dataclass(frozen=True)
class AnchorCheck:
    """What the registry says about a journal: `ok` False means tampering was found."""

    ok: bool
    text: str
    compared: bool


def anchored_at(chain: Chain) -> dict[str, Any] | None:
    """Where the run said its head is kept (journaled with the lock it took last), if anywhere."""
    found: dict[str, Any] | None = None
    for entry in chain.entries:
        if entry.type in (Event.LOCK_TAKEN, Event.LOCK_BROKEN) and isinstance(entry.data.get("anchor"), dict):
            found = entry.data["anchor"]
    return found


def _store_for(chain: Chain, anchor: dict[str, Any]) -> RegistryStore:
    from drengine.inventory import EtcdLockSettings, load_inventory

    started = next((e.data for e in chain.entries if e.type is Event.RUN_STARTED), {})
    cluster = str(started.get("cluster", ""))
    if anchor.get("backend") == "local":
        return LocalStore(cluster, Path(str(anchor.get("dir"))))
    settings: Any = None
    try:
        inventory = load_inventory(str(started.get("inventory", "")))
        settings = inventory.lock_for(inventory.cluster(cluster))
    except DrengineError:
        pass  # the inventory moved or changed: the endpoints the journal names, without credentials
    if settings is None or settings.backend != "etcd" or settings.prefix != anchor.get("prefix"):
        settings = EtcdLockSettings(backend="etcd", endpoints=list(anchor.get("endpoints") or []),
                                    prefix=str(anchor.get("prefix") or "/drengine"))
    return EtcdStore(settings, cluster, patience=0.0)


def _hash_at(journal: Path, seq: int) -> str:
    """The hash of event `seq` of a verified journal (its line `seq`: verified journals have no blank lines)."""
    with open(journal, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if number == seq:
                return str(json.loads(line)["hash"])
    return ""


def check_anchor(path: str | Path, chain: Chain | None = None) -> AnchorCheck:
    """Compare a journal (its chain already verified, or verified here) with the head the registry
    kept for its run. Raises LockUnavailable when the registry cannot be read."""
    journal = resolve_journal(path)
    chain = chain if chain is not None else verified_chain(journal)
    anchor = anchored_at(chain)
    started = next((e.data for e in chain.entries if e.type is Event.RUN_STARTED), {})
    run_id = str(started.get("run_id", journal.parent.name))
    if anchor is None:
        return AnchorCheck(True, "not anchored in a run registry (a plan, or a run from before anchoring)", False)
    store = _store_for(chain, anchor)
    text = store.get(head_key(run_id))
    count = len(chain.entries)
    if text is None:
        return AnchorCheck(False, f"run {run_id}: its journal says its head is kept in the run registry ({store.where}), "
                                  f"but the registry has no head for it: removed from the registry, or the journal "
                                  f"belongs elsewhere", True)
    try:
        head = Head.model_validate_json(text)
    except (ValidationError, ValueError):
        return AnchorCheck(False, f"run {run_id}: the head kept in the run registry ({store.where}) is unreadable", True)
    if head.seq > count:
        return AnchorCheck(False, f"run {run_id}: the journal ends at event #{count} but the run registry "
                                  f"({store.where}) recorded its head at event #{head.seq}: events #{count + 1} to "
                                  f"#{head.seq} were removed (and journal.head rewritten to match)", True)
    found = _hash_at(journal, head.seq)
    if found != head.hash:
        return AnchorCheck(False, f"run {run_id}: event #{head.seq} of the journal (hash {found[:12]}) is not the one "
                                  f"the run registry ({store.where}) recorded (hash {head.hash[:12]}): the journal "
                                  f"was rewritten from there on", True)
    if head.seq < count:
        return AnchorCheck(True, f"anchored in the run registry up to event #{head.seq} of {count}: the last "
                                 f"{count - head.seq} event(s) came after the registry last heard from the run "
                                 f"(a crash, or the registry unreachable then)", True)
    return AnchorCheck(True, f"matches the head kept in the run registry ({store.where}) at event #{count}", True)


def verify_anchored(path: str | Path) -> tuple[int, AnchorCheck]:
    """`journal verify`: the chain, then the registry's head; raise JournalCorrupt naming what differs."""
    chain = verified_chain(path)
    try:
        check = check_anchor(path, chain)
    except LockUnavailable as exc:
        raise LockUnavailable(f"{path}: the hash chain is intact ({len(chain.entries)} events) but it could not be "
                              f"compared with the head kept in the run registry: {exc}. `drengine journal verify "
                              f"--no-registry` checks the chain alone") from None
    except InputError as exc:
        raise InputError(f"{path}: the hash chain is intact ({len(chain.entries)} events) but the run registry its "
                         f"lock_taken event names cannot be found: {exc}. Check the inventory's `lock:` (or the "
                         f"lock directory) it ran with; `drengine journal verify --no-registry` checks the chain "
                         f"alone") from None
    if not check.ok:
        raise JournalCorrupt(f"{path}: {check.text}")
    return len(chain.entries), check


_UNREACHABLE: dict[str, str] = {}  # registries a report found unreachable, not asked again by this process


def anchor_words(path: str | Path, chain: Chain) -> AnchorCheck:
    """For reports: the comparison in words, never raising (an unreachable registry is said)."""
    try:
        anchor = anchored_at(chain)
        key = json.dumps(anchor, sort_keys=True)
        if key in _UNREACHABLE:
            return AnchorCheck(True, f"not compared with the run registry: {_UNREACHABLE[key]}", False)
        try:
            return check_anchor(path, chain)
        except LockUnavailable as exc:
            _UNREACHABLE[key] = str(exc)
            return AnchorCheck(True, f"not compared with the run registry: {exc}", False)
    except DrengineError as exc:
        return AnchorCheck(True, f"not compared with the run registry: {exc}", False)

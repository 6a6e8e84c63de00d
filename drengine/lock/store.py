"""Small records kept in the run registry beside a cluster's lock, readable from every machine
that reaches it: approval requests and approvals (drengine/approvals.py) and the journals'
anchored heads (drengine/anchor.py). A record is a key (a relative path: `approvals/RUN/request`)
and a JSON text.

- local lock: files under `DIR/CLUSTER.registry/` beside the lock file (shared by the people of
  this machine when the inventory's `lock: {backend: local, dir: ...}` names a directory they
  can all write; directories that others add records to are created sticky and world-writable,
  as /tmp is, so nobody removes another's record);
- etcd lock: keys `PREFIX/clusters/CLUSTER/KEY`, through the same gateway as the lock.

Errors reaching etcd raise LockUnavailable (exit code 4) naming the members and what they said.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from drengine.errors import LockUnavailable
from drengine.files import atomic_write
from drengine.lock import HeldLock, default_lock_dir
from drengine.machine import DISK, Disk

if TYPE_CHECKING:
    from drengine.inventory import EtcdLockSettings, LocalLockSettings


class RegistryStore(ABC):
    """Records beside one cluster's lock."""

    backend: str
    where: str

    @abstractmethod
    def put(self, key: str, text: str, shared: bool = False) -> None:
        """Write a record (`shared`: its folder takes records from other OS users too)."""

    @abstractmethod
    def get(self, key: str) -> str | None:
        """A record's text, or None when there is none."""

    @abstractmethod
    def under(self, prefix: str) -> dict[str, str]:
        """Every record whose key starts with `prefix` (a folder ending in /), by key."""

    @abstractmethod
    def delete_under(self, prefix: str) -> None:
        """Remove every record whose key starts with `prefix`."""


def _key_path(root: Path, key: str) -> Path:
    parts = [p for p in key.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"not a registry key: {key!r}")
    return root.joinpath(*parts)


class LocalStore(RegistryStore):
    backend = "local"

    def __init__(self, cluster: str, lock_dir: Path | None = None, disk: Disk = DISK) -> None:
        self.root = (lock_dir or default_lock_dir()) / f"{cluster}.registry"
        self.disk = disk
        self.where = f"directory {self.root}"

    def put(self, key: str, text: str, shared: bool = False) -> None:
        path = _key_path(self.root, key)
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            if shared:
                try:
                    os.chmod(path.parent, 0o1777)
                except PermissionError:
                    pass  # made by someone else meanwhile: theirs to share
        atomic_write(path, text, disk=self.disk)
        try:
            os.chmod(path, 0o644)  # readable by the other people of the machine (nothing secret in it)
        except PermissionError:
            pass

    def get(self, key: str) -> str | None:
        try:
            return _key_path(self.root, key).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def under(self, prefix: str) -> dict[str, str]:
        folder = _key_path(self.root, prefix)
        found: dict[str, str] = {}
        if not folder.is_dir():
            return found
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                try:
                    found[path.relative_to(self.root).as_posix()] = path.read_text(encoding="utf-8")
                except OSError:
                    continue  # replaced meanwhile
        return found

    def delete_under(self, prefix: str) -> None:
        folder = _key_path(self.root, prefix)
        for path in sorted(folder.rglob("*"), reverse=True) if folder.is_dir() else []:
            try:
                path.unlink() if path.is_file() else path.rmdir()
            except OSError:
                continue  # another person's record in a sticky folder: it names an older request and is ignored


class EtcdStore(RegistryStore):
    backend = "etcd"

    def __init__(self, settings: EtcdLockSettings, cluster: str, patience: float | None = None) -> None:
        from drengine.lock.etcd import Gateway

        self.settings = settings
        self.cluster = cluster
        self.base = f"{settings.prefix}/clusters/{cluster}/"
        self.where = f"etcd keys {self.base}... at {', '.join(settings.endpoints)}"
        self.gateway = Gateway(settings)
        # A run waiting at a gate gives etcd a leader election's time; a report or verify reads once.
        self.patience = settings.lease_ttl if patience is None else patience

    def _call(self, request: object, doing: str) -> object:
        from etcd3gw import exceptions

        from drengine.lock.etcd import Unreachable, _error_text

        try:
            return self.gateway.call(request, patience=self.patience)  # type: ignore[arg-type]
        except Unreachable as exc:
            raise LockUnavailable(f"cannot {doing} in the run registry of cluster {self.cluster} on etcd: no member "
                                  f"could serve it ({'; '.join(exc.failures)})") from None
        except exceptions.Etcd3Exception as exc:
            raise LockUnavailable(f"etcd refused to {doing} for cluster {self.cluster}: "
                                  f"{_error_text(exc.detail_text) or exc}") from None

    def put(self, key: str, text: str, shared: bool = False) -> None:
        self._call(lambda c: c.put(self.base + key, text), "write a record")

    def get(self, key: str) -> str | None:
        values = self._call(lambda c: c.get(self.base + key), "read a record")
        assert isinstance(values, list)
        return _text(values[0]) if values else None

    def under(self, prefix: str) -> dict[str, str]:
        # etcd3gw decodes the keys and values of a range with metadata (base64 on the gateway).
        found = self._call(lambda c: c.get_prefix(self.base + prefix), "read records")
        assert isinstance(found, list)
        return {_text(meta["key"])[len(self.base):]: _text(value) for value, meta in found}

    def delete_under(self, prefix: str) -> None:
        self._call(lambda c: c.delete_prefix(self.base + prefix), "remove records")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_store(settings: LocalLockSettings | EtcdLockSettings, cluster: str, lock_dir: Path | None = None,
               disk: Disk = DISK, patience: float | None = None) -> RegistryStore:
    """The records beside the lock the settings name (`lock_dir` overrides a local lock's directory)."""
    if settings.backend == "etcd":
        return EtcdStore(settings, cluster, patience=patience)
    return LocalStore(cluster, lock_dir or (Path(settings.dir).expanduser() if settings.dir else None), disk=disk)


def store_of(held: HeldLock, cluster: str) -> RegistryStore:
    """The records beside the lock a run holds (the same registry its state is published in)."""
    from drengine.lock.etcd import EtcdHeld
    from drengine.lock.local import LocalHeld

    if isinstance(held, EtcdHeld):
        return EtcdStore(held.settings, cluster)
    assert isinstance(held, LocalHeld)
    return LocalStore(cluster, held.lock.dir, disk=held.lock.disk)

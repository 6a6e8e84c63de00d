"""The local lock: a kernel lock (`flock`) on `DIR/CLUSTER.lock`, with the holder's identity
written inside, and the run registry in `DIR/CLUSTER.runs/`.

Why flock: the kernel releases it when the holder's last file descriptor closes, so a dead
holder (even SIGKILLed) frees the lock by itself, and of many processes taking over a stale
lock at once exactly one gets it. The file is never deleted (deleting a locked file lets a
second process lock a new file of the same name); a release empties it instead.

`--break-lock` cannot take a kernel lock from a live process: it puts a new, already locked
file in place (rename) after checking, under a guard lock, that the file is still the one
whose holder it named. Breakers are serialised by that guard, so of several that saw the same
holder exactly one wins; a broken holder sees that its file was replaced at its next step
boundary and stops.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from drengine.clock import wait_until
from drengine.errors import LockHeld
from drengine.files import atomic_write
from drengine.lock import HeldLock, Holder, LockBackend, RunState, default_lock_dir
from drengine.machine import DISK, Disk

TRIES = 5  # the file can be replaced by a breaker between open and flock; try again then
GUARD_SECONDS = 5.0
FINISHED_KEPT_SECONDS = 30 * 86400  # finished runs stay in the local registry this long

FileId = tuple[int, int]


def _open(path: Path, truncate: bool = False) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
    return os.open(path, flags, 0o644)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _identity(fd: int) -> FileId:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _path_identity(path: Path) -> FileId | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _read_holder(fd: int) -> Holder | None:
    raw = os.pread(fd, 65536, 0)
    if not raw.strip():
        return None
    try:
        return Holder.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return Holder(run_id="(unreadable lock file)", user="?", host="?", pid=0)


def _write_holder(fd: int, holder: Holder, disk: Disk) -> None:
    data = holder.model_dump_json().encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    disk.sync(fd)


def kernel_lock_pid(path: Path) -> int | None:
    """The pid holding an exclusive flock on `path`, read from /proc/locks (None: not locked)."""
    file_id = _path_identity(path)
    if file_id is None:
        return None
    dev, ino = file_id
    wanted = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[3] == "WRITE" and fields[5] == wanted:
            return int(fields[4])
    return None


@contextmanager
def _guard(path: Path) -> Iterator[None]:
    """Serialise lock breakers (and only them) on a separate file that is never replaced."""
    fd = _open(path)
    try:
        if not wait_until(lambda: _try_flock(fd), GUARD_SECONDS, interval=0.01):
            raise LockHeld(f"another --break-lock on {path.parent} did not finish within {GUARD_SECONDS:g} s; try again")
        yield
    finally:
        os.close(fd)


class LocalLock(LockBackend):
    backend = "local"

    def __init__(self, cluster: str, lock_dir: Path | None = None, disk: Disk = DISK) -> None:
        self.cluster = cluster
        self.disk = disk
        self.dir = lock_dir or default_lock_dir()
        self.path = self.dir / f"{cluster}.lock"
        self.runs_dir = self.dir / f"{cluster}.runs"
        self.where = f"lock file {self.path}"

    def acquire(self, me: Holder, break_lock: bool = False) -> LocalHeld:
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(TRIES):
            fd = _open(self.path)
            if _try_flock(fd):
                if _path_identity(self.path) != _identity(fd):  # a breaker replaced the file meanwhile
                    os.close(fd)
                    continue
                previous = _read_holder(fd)
                _write_holder(fd, me, self.disk)
                return LocalHeld(self, fd, me, replaced=previous, replaced_alive=False if previous else None)
            seen = _identity(fd)
            current = self._holder_of(fd)
            os.close(fd)
            if not break_lock:
                raise LockHeld(self._held_message(current))
            return self._break(me, seen, current)
        raise LockHeld(f"the lock file {self.path} kept being replaced while drengine tried to take it "
                       f"(several --break-lock at once?); look at who holds it, then try again")

    def _holder_of(self, fd: int) -> Holder | None:
        """The holder named in the file. A winner writes its name just after it locks, so give it a moment."""
        found: list[Holder | None] = [None]

        def written() -> bool:
            found[0] = _read_holder(fd)
            pid = kernel_lock_pid(self.path)
            return pid is None or (found[0] is not None and found[0].pid == pid)

        wait_until(written, 1.0, interval=0.01)
        return found[0]

    def _held_message(self, current: Holder | None) -> str:
        who = current.describe() if current else f"a process (pid {kernel_lock_pid(self.path)}) that is just taking it"
        journal = f" (its journal: {current.run_dir}/journal.jsonl)" if current and current.run_dir else ""
        return (
            f"cluster {self.cluster} is locked by {who}, which is still running: the kernel holds its lock on "
            f"{self.path}{journal}. Two recoveries at once on one cluster can undo each other's steps. Wait for it "
            f"to finish, or if you are sure it must not go on, rerun with --break-lock (journaled; that run stops "
            f"at its next step boundary)"
        )

    def _break(self, me: Holder, seen: FileId, current: Holder | None) -> LocalHeld:
        with _guard(self.dir / f".{self.cluster}.lock.break"):
            fd = _open(self.path)
            if _identity(fd) != seen:
                os.close(fd)
                raise self._changed_hands()
            if _try_flock(fd):  # the holder ended meanwhile: an ordinary takeover
                previous = _read_holder(fd)
                _write_holder(fd, me, self.disk)
                return LocalHeld(self, fd, me, replaced=previous, replaced_alive=False if previous else None)
            now = self._holder_of(fd)
            if current is not None and now is not None and now.run_id != current.run_id:
                os.close(fd)
                raise self._changed_hands()
            os.close(fd)
            tmp = self.dir / f".{self.cluster}.lock.{os.getpid()}.tmp"
            fd = _open(tmp, truncate=True)
            if not _try_flock(fd):  # nobody else knows this name: cannot happen unless a pid is reused mid-break
                os.close(fd)
                raise LockHeld(f"could not lock the new lock file {tmp}; try --break-lock again")
            _write_holder(fd, me, self.disk)
            os.rename(tmp, self.path)
            self.disk.sync_dir(self.dir)
            return LocalHeld(self, fd, me, replaced=current, replaced_alive=True)

    def _changed_hands(self) -> LockHeld:
        holder = self.holder()
        return LockHeld(f"cluster {self.cluster}'s lock changed hands while --break-lock was taking it: it is now held "
                        f"by {holder.describe() if holder else 'another run'}. Look at that run before breaking its lock")

    def holder(self) -> Holder | None:
        pid = kernel_lock_pid(self.path)
        if pid is None and Path("/proc/locks").exists():
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)

    def runs(self) -> list[RunState]:
        found = []
        for path in sorted(self.runs_dir.glob("*.json")) if self.runs_dir.is_dir() else []:
            try:
                found.append(RunState.model_validate_json(path.read_text()))
            except (OSError, ValueError):
                continue  # a record being replaced or damaged: the registry is informative only
        return found


class LocalHeld(HeldLock):
    backend = "local"

    def __init__(self, lock: LocalLock, fd: int, holder: Holder, replaced: Holder | None, replaced_alive: bool | None) -> None:
        self.lock = lock
        self.fd = fd
        self.identity = _identity(fd)
        self.holder = holder
        self.replaced = replaced
        self.replaced_alive = replaced_alive
        self.where = lock.where
        self.notes = []
        self._records: dict[str, Path] = {}  # run id -> its registry record

    def lost(self) -> str | None:
        if self.fd < 0:
            return "it was released"
        now = _path_identity(self.lock.path)
        if now is None:
            return f"the lock file {self.lock.path} was removed"
        if now != self.identity:
            other = self.lock.holder()
            return f"--break-lock gave it to {other.describe() if other else 'another run'}"
        return None

    def publish(self, state: RunState) -> None:
        path = self._records.get(state.run_id)
        if path is None:
            path = self._records[state.run_id] = self.lock.runs_dir / f"{state.run_id}.json"
        try:
            atomic_write(path, state.model_dump_json(), disk=self.lock.disk)
            if state.finished:
                self._forget_old_runs(state.updated)
        except OSError:
            pass  # the registry is informative; a full disk must not stop a recovery

    def _forget_old_runs(self, now: float) -> None:
        for run in self.lock.runs():
            if run.finished and not run.resumable and now - run.updated > FINISHED_KEPT_SECONDS:
                (self.lock.runs_dir / f"{run.run_id}.json").unlink(missing_ok=True)

    def release(self) -> None:
        if self.fd < 0:
            return
        if self.lost() is None:
            os.ftruncate(self.fd, 0)  # the next taker must not read us as a holder that died
            self.lock.disk.sync(self.fd)
        os.close(self.fd)  # closing the only descriptor releases the kernel lock
        self.fd = -1


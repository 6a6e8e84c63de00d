"""One run per cluster at a time: the cluster lock, and the run registry kept beside it.

The inventory's `lock:` chooses the backend (per inventory or per cluster):
- `local` (the default): a kernel lock (`flock`) on a file on this machine. A holder that dies
  releases it with its last file descriptor, so taking over a dead holder cannot race.
- `etcd`: a key created by a transaction under a lease that a keep-alive thread renews for the
  whole run, so one run wins across every machine of the team (drengine/lock/etcd.py).

Both store the holder's identity (user, host, pid, run id, run directory), both let
`--break-lock` take the lock from the holder they name (exactly one breaker wins), and both
answer `HeldLock.lost()`, which the engine asks at every step boundary: a run whose lock was
lost (lease expired, lock broken) sends nothing further. Each run also publishes its state
(runbook, step, waiting at a gate, result) beside the lock, so any machine can see what runs
where (drengine/lock/registry.py).

Nothing here prints; errors carry the operator's message and exit code 4.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from drengine.errors import LockLost
from drengine.machine import DISK, Disk

if TYPE_CHECKING:
    from drengine.inventory import EtcdLockSettings, LocalLockSettings


class Holder(BaseModel):
    """Who holds a cluster lock: stored in the lock file or the etcd key."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    user: str
    host: str
    pid: int
    run_dir: str = ""
    started: float = 0.0
    lease: int = 0  # etcd lease id (0 for the local lock)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        where = f"; run directory {self.run_dir}" if self.run_dir else ""
        return f"run {self.run_id} (pid {self.pid}, user {self.user}, host {self.host}, started {when}{where})"


def current_user() -> str:
    env = os.environ
    return env.get("SUDO_USER") or _login(env.get("LOGNAME"), env.get("USER"), env.get("LNAME"), env.get("USERNAME"),
                                          os.getuid())


@lru_cache(maxsize=8)
def _login(logname: str | None, user: str | None, lname: str | None, username: str | None, uid: int) -> str:
    """getpass.getuser(), once for the environment and user id it reads (without a login
    variable it looks the user up in the password database: too slow for every run)."""
    return getpass.getuser()


def me(run_id: str, run_dir: Path | str) -> Holder:
    """This process as a lock holder."""
    return Holder(run_id=run_id, user=current_user(), host=socket.gethostname(), pid=os.getpid(),
                  run_dir=os.path.realpath(run_dir), started=time.time())


class RunState(BaseModel):
    """One run as the registry shows it, published beside the cluster's lock."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    cluster: str
    run_id: str
    runbook: str = ""
    mode: str = ""
    user: str = ""
    host: str = ""
    pid: int = 0
    run_dir: str = ""
    started: float = 0.0
    updated: float = 0.0
    step: str | None = None  # the step running, or the last one that ran
    gate: str | None = None  # "STEP (LEVEL)" while the run waits at a gate
    finished: bool = False  # the run is over (any end, resumable ones included)
    end: str | None = None
    success: bool | None = None
    summary: str = ""
    goes_on: bool = False  # a failed end after the run changed the cluster: it can be resumed

    @property
    def resumable(self) -> bool:
        return self.end in ("stopped", "crashed") or self.goes_on


class HeldLock(ABC):
    """A cluster lock this process holds, until `release`."""

    backend: str
    where: str  # the lock file, or the etcd key and endpoints
    holder: Holder
    replaced: Holder | None = None  # the holder taken over or broken
    replaced_alive: bool | None = None  # False: it was gone; True: it was alive (broken); None: unknown
    notes: list[str]

    @abstractmethod
    def lost(self) -> str | None:
        """Why the lock is no longer ours (plain words), or None while it is."""

    def check(self) -> None:
        """Raise LockLost when the lock is gone: called by the engine at each step boundary."""
        why = self.lost()
        if why is not None:
            raise LockLost(
                f"the cluster lock was lost: {why}. The run stops here and sends nothing further, because "
                f"another run may now hold the lock. Check who does (the registry, or the other run's journal), "
                f"then resume this run once it is safe"
            )

    @abstractmethod
    def publish(self, state: RunState) -> None:
        """Publish the run's state in the registry (best effort: never stops the recovery)."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock back (only if it is still ours)."""


class LockBackend(ABC):
    """Where a cluster's lock and run registry live."""

    backend: str
    where: str

    @abstractmethod
    def acquire(self, me: Holder, break_lock: bool = False) -> HeldLock:
        """Take the lock, or raise LockHeld naming the holder (LockUnavailable when the service is down)."""

    @abstractmethod
    def holder(self) -> Holder | None:
        """The run holding the lock now, if any."""

    @abstractmethod
    def runs(self) -> list[RunState]:
        """Every run the registry knows for this cluster."""


def open_lock(settings: LocalLockSettings | EtcdLockSettings, cluster: str, lock_dir: Path | None = None,
              disk: Disk = DISK) -> LockBackend:
    """The backend the settings name; `lock_dir` (tests, API callers) overrides a local lock's directory,
    whose files are made to last by `disk` (the run's, see drengine/machine.py)."""
    if settings.backend == "etcd":
        from drengine.lock.etcd import EtcdLock

        return EtcdLock(settings, cluster)
    from drengine.lock.local import LocalLock

    return LocalLock(cluster, lock_dir or (Path(settings.dir).expanduser() if settings.dir else None), disk=disk)


def default_lock_dir() -> Path:
    env = os.environ.get("DRENGINE_LOCK_DIR")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "drengine" / "locks"


__all__ = ["Holder", "RunState", "HeldLock", "LockBackend", "open_lock", "default_lock_dir", "me", "current_user"]

"""One run per cluster at a time.

The lock is a file created with O_EXCL holding the holder's run id, pid, user, host and
start time. It never expires on a timer: a holder that is still working keeps it. A holder
on this host whose process is gone is detected (and reported) and the lock is taken over;
a holder elsewhere, or still alive, needs `--break-lock`, which is journaled.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from drengine.errors import LockHeld


@dataclass(frozen=True)
class Holder:
    run_id: str
    pid: int
    user: str
    host: str
    started: float
    pid_start: str = ""  # /proc start time, so a recycled PID is not taken for the holder

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"run {self.run_id} (pid {self.pid}, user {self.user}, host {self.host}, started {when})"


def default_lock_dir() -> Path:
    env = os.environ.get("DRENGINE_LOCK_DIR")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "drengine" / "locks"


def _pid_start(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def holder_alive(holder: Holder) -> bool | None:
    """True/False on this host; None when the holder runs elsewhere (we cannot tell)."""
    if holder.host != socket.gethostname():
        return None
    start = _pid_start(holder.pid)
    return bool(start) and (not holder.pid_start or start == holder.pid_start)


@dataclass
class Acquired:
    path: Path
    holder: Holder
    replaced: Holder | None = None  # previous holder, when taken over
    replaced_alive: bool | None = None


class ClusterLock:
    def __init__(self, cluster: str, lock_dir: Path | None = None) -> None:
        self.dir = lock_dir or default_lock_dir()
        self.path = self.dir / f"{cluster}.lock"

    def read(self) -> Holder | None:
        try:
            return Holder(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def acquire(self, run_id: str, user: str, break_lock: bool = False) -> Acquired:
        self.dir.mkdir(parents=True, exist_ok=True)
        me = Holder(run_id, os.getpid(), user, socket.gethostname(), time.time(), _pid_start(os.getpid()))
        payload = json.dumps(asdict(me)).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return self._take_over(me, payload, break_lock)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        return Acquired(self.path, me)

    def _take_over(self, me: Holder, payload: bytes, break_lock: bool) -> Acquired:
        current = self.read()
        alive = holder_alive(current) if current else False
        if current is not None and alive is not False and not break_lock:
            where = "is still running" if alive else "runs on another host, so drengine cannot tell whether it is alive"
            raise LockHeld(
                f"cluster lock {self.path} is held by {current.describe()}, which {where}. "
                f"Wait for it to finish, or if you are sure it is gone, rerun with --break-lock (journaled)."
            )
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, self.path)
        # Two takers racing: the last rename wins; the loser sees someone else in the file.
        winner = self.read()
        if winner is None or winner.run_id != me.run_id:
            raise LockHeld(f"cluster lock {self.path} was taken by {winner.describe() if winner else 'another run'} just now")
        return Acquired(self.path, me, replaced=current, replaced_alive=alive)

    def release(self, run_id: str) -> None:
        holder = self.read()
        if holder is not None and holder.run_id == run_id:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

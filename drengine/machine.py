"""The machine a run runs on, as the engine sees it: its clock and its disk.

Everything else about a run is the same wherever it runs. A real run gets the system's clock (or
simulated time for a simulated cluster) and a disk whose writes are flushed (fsync) before the
engine moves on. The fault-space explorer hands in a different machine, and nothing else: a
simulated clock it moves itself, and a scratch disk (a tmpfs it throws away after each scenario,
whose content need not survive a power loss, so a flush protects nothing there). The journal,
the files, the lock and its registry write exactly the same bytes on either; they only ask the
disk to make them last.

The simulated twins keep their cluster's state in a state file, read and written through the
run's disk (drengine/simstate.py): a real disk writes it atomically, as any file; the
explorer's scratch disk keeps it in its memory, saved and loaded at the same moments (a killed
run resumes from exactly what the last save left), without the file system.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from drengine.clock import Clock

if TYPE_CHECKING:
    from pydantic import BaseModel



class Disk:
    """A disk whose writes must survive a crash of the machine: every sync is an fsync."""

    def sync(self, fd: int) -> None:
        """Make what was written to `fd` last."""
        os.fsync(fd)

    def sync_dir(self, path: Path) -> None:
        """Make the names in directory `path` (a file created or renamed there) last."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- the simulators' state files (drengine/simstate.py)
    def write_state(self, path: Path, state: str | BaseModel) -> None:
        """Replace the state file atomically: a crash mid-write leaves the previous state."""
        from drengine.files import atomic_write

        atomic_write(path, state if isinstance(state, str) else state.model_dump_json(), disk=self)

    def read_state(self, path: Path) -> str | BaseModel:
        """What was saved last (OSError when nothing was)."""
        return path.read_text(encoding="utf-8")

    def has_state(self, path: Path) -> bool:
        return path.exists()


class ScratchDisk(Disk):
    """A disk thrown away with the process (tmpfs): there is nothing to make last. The state
    files of the simulators live in its memory (the explorer saves the state after every
    statement of thousands of throw-away scenarios): a state that is a pydantic model is kept as
    the model itself, not as its text (the JSON round trip cost more than the rest of a MariaDB
    scenario's simulation), and a load takes a copy of it (simstate.load_state). That copy is the
    state last saved because a state is loaded only after the backend that saved it was closed,
    and closing a simulated backend saves it (the engine closes it only once the step's worker
    has ended, so no statement is half done when the engine is killed)."""

    def __init__(self) -> None:
        self._states: dict[Path, str | BaseModel] = {}

    def sync(self, fd: int) -> None:
        pass

    def sync_dir(self, path: Path) -> None:
        pass

    def write_state(self, path: Path, state: str | BaseModel) -> None:
        self._states[path] = state  # a model is copied when it is loaded

    def read_state(self, path: Path) -> str | BaseModel:
        try:
            return self._states[path]
        except KeyError:
            raise FileNotFoundError(2, "No such file or directory", str(path)) from None

    def has_state(self, path: Path) -> bool:
        return path in self._states


DISK = Disk()


@dataclass(frozen=True)
class Machine:
    """What a run runs on. `clock` None: simulated time for a simulated cluster, else the system's
    (engine.run_clock)."""

    clock: Clock | None = None
    disk: Disk = field(default=DISK)


REAL = Machine()

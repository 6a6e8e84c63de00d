"""The machine a run runs on, as the engine sees it: its clock and its disk.

Everything else about a run is the same wherever it runs. A real run gets the system's clock (or
simulated time for a simulated cluster) and a disk whose writes are flushed (fsync) before the
engine moves on. The fault-space explorer hands in a different machine, and nothing else: a
simulated clock it moves itself, and a scratch disk (a tmpfs it throws away after each scenario,
whose content need not survive a power loss, so a flush protects nothing there). The journal,
the files, the lock and its registry write exactly the same bytes on either; they only ask the
disk to make them last.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from drengine.clock import Clock


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


class ScratchDisk(Disk):
    """A disk thrown away with the process (tmpfs): there is nothing to make last."""

    def sync(self, fd: int) -> None:
        pass

    def sync_dir(self, path: Path) -> None:
        pass


DISK = Disk()


@dataclass(frozen=True)
class Machine:
    """What a run runs on. `clock` None: simulated time for a simulated cluster, else the system's
    (engine.run_clock)."""

    clock: Clock | None = None
    disk: Disk = field(default=DISK)


REAL = Machine()

"""Files, written once: every file drengine replaces is written to a temporary file beside
it, made to last by the disk (an fsync on a real one) and renamed over the old one, so a crash
leaves the old or the new content and never half of either."""

from __future__ import annotations

import os
from pathlib import Path

from drengine.machine import DISK, Disk

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def atomic_write(path: Path, text: str, mode: int | None = None, disk: Disk = DISK) -> None:
    """Replace `path` with `text`, made to last by `disk` before the rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, _FLAGS, 0o666)
    except FileNotFoundError:  # the directory is made on the first write only
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, _FLAGS, 0o666)
    try:
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
        disk.sync(fd)
    finally:
        os.close(fd)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)

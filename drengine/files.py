"""Files, written once: every file drengine replaces is written to a temporary file beside
it, flushed to disk and renamed over the old one, so a crash leaves the old or the new
content and never half of either."""

from __future__ import annotations

import os
from pathlib import Path

from drengine.machine import DISK, Disk


def atomic_write(path: Path, text: str, mode: int | None = None, disk: Disk = DISK) -> None:
    """Replace `path` with `text`, made to last by `disk` before the rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out = open(tmp, "w", encoding="utf-8")
    except FileNotFoundError:  # the directory is made on the first write only
        path.parent.mkdir(parents=True, exist_ok=True)
        out = open(tmp, "w", encoding="utf-8")
    with out:
        out.write(text)
        out.flush()
        disk.sync(out.fileno())
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)

"""A process that tries to take a cluster lock, for race tests (run as a script).

Usage: lockworker.py SETTINGS_JSON CLUSTER RUN_ID take|break START RELEASE [LOCK_DIR]
Waits until the file START exists (so that many workers try at the same moment), tries once,
prints `won` or `held: MESSAGE`; a winner keeps the lock until RELEASE exists, then prints
`kept` or `lost: WHY` and releases it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pydantic import TypeAdapter

from drengine.errors import DrengineError
from drengine.inventory import LockSettings
from drengine.lock import me, open_lock


def wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.002)


def main(argv: list[str]) -> int:
    settings_json, cluster, run_id, mode, start, release = argv[:6]
    lock_dir = Path(argv[6]) if len(argv) > 6 else None
    settings = TypeAdapter(LockSettings).validate_json(settings_json)
    backend = open_lock(settings, cluster, lock_dir)
    wait_for(Path(start), 60)
    try:
        held = backend.acquire(me(run_id, f"/runs/{run_id}"), break_lock=(mode == "break"))
    except DrengineError as exc:
        print(f"held: {exc}", flush=True)
        return 0
    print("won", flush=True)
    wait_for(Path(release), 60)
    why = held.lost()
    print("kept" if why is None else f"lost: {why}", flush=True)
    held.release()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

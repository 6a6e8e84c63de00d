"""Cluster lock benchmark (prints figures; no assertions): the time to take and release a
cluster's lock with the local backend (flock on a file) against the etcd backend on a real
three-member etcd started on loopback by the lab code, in the same process.

Each take+release is what a run pays once: for etcd a lease grant, the create transaction, the
registry read for interrupted runs, starting the keep-alive thread, and the lease revoke.
Also measured: etcd with its first listed member killed (each new lock first meets a refusal).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drengine.inventory import EtcdLockSettings, LocalLockSettings  # noqa: E402
from drengine.lab import etcd as etcd_lab  # noqa: E402
from drengine.lab.procs import LabDir  # noqa: E402
from drengine.lock import LockBackend, me, open_lock  # noqa: E402

ROUNDS = 200
CLIENT_BASE, PEER_BASE = 23950, 23960


def take_and_release(make: Callable[[], LockBackend], rounds: int) -> list[float]:
    times = []
    for i in range(rounds):
        backend = make()
        started = time.perf_counter()
        held = backend.acquire(me(f"bench-{i}", "/tmp/bench"))
        held.release()
        times.append(time.perf_counter() - started)
    return times


def show(name: str, times: list[float], baseline: float | None = None) -> float:
    median = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    ratio = f"  ({median / baseline:.0f}x local)" if baseline else ""
    print(f"{name:38} median {median * 1000:8.3f} ms   p95 {p95 * 1000:8.3f} ms{ratio}")
    return median


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="drengine-bench-lock-"))
    local = LocalLockSettings(backend="local", dir=str(root / "locks"))
    lab = LabDir(root / "lab")
    try:
        info = etcd_lab.up(lab, client_base=CLIENT_BASE, peer_base=PEER_BASE)
        etcd = EtcdLockSettings.model_validate({**info["lock"], "prefix": "/bench"})
        print(f"take + release, {ROUNDS} rounds each (etcd: 3 members on loopback, etcd-server {etcd_version()})")
        take_and_release(lambda: open_lock(local, "c1"), 20)  # warm-up
        take_and_release(lambda: open_lock(etcd, "c1"), 20)
        base = show("local (flock)", take_and_release(lambda: open_lock(local, "c1"), ROUNDS))
        show("etcd, 3 of 3 members up", take_and_release(lambda: open_lock(etcd, "c1"), ROUNDS), base)
        etcd_lab.kill(lab, "e1")
        show("etcd, first listed member killed", take_and_release(lambda: open_lock(etcd, "c1"), ROUNDS), base)
    finally:
        etcd_lab.down(lab)


def etcd_version() -> str:
    import subprocess

    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False).stdout
    return out.split()[2] if out else "?"


if __name__ == "__main__":
    main()

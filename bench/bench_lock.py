"""Cluster lock benchmark (prints figures; no assertions): the time to take and release a
cluster's lock with the local backend (flock on a file) against the etcd backend on a real
three-member etcd started on loopback by the lab code, in the same process.

Each take+release is what a run pays once: for etcd a lease grant, the create transaction, the
registry read for interrupted runs, starting the keep-alive thread, and the lease revoke.
Also measured: etcd with its first listed member killed (each new lock first meets a refusal);
how long after its holder is SIGKILLed the next run gets the lock (local: the kernel frees it at
once; etcd: the lease must run out, `lease_ttl` = 5 s in the lab); and how long a run takes to be
refused, with the break-glass hint, when two of the three members are dead (etcd retries for
`lease_ttl` seconds first, in case a leader election is under way).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drengine.errors import LockHeld, LockUnavailable  # noqa: E402
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


def takeover_after_kill(settings: LocalLockSettings | EtcdLockSettings, root: Path, name: str) -> float:
    """Seconds from SIGKILL of a holder process to the next successful acquire (polled every 10 ms)."""
    start, release = root / f"{name}.go", root / f"{name}.release"
    start.touch()
    holder = subprocess.Popen([sys.executable, str(ROOT / "tests" / "lockworker.py"), settings.model_dump_json(), "c-kill",
                               "holder", "take", str(start), str(release), str(root / "locks")],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout is not None and holder.stdout.readline().strip() == "won"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    killed = time.perf_counter()
    while True:
        try:
            open_lock(settings, "c-kill", root / "locks").acquire(me("next", "/tmp/bench")).release()
            return time.perf_counter() - killed
        except LockHeld:
            time.sleep(0.01)


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
        print(f"{'takeover after the holder is SIGKILLed':38} local {takeover_after_kill(local, root, 'local'):6.3f} s   "
              f"etcd {takeover_after_kill(etcd, root, 'etcd'):6.3f} s (lease_ttl {etcd.lease_ttl} s)")
        etcd_lab.kill(lab, "e1")
        show("etcd, first listed member killed", take_and_release(lambda: open_lock(etcd, "c1"), ROUNDS), base)
        etcd_lab.kill(lab, "e2")
        started = time.perf_counter()
        try:
            open_lock(etcd, "c1").acquire(me("refused", "/tmp/bench"))
            print("etcd, two members killed: the lock was granted (unexpected)")
        except LockUnavailable as exc:
            hint = "--lock local" in str(exc)
            print(f"{'etcd, two members killed: refused after':38} {time.perf_counter() - started:6.3f} s "
                  f"(timeout {etcd.timeout:g} s per request; break-glass hint {'given' if hint else 'MISSING'})")
    finally:
        etcd_lab.down(lab)


def etcd_version() -> str:
    import subprocess

    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False).stdout
    return out.split()[2] if out else "?"


if __name__ == "__main__":
    main()

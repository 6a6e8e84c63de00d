"""etcd lab: a real three-member etcd cluster on loopback (Debian's etcd-server), for the team lock.

Members e1, e2, e3 listen for clients on 127.0.0.1:23791-23793 and for their peers on
127.0.0.1:23801-23803, away from etcd's defaults (2379/2380) so that an etcd of this machine is
left alone. `up` starts them under LabDir.spawn (PIDs recorded; `drengine lab down etcd` stops
exactly those), waits until the cluster has a leader and commits a write, and merges a `lock:`
section pointing at them into the inventory, so every cluster of that inventory takes its lock
on this etcd.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from drengine.clock import wait_until
from drengine.files import atomic_write
from drengine.lab.procs import LabDir, LabError, LabProcess, ensure_ports_free, is_ours, signal_process

KIND = "etcd"
ETCD = "etcd"
CLIENT_BASE = 23790  # member i (1-based) serves clients on CLIENT_BASE + i
PEER_BASE = 23800
START_TIMEOUT = 30.0
LAB_PREFIX = "/drengine-lab"
LAB_LEASE_TTL = 5  # short, so that tests and drills see a dead holder's lease expire quickly
LAB_TIMEOUT = 1.0


def member_name(index: int) -> str:
    """Name of the index-th member (0-based): e1, e2, ..."""
    return f"e{index + 1}"


def client_url(index: int, client_base: int = CLIENT_BASE) -> str:
    return f"http://127.0.0.1:{client_base + index + 1}"


def _peer_url(index: int, peer_base: int) -> str:
    return f"http://127.0.0.1:{peer_base + index + 1}"


def healthy(url: str, timeout: float = 1.0) -> bool:
    """etcd's /health says true only while the member sees a leader."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as answer:  # noqa: S310 - loopback lab URL
            return bool(json.loads(answer.read()).get("health") == "true")
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _argv(index: int, members: int, lab: LabDir, client_base: int, peer_base: int) -> list[str]:
    initial = ",".join(f"{member_name(i)}={_peer_url(i, peer_base)}" for i in range(members))
    name = member_name(index)
    return [
        shutil.which(ETCD) or f"/usr/bin/{ETCD}",
        "--name", name,
        "--data-dir", str(lab.path("etcd", name)),
        "--listen-client-urls", client_url(index, client_base),
        "--advertise-client-urls", client_url(index, client_base),
        "--listen-peer-urls", _peer_url(index, peer_base),
        "--initial-advertise-peer-urls", _peer_url(index, peer_base),
        "--initial-cluster", initial,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", f"drengine-lab-{client_base}",
        "--logger", "zap", "--log-outputs", "stderr",
    ]


def up(lab: LabDir, inventory_out: str | Path | None = None, members: int = 3, client_base: int = CLIENT_BASE,
       peer_base: int = PEER_BASE, lease_ttl: int = LAB_LEASE_TTL, prefix: str = LAB_PREFIX) -> dict[str, Any]:
    """Start the members (those already running are kept), wait for a leader, write the `lock:` section."""
    if shutil.which(ETCD) is None and not Path(f"/usr/bin/{ETCD}").exists():
        raise LabError("the etcd lab needs the etcd server: install Debian's etcd-server "
                       "(scripts/setup.sh --services, or apt-get install etcd-server etcd-client)")
    started = time.monotonic()
    urls = [client_url(i, client_base) for i in range(members)]
    for i in range(members):
        _start_member(lab, i, members, client_base, peer_base)
    procs = [lab.find(KIND, member_name(i)) for i in range(members)]

    def all_healthy_or_one_dead() -> bool:
        if any(p is None or not is_ours(p) for p in procs):
            return True
        return all(healthy(url) for url in urls)

    if not wait_until(all_healthy_or_one_dead, START_TIMEOUT, interval=0.1) or not all(healthy(u) for u in urls):
        dead = [p for p in procs if p is None or not is_ours(p)]
        detail = _log_tail(dead[0]) if dead and dead[0] is not None else ""
        raise LabError(f"the etcd lab did not get a leader within {START_TIMEOUT:g} s "
                       f"({len(dead)} member(s) exited){': ' + detail if detail else ''}")
    lock = {"backend": "etcd", "endpoints": urls, "prefix": prefix, "lease_ttl": lease_ttl, "timeout": LAB_TIMEOUT}
    if inventory_out is not None:
        write_lock_section(inventory_out, lock)
    return {"endpoints": urls, "lock": lock, "seconds": round(time.monotonic() - started, 3)}


def _start_member(lab: LabDir, index: int, members: int, client_base: int, peer_base: int) -> LabProcess:
    name = member_name(index)
    existing = lab.find(KIND, name)
    if existing is not None and is_ours(existing):
        return existing
    ensure_ports_free(lab, KIND, [(f"{name} clients", "127.0.0.1", client_base + index + 1),
                                  (f"{name} peers", "127.0.0.1", peer_base + index + 1)])
    argv = existing.argv if existing is not None else _argv(index, members, lab, client_base, peer_base)
    return lab.spawn(KIND, name, argv, log=lab.path("etcd") / f"{name}.log")


def _log_tail(proc: LabProcess) -> str:
    try:
        return Path(proc.log).read_text(errors="replace")[-600:]
    except OSError:
        return ""


def kill(lab: LabDir, name: str) -> None:
    """SIGKILL one member (a crashed etcd node)."""
    proc = lab.find(KIND, name)
    if proc is None:
        raise LabError(f"the etcd lab has no member {name}")
    signal_process(proc, signal.SIGKILL)


def start(lab: LabDir, name: str) -> None:
    """Start a member again with the command line it was started with (it rejoins with its data)."""
    proc = lab.find(KIND, name)
    if proc is None:
        raise LabError(f"the etcd lab has no member {name}")
    if not is_ours(proc):
        lab.spawn(KIND, name, proc.argv, log=Path(proc.log))


def down(lab: LabDir) -> list[str]:
    procs = [p for p in lab.processes() if p.kind == KIND]
    for proc in procs:
        lab.stop(proc)
    return [p.name for p in procs]


def write_lock_section(path: str | Path, lock: dict[str, Any]) -> None:
    """Point every cluster of the inventory at this lock (its top-level `lock:`), keeping the rest."""
    target = Path(path)
    current: dict[str, Any] = {}
    if target.exists():
        current = yaml.safe_load(target.read_text()) or {}
    current["lock"] = lock
    atomic_write(target, "# Written by `drengine lab up`; lab services on loopback.\n" + yaml.safe_dump(current, sort_keys=False))

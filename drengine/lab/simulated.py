"""Labs for MongoDB and Elasticsearch, whose servers cannot be installed here: the simulators
served over the real protocols in a background process (started and stopped by PID), with an
inventory whose cluster is *not* marked simulated, so drengine reaches it with the real
client exactly as it would a real cluster."""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drengine.clock import wait_until
from drengine.lab.procs import LabDir, LabError, ensure_ports_free, is_ours, merge_inventory

# After the server said it listens, it must still be alive this long later: a server that dies
# right after printing must not be reported as up.
ALIVE_AFTER_READY = 0.3


@dataclass(frozen=True)
class Served:
    """A simulator served over its real protocol by `drengine lab serve KIND`."""

    endpoints: list[str]  # one line per endpoint, printed once it listens (`serve` counts them)
    stop: Callable[[], None]  # stop serving and write the state back


def serve_until_stopped(stop: Callable[[], None]) -> None:
    """Keep serving until `drengine lab down` (SIGTERM) or Ctrl-C, then stop: the state file is
    written back either way."""
    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        done.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop()


def serve(lab: LabDir, kind: str, args: list[str], ports: list[int], ready_lines: int = 1, ready_prefix: str = "") -> None:
    lab.stop_kind(kind)
    # Checked as the simulators bind (SO_REUSEADDR): ports left in TIME_WAIT by a lab just stopped are free.
    ensure_ports_free(lab, kind, [(f"{kind} simulator", "127.0.0.1", p) for p in ports])
    folder = lab.path(kind)
    log = folder / "server.log"
    log.unlink(missing_ok=True)  # readiness is read from this start's lines only
    proc = lab.spawn(kind, f"{kind}-sim", [sys.executable, "-m", "drengine", "lab", "serve", kind, *args], log)

    def ready() -> bool:
        # The server prints one line per endpoint once it listens (killed members' ports stay closed);
        # an error (a usage message, a traceback) prints other lines, which do not count.
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return sum(1 for line in lines if line.startswith(ready_prefix)) >= ready_lines

    if not wait_until(lambda: ready() or not is_ours(proc), 20):
        lab.stop(proc)
        raise LabError(f"the simulated {kind} server did not listen on {ports} within 20 s; see {log}")
    wait_until(lambda: not is_ours(proc), ALIVE_AFTER_READY)
    if not is_ours(proc) or not _listens(ports[0]):
        lab.stop(proc)
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:]) if log.exists() else ""
        raise LabError(f"the simulated {kind} server exited at start ({tail or 'no output'}); see {log}")


def _listens(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def cluster_fragment(kind: str, members: list[dict[str, Any]], timeouts: dict[str, float]) -> dict[str, Any]:
    return {"kind": kind, "drill_target": False, "timeouts": timeouts, "members": members}


def write(inventory_out: str | None, name: str, fragment: dict[str, Any]) -> None:
    if inventory_out:
        merge_inventory(inventory_out, {}, {name: fragment})

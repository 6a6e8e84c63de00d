"""The lab: real datastore services on loopback, started and stopped by PID, for drills and
tests. Each kind lives in its own module with `up(lab, inventory_out=...)`."""

from __future__ import annotations

import importlib
import os

from drengine.errors import InputError
from drengine.lab.procs import DEFAULT_LAB_DIR, LabDir, is_ours

KINDS = {
    "mariadb": "drengine.lab.mariadb",
    "galera": "drengine.lab.galera",
    "ssh": "drengine.lab.ssh",
    "ceph": "drengine.lab.ceph",
    "mongodb": "drengine.lab.mongodb",
    "elasticsearch": "drengine.lab.elasticsearch",
}


def lab_dir(path: str | None) -> LabDir:
    return LabDir(path or os.environ.get("DRENGINE_LAB_DIR", DEFAULT_LAB_DIR))


def start_lab(kind: str, path: str | None, inventory_out: str, scenario: str | None = None) -> str:
    try:
        module = importlib.import_module(KINDS[kind])
    except ModuleNotFoundError:
        raise InputError(f"the {kind} lab is not available in this version") from None
    lab = lab_dir(path)
    if scenario is not None:
        if kind not in ("mongodb", "elasticsearch"):
            raise InputError(f"--scenario applies to the simulated labs (mongodb, elasticsearch), not {kind}")
        module.up(lab, inventory_out=inventory_out, scenario=scenario)
    elif kind == "galera":
        # Galera's runbook reads grastate.dat and starts nodes over the nodes' hosts: the lab
        # reaches them through the SSH lab hosts, started here when they are not running yet.
        from drengine.lab import ssh

        if not any(p.kind == "ssh" and is_ours(p) for p in lab.processes()):
            ssh.up(lab, inventory_out=inventory_out)
        module.up(lab, inventory_out=inventory_out, hosts=[ssh.host_name(i) for i in range(3)])
    else:
        module.up(lab, inventory_out=inventory_out)
    procs = [p for p in lab.processes() if p.kind == kind]
    return f"{kind} lab up in {lab.root}: {len(procs)} process(es); inventory written to {inventory_out}"


def lab_status_lines(path: str | None) -> list[str]:
    lab = lab_dir(path)
    procs = lab.processes()
    if not procs:
        return [f"{lab.root}: nothing running"]
    return [f"{p.kind:12} {p.name:14} pid {p.pid:<8} {'running' if is_ours(p) else 'GONE'}  log {p.log}" for p in procs]


def stop_lab(kind: str | None, path: str | None) -> list[str]:
    lab = lab_dir(path)
    stopped = lab.stop_kind(kind)
    return [f"stopped {p.kind}/{p.name} (pid {p.pid})" for p in stopped] or ["nothing to stop"]

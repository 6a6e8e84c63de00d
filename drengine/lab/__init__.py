"""The lab: real datastore services on loopback, started and stopped by PID, for drills and
tests. Each kind lives in its own module with `up(lab, inventory_out=...)`."""

from __future__ import annotations

import os
from typing import Any

from drengine.errors import InputError
from drengine.lab.procs import DEFAULT_LAB_DIR, LabDir, is_ours


def lab_kinds() -> tuple[str, ...]:
    """The labs: SSH hosts, etcd for the team lock, and every datastore that has one."""
    from drengine.datastores import registry

    return ("ssh", "etcd", *(kind for kind, store in registry().items() if store.lab))


def lab_dir(path: str | None) -> LabDir:
    return LabDir(path or os.environ.get("DRENGINE_LAB_DIR", DEFAULT_LAB_DIR))


def start_lab(kind: str, path: str | None, inventory_out: str, scenario: str | None = None) -> str:
    from drengine.datastores import datastore, registry

    module: Any
    if kind == "ssh":
        from drengine.lab import ssh as module
    elif kind == "etcd":
        from drengine.lab import etcd as module
    else:
        store = datastore(kind)
        if store.lab is None:
            raise InputError(f"the {kind} lab is not available in this version")
        module = store.load(store.lab)
    lab = lab_dir(path)
    if scenario is not None:
        simulated = [k for k, s in registry().items() if s.simulated_lab]
        if kind not in simulated:
            raise InputError(f"--scenario applies to the simulated labs ({', '.join(simulated)}), not {kind}")
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

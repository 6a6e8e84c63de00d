"""The lab: real datastore services on loopback, started and stopped by PID, for drills and
tests. Each kind lives in its datastore's `lab` module with `up(lab, inventory_out=...)`; a lab
whose inventory starts and stops single nodes has `node_start` (and `node_stop`,
`node_status` where the generic ones by PID do not do), and a served simulator has
`serve_simulator`: what the hidden `drengine lab node` and `drengine lab serve` commands run."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from drengine.errors import InputError
from drengine.lab.procs import DEFAULT_LAB_DIR, LabDir, LabError, NodeStart, check_lab_dir, is_ours
from drengine.lab.simulated import Served


def lab_kinds() -> tuple[str, ...]:
    """The labs: SSH hosts (and a site's: sudo users, a bastion), etcd for the team lock, and every
    datastore that has one."""
    from drengine.datastores import registry

    return ("ssh", "ssh-site", "etcd", *(kind for kind, store in registry().items() if store.lab), "site")


def simulated_labs() -> list[str]:
    from drengine.datastores import registry

    return [k for k, s in registry().items() if s.simulated_lab]


def lab_scenarios(kind: str) -> list[str]:
    """The situations a simulated lab can be started in (`--scenario`); none for the real labs."""
    if kind not in simulated_labs():
        return []
    names: list[str] = _module(kind).scenarios()
    return names


def check_scenario(kind: str, scenario: str | None) -> None:
    """`--scenario` is checked before anything starts: a typo must not leave a dead server behind."""
    if scenario is None:
        return
    simulated = simulated_labs()
    if kind not in simulated:
        raise InputError(f"--scenario applies to the simulated labs ({', '.join(simulated)}), not {kind}")
    known = lab_scenarios(kind)
    if scenario not in known:
        from drengine.suggest import did_you_mean

        raise InputError(f"no {kind} lab scenario named {scenario!r}.{did_you_mean(scenario, known)} "
                         f"Scenarios: {', '.join(known)}")


def lab_dir(path: str | None) -> LabDir:
    return LabDir(path or os.environ.get("DRENGINE_LAB_DIR", DEFAULT_LAB_DIR))


def start_lab(kind: str, path: str | None, inventory_out: str, scenario: str | None = None,
              speed: float | None = None) -> str:
    from drengine.datastores import datastore

    module: Any
    if kind == "site":
        return _start_site(path, inventory_out, scenario, speed)
    if kind == "ssh":
        from drengine.lab import ssh as module
    elif kind == "ssh-site":
        from drengine.lab import ssh_site as module
    elif kind == "etcd":
        from drengine.lab import etcd as module
    else:
        store = datastore(kind)
        if store.lab is None:
            raise InputError(f"the {kind} lab is not available in this version")
        module = store.load(store.lab)
    check_scenario(kind, scenario)
    timed: dict[str, float] = {}
    if speed is not None:
        if kind in ("ssh", "ssh-site", "etcd") or not datastore(kind).simulated_lab:
            raise InputError(f"--speed is for the simulated labs; the {kind} lab runs real services in real time")
        timed["speed"] = speed
    lab = lab_dir(path)
    # Before anything starts: the directory can be made, and the daemons' user can reach it.
    check_lab_dir(lab.root, getattr(module, "RUNS_AS", None))
    if scenario is not None or timed:
        module.up(lab, inventory_out=inventory_out, **({"scenario": scenario} if scenario else {}), **timed)
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
    hint = getattr(module, "up_hint", None)
    return (f"{kind} lab up in {lab.root}: {len(procs)} process(es); inventory written to {inventory_out}"
            + (f"\n{hint(lab)}" if hint else ""))


def _start_site(path: str | None, inventory_out: str, scenario: str | None, speed: float | None) -> str:
    """The MariaDB, Galera and Ceph labs as one site on the SSH lab hosts (drengine/site/lab.py)."""
    from drengine.site.lab import write_site_inventory

    if scenario is not None or speed is not None:
        raise InputError("the site lab runs the real MariaDB, Galera and Ceph labs: no --scenario or --speed")
    lab = lab_dir(path)
    said = []
    if not any(p.kind == "ssh" and is_ours(p) for p in lab.processes()):
        said.append(start_lab("ssh", path, inventory_out))
    said += [start_lab(kind, path, inventory_out) for kind in ("mariadb", "galera", "ceph")]
    write_site_inventory(Path(inventory_out), Path(inventory_out))
    return "; ".join(said) + f"; the site (one host carries members of all three) written to {inventory_out}"


def lab_status_lines(path: str | None) -> list[str]:
    lab = lab_dir(path)
    procs = lab.processes()
    if not procs:
        return [f"{lab.root}: nothing running"]
    return [f"{p.kind:12} {p.name:14} pid {p.pid:<8} {'running' if is_ours(p) else 'GONE'}  log {p.log}" for p in procs]


def stop_lab(kind: str | None, path: str | None) -> list[str]:
    from drengine.lab import ssh_site

    lab = lab_dir(path)
    if kind == "site":  # the site's datastores; the SSH hosts stay for other labs (`lab down ssh`)
        stopped = [p for each in ("mariadb", "galera", "ceph") for p in lab.stop_kind(each)]
        return [f"stopped {p.kind}/{p.name} (pid {p.pid})" for p in stopped] or ["nothing to stop"]
    stopped = lab.stop_kind(kind)
    lines = [f"stopped {p.kind}/{p.name} (pid {p.pid})" for p in stopped] or ["nothing to stop"]
    if kind == ssh_site.KIND or any(p.kind == ssh_site.KIND for p in stopped):
        lines += ssh_site.remove_operators()
    return lines


def _module(kind: str) -> ModuleType:
    from drengine.datastores import datastore

    store = datastore(kind)
    if store.lab is None:
        raise InputError(f"the {kind} lab is not available in this version")
    module: ModuleType = store.load(store.lab)
    return module


def node_kinds() -> tuple[str, ...]:
    """The labs whose inventories start and stop single nodes."""
    from drengine.datastores import registry

    return tuple(kind for kind, store in registry().items() if store.lab and not store.simulated_lab)


def node_start(kind: str, path: str | None, name: str, how: NodeStart) -> str:
    module = _module(kind)
    start = getattr(module, "node_start", None)
    if start is None:
        raise InputError(f"the {kind} lab has no single nodes to start; use `drengine lab up {kind}`")
    known: frozenset[str] = getattr(module, "NODE_OPTIONS", frozenset())
    unknown = [flag for flag in how.given() if flag not in known]
    if unknown:
        raise InputError(f"{kind} lab nodes do not take {', '.join(unknown)}; "
                         f"they take {', '.join(sorted(known)) or 'no options'}")
    text: str = start(lab_dir(path), name, how)
    return text


def node_stop(kind: str, path: str | None, name: str) -> str:
    module, lab = _module(kind), lab_dir(path)
    stop = getattr(module, "node_stop", None)
    if stop is not None:
        text: str = stop(lab, name)
        return text
    found = lab.find(kind, name)
    if found is None:
        raise LabError(f"the {kind} lab in {lab.root} has no node {name}")
    lab.stop(found)
    return f"{name} stopped"


def node_status(kind: str, path: str | None, name: str) -> tuple[bool, str]:
    """(running, what to say): the lab inventory's `status` template asks this."""
    module, lab = _module(kind), lab_dir(path)
    status = getattr(module, "node_status", None)
    if status is not None:
        answer: tuple[bool, str] = status(lab, name)
        return answer
    found = lab.find(kind, name)
    if found is None or not is_ours(found):
        return False, f"{name}: not running"
    return True, f"{name}: running (pid {found.pid})"


def serve_simulator(kind: str, scenario: str | None, port: int | None, state: Path | None,
                    speed: float = 1.0) -> Served:
    from drengine.datastores import datastore

    if not datastore(kind).simulated_lab:
        raise InputError(f"{kind} has no served simulator; `drengine lab up {kind}` starts real services")
    # Only the simulators that model time take a speed.
    timed = {"speed": speed} if speed != 1.0 else {}
    served: Served = _module(kind).serve_simulator(scenario, port, state, **timed)
    return served


def served_kinds() -> tuple[str, ...]:
    from drengine.datastores import registry

    return tuple(kind for kind, store in registry().items() if store.lab and store.simulated_lab)

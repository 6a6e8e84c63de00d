"""The one state store of the simulated twins: how a simulated cluster's state is found (the
run's state file, else the inventory's scenario) and written back atomically. Every simulator
(MariaDB, Galera, MongoDB, Ceph, Elasticsearch, and the served labs) goes through here, so a
resumed run, a later runbook on the same cluster and a served lab all continue from the state
the previous one left, and a crash never leaves half a state file behind.

The fault-space explorer (`drengine explore`) runs thousands of throw-away scenarios in one
process, saving the state after every statement; it names its state file with `kept_in_memory`,
and that one file then lives in this process's memory: the same text is saved and loaded at the
same moments (a killed run resumes from exactly what the last save left), without the file
system. Every other state file is on disk, as always."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from drengine.errors import InputError
from drengine.files import atomic_write
from drengine.inventory import Cluster

T = TypeVar("T")

# The explorer's state files, by path: the text last saved, or None while there is none yet.
_IN_MEMORY: dict[Path, str | None] = {}


def keep_in_memory(state_file: Path) -> None:
    """Keep this state file in memory from now on (what is on disk is not read any more). For
    the explorer's throw-away scenarios ONLY."""
    _IN_MEMORY.setdefault(state_file, None)


def back_on_disk(state_file: Path) -> None:
    """The state file kept in memory goes back on disk, holding the state saved last."""
    text = _IN_MEMORY.pop(state_file, None)
    if text is not None:
        atomic_write(state_file, text)


def state_exists(state_file: Path) -> bool:
    """Has a state been saved in this file?"""
    if state_file in _IN_MEMORY:
        return _IN_MEMORY[state_file] is not None
    return state_file.exists()


def _read(state_file: Path) -> str:
    if state_file in _IN_MEMORY:
        text = _IN_MEMORY[state_file]
        if text is None:
            raise FileNotFoundError(2, "No such file or directory", str(state_file))
        return text
    return state_file.read_text(encoding="utf-8")


def load_state(state_file: Path, parse: Callable[[str], T], what: str) -> T:
    """A saved simulated cluster; a file that cannot be read or parsed is an input error."""
    try:
        text = _read(state_file)
    except OSError as exc:
        raise InputError(f"{state_file}: cannot read the simulated {what} state ({exc.strerror})") from None
    try:
        return parse(text)
    except ValueError as exc:  # pydantic's ValidationError and json's JSONDecodeError are ValueErrors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{state_file}: the simulated {what} state is not valid ({first}); "
                         f"delete the file to start the scenario afresh") from None


def build_scenario(name: str, scenarios: Mapping[str, Callable[[], T]], what: str, cluster: str = "") -> T:
    factory = scenarios.get(name)
    if factory is None:
        where = f"cluster {cluster}: " if cluster else ""
        raise InputError(f"{where}unknown {what} scenario {name!r}; known: {', '.join(sorted(scenarios))}")
    return factory()


def load_or_build(cluster: Cluster, state_file: Path | None, parse: Callable[[str], T],
                  scenarios: Mapping[str, Callable[[], T]], what: str) -> T:
    """The state a resumed run left in its state file, else a new cluster from the scenario."""
    if state_file is not None and state_exists(state_file):
        return load_state(state_file, parse, what)
    if cluster.simulated is None:
        raise InputError(f"cluster {cluster.name} is not marked `simulated:` in the inventory; no scenario to build")
    return build_scenario(cluster.simulated.scenario, scenarios, what, cluster.name)


def save_state(state: str | BaseModel, state_file: Path | None) -> None:
    """Write the state atomically: a crash mid-write must leave the previous state intact."""
    if state_file is None:
        return
    text = state if isinstance(state, str) else state.model_dump_json()
    if state_file in _IN_MEMORY:
        _IN_MEMORY[state_file] = text
        return
    atomic_write(state_file, text)

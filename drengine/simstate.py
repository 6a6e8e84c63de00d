"""The one state store of the simulated twins: how a simulated cluster's state is found (the
run's state file, else the inventory's scenario) and written back atomically. Every simulator
(MariaDB, Galera, MongoDB, Ceph, Elasticsearch, and the served labs) goes through here, so a
resumed run, a later runbook on the same cluster and a served lab all continue from the state
the previous one left, and a crash never leaves half a state file behind.

A state file is read and written through the run's disk (drengine/machine.py): a real disk
writes it atomically; the fault-space explorer's scratch disk keeps it in memory, where a
simulator whose state is a pydantic model of plain data is kept as the model itself, and a load
takes a `snapshot` (a deep copy) of it."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, cast, get_args, get_origin

from pydantic import BaseModel

from drengine.errors import InputError
from drengine.inventory import Cluster
from drengine.machine import DISK, Disk

T = TypeVar("T")

# How a state is read back: a function of the text, or the pydantic model it is (its JSON).
Parse = Callable[[str], T] | type[T]

# A run's own state file -> the simulated cluster's state file every later status and run reads
# (written at each save too, so that `drengine status` sees what a run did, even mid-run).
_SHARED_WITH: dict[Path, Path] = {}

SIM_DIR_ENV = "DRENGINE_SIM_DIR"


def cluster_state_file(inventory_path: str, cluster: str) -> Path:
    """Where a simulated cluster without `state_file:` keeps its state between runs: beside the
    cluster locks ($DRENGINE_SIM_DIR, else $XDG_STATE_HOME/drengine/simulated), one folder per
    inventory file (its name and a digest of its real path), one file per cluster."""
    import hashlib
    import os

    base = os.environ.get(SIM_DIR_ENV) or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "drengine", "simulated")
    real = os.path.realpath(inventory_path)
    folder = f"{Path(real).stem}-{hashlib.sha256(real.encode()).hexdigest()[:10]}"
    return Path(base) / folder / f"{cluster}.json"


def share_state(own: Path, cluster_file: Path) -> None:
    """From now on, every save of `own` (a run's state file) is also the cluster's state."""
    _SHARED_WITH[own] = cluster_file


def copy_state(source: Path, target: Path, disk: Disk = DISK) -> None:
    """Start `target` from what `source` holds (a run's own copy of the cluster's state)."""
    saved = disk.read_state(source)
    disk.write_state(target, saved if isinstance(saved, str) else saved.model_dump_json())

_SCALARS: frozenset[type] = frozenset({str, int, float, bool, NoneType})
# The types a snapshot shares rather than copies: the scalars, then every enum and every model
# that cannot change met so far (a set lookup per item: a MariaDB state holds hundreds of
# transactions).
_SHARED: set[type] = set(_SCALARS)


def snapshot(value: T) -> T:
    """A deep copy of simulator state: containers and models are copied; scalars, enums and
    models that cannot change (frozen, only scalar or enum fields) are shared."""
    kind = type(value)
    if kind in _SHARED:
        return value
    if kind is list:
        shared = _SHARED
        return cast(T, [item if type(item) in shared else snapshot(item) for item in cast(list[Any], value)])
    if kind is dict:
        shared = _SHARED
        return cast(T, {key: item if type(item) in shared else snapshot(item)
                        for key, item in cast(dict[Any, Any], value).items()})
    if isinstance(value, BaseModel):
        if _unchangeable(type(value)):
            _SHARED.add(kind)
            return value
        copied = value.model_copy()  # fields, fields set, extras and private attributes, one level
        fields = copied.__dict__
        for name, item in fields.items():
            if type(item) not in _SHARED:
                fields[name] = snapshot(item)
        return copied
    if kind is tuple:
        return cast(T, tuple(snapshot(item) for item in cast(tuple[Any, ...], value)))
    if isinstance(value, Enum):
        _SHARED.add(kind)
        return value
    return copy.deepcopy(value)


def _unchangeable(model: type[BaseModel]) -> bool:
    """A frozen model without extras whose every field holds a scalar or an enum: nothing in it
    can be changed, so a snapshot may share it."""
    config = model.model_config
    return bool(config.get("frozen")) and config.get("extra") != "allow" and all(
        _scalar_annotation(field.annotation) for field in model.model_fields.values())


def _scalar_annotation(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return all(_scalar_annotation(arg) for arg in get_args(annotation))
    return annotation in _SCALARS or (isinstance(annotation, type) and issubclass(annotation, Enum))


def state_exists(state_file: Path, disk: Disk = DISK) -> bool:
    """Has a state been saved in this file?"""
    return disk.has_state(state_file)


def load_state(state_file: Path, parse: Parse[T], what: str, disk: Disk = DISK) -> T:
    """A saved simulated cluster; a file that cannot be read or parsed is an input error."""
    try:
        saved = disk.read_state(state_file)
    except OSError as exc:
        raise InputError(f"{state_file}: cannot read the simulated {what} state ({exc.strerror})") from None
    model = parse if isinstance(parse, type) and issubclass(parse, BaseModel) else None
    if isinstance(saved, BaseModel):
        if model is not None and type(saved) is model:
            return cast(T, snapshot(saved))
        saved = saved.model_dump_json()
    try:
        if model is not None:
            return cast(T, model.model_validate_json(saved))
        return cast(Callable[[str], T], parse)(saved)
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


def load_or_build(cluster: Cluster, state_file: Path | None, parse: Parse[T],
                  scenarios: Mapping[str, Callable[[], T]], what: str, disk: Disk = DISK) -> T:
    """The state a resumed run left in its state file, else a new cluster from the scenario."""
    if state_file is not None and disk.has_state(state_file):
        return load_state(state_file, parse, what, disk)
    if cluster.simulated is None:
        raise InputError(f"cluster {cluster.name} is not marked `simulated:` in the inventory; no scenario to build")
    return build_scenario(cluster.simulated.scenario, scenarios, what, cluster.name)


def save_state(state: str | BaseModel, state_file: Path | None, disk: Disk = DISK) -> None:
    """Write the state atomically: a crash mid-write must leave the previous state intact."""
    if state_file is None:
        return
    disk.write_state(state_file, state)
    shared = _SHARED_WITH.get(state_file)
    if shared is not None:
        shared.parent.mkdir(parents=True, exist_ok=True)
        disk.write_state(shared, state if isinstance(state, str) else state.model_dump_json())

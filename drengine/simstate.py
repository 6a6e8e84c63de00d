"""Simulated twins of the connectors. Shared here: how a simulated cluster's state is found
(the run's state file, else the inventory's scenario) and written back atomically."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from drengine.errors import InputError
from drengine.inventory import Cluster

M = TypeVar("M", bound=BaseModel)


def load_or_build(cluster: Cluster, state_file: Path, model: type[M],
                  scenarios: Mapping[str, Callable[[Cluster], M]], what: str) -> M:
    """The state a resumed run left in its state file, else a new cluster from the scenario."""
    assert cluster.simulated is not None
    if state_file.exists():
        return model.model_validate_json(state_file.read_text())
    factory = scenarios.get(cluster.simulated.scenario)
    if factory is None:
        raise InputError(
            f"cluster {cluster.name}: unknown {what} scenario {cluster.simulated.scenario!r}; "
            f"known: {', '.join(sorted(scenarios))}"
        )
    return factory(cluster)


def save_state(state: BaseModel, state_file: Path | None) -> None:
    """Write the state atomically: a crash mid-write must leave the previous state intact."""
    if state_file is None:
        return
    state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json())
    tmp.replace(state_file)

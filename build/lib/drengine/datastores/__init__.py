"""The datastores drengine knows. Each one is a package below this one (actions, connector,
simulated twin, drill kit, lab) whose `__init__` declares a `DATASTORE`; the engine, the
CLI, the inventory and drills learn the list from here. Adding a datastore is one new folder
(and its runbooks under runbooks/): nothing else names the kinds.

The `__init__` of a datastore package must stay cheap (no client libraries): listing the
datastores imports every one of them.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from typing import Any

from drengine.errors import InputError


@dataclass(frozen=True)
class Datastore:
    """What one datastore brings, as references inside its own package (imported lazily)."""

    kind: str
    title: str
    default_port: int
    connector: str  # "module:Class" of the real backend
    simulator: str  # "module:Class" of the simulated twin (a class with `open(cluster, state_file)`)
    drill_kit: str | None = "drill:KIT"
    lab: str | None = "lab"  # module with `up(lab, inventory_out=...)`
    # The lab serves the simulator over the real protocol; `--scenario` picks its situation.
    simulated_lab: bool = False
    # {data_dir} of service templates for a member without `data_dir:` (the packages' default).
    default_data_dir: str | None = None
    # Its connector and simulator take the run's Clock (`clock=`); the others keep their own time.
    takes_clock: bool = False
    # `assess(cluster, backend) -> drengine.status.Reading`: what an observation means, for `drengine status`.
    status: str | None = "status:assess"

    def load(self, ref: str) -> Any:
        module, _, name = ref.partition(":")
        loaded = importlib.import_module(f"{__name__}.{self.kind}.{module}")
        return getattr(loaded, name) if name else loaded


@cache
def registry() -> dict[str, Datastore]:
    found: dict[str, Datastore] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        package = importlib.import_module(f"{__name__}.{info.name}")
        datastore = getattr(package, "DATASTORE", None)
        if isinstance(datastore, Datastore):
            found[datastore.kind] = datastore
    return found


def kinds() -> tuple[str, ...]:
    return tuple(registry())


def datastore(kind: str) -> Datastore:
    found = registry().get(kind)
    if found is None:
        raise InputError(f"unknown datastore kind {kind!r}; known: {', '.join(kinds())}")
    return found


def check_kind(value: str) -> str:
    """Pydantic validator of a `kind:` field in inventories and runbooks."""
    if value not in kinds():
        raise ValueError(f"unknown datastore kind {value!r}; expected one of {', '.join(kinds())}")
    return value

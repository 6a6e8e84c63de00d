"""The facts the Ceph runbooks hand from step to step and leave in their journals.

ceph-restore reads `FlagsSet` and `MinSizeChanges` back from the journals of ceph-degrade
runs, so their shapes are part of the journal format: change them only compatibly.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from drengine.datastores.ceph.connector import CephSnapshot
from drengine.steps import FACT_MODELS, Fact, fact


@fact
class Observation(Fact):
    snapshot: CephSnapshot


@fact
class FlagsSet(Fact):
    """OSD flags a degrade run wanted, which it set itself and which were already set (not its to unset)."""

    wanted: list[str] = []
    set_by_drengine: list[str] = []
    already_set: list[str] = []


class PoolMinSize(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: str
    size: int
    old: int
    new: int
    reason: str = ""


@fact
class MinSizeChanges(Fact):
    changes: list[PoolMinSize] = []


@fact
class OsdsMarked(Fact):
    out: list[int] = []
    lost: list[int] = []


@fact
class UnfoundGivenUp(Fact):
    mode: str
    pgs: list[str] = []
    objects: int = 0


@fact
class IoChecked(Fact):
    pools: list[str] = []
    seconds: float = 0.0


@fact
class DegradeRecord(Fact):
    """What earlier ceph-degrade runs on this cluster changed, read back from their journals."""

    runs: list[str] = []
    flags: list[str] = []
    min_size: list[PoolMinSize] = []
    notes: list[str] = []



@fact
class MonSurgery(Fact):
    """The monitor surgery decided: who survives, who is removed, whose monmap is the newest."""

    survivors: list[str]  # member names, mon.a
    removed: list[str]  # monitor ids removed from the monmap: b, c
    members_before: list[str]
    source: str  # the survivor with the newest monmap
    epoch: int
    reason: str



# Journals written before the facts had a module of their own name them by the module that
# held the Ceph actions then; a restore must still read a degrade run journaled by them.
_FORMER_MODULES = ("drengine.datastores.ceph.actions", "drengine.actions.ceph")
for _model in (Observation, FlagsSet, MinSizeChanges, OsdsMarked, UnfoundGivenUp, IoChecked, DegradeRecord, MonSurgery):
    for _module in _FORMER_MODULES:
        FACT_MODELS.setdefault(f"{_module}:{_model.__qualname__}", _model)

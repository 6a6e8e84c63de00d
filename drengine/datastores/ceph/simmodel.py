"""The simulated Ceph cluster's state, in the words of the real system: monitors with their
own monmaps, OSDs up/in/lost, pools, placement groups with the objects they hold and which
OSDs hold their latest data, and the OSD map flags. Plain pydantic models, so the whole
cluster is saved to and loaded from one JSON state file; `PgView` is what a PG's state
computes to (never stored)."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

FLAGS = ("noout", "norebalance", "norecover", "nobackfill", "noup", "nodown", "noin", "pause", "noscrub", "nodeep-scrub")
# Flags every Pacific osdmap carries; shown in `osd dump` like the real cluster does.
BASE_FLAGS = ("sortbitwise", "recovery_deletes", "purged_snapdirs", "pglog_hardlimit")
DOWN_OUT_INTERVAL = 600.0  # mon_osd_down_out_interval
# A monitor that starts (or resumes) takes part in the quorum only after an election: a few
# seconds on a real cluster, so whoever starts monitors must wait for their quorum.
ELECTION_SECONDS = 3.0
FSID = "5a1c0ffe-0000-4000-8000-00000000ce9f"


class State(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class SimMon(State):
    name: str
    port: int
    up: bool = True
    # Stopped (SIGSTOP), not dead: out of the quorum until resumed; a start finds its store locked.
    hung: bool = False
    # Each monitor keeps its own copy of the monmap (epoch, members): monmap surgery edits one copy.
    monmap_epoch: int = 1
    monmap: list[str] = Field(default_factory=list)
    joins_at: float = 0.0  # the model time its election ends: not in a quorum before


class SimOsd(State):
    id: int
    host: str
    device_class: str = "hdd"
    up: bool = True
    in_: bool = Field(default=True, alias="in")
    lost: bool = False
    # Stopped (SIGSTOP): marked down like a dead OSD, back by itself once resumed; a start finds its store locked.
    hung: bool = False
    down_since: float | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SimPool(State):
    id: int
    name: str
    size: int = 3
    min_size: int = 2
    pg_num: int = 8
    application: str = "rados"
    crush_rule: int = 0
    device_class: str | None = None  # the rule's device class; None means every OSD


class UnfoundObject(State):
    osd: int  # the OSD that held the only copy of the newest version
    previous: str | None = None  # base64 of the older version `revert` goes back to; None: revert deletes


class SimPg(State):
    pool: int
    seed: int
    objects: dict[str, str] = Field(default_factory=dict)  # name -> base64 data
    copies: list[int] = Field(default_factory=list)  # OSDs that hold the PG's latest data
    past: list[int] = Field(default_factory=list)  # OSDs that ever held it (recovery rather than backfill)
    unfound: dict[str, UnfoundObject] = Field(default_factory=dict)

    @property
    def pgid(self) -> str:
        return f"{self.pool}.{self.seed:x}"


class SimState(State):
    fsid: str = FSID
    clock: float = 0.0
    epoch: int = 1
    flags: list[str] = Field(default_factory=list)
    mons: list[SimMon] = Field(default_factory=list)
    osds: list[SimOsd] = Field(default_factory=list)
    pools: list[SimPool] = Field(default_factory=list)
    pgs: list[SimPg] = Field(default_factory=list)


class PgView(BaseModel):
    """The computed state of one PG (never stored: derived from the model on every look)."""

    model_config = ConfigDict(frozen=True)

    pgid: str
    states: list[str]
    up: list[int]
    acting: list[int]
    blocked_by: list[int]
    objects: int
    unfound: int
    degraded: int
    copies_expected: int

    @property
    def state(self) -> str:
        return "+".join(self.states)

    @property
    def serving(self) -> bool:
        return "active" in self.states and "stale" not in self.states


# Ceph prints PG states in this order (pg_state_string in osd_types.cc).
STATE_ORDER = (
    "stale",
    "creating",
    "active",
    "activating",
    "clean",
    "recovery_wait",
    "recovering",
    "down",
    "recovery_unfound",
    "backfill_unfound",
    "undersized",
    "degraded",
    "remapped",
    "peering",
    "backfill_wait",
    "backfilling",
    "incomplete",
    "peered",
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


@lru_cache(maxsize=65536)  # pure, and computed for every PG and OSD at every look: once is enough
def crush_score(pool: int, seed: int, osd: int) -> int:
    """Rendezvous hashing standing in for CRUSH: stable, spreads PGs, keeps down-but-in OSDs mapped."""
    return int.from_bytes(hashlib.sha256(f"{pool}.{seed}.{osd}".encode()).digest()[:8], "big")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


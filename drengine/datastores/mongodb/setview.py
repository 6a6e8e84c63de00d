"""What was observed of a replica set, as facts (`SetView`, one `MemberView` per member,
configs, optimes), parsed from the documented replies; and the exact command documents
drengine sends, as the extended JSON text shown to the operator."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from drengine.steps import Fact, fact

STATE_NAMES = {
    0: "STARTUP",
    1: "PRIMARY",
    2: "SECONDARY",
    3: "RECOVERING",
    5: "STARTUP2",
    6: "UNKNOWN",
    7: "ARBITER",
    8: "DOWN",
    9: "ROLLBACK",
    10: "REMOVED",
}
# Error codes a member answers replSetGetStatus with when it holds no usable config.
NOT_YET_INITIALIZED = 94
INVALID_REPLICA_SET_CONFIG = 93


# -- facts -------------------------------------------------------------------------------------------


@fact
class OpTimeView(Fact):
    """An oplog position. MongoDB orders them by term, then timestamp."""

    term: int = -1
    seconds: int = 0
    increment: int = 0

    def key(self) -> tuple[int, int, int]:
        return (self.term, self.seconds, self.increment)

    def show(self) -> str:
        """The time a person reads (UTC) rather than the raw epoch; `#N` is the Timestamp's
        increment (the N-th operation of that second), so two positions still compare exactly."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.seconds))
        return f"term {self.term}, {when} UTC #{self.increment}"


@fact
class ConfigMember(Fact):
    id: int
    host: str
    priority: float = 1.0
    votes: int = 1
    arbiter_only: bool = False
    hidden: bool = False
    secondary_delay_secs: int = 0

    @property
    def electable(self) -> bool:
        return self.priority > 0 and self.votes > 0 and not self.arbiter_only

    @property
    def may_be_primary(self) -> bool:
        """Configured so that it may become primary: electable, not hidden, not delayed."""
        return self.electable and not self.hidden and self.secondary_delay_secs == 0

    def kind(self) -> str:
        """What its config makes it, in words ("" for an ordinary member)."""
        words = []
        if self.arbiter_only:
            words.append("arbiter")
        if self.hidden:
            words.append("hidden")
        if self.secondary_delay_secs:
            words.append(f"delayed {self.secondary_delay_secs} s")
        if self.votes == 0:
            words.append("non-voting")
        if self.priority <= 0 and not self.arbiter_only:
            words.append("priority 0")
        return ", ".join(words)


@fact
class ReplConfig(Fact):
    """A replica-set config as one member returned it; `document` is the whole config as
    relaxed extended JSON, so settings (replicaSetId...) survive a forced reconfig untouched."""

    set_name: str
    version: int
    term: int = -1
    members: list[ConfigMember]
    document: str

    def member_with_host(self, host: str) -> ConfigMember | None:
        return next((m for m in self.members if m.host == host), None)

    def total_votes(self) -> int:
        return sum(m.votes for m in self.members)

    def majority(self) -> int:
        return self.total_votes() // 2 + 1


@fact
class PeerStatus(Fact):
    """One row of replSetGetStatus `members[]`, as the answering member sees that peer."""

    id: int
    host: str
    healthy: bool
    state: str
    optime: OpTimeView | None = None
    heartbeat_message: str = ""
    is_self: bool = False


@fact
class MemberView(Fact):
    name: str  # the inventory's name for the member
    host: str  # address:port drengine connects to
    reachable: bool
    error: str = ""
    me: str = ""  # its own host string in the replica-set config (hello.me)
    state: str = ""  # PRIMARY, SECONDARY, ARBITER, STARTUP (no config), REMOVED...
    is_writable_primary: bool = False
    arbiter_only: bool = False
    set_name: str = ""
    set_version: int | None = None
    term: int | None = None
    optime: OpTimeView | None = None
    config: ReplConfig | None = None
    peers: list[PeerStatus] = Field(default_factory=list)
    probe_seconds: float = 0.0

    @property
    def config_host(self) -> str:
        return self.me or self.host


@fact
class SetView(Fact):
    cluster: str
    members: list[MemberView]
    observed_at: float
    probe_seconds: float = 0.0

    def member(self, name: str) -> MemberView:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    def reachable(self) -> list[MemberView]:
        return [m for m in self.members if m.reachable]

    def newest_config(self) -> ReplConfig | None:
        """The config with the highest version among the reachable members."""
        configs = [m.config for m in self.members if m.reachable and m.config is not None]
        return max(configs, key=lambda c: c.version) if configs else None

    def name_of(self, config_host: str) -> str:
        """The inventory name of the member a config entry names (its host string if unknown)."""
        for m in self.members:
            if m.reachable and m.me == config_host:
                return m.name
        for m in self.members:
            if m.host == config_host:
                return m.name
        return config_host

    def by_config_host(self, config_host: str) -> MemberView | None:
        name = self.name_of(config_host)
        return next((m for m in self.members if m.name == name), None)


# -- pure helpers (no pymongo): documents <-> facts ---------------------------------------------------


def optime_of(raw: Any) -> OpTimeView | None:
    """`{ts: Timestamp, t: term}` (as BSON or relaxed extended JSON) -> OpTimeView."""
    if not isinstance(raw, Mapping):
        return None
    ts = raw.get("ts")
    term = raw.get("t", -1)
    seconds = getattr(ts, "time", None)
    inc = getattr(ts, "inc", None)
    if seconds is None and isinstance(ts, Mapping):  # extended JSON {"$timestamp": {"t":, "i":}}
        inner = ts.get("$timestamp", {})
        seconds, inc = inner.get("t", 0), inner.get("i", 0)
    return OpTimeView(term=int(term), seconds=int(seconds or 0), increment=int(inc or 0))


def config_from_json(text: str) -> ReplConfig:
    doc = json.loads(text)
    members = [
        ConfigMember(
            id=int(m["_id"]),
            host=str(m["host"]),
            priority=float(m.get("priority", 0.0 if m.get("arbiterOnly") else 1.0)),
            votes=int(m.get("votes", 1)),
            arbiter_only=bool(m.get("arbiterOnly", False)),
            hidden=bool(m.get("hidden", False)),
            # secondaryDelaySecs since 5.0, slaveDelay before.
            secondary_delay_secs=int(m.get("secondaryDelaySecs", m.get("slaveDelay", 0)) or 0),
        )
        for m in doc.get("members", [])
    ]
    return ReplConfig(
        set_name=str(doc.get("_id", "")),
        version=int(doc.get("version", 0)),
        term=int(doc.get("term", -1)),
        members=members,
        document=text,
    )


def command_text(document: Mapping[str, Any]) -> str:
    """The exact text of a command document (relaxed extended JSON, keys in order)."""
    return json.dumps(document, separators=(", ", ": "))


CANARY_DB = "drengine"
CANARY_COLLECTION = "canary"
# Long enough for a healthy set, short enough that a set without a writable majority says so.
# The connector's socket timeout for this write is wtimeout + the read timeout (server_wait).
CANARY_WTIMEOUT_MS = 5000


def canary_failure(reply: Mapping[str, Any]) -> str | None:
    """Why a canary insert was not acknowledged, telling a slow or missing majority (the server
    answered after wtimeout) from a refused write; None when it was acknowledged."""
    concern = reply.get("writeConcernError")
    if isinstance(concern, Mapping):
        info = concern.get("errInfo") or {}
        if isinstance(info, Mapping) and info.get("wtimeout"):
            return (f"the canary write with w: majority failed: {concern.get('errmsg', concern)} after the wtimeout "
                    f"of {CANARY_WTIMEOUT_MS / 1000:g} s: the primary answers, but a majority of the data-bearing "
                    f"voters did not replicate the write in time (down, lagging or cut off); a slow majority, not a "
                    f"hung member")
        return f"the canary write with w: majority failed: {concern.get('errmsg', concern)}"
    errors = reply.get("writeErrors") or []
    if errors:
        return f"the canary write failed: {errors[0].get('errmsg', errors[0])}"
    return None


# A safe reconfig waits for the current config to be committed, then for the new one to reach a
# majority; without maxTimeMS it may wait forever (replSetReconfig docs). Bounded here.
RECONFIG_MAX_TIME_MS = 30000


def reconfig_command(config_document: str, force: bool, max_time_ms: int | None = None) -> str:
    """`{"replSetReconfig": <config>, "force": true}` (force only when asked; maxTimeMS when given)."""
    cmd: dict[str, Any] = {"replSetReconfig": json.loads(config_document)}
    if force:
        cmd["force"] = True
    if max_time_ms:
        cmd["maxTimeMS"] = max_time_ms
    return command_text(cmd)


def freeze_command(seconds: int) -> str:
    """replSetFreeze: the member does not stand for election for `seconds` (0 unfreezes)."""
    return command_text({"replSetFreeze": seconds})


def step_down_command(seconds: int) -> str:
    return command_text({"replSetStepDown": seconds})


def canary_insert_command(marker: str, written_at: float) -> str:
    """A marker document in drengine's own collection, acknowledged by a majority."""
    return command_text({
        "insert": CANARY_COLLECTION,
        "documents": [{"_id": marker, "written_at": round(written_at, 3), "by": "drengine verify"}],
        "writeConcern": {"w": "majority", "wtimeout": CANARY_WTIMEOUT_MS},
        "$db": CANARY_DB,
    })


COUNT_CANARY = command_text({"count": CANARY_COLLECTION, "$db": CANARY_DB})


def peer_status(row: Mapping[str, Any]) -> PeerStatus:
    return PeerStatus(
        id=int(row.get("_id", -1)),
        host=str(row.get("name", "")),
        healthy=bool(row.get("health", 0)),
        state=str(row.get("stateStr", "")),
        # Arbiters keep no oplog: their rows have no optime.
        optime=optime_of(row.get("optime")),
        heartbeat_message=str(row.get("lastHeartbeatMessage", "")),
        is_self=bool(row.get("self", False)),
    )



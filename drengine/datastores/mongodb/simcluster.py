"""In-memory model of a MongoDB replica set: drengine's simulated twin.

This module owns the replica-set behaviour that drengine's MongoDB runbooks
depend on: members and their configs, elections, optimes, replication, write
concern, forced and normal reconfiguration, and fault injection (kill, hang,
partition, lag). It opens no sockets and starts no threads: time comes from
an injected clock, randomness from an injected ``random.Random``, and
elections happen only when ``tick()`` or ``settle()`` is called.
``drengine.datastores.mongodb.wire`` serves this model over the MongoDB wire protocol.

Every member keeps its *own* copy of the replica-set config, as a real mongod
does. That is what makes the split-brain risk visible: a member removed by a
forced reconfig that comes back still holding the old config, and that can
see a majority of the old voters, elects a second primary.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from pydantic import BaseModel, ConfigDict, JsonValue

Clock = Callable[[], float]
Document = dict[str, JsonValue]
WriteConcernW = int | str | None

# Forced reconfig: MongoDB overwrites the requested version with a much larger,
# random one (documented in SERVER-25205: "the version number will be
# incremented randomly by a relatively large number"), so that two operators
# forcing configs on both sides of a partition do not produce equal versions.
# The exact range below is the simulator's choice, not a documented constant.
FORCE_VERSION_MIN_INCREMENT = 10_000
FORCE_VERSION_RANDOM_SPAN = 100_000

MAX_VOTING_MEMBERS = 7
MAX_MEMBERS = 50
UNINITIALISED_TERM = -1


class ManualClock:
    """A clock the tests move by hand; the model never sleeps."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- errors: MongoDB's own codes, so the wire layer can answer as mongod does


class ReplicaSetError(Exception):
    """A command refused by a member, with MongoDB's error code and name."""

    code = 8
    code_name = "UnknownError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotWritablePrimary(ReplicaSetError):
    code = 10107
    code_name = "NotWritablePrimary"


class NotYetInitialized(ReplicaSetError):
    code = 94
    code_name = "NotYetInitialized"


class NodeNotFound(ReplicaSetError):
    code = 74
    code_name = "NodeNotFound"


class InvalidReplicaSetConfig(ReplicaSetError):
    code = 93
    code_name = "InvalidReplicaSetConfig"


class NewReplicaSetConfigurationIncompatible(ReplicaSetError):
    code = 103
    code_name = "NewReplicaSetConfigurationIncompatible"


class NotSecondary(ReplicaSetError):
    code = 95
    code_name = "NotSecondary"


class ExceededTimeLimit(ReplicaSetError):
    code = 262
    code_name = "ExceededTimeLimit"


class NotPrimaryNoSecondaryOk(ReplicaSetError):
    code = 13435
    code_name = "NotPrimaryNoSecondaryOk"


class NotPrimaryOrSecondary(ReplicaSetError):
    code = 13436
    code_name = "NotPrimaryOrSecondary"


class BadValue(ReplicaSetError):
    code = 2
    code_name = "BadValue"


class UnknownReplWriteConcern(ReplicaSetError):
    code = 79
    code_name = "UnknownReplWriteConcern"


class MemberUnavailable(ReplicaSetError):
    """The member's process is killed or hung, so nothing answers."""

    code = 6
    code_name = "HostUnreachable"


class UnknownMember(LookupError):
    """A member id the simulated set does not have (a caller's mistake)."""


class UnknownScenario(LookupError):
    """A scenario name that SCENARIOS does not define."""


# --- state


class Process(str, Enum):
    """What the member's mongod process is doing, seen from outside."""

    RUNNING = "running"
    KILLED = "killed"
    HUNG = "hung"


class MemberState(str, Enum):
    """Replica-set member states, named as ``stateStr`` names them."""

    STARTUP = "STARTUP"
    PRIMARY = "PRIMARY"
    SECONDARY = "SECONDARY"
    RECOVERING = "RECOVERING"
    STARTUP2 = "STARTUP2"
    UNKNOWN = "UNKNOWN"
    ARBITER = "ARBITER"
    DOWN = "DOWN"
    ROLLBACK = "ROLLBACK"
    REMOVED = "REMOVED"

    @property
    def code(self) -> int:
        return _STATE_CODES[self]


_STATE_CODES = {
    MemberState.STARTUP: 0,
    MemberState.PRIMARY: 1,
    MemberState.SECONDARY: 2,
    MemberState.RECOVERING: 3,
    MemberState.STARTUP2: 5,
    MemberState.UNKNOWN: 6,
    MemberState.ARBITER: 7,
    MemberState.DOWN: 8,
    MemberState.ROLLBACK: 9,
    MemberState.REMOVED: 10,
}

UNREACHABLE_STATE_CODE = 8
UNREACHABLE_STATE_STR = "(not reachable/healthy)"


class OpTime(BaseModel):
    """An oplog position: election term, then timestamp (seconds, increment)."""

    model_config = ConfigDict(frozen=True)

    term: int
    seconds: int
    increment: int

    def key(self) -> tuple[int, int, int]:
        # MongoDB orders optimes by term first, then by timestamp.
        return (self.term, self.seconds, self.increment)


NULL_OPTIME = OpTime(term=-1, seconds=0, increment=0)


class MemberConfig(BaseModel):
    """One entry of ``config.members``."""

    id: int
    host: str
    priority: float = 1.0
    votes: int = 1
    arbiter_only: bool = False
    hidden: bool = False

    @property
    def electable(self) -> bool:
        return self.priority > 0 and not self.arbiter_only and self.votes > 0

    @property
    def data_bearing(self) -> bool:
        return not self.arbiter_only

    @property
    def voter(self) -> bool:
        return self.votes > 0


class ReplSetSettings(BaseModel):
    chaining_allowed: bool = True
    heartbeat_interval_millis: int = 2000
    heartbeat_timeout_secs: int = 10
    election_timeout_millis: int = 10000
    replica_set_id: str = "0" * 24


class ReplSetConfig(BaseModel):
    """A replica-set configuration as one member holds it."""

    set_name: str
    version: int
    term: int
    members: list[MemberConfig]
    settings: ReplSetSettings = ReplSetSettings()

    def member_with_host(self, host: str) -> MemberConfig | None:
        return next((m for m in self.members if m.host == host), None)

    def member_with_id(self, member_id: int) -> MemberConfig | None:
        return next((m for m in self.members if m.id == member_id), None)

    def total_votes(self) -> int:
        return sum(m.votes for m in self.members)

    def majority_vote_count(self) -> int:
        return self.total_votes() // 2 + 1

    def data_bearing_voters(self) -> list[MemberConfig]:
        return [m for m in self.members if m.voter and m.data_bearing]

    def write_majority_count(self) -> int:
        # Arbiters vote but cannot acknowledge writes.
        return min(self.majority_vote_count(), len(self.data_bearing_voters()))

    def is_newer_than(self, other: ReplSetConfig) -> bool:
        # MongoDB 4.4+ compares (term, version); a config forced with term -1
        # is compared by version alone.
        if UNINITIALISED_TERM in (self.term, other.term) or self.term == other.term:
            return self.version > other.version
        return (self.term, self.version) > (other.term, other.version)

    def to_document(self) -> dict[str, object]:
        """The shape ``replSetGetConfig`` returns (without BSON-only types)."""
        return {
            "_id": self.set_name,
            "version": self.version,
            "term": self.term,
            "protocolVersion": 1,
            "writeConcernMajorityJournalDefault": True,
            "members": [_member_document(m) for m in self.members],
            "settings": {
                "chainingAllowed": self.settings.chaining_allowed,
                "heartbeatIntervalMillis": self.settings.heartbeat_interval_millis,
                "heartbeatTimeoutSecs": self.settings.heartbeat_timeout_secs,
                "electionTimeoutMillis": self.settings.election_timeout_millis,
                "catchUpTimeoutMillis": -1,
                "catchUpTakeoverDelayMillis": 30000,
                "getLastErrorModes": {},
                "getLastErrorDefaults": {"w": 1, "wtimeout": 0},
                "replicaSetId": self.settings.replica_set_id,
            },
        }


def _member_document(member: MemberConfig) -> dict[str, object]:
    return {
        "_id": member.id,
        "host": member.host,
        "arbiterOnly": member.arbiter_only,
        "buildIndexes": True,
        "hidden": member.hidden,
        "priority": float(member.priority),
        "tags": {},
        "secondaryDelaySecs": 0,
        "votes": member.votes,
    }


class OplogEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    optime: OpTime
    wall_seconds: float
    op: str  # "i" insert, "n" no-op (a new primary writes one)
    ns: str
    doc: Document


class MemberNode(BaseModel):
    """One mongod process and everything it remembers."""

    member_id: int
    host: str
    process: Process = Process.RUNNING
    state: MemberState = MemberState.STARTUP
    config: ReplSetConfig | None = None
    term: int = 0
    oplog: list[OplogEntry] = []
    rolled_back: list[OplogEntry] = []
    last_committed: OpTime = NULL_OPTIME
    lag_seconds: float = 0.0
    lag_ops: int = 0
    frozen_until: float = 0.0
    started_at: float = 0.0
    election_optime: OpTime | None = None
    process_id: str = "0" * 24
    topology_counter: int = 0
    topology_fingerprint: str = ""

    @property
    def last_optime(self) -> OpTime:
        return self.oplog[-1].optime if self.oplog else NULL_OPTIME

    @property
    def last_wall_seconds(self) -> float:
        return self.oplog[-1].wall_seconds if self.oplog else 0.0

    def own_entry(self) -> MemberConfig | None:
        return self.config.member_with_host(self.host) if self.config else None

    def documents(self, ns: str) -> list[Document]:
        return [e.doc for e in self.oplog if e.op == "i" and e.ns == ns]


class ReplicaSetState(BaseModel):
    """Everything the simulator persists between CLI invocations."""

    set_name: str
    members: list[MemberNode]
    partition: list[list[int]] = []
    last_timestamp: tuple[int, int] = (0, 0)


# --- views returned to the wire layer and to tests


@dataclass(frozen=True)
class WriteError:
    index: int
    code: int
    message: str


@dataclass(frozen=True)
class WriteConcernFailure:
    code: int
    code_name: str
    message: str
    acknowledged_by: int
    required: int


@dataclass(frozen=True)
class InsertOutcome:
    inserted: int
    optime: OpTime
    write_errors: list[WriteError] = field(default_factory=list)
    write_concern_error: WriteConcernFailure | None = None


@dataclass(frozen=True)
class HelloView:
    me: str
    is_writable_primary: bool
    secondary: bool
    arbiter_only: bool
    passive: bool
    hidden: bool
    set_name: str | None
    set_version: int | None
    hosts: list[str]
    passives: list[str]
    arbiters: list[str]
    primary: str | None
    term: int
    last_write: OpTime
    last_write_seconds: float
    majority_write: OpTime
    process_id: str
    topology_counter: int
    info: str | None


@dataclass(frozen=True)
class MemberStatusView:
    member_id: int
    name: str
    healthy: bool
    state_code: int
    state_str: str
    uptime: int
    optime: OpTime | None  # None for arbiters: they keep no oplog
    optime_seconds: float
    last_heartbeat_message: str
    config_version: int
    config_term: int
    is_self: bool
    sync_source_host: str
    sync_source_id: int
    election_optime: OpTime | None


@dataclass(frozen=True)
class StatusView:
    set_name: str
    now: float
    my_state: int
    term: int
    heartbeat_interval_millis: int
    majority_vote_count: int
    write_majority_count: int
    voting_members_count: int
    writable_voting_members_count: int
    last_committed: OpTime
    applied: OpTime
    applied_seconds: float
    sync_source_host: str
    sync_source_id: int
    members: list[MemberStatusView]


# --- config documents (the documented field names) <-> ReplSetConfig


def config_from_document(doc: Mapping[str, object], *, current: ReplSetConfig | None = None) -> ReplSetConfig:
    """Parse a ``replSetReconfig`` config document; raise InvalidReplicaSetConfig."""
    set_name = doc.get("_id")
    if not isinstance(set_name, str) or not set_name:
        raise InvalidReplicaSetConfig("config _id must be the replica set name (a string)")
    raw_members = doc.get("members")
    if not isinstance(raw_members, list) or not raw_members:
        raise InvalidReplicaSetConfig("config members must be a non-empty array")
    members = [_member_from_document(m) for m in raw_members]
    settings = _settings_from_document(doc.get("settings"), current)
    return ReplSetConfig(
        set_name=set_name,
        version=_int_field(doc, "version", 1),
        term=_int_field(doc, "term", UNINITIALISED_TERM),
        members=members,
        settings=settings,
    )


def _member_from_document(raw: object) -> MemberConfig:
    if not isinstance(raw, Mapping):
        raise InvalidReplicaSetConfig("each entry of members must be a document")
    host = raw.get("host")
    if not isinstance(host, str) or ":" not in host:
        raise InvalidReplicaSetConfig(f"member host must be 'host:port', got {host!r}")
    arbiter = bool(raw.get("arbiterOnly", False))
    return MemberConfig(
        id=_int_field(raw, "_id", -1),
        host=host,
        priority=_float_field(raw, "priority", 0.0 if arbiter else 1.0),
        votes=_int_field(raw, "votes", 1),
        arbiter_only=arbiter,
        hidden=bool(raw.get("hidden", False)),
    )


def _settings_from_document(raw: object, current: ReplSetConfig | None) -> ReplSetSettings:
    base = current.settings if current else ReplSetSettings()
    if not isinstance(raw, Mapping):
        return base
    replica_set_id = raw.get("replicaSetId", base.replica_set_id)
    return ReplSetSettings(
        chaining_allowed=bool(raw.get("chainingAllowed", base.chaining_allowed)),
        heartbeat_interval_millis=_int_field(raw, "heartbeatIntervalMillis", base.heartbeat_interval_millis),
        heartbeat_timeout_secs=_int_field(raw, "heartbeatTimeoutSecs", base.heartbeat_timeout_secs),
        election_timeout_millis=_int_field(raw, "electionTimeoutMillis", base.election_timeout_millis),
        # The wire layer hands an ObjectId here; its str() is the 24-hex form.
        replica_set_id=str(replica_set_id),
    )


def _int_field(doc: Mapping[str, object], key: str, default: int) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidReplicaSetConfig(f"field {key!r} must be a number, got {value!r}")
    if float(value) != int(value):
        raise InvalidReplicaSetConfig(f"field {key!r} must be a whole number, got {value!r}")
    return int(value)


def _float_field(doc: Mapping[str, object], key: str, default: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidReplicaSetConfig(f"field {key!r} must be a number, got {value!r}")
    return float(value)


def validate_config(config: ReplSetConfig) -> None:
    """The structural checks mongod applies to every new config."""
    ids = [m.id for m in config.members]
    hosts = [m.host for m in config.members]
    if len(set(ids)) != len(ids):
        raise InvalidReplicaSetConfig(f"member _id values must be unique, got {ids}")
    if len(set(hosts)) != len(hosts):
        raise InvalidReplicaSetConfig(f"member hosts must be unique, got {hosts}")
    if len(config.members) > MAX_MEMBERS:
        raise InvalidReplicaSetConfig(f"a replica set can have at most {MAX_MEMBERS} members")
    for member in config.members:
        _validate_member(member)
    if sum(1 for m in config.members if m.voter) > MAX_VOTING_MEMBERS:
        raise InvalidReplicaSetConfig(f"replica set configuration contains more than {MAX_VOTING_MEMBERS} voting members")
    if not any(m.electable for m in config.members):
        raise InvalidReplicaSetConfig("replica set configuration must contain at least one non-arbiter member with priority > 0")


def _validate_member(member: MemberConfig) -> None:
    if member.id < 0:
        raise InvalidReplicaSetConfig(f"member {member.host} needs a non-negative _id")
    if member.votes not in (0, 1):
        raise InvalidReplicaSetConfig(f"member {member.host}: votes must be 0 or 1")
    if not 0 <= member.priority <= 1000:
        raise InvalidReplicaSetConfig(f"member {member.host}: priority must be in [0, 1000]")
    if member.priority > 0 and member.votes == 0:
        raise InvalidReplicaSetConfig(f"member {member.host}: priority must be 0 when non-voting (votes:0)")
    if member.priority > 0 and member.hidden:
        raise InvalidReplicaSetConfig(f"member {member.host}: priority must be 0 when hidden=true")
    if member.priority > 0 and member.arbiter_only:
        raise InvalidReplicaSetConfig(f"member {member.host}: arbiters must have priority 0")


# --- the simulator


class SimulatedReplicaSet:
    """A replica set whose members, faults and elections are all in memory."""

    def __init__(
        self,
        state: ReplicaSetState,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self._clock: Clock = clock or time.time
        self._rng = rng or random.Random()

    # construction and persistence

    @classmethod
    def initiate(
        cls,
        set_name: str,
        members: Sequence[MemberConfig],
        *,
        settings: ReplSetSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> SimulatedReplicaSet:
        """A freshly initiated set (replSetInitiate), settled to its first primary."""
        sim = cls(ReplicaSetState(set_name=set_name, members=[]), clock=clock, rng=rng)
        config = ReplSetConfig(
            set_name=set_name,
            version=1,
            term=0,
            members=list(members),
            settings=settings or ReplSetSettings(replica_set_id=sim._random_hex24()),
        )
        validate_config(config)
        now = sim._now()
        for member in members:
            node = MemberNode(
                member_id=member.id,
                host=member.host,
                config=config.model_copy(deep=True),
                state=MemberState.ARBITER if member.arbiter_only else MemberState.SECONDARY,
                started_at=now,
                process_id=sim._random_hex24(),
            )
            sim.state.members.append(node)
        sim.settle()
        return sim

    def to_json(self) -> str:
        return self.state.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str, *, clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
        return cls(ReplicaSetState.model_validate_json(text), clock=clock, rng=rng)

    # lookups

    def node(self, member_id: int) -> MemberNode:
        for node in self.state.members:
            if node.member_id == member_id:
                return node
        raise UnknownMember(f"the simulated set has no member with _id {member_id}")

    def node_with_host(self, host: str) -> MemberNode | None:
        return next((n for n in self.state.members if n.host == host), None)

    def member_ids(self) -> list[int]:
        return [n.member_id for n in self.state.members]

    def primaries(self) -> list[int]:
        """Running members that believe they are primary (two means split brain)."""
        return [n.member_id for n in self.state.members if n.process is Process.RUNNING and n.state is MemberState.PRIMARY]

    def can_see(self, a: int | MemberNode, b: int | MemberNode) -> bool:
        """Whether heartbeats flow between a and b (both running, same side)."""
        left = a if isinstance(a, MemberNode) else self.node(a)
        right = b if isinstance(b, MemberNode) else self.node(b)
        if left.process is not Process.RUNNING or right.process is not Process.RUNNING:
            return False
        return self._side_of(left.member_id) == self._side_of(right.member_id)

    def _side_of(self, member_id: int) -> tuple[str, int]:
        if not self.state.partition:
            return ("all", 0)
        for index, group in enumerate(self.state.partition):
            if member_id in group:
                return ("group", index)
        # A member named in no group is cut off from everyone.
        return ("alone", member_id)

    # faults

    def kill(self, member_id: int) -> None:
        node = self.node(member_id)
        node.process = Process.KILLED
        # The process is gone, and with it any belief of being primary; a hung
        # member, by contrast, keeps its frozen state until it wakes.
        node.state = MemberState.DOWN

    def hang(self, member_id: int) -> None:
        self.node(member_id).process = Process.HUNG

    def revive(self, member_id: int) -> None:
        """Restart a killed member, or let a hung one carry on where it froze."""
        node = self.node(member_id)
        if node.process is Process.KILLED:
            self._restart(node)
        node.process = Process.RUNNING

    def _restart(self, node: MemberNode) -> None:
        node.started_at = self._now()
        node.process_id = self._random_hex24()
        node.topology_counter = 0
        node.topology_fingerprint = ""
        node.frozen_until = 0.0
        node.election_optime = None
        node.state = self._state_after_config_change(node)

    def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Split the network: each group sees only itself; unlisted members see nobody."""
        normalised = [sorted(set(group)) for group in groups]
        seen: set[int] = set()
        for group in normalised:
            for member_id in group:
                self.node(member_id)
                if member_id in seen:
                    raise ValueError(f"member {member_id} is in two partition groups")
                seen.add(member_id)
        self.state.partition = normalised

    def heal(self) -> None:
        self.state.partition = []

    def lag(self, member_id: int, seconds: float = 0.0, ops: int = 0) -> None:
        """Hold a member back: it applies only entries older than `seconds`
        and stays `ops` entries behind its sync source. lag(m) clears it."""
        node = self.node(member_id)
        node.lag_seconds = max(0.0, seconds)
        node.lag_ops = max(0, ops)

    def wipe(self, member_id: int) -> None:
        """Empty a stopped member's dbPath: no data, no config (keeps rollback/ aside)."""
        node = self.node(member_id)
        if node.process is not Process.KILLED:
            raise ValueError(f"member {member_id} must be killed before its data is wiped")
        node.oplog = []
        node.config = None
        node.term = 0
        node.last_committed = NULL_OPTIME
        node.state = MemberState.STARTUP

    def rehost(self, member_id: int, host: str) -> None:
        """Move a member to a new address, in every config copy that names it."""
        node = self.node(member_id)
        old = node.host
        node.host = host
        for holder in self.state.members:
            if holder.config is None:
                continue
            for member in holder.config.members:
                if member.host == old:
                    member.host = host

    # elections and heartbeats

    def tick(self) -> None:
        """One round of heartbeats, replication and elections."""
        self._exchange_heartbeats()
        self._finish_initial_syncs()
        self._replicate_all()
        self._step_down_lonely_primaries()
        self._step_down_outranked_primaries()
        self._run_elections()
        self._replicate_all()
        self._advance_commit_points()
        self._bump_topology_versions()

    def settle(self, max_rounds: int = 25) -> int:
        """Tick until nothing changes; return the number of rounds."""
        for round_number in range(1, max_rounds + 1):
            before = self._fingerprint()
            self.tick()
            if self._fingerprint() == before:
                return round_number
        return max_rounds

    def _fingerprint(self) -> tuple[object, ...]:
        return tuple(
            (
                n.process,
                n.state,
                n.term,
                n.config.version if n.config else None,
                n.config.term if n.config else None,
                len(n.oplog),
                n.last_optime.key(),
                len(n.rolled_back),
                n.last_committed.key(),
            )
            for n in self.state.members
        )

    def _running(self) -> list[MemberNode]:
        return [n for n in self.state.members if n.process is Process.RUNNING]

    def _peers_in_config(self, node: MemberNode) -> list[MemberNode]:
        """Running members that node can see and that its config names."""
        if node.config is None:
            return []
        peers = []
        for member in node.config.members:
            peer = self.node_with_host(member.host)
            if peer is not None and peer is not node and self.can_see(node, peer):
                peers.append(peer)
        return peers

    def _exchange_heartbeats(self) -> None:
        for node in self._running():
            self._adopt_newer_config(node)
        for node in self._running():
            for peer in self._peers_in_config(node):
                if _config_set_name(peer) == _config_set_name(node):
                    self._learn_term(node, peer.term)

    def _learn_term(self, node: MemberNode, term: int) -> None:
        # Heartbeats carry the term. A primary that hears of a higher term
        # knows someone else has been elected since, and steps down at once.
        if term > node.term:
            if node.state is MemberState.PRIMARY:
                node.state = MemberState.SECONDARY
            node.term = term

    def _adopt_newer_config(self, node: MemberNode) -> None:
        newest: ReplSetConfig | None = None
        for peer in self._running():
            if peer is node or peer.config is None or not self.can_see(node, peer):
                continue
            if not self._heartbeats_between(node, peer):
                continue
            candidate = peer.config
            if candidate.set_name != self.state.set_name:
                continue
            if node.config is not None and not candidate.is_newer_than(node.config):
                continue
            if newest is None or candidate.is_newer_than(newest):
                newest = candidate
        if newest is not None:
            self._install_config(node, newest.model_copy(deep=True))

    def _heartbeats_between(self, node: MemberNode, peer: MemberNode) -> bool:
        # A member heartbeats the members of its own config; a newer config
        # travels along either direction of that exchange.
        peer_knows_node = peer.config is not None and peer.config.member_with_host(node.host)
        node_knows_peer = node.config is not None and node.config.member_with_host(peer.host)
        return bool(peer_knows_node or node_knows_peer)

    def _install_config(self, node: MemberNode, config: ReplSetConfig) -> None:
        node.config = config
        node.state = self._state_after_config_change(node)

    def _state_after_config_change(self, node: MemberNode) -> MemberState:
        if node.config is None:
            return MemberState.STARTUP
        entry = node.own_entry()
        if entry is None:
            return MemberState.REMOVED
        if entry.arbiter_only:
            return MemberState.ARBITER
        if node.state is MemberState.PRIMARY and node.process is Process.RUNNING:
            return MemberState.PRIMARY
        if not node.oplog:
            # An empty member (new or wiped) must copy everything first.
            return MemberState.STARTUP2
        return MemberState.SECONDARY

    def _finish_initial_syncs(self) -> None:
        for node in self._running():
            if node.state is not MemberState.STARTUP2:
                continue
            source = self._initial_sync_source(node)
            if source is not None:
                node.oplog = list(source.oplog)
                node.term = max(node.term, source.term)
                node.last_committed = source.last_committed
                node.state = MemberState.SECONDARY

    def _initial_sync_source(self, node: MemberNode) -> MemberNode | None:
        candidates = [p for p in self._peers_in_config(node) if p.state in (MemberState.PRIMARY, MemberState.SECONDARY)]
        primaries = [p for p in candidates if p.state is MemberState.PRIMARY]
        pool = primaries or candidates
        return max(pool, key=lambda p: p.last_optime.key()) if pool else None

    def sync_source(self, node: MemberNode) -> MemberNode | None:
        """Where a secondary pulls the oplog from (primary first; chaining if allowed)."""
        if node.config is None or node.state is not MemberState.SECONDARY:
            return None
        peers = [p for p in self._peers_in_config(node) if self._is_data_bearing(p)]
        primaries = [p for p in peers if p.state is MemberState.PRIMARY]
        if primaries:
            return max(primaries, key=lambda p: p.term)
        if not node.config.settings.chaining_allowed:
            # With chaining disabled a secondary syncs only from the primary:
            # without one, survivors stay at whatever optime they reached.
            return None
        ahead = [p for p in peers if p.state is MemberState.SECONDARY and p.last_optime.key() > node.last_optime.key()]
        return max(ahead, key=lambda p: p.last_optime.key()) if ahead else None

    def _is_data_bearing(self, node: MemberNode) -> bool:
        entry = node.own_entry()
        return entry is not None and entry.data_bearing

    def _replicate_all(self) -> None:
        # Two passes so that a chained secondary sees what its source just got.
        for _ in range(2):
            for node in self._running():
                source = self.sync_source(node)
                if source is not None:
                    self._pull_oplog(node, source)

    def _pull_oplog(self, node: MemberNode, source: MemberNode) -> None:
        common = _common_prefix_length(node.oplog, source.oplog)
        if common < len(node.oplog):
            source_is_authority = source.state is MemberState.PRIMARY
            if not source_is_authority and source.last_optime.key() <= node.last_optime.key():
                return
            # This member wrote entries its sync source never saw (it was a
            # primary on the losing side). MongoDB rolls them back and keeps
            # them in the rollback/ directory for the operator to inspect.
            node.rolled_back.extend(node.oplog[common:])
            del node.oplog[common:]
        limit = self._replication_limit(node, source)
        if limit > len(node.oplog):
            node.oplog.extend(source.oplog[len(node.oplog) : limit])
        node.term = max(node.term, source.term)
        if source.last_committed.key() > node.last_committed.key():
            node.last_committed = min(source.last_committed, node.last_optime, key=lambda o: o.key())

    def _replication_limit(self, node: MemberNode, source: MemberNode) -> int:
        limit = len(source.oplog) - node.lag_ops
        if node.lag_seconds > 0:
            horizon = self._now() - node.lag_seconds
            while limit > len(node.oplog) and source.oplog[limit - 1].wall_seconds > horizon:
                limit -= 1
        return limit

    def _step_down_lonely_primaries(self) -> None:
        for node in self._running():
            if node.state is MemberState.PRIMARY and not self._sees_voting_majority(node):
                # A primary that cannot reach a majority of its voters steps down.
                node.state = MemberState.SECONDARY

    def _sees_voting_majority(self, node: MemberNode) -> bool:
        if node.config is None:
            return False
        visible = {node.host} | {p.host for p in self._peers_in_config(node)}
        votes = sum(m.votes for m in node.config.members if m.host in visible)
        return votes >= node.config.majority_vote_count()

    def _step_down_outranked_primaries(self) -> None:
        for node in self._running():
            if node.state is not MemberState.PRIMARY:
                continue
            for peer in self._peers_in_config(node):
                if peer.state is MemberState.PRIMARY and peer.term > node.term:
                    node.state = MemberState.SECONDARY
                    break

    def _run_elections(self) -> None:
        for _ in range(len(self.state.members)):
            winner = self._election_winner()
            if winner is None:
                return
            self._become_primary(*winner)

    def _election_winner(self) -> tuple[MemberNode, list[MemberNode]] | None:
        best: tuple[MemberNode, list[MemberNode]] | None = None
        for candidate in self._running():
            if not self._may_stand(candidate):
                continue
            voters = self._votes_for(candidate)
            if voters is None:
                continue
            if best is None or _election_rank(candidate) > _election_rank(best[0]):
                best = (candidate, voters)
        return best

    def _may_stand(self, node: MemberNode) -> bool:
        entry = node.own_entry()
        if entry is None or not entry.electable or node.state is not MemberState.SECONDARY:
            return False
        if node.frozen_until > self._now():
            return False
        return not any(p.state is MemberState.PRIMARY for p in self._peers_in_config(node))

    def _votes_for(self, candidate: MemberNode) -> list[MemberNode] | None:
        """The members granting their vote, if they add up to a majority."""
        config = candidate.config
        assert config is not None
        granted = [candidate] + [p for p in self._peers_in_config(candidate) if self._grants_vote(p, candidate)]
        votes = 0
        for voter in granted:
            entry = config.member_with_host(voter.host)
            votes += entry.votes if entry else 0
        return granted if votes >= config.majority_vote_count() else None

    def _grants_vote(self, voter: MemberNode, candidate: MemberNode) -> bool:
        assert candidate.config is not None
        if voter.config is None or voter.config.set_name != candidate.config.set_name:
            return False
        if voter.config.is_newer_than(candidate.config):
            return False
        if voter.state is MemberState.PRIMARY:
            return False
        if voter.state is not MemberState.ARBITER:
            # A voter never elects a candidate whose oplog is behind its own.
            return voter.last_optime.key() <= candidate.last_optime.key()
        return True

    def _become_primary(self, node: MemberNode, voters: list[MemberNode]) -> None:
        assert node.config is not None
        new_term = max(v.term for v in voters) + 1
        for voter in voters:
            voter.term = new_term
        node.state = MemberState.PRIMARY
        node.frozen_until = 0.0
        # Since 4.4 a new primary stamps its term into the config.
        node.config = node.config.model_copy(update={"term": new_term})
        node.election_optime = self._append(node, "n", "", {"msg": "new primary"})

    def _advance_commit_points(self) -> None:
        for node in self._running():
            if node.state is MemberState.PRIMARY:
                point = self._majority_optime(node)
                if point.key() > node.last_committed.key():
                    node.last_committed = point

    def _majority_optime(self, primary: MemberNode) -> OpTime:
        assert primary.config is not None
        acked = [primary.last_optime] + [
            p.last_optime for p in self._peers_in_config(primary) if self._counts_for_majority(primary.config, p)
        ]
        acked.sort(key=lambda o: o.key(), reverse=True)
        needed = primary.config.write_majority_count()
        return acked[needed - 1] if len(acked) >= needed else NULL_OPTIME

    def _counts_for_majority(self, config: ReplSetConfig, node: MemberNode) -> bool:
        entry = config.member_with_host(node.host)
        return entry is not None and entry.voter and entry.data_bearing

    def _bump_topology_versions(self) -> None:
        for node in self._running():
            fingerprint = "|".join(
                str(part)
                for part in (
                    node.state.value,
                    node.config.version if node.config else "-",
                    node.config.term if node.config else "-",
                    self._known_primary(node) or "-",
                )
            )
            if fingerprint != node.topology_fingerprint:
                node.topology_fingerprint = fingerprint
                node.topology_counter += 1

    def _known_primary(self, node: MemberNode) -> str | None:
        if node.state is MemberState.PRIMARY:
            return node.host
        primaries = [p for p in self._peers_in_config(node) if p.state is MemberState.PRIMARY]
        return max(primaries, key=lambda p: p.term).host if primaries else None

    # writes and reads

    def insert(self, member_id: int, collection: str, doc: Document, w: WriteConcernW = None) -> InsertOutcome:
        return self.insert_many(member_id, collection, [doc], w=w)

    def insert_many(
        self,
        member_id: int,
        collection: str,
        docs: Sequence[Document],
        *,
        w: WriteConcernW = None,
        ordered: bool = True,
    ) -> InsertOutcome:
        """Insert on the primary, replicate, then judge the write concern."""
        node = self._answering_node(member_id)
        if node.state is not MemberState.PRIMARY:
            raise NotWritablePrimary("not primary")
        taken = {_id_key(d) for d in node.documents(collection)}
        errors: list[WriteError] = []
        inserted = 0
        for index, doc in enumerate(docs):
            stored: Document = doc if "_id" in doc else {"_id": {"$oid": self._random_hex24()}, **doc}
            key = _id_key(stored)
            if key in taken:
                errors.append(_duplicate_key_error(index, collection, stored))
                if ordered:
                    break
                continue
            self._append(node, "i", collection, stored)
            taken.add(key)
            inserted += 1
        self._replicate_all()
        self._advance_commit_points()
        concern = self._judge_write_concern(node, w) if inserted else None
        return InsertOutcome(inserted, node.last_optime, errors, concern)

    def default_write_concern(self, member_id: int) -> int | str:
        """MongoDB 5.0+ implicit default: majority, but w:1 when arbiters
        would make a majority unreachable with one data-bearing voter down."""
        config = self.get_config(member_id)
        arbiters = sum(1 for m in config.members if m.arbiter_only and m.voter)
        if arbiters and len(config.data_bearing_voters()) <= config.majority_vote_count():
            return 1
        return "majority"

    def _judge_write_concern(self, primary: MemberNode, w: WriteConcernW) -> WriteConcernFailure | None:
        assert primary.config is not None
        wanted = self.default_write_concern(primary.member_id) if w is None else w
        target = primary.last_optime
        holders = [primary] + [p for p in self._peers_in_config(primary) if _has_optime(p, target)]
        if wanted == "majority":
            required = primary.config.write_majority_count()
            acked = sum(1 for h in holders if self._counts_for_majority(primary.config, h))
        elif isinstance(wanted, int):
            required = wanted
            acked = sum(1 for h in holders if self._is_data_bearing(h))
        else:
            raise UnknownReplWriteConcern(f"unrecognized write concern mode: {wanted}")
        if acked >= required:
            return None
        # A real mongod would wait (forever without wtimeout); the simulator has
        # no background replication, so the outcome is already decided.
        return WriteConcernFailure(
            code=64,
            code_name="WriteConcernFailed",
            message=(
                f"waiting for replication timed out: {acked} of the {required} "
                f"members needed for w:{wanted} acknowledged the write"
            ),
            acknowledged_by=acked,
            required=required,
        )

    def find(
        self,
        member_id: int,
        collection: str,
        filter: Mapping[str, JsonValue] | None = None,
        *,
        secondary_ok: bool = True,
    ) -> list[Document]:
        """Documents whose top-level fields equal every field of `filter`."""
        node = self._answering_node(member_id)
        self._check_readable(node, secondary_ok)
        wanted = dict(filter or {})
        for key, value in wanted.items():
            if key.startswith("$") or (isinstance(value, dict) and _is_operator_doc(value)):
                raise BadValue(f"the simulator supports only equality filters, got {key!r}")
        return [d for d in node.documents(collection) if _matches(d, wanted)]

    def count(
        self,
        member_id: int,
        collection: str,
        filter: Mapping[str, JsonValue] | None = None,
        *,
        secondary_ok: bool = True,
    ) -> int:
        return len(self.find(member_id, collection, filter, secondary_ok=secondary_ok))

    def _check_readable(self, node: MemberNode, secondary_ok: bool) -> None:
        if node.state is MemberState.PRIMARY:
            return
        if node.state is MemberState.SECONDARY:
            if not secondary_ok:
                raise NotPrimaryNoSecondaryOk("not primary and secondaryOk=false")
            return
        raise NotPrimaryOrSecondary(f"node is not in primary or recovering state (state: {node.state.value})")

    # admin commands

    def get_config(self, member_id: int) -> ReplSetConfig:
        node = self._answering_node(member_id)
        if node.config is None:
            raise NotYetInitialized("no replset config has been received")
        return node.config

    def reconfig(
        self,
        member_id: int,
        new_config: ReplSetConfig | Mapping[str, object],
        *,
        force: bool = False,
    ) -> ReplSetConfig:
        """replSetReconfig; returns the config the member installed."""
        node = self._answering_node(member_id)
        if node.config is None:
            raise NotYetInitialized("no replset config has been received")
        current = node.config
        config = (
            new_config.model_copy(deep=True)
            if isinstance(new_config, ReplSetConfig)
            else config_from_document(new_config, current=current)
        )
        if config.set_name != current.set_name:
            raise NewReplicaSetConfigurationIncompatible(
                f"New and old configurations differ in replica set name; old was {current.set_name}, and new is {config.set_name}"
            )
        validate_config(config)
        if config.member_with_host(node.host) is None:
            raise NodeNotFound(
                f"No host described in new configuration with {{version: {config.version}}} "
                f"for replica set {config.set_name} maps to this node ({node.host})"
            )
        installed = self._forced(node, config) if force else self._agreed(node, config)
        self._install_config(node, installed)
        return installed

    def _forced(self, node: MemberNode, config: ReplSetConfig) -> ReplSetConfig:
        assert node.config is not None
        base = max(node.config.version, config.version)
        jump = FORCE_VERSION_MIN_INCREMENT + self._rng.randrange(FORCE_VERSION_RANDOM_SPAN)
        return config.model_copy(update={"version": base + jump, "term": UNINITIALISED_TERM})

    def _agreed(self, node: MemberNode, config: ReplSetConfig) -> ReplSetConfig:
        current = node.config
        assert current is not None
        if node.state is not MemberState.PRIMARY:
            raise NotWritablePrimary(
                "New config is rejected :: caused by :: replSetReconfig should only be run "
                f"on a writable PRIMARY. Current state {node.state.value};"
            )
        if config.version <= current.version:
            raise NewReplicaSetConfigurationIncompatible(
                f"New replica set configuration version must be greater than old, but "
                f"{config.version} is not greater than {current.version} for replica set "
                f"{config.set_name}"
            )
        _check_member_ids_stable(current, config)
        _check_one_voter_change(current, config)
        self._check_quorum(node, config)
        return config.model_copy(update={"term": node.term})

    def _check_quorum(self, node: MemberNode, config: ReplSetConfig) -> None:
        votes = 0
        for member in config.members:
            peer = self.node_with_host(member.host)
            if peer is node or (peer is not None and self.can_see(node, peer)):
                votes += member.votes
        if votes < config.majority_vote_count():
            raise NodeNotFound(
                "Quorum check failed because not enough voting nodes responded; required "
                f"{config.majority_vote_count()} but only {votes} responded"
            )

    def freeze(self, member_id: int, seconds: float) -> None:
        """replSetFreeze: do not stand for election for `seconds` (0 unfreezes)."""
        node = self._answering_node(member_id)
        if node.state is MemberState.PRIMARY:
            raise NotSecondary("cannot freeze node when primary or running for election. state: Primary")
        node.frozen_until = self._now() + seconds if seconds > 0 else 0.0

    def step_down(self, member_id: int, seconds: float = 60.0, *, force: bool = False) -> None:
        """replSetStepDown: stop being primary and stay out of elections for `seconds`."""
        node = self._answering_node(member_id)
        if node.state is not MemberState.PRIMARY:
            raise NotWritablePrimary("not primary so can't step down")
        self._replicate_all()
        caught_up = [
            p
            for p in self._peers_in_config(node)
            if p.state is MemberState.SECONDARY
            and (entry := p.own_entry()) is not None
            and entry.electable
            and p.last_optime.key() >= node.last_optime.key()
        ]
        if not caught_up and not force:
            raise ExceededTimeLimit("No electable secondaries caught up as of stepdown deadline")
        node.state = MemberState.SECONDARY
        node.frozen_until = self._now() + seconds

    # views

    def hello(self, member_id: int) -> HelloView:
        node = self._answering_node(member_id)
        config = node.config
        entry = node.own_entry()
        if config is None or entry is None:
            return self._hello_without_config(node)
        visible = [m for m in config.members if not m.hidden]
        return HelloView(
            me=node.host,
            is_writable_primary=node.state is MemberState.PRIMARY,
            secondary=node.state is MemberState.SECONDARY,
            arbiter_only=entry.arbiter_only,
            passive=entry.priority == 0 and not entry.arbiter_only,
            hidden=entry.hidden,
            set_name=config.set_name,
            set_version=config.version,
            hosts=[m.host for m in visible if not m.arbiter_only and m.priority > 0],
            passives=[m.host for m in visible if not m.arbiter_only and m.priority == 0],
            arbiters=[m.host for m in visible if m.arbiter_only],
            primary=self._known_primary(node),
            term=node.term,
            last_write=node.last_optime,
            last_write_seconds=node.last_wall_seconds,
            majority_write=node.last_committed,
            process_id=node.process_id,
            topology_counter=node.topology_counter,
            info=None,
        )

    def _hello_without_config(self, node: MemberNode) -> HelloView:
        return HelloView(
            me=node.host,
            is_writable_primary=False,
            secondary=False,
            arbiter_only=False,
            passive=False,
            hidden=False,
            set_name=None,
            set_version=None,
            hosts=[],
            passives=[],
            arbiters=[],
            primary=None,
            term=node.term,
            last_write=node.last_optime,
            last_write_seconds=node.last_wall_seconds,
            majority_write=node.last_committed,
            process_id=node.process_id,
            topology_counter=node.topology_counter,
            info="Does not have a valid replica set config",
        )

    def status(self, member_id: int) -> StatusView:
        """replSetGetStatus, from this member's point of view."""
        node = self._answering_node(member_id)
        config = node.config
        if config is None:
            raise NotYetInitialized("no replset config has been received")
        if node.own_entry() is None:
            raise InvalidReplicaSetConfig("Our replica set config is invalid or we are not a member of it")
        source = self.sync_source(node)
        return StatusView(
            set_name=config.set_name,
            now=self._now(),
            my_state=node.state.code,
            term=node.term,
            heartbeat_interval_millis=config.settings.heartbeat_interval_millis,
            majority_vote_count=config.majority_vote_count(),
            write_majority_count=config.write_majority_count(),
            voting_members_count=sum(1 for m in config.members if m.voter),
            writable_voting_members_count=len(config.data_bearing_voters()),
            last_committed=node.last_committed,
            applied=node.last_optime,
            applied_seconds=node.last_wall_seconds,
            sync_source_host=source.host if source else "",
            sync_source_id=self._member_id_in(config, source),
            members=[self._member_status(node, m) for m in config.members],
        )

    def _member_id_in(self, config: ReplSetConfig, node: MemberNode | None) -> int:
        entry = config.member_with_host(node.host) if node else None
        return entry.id if entry else -1

    def _member_status(self, viewer: MemberNode, member: MemberConfig) -> MemberStatusView:
        assert viewer.config is not None
        subject = self.node_with_host(member.host)
        is_self = subject is viewer
        if subject is None or not (is_self or self.can_see(viewer, subject)):
            return self._unreachable_status(viewer, member, subject)
        source = self.sync_source(subject)
        return MemberStatusView(
            member_id=member.id,
            name=member.host,
            healthy=True,
            state_code=subject.state.code,
            state_str=subject.state.value,
            uptime=int(self._now() - subject.started_at),
            optime=None if member.arbiter_only else subject.last_optime,
            optime_seconds=subject.last_wall_seconds,
            last_heartbeat_message="",
            config_version=subject.config.version if subject.config else -1,
            config_term=subject.config.term if subject.config else -1,
            is_self=is_self,
            sync_source_host=source.host if source else "",
            sync_source_id=self._member_id_in(viewer.config, source),
            election_optime=subject.election_optime if subject.state is MemberState.PRIMARY else None,
        )

    def _unreachable_status(self, viewer: MemberNode, member: MemberConfig, subject: MemberNode | None) -> MemberStatusView:
        return MemberStatusView(
            member_id=member.id,
            name=member.host,
            healthy=False,
            state_code=UNREACHABLE_STATE_CODE,
            state_str=UNREACHABLE_STATE_STR,
            uptime=0,
            optime=None if member.arbiter_only else NULL_OPTIME,
            optime_seconds=0.0,
            last_heartbeat_message=self._why_unreachable(member.host, subject),
            config_version=-1,
            config_term=-1,
            is_self=False,
            sync_source_host="",
            sync_source_id=-1,
            election_optime=None,
        )

    def _why_unreachable(self, host: str, subject: MemberNode | None) -> str:
        if subject is None:
            return f"Error connecting to {host} :: caused by :: Could not find address for {host}"
        if subject.process is Process.KILLED:
            return f"Error connecting to {host} :: caused by :: Connection refused"
        if subject.process is Process.HUNG:
            return f"Couldn't get a connection within the time limit of 10000ms to {host}"
        return f"Error connecting to {host} :: caused by :: No route to host"

    # helpers

    def _answering_node(self, member_id: int) -> MemberNode:
        node = self.node(member_id)
        if node.process is not Process.RUNNING:
            raise MemberUnavailable(f"member {member_id} ({node.host}) is {node.process.value}: nothing answers there")
        return node

    def _now(self) -> float:
        return self._clock()

    def _next_timestamp(self) -> tuple[int, int]:
        seconds = int(self._now())
        last_seconds, last_increment = self.state.last_timestamp
        if seconds > last_seconds:
            stamp = (seconds, 1)
        else:
            stamp = (last_seconds, last_increment + 1)
        self.state.last_timestamp = stamp
        return stamp

    def _append(self, node: MemberNode, op: str, ns: str, doc: Document) -> OpTime:
        seconds, increment = self._next_timestamp()
        optime = OpTime(term=node.term, seconds=seconds, increment=increment)
        node.oplog.append(OplogEntry(optime=optime, wall_seconds=self._now(), op=op, ns=ns, doc=doc))
        return optime

    def _random_hex24(self) -> str:
        return f"{self._rng.getrandbits(96):024x}"


def _config_set_name(node: MemberNode) -> str | None:
    return node.config.set_name if node.config else None


def _election_rank(node: MemberNode) -> tuple[float, tuple[int, int, int], int]:
    entry = node.own_entry()
    priority = entry.priority if entry else 0.0
    # Higher priority, then fresher oplog; ties go to the lowest _id.
    return (priority, node.last_optime.key(), -node.member_id)


def _common_prefix_length(mine: Sequence[OplogEntry], theirs: Sequence[OplogEntry]) -> int:
    length = 0
    for left, right in zip(mine, theirs, strict=False):
        if left.optime != right.optime:
            break
        length += 1
    return length


def _has_optime(node: MemberNode, optime: OpTime) -> bool:
    for entry in reversed(node.oplog):
        if entry.optime == optime:
            return True
        if entry.optime.key() < optime.key():
            return False
    return False


def _id_key(doc: Mapping[str, JsonValue]) -> str:
    return json.dumps(doc.get("_id"), sort_keys=True)


def _duplicate_key_error(index: int, collection: str, doc: Document) -> WriteError:
    return WriteError(
        index=index,
        code=11000,
        message=(
            f"E11000 duplicate key error collection: {collection} index: _id_ dup key: {{ _id: {json.dumps(doc.get('_id'))} }}"
        ),
    )


def _is_operator_doc(value: Mapping[str, JsonValue]) -> bool:
    return any(key.startswith("$") for key in value) and not _is_extended_json(value)


def _is_extended_json(value: Mapping[str, JsonValue]) -> bool:
    # {"$oid": ...}, {"$date": ...} and friends are values, not query operators.
    return len(value) == 1 and next(iter(value)) in {
        "$oid",
        "$date",
        "$numberLong",
        "$numberDecimal",
        "$numberInt",
        "$numberDouble",
        "$binary",
        "$uuid",
        "$timestamp",
    }


def _matches(doc: Mapping[str, JsonValue], wanted: Mapping[str, JsonValue]) -> bool:
    return all(key in doc and doc[key] == value for key, value in wanted.items())


def _check_member_ids_stable(current: ReplSetConfig, new: ReplSetConfig) -> None:
    for member in new.members:
        old = current.member_with_host(member.host)
        if old is not None and old.id != member.id:
            raise NewReplicaSetConfigurationIncompatible(
                f"New and old configurations both have members with host of {member.host} "
                f"but in the new configuration the _id field is {member.id} and in the old "
                f"configuration it is {old.id} for replica set {new.set_name}"
            )


def _check_one_voter_change(current: ReplSetConfig, new: ReplSetConfig) -> None:
    old_voters = {m.host for m in current.members if m.voter}
    new_voters = {m.host for m in new.members if m.voter}
    if len(old_voters ^ new_voters) > 1:
        raise NewReplicaSetConfigurationIncompatible(
            "Non force replica set reconfig can only add or remove at most 1 voting member."
        )


# --- named scenarios

ScenarioFactory = Callable[[Clock | None, random.Random | None], SimulatedReplicaSet]


def _members(count: int) -> list[MemberConfig]:
    return [MemberConfig(id=i, host=f"mongo{i}.sim:27017") for i in range(count)]


def _seed_orders(sim: SimulatedReplicaSet, first: int, count: int) -> None:
    primary = sim.primaries()[0]
    for number in range(first, first + count):
        sim.insert(primary, "shop.orders", {"_id": number, "item": f"order-{number}"}, w=1)
    sim.settle()


def healthy_3(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Three members, _id 0 primary, everything replicated."""
    sim = SimulatedReplicaSet.initiate("rs0", _members(3), clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    return sim


def healthy_5(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Five members, _id 0 primary, everything replicated: the starting point of drills."""
    sim = SimulatedReplicaSet.initiate("rs0", _members(5), clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    return sim


def majority_lost_5(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Five members; the primary (_id 2) and _id 3, 4 are killed.

    Survivors _id 0 and _id 1 are both SECONDARY with no primary possible.
    _id 1 holds orders 1-6; _id 0 lost its link to the primary before the
    outage and holds only orders 1-3, so the freshest survivor is not the
    lowest _id. chainingAllowed is false, so _id 0 cannot catch up from _id 1
    while there is no primary.
    """
    members = _members(5)
    members[2] = members[2].model_copy(update={"priority": 2.0})
    rng = rng or random.Random()
    settings = ReplSetSettings(chaining_allowed=False, replica_set_id=f"{rng.getrandbits(96):024x}")
    sim = SimulatedReplicaSet.initiate("rs0", members, settings=settings, clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    sim.partition([[1, 2, 3, 4]])
    sim.settle()
    _seed_orders(sim, 4, 3)
    for member_id in (2, 3, 4):
        sim.kill(member_id)
    sim.heal()
    sim.settle()
    return sim


def partition_primary_alive(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Five members split [0, 1, 2] | [3, 4]; _id 0 is still PRIMARY.

    Seen from _id 3 or _id 4 the majority looks lost (0, 1, 2 unreachable),
    but a client that reaches every member sees exactly one PRIMARY, _id 0,
    which keeps taking majority writes. Forcing a config on 3 or 4 here would
    create a second primary.
    """
    sim = SimulatedReplicaSet.initiate("rs0", _members(5), clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    sim.partition([[0, 1, 2], [3, 4]])
    sim.settle()
    for number in (4, 5):
        sim.insert(0, "shop.orders", {"_id": number, "item": f"order-{number}"}, w="majority")
    sim.settle()
    return sim


def hung_member(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Three members; the former primary _id 0 is hung (accepts TCP, never
    answers) and still believes it is primary; _id 1 was elected in its place."""
    sim = SimulatedReplicaSet.initiate("rs0", _members(3), clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    sim.hang(0)
    sim.settle()
    return sim


def arbiter_and_priority0(clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    """Five members: 0, 1, 4 electable; 2 priority 0; 3 arbiter.

    0, 1 and 4 are killed. The survivors are the priority-0 member _id 2
    (holding every write) and the arbiter _id 3: no survivor can be elected
    until a forced config gives _id 2 a priority above 0.
    """
    members = _members(5)
    members[2] = members[2].model_copy(update={"priority": 0.0})
    members[3] = members[3].model_copy(update={"priority": 0.0, "arbiter_only": True})
    sim = SimulatedReplicaSet.initiate("rs0", members, clock=clock, rng=rng)
    _seed_orders(sim, 1, 3)
    for member_id in (0, 1, 4):
        sim.kill(member_id)
    sim.settle()
    return sim


SCENARIOS: dict[str, ScenarioFactory] = {
    "healthy-3": healthy_3,
    "healthy-5": healthy_5,
    "majority-lost-5": majority_lost_5,
    "partition-primary-alive": partition_primary_alive,
    "hung-member": hung_member,
    "arbiter-and-priority0": arbiter_and_priority0,
}


def build_scenario(name: str, *, clock: Clock | None = None, rng: random.Random | None = None) -> SimulatedReplicaSet:
    try:
        factory = SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise UnknownScenario(f"no MongoDB scenario named {name!r}; known: {known}") from None
    return factory(clock, rng)

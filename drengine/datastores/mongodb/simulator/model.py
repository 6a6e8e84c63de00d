"""A simulated replica set's state: the errors mongod answers with (its codes and names),
member processes and states, optimes, configs, oplogs and members, as pydantic models
that the state file stores."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, JsonValue

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

# Initial sync copies the data at this rate (the simulator's choice: real rates depend on
# disks and network; what matters is that a large data set takes minutes to hours).
INITIAL_SYNC_BYTES_PER_SECOND = 50 * 1024 * 1024
# An election timeout is randomized by up to this fraction of electionTimeoutMillis so that
# two candidates rarely stand at once (mongod's electionTimeoutOffsetLimitFraction, 0.15).
ELECTION_TIMEOUT_OFFSET_FRACTION = 0.15
# replSetStepDown waits this long for an electable secondary to catch up (its
# secondaryCatchUpPeriodSecs, 10 s by default).
STEP_DOWN_CATCH_UP_SECONDS = 10.0


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


class MaxTimeMSExpired(ReplicaSetError):
    code = 50
    code_name = "MaxTimeMSExpired"


class ConfigurationInProgress(ReplicaSetError):
    """Another reconfig is still being installed on this node (repl_set_commands.cpp)."""

    code = 109
    code_name = "ConfigurationInProgress"


class CurrentConfigNotCommittedYet(ReplicaSetError):
    """A safe reconfig waits for the current config to be committed first: installed on a
    majority of voters, with this term's writes majority-committed (replication_coordinator_impl.cpp)."""

    code = 308
    code_name = "CurrentConfigNotCommittedYet"


class PrimarySteppedDown(ReplicaSetError):
    """A replication waiter failed because its primary stepped down or the term changed
    (ReplicationCoordinatorImpl::_startWaitingForReplication, setErrorAll on a state change)."""

    code = 189
    code_name = "PrimarySteppedDown"


class UnsatisfiableWriteConcern(ReplicaSetError):
    """`w` asks for more data-bearing members than the config has
    (ReplSetConfig::checkIfWriteConcernCanBeSatisfied: "Not enough data-bearing nodes")."""

    code = 100
    code_name = "UnsatisfiableWriteConcern"


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
    secondary_delay_secs: int = 0
    # Since 4.4 a voting member added by a reconfig is marked newlyAdded and does not count as
    # a voter until its initial sync is done; the primary then removes the mark with a reconfig
    # of its own (SERVER-46344, SERVER-46345). replSetGetConfig does not show it (SERVER-46353).
    newly_added: bool = False

    @property
    def electable(self) -> bool:
        return self.priority > 0 and not self.arbiter_only and self.voter

    @property
    def data_bearing(self) -> bool:
        return not self.arbiter_only

    @property
    def voter(self) -> bool:
        return self.votes > 0 and not self.newly_added


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
        for member in self.members:  # a loop, not next(genexpr): the simulator asks it every round
            if member.host == host:
                return member
        return None

    def member_with_id(self, member_id: int) -> MemberConfig | None:
        return next((m for m in self.members if m.id == member_id), None)

    def total_votes(self) -> int:
        # A newlyAdded member is no voter until its initial sync is done: mongod's majority counts
        # MemberConfig::isVoter(), votes != 0 and not newlyAdded (src/mongo/db/repl/member_config.h,
        # ReplSetConfig::_calculateMajorities in src/mongo/db/repl/repl_set_config.cpp).
        return sum(m.votes for m in self.members if m.voter)

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
        "secondaryDelaySecs": member.secondary_delay_secs,
        "votes": member.votes,
    }


class OplogEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    optime: OpTime
    wall_seconds: float
    op: str  # "i" insert, "n" no-op (a new primary writes one)
    ns: str
    doc: Document
    # A retryable write's session and statement ("<lsid>/<txnNumber>", stmtId): mongod records the
    # executed statements with the write (config.transactions, replicated and rolled back with it)
    # and answers a retry of one of them without executing it again.
    txn: str | None = None
    stmt: int | None = None


class PeerSeen(BaseModel):
    """One member's view of a peer, from the last heartbeat exchange."""

    # When the peer last answered (None: never). Not -inf: JSON has no infinity, and the state
    # file must read back as it was written.
    last_ok: float | None = None
    refused: bool = False  # the last heartbeat was refused (the process is gone)
    state: MemberState = MemberState.UNKNOWN
    term: int = -1
    optime: OpTime = NULL_OPTIME
    optime_seconds: float = 0.0
    config_version: int = -1
    config_term: int = -1


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
    # What this member learned of each peer by heartbeat (host -> last answer), as mongod's
    # own view of the set: a peer that stopped answering stays "healthy" until it misses one.
    peers: dict[str, PeerSeen] = {}
    last_primary_contact: float = 0.0  # when it last heard from a primary (election timer)
    election_offset: float = 0.0  # its random share of the election timeout, in seconds
    stand_now: bool = False  # election handoff: a stepping-down primary asked it to stand
    catching_up: bool = False  # a new primary copying what peers have before taking writes
    sync_done_at: float | None = None  # initial sync in progress: when it completes
    # Stopped by a fence (its service stopped, or killed by its pid file): unlike a crash, nothing
    # starts it again by itself (its service manager holds it stopped).
    fenced: bool = False

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
    # Model time is the clock plus `skew`: `settle()` fast-forwards a scenario to a steady state
    # by adding to it, so a scenario's past (the outage) lies before the clock's now.
    skew: float = 0.0
    last_round_at: float | None = None  # the last heartbeat round processed
    # Data the oplog does not hold as documents (a scenario's "200 GB"), copied by initial sync.
    bulk_data_bytes: int = 0



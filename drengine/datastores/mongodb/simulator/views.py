"""What the wire layer renders: hello, replSetGetStatus and write outcomes, as views of
the model from one member's point of view."""

from __future__ import annotations

from dataclasses import dataclass, field

from drengine.datastores.mongodb.simulator.model import (
    NULL_OPTIME,
    UNREACHABLE_STATE_CODE,
    UNREACHABLE_STATE_STR,
    InvalidReplicaSetConfig,
    MemberConfig,
    MemberNode,
    MemberState,
    NotYetInitialized,
    OpTime,
    Process,
    ReplSetConfig,
)
from drengine.datastores.mongodb.simulator.replication import Replication

# --- views returned to the wire layer and to tests


@dataclass(frozen=True)
class WriteError:
    index: int
    code: int
    message: str


@dataclass(frozen=True)
class InsertOutcome:
    inserted: int
    optime: OpTime
    write_errors: list[WriteError] = field(default_factory=list)


@dataclass(frozen=True)
class HelloView:
    me: str
    is_writable_primary: bool
    secondary: bool
    arbiter_only: bool
    passive: bool
    hidden: bool
    secondary_delay_secs: int
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




class StatusViews(Replication):
    """hello and replSetGetStatus, from one member's point of view."""

    def hello(self, member_id: int) -> HelloView:
        node = self._answering_node(member_id)
        config = node.config
        entry = node.own_entry()
        if config is None or entry is None:
            return self._hello_without_config(node)
        # TopologyCoordinator::fillHelloForReplSet (src/mongo/db/repl/topology_coordinator.cpp): hidden
        # and delayed members are left out of hosts, passives and arbiters; a member reports its own
        # delay as secondaryDelaySecs.
        visible = [m for m in config.members if not m.hidden and m.secondary_delay_secs == 0]
        return HelloView(
            me=node.host,
            # A new primary still catching up answers as not yet writable.
            is_writable_primary=node.state is MemberState.PRIMARY and not node.catching_up,
            secondary=node.state is MemberState.SECONDARY,
            arbiter_only=entry.arbiter_only,
            passive=entry.priority == 0 and not entry.arbiter_only,
            hidden=entry.hidden,
            secondary_delay_secs=entry.secondary_delay_secs,
            set_name=config.set_name,
            set_version=config.version,
            hosts=[m.host for m in visible if not m.arbiter_only and m.priority > 0],
            passives=[m.host for m in visible if not m.arbiter_only and m.priority == 0],
            arbiters=[m.host for m in visible if m.arbiter_only],
            primary=self.primary_seen_by(node),
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
            secondary_delay_secs=0,
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
        """A row of replSetGetStatus: the viewer itself, or what its last heartbeat from that
        member said (a member that stopped answering looks healthy until it misses one)."""
        assert viewer.config is not None
        subject = self.node_with_host(member.host)
        if subject is viewer:
            return self._row(viewer, member, viewer.state, viewer.last_optime, viewer.last_wall_seconds,
                             viewer.config.version, viewer.config.term, is_self=True)
        seen = viewer.peers.get(member.host)
        if subject is None or seen is None or not self.sees_healthy(viewer, member.host):
            return self._unreachable_status(viewer, member, subject)
        return self._row(viewer, member, seen.state, seen.optime, seen.optime_seconds, seen.config_version,
                         seen.config_term, is_self=False, subject=subject)

    def _row(self, viewer: MemberNode, member: MemberConfig, state: MemberState, optime: OpTime, optime_seconds: float,
             config_version: int, config_term: int, *, is_self: bool, subject: MemberNode | None = None) -> MemberStatusView:
        assert viewer.config is not None
        who = viewer if is_self else subject
        source = self.sync_source(who) if who is not None else None
        return MemberStatusView(
            member_id=member.id,
            name=member.host,
            healthy=True,
            state_code=state.code,
            state_str=state.value,
            uptime=int(self._now() - who.started_at) if who is not None else 0,
            optime=None if member.arbiter_only else optime,
            optime_seconds=optime_seconds,
            last_heartbeat_message="",
            config_version=config_version,
            config_term=config_term,
            is_self=is_self,
            sync_source_host=source.host if source else "",
            sync_source_id=self._member_id_in(viewer.config, source),
            election_optime=who.election_optime if who is not None and state is MemberState.PRIMARY else None,
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

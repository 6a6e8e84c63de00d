"""The replica set's members and the faults injected into them (kill, hang, revive,
partition, lag, wipe), lookups, and model time: the injected clock plus the skew that
`settle()` adds when it fast-forwards a scenario to its steady state."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Self

from drengine.clock import SYSTEM, Clock
from drengine.datastores.mongodb.simulator.model import (
    ELECTION_TIMEOUT_OFFSET_FRACTION,
    NULL_OPTIME,
    Document,
    MemberNode,
    MemberState,
    MemberUnavailable,
    OplogEntry,
    OpTime,
    Process,
    ReplicaSetState,
    ReplSetConfig,
    UnknownMember,
)


class ReplicaSetCore:
    """Members, faults and lookups."""

    def __init__(
        self,
        state: ReplicaSetState,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self._clock: Clock = clock or SYSTEM
        self._rng = rng or random.Random()
        # While a heartbeat round runs, its events happen at the round's time.
        self._at: float | None = None

    # construction and persistence

    def to_json(self) -> str:
        return self.state.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str, *, clock: Clock | None = None, rng: random.Random | None = None) -> Self:
        return cls(ReplicaSetState.model_validate_json(text), clock=clock, rng=rng)

    # lookups

    def node(self, member_id: int) -> MemberNode:
        for node in self.state.members:
            if node.member_id == member_id:
                return node
        raise UnknownMember(f"the simulated set has no member with _id {member_id}")

    def node_with_host(self, host: str) -> MemberNode | None:
        for node in self.state.members:  # a loop, not next(genexpr): called for every peer of every round
            if node.host == host:
                return node
        return None

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
        if not self.state.partition:
            return True  # everyone on one side (as _side_of says), without building its answer twice
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
        now = self._now()
        node.started_at = now
        node.process_id = self._random_hex24()
        node.topology_counter = 0
        node.topology_fingerprint = ""
        node.frozen_until = 0.0
        node.election_optime = None
        node.peers = {}
        node.catching_up = node.stand_now = False
        node.sync_done_at = None
        # A restarted member waits a whole election timeout before it may stand.
        node.last_primary_contact = now
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
        """Move a member to a new address, in every config copy and heartbeat view that names it."""
        node = self.node(member_id)
        old = node.host
        node.host = host
        for holder in self.state.members:
            if old in holder.peers:
                holder.peers[host] = holder.peers.pop(old)
            if holder.config is None:
                continue
            for member in holder.config.members:
                if member.host == old:
                    member.host = host

    # elections and heartbeats

    def _answering_node(self, member_id: int) -> MemberNode:
        node = self.node(member_id)
        if node.process is not Process.RUNNING:
            raise MemberUnavailable(f"member {member_id} ({node.host}) is {node.process.value}: nothing answers there")
        return node

    def _now(self) -> float:
        # Wall-clock seconds: optimes and dates in the state file stay meaningful across processes.
        if self._at is not None:
            return self._at
        return self._clock.wall() + self.state.skew

    def now(self) -> float:
        """Model time (seconds since the epoch)."""
        return self._now()

    @property
    def clock(self) -> Clock:
        return self._clock

    def heartbeat_interval(self) -> float:
        return self._heartbeat_interval()

    def _heartbeat_interval(self) -> float:
        configs = [n.config for n in self.state.members if n.config is not None]
        return (configs[0].settings.heartbeat_interval_millis / 1000.0) if configs else 2.0

    def _heartbeat_timeout(self, node: MemberNode) -> float:
        return float(node.config.settings.heartbeat_timeout_secs) if node.config else 10.0

    def _election_timeout(self, node: MemberNode) -> float:
        base = node.config.settings.election_timeout_millis / 1000.0 if node.config else 10.0
        return base + node.election_offset

    def _new_election_offset(self, node: MemberNode) -> None:
        base = node.config.settings.election_timeout_millis / 1000.0 if node.config else 10.0
        node.election_offset = self._rng.uniform(0.0, base * ELECTION_TIMEOUT_OFFSET_FRACTION)

    def _next_timestamp(self) -> tuple[int, int]:
        seconds = int(self._now())
        last_seconds, last_increment = self.state.last_timestamp
        if seconds > last_seconds:
            stamp = (seconds, 1)
        else:
            stamp = (last_seconds, last_increment + 1)
        self.state.last_timestamp = stamp
        return stamp

    def _append(self, node: MemberNode, op: str, ns: str, doc: Document, *, txn: str | None = None,
                stmt: int | None = None) -> OpTime:
        seconds, increment = self._next_timestamp()
        optime = OpTime(term=node.term, seconds=seconds, increment=increment)
        node.oplog.append(OplogEntry(optime=optime, wall_seconds=self._now(), op=op, ns=ns, doc=doc, txn=txn, stmt=stmt))
        return optime

    def _random_hex24(self) -> str:
        return f"{self._rng.getrandbits(96):024x}"

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

    def _is_data_bearing(self, node: MemberNode) -> bool:
        entry = node.own_entry()
        return entry is not None and entry.data_bearing

    # writes and reads

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

    def _install_config(self, node: MemberNode, config: ReplSetConfig) -> None:
        was_electable = bool((entry := node.own_entry()) and entry.electable)
        node.config = config
        entry = node.own_entry()
        if entry is not None and entry.electable and not was_electable:
            # Newly electable: its election timer starts now.
            node.last_primary_contact = self._now()
        node.state = self._state_after_config_change(node)

"""Heartbeats, config propagation, initial sync, sync sources, oplog replication and the
majority commit point.

Heartbeats run every `heartbeatIntervalMillis` (2 s by default) of model time; each member
learns from them what its peers are (state, term, optime, config) and keeps that view until
the next answer. A peer whose process is gone refuses the next heartbeat and is seen down
at once; a hung or partitioned one is seen down only after `heartbeatTimeoutSecs` (10 s)
without an answer (the documented defaults: https://www.mongodb.com/docs/manual/reference/replica-configuration/#settings).
Replication itself is continuous: a secondary pulls from its sync source whenever the model
advances, held back only by its `secondaryDelaySecs` or an injected lag.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from drengine.datastores.mongodb.simulator.core import ReplicaSetCore
from drengine.datastores.mongodb.simulator.model import (
    INITIAL_SYNC_BYTES_PER_SECOND,
    NULL_OPTIME,
    MemberNode,
    MemberState,
    OplogEntry,
    OpTime,
    PeerSeen,
    Process,
    ReplSetConfig,
)


class Replication(ReplicaSetCore):
    """How data and configs travel between members."""

    # -- heartbeats

    def _exchange_heartbeats(self, at: float) -> None:
        """One heartbeat from every running member to every member its config names."""
        for node in self._running():
            self._adopt_newer_config(node)
        for node in self._running():
            self._heartbeat_peers(node, at)

    def _heartbeat_peers(self, node: MemberNode, at: float) -> None:
        if node.config is None:
            node.peers = {}
            return
        # In the config's order (a set's order changes with each process's string hashing, and
        # the order peers are met in is the order of `peers` in the state and the views).
        hosts = dict.fromkeys(m.host for m in node.config.members if m.host != node.host)
        node.peers = {h: seen for h, seen in node.peers.items() if h in hosts}
        for host in hosts:
            seen = node.peers.setdefault(host, PeerSeen())
            peer = self.node_with_host(host)
            if peer is None or peer.process is Process.KILLED:
                seen.refused = True  # connection refused: down at once
            elif self.can_see(node, peer):
                self._heard_from(node, peer, seen, at)
            # hung or partitioned: no answer; seen down once heartbeatTimeoutSecs pass

    def _heard_from(self, node: MemberNode, peer: MemberNode, seen: PeerSeen, at: float) -> None:
        seen.last_ok, seen.refused = at, False
        seen.state, seen.term = peer.state, peer.term
        seen.optime, seen.optime_seconds = peer.last_optime, peer.last_wall_seconds
        seen.config_version = peer.config.version if peer.config else -1
        seen.config_term = peer.config.term if peer.config else -1
        if _config_set_name(peer) == _config_set_name(node):
            self._learn_term(node, peer.term)
            if peer.state is MemberState.PRIMARY and peer.term >= node.term:
                node.last_primary_contact = at

    def _learn_term(self, node: MemberNode, term: int) -> None:
        # Heartbeats carry the term. A primary that hears of a higher term
        # knows someone else has been elected since, and steps down at once.
        if term > node.term:
            if node.state is MemberState.PRIMARY:
                node.state = MemberState.SECONDARY
                node.catching_up = False
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

    def propagate_configs(self) -> None:
        """A member that installs a new config heartbeats its peers at once (mongod restarts its
        heartbeats on a config change), so the config travels without waiting for the round."""
        for _ in range(2):
            for node in self._running():
                self._adopt_newer_config(node)

    def sees_healthy(self, viewer: MemberNode, host: str) -> bool:
        """Whether `viewer`, from its own heartbeats, takes the member at `host` for up."""
        seen = viewer.peers.get(host)
        if seen is None or seen.refused or seen.last_ok is None:
            return False
        return self._now() - seen.last_ok < self._heartbeat_timeout(viewer)

    def primary_seen_by(self, viewer: MemberNode) -> str | None:
        """The primary as `viewer` knows it: itself, or a healthy peer last seen PRIMARY."""
        if viewer.state is MemberState.PRIMARY:
            return viewer.host
        found = [(seen.term, host) for host, seen in viewer.peers.items()
                 if seen.state is MemberState.PRIMARY and self.sees_healthy(viewer, host)]
        return max(found)[1] if found else None

    # -- initial sync

    def _finish_initial_syncs(self, at: float) -> None:
        for node in self._running():
            if node.state is not MemberState.STARTUP2:
                node.sync_done_at = None
                continue
            source = self._initial_sync_source(node)
            if source is None:
                continue
            if node.sync_done_at is None:
                node.sync_done_at = at + self.initial_sync_seconds(source)
            if at >= node.sync_done_at:
                node.oplog = list(source.oplog)
                node.term = max(node.term, source.term)
                node.last_committed = source.last_committed
                node.state = MemberState.SECONDARY
                node.sync_done_at = None

    def initial_sync_seconds(self, source: MemberNode) -> float:
        """Copying everything takes time in proportion to the data size."""
        size = self.state.bulk_data_bytes + sum(len(json.dumps(e.doc)) for e in source.oplog)
        return size / INITIAL_SYNC_BYTES_PER_SECOND

    def _initial_sync_source(self, node: MemberNode) -> MemberNode | None:
        candidates = [p for p in self._peers_in_config(node) if p.state in (MemberState.PRIMARY, MemberState.SECONDARY)]
        primaries = [p for p in candidates if p.state is MemberState.PRIMARY]
        pool = primaries or candidates
        return max(pool, key=lambda p: p.last_optime.key()) if pool else None

    # -- replication

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
        entry = node.own_entry()
        # A delayed member applies an entry only once it is secondaryDelaySecs old.
        delay = max(node.lag_seconds, float(entry.secondary_delay_secs) if entry else 0.0)
        if delay > 0:
            horizon = self._now() - delay
            while limit > len(node.oplog) and source.oplog[limit - 1].wall_seconds > horizon:
                limit -= 1
        return limit

    # -- the majority commit point

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
                    node.catching_up,
                    node.config.version if node.config else "-",
                    node.config.term if node.config else "-",
                    self.primary_seen_by(node) or "-",
                )
            )
            if fingerprint != node.topology_fingerprint:
                node.topology_fingerprint = fingerprint
                node.topology_counter += 1


def _config_set_name(node: MemberNode) -> str | None:
    return node.config.set_name if node.config else None


def _common_prefix_length(mine: Sequence[OplogEntry], theirs: Sequence[OplogEntry]) -> int:
    length = 0
    for left, right in zip(mine, theirs, strict=False):
        # Replicated entries are the source's own objects: the same object needs no comparing.
        if left is not right and left.optime != right.optime:
            break
        length += 1
    return length


def has_optime(node: MemberNode, optime: OpTime) -> bool:
    for entry in reversed(node.oplog):
        if entry.optime == optime:
            return True
        if entry.optime.key() < optime.key():
            return False
    return False

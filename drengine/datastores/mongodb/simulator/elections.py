"""Elections and step-downs, and the heartbeat rounds that drive them as model time passes.

A secondary stands for election once it has heard from no primary for
`electionTimeoutMillis` (10 s by default) plus a random offset of up to 15 % (mongod's
`electionTimeoutOffsetLimitFraction`), or at once when a stepping-down primary hands the
election over to it, or when it is the only voter left. A new primary first catches up
with any reachable member that holds more of its history (`catchUpTimeoutMillis`), then
writes its "new primary" no-op and takes writes. A primary that no longer hears a voting
majority steps down; so does one that hears of a higher term.
https://www.mongodb.com/docs/manual/core/replica-set-elections/ and
https://www.mongodb.com/docs/manual/reference/replica-configuration/#settings
"""

from __future__ import annotations

import math

from drengine.datastores.mongodb.simulator.model import MemberNode, MemberState
from drengine.datastores.mongodb.simulator.replication import Replication, _common_prefix_length


class Elections(Replication):
    """Who is primary, as time passes."""

    # -- time

    def advance(self) -> None:
        """Let model time catch up with the clock: every heartbeat round due since the last
        one, then continuous replication. A set that has been quiet for a while skips ahead."""
        now = self._now()
        interval = self._heartbeat_interval()
        if self.state.last_round_at is None:
            self.state.last_round_at = now - interval
        if now < self.state.last_round_at:
            # The clock is behind what the state file saw (another process, another speed):
            # model time never runs backwards.
            self.state.skew += self.state.last_round_at - now
            now = self._now()
        quiet = 0
        while self.state.last_round_at + interval <= now:
            at = self.state.last_round_at + interval
            before = self._fingerprint()
            self.tick(at)
            quiet = quiet + 1 if self._fingerprint() == before else 0
            last_due = at + math.floor((now - at) / interval) * interval
            if last_due > at and quiet >= self._quiet_rounds() and not self._timers_pending():
                # Nothing changes between rounds any more: skip to the last round due (which runs).
                self.state.last_round_at = last_due - interval
            else:
                self.state.last_round_at = at
        self._continuous()

    def settle(self, max_seconds: float = 3600.0) -> int:
        """Fast-forward model time, round by round, until the set stops changing (used to build
        scenarios whose outage lies in the past); return the number of rounds."""
        interval = self._heartbeat_interval()
        self.advance()
        rounds = quiet = 0
        after = self._fingerprint()
        while rounds * interval < max_seconds:
            before = after  # nothing ran since it was taken
            self.state.skew += interval
            self.advance()
            rounds += 1
            after = self._fingerprint()
            quiet = quiet + 1 if after == before else 0
            if quiet >= self._quiet_rounds() and not self._timers_pending():
                break
        return rounds

    def _quiet_rounds(self) -> int:
        # Long enough for a missed heartbeat to be noticed and an election timer to run out.
        configs = [n.config for n in self.state.members if n.config is not None]
        settings = configs[0].settings if configs else None
        timeout = settings.heartbeat_timeout_secs if settings else 10
        election = (settings.election_timeout_millis / 1000.0) if settings else 10.0
        return int(math.ceil((timeout + election * 1.15) / self._heartbeat_interval())) + 1

    def _timers_pending(self) -> bool:
        return any(n.sync_done_at is not None or n.catching_up or n.stand_now for n in self._running())

    def _fingerprint(self) -> tuple[object, ...]:
        return tuple(
            (
                n.process,
                n.state,
                n.term,
                n.catching_up,
                n.config.version if n.config else None,
                n.config.term if n.config else None,
                len(n.oplog),
                n.last_optime.key(),
                len(n.rolled_back),
                n.last_committed.key(),
                tuple(sorted((h, s.refused, s.state.value, s.term) for h, s in n.peers.items()
                             if self.sees_healthy(n, h))),
            )
            for n in self.state.members
        )

    def _continuous(self) -> None:
        self._replicate_all()
        self._advance_commit_points()
        self._bump_topology_versions()

    def tick(self, at: float | None = None) -> None:
        """One heartbeat round at `at` (model time; now when not given)."""
        self._at = self._now() if at is None else at
        try:
            self._exchange_heartbeats(self._at)
            self._finish_initial_syncs(self._at)
            self._replicate_all()
            self._finish_catch_ups()
            self._step_down_lonely_primaries()
            self._step_down_outranked_primaries()
            self._remove_newly_added()
            self._run_elections(self._at)
            self._replicate_all()
            self._finish_catch_ups()
            self._continuous()
        finally:
            self._at = None

    # -- step-downs

    def _step_down_lonely_primaries(self) -> None:
        for node in self._running():
            if node.state is MemberState.PRIMARY and not self._sees_voting_majority(node):
                # A primary that no longer hears a majority of its voters steps down.
                node.state = MemberState.SECONDARY
                node.catching_up = False

    def _sees_voting_majority(self, node: MemberNode) -> bool:
        if node.config is None:
            return False
        votes = sum(m.votes for m in node.config.members
                    if m.voter and (m.host == node.host or self.sees_healthy(node, m.host)))
        return votes >= node.config.majority_vote_count()

    def _step_down_outranked_primaries(self) -> None:
        for node in self._running():
            if node.state is not MemberState.PRIMARY:
                continue
            for peer in self._peers_in_config(node):
                if peer.state is MemberState.PRIMARY and peer.term > node.term:
                    node.state = MemberState.SECONDARY
                    node.catching_up = False
                    break

    def _remove_newly_added(self) -> None:
        """The primary drops `newlyAdded` from a member that finished its initial sync, with a
        reconfig of its own (version + 1; SERVER-46345)."""
        for node in self._running():
            if node.state is not MemberState.PRIMARY or node.catching_up or node.config is None:
                continue
            done = [m.host for m in node.config.members if m.newly_added and m.host in node.peers
                    and node.peers[m.host].state in (MemberState.SECONDARY, MemberState.RECOVERING)
                    and self.sees_healthy(node, m.host)]
            if done:
                members = [m.model_copy(update={"newly_added": False}) if m.host in done else m
                           for m in node.config.members]
                config = node.config.model_copy(update={"version": node.config.version + 1, "members": members})
                self._install_config(node, config)

    # -- elections

    def _run_elections(self, at: float) -> None:
        candidates = [n for n in self._running() if self._may_stand(n, at)]
        for candidate in sorted(candidates, key=_election_rank, reverse=True):
            voters = self._votes_for(candidate)
            candidate.stand_now = False
            if voters is not None:
                self._become_primary(candidate, voters)
                return
            # Lost: wait a whole (newly randomized) election timeout before standing again.
            candidate.last_primary_contact = at
            self._new_election_offset(candidate)

    def _may_stand(self, node: MemberNode, at: float) -> bool:
        entry = node.own_entry()
        if entry is None or node.config is None or not entry.electable or node.state is not MemberState.SECONDARY:
            return False
        if node.frozen_until > at:
            return False
        if node.stand_now:
            return True
        primary = self.primary_seen_by(node)
        if primary is not None:
            return self._takes_over_from(node, primary)
        only_voter = [m.host for m in node.config.members if m.voter] == [node.host]
        return only_voter or at - node.last_primary_contact >= self._election_timeout(node)

    def _takes_over_from(self, node: MemberNode, primary_host: str) -> bool:
        """Priority takeover: a caught-up member of higher priority replaces the primary."""
        assert node.config is not None
        mine = node.own_entry()
        theirs = node.config.member_with_host(primary_host)
        seen = node.peers.get(primary_host)
        if mine is None or theirs is None or seen is None or mine.priority <= theirs.priority:
            return False
        return node.last_optime.key() >= seen.optime.key()

    def _votes_for(self, candidate: MemberNode) -> list[MemberNode] | None:
        """The members granting their vote, if they add up to a majority."""
        config = candidate.config
        assert config is not None
        granted = [candidate] + [p for p in self._peers_in_config(candidate) if self._grants_vote(p, candidate)]
        votes = 0
        for voter in granted:
            entry = config.member_with_host(voter.host)
            votes += entry.votes if entry and entry.voter else 0
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
        node.catching_up = True
        # Since 4.4 a new primary stamps its term into the config.
        node.config = node.config.model_copy(update={"term": new_term})

    def _finish_catch_ups(self) -> None:
        """A new primary copies what reachable members hold beyond it, then writes its no-op."""
        for node in self._running():
            if node.state is not MemberState.PRIMARY or not node.catching_up:
                continue
            ahead = [p for p in self._peers_in_config(node)
                     if p.last_optime.key() > node.last_optime.key()
                     and _common_prefix_length(node.oplog, p.oplog) == len(node.oplog)]
            if ahead:
                freshest = max(ahead, key=lambda p: p.last_optime.key())
                node.oplog.extend(freshest.oplog[len(node.oplog):])
            node.catching_up = False
            node.election_optime = self._append(node, "n", "", {"msg": "new primary"})


def _election_rank(node: MemberNode) -> tuple[bool, float, tuple[int, int, int], int]:
    entry = node.own_entry()
    priority = entry.priority if entry else 0.0
    # A handed-over election first; then higher priority, fresher oplog; ties to the lowest _id.
    return (node.stand_now, priority, node.last_optime.key(), -node.member_id)

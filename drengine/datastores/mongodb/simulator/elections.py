"""Elections and step-downs, and the heartbeat round (`tick`) that drives them."""

from __future__ import annotations

from drengine.datastores.mongodb.simulator.model import MemberNode, MemberState
from drengine.datastores.mongodb.simulator.replication import Replication


class Elections(Replication):
    """Who is primary."""

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


def _election_rank(node: MemberNode) -> tuple[float, tuple[int, int, int], int]:
    entry = node.own_entry()
    priority = entry.priority if entry else 0.0
    # Higher priority, then fresher oplog; ties go to the lowest _id.
    return (priority, node.last_optime.key(), -node.member_id)



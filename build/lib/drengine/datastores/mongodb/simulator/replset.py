"""SimulatedReplicaSet: the simulated replica set, assembled from its parts."""

from __future__ import annotations

import random
from collections.abc import Sequence

from drengine.clock import Clock
from drengine.datastores.mongodb.simulator.commands import Commands
from drengine.datastores.mongodb.simulator.config import validate_config
from drengine.datastores.mongodb.simulator.model import (
    MemberConfig,
    MemberNode,
    MemberState,
    ReplicaSetState,
    ReplSetConfig,
    ReplSetSettings,
)
from drengine.datastores.mongodb.simulator.views import StatusViews

SCENARIO_HISTORY_SECONDS = 3600.0


class SimulatedReplicaSet(Commands, StatusViews):
    """A replica set whose members, faults and elections are all in memory."""

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
        """A freshly initiated set (replSetInitiate), settled to its first primary. Its history
        starts an hour before the clock, so that a scenario built on it (settled, faults and all)
        ends before the clock's now (see scenarios.build_scenario)."""
        sim = cls(ReplicaSetState(set_name=set_name, members=[], skew=-SCENARIO_HISTORY_SECONDS), clock=clock, rng=rng)
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
            node.last_primary_contact = now
            sim._new_election_offset(node)
        sim.settle()
        return sim

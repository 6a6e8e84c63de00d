"""Write concerns: the implicit default and the cluster-wide one (setDefaultRWConcern), how far
a write has come towards its `w`, and how mongod fails a write-concern wait.

mongod's counterparts (src/mongo/db/repl/): ReplSetConfig::isImplicitDefaultWriteConcernMajority
and checkIfWriteConcernCanBeSatisfied (repl_set_config.cpp), and
ReplicationCoordinatorImpl::_startWaitingForReplication, whose checkForStepDown fails a waiter
with PrimarySteppedDown (189) once its primary is no longer primary or the term moved on
(replication_coordinator_impl.cpp; on a state change every waiter gets the same error at once).
The cluster-wide default is a document in `config.settings` (ReadWriteConcernDefaults, _id
"ReadWriteConcernDefaults") written on the primary and replicated with the oplog, so a member
knows it only once the write reached it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import JsonValue

from drengine.datastores.mongodb.simulator.elections import Elections
from drengine.datastores.mongodb.simulator.model import (
    BadValue,
    Document,
    MemberState,
    NewReplicaSetConfigurationIncompatible,
    NotWritablePrimary,
    NotYetInitialized,
    OpTime,
    PrimarySteppedDown,
    ReplicaSetError,
    ReplSetConfig,
    UnknownReplWriteConcern,
    UnsatisfiableWriteConcern,
    WriteConcernW,
)
from drengine.datastores.mongodb.simulator.replication import has_optime

SETTINGS_NS = "config.settings"
RW_DEFAULTS_ID = "ReadWriteConcernDefaults"
IMPLICIT_DEFAULT_CHANGE = (
    "Reconfig attempted to install a config that would change the implicit default write concern. Use the "
    "setDefaultRWConcern command to set a cluster-wide write concern and try the reconfig again."
)


@dataclass(frozen=True)
class WriteConcernProgress:
    """How far a write has come towards its write concern; `failure` when mongod gives up on it."""

    wanted: int | str
    acknowledged_by: int
    required: int
    failure: ReplicaSetError | None = None

    @property
    def satisfied(self) -> bool:
        return self.failure is None and self.acknowledged_by >= self.required


def implicit_default_is_majority(config: ReplSetConfig) -> bool:
    """ReplSetConfig::isImplicitDefaultWriteConcernMajority: w: "majority" unless voting arbiters
    would keep a primary elected while no majority write can be acknowledged, i.e. unless the
    writable voters are no more than the voting majority."""
    voters = [m for m in config.members if m.voter]
    writable = sum(1 for m in voters if m.data_bearing)
    arbiters = len(voters) - writable
    return arbiters == 0 or writable > config.majority_vote_count()


class WriteConcerns(Elections):
    """The write-concern side of a member: defaults, waiting, failing."""

    def cluster_wide_write_concern(self, member_id: int) -> Document | None:
        """The defaultWriteConcern this member holds from setDefaultRWConcern (None: not set)."""
        node = self.node(member_id)
        for entry in reversed(node.oplog):
            if entry.ns == SETTINGS_NS and entry.doc.get("_id") == RW_DEFAULTS_ID:
                concern = entry.doc.get("defaultWriteConcern")
                return dict(concern) if isinstance(concern, dict) and concern else None
        return None

    def set_default_write_concern(self, member_id: int, concern: Document) -> OpTime:
        """setDefaultRWConcern on the primary: the settings document is written like any write
        (the caller waits for the command's own write concern)."""
        node = self._answering_node(member_id)
        if node.state is not MemberState.PRIMARY or node.catching_up:
            raise NotWritablePrimary("not primary")
        w = concern.get("w")
        if w == 0:
            raise BadValue("w:0 write concern is unsupported")
        if w is not None and w != "majority" and not isinstance(w, int):
            raise UnknownReplWriteConcern(f"unrecognized write concern mode: {w}")
        now = self._now()
        doc: Document = {"_id": RW_DEFAULTS_ID, "defaultWriteConcern": dict(concern), "updateWallClockTime": now}
        optime = self._append(node, "i", SETTINGS_NS, doc)
        self._replicate_all()
        self._advance_commit_points()
        return optime

    def default_write_concern(self, member_id: int) -> int | str:
        """The cluster-wide default when one is set, else the implicit default (5.0+)."""
        wide = self.cluster_wide_write_concern(member_id)
        if wide is not None and isinstance(wide.get("w"), int | str):
            w: JsonValue = wide["w"]
            assert isinstance(w, int | str)
            return w
        config = self._answering_node(member_id).config
        if config is None:
            raise NotYetInitialized("no replset config has been received")
        return "majority" if implicit_default_is_majority(config) else 1

    def write_concern_of(self, member_id: int, w: WriteConcernW) -> int | str:
        wanted = self.default_write_concern(member_id) if w is None else w
        if wanted != "majority" and not isinstance(wanted, int):
            raise UnknownReplWriteConcern(f"unrecognized write concern mode: {wanted}")
        return wanted

    def write_concern_progress(self, member_id: int, optime: OpTime, w: WriteConcernW) -> WriteConcernProgress:
        """How many members (of those that count for `w`) hold `optime` now. "majority" counts
        data-bearing voters (repl_set_config.cpp: with half or more of the voters arbiters, the
        majority is all data-bearing voters). In mongod's order: a primary that stepped down (or
        a term that moved on) fails the wait with 189, a `w` larger than the data-bearing
        members with 100, before any counting."""
        primary = self.node(member_id)
        assert primary.config is not None
        wanted = self.write_concern_of(member_id, w)
        failure = self._waiter_failure(member_id, optime, wanted)
        if failure is not None:
            return WriteConcernProgress(wanted, 0, 0, failure)
        holders = [primary] + [p for p in self._peers_in_config(primary) if has_optime(p, optime)]
        if wanted == "majority":
            required = primary.config.write_majority_count()
            acked = sum(1 for h in holders if self._counts_for_majority(primary.config, h))
        else:
            assert isinstance(wanted, int)
            required = wanted
            acked = sum(1 for h in holders if self._is_data_bearing(h))
        return WriteConcernProgress(wanted, acked, required)

    def _waiter_failure(self, member_id: int, optime: OpTime, wanted: int | str) -> ReplicaSetError | None:
        node = self.node(member_id)
        if wanted == 0:
            return None  # unacknowledged: nothing waits
        if node.state is not MemberState.PRIMARY:
            return PrimarySteppedDown("Primary stepped down while waiting for replication")
        if optime.term != node.term:
            return PrimarySteppedDown(f"Term changed from {optime.term} to {node.term} while waiting for replication, "
                                      f"indicating that this node must have stepped down.")
        assert node.config is not None
        data_bearing = sum(1 for m in node.config.members if m.data_bearing)
        if isinstance(wanted, int) and wanted > data_bearing:
            return UnsatisfiableWriteConcern("Not enough data-bearing nodes")
        return None

    def check_implicit_default_kept(self, member_id: int, current: ReplSetConfig, new: ReplSetConfig) -> None:
        """_doReplSetReconfig: a config that changes the implicit default write concern is refused
        while no cluster-wide write concern is set, "This includes force reconfigs"."""
        if implicit_default_is_majority(current) == implicit_default_is_majority(new):
            return
        if self.cluster_wide_write_concern(member_id) is not None:
            return
        raise NewReplicaSetConfigurationIncompatible(IMPLICIT_DEFAULT_CHANGE)

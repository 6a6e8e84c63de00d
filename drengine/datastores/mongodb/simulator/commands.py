"""Commands that change or read data and configs: inserts with write concern, find and
count, replSetReconfig (normal and forced), replSetFreeze and replSetStepDown."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence

from pydantic import JsonValue

from drengine.datastores.mongodb.simulator.config import config_from_document, validate_config
from drengine.datastores.mongodb.simulator.model import (
    FORCE_VERSION_MIN_INCREMENT,
    FORCE_VERSION_RANDOM_SPAN,
    UNINITIALISED_TERM,
    BadValue,
    ConfigurationInProgress,
    CurrentConfigNotCommittedYet,
    Document,
    ExceededTimeLimit,
    MemberNode,
    MemberState,
    NewReplicaSetConfigurationIncompatible,
    NodeNotFound,
    NotPrimaryNoSecondaryOk,
    NotPrimaryOrSecondary,
    NotSecondary,
    NotWritablePrimary,
    NotYetInitialized,
    ReplSetConfig,
    WriteConcernW,
)
from drengine.datastores.mongodb.simulator.views import InsertOutcome, WriteError
from drengine.datastores.mongodb.simulator.writeconcern import WriteConcerns


class Commands(WriteConcerns):
    """The commands the wire layer serves."""

    def insert(self, member_id: int, collection: str, doc: Document, w: WriteConcernW = None) -> InsertOutcome:
        return self.insert_many(member_id, collection, [doc], w=w)

    def executed_statements(self, member_id: int, txn: str) -> set[int]:
        """The statements of a retryable write (session and txnNumber) this member has applied."""
        return {e.stmt for e in self.node(member_id).oplog if e.txn == txn and e.stmt is not None}

    def insert_many(
        self,
        member_id: int,
        collection: str,
        docs: Sequence[Document],
        *,
        w: WriteConcernW = None,
        ordered: bool = True,
        txn: str | None = None,
    ) -> InsertOutcome:
        """Insert on the primary and replicate; the write concern is waited for by the caller
        (`write_concern_progress`), as mongod waits for it after the write. A retryable write
        (`txn`: its session and txnNumber) skips the statements already applied and counts them
        as inserted, as mongod answers a retry from its transaction table
        (src/mongo/db/ops/write_ops_exec.cpp, insertBatchAndHandleErrors: checkStatementExecuted)."""
        node = self._answering_node(member_id)
        if node.state is not MemberState.PRIMARY or node.catching_up:
            raise NotWritablePrimary("not primary")
        self.write_concern_of(member_id, w)  # an unknown mode is refused before anything is written
        taken = {_id_key(d) for d in node.documents(collection)}
        done = self.executed_statements(member_id, txn) if txn is not None else set()
        errors: list[WriteError] = []
        inserted = 0
        for index, doc in enumerate(docs):
            if index in done:
                inserted += 1
                continue
            stored: Document = doc if "_id" in doc else {"_id": {"$oid": self._random_hex24()}, **doc}
            key = _id_key(stored)
            if key in taken:
                errors.append(_duplicate_key_error(index, collection, stored))
                if ordered:
                    break
                continue
            self._append(node, "i", collection, stored, txn=txn, stmt=index if txn is not None else None)
            taken.add(key)
            inserted += 1
        self._replicate_all()
        self._advance_commit_points()
        return InsertOutcome(inserted, node.last_optime, errors)

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
        """replSetReconfig without waiting: a safe reconfig refuses at once (308) when the
        current config is not committed. The wire layer waits instead, as mongod does."""
        config = self.prepare_reconfig(member_id, new_config, force=force)
        if force:
            return config
        if not self.config_committed(member_id):
            raise CurrentConfigNotCommittedYet(self.uncommitted_reason(member_id))
        return self.install_agreed(member_id, config)

    def prepare_reconfig(self, member_id: int, new_config: ReplSetConfig | Mapping[str, object], *,
                         force: bool = False) -> ReplSetConfig:
        """Validate a new config; a forced one is installed at once (and returned)."""
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
        # _doReplSetReconfig checks the config as it would be installed (new voters newlyAdded).
        self.check_implicit_default_kept(member_id, current, config if force else self._mark_newly_added(node, config))
        if config.member_with_host(node.host) is None:
            raise NodeNotFound(
                f"No host described in new configuration with {{version: {config.version}}} "
                f"for replica set {config.set_name} maps to this node ({node.host})"
            )
        if force:
            forced = self._forced(node, config)
            self._install_config(node, forced)
            self.propagate_configs()
            return forced
        return self._agreed(node, config)

    def config_committed(self, member_id: int) -> bool:
        """The current config is on a majority of voters and this term's writes are
        majority-committed (a forced config, term -1, skips the oplog part)."""
        node = self.node(member_id)
        config = node.config
        if config is None:
            return False
        holders = [node] + [p for p in self._peers_in_config(node) if p.config is not None and _same_config(p.config, config)]
        votes = sum(m.votes for m in config.members if m.voter and any(h.host == m.host for h in holders))
        if votes < config.majority_vote_count():
            return False
        return config.term == UNINITIALISED_TERM or node.last_committed.term >= config.term

    def uncommitted_reason(self, member_id: int) -> str:
        node = self.node(member_id)
        config = node.config
        assert config is not None
        return (f"New config is rejected :: caused by :: the current config (version {config.version}, term "
                f"{config.term}) is not yet installed on a majority of voting members, or the writes of term "
                f"{config.term} are not majority-committed yet")

    def install_agreed(self, member_id: int, config: ReplSetConfig) -> ReplSetConfig:
        """Install a validated safe reconfig on the primary; it propagates by heartbeat."""
        node = self._answering_node(member_id)
        installed = self._agreed(node, config)
        installed = self._mark_newly_added(node, installed)
        self._install_config(node, installed)
        self.propagate_configs()
        return installed

    def config_propagated(self, member_id: int, version: int) -> bool:
        """Whether a majority of voters hold a config at least as new as `version`."""
        node = self.node(member_id)
        config = node.config
        if config is None:
            return False
        holders = {node.host} | {p.host for p in self._peers_in_config(node)
                                  if p.config is not None and p.config.version >= version}
        return sum(m.votes for m in config.members if m.voter and m.host in holders) >= config.majority_vote_count()

    def _mark_newly_added(self, node: MemberNode, config: ReplSetConfig) -> ReplSetConfig:
        """A voting member the current config does not know joins as newlyAdded (SERVER-46344);
        never an arbiter, never in a forced reconfig (processReplSetReconfig)."""
        assert node.config is not None
        known = {m.id for m in node.config.members}
        members = [m.model_copy(update={"newly_added": True})
                   if m.id not in known and m.votes > 0 and not m.arbiter_only else m
                   for m in config.members]
        return config.model_copy(update={"members": members})

    def _forced(self, node: MemberNode, config: ReplSetConfig) -> ReplSetConfig:
        assert node.config is not None
        base = max(node.config.version, config.version)
        # mongod adds a random jump; here it is drawn from what is forced (the set, the member, the
        # version it leaves), not from the shared generator, whose draws depend on how many hello
        # heartbeats the client's monitor threads sent in real time: a replayed run forces the
        # same version.
        draw = random.Random(f"{self.state.set_name}/{node.member_id}/{node.config.version}/{config.version}")
        jump = FORCE_VERSION_MIN_INCREMENT + draw.randrange(FORCE_VERSION_RANDOM_SPAN)
        return config.model_copy(update={"version": base + jump, "term": UNINITIALISED_TERM})

    def _agreed(self, node: MemberNode, config: ReplSetConfig) -> ReplSetConfig:
        current = node.config
        assert current is not None
        if node.state is not MemberState.PRIMARY or node.catching_up:
            raise NotWritablePrimary(
                "New config is rejected :: caused by :: replSetReconfig should only be run "
                f"on a writable PRIMARY. Current state {node.state.value};"
            )
        if any(m.newly_added for m in current.members) and self._newly_added_done(node):
            # The primary is installing its own reconfig that drops newlyAdded.
            raise ConfigurationInProgress("Cannot run replSetReconfig because the node is currently updating its "
                                          "configuration")
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

    def _newly_added_done(self, node: MemberNode) -> bool:
        assert node.config is not None
        return any(m.newly_added and self.node_with_host(m.host) is not None
                   and (peer := self.node_with_host(m.host)) is not None and peer.state is MemberState.SECONDARY
                   for m in node.config.members)

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
        """replSetStepDown without waiting (the wire layer waits secondaryCatchUpPeriodSecs)."""
        node = self._answering_node(member_id)
        if node.state is not MemberState.PRIMARY:
            raise NotWritablePrimary("not primary so can't step down")
        if not self.step_down_ready(member_id) and not force:
            raise ExceededTimeLimit("No electable secondaries caught up as of stepdown deadline")
        self.do_step_down(member_id, seconds)

    def shutdown(self, member_id: int, *, force: bool = False) -> None:
        """The shutdown command: a primary steps down first unless forced (then it just stops)."""
        node = self._answering_node(member_id)
        if node.state is MemberState.PRIMARY and not force and not self.step_down_ready(member_id):
            raise ExceededTimeLimit("No electable secondaries caught up as of stepdown deadline; use force to shut "
                                    "down anyway")
        self.kill(member_id)

    def step_down_ready(self, member_id: int) -> bool:
        """An electable secondary holds everything the primary has."""
        return self._caught_up_successor(self.node(member_id)) is not None

    def _caught_up_successor(self, node: MemberNode) -> MemberNode | None:
        self._replicate_all()
        caught_up = [
            p
            for p in self._peers_in_config(node)
            if p.state is MemberState.SECONDARY
            and (entry := p.own_entry()) is not None
            and entry.electable
            and p.frozen_until <= self._now()
            and p.last_optime.key() >= node.last_optime.key()
        ]
        return max(caught_up, key=lambda p: p.last_optime.key()) if caught_up else None

    def do_step_down(self, member_id: int, seconds: float) -> None:
        """Step down and hand the election to a caught-up secondary (enableElectionHandoff)."""
        node = self._answering_node(member_id)
        if node.state is not MemberState.PRIMARY:
            raise NotWritablePrimary("not primary so can't step down")
        successor = self._caught_up_successor(node)
        node.state = MemberState.SECONDARY
        node.catching_up = False
        node.frozen_until = self._now() + seconds
        if successor is not None:
            # The successor is asked to stand at once (replSetStepUp): the election takes
            # milliseconds, not an election timeout.
            successor.stand_now = True
            self._run_elections(self._now())
            self._finish_catch_ups()

def _same_config(left: ReplSetConfig, right: ReplSetConfig) -> bool:
    # A term of -1 (a forced config) is compared by version alone, as mongod compares them.
    terms_match = left.term == right.term or UNINITIALISED_TERM in (left.term, right.term)
    return left.version == right.version and terms_match


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



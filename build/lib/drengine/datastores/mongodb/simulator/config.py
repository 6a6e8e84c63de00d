"""Replica-set config documents (the documented field names) to and from `ReplSetConfig`,
and the structural checks mongod applies to every new config."""

from __future__ import annotations

from collections.abc import Mapping

from drengine.datastores.mongodb.simulator.model import (
    MAX_MEMBERS,
    MAX_VOTING_MEMBERS,
    UNINITIALISED_TERM,
    InvalidReplicaSetConfig,
    MemberConfig,
    ReplSetConfig,
    ReplSetSettings,
)

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
        # secondaryDelaySecs since 5.0; slaveDelay before (still accepted by 5.0 servers).
        secondary_delay_secs=_int_field(raw, "secondaryDelaySecs", _int_field(raw, "slaveDelay", 0)),
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
    if member.secondary_delay_secs < 0:
        raise InvalidReplicaSetConfig(f"member {member.host}: secondaryDelaySecs cannot be negative")
    if member.priority > 0 and member.secondary_delay_secs > 0:
        # member_config.cpp: a delayed member must never become primary.
        raise InvalidReplicaSetConfig(f"member {member.host}: priority must be 0 when secondaryDelaySecs is used")



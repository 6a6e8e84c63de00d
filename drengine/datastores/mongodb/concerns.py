"""What a forced config implies for write concerns, in the operator's words: what an arbiter
left among the voters costs, and the implicit default write concern (MongoDB 5.0+) that a
forced reconfig must not change while no cluster-wide default is set."""

from __future__ import annotations

from typing import Any


def implicit_default_is_majority(members: list[dict[str, Any]]) -> bool:
    """The implicit default write concern of a config (5.0+): w: "majority" unless voting arbiters
    would keep a primary elected while no majority write can be acknowledged, i.e. unless the
    data-bearing voters are no more than the voting majority (ReplSetConfig::
    isImplicitDefaultWriteConcernMajority, src/mongo/db/repl/repl_set_config.cpp)."""
    voters = [m for m in members if int(m.get("votes", 1)) > 0]
    data = sum(1 for m in voters if not m.get("arbiterOnly"))
    return data == len(voters) or data > len(voters) // 2 + 1


def _words(majority: bool) -> str:
    return 'w: "majority"' if majority else "w: 1"


def arbiter_left_out(old_majority: bool) -> str:
    return (f"kept, it would turn the implicit default write concern from {_words(old_majority)} into "
            f"{_words(not old_majority)}, which mongod 5.0+ refuses even in a forced reconfig (code 103) unless a "
            f"cluster-wide default write concern is set; setDefaultRWConcern needs a primary: once the new primary is "
            f"up, set one (setDefaultRWConcern with defaultWriteConcern) and add the arbiter back (rs.addArb)")


def implicit_default_change(old_majority: bool, kept: list[dict[str, Any]], names: dict[str, str]) -> str:
    """What the operator reads when the forced config cannot keep the implicit default write concern."""
    shown = ", ".join(names.get(str(m["host"]), str(m["host"])) for m in kept)
    return (f"the forced config ({shown}) turns the implicit default write concern from {_words(old_majority)} into "
            f"{_words(not old_majority)}: mongod 5.0+ refuses that, forced or not (code 103 "
            f"NewReplicaSetConfigurationIncompatible), unless a cluster-wide default write concern was set before the "
            f"outage (getDefaultRWConcern on the survivor shows defaultWriteConcernSource: global). setDefaultRWConcern "
            f"cannot help now: it runs only on a writable primary. To recover: bring back a lost member (the majority "
            f"may return by itself), or start a fresh arbiter (mongod --replSet with an empty dbPath) and force a "
            f"config that keeps it so the implicit default stays {_words(old_majority)}; then set a cluster-wide "
            f"default on the new primary before any further reconfig")


def arbiter_cost(members: list[dict[str, Any]], names: dict[str, str] | None = None) -> str | None:
    """What an arbiter among the voters costs, in the documented primary-secondary-arbiter terms
    (https://www.mongodb.com/docs/manual/core/replica-set-arbiter/ and
    https://www.mongodb.com/docs/manual/tutorial/mitigate-psa-performance-issues/); None without one."""
    voters = [m for m in members if int(m.get("votes", 1)) > 0]
    arbiters = [m for m in voters if m.get("arbiterOnly")]
    if not arbiters:
        return None
    data = [m for m in voters if not m.get("arbiterOnly")]
    majority = len(voters) // 2 + 1
    # replica_set_config.cpp: w: "majority" counts data-bearing voters only.
    needed = min(majority, len(data))
    shown = ", ".join((names or {}).get(str(m["host"]), str(m["host"])) for m in arbiters)
    if needed >= len(data) > 1:
        return (f"an arbiter stays among the voters ({shown}): with {len(data)} data-bearing voters, w: majority "
                f"needs all {needed} of them. While one of them is down the majority commit point stalls: "
                f"w: majority writes wait, majority reads go stale, and the oplog and cache grow on the primary. "
                f"Add a data-bearing member (mongodb-rejoin) soon")
    if len(data) == 1:
        return (f"an arbiter stays among the voters ({shown}) beside a single data-bearing member: a w: majority "
                f"write is acknowledged by the primary alone, so every write lives on one copy until a "
                f"data-bearing member is added back (mongodb-rejoin)")
    return (f"an arbiter stays among the voters ({shown}): w: majority needs {needed} of the {len(data)} "
            f"data-bearing voters; the majority commit point stalls if more than {len(data) - needed} of them "
            f"go down")

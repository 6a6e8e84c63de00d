"""mongod's answers that decide a recovery, through the real pymongo client (issue 22): a reconfig
that changes the implicit default write concern (103), waiting writes failed as mongod fails them
(189 on a step-down, 100 for a `w` no config can satisfy), retryable writes applied once, the
cluster-wide default write concern, hello's delayed members, and the safe-reconfig refusals
308, 109 and 50. Each names the upstream file it follows in the simulator's code."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import NotPrimaryError, OperationFailure, WriteConcernError
from pymongo.write_concern import WriteConcern

from drengine.clock import SimulatedClock, wait_until
from drengine.datastores.mongodb.simulator import SimulatedReplicaSet, build_scenario
from drengine.datastores.mongodb.simulator.model import MemberConfig
from drengine.datastores.mongodb.wire import WireCluster

pytestmark = pytest.mark.sim

Client = MongoClient[dict[str, Any]]
IMPLICIT_DEFAULT_CHANGE = "Reconfig attempted to install a config that would change the implicit default write concern"


def serving(model: SimulatedReplicaSet | str) -> WireCluster:
    """The set served on loopback (`with serving(...) as cluster`: started, and stopped after)."""
    return WireCluster(build_scenario(model, rng=random.Random(5), clock=SimulatedClock())
                       if isinstance(model, str) else model)


@contextmanager
def direct(cluster: WireCluster, member_id: int, **options: Any) -> Iterator[Client]:
    host, port = cluster.address(member_id)
    client: Client = MongoClient(host, port, directConnection=True, serverSelectionTimeoutMS=3000,
                                 socketTimeoutMS=10000, **options)
    try:
        yield client
    finally:
        client.close()


def until_primary(cluster: WireCluster, clock: SimulatedClock, member_id: int) -> None:
    """Let model time pass, a heartbeat at a time, until `member_id` is primary."""
    for _ in range(100):
        with cluster.locked() as model:
            if model.primaries() == [member_id] and model.hello(member_id).is_writable_primary:
                return
        clock.advance(2.0)
    raise AssertionError(f"member {member_id} did not become primary")


def config_of(client: Client) -> dict[str, Any]:
    config: dict[str, Any] = client.admin.command("replSetGetConfig")["config"]
    return config


# --- 103: a reconfig that would change the implicit default write concern


def test_a_forced_reconfig_changing_the_implicit_default_is_refused_until_a_cluster_wide_default_is_set() -> None:
    with serving("arbiter-and-priority0") as cluster, direct(cluster, 2) as client:
        config = config_of(client)
        config["members"] = [m for m in config["members"] if m["_id"] in (2, 3)]
        next(m for m in config["members"] if m["_id"] == 2)["priority"] = 1
        with pytest.raises(OperationFailure) as refused:
            client.admin.command({"replSetReconfig": config, "force": True})
        assert refused.value.code == 103
        assert (refused.value.details or {})["codeName"] == "NewReplicaSetConfigurationIncompatible"
        assert IMPLICIT_DEFAULT_CHANGE in str(refused.value)
        # setDefaultRWConcern needs a writable primary, which a set without a majority has not.
        with pytest.raises(NotPrimaryError) as not_primary:
            client.admin.command({"setDefaultRWConcern": 1, "defaultWriteConcern": {"w": 1}})
        details: Any = not_primary.value.details or {}
        assert details["code"] == 10107
        # Without the arbiter the implicit default stays w: "majority": accepted.
        config["members"] = [m for m in config["members"] if m["_id"] == 2]
        assert client.admin.command({"replSetReconfig": config, "force": True})["ok"] == 1.0


def test_a_safe_reconfig_adding_an_arbiter_needs_a_cluster_wide_default_first() -> None:
    # jstests/replsets/reconfig_fails_no_cwwc_set.js: two data-bearing members, an arbiter added.
    members = [MemberConfig(id=0, host="a:27017"), MemberConfig(id=1, host="b:27017"),
               MemberConfig(id=2, host="c:27017", priority=0.0, arbiter_only=True, votes=0)]
    sim = SimulatedReplicaSet.initiate("rs0", members, clock=SimulatedClock(), rng=random.Random(2))
    with serving(sim) as cluster, direct(cluster, sim.primaries()[0]) as client:
        before = client.admin.command("getDefaultRWConcern")
        assert "defaultWriteConcern" not in before and before["defaultWriteConcernSource"] == "implicit"
        config = config_of(client)
        next(m for m in config["members"] if m["_id"] == 2)["votes"] = 1
        config["version"] += 1
        with pytest.raises(OperationFailure) as refused:
            client.admin.command({"replSetReconfig": config})
        assert refused.value.code == 103 and IMPLICIT_DEFAULT_CHANGE in str(refused.value)
        answer = client.admin.command({"setDefaultRWConcern": 1, "defaultWriteConcern": {"w": 1},
                                       "writeConcern": {"w": "majority"}})
        assert answer["defaultWriteConcern"] == {"w": 1, "wtimeout": 0}
        assert answer["defaultWriteConcernSource"] == "global"
        assert client.admin.command({"replSetReconfig": config, "maxTimeMS": 30000})["ok"] == 1.0


# --- waiting writes failed as mongod fails them


def _waiting_insert(client: Client, outcome: dict[str, BaseException | None]) -> threading.Thread:
    orders = client.shop.get_collection("orders", write_concern=WriteConcern(w="majority"))

    def insert() -> None:
        try:
            orders.insert_one({"_id": 10})
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=insert, daemon=True)
    thread.start()
    return thread


def _written(cluster: WireCluster, member_id: int) -> bool:
    with cluster.locked() as model:
        return model.count(member_id, "shop.orders", {"_id": 10}) == 1


def test_a_primary_stepping_down_fails_its_waiting_write_with_189() -> None:
    with serving("healthy-3") as cluster, direct(cluster, 0, retryWrites=False) as client:
        cluster.lag(1, ops=1_000_000)
        cluster.lag(2, ops=1_000_000)
        outcome: dict[str, BaseException | None] = {}
        thread = _waiting_insert(client, outcome)
        assert wait_until(lambda: _written(cluster, 0), 5, 0.05)
        with cluster.locked() as model:
            model.step_down(0, 60, force=True)
        thread.join(10)
        error = outcome.get("error")
        assert isinstance(error, WriteConcernError), outcome
        assert error.code == 189
        details = error.details or {}
        assert details["codeName"] == "PrimarySteppedDown"
        assert details["errmsg"] == "Primary stepped down while waiting for replication"


def test_w_above_the_data_bearing_members_fails_with_100_after_the_write() -> None:
    clock = SimulatedClock()
    sim = build_scenario("arbiter-and-priority0", rng=random.Random(5), clock=clock)
    with serving(sim) as cluster, direct(cluster, 2) as client:
        config = config_of(client)
        config["members"] = [m for m in config["members"] if m["_id"] == 2]
        config["members"][0]["priority"] = 1
        client.admin.command({"replSetReconfig": config, "force": True})
        until_primary(cluster, clock, 2)
        orders = client.shop.get_collection("orders", write_concern=WriteConcern(w=2))
        with pytest.raises(WriteConcernError) as unsatisfiable:
            orders.insert_one({"_id": 10})
        details = unsatisfiable.value.details or {}
        assert (details["code"], details["codeName"]) == (100, "UnsatisfiableWriteConcern")
        assert details["errmsg"] == "Not enough data-bearing nodes"
        assert details["errInfo"]["writeConcern"]["w"] == 2
        assert client.shop.orders.count_documents({"_id": 10}) == 1  # written all the same


def test_a_retried_insert_is_applied_once_on_the_new_primary() -> None:
    """pymongo retries an insert whose write concern failed with 189 (RetryableWriteError) with the
    same lsid and txnNumber; the new primary, which replicated the first attempt, answers it from
    what it applied instead of a duplicate-key error."""
    with serving("healthy-5") as cluster:
        for member_id in (2, 3, 4):
            cluster.lag(member_id, ops=1_000_000)
        seeds = ",".join(f"{h}:{p}" for h, p in cluster.addresses().values())
        client: Client = MongoClient(f"mongodb://{seeds}/?replicaSet=rs0", serverSelectionTimeoutMS=10000,
                                     socketTimeoutMS=20000)
        try:
            client.admin.command("ping")
            outcome: dict[str, BaseException | None] = {}
            thread = _waiting_insert(client, outcome)
            assert wait_until(lambda: _written(cluster, 0) and _written(cluster, 1), 5, 0.05)
            with cluster.locked() as model:
                model.step_down(0, 60)  # member 1 holds the write: it takes over
            for member_id in (2, 3, 4):
                cluster.lag(member_id)
            thread.join(20)
            assert "error" in outcome and outcome["error"] is None, outcome
            with cluster.locked() as model:
                assert model.primaries() == [1]
                entries = [e for e in model.node(1).oplog if e.ns == "shop.orders" and e.doc.get("_id") == 10]
            assert len(entries) == 1 and entries[0].txn is not None
        finally:
            client.close()


# --- hello and delayed members


def test_hello_leaves_delayed_members_out_and_reports_the_delay_to_the_member_itself() -> None:
    # topology_coordinator.cpp fillHelloForReplSet; hello_response.cpp (slaveDelay to isMaster).
    members = [MemberConfig(id=0, host="a:27017"), MemberConfig(id=1, host="b:27017"),
               MemberConfig(id=2, host="c:27017", priority=0.0, secondary_delay_secs=600),
               MemberConfig(id=3, host="d:27017", priority=0.0)]
    sim = SimulatedReplicaSet.initiate("rs0", members, clock=SimulatedClock(), rng=random.Random(4))
    with serving(sim) as cluster, direct(cluster, 2) as delayed:
        hello = delayed.admin.command("hello")
        delayed_host = "{}:{}".format(*cluster.address(2))
        passive_host = "{}:{}".format(*cluster.address(3))
        assert hello["secondaryDelaySecs"] == 600 and hello["passive"] is True
        assert delayed_host not in hello["hosts"] + hello.get("passives", [])
        assert hello["passives"] == [passive_host]
        assert delayed.admin.command("isMaster")["slaveDelay"] == 600
        with direct(cluster, 0) as primary:
            assert "secondaryDelaySecs" not in primary.admin.command("hello")


# --- safe reconfig refusals: 308, 109 and 50


def test_a_safe_reconfig_on_a_primary_whose_term_is_not_committed_answers_308_after_maxtimems() -> None:
    # replication_coordinator_impl.cpp _doReplSetReconfig: the writes of this term must be majority-
    # committed first. The primary is re-elected while both secondaries apply nothing.
    clock = SimulatedClock()
    sim = build_scenario("healthy-3", rng=random.Random(5), clock=clock)
    with serving(sim) as cluster, direct(cluster, 0) as client:
        cluster.lag(1, ops=1_000_000)
        cluster.lag(2, ops=1_000_000)
        with cluster.locked() as model:
            model.insert(0, "shop.orders", {"_id": 99}, w=1)  # only the primary holds it
            model.step_down(0, 1.0, force=True)
        until_primary(cluster, clock, 0)
        with cluster.locked() as model:
            assert model.primaries() == [0] and not model.config_committed(0)
        config = config_of(client)
        config["version"] += 1
        config["members"][2]["priority"] = 0.5
        before = clock.now()
        with pytest.raises(OperationFailure) as refused:
            client.admin.command({"replSetReconfig": config, "maxTimeMS": 3000})
        assert (refused.value.code, (refused.value.details or {})["codeName"]) == (308, "CurrentConfigNotCommittedYet")
        assert clock.now() - before >= 3.0  # mongod waited maxTimeMS first


def test_a_reconfig_while_the_primary_is_dropping_newly_added_answers_109() -> None:
    # repl_set_commands.cpp / _doReplSetReconfig: kConfigReconfiguring while the primary installs the
    # config of its own that drops newlyAdded from a member that finished its initial sync.
    clock = SimulatedClock()
    sim = build_scenario("healthy-3", rng=random.Random(5), clock=clock)
    config = sim.get_config(0)
    sim.kill(2)
    sim.wipe(2)
    sim.reconfig(0, config.model_copy(update={"version": config.version + 1, "term": sim.node(0).term,
                                              "members": config.members[:2]}))
    sim.revive(2)
    sim.settle(60)
    config = sim.get_config(0)
    sim.reconfig(0, config.model_copy(update={"version": config.version + 1,
                                              "members": [*config.members, MemberConfig(id=2, host=sim.node(2).host)]}))
    for _ in range(200):
        clock.advance(0.5)
        sim.advance()
        entry = sim.get_config(0).member_with_id(2)
        if sim.node(2).state.value == "SECONDARY" and entry is not None and entry.newly_added:
            break
    assert sim.node(2).state.value == "SECONDARY" and sim.get_config(0).member_with_id(2).newly_added  # type: ignore[union-attr]
    with serving(sim) as cluster, direct(cluster, 0) as client:
        config_doc = config_of(client)
        config_doc["version"] += 1
        with pytest.raises(OperationFailure) as refused:
            client.admin.command({"replSetReconfig": config_doc, "maxTimeMS": 1000})
        assert (refused.value.code, (refused.value.details or {})["codeName"]) == (109, "ConfigurationInProgress")


# --- newlyAdded members are no voters (issue 22, item 4)


def test_a_newly_added_member_does_not_count_in_the_majority_while_it_syncs() -> None:
    # member_config.h isVoter (votes and not newlyAdded); repl_set_config.cpp _calculateMajorities.
    clock = SimulatedClock()
    sim = build_scenario("healthy-5", rng=random.Random(5), clock=clock)
    sim.state.bulk_data_bytes = 50 * 1024 * 1024 * 600  # ten minutes of initial sync
    for member_id in (4, 3):
        sim.kill(member_id)
        sim.wipe(member_id)
        config = sim.get_config(0)
        sim.reconfig(0, config.model_copy(update={"version": config.version + 1, "term": sim.node(0).term,
                                                  "members": [m for m in config.members if m.id != member_id]}))
        sim.settle(30)
    sim.revive(3)
    sim.settle(30)
    config = sim.get_config(0)
    sim.reconfig(0, config.model_copy(update={"version": config.version + 1,
                                              "members": [*config.members, MemberConfig(id=3, host=sim.node(3).host)]}))
    with serving(sim) as cluster, direct(cluster, 0) as client:
        clock.advance(10)
        status = client.admin.command("replSetGetStatus")
        assert next(m for m in status["members"] if m["_id"] == 3)["stateStr"] == "STARTUP2"
        assert (status["votingMembersCount"], status["majorityVoteCount"]) == (3, 2)
        assert status["writableVotingMembersCount"] == 3 and status["writeMajorityCount"] == 2
        assert next(m for m in config_of(client)["members"] if m["_id"] == 3)["votes"] == 1  # newlyAdded hidden

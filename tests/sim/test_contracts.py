"""Contract tests: the simulators' answers, through the real clients, checked field by field
against response examples recorded from the vendors' documentation (tests/data/contracts/,
each file naming its source). A field the simulator adds must be a documented later addition
listed here with its source; a documented field it leaves out must be listed as unsimulated,
with the reason."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from bson import Int64, Timestamp
from elasticsearch import Elasticsearch
from pymongo import MongoClient
from pymongo.errors import WriteConcernError
from pymongo.write_concern import WriteConcern

from drengine.clock import SimulatedClock
from drengine.datastores.elasticsearch.rest import SimServer
from drengine.datastores.elasticsearch.simulator import EsCluster, build_scenario
from drengine.datastores.mongodb.simulator import build_scenario as build_mongo_scenario
from drengine.datastores.mongodb.wire import WireCluster
from tests.helpers import json_rows

pytestmark = pytest.mark.sim

CONTRACTS = Path(__file__).resolve().parents[1] / "data" / "contracts"


def recorded(name: str) -> Any:
    document = json.loads((CONTRACTS / name).read_text())
    assert document["source"].startswith("https://"), "every recorded example names its source"
    return document["example"]


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def serve(model: EsCluster) -> Iterator[tuple[SimServer, Elasticsearch]]:
    server = SimServer(model)
    client = Elasticsearch(server.start(), request_timeout=10, max_retries=0)
    try:
        yield server, client
    finally:
        client.close()
        server.stop()


# ---- Elasticsearch --------------------------------------------------------------------------

# Fields real Elasticsearch added after the recorded example was written, with where they come from.
ES_HEALTH_ADDITIONS = {
    # ClusterHealthResponse / ClusterStateHealth: unassigned_primary_shards (8.x and 9.x).
    "unassigned_primary_shards",
}


def test_cluster_health_has_the_documented_fields_and_types() -> None:
    example = recorded("es-cluster-health.json")
    model = EsCluster("testcluster", clock=SimulatedClock())
    model.add_node("node-0")
    model.create_index("my-index-000001", number_of_shards=1, number_of_replicas=1)
    model.settle()
    for _, client in serve(model):
        body = dict(client.cluster.health())
        assert set(body) == set(example) | ES_HEALTH_ADDITIONS
        assert {k: kind(v) for k, v in body.items() if k in example} == {k: kind(v) for k, v in example.items()}
        # The situation of the example gives the example's numbers.
        assert {k: body[k] for k in example if k != "cluster_name"} == {k: v for k, v in example.items()
                                                                         if k != "cluster_name"}


def test_allocation_explain_of_a_primary_no_node_may_take() -> None:
    example = recorded("es-allocation-explain-no.json")
    model = EsCluster("testcluster", clock=SimulatedClock())
    model.add_node("node-0")
    # The example's index filter is an index setting the simulator does not model; a cluster
    # exclude filter refuses the node the same way (decider `filter`, NO).
    model.put_cluster_settings(persistent={"cluster.routing.allocation.exclude._name": "node-0"})
    model.create_index("my-index-000001", number_of_shards=1, number_of_replicas=0)
    for _, client in serve(model):
        body = dict(client.cluster.allocation_explain(index="my-index-000001", shard=0, primary=True))
        assert list(body) == list(example)
        assert set(body["unassigned_info"]) == set(example["unassigned_info"])
        for key in ("index", "shard", "primary", "current_state", "can_allocate", "allocate_explanation"):
            assert body[key] == example[key], key
        assert body["unassigned_info"]["reason"] == "INDEX_CREATED"
        assert body["unassigned_info"]["last_allocation_status"] == "no"
        row, documented = body["node_allocation_decisions"][0], example["node_allocation_decisions"][0]
        assert set(row) == set(documented)
        assert {k: kind(v) for k, v in row.items()} == {k: kind(v) for k, v in documented.items()}
        assert [d["decider"] for d in row["deciders"]] == ["filter"]
        assert set(row["deciders"][0]) == {"decider", "decision", "explanation"}
        assert row["deciders"][0]["decision"] == "NO"


def test_cat_recovery_columns_asked_by_alias() -> None:
    contract = json.loads((CONTRACTS / "es-cat-recovery-live.json").read_text())
    example = contract["example"][0]
    model = build_scenario("one-node-lost-3", SimulatedClock())
    model.put_index_settings("_all", {"index.unassigned.node_left.delayed_timeout": "0"})
    model.settle()
    for _, client in serve(model):
        rows = json_rows(client.cat.recovery(**contract["request"]))
        peer = [r for r in rows if r["ty"] == "peer"]
        assert peer, rows
        row = peer[0]
        assert list(row) == list(example)
        assert all(isinstance(v, str) for v in row.values())
        assert row["st"] == "done" and row["fp"] == example["fp"] and row["bp"] == example["bp"]
        assert re.fullmatch(r"\d+(\.\d+)?(ms|s|m|h|d)", row["t"])
        assert re.fullmatch(r"\d+(\.\d+)?(b|kb|mb|gb)", row["b"])


# ---- MongoDB --------------------------------------------------------------------------------

BSON_KINDS = {"str": str, "int": int, "bool": bool, "ISODate": datetime, "NumberLong": Int64, "Timestamp": Timestamp}

# replSetGetStatus fields of the recorded (4.0-era) example the simulator does not produce.
MONGO_STATUS_UNSIMULATED = {
    "syncingTo",  # deprecated in 4.0, removed in 4.4 (the simulator answers as 6.0)
    "lastStableCheckpointTimestamp",  # removed in 4.4; storage-engine detail
    "$clusterTime",  # no signed cluster time (no keyfile auth simulated)
    "operationTime",  # likewise
}
# ... and the ones it adds, documented for later versions on the same page (4.4+ fields).
MONGO_STATUS_ADDITIONS = {
    "majorityVoteCount", "writeMajorityCount", "votingMembersCount", "writableVotingMembersCount",
}
MONGO_MEMBER_ADDITIONS = {"configTerm"}  # replSetGetStatus.members[n].configTerm, 4.4+
MONGO_OPTIMES_ADDITIONS = {"lastAppliedWallTime", "lastDurableWallTime"}  # 4.2+


def _types_match(actual: Any, documented: Any, where: str) -> None:
    if isinstance(documented, dict):
        assert isinstance(actual, dict), where
        for key, value in documented.items():
            if key in actual:
                _types_match(actual[key], value, f"{where}.{key}")
        return
    if documented == "number":
        assert isinstance(actual, int | float) and not isinstance(actual, bool), where
    else:
        assert isinstance(actual, BSON_KINDS[documented]), f"{where}: {type(actual).__name__} is not {documented}"


@pytest.fixture
def mongo_set() -> Iterator[WireCluster]:
    cluster = WireCluster(build_mongo_scenario("healthy-3", rng=random.Random(3), clock=SimulatedClock()))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _client(cluster: WireCluster, member_id: int) -> MongoClient[dict[str, Any]]:
    host, port = cluster.address(member_id)
    return MongoClient(host, port, directConnection=True, serverSelectionTimeoutMS=2000)


def test_replsetgetstatus_fields_and_types(mongo_set: WireCluster) -> None:
    example = recorded("mongodb-replsetgetstatus-primary.json")
    client = _client(mongo_set, 0)
    try:
        status = client.admin.command("replSetGetStatus")
    finally:
        client.close()
    documented_top = set(example) - {"members"}
    assert set(status) - {"members"} == (documented_top - MONGO_STATUS_UNSIMULATED) | MONGO_STATUS_ADDITIONS
    assert set(status["optimes"]) == set(example["optimes"]) | MONGO_OPTIMES_ADDITIONS
    _types_match({k: v for k, v in status.items() if k != "members"},
                 {k: v for k, v in example.items() if k != "members"}, "status")
    self_row = next(m for m in status["members"] if m.get("self"))
    other = next(m for m in status["members"] if not m.get("self"))
    for row, documented in ((self_row, example["members"]["self primary"]), (other, example["members"]["secondary"])):
        assert set(row) == (set(documented) - MONGO_STATUS_UNSIMULATED) | MONGO_MEMBER_ADDITIONS, row
        _types_match(row, documented, f"members[{row['_id']}]")


def test_hello_answers_only_documented_fields(mongo_set: WireCluster) -> None:
    """source/reference/command/hello.txt (mongodb/docs): the fields of every instance and of
    replica set members; conditional ones only under their condition."""
    every = {"isWritablePrimary", "topologyVersion", "maxBsonObjectSize", "maxMessageSizeBytes", "maxWriteBatchSize",
             "localTime", "logicalSessionTimeoutMinutes", "connectionId", "minWireVersion", "maxWireVersion",
             "readOnly", "ok"}
    replica_set = {"hosts", "setName", "setVersion", "secondary", "primary", "me", "lastWrite"}
    for member_id in (0, 1):
        client = _client(mongo_set, member_id)
        try:
            hello = client.admin.command("hello")
        finally:
            client.close()
        expected = every | replica_set | ({"electionId"} if hello["isWritablePrimary"] else set())
        assert set(hello) == expected, set(hello) ^ expected
        assert set(hello["lastWrite"]) == {"opTime", "lastWriteDate", "majorityOpTime", "majorityWriteDate"}


def test_write_concern_error_shape_on_a_slow_majority(mongo_set: WireCluster) -> None:
    example = recorded("mongodb-write-concern-error.json")["writeConcernError"]
    mongo_set.lag(1, ops=1_000_000)
    mongo_set.lag(2, ops=1_000_000)
    client = _client(mongo_set, 0)
    try:
        collection = client.get_database("drengine").get_collection(
            "canary", write_concern=WriteConcern(w="majority", wtimeout=1000))
        with pytest.raises(WriteConcernError) as failed:
            collection.insert_one({"_id": "contract"})
    finally:
        client.close()
    error = failed.value.details or {}
    assert set(error) == set(example)
    assert error["code"] == example["code"] and error["errmsg"] == example["errmsg"]
    # codeName of code 64: WriteConcernFailed up to 7.0, WriteConcernTimeout since (error_codes.yml).
    assert error["codeName"] in ("WriteConcernFailed", "WriteConcernTimeout")
    assert set(error["errInfo"]) == set(example["errInfo"]) and error["errInfo"]["wtimeout"] is True
    assert set(error["errInfo"]["writeConcern"]) == set(example["errInfo"]["writeConcern"])
    assert error["errInfo"]["writeConcern"]["provenance"] == "clientSupplied"


def test_a_failed_forced_stale_primary_leaves_no_copy_in_sync() -> None:
    # IndexMetadataUpdater.updateInSyncAllocations (server/src/main/java/org/elasticsearch/cluster/
    # routing/allocation/IndexMetadataUpdater.java): the in-sync set is replaced when the forced
    # primary INITIALIZES ({"_forced_allocation_"} for a stale one). Its recovery failing, the node
    # with the old in-sync copy coming back leaves the shard red: explain shows every copy, the
    # returning one included, as `in_sync: false` (no_valid_shard_copy) until a second forced allocation.
    model = build_scenario("red-stale-copy", clock=SimulatedClock())
    group = model.shard_group("orders", 0)
    lost = next(n.name for n in model.state.nodes if not n.alive)
    stale = next(model.node_by_id(n).name for n in group.stores if model.node_by_id(n).alive)
    model.fail_recoveries("orders", 0, 1)  # the stale copy is found corrupt while it recovers
    for _, client in serve(model):
        client.cluster.reroute(commands=[{"allocate_stale_primary": {
            "index": "orders", "shard": 0, "node": stale, "accept_data_loss": True}}], metric="none")
        model.settle()
        model.return_node(lost)
        body = dict(client.cluster.allocation_explain(index="orders", shard=0, primary=True))
        assert body["can_allocate"] == "no_valid_shard_copy"
        assert body["unassigned_info"]["reason"] == "ALLOCATION_FAILED"
        stores = {row["node_name"]: row["store"] for row in body["node_allocation_decisions"]}
        assert stores[lost]["in_sync"] is False and stores[stale]["in_sync"] is False
        assert client.cluster.health()["status"] == "red"
        # A second forced allocation, onto the returned copy, brings the shard back with its documents.
        client.cluster.reroute(commands=[{"allocate_stale_primary": {
            "index": "orders", "shard": 0, "node": lost, "accept_data_loss": True}}], metric="none")
        model.settle()
        assert client.count(index="orders")["count"] == 8


def test_explain_shows_an_unreadable_copy_with_its_store_exception() -> None:
    # NodeAllocationResult.ShardStoreInfo.toXContent: a copy whose store cannot be opened shows
    # `in_sync` false, its allocation id and `store_exception` (PrimaryShardAllocator treats it as
    # holding no allocation id: never allocated by itself).
    model = build_scenario("red-stale-copy", clock=SimulatedClock())
    group = model.shard_group("orders", 0)
    stale_id = next(n for n in group.stores if model.node_by_id(n).alive)
    group.stores[stale_id].unreadable = ("corrupt_index_exception", "CorruptIndexException[checksum failed]")
    for _, client in serve(model):
        body = dict(client.cluster.allocation_explain(index="orders", shard=0, primary=True))
        row = next(r for r in body["node_allocation_decisions"] if r["node_id"] == stale_id)
        assert set(row["store"]) == {"in_sync", "allocation_id", "store_exception"}
        assert row["store"]["store_exception"]["type"] == "corrupt_index_exception"


def test_replica_explain_of_a_red_shard_is_replica_after_primary_active_only() -> None:
    # ReplicaShardAllocator.makeAllocationDecision (server/src/main/java/org/elasticsearch/gateway/
    # ReplicaShardAllocator.java): while the primary is not active, canBeAllocatedToAtLeastOneNode
    # answers NO (replica_after_primary_active) for every data node: no store rows, no weight
    # ranking, no allocation delay, whatever index.unassigned.node_left.delayed_timeout says.
    model = build_scenario("red-stale-copy", clock=SimulatedClock())
    for _, client in serve(model):
        body = dict(client.cluster.allocation_explain(index="orders", shard=0, primary=False))
        assert body["can_allocate"] == "no" and "remaining_delay_in_millis" not in body
        rows = body["node_allocation_decisions"]
        assert rows and all(r["node_decision"] == "no" for r in rows)
        assert all("store" not in r and "weight_ranking" not in r for r in rows)
        assert all({"decider": "replica_after_primary_active", "decision": "NO",
                    "explanation": "primary shard for this replica is not yet active"} in r["deciders"] for r in rows)


def test_a_delayed_replica_decision_has_no_weight_ranking() -> None:
    # ReplicaShardAllocator returns AllocateUnassignedDecision.delayed with node results augmented by
    # store information only: NodeAllocationResult prints weight_ranking only for balancer decisions.
    model = build_scenario("one-node-lost-3", clock=SimulatedClock())
    group = next(g for g in model.groups() if any(not r.primary for r in g.unassigned()))
    for _, client in serve(model):
        body = dict(client.cluster.allocation_explain(index=group.index, shard=group.shard, primary=False))
        assert body["can_allocate"] == "allocation_delayed"
        assert all("weight_ranking" not in r for r in body["node_allocation_decisions"])

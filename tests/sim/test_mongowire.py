"""The simulated replica set served over the MongoDB wire protocol, driven
by the real pymongo client the way drengine's connector drives it."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import bson
import pytest
from pymongo import MongoClient
from pymongo.errors import (
    AutoReconnect,
    NotPrimaryError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteConcernError,
)
from pymongo.write_concern import WriteConcern

from drengine.clock import SimulatedClock, wait_until
from drengine.datastores.mongodb.simulator import build_scenario
from drengine.datastores.mongodb.simulator.model import FORCE_VERSION_MIN_INCREMENT
from drengine.datastores.mongodb.wire import WireCluster
from drengine.datastores.mongodb.wireproto import OP_QUERY, OP_REPLY

pytestmark = pytest.mark.sim

Client = MongoClient[dict[str, Any]]


@contextmanager
def serving(scenario: str, clock: SimulatedClock | None = None) -> Iterator[WireCluster]:
    cluster = WireCluster(build_scenario(scenario, rng=random.Random(3), clock=clock))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def connect(cluster: WireCluster, member_id: int, *, timeout_ms: int = 2000) -> Iterator[Client]:
    host, port = cluster.address(member_id)
    client: Client = MongoClient(
        host,
        port,
        directConnection=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
    )
    try:
        yield client
    finally:
        client.close()


def optime_key(member: dict[str, Any]) -> tuple[int, int, int]:
    optime = member["optime"]
    return (optime["t"], optime["ts"].time, optime["ts"].inc)


def test_hello_answers_the_documented_fields() -> None:
    with serving("healthy-3") as cluster, connect(cluster, 0) as client:
        hello = client.admin.command("hello")
        hosts = [f"{h}:{p}" for h, p in cluster.addresses().values()]
        assert hello["ok"] == 1.0
        assert hello["isWritablePrimary"] is True
        assert hello["secondary"] is False
        assert hello["setName"] == "rs0"
        assert hello["setVersion"] == 1
        assert sorted(hello["hosts"]) == sorted(hosts)
        assert hello["me"] == hello["primary"] == hosts[0]
        assert 9 <= hello["maxWireVersion"] and hello["minWireVersion"] == 0
        for key in (
            "maxBsonObjectSize",
            "maxMessageSizeBytes",
            "maxWriteBatchSize",
            "localTime",
            "logicalSessionTimeoutMinutes",
            "connectionId",
            "electionId",
        ):
            assert key in hello, key
        assert set(hello["topologyVersion"]) == {"processId", "counter"}
        assert set(hello["lastWrite"]["opTime"]) == {"ts", "t"}
        assert "lastWriteDate" in hello["lastWrite"]

        legacy = client.admin.command({"isMaster": 1, "helloOk": True})
        assert legacy["ismaster"] is True and legacy["helloOk"] is True

    with serving("arbiter-and-priority0") as cluster, connect(cluster, 3) as client:
        arbiter = client.admin.command("hello")
        assert arbiter["arbiterOnly"] is True
        assert arbiter["arbiters"] == [arbiter["me"]]
        assert len(arbiter["passives"]) == 1


def test_replset_get_status_of_majority_lost_5() -> None:
    with serving("majority-lost-5") as cluster, connect(cluster, 0) as client:
        status = client.admin.command("replSetGetStatus")
        assert status["set"] == "rs0"
        assert status["myState"] == 2
        assert isinstance(status["term"], int)
        assert "date" in status
        members = {m["_id"]: m for m in status["members"]}
        assert sorted(members) == [0, 1, 2, 3, 4]
        assert members[0]["self"] is True
        assert "self" not in members[1]
        assert members[1]["health"] == 1 and members[1]["stateStr"] == "SECONDARY"
        assert optime_key(members[1]) > optime_key(members[0])
        for member_id in (2, 3, 4):
            down = members[member_id]
            assert down["health"] == 0
            assert down["state"] == 8
            assert down["stateStr"] == "(not reachable/healthy)"
            assert down["optime"]["t"] == -1
            assert "Connection refused" in down["lastHeartbeatMessage"]
        for member in members.values():
            for key in ("name", "uptime", "optimeDate", "configVersion"):
                assert key in member, key

        config = client.admin.command("replSetGetConfig")["config"]
        assert config["_id"] == "rs0" and config["version"] == 1
        assert {"_id", "host", "priority", "votes", "arbiterOnly", "hidden"} <= set(config["members"][0])


def test_forced_reconfig_makes_the_most_advanced_survivor_primary() -> None:
    clock = SimulatedClock()
    with serving("majority-lost-5", clock) as cluster:
        with connect(cluster, 0) as observer:
            status = observer.admin.command("replSetGetStatus")
        healthy = [m for m in status["members"] if m["health"] == 1]
        survivor = max(healthy, key=optime_key)["_id"]
        assert survivor == 1

        with connect(cluster, survivor) as client:
            config = client.admin.command("replSetGetConfig")["config"]
            keep = {m["_id"] for m in healthy}
            config["members"] = [m for m in config["members"] if m["_id"] in keep]
            reply = client.admin.command({"replSetReconfig": config, "force": True})
            assert reply["ok"] == 1.0
            # Not primary at once: the survivors first wait out their election timeout (10 s
            # and a random share of 15 %), then elect.
            assert client.admin.command("hello")["isWritablePrimary"] is False
            clock.advance(9)
            assert client.admin.command("hello")["isWritablePrimary"] is False
            clock.advance(5)

            hello = client.admin.command("hello")
            assert hello["isWritablePrimary"] is True
            assert hello["setVersion"] >= 1 + FORCE_VERSION_MIN_INCREMENT

            orders = client.shop.get_collection("orders", write_concern=WriteConcern(w="majority"))
            orders.insert_one({"_id": 7, "item": "after recovery"})
            assert orders.count_documents({}) == 7
            assert orders.find_one({"_id": 7}) == {"_id": 7, "item": "after recovery"}

        with connect(cluster, 0) as other:
            hello = other.admin.command("hello")
            assert hello["isWritablePrimary"] is False
            assert hello["primary"] == f"{cluster.address(1)[0]}:{cluster.address(1)[1]}"


def test_majority_write_concern_error_reaches_pymongo() -> None:
    clock = SimulatedClock()
    with serving("healthy-3", clock) as cluster:
        cluster.kill(2)
        cluster.lag(1, ops=1000)
        with connect(cluster, 0) as client:
            majority = client.shop.get_collection("orders", write_concern=WriteConcern(w="majority", wtimeout=5000))
            before = clock.now()
            with pytest.raises(WriteConcernError) as raised:
                majority.insert_one({"_id": 10})
            # mongod waits the whole wtimeout, then answers (DRIVERS-967 shape).
            assert clock.now() - before >= 5.0
            assert raised.value.code == 64
            details = raised.value.details or {}
            assert details["errmsg"] == "waiting for replication timed out"
            assert details["errInfo"]["wtimeout"] is True
            assert details["errInfo"]["writeConcern"]["wtimeout"] == 5000
            single = client.shop.get_collection("orders", write_concern=WriteConcern(w=1))
            single.insert_one({"_id": 11})
            # The majority write failed its concern but stayed on the primary.
            assert single.count_documents({}) == 5


def test_majority_write_without_wtimeout_blocks_until_the_client_gives_up() -> None:
    with serving("healthy-3", SimulatedClock()) as cluster:
        cluster.kill(2)
        cluster.lag(1, ops=1000)
        host, port = cluster.address(0)
        client: Client = MongoClient(host, port, directConnection=True, socketTimeoutMS=1000, retryWrites=False)
        try:
            orders = client.shop.get_collection("orders", write_concern=WriteConcern(w="majority"))
            started = time.monotonic()
            with pytest.raises(AutoReconnect):  # the socket timeout: no answer ever comes
                orders.insert_one({"_id": 10})
            assert time.monotonic() - started >= 1.0
        finally:
            client.close()


def test_hung_member_makes_pymongo_raise_within_its_timeouts() -> None:
    with serving("hung-member") as cluster:
        started = time.monotonic()
        with connect(cluster, 0, timeout_ms=500) as client, pytest.raises(PyMongoError):
            client.admin.command("ping")
        assert time.monotonic() - started < 3

        # The TCP port itself still accepts: the process is stopped, not gone.
        with closing(socket.create_connection(cluster.address(0), timeout=1)):
            pass

        with connect(cluster, 1, timeout_ms=500) as client:
            assert client.admin.command("ping")["ok"] == 1.0
            cluster.hang(1)
            started = time.monotonic()
            with pytest.raises(AutoReconnect):  # NetworkTimeout is an AutoReconnect
                client.admin.command("ping")
            assert time.monotonic() - started < 2
            cluster.revive(1)


def test_killed_member_refuses_connections_and_revive_reopens() -> None:
    with serving("majority-lost-5") as cluster:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(cluster.address(2), timeout=1).close()
        started = time.monotonic()
        with connect(cluster, 2, timeout_ms=300) as client, pytest.raises(ServerSelectionTimeoutError):
            client.admin.command("ping")
        assert time.monotonic() - started < 2

        cluster.revive(2)
        with connect(cluster, 2) as client:
            assert client.admin.command("ping")["ok"] == 1.0

        with connect(cluster, 0, timeout_ms=300) as client:
            assert client.admin.command("ping")["ok"] == 1.0
            cluster.kill(0)
            with pytest.raises(AutoReconnect):
                client.admin.command("ping")


def test_errors_follow_mongodb_shapes() -> None:
    with serving("majority-lost-5") as cluster, connect(cluster, 1) as client:
        config = client.admin.command("replSetGetConfig")["config"]
        config["version"] += 1
        # pymongo turns the not-primary codes into NotPrimaryError, as with mongod.
        with pytest.raises(NotPrimaryError) as not_primary:
            client.admin.command({"replSetReconfig": config})
        details = not_primary.value.details
        assert isinstance(details, dict)
        assert (details["ok"], details["code"]) == (0.0, 10107)
        assert details["codeName"] == "NotWritablePrimary"
        assert "writable PRIMARY" in details["errmsg"]

        with pytest.raises(OperationFailure) as raised:
            client.shop.command("replSetGetStatus")
        assert raised.value.code == 13

        with pytest.raises(OperationFailure) as raised:
            client.admin.command("noSuchCommand")
        assert raised.value.code == 59

        with pytest.raises(NotPrimaryError):
            client.shop.orders.insert_one({"_id": 99})


def test_legacy_op_query_handshake() -> None:
    with serving("healthy-3") as cluster:
        query = bson.encode({"isMaster": 1, "helloOk": True})
        body = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + query
        message = struct.pack("<iiii", 16 + len(body), 42, 0, OP_QUERY) + body
        with closing(socket.create_connection(cluster.address(0), timeout=2)) as sock:
            sock.sendall(message)
            header = sock.recv(16, socket.MSG_WAITALL)
            length, _, response_to, op_code = struct.unpack("<iiii", header)
            rest = sock.recv(length - 16, socket.MSG_WAITALL)
        assert (response_to, op_code) == (42, OP_REPLY)
        reply = bson.decode(rest[20:])
        assert reply["ismaster"] is True and reply["helloOk"] is True


def test_stop_closes_every_thread_and_port() -> None:
    cluster = WireCluster(build_scenario("healthy-3"))
    addresses = cluster.start()
    # Short client timeouts: pymongo's close() waits for a server to send
    # endSessions to, and stop() has just taken them all away.
    with connect(cluster, 0, timeout_ms=200) as client:
        client.admin.command("ping")
        cluster.stop()
    wait_until(lambda: not _server_threads(), 2, interval=0.02)
    assert _server_threads() == []
    for address in addresses.values():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=1).close()


def _server_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mongowire-")]

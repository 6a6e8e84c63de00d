"""The simulated Elasticsearch server, driven by the official elasticsearch-py client."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from elasticsearch import ApiError, BadRequestError, ConnectionTimeout, Elasticsearch, NotFoundError, TransportError

from drengine.clock import SimulatedClock
from drengine.datastores.elasticsearch.rest import SimServer
from drengine.datastores.elasticsearch.simulator import EsCluster, build_scenario
from tests.helpers import json_rows

pytestmark = pytest.mark.sim



@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


def serve(model: EsCluster) -> Iterator[tuple[SimServer, Elasticsearch]]:
    server = SimServer(model)
    client = Elasticsearch(server.start(), request_timeout=5, max_retries=0)
    try:
        yield server, client
    finally:
        client.close()
        server.stop()


@pytest.fixture
def lost_node(clock: SimulatedClock) -> Iterator[tuple[SimServer, Elasticsearch]]:
    yield from serve(build_scenario("one-node-lost-3", clock))


@pytest.fixture
def stale(clock: SimulatedClock) -> Iterator[tuple[SimServer, Elasticsearch]]:
    yield from serve(build_scenario("red-stale-copy", clock))


def raw_get(url: str, path: str, accept: str) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        connection.request("GET", path, headers={"Accept": accept})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_info_passes_the_client_product_check(lost_node: tuple[SimServer, Elasticsearch]) -> None:
    server, client = lost_node
    info = client.info()
    assert info["tagline"] == "You Know, for Search"
    assert info["version"]["number"].startswith("9.")
    assert info["version"]["build_flavor"] == "default"
    status, headers, _ = raw_get(server.url, "/", "application/vnd.elasticsearch+json; compatible-with=9")
    assert status == 200
    assert headers["x-elastic-product"] == "Elasticsearch"
    assert headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=9"
    assert raw_get(server.url, "/", "application/json")[1]["content-type"] == "application/json"


def test_health_reports_yellow_with_delayed_shards(lost_node: tuple[SimServer, Elasticsearch]) -> None:
    _, client = lost_node
    health = client.cluster.health()
    assert health["status"] == "yellow"
    assert health["number_of_nodes"] == health["number_of_data_nodes"] == 2
    assert health["unassigned_shards"] == health["delayed_unassigned_shards"] == 4
    assert health["active_shards_percent_as_number"] == pytest.approx(100 * 8 / 12)
    assert client.cluster.health(index="orders", level="indices")["indices"]["orders"]["number_of_shards"] == 3


def test_health_wait_times_out_with_408(lost_node: tuple[SimServer, Elasticsearch]) -> None:
    _, client = lost_node
    with pytest.raises(ApiError) as timed_out:
        client.cluster.health(wait_for_status="green", timeout="100ms")
    assert timed_out.value.meta.status == 408
    assert timed_out.value.body["timed_out"] is True
    body = client.options(ignore_status=408).cluster.health(wait_for_status="green", timeout="50ms")
    assert body["status"] == "yellow"


def test_health_wait_moves_a_simulated_clock_through_the_delay_and_the_recoveries(
        lost_node: tuple[SimServer, Elasticsearch], clock: SimulatedClock) -> None:
    """On a SimulatedClock the waiting request is what moves time: from the delay running out
    (60 s) to the replicas' recoveries completing, and no further."""
    _, client = lost_node
    started = time.monotonic()
    health = client.cluster.health(wait_for_status="green", timeout="5m")
    assert health["status"] == "green" and health["timed_out"] is False
    assert 60 <= clock.now() < 120
    assert time.monotonic() - started < 3


def test_health_wait_wakes_on_a_change_in_real_time() -> None:
    from drengine.clock import SYSTEM

    for server, client in serve(build_scenario("one-node-lost-3", SYSTEM)):
        def shorten_delay(server: SimServer = server) -> None:
            time.sleep(0.2)
            server.with_model(lambda m: m.put_index_settings("_all", {"index.unassigned.node_left.delayed_timeout": "0"}))

        mover = threading.Thread(target=shorten_delay)
        mover.start()
        started = time.monotonic()
        health = client.cluster.health(wait_for_status="green", timeout="10s")
        mover.join()
        assert health["status"] == "green" and health["timed_out"] is False
        assert time.monotonic() - started < 8


def test_cat_shards_values_are_strings(lost_node: tuple[SimServer, Elasticsearch]) -> None:
    _, client = lost_node
    # RestShardsAction's default columns; unassigned.reason only when asked for with `h`.
    defaults: Any = client.cat.shards(format="json")
    assert set(defaults[0]) == {"index", "shard", "prirep", "state", "docs", "store", "dataset", "ip", "node"}
    rows: Any = client.cat.shards(format="json", h="index,shard,prirep,state,docs,store,ip,node,unassigned.reason")
    for row in rows:
        assert all(value is None or isinstance(value, str) for value in row.values())
    unassigned = [r for r in rows if r["state"] == "UNASSIGNED"]
    assert len(unassigned) == 4
    assert {r["unassigned.reason"] for r in unassigned} == {"NODE_LEFT"}
    assert unassigned[0]["node"] is None
    narrow: Any = client.cat.shards(index="orders", format="json", h="index,shard,prirep,state,unassigned.reason")
    assert set(narrow[0]) == {"index", "shard", "prirep", "state", "unassigned.reason"}
    assert {r["index"] for r in narrow} == {"orders"}


def test_explain_shapes(lost_node: tuple[SimServer, Elasticsearch]) -> None:
    _, client = lost_node
    rows: Any = client.cat.shards(format="json")
    target = next(r for r in rows if r["state"] == "UNASSIGNED")
    explain = client.cluster.allocation_explain(index=target["index"], shard=int(target["shard"]), primary=False)
    assert explain["current_state"] == "unassigned"
    assert explain["can_allocate"] == "allocation_delayed"
    assert explain["configured_delay_in_millis"] == 60_000
    assert 0 < explain["remaining_delay_in_millis"] <= 60_000
    assert explain["unassigned_info"]["reason"] == "NODE_LEFT"
    assert isinstance(explain["allocate_explanation"], str)
    for decision in explain["node_allocation_decisions"]:
        assert {"node_id", "node_name", "transport_address", "node_attributes", "node_decision"} <= set(decision)
        for decider in decision.get("deciders", []):
            assert set(decider) == {"decider", "decision", "explanation"}
    first = client.cluster.allocation_explain()
    assert first["current_state"] == "unassigned" and "note" in first


def test_explain_without_unassigned_shards_is_a_bad_request(clock: SimulatedClock) -> None:
    model = EsCluster(clock=clock)
    model.add_node("node-1")
    model.create_index("orders", number_of_shards=1, number_of_replicas=0)
    for _, client in serve(model):
        with pytest.raises(BadRequestError) as refused:
            client.cluster.allocation_explain()
        assert refused.value.error == "illegal_argument_exception"
        assert refused.value.body["status"] == 400
        assert refused.value.body["error"]["root_cause"][0]["type"] == "illegal_argument_exception"
        assert "There are no unassigned shards" in refused.value.body["error"]["reason"]


def test_stale_primary_through_reroute(stale: tuple[SimServer, Elasticsearch]) -> None:
    _, client = stale
    explain = client.cluster.allocation_explain(index="orders", shard=0, primary=True)
    assert explain["can_allocate"] == "no_valid_shard_copy"
    holder = next(d["node_name"] for d in explain["node_allocation_decisions"] if d["store"].get("allocation_id"))
    command = {"allocate_stale_primary": {"index": "orders", "shard": 0, "node": holder}}
    with pytest.raises(BadRequestError) as refused:
        client.cluster.reroute(commands=[command])
    assert "accept_data_loss" in refused.value.body["error"]["reason"]
    command["allocate_stale_primary"]["accept_data_loss"] = True
    dry = client.cluster.reroute(commands=[command], dry_run=True, metric="none")
    assert dry["acknowledged"] is True and "state" not in dry
    assert client.cluster.health(index="orders")["status"] == "red"
    done = client.cluster.reroute(commands=[command], explain=True)
    assert done["explanations"][0]["command"] == "allocate_stale_primary"
    assert "routing_table" in done["state"]
    assert done["explanations"][0]["decisions"] == [
        {"decider": "allocate_stale_primary (allocation command)", "decision": "YES", "explanation": "ignore deciders"}]
    assert client.cluster.health(index="orders")["status"] == "red"  # initializing from its store
    assert client.cluster.health(index="orders", wait_for_status="yellow", timeout="1m")["status"] != "red"
    assert client.count(index="orders")["count"] == 5
    with pytest.raises(NotFoundError):
        client.get(index="orders", id="doc-8")


def test_accept_data_loss_as_the_string_true_is_accepted_as_the_parser_reads_it(
        stale: tuple[SimServer, Elasticsearch]) -> None:
    # The allocation commands' ObjectParser reads booleans with Booleans.parseBoolean: "true" is true.
    _, client = stale
    explain = client.cluster.allocation_explain(index="orders", shard=0, primary=True)
    holder = next(d["node_name"] for d in explain["node_allocation_decisions"] if d["store"].get("allocation_id"))
    wrong = {"allocate_stale_primary": {"index": "orders", "shard": 0, "node": holder, "accept_data_loss": "yes"}}
    with pytest.raises(BadRequestError) as refused:
        client.cluster.reroute(commands=[wrong])
    assert refused.value.error == "x_content_parse_exception"
    assert "only [true] or [false] are allowed" in refused.value.body["error"]["reason"]
    command = {"allocate_stale_primary": {"index": "orders", "shard": 0, "node": holder, "accept_data_loss": "true"}}
    done = client.cluster.reroute(commands=[command], explain=True, metric="none")
    assert done["explanations"][0]["decisions"][0]["decision"] == "YES"
    assert client.cluster.health(index="orders", wait_for_status="yellow", timeout="1m")["status"] != "red"


def test_a_refused_command_with_explain_answers_its_no_decision(clock: SimulatedClock) -> None:
    # CancelAllocationCommand / MoveAllocationCommand / explainOrThrowRejectedCommand: with ?explain a
    # refused command is no error but an explanation with one NO decision naming why.
    model = EsCluster(clock=clock)
    for name in ("node-1", "node-2"):
        model.add_node(name)
    model.create_index("orders", number_of_shards=1, number_of_replicas=0)
    for _, client in serve(model):
        _refused_with_explain(client)


def _refused_with_explain(client: Elasticsearch) -> None:
    index, shard = "orders", "0"
    holder = json_rows(client.cat.shards(index="orders", format="json", h="node"))[0]["node"]
    elsewhere = "node-2" if holder == "node-1" else "node-1"
    cancel = {"cancel": {"index": index, "shard": int(shard), "node": elsewhere}}
    with pytest.raises(BadRequestError) as refused:
        client.cluster.reroute(commands=[cancel])
    assert refused.value.body["error"]["reason"].startswith("[cancel_allocation] can't cancel")
    explained = client.cluster.reroute(commands=[cancel], explain=True, metric="none")
    decisions = explained["explanations"][0]["decisions"]
    assert [(d["decider"], d["decision"]) for d in decisions] == [("cancel_allocation_command", "NO")]
    assert decisions[0]["explanation"].startswith(f"can't cancel [{index}][{shard}], failed to find it on node")
    move = {"move": {"index": index, "shard": int(shard), "from_node": elsewhere, "to_node": elsewhere}}
    moved = client.cluster.reroute(commands=[move], explain=True, metric="none")["explanations"][0]["decisions"]
    assert moved == [{"decider": "move_allocation_command", "decision": "NO",
                      "explanation": f"shard [{index}][{shard}] not found"}]


def test_retry_failed_through_reroute(clock: SimulatedClock) -> None:
    for _, client in serve(build_scenario("retries-exhausted", clock)):
        explain = client.cluster.allocation_explain()
        assert explain["unassigned_info"]["failed_allocation_attempts"] == 5
        assert client.cluster.reroute(retry_failed=True, metric="none") == {"acknowledged": True}
        assert client.cluster.health(wait_for_status="green", timeout="1m")["status"] == "green"


def test_allocate_replica_refused_by_a_decider(clock: SimulatedClock) -> None:
    for server, client in serve(build_scenario("allocation-disabled", clock)):
        shards: Any = client.cat.shards(format="json")
        row = next(r for r in shards if r["state"] == "UNASSIGNED")
        of_index: Any = client.cat.shards(index=row["index"], format="json")
        primary_node = next(
            r["node"]
            for r in of_index
            if r["shard"] == row["shard"] and r["prirep"] == "p"
        )
        same: dict[str, dict[str, Any]] = {"allocate_replica": {"index": row["index"], "shard": int(row["shard"]), "node": primary_node}}
        with pytest.raises(BadRequestError) as refused:
            client.cluster.reroute(commands=[same])
        assert "a copy of this shard is already allocated to this node" in refused.value.body["error"]["reason"]
        other = next(n for n in ("node-1", "node-2") if n != primary_node)
        same["allocate_replica"]["node"] = other
        client.cluster.reroute(commands=[same], metric="none")
        index = str(row["index"])

        def index_health(model: EsCluster, index: str = index) -> dict[str, Any]:
            return model.health(index)

        assert server.read(index_health)["unassigned_shards"] < 2


def test_settings_round_trip(lost_node: tuple[SimServer, Elasticsearch]) -> None:
    _, client = lost_node
    put = client.cluster.put_settings(persistent={"cluster.routing.allocation.enable": "primaries"})
    assert put["acknowledged"] is True
    assert client.cluster.get_settings()["persistent"] == {"cluster": {"routing": {"allocation": {"enable": "primaries"}}}}
    assert client.cluster.get_settings(flat_settings=True)["persistent"] == {"cluster.routing.allocation.enable": "primaries"}
    assert "defaults" in client.cluster.get_settings(include_defaults=True)
    client.cluster.put_settings(persistent={"cluster.routing.allocation.enable": None})
    assert client.cluster.get_settings()["persistent"] == {}

    client.indices.put_settings(index="_all", settings={"index.unassigned.node_left.delayed_timeout": "0"})
    settings = client.indices.get_settings(index="orders")["orders"]["settings"]["index"]
    assert settings["unassigned"]["node_left"]["delayed_timeout"] == "0"
    assert client.cluster.health(wait_for_status="green", timeout="1m")["status"] == "green"
    client.indices.put_settings(index="orders", settings={"index": {"number_of_replicas": 0}})
    flat = client.indices.get_settings(index="orders", flat_settings=True)["orders"]["settings"]
    assert flat["index.number_of_replicas"] == "0"
    with pytest.raises(BadRequestError) as refused:
        client.cluster.put_settings(persistent={"cluster.routing.allocation.enable": "maybe"})
    assert refused.value.error == "illegal_argument_exception"


def test_documents_and_index_creation(lost_node: tuple[SimServer, Elasticsearch]) -> None:
    _, client = lost_node
    created = client.indices.create(index="canary", settings={"number_of_shards": 1, "number_of_replicas": 1})
    assert created["acknowledged"] is True
    written = client.index(index="canary", id="probe-1", document={"at": "now"})
    assert written["result"] == "created" and written.meta.status == 201
    assert client.get(index="canary", id="probe-1")["_source"] == {"at": "now"}
    assert client.count(index="canary")["count"] == 1
    with pytest.raises(NotFoundError) as missing:
        client.count(index="no-such-index")
    assert missing.value.error == "index_not_found_exception"
    nodes = client.nodes.info()
    assert len(nodes["nodes"]) == 2
    cat_nodes: Any = client.cat.nodes(format="json", h="name,node.role,master")
    assert {row["name"] for row in cat_nodes} == {"node-1", "node-2"}


def test_hung_server_makes_the_client_time_out(lost_node: tuple[SimServer, Elasticsearch]) -> None:
    server, _ = lost_node
    server.hang()
    impatient = Elasticsearch(server.url, request_timeout=0.3, max_retries=0)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionTimeout):
            impatient.cluster.health()
        assert time.monotonic() - started < 2
        server.hang(False)
        assert impatient.cluster.health()["status"] == "yellow"
    finally:
        impatient.close()


def test_stop_closes_the_socket_and_joins_threads(clock: SimulatedClock) -> None:
    before = threading.active_count()
    server = SimServer(build_scenario("one-node-lost-3", clock))
    url = server.start()
    client = Elasticsearch(url, request_timeout=2, max_retries=0)
    assert client.cluster.health()["status"] == "yellow"  # leaves a keep-alive connection open
    server.hang()
    failures: list[BaseException] = []

    def ask_hung_server() -> None:
        try:
            client.info()
        except TransportError as error:
            failures.append(error)

    stuck = threading.Thread(target=ask_hung_server)
    stuck.start()
    time.sleep(0.1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    stuck.join(5)
    assert not stuck.is_alive() and failures
    client.close()
    parts = urlsplit(url)
    with pytest.raises(OSError):
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=0.5)
    assert threading.active_count() <= before


def test_persisted_state_serves_the_same_answers(stale: tuple[SimServer, Elasticsearch], clock: SimulatedClock) -> None:
    server, client = stale
    saved = json.loads(json.dumps(server.snapshot()))
    for _, again in serve(EsCluster.from_json(saved, clock=clock)):
        assert again.cluster.health().body == client.cluster.health().body
        assert again.cat.shards(format="json").body == client.cat.shards(format="json").body


def test_unknown_parameters_are_refused_with_a_suggestion(lost_node: tuple[SimServer, Elasticsearch]) -> None:
    """BaseRestHandler.handleRequest refuses a parameter the handler does not declare, and
    suggests the close ones (Lucene's Levenshtein similarity above 0.5)."""
    server, _ = lost_node
    status, _, body = raw_get(server.url, "/_cluster/health?wait_for_statu=green", "application/json")
    error = json.loads(body)
    assert status == 400 and error["error"]["type"] == "illegal_argument_exception"
    assert error["error"]["reason"] == ("request [/_cluster/health] contains unrecognized parameter: [wait_for_statu] "
                                        "-> did you mean any of [wait_for_status, wait_for_events, wait_for_nodes]?")
    status, _, body = raw_get(server.url, "/_cat/shards?formt=json", "application/json")
    assert json.loads(body)["error"]["reason"] == ("request [/_cat/shards] contains unrecognized parameter: [formt] -> "
                                                   "did you mean [format]?")
    status, _, body = raw_get(server.url, "/_cluster/health?pretty&human&filter_path=status", "application/json")
    assert status == 200


def test_cat_recovery_shows_copies_recovering_and_done(clock: SimulatedClock) -> None:
    for server, client in serve(build_scenario("recoveries-in-flight", clock)):
        assert client.cat.recovery(format="json", active_only=True) == []
        client.cluster.put_settings(persistent={"cluster.routing.allocation.enable": "all"})
        active = json_rows(client.cat.recovery(format="json", active_only=True))
        assert active and all(r["stage"] != "done" for r in active)
        assert {r["type"] for r in active} <= {"peer", "existing_store", "empty_store"}
        row = active[0]
        assert set(row) == {"index", "shard", "time", "type", "stage", "source_host", "source_node", "target_host",
                            "target_node", "repository", "snapshot", "files", "files_recovered", "files_percent",
                            "files_total", "bytes", "bytes_recovered", "bytes_percent", "bytes_total", "translog_ops",
                            "translog_ops_recovered", "translog_ops_percent"}
        assert all(isinstance(v, str) for v in row.values())
        # Columns asked for by alias are shown under the alias (RestTable.buildDisplayHeaders).
        in_bytes = json_rows(client.cat.recovery(format="json", active_only=True, bytes="b",
                                                             h="i,s,b,br,bp"))
        assert set(in_bytes[0]) == {"i", "s", "b", "br", "bp"}
        assert int(in_bytes[0]["b"]) >= int(in_bytes[0]["br"])
        client.cluster.health(wait_for_status="green", timeout="30m")
        assert client.cat.recovery(format="json", active_only=True) == []
        done = json_rows(client.cat.recovery(format="json"))
        assert done and {r["stage"] for r in done} == {"done"}
        assert server.read(lambda m: m.now()) > 0


def test_no_master_waits_master_timeout_then_503(clock: SimulatedClock) -> None:
    for server, client in serve(build_scenario("one-node-lost-3", clock)):
        for _ in range(2):
            server.with_model(lambda m: m.kill_node(next(n.name for n in m.state.nodes if n.alive)))
        before = clock.now()
        with pytest.raises(ApiError) as refused:
            client.cluster.health(master_timeout="10s")
        assert refused.value.meta.status == 503
        assert refused.value.body["error"] == {
            "root_cause": [{"type": "master_not_discovered_exception", "reason": None}],
            "type": "master_not_discovered_exception", "reason": None}
        assert clock.now() - before == pytest.approx(10, abs=0.1)


def test_served_lab_runs_recoveries_at_its_speed(tmp_path: Any) -> None:
    """`drengine lab serve elasticsearch --speed 50`: real time, fifty times faster: 2 GiB shards
    recover in minutes of the cluster's time, seconds of ours."""
    from drengine.datastores.elasticsearch.lab import serve_simulator

    served = serve_simulator("recoveries-in-flight", 0, tmp_path / "state.json", speed=50)
    url = served.endpoints[0].split(" at ")[1].split()[0]
    client = Elasticsearch(url, request_timeout=30, max_retries=0)
    try:
        client.cluster.put_settings(persistent={"cluster.routing.allocation.enable": "all"})
        started = time.monotonic()
        health = client.cluster.health(wait_for_status="green", timeout="10m")
        took = time.monotonic() - started
        assert health["status"] == "green"
        done = json_rows(client.cat.recovery(format="json", h="ty,t", time="s"))
        longest = max(int(r["t"]) for r in done if r["ty"] == "peer")
        assert longest >= 60 and took < longest / 10  # minutes of cluster time in a few seconds
    finally:
        client.close()
        served.stop()
    assert (tmp_path / "state.json").exists()

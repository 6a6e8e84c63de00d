"""Benchmark of the elasticsearch-reallocate runbook against the HTTP simulator.

big(500 indices, 2,000 primaries, 5 nodes, one lost, every copy 256 MiB): the lost node's ~800
replicas are rebuilt by peer recoveries that take their realistic time on the simulated clock
(indices.recovery.max_bytes_per_sec 40mb per node, two incoming recoveries per node: some 40
minutes of cluster time). Wall time from observe to green of `drengine run` (in-process,
journal and all, following the recoveries) against a minimal script that sends the same
requests with the same client and waits for the same recoveries with one health request;
then drengine at 50 and 500 indices. Prints figures only: timings depend on the machine.

    .venv/bin/python bench/bench_elasticsearch.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from elasticsearch import Elasticsearch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drengine.clock import SimulatedClock  # noqa: E402
from drengine.datastores.elasticsearch.calls import (  # noqa: E402
    DELAY_SETTING,
    HttpCall,
    cat_shards_call,
    cluster_settings_call,
    explain_call,
    health_call,
    index_settings_call,
    nodes_call,
    put_index_settings_calls,
)
from drengine.datastores.elasticsearch.diagnosis import shards_to_explain  # noqa: E402
from drengine.datastores.elasticsearch.esview import build_view  # noqa: E402
from drengine.datastores.elasticsearch.rest import SimServer  # noqa: E402
from drengine.datastores.elasticsearch.sim import save_model  # noqa: E402
from drengine.datastores.elasticsearch.simulator import EsCluster, big  # noqa: E402
from tests.helpers import cli, of_type  # noqa: E402

NODES = 5
SHARDS_PER_INDEX = 4
SHARD_BYTES = 256 * 1024**2
ROUNDS = 3


def inventory(folder: Path, state: Path) -> Path:
    path = folder / "inventory.yaml"
    members = "".join(f"      - {{name: node-{i}, address: 127.0.0.1, port: 9200}}\n" for i in range(1, NODES + 1))
    path.write_text("clusters:\n  es:\n    kind: elasticsearch\n"
                    f"    simulated: {{scenario: big, state_file: {state}}}\n"
                    "    timeouts: {connect: 2, read: 30}\n    members:\n" + members)
    return path


def drengine_run(folder: Path, indices: int) -> tuple[float, int, str]:
    state = folder / f"state-{indices}-{time.perf_counter_ns()}.json"
    save_model(big(indices, SHARDS_PER_INDEX, NODES, 1, shard_bytes=SHARD_BYTES).to_json(), state)
    inv = inventory(folder, state)
    run_dir = folder / f"run-{indices}-{time.perf_counter_ns()}"
    started = time.perf_counter()
    code, out = cli("run", "elasticsearch-reallocate", "-i", str(inv), "-c", "es", "--yes", "--gone", f"node-{NODES}",
                    "--run-dir", str(run_dir))
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"drengine run failed (exit {code}):\n{out}")
    status = EsCluster.from_json(json.loads(state.read_text())).health()["status"]
    looks = [e for e in of_type(run_dir, "statement_sent") if e.data["text"].startswith("GET /_cat/recovery")]
    print(f"    drengine looked at the recoveries {len(looks)} time(s); the first: {looks[0].data['result'] if looks else '-'}")
    return elapsed, len(of_type(run_dir, "statement_sent")), status


def minimal_script(folder: Path, indices: int) -> tuple[float, int, str]:
    """The same requests, straight through the client: observe, explain, shorten, wait, restore."""
    state = folder / f"minimal-{indices}.json"
    save_model(big(indices, SHARDS_PER_INDEX, NODES, 1, shard_bytes=SHARD_BYTES).to_json(), state)
    started = time.perf_counter()
    # Simulated time, as drengine's run of a simulated cluster: the waiting request moves it.
    clock = SimulatedClock(epoch=time.time())
    server = SimServer(EsCluster.from_json(json.loads(state.read_text()), clock=clock))
    client = Elasticsearch(server.start(), request_timeout=60, max_retries=1)
    requests = 0

    def send(call: HttpCall) -> object:
        nonlocal requests
        requests += 1
        headers = {"accept": "application/json"}
        if call.body is not None:
            headers["content-type"] = "application/json"
        target = client.options(ignore_status=list(call.ok_statuses)) if call.ok_statuses else client
        return target.perform_request(call.method, call.target(), headers=headers, body=call.body).body

    try:
        view = build_view("bench", server.url, health=send(health_call()), nodes=send(nodes_call()),  # type: ignore[arg-type]
                          shards=send(cat_shards_call()), cluster_settings=send(cluster_settings_call()),  # type: ignore[arg-type]
                          index_settings=send(index_settings_call()))  # type: ignore[arg-type]
        for target in shards_to_explain(view):
            send(explain_call(*target))
        affected = sorted({s.index for s in view.unassigned})
        send(index_settings_call())  # drengine checks the current values before changing them
        for call in put_index_settings_calls(affected, {DELAY_SETTING: "0"}):
            send(call)
        health = send(health_call("green", 7200))
        print(f"    the recoveries took {clock.now():.0f} s of cluster time")
        send(index_settings_call())
        for call in put_index_settings_calls(affected, {DELAY_SETTING: None}):
            send(call)
        elapsed = time.perf_counter() - started
        status = str(health["status"])  # type: ignore[index]
    finally:
        client.close()
        server.stop()
    return elapsed, requests, status


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="drengine-bench-es-") as tmp:
        folder = Path(tmp)
        drengine_run(folder, 5)  # warm up imports and the client
        print(f"big: {SHARDS_PER_INDEX} primaries per index, 1 replica, {NODES} nodes, node-{NODES} lost and declared gone")
        minimal_50, _, _ = minimal_script(folder, 50)
        # The best of three, alternating with drengine's runs below: a shared machine is noisy.
        minimal, requests, status = min(minimal_script(folder, 500) for _ in range(ROUNDS))
        print(f"minimal script,  50 indices: {minimal_50:.2f} s")
        print(f"minimal script, 500 indices: {minimal:.2f} s ({requests} requests, ends {status})")
        timings = {}
        for indices in (50, 500):
            elapsed, statements, status = min(drengine_run(folder, indices) for _ in range(ROUNDS))
            timings[indices] = elapsed
            print(f"drengine run,  {indices:>3} indices: {elapsed:.2f} s ({statements} requests journaled, ends {status})")
        print(f"ratio drengine / minimal at 500 indices: {timings[500] / minimal:.2f}x (goal <= 1.5x)")
        # 10x the shards is 10x the recoveries, each finishing in a cluster 10x as large: the
        # simulator's own work grows faster than linearly, for the minimal script as for drengine.
        print(f"growth 50 -> 500 indices (10x the shards, 10x the recoveries): drengine "
              f"{timings[500] / timings[50]:.1f}x, minimal script {minimal / minimal_50:.1f}x (goal: drengine's "
              f"growth no worse than the minimal script's)")


if __name__ == "__main__":
    main()

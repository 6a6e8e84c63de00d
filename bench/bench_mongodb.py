"""MongoDB benchmarks against the wire-protocol simulator (prints figures; no assertions).

1. Recovery time: `drengine run mongodb-force-primary --yes --accept-data-loss`, start to a
   verified writable primary (w: majority write acknowledged), against a minimal pymongo
   script sending the same commands (probe every member, forced reconfig on the most
   advanced survivor, wait for the primary, majority write, count), in the same run, each
   on a fresh copy of the majority-lost-5 scenario. Both include serving the simulator.
2. Probe of a five-member set with three members hung (they accept TCP, never answer),
   against the configured timeouts.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from drengine.clock import SimulatedClock, wait_until  # noqa: E402
from drengine.datastores.mongodb.simulator import SimulatedReplicaSet, build_scenario  # noqa: E402
from drengine.datastores.mongodb.wire import WireCluster  # noqa: E402

CONNECT, READ = 0.5, 1.0
ROUNDS = 10

INVENTORY = """\
clusters:
  bench-mongo:
    kind: mongodb
    simulated: {{scenario: majority-lost-5, state_file: {state}}}
    drill_target: true
    timeouts: {{connect: {connect}, read: {read}}}
    members:
{members}
"""


def scenario_file(directory: Path, hung: tuple[int, ...] = ()) -> Path:
    model = build_scenario("majority-lost-5", rng=random.Random(11))
    for member_id in hung:
        model.hang(member_id)
    path = directory / "state.json"
    path.write_text(model.to_json())
    return path


def inventory_file(directory: Path, state: Path) -> str:
    members = "\n".join(f"      - {{name: m{i}, address: 127.0.0.1, port: {27017 + i}}}" for i in range(5))
    path = directory / "inventory.yaml"
    path.write_text(INVENTORY.format(state=state, connect=CONNECT, read=READ, members=members))
    return str(path)


def minimal_script(state: Path, tcp_first: bool = False) -> float:
    """What an operator's hand-written recovery would send, with the same timeouts.
    `tcp_first` adds drengine's plain TCP connect before pymongo, so a refused port is
    skipped at once instead of after the whole server-selection timeout."""
    import socket

    from pymongo import MongoClient

    started = time.perf_counter()
    # Simulated time, as drengine's run of a simulated cluster: the election after the forced
    # reconfig takes its realistic time on this clock, which the script's wait moves.
    clock = SimulatedClock(epoch=time.time())
    wire = WireCluster(SimulatedReplicaSet.from_json(state.read_text(), clock=clock))
    addresses = wire.start()
    ms = int(CONNECT * 1000)
    clients: dict[int, MongoClient[dict[str, Any]]] = {
        mid: MongoClient(host, port, directConnection=True, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms,
                         socketTimeoutMS=int(READ * 1000))
        for mid, (host, port) in addresses.items()
    }

    def probe(mid: int) -> tuple[int, Any] | None:
        try:
            if tcp_first:
                socket.create_connection(addresses[mid], timeout=CONNECT).close()
            admin = clients[mid].admin
            hello = admin.command("hello")
            admin.command("replSetGetStatus")
            config = admin.command("replSetGetConfig")["config"]
            return mid, (hello, config)
        except Exception:  # noqa: BLE001 - an unreachable member is simply left out
            return None

    with cf.ThreadPoolExecutor(len(clients)) as pool:
        answers = [a for a in pool.map(probe, clients) if a is not None]
    best_id, (_, config) = max(answers, key=lambda a: (a[1][0]["lastWrite"]["opTime"]["t"],
                                                        a[1][0]["lastWrite"]["opTime"]["ts"]))
    alive = {a[1][0]["me"] for a in answers}
    config["members"] = [m for m in config["members"] if m["host"] in alive]
    config["version"] += 1
    admin = clients[best_id].admin
    admin.command({"replSetReconfig": config, "force": True})
    assert wait_until(lambda: bool(admin.command("hello")["isWritablePrimary"]), 30, interval=2.0, clock=clock), \
        "no primary after the forced reconfig"
    db = clients[best_id]["drengine"]
    db.command({"insert": "canary", "documents": [{"_id": "x"}], "writeConcern": {"w": "majority", "wtimeout": 5000}})
    db.command({"count": "canary"})
    with cf.ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(lambda c: c.close(), clients.values()))
    wire.stop()
    return time.perf_counter() - started


def drengine_run(directory: Path) -> tuple[float, float]:
    from helpers import cli

    from drengine.journal import read_entries

    inventory = inventory_file(directory, scenario_file(directory))
    run_dir = directory / "run"
    started = time.perf_counter()
    code, out = cli("run", "mongodb-force-primary", "-i", inventory, "-c", "bench-mongo", "--yes", "--accept-data-loss",
                    "--run-dir", str(run_dir))
    total = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"drengine run failed ({code}):\n{out}")
    entries = list(read_entries(run_dir / "journal.jsonl"))
    verified = next(e.ts for e in entries if e.type.value == "step_finished" and e.data["step"] == "verify")
    return verified - entries[0].ts, total


def recovery() -> None:
    os.environ.setdefault("DRENGINE_LOCK_DIR", tempfile.mkdtemp(prefix="drengine-bench-locks-"))
    script, script_tcp, engine, engine_total = [], [], [], []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory(prefix="drengine-bench-") as tmp:
            script.append(minimal_script(scenario_file(Path(tmp))))
        with tempfile.TemporaryDirectory(prefix="drengine-bench-") as tmp:
            script_tcp.append(minimal_script(scenario_file(Path(tmp)), tcp_first=True))
        with tempfile.TemporaryDirectory(prefix="drengine-bench-") as tmp:
            to_verified, total = drengine_run(Path(tmp))
            engine.append(to_verified)
            engine_total.append(total)
    s, st, e = statistics.median(script), statistics.median(script_tcp), statistics.median(engine)
    print(f"recovery (majority-lost-5, three members killed, connect {CONNECT:g} s), medians of {ROUNDS}: "
          f"drengine start to verified writable primary {e * 1000:.0f} ms; minimal pymongo script {s * 1000:.0f} ms "
          f"(ratio {e / s:.2f}x, goal <= 1.5x); the same script with drengine's TCP pre-check {st * 1000:.0f} ms "
          f"(ratio {e / st:.2f}x); whole drengine CLI call incl. report {statistics.median(engine_total) * 1000:.0f} ms")


def probe() -> None:
    from drengine.datastores.mongodb.sim import SimMongoBackend
    from drengine.inventory import load_inventory

    with tempfile.TemporaryDirectory(prefix="drengine-bench-") as tmp:
        directory = Path(tmp)
        state = scenario_file(directory, hung=(2, 3, 4))
        cluster = load_inventory(inventory_file(directory, state)).cluster("bench-mongo")
        times = []
        for _ in range(ROUNDS):
            backend = SimMongoBackend.open(cluster, state)
            try:
                started = time.perf_counter()
                view = backend.observe()
                times.append(time.perf_counter() - started)
            finally:
                backend.close()
        reachable = [m.name for m in view.members if m.reachable]
        t = cluster.timeouts
        print(f"probe: five members, three hung ({', '.join(m.name for m in view.members if not m.reachable)}; "
              f"answered: {', '.join(reachable)}): worst {max(times):.2f} s, median {statistics.median(times):.2f} s "
              f"of {ROUNDS} (connect/server selection {t.connect:g} s, read {t.read:g} s; goal within timeout + 0.5 s "
              f"= {t.connect + 0.5:g} s for a hung handshake, {t.connect + t.read + 0.5:g} s at most)")
        print("probe rounds (s): " + ", ".join(f"{x:.2f}" for x in times))
        print("probe per member (last round): " + json.dumps({m.name: m.probe_seconds for m in view.members}))


if __name__ == "__main__":
    probe()
    recovery()

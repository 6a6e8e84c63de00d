"""The MongoDB runbooks against the simulator served over the wire protocol: the real
pymongo connector talks to simulated mongod endpoints on 127.0.0.1."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

from drengine.datastores.mongodb.simulator import SimulatedReplicaSet, build_scenario
from drengine.datastores.mongodb.simulator.model import MemberState
from tests.helpers import cli, cli_subprocess, of_type

CONNECT, READ = 0.5, 1.0

INVENTORY = """\
hosts:
  localhost: {{address: 127.0.0.1, transport: local}}
clusters:
  sim:
    kind: mongodb
    simulated: {{scenario: {scenario}{state}, speed: 20}}
    drill_target: true
    timeouts: {{connect: {connect}, read: {read}}}
    service: {{stop: 'systemctl stop mongod@{{name}}'}}  # fences the removed members (simulated)
    members:
{members}
"""


def inventory(tmp_path: Path, scenario: str, count: int = 5, state_file: Path | None = None,
              data_dirs: dict[int, Path] | None = None) -> str:
    lines = []
    for i in range(count):
        extra = f", host: localhost, data_dir: {data_dirs[i]}" if data_dirs and i in data_dirs else ""
        extra += f", pid_file: /var/run/mongodb/m{i}.pid"  # SIGKILL fences a hung member (simulated)
        lines.append(f"      - {{name: m{i}, address: 127.0.0.1, port: {27017 + i}{extra}}}")
    state = f", state_file: {state_file}" if state_file else ""
    p = tmp_path / f"inv-{scenario}-{len(list(tmp_path.glob('inv-*')))}.yaml"
    p.write_text(INVENTORY.format(scenario=scenario, state=state, connect=CONNECT, read=READ, members="\n".join(lines)))
    return str(p)


def run(tmp_path: Path, inv: str, *flags: str, runbook: str = "mongodb-force-primary", name: str = "run") -> tuple[int, str, Path]:
    run_dir = tmp_path / name
    code, out = cli("run", runbook, "-i", inv, "-c", "sim", "--run-dir", str(run_dir), *flags)
    return code, out, run_dir


def state(path: Path) -> SimulatedReplicaSet:
    return SimulatedReplicaSet.from_json(path.read_text())


def sent(run_dir: Path) -> list[tuple[str, dict[str, object]]]:
    return [(e.data["target"], json.loads(e.data["text"])) for e in of_type(run_dir, "statement_sent")
            if e.data["language"] == "mongodb"]


def wire_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mongowire-")]


def test_five_members_three_killed_the_more_advanced_survivor_becomes_primary(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, inventory(tmp_path, "majority-lost-5"), "--yes", "--accept-data-loss")
    assert code == 0, out
    assert "chose m1: m1 is the most advanced data-bearing survivor" in out
    assert "keep m0, m1; remove m2, m3, m4" in out
    sim = state(run_dir / "sim-state.json")
    assert sim.primaries() == [1]
    assert sim.node(0).state is MemberState.SECONDARY
    config = sim.get_config(1)
    assert config.version > 1 + 10_000  # the forced reconfig's large random jump
    assert sorted(m.id for m in config.members) == [0, 1]
    commands = sent(run_dir)
    reconfig = [(t, c) for t, c in commands if "replSetReconfig" in c]
    assert len(reconfig) == 1 and reconfig[0][0] == "m1" and reconfig[0][1]["force"] is True
    inserts = [c for _, c in commands if "insert" in c]
    assert inserts and inserts[0]["writeConcern"] == {"w": "majority", "wtimeout": 5000}
    finished = of_type(run_dir, "run_finished")[-1].data
    assert finished["success"] is True
    verify = [e for e in of_type(run_dir, "step_finished") if e.data["step"] == "verify"][-1]
    assert "m2, m3, m4: they MUST stay down until their dbPath is emptied" in verify.data["summary"]
    assert sim.count(1, "drengine.canary") == 1
    assert wire_threads() == []


def test_partition_with_a_primary_alive_is_refused(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, inventory(tmp_path, "partition-primary-alive"), "--yes", "--accept-data-loss")
    assert code == 1, out
    assert "m0 is PRIMARY (m0 answers hello with isWritablePrimary: true)" in out
    assert "why it matters: forcing a new config while a primary exists makes a second primary" in out
    assert "--override check-majority-lost --accept-data-loss" in out
    assert not of_type(run_dir, "statement_sent")
    sim = state(run_dir / "sim-state.json")
    assert sim.primaries() == [0] and sim.get_config(0).version == 1


def test_override_of_the_partition_check_journals_the_risk(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, inventory(tmp_path, "partition-primary-alive"), "--yes", "--accept-data-loss",
                             "--override", "check-majority-lost", "--reason", "m0 is fenced at the proxy")
    assert code == 0, out
    overrides = of_type(run_dir, "override")
    assert len(overrides) == 1
    assert overrides[0].data["step"] == "check-majority-lost"
    assert overrides[0].data["reason"] == "m0 is fenced at the proxy"
    assert "m0 keeps accepting writes that the forced set will never have" in overrides[0].data["risk"]
    assert len(state(run_dir / "sim-state.json").primaries()) == 1


def test_hung_members_cost_one_timeout_not_three(tmp_path: Path) -> None:
    # majority-lost-5 with the three lost members hung (they accept TCP and never answer).
    model = build_scenario("majority-lost-5", rng=random.Random(5))
    for member_id in (2, 3, 4):
        model.hang(member_id)
    state_file = tmp_path / "hung.json"
    state_file.write_text(model.to_json())
    started = time.monotonic()
    code, out, run_dir = run(tmp_path, inventory(tmp_path, "majority-lost-5", state_file=state_file),
                             "--yes", "--accept-data-loss")
    elapsed = time.monotonic() - started
    assert code == 0, out
    assert "the member did not complete the handshake within 0.5 s (hung member?)" in out
    observe = [e for e in of_type(run_dir, "step_finished") if e.data["step"] == "observe"][0]
    probe = observe.data["facts"]["view"]["value"]["probe_seconds"]
    assert probe < CONNECT + READ, probe  # sequential probes of three hung members would take >= 1.5 s
    assert state(state_file).primaries() == [1]
    assert elapsed < 10, elapsed
    assert wire_threads() == []


def test_hung_member_scenario_does_not_stall_and_names_the_primary(tmp_path: Path) -> None:
    started = time.monotonic()
    code, out, run_dir = run(tmp_path, inventory(tmp_path, "hung-member", count=3), "--yes", "--accept-data-loss")
    assert code == 1, out
    assert time.monotonic() - started < 10
    assert "m0 127.0.0.1:" in out and "hung member?" in out
    assert "m1 is PRIMARY" in out


def test_arbiter_never_chosen_and_priority_zero_only_by_override(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "arbiter-and-priority0")
    code, out, run_dir = run(tmp_path, inv, "--yes", "--accept-data-loss")
    assert code == 1, out
    assert "m2 (priority 0) is the most advanced data-bearing survivor" in out
    assert "m3: optime -, priority 0, votes 1, arbiter (not a candidate: an arbiter holds no data)" in out
    assert "--override choose-survivor --accept-data-loss" in out
    assert not of_type(run_dir, "statement_sent")

    code, out, run_dir = run(tmp_path, inv, "--yes", "--accept-data-loss", "--override", "choose-survivor", name="override")
    assert code == 0, out
    assert of_type(run_dir, "override")[0].data["step"] == "choose-survivor"
    sim = state(run_dir / "sim-state.json")
    assert sim.primaries() == [2]
    config = sim.get_config(2)
    entries = {m.id: m for m in config.members}
    # The arbiter is left out: kept beside m2 alone it would change the implicit default write concern (103).
    assert sorted(entries) == [2]
    assert entries[2].priority == 1.0 and entries[2].votes == 1
    assert "Left out: m3 (arbiter)" in out


def test_plan_changes_nothing_and_shows_the_command(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "majority-lost-5")
    code, out = cli("plan", "mongodb-force-primary", "-i", inv, "-c", "sim", "--run-dir", str(tmp_path / "p"))
    assert code == 0, out
    assert "PLAN OK" in out
    assert '[m1] {"replSetReconfig": {"_id": "rs0"' in out and '"force": true}' in out
    assert "- remove m2 (127.0.0.1:" in out or "remove m2, m3, m4" in out
    sim = state(tmp_path / "p" / "sim-state.json")
    assert sim.primaries() == [] and sim.get_config(1).version == 1
    assert not of_type(tmp_path / "p", "statement_sent")


def test_rejoin_of_a_wiped_member(tmp_path: Path) -> None:
    state_file = tmp_path / "shared.json"
    empty = tmp_path / "m2-data"
    empty.mkdir()
    inv = inventory(tmp_path, "majority-lost-5", state_file=state_file, data_dirs={2: empty})
    code, out, _ = run(tmp_path, inv, "--yes", "--accept-data-loss")
    assert code == 0, out

    # Back from the dead without wiping: it still holds its oplog, and is refused.
    sim = state(state_file)
    sim.revive(2)
    sim.settle()
    state_file.write_text(sim.to_json())
    code, out, run_dir = run(tmp_path, inv, "--yes", runbook="mongodb-rejoin", name="not-wiped")
    assert code == 1, out
    assert "m2 still holds its old replica-set config and data (state REMOVED" in out and "rollback/" in out
    assert not [c for _, c in sent(run_dir) if "replSetReconfig" in c]

    # Wiped (the model's dbPath) but the directory the inventory names still holds files.
    sim = state(state_file)
    sim.kill(2)
    sim.wipe(2)
    sim.revive(2)
    state_file.write_text(sim.to_json())
    (empty / "rollback").mkdir()
    code, out, _ = run(tmp_path, inv, "--yes", runbook="mongodb-rejoin", name="dir-not-empty")
    assert code == 1, out
    assert "is not empty" in out and "it holds rollback/: copy those files away first" in out

    (empty / "rollback").rmdir()
    code, out, run_dir = run(tmp_path, inv, "--yes", runbook="mongodb-rejoin", name="rejoin")
    assert code == 0, out
    sim = state(state_file)
    assert sim.node(2).state is MemberState.SECONDARY
    assert sim.primaries() == [1]
    assert sim.count(2, "shop.orders") == 6
    reconfig = [(t, c) for t, c in sent(run_dir) if "replSetReconfig" in c]
    assert len(reconfig) == 1 and reconfig[0][0] == "m1" and "force" not in reconfig[0][1]
    assert "m2 is SECONDARY" in out

    # Nothing left to add (m3, m4 are down): a second run says so.
    code, out, _ = run(tmp_path, inv, "--yes", runbook="mongodb-rejoin", name="again")
    assert code == 1 and "m3, m4 are not in the config but do not answer" in out


def test_rejoin_without_a_data_dir_needs_an_override(tmp_path: Path) -> None:
    state_file = tmp_path / "shared.json"
    inv = inventory(tmp_path, "majority-lost-5", state_file=state_file)
    code, out, _ = run(tmp_path, inv, "--yes", "--accept-data-loss")
    assert code == 0, out
    sim = state(state_file)
    sim.wipe(3)
    sim.revive(3)
    state_file.write_text(sim.to_json())
    code, out, _ = run(tmp_path, inv, "--yes", runbook="mongodb-rejoin", name="refused")
    assert code == 1 and "the inventory gives m3 no `host:` and `data_dir:`" in out
    code, out, run_dir = run(tmp_path, inv, "--yes", "--accept-data-loss", "--override", "check-wiped",
                             runbook="mongodb-rejoin", name="overridden")
    assert code == 0, out
    assert of_type(run_dir, "override")
    assert state(state_file).node(3).state is MemberState.SECONDARY


def test_crash_around_the_forced_reconfig_then_resume_sends_it_once(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "majority-lost-5")
    for point in ("step_started:force-reconfig", "statement_sent:force-reconfig", "step_finished:force-reconfig"):
        run_dir = tmp_path / point.replace(":", "-")
        env = {**os.environ, "DRENGINE_TEST_CRASH_AFTER": point,
               "DRENGINE_SIM_DIR": str(run_dir) + "-cluster"}  # each crash starts from the scenario
        first = cli_subprocess("run", "mongodb-force-primary", "-i", inv, "-c", "sim", "--yes", "--accept-data-loss",
                               "--run-dir", str(run_dir), env=env)
        assert first.returncode == -signal.SIGKILL, (point, first.stdout, first.stderr)
        env.pop("DRENGINE_TEST_CRASH_AFTER")
        second = cli_subprocess("run", "--resume", str(run_dir), "--yes", "--accept-data-loss", env=env)
        assert second.returncode == 0, (point, second.stdout, second.stderr)
        reconfigs = [c for _, c in sent(run_dir) if "replSetReconfig" in c]
        assert len(reconfigs) == 1, (point, reconfigs)
        assert state(run_dir / "sim-state.json").primaries() == [1], point


def test_connector_commands_and_errors_name_member_and_command(tmp_path: Path) -> None:
    import pytest

    from drengine.datastores.mongodb.connector import MongoCommandFailed
    from drengine.datastores.mongodb.sim import SimMongoBackend
    from drengine.errors import ConnectError
    from drengine.inventory import load_inventory

    cluster = load_inventory(inventory(tmp_path, "healthy-3", count=3)).cluster("sim")
    backend = SimMongoBackend.open(cluster, tmp_path / "state.json")
    try:
        assert backend.insert_canary("m0", "marker-1")["n"] == 1
        assert backend.count_canary("m0") == 1
        with pytest.raises(MongoCommandFailed) as raised:
            backend.insert_canary("m1", "marker-2")
        assert raised.value.code == 10107
        assert str(raised.value).startswith("m1 (127.0.0.1:") and "`insert` failed: not primary" in str(raised.value)
        backend.freeze("m2", 60)
        backend.step_down("m0", 60)
        view = backend.observe()
        assert [m.name for m in view.members if m.is_writable_primary] == ["m1"]  # m2 frozen, m0 stepped down
        backend.wire.kill(2)
        with pytest.raises(ConnectError, match=r"^m2 \(127\.0\.0\.1:\d+\): (connection lost during|cannot connect to send) `ping`"):
            backend.command("m2", '{"ping": 1}')
        with pytest.raises(ConnectError, match=r"^m2 \(127\.0\.0\.1:\d+\): cannot connect to send `ping` within 0.5 s"):
            backend.command("m2", '{"ping": 1}')
    finally:
        backend.close()
    assert wire_threads() == []


def test_verify_fails_clearly_when_a_majority_cannot_acknowledge(tmp_path: Path) -> None:
    # m0 survives but applies nothing (lagging far behind): the new two-member set needs both for w: majority.
    model = build_scenario("majority-lost-5", rng=random.Random(7))
    model.lag(0, ops=1000)
    state_file = tmp_path / "lagging.json"
    state_file.write_text(model.to_json())
    code, out, run_dir = run(tmp_path, inventory(tmp_path, "majority-lost-5", state_file=state_file),
                             "--yes", "--accept-data-loss")
    assert code == 1, out
    assert "m1 is primary but the canary write with w: majority failed: waiting for replication timed out" in out
    assert "a majority of the new set cannot acknowledge writes yet" in out
    assert state(state_file).primaries() == [1]

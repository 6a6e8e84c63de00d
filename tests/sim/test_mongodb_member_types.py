"""mongodb-force-primary on survivors of every kind (hidden, non-voting, delayed), on a new set
that cannot acknowledge w: majority, and the fencing of removed members (issue 13): through the
real pymongo connector against the simulator served on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drengine.clock import SimulatedClock
from drengine.datastores.mongodb.sim import SimMongoBackend
from drengine.datastores.mongodb.simulator import SimulatedReplicaSet
from drengine.datastores.mongodb.simulator.model import Process
from drengine.inventory import FenceMethod, load_inventory
from tests.helpers import ROOT, cli, of_type

pytestmark = pytest.mark.sim

INVENTORY = ROOT / "inventory" / "simulated-mongodb.yaml"


def run(tmp_path: Path, cluster: str, *flags: str, inventory: Path = INVENTORY, name: str = "run") -> tuple[int, str, Path]:
    run_dir = tmp_path / name
    code, out = cli("run", "mongodb-force-primary", "-i", str(inventory), "-c", cluster, "--run-dir", str(run_dir), *flags)
    return code, out, run_dir


def final(run_dir: Path) -> SimulatedReplicaSet:
    return SimulatedReplicaSet.from_json((run_dir / "sim-state.json").read_text())


def sent(run_dir: Path) -> list[str]:
    return [e.data["text"] for e in of_type(run_dir, "statement_sent")]


def gate_risks(run_dir: Path, step: str) -> list[str]:
    return [r for e in of_type(run_dir, "gate_asked") if e.data.get("step") == step for r in e.data.get("risks", [])]


@pytest.mark.parametrize(("cluster", "lifted"), [
    ("sim-mongo-hidden", {"priority": 1.0, "hidden": False, "votes": 1}),
    ("sim-mongo-non-voting", {"priority": 1.0, "votes": 1}),
])
def test_the_most_advanced_survivor_configured_never_to_be_primary_is_promoted_by_override(
        tmp_path: Path, cluster: str, lifted: dict[str, object]) -> None:
    code, out, _ = run(tmp_path, cluster, "--yes", "--accept-data-loss")
    assert code == 1, out
    assert "the most advanced survivor, m3, is configured never to be primary" in out
    assert "m4 may be primary as configured but is behind" in out
    code, out, run_dir = run(tmp_path, cluster, "--yes", "--accept-data-loss", "--override", "choose-survivor",
                             name="override")
    assert code == 0, out
    forced = [json.loads(t) for t in sent(run_dir) if "replSetReconfig" in t][0]["replSetReconfig"]
    chosen = next(m for m in forced["members"] if m["_id"] == 3)
    for key, value in lifted.items():
        assert chosen[key] == value, (key, chosen)
    sim = final(run_dir)
    assert sim.primaries() == [3]
    assert sim.count(3, "shop.orders") == 6  # every order kept
    assert sim.count(4, "shop.orders") == 6  # the one behind caught up from the new primary


def test_a_delayed_survivor_is_not_preferred_to_a_current_one_and_that_is_said(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "sim-mongo-delayed", "--yes", "--accept-data-loss")
    assert code == 0, out
    assert "chose m4" in out
    assert "m3 lag(s) behind by design (secondaryDelaySecs)" in out
    sim = final(run_dir)
    assert sim.primaries() == [4]
    kept = {m.id: m for m in sim.get_config(4).members}
    assert kept[3].secondary_delay_secs == 3600 and kept[3].hidden  # the delayed member stays what it was


def test_a_new_set_that_cannot_acknowledge_majority_writes_is_told_from_a_hung_primary(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "sim-mongo-lagging", "--yes", "--accept-data-loss")
    assert code == 1, out
    assert "after the wtimeout of 5 s: the primary answers, but a majority of the data-bearing voters did not " \
           "replicate the write in time" in out
    assert "a slow majority, not a hung member" in out
    verify = [e for e in of_type(run_dir, "step_finished") if e.data.get("step") == "verify"][-1]
    assert any(line.startswith("w: majority counts m0: SECONDARY") for line in verify.data["evidence"])
    assert final(run_dir).primaries() == [1]


def test_an_arbiter_that_would_change_the_implicit_default_write_concern_is_left_out(tmp_path: Path) -> None:
    # Issue 22, item 2: forcing {m2, arbiter m3} turns the implicit default write concern from majority into
    # w: 1, which mongod 5.0+ refuses (103) even forced, and no cluster-wide default can be set without a
    # primary. The runbook forces m2 alone instead and says how to add the arbiter back.
    code, out, run_dir = run(tmp_path, "sim-mongo-arbiter", "--yes", "--accept-data-loss", "--override", "choose-survivor")
    assert code == 0, out
    forced = [json.loads(t) for t in sent(run_dir) if "replSetReconfig" in t][0]["replSetReconfig"]
    assert [m["_id"] for m in forced["members"]] == [2]
    assert "Left out: m3 (arbiter)" in out and "setDefaultRWConcern" in out and "rs.addArb" in out
    risks = gate_risks(run_dir, "force-reconfig")
    assert any(r.startswith("Left out: m3 (arbiter)") for r in risks), risks
    assert not any(r.startswith("m0, m1, m4, m3 are removed") for r in risks), risks  # rejoin adds no arbiter
    force = [e for e in of_type(run_dir, "step_finished") if e.data.get("step") == "force-reconfig"][-1]
    assert any(line.startswith("- leave out m3 (") and "code 103" in line for line in force.data["evidence"])
    sim = final(run_dir)
    assert sim.primaries() == [2] and sim.count(2, "shop.orders") == 3


def test_a_forced_reconfig_that_must_change_the_implicit_default_is_not_sent_and_explained(tmp_path: Path) -> None:
    # Primary-secondary-arbiter, the secondary alone left: {m1} alone has the implicit default w: "majority"
    # where the set had w: 1 (and {m1, m2} would leave m1 without a majority). mongod would answer 103: the gate
    # warns, the step sees no cluster-wide default on m1 right before and does not send it.
    code, out, run_dir = run(tmp_path, "sim-mongo-psa", "--yes", "--accept-data-loss")
    assert code == 1, out
    assert any("mongod may refuse this" in r and "code 103" in r for r in gate_risks(run_dir, "force-reconfig"))
    assert not any("replSetReconfig" in t for t in sent(run_dir))
    assert "not sent: m1 holds no cluster-wide default write concern" in out
    assert "setDefaultRWConcern cannot help now: it runs only on a writable primary" in out
    assert "start a fresh arbiter" in out
    sim = final(run_dir)
    assert sim.primaries() == [] and sim.get_config(1).version == 1


def test_with_a_cluster_wide_default_set_before_the_outage_mongod_accepts_the_change(tmp_path: Path) -> None:
    text = INVENTORY.read_text().replace("scenario: psa-secondary-alone", "scenario: psa-default-set")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(text)
    code, out, run_dir = run(tmp_path, "sim-mongo-psa", "--yes", "--accept-data-loss", inventory=inventory)
    assert code == 0, out
    assert final(run_dir).primaries() == [1]


def test_removed_members_without_a_fence_method_are_unfenced_and_the_run_stops_until_overridden(tmp_path: Path) -> None:
    # Issue 25 item 4: a member that only refuses connections is not fenced. The step says
    # UNFENCED, what it risks and how to fence by hand, and refuses: --yes does not get past it.
    code, out, run_dir = run(tmp_path, "sim-mongo-hung-removed", "--yes", "--accept-data-loss")
    assert code == 1, out
    assert "fenced or down" not in out
    assert "fence-removed ok [ok]: 0 of 3 removed member(s) fenced; UNFENCED: m2, m3, m4" in out, out
    assert "FAILED: step check-fenced failed: UNFENCED: m2, m3, m4" in out, out
    fence = [e for e in of_type(run_dir, "step_finished") if e.data.get("step") == "fence-removed"][-1]
    lines = {line.split(" ", 1)[0]: line for line in fence.data["evidence"]}
    check = [e for e in of_type(run_dir, "step_finished") if e.data.get("step") == "check-fenced"][-1]
    assert "UNFENCED and not confirmed down (it may still run)" in lines["m2"] and "signal: not tried" in lines["m2"]
    assert "UNFENCED (down now: its port refuses connections; but nothing keeps it down)" in lines["m3"], lines
    refusal = "\n".join(check.data["refusal"])
    assert "observed: UNFENCED: m2 (not confirmed down: it may still run); m3 (down now (its port refuses " \
           "connections), but nothing keeps it down)" in refusal, refusal
    assert "a refused connection is not a fence" in refusal
    assert "m2, m3, m4: `systemctl stop mongod` and `systemctl disable mongod`" in refusal
    assert "--override check-fenced --accept-data-loss" in out
    assert not [e for e in of_type(run_dir, "statement_sent") if "replSetReconfig" in e.data["text"]]
    assert final(run_dir).primaries() == []

    # The plan says so too, rather than "a recovery path exists".
    code, out = cli("plan", "mongodb-force-primary", "-i", str(INVENTORY), "-c", "sim-mongo-hung-removed")
    assert code == 1 and "PLAN FAILS: the run would stop at the failed safety check check-fenced" in out, out

    # Fenced by hand: the operator overrides; the forced reconfig's gate still names the split brain.
    code, out, run_dir = run(tmp_path, "sim-mongo-hung-removed", "--yes", "--accept-data-loss", "--override",
                             "check-fenced", name="overridden")
    assert code == 0, out
    risks = gate_risks(run_dir, "force-reconfig")
    assert any(r.startswith("SPLIT BRAIN: m2") and "elects a second primary" in r for r in risks), risks
    assert any("SPLIT BRAIN if m2, m3, m4 start(s) again" in r for r in gate_risks(run_dir, "check-fenced")), \
        gate_risks(run_dir, "check-fenced")
    assert [e.data["step"] for e in of_type(run_dir, "override")] == ["check-fenced"]


def test_a_hung_removed_member_is_fenced_by_sigkill_when_the_inventory_gives_its_pid_file(tmp_path: Path) -> None:
    text = INVENTORY.read_text().replace(
        "  sim-mongo-hung-removed:\n", "  sim-mongo-hung-removed-fenced:\n    service: {stop: 'systemctl stop mongod@{name}'}\n"
        "    fencing: [sql, service, signal]\n", 1)
    text = text.replace("{name: m2, address: 127.0.0.1, port: 27019}",
                        "{name: m2, address: 127.0.0.1, port: 27019, pid_file: /var/run/mongodb/m2.pid}")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(text)
    code, out, run_dir = run(tmp_path, "sim-mongo-hung-removed-fenced", "--yes", "--accept-data-loss", inventory=inventory)
    assert code == 0, out
    attempts = [(e.data["text"], e.data["result"]) for e in of_type(run_dir, "statement_sent")
                if e.data.get("step") == "fence-removed"]
    assert ("systemctl stop mongod@m2", "failed: it did not stop within 10 s: a stopped (hung) process ignores "
                                         "SIGTERM until it wakes") in attempts
    assert ("kill -KILL <pid in /var/run/mongodb/m2.pid>", "ok") in attempts
    assert not any(r.startswith("SPLIT BRAIN") for r in gate_risks(run_dir, "force-reconfig"))
    sim = final(run_dir)
    assert sim.node(2).process is Process.KILLED
    assert sim.primaries() == [1]


def test_a_member_that_answers_is_fenced_by_its_own_step_down_and_shutdown(tmp_path: Path) -> None:
    # A member removed while it answers (it flapped back after the observation) stops itself.
    cluster = load_inventory(str(INVENTORY)).cluster("sim-mongo-healthy")
    backend = SimMongoBackend.open(cluster, tmp_path / "state.json", clock=SimulatedClock())
    try:
        primary = backend.primary()
        assert primary is not None
        attempt = backend.fence(primary, FenceMethod.SQL)
        assert attempt.ok, attempt.detail
        assert [s.text for s in attempt.statements] == ['{"replSetStepDown": 60, "force": true}',
                                                        '{"shutdown": 1, "force": true}']
        assert backend.down(primary) == "its port refuses connections"
        hung = [m.name for m in cluster.members if m.name != primary][0]
        backend.hang(hung)
        refused = backend.fence(hung, FenceMethod.SQL)
        assert not refused.ok and "does not answer" in refused.detail
        assert backend.down(hung) is None  # hung is not down: it may wake
    finally:
        backend.close()

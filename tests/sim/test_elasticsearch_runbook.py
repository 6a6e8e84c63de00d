"""The elasticsearch-reallocate runbook end to end through the CLI, against simulated
clusters served over HTTP on 127.0.0.1 and driven by the real elasticsearch-py client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from drengine.clock import wait_until
from drengine.datastores.elasticsearch.sim import save_model
from drengine.datastores.elasticsearch.simulator import EsCluster, build_scenario
from drengine.datastores.elasticsearch.simulator.model import ENABLE_SETTING
from tests.helpers import ROOT, cli, of_type

pytestmark = pytest.mark.sim

INVENTORY = str(ROOT / "inventory" / "simulated-elasticsearch.yaml")
RUNBOOK = "elasticsearch-reallocate"


@pytest.fixture(autouse=True)
def _every_server_stopped() -> Iterator[None]:
    yield
    # The backend's close() stops its server; give the serving thread a moment to finish.
    assert wait_until(lambda: not any(t.name == "es-sim-http" for t in threading.enumerate()), 5), \
        "a simulated server was left running"


def run(run_dir: Path, cluster: str, *flags: str, inventory: str = INVENTORY) -> tuple[int, str]:
    return cli("run", RUNBOOK, "-i", inventory, "-c", cluster, "--run-dir", str(run_dir), *flags)


def model_after(run_dir: Path, state: Path | None = None) -> EsCluster:
    return EsCluster.from_json(json.loads((state or run_dir / "sim-state.json").read_text()))


def sent(run_dir: Path) -> list[str]:
    """The requests that change something (the health and recovery reads of the wait are journaled too)."""
    return [e.data["text"] for e in of_type(run_dir, "statement_sent") if not e.data["text"].startswith("GET ")]


def looks(run_dir: Path) -> list[tuple[str, str]]:
    """The wait's reads and what they showed."""
    return [(e.data["text"], e.data.get("result", "")) for e in of_type(run_dir, "statement_sent")
            if e.data["text"].startswith("GET ")]


def dangerous_gates(run_dir: Path) -> list[str]:
    return [e.data["step"] for e in of_type(run_dir, "gate_asked") if e.data["level"] == "dangerous"]


def inventory_with_state(tmp_path: Path, scenario: str, state: Path) -> str:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "clusters:\n"
        "  es:\n"
        "    kind: elasticsearch\n"
        f"    simulated: {{scenario: {scenario}, state_file: {state}}}\n"
        "    timeouts: {connect: 1, read: 5}\n"
        "    members:\n"
        + "".join(f"      - {{name: node-{i}, address: 127.0.0.1, port: 9200}}\n" for i in (1, 2, 3))
    )
    return str(path)


def test_one_node_lost_declared_gone_goes_green_and_restores_the_delay(tmp_path: Path) -> None:
    code, out = run(tmp_path / "run", "sim-es-one-node-lost", "--yes", "--gone", "node-3")
    assert code == 0, out
    assert model_after(tmp_path / "run").health()["status"] == "green"
    assert sent(tmp_path / "run") == [
        'PUT /customers,logs-2024.06,orders/_settings {"index.unassigned.node_left.delayed_timeout": "0"}',
        'PUT /customers,logs-2024.06,orders/_settings {"index.unassigned.node_left.delayed_timeout": null}',
    ]
    assert not dangerous_gates(tmp_path / "run")
    assert "cluster is green" in out


def test_one_node_lost_not_declared_gone_stays_yellow_and_says_why(tmp_path: Path) -> None:
    code, out = run(tmp_path / "run", "sim-es-one-node-lost", "--yes")
    assert code == 0, out
    assert sent(tmp_path / "run") == []
    assert "yellow, as expected" in out
    plan = next(e for e in of_type(tmp_path / "run", "step_finished") if e.data["step"] == "plan")
    assert any("waits for node-3" in line and "--gone" in line for line in plan.data["evidence"])
    table = next(e for e in of_type(tmp_path / "run", "step_finished") if e.data["step"] == "explain")
    assert len(table.data["evidence"]) == 4 and all("Would be assigned by" in r for r in table.data["evidence"])


def test_red_with_stale_copy_stops_at_the_dangerous_gate_under_yes_alone(tmp_path: Path) -> None:
    code, out = run(tmp_path / "run", "sim-es-red-stale", "--yes")
    assert code == 3, out
    assert dangerous_gates(tmp_path / "run") == ["allocate-stale-primary"]
    gate = of_type(tmp_path / "run", "gate_asked")[-1].data
    assert any("stale" in r and "is lost" in r for r in gate["risks"])
    assert gate["statements"] == ['[cluster] POST /_cluster/reroute?metric=none {"commands": [{"allocate_stale_primary": '
                                  '{"index": "orders", "shard": 0, "node": "node-3", "accept_data_loss": true}}]}']
    assert not any("allocate_stale_primary" in s for s in sent(tmp_path / "run"))
    model = model_after(tmp_path / "run")
    assert model.health()["status"] == "red"


def test_red_with_stale_copy_goes_green_with_the_stale_data_after_acceptance(tmp_path: Path) -> None:
    assert build_scenario("red-stale-copy").shard_group("orders", 0).primary().state == "UNASSIGNED"
    code, out = run(tmp_path / "run", "sim-es-red-stale", "--yes", "--accept-data-loss", "--gone", "node-2")
    assert code == 0, out
    model = model_after(tmp_path / "run")
    assert model.health()["status"] == "green"
    assert model.count("orders")["count"] == 5  # docs 6-8 reached only the lost in-sync copy
    assert any("allocate_stale_primary" in s and '"node": "node-3"' in s for s in sent(tmp_path / "run"))


def test_stopped_run_resumes_after_acceptance(tmp_path: Path) -> None:
    code, _ = run(tmp_path / "run", "sim-es-red-stale", "--yes")
    assert code == 3
    code, out = cli("run", "--resume", str(tmp_path / "run"), "--yes", "--accept-data-loss")
    assert code == 0, out
    model = model_after(tmp_path / "run")
    assert model.health()["status"] in ("green", "yellow")  # node-2 not declared gone: its replica may wait
    assert model.shard_group("orders", 0).primary().state == "STARTED"


def test_no_copy_gets_an_empty_primary_only_with_acceptance(tmp_path: Path) -> None:
    code, out = run(tmp_path / "stop", "sim-es-red-no-copy", "--yes")
    assert code == 3, out
    assert dangerous_gates(tmp_path / "stop") == ["allocate-empty-primary"]
    assert not any("allocate_empty_primary" in s for s in sent(tmp_path / "stop"))
    assert not dangerous_gates(tmp_path / "stop")[:-1]

    code, out = run(tmp_path / "go", "sim-es-red-no-copy", "--yes", "--accept-data-loss", "--gone", "node-2")
    assert code == 0, out
    assert any("allocate_empty_primary" in s for s in sent(tmp_path / "go"))
    model = model_after(tmp_path / "go")
    assert model.health()["status"] == "green"
    assert model.count("sessions")["count"] == 0  # every document of the shard is lost, as the gate said


def test_allocation_disabled_is_reenabled_and_kept_enabled_as_the_goal(tmp_path: Path) -> None:
    # Issue 25, item 5: 'primaries' is what kept the replicas unassigned; putting it back re-breaks the cluster.
    code, out = run(tmp_path / "run", "sim-es-allocation-disabled", "--yes")
    assert code == 0, out
    assert sent(tmp_path / "run") == [
        'PUT /_cluster/settings {"persistent": {"cluster.routing.allocation.enable": "all"}}',
    ]
    gate = [e.data for e in of_type(tmp_path / "run", "gate_asked") if e.data["step"] == "restore-settings"][-1]
    assert gate["summary"].startswith("keep cluster.routing.allocation.enable at 'all' as the goal (was 'primaries'")
    assert "what kept the unassigned copies from being allocated" in gate["reason"]
    assert "DONE:" in out and "cluster.routing.allocation.enable kept at 'all' by choice (was 'primaries')" in out
    model = model_after(tmp_path / "run")
    assert model.state.persistent[ENABLE_SETTING] == "all"
    assert model.health()["status"] == "green"


def test_allocation_put_back_on_request_is_restored_with_its_risk_at_the_gate(tmp_path: Path) -> None:
    code, out = run(tmp_path / "run", "sim-es-allocation-disabled", "--yes", "--input", "restore_enable=yes")
    assert code == 0, out
    assert sent(tmp_path / "run") == [
        'PUT /_cluster/settings {"persistent": {"cluster.routing.allocation.enable": "all"}}',
        'PUT /_cluster/settings {"persistent": {"cluster.routing.allocation.enable": "primaries"}}',
    ]
    gate = [e.data for e in of_type(tmp_path / "run", "gate_asked") if e.data["step"] == "restore-settings"][-1]
    assert any("goes back to 'primaries'" in r and "stops allocating again" in r for r in gate["risks"]), gate
    assert model_after(tmp_path / "run").state.persistent[ENABLE_SETTING] == "primaries"


def test_node_returning_within_the_delay_gets_nothing_dangerous(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    inventory = inventory_with_state(tmp_path, "node-returns-within-delay", state)
    code, out = run(tmp_path / "first", "es", "--yes", "--accept-data-loss", inventory=inventory)
    assert code == 0, out
    assert not dangerous_gates(tmp_path / "first") and sent(tmp_path / "first") == []
    assert "yellow, as expected" in out

    model = model_after(tmp_path, state)
    model.return_node("node-3")
    save_model(model.to_json(), state)
    code, out = run(tmp_path / "second", "es", "--yes", inventory=inventory)
    assert code == 0, out
    assert sent(tmp_path / "second") == [] and "cluster is green" in out


@pytest.mark.parametrize("scenario", ["red-stale-copy", "allocation-disabled", "one-node-lost-3"])
def test_plan_changes_nothing(tmp_path: Path, scenario: str) -> None:
    state = tmp_path / "state.json"
    save_model(build_scenario(scenario).to_json(), state)
    before = json.loads(state.read_text())
    inventory = inventory_with_state(tmp_path, scenario, state)
    code, out = cli("plan", RUNBOOK, "-i", inventory, "-c", "es", "--gone", "node-3", "--run-dir", str(tmp_path / "plan"))
    assert code == 0, out
    after = json.loads(state.read_text())
    after.pop("seen_at")  # the latest model time a request saw: bookkeeping of time, not a change
    before.pop("seen_at")
    assert after == before
    assert sent(tmp_path / "plan") == []
    assert "WOULD RUN" in out and "Nothing was changed" in out


def test_plan_shows_the_exact_dangerous_request(tmp_path: Path) -> None:
    code, out = cli("plan", RUNBOOK, "-i", INVENTORY, "-c", "sim-es-red-no-copy", "--run-dir", str(tmp_path / "plan"))
    assert code == 0, out
    assert ('POST /_cluster/reroute?metric=none {"commands": [{"allocate_empty_primary": {"index": "sessions", '
            '"shard": 0, "node": "node-3", "accept_data_loss": true}}]}') in out
    assert "RISK: sessions[0] primary: no copy of its data" in out


# ---- what real Elasticsearch does not say, and recoveries that take time --------------------------


def _fresher_stale_copy(state: Path) -> tuple[str, str, int]:
    """(fresher holder, staler holder, documents on the fresher) of orders[0] in a saved model:
    what only the simulator knows."""
    model = EsCluster.from_json(json.loads(state.read_text()))
    group = model.shard_group("orders", 0)
    holders = sorted(((store.max_seq_no, model.node_by_id(node_id).name, len(store.docs))
                      for node_id, store in group.stores.items() if model.node_by_id(node_id).alive), reverse=True)
    return holders[0][1], holders[1][1], holders[0][2]


def test_two_stale_copies_stop_the_run_until_the_operator_chooses(tmp_path: Path) -> None:
    code, out = run(tmp_path / "first", "sim-es-two-stale-copies", "--yes", "--accept-data-loss")
    assert code != 0, out
    assert "does not say which of its 2 stale copies is the most recent" in out
    assert out.count("in_sync false") >= 2 and "--input stale_copy=orders[0]=<node>" in out
    assert not any("allocate_stale_primary" in s for s in sent(tmp_path / "first"))
    fresher, staler, docs = _fresher_stale_copy(tmp_path / "first" / "sim-state.json")

    code, out = run(tmp_path / "wrong", "sim-es-two-stale-copies", "--yes", "--accept-data-loss",
                    "--input", "stale_copy=orders[0]=node-9")
    assert code != 0 and "holds no stale copy of orders[0]" in out

    code, out = run(tmp_path / "chosen", "sim-es-two-stale-copies", "--yes", "--accept-data-loss",
                    "--input", f"stale_copy=orders[0]={fresher}")
    assert code == 0, out
    gate = next(e for e in of_type(tmp_path / "chosen", "gate_asked") if e.data["step"] == "allocate-stale-primary")
    assert gate.data["level"] == "dangerous"
    assert f"allocate a stale primary for orders[0] on {fresher}" == gate.data["summary"]
    assert "does not say which one is the most recent" in gate.data["reason"]
    assert any(f'"node": "{fresher}"' in s for s in sent(tmp_path / "chosen"))
    model = model_after(tmp_path / "chosen")
    assert model.health("orders")["status"] == "green"
    assert model.count("orders")["count"] == docs  # the fresher copy's documents, the staler copy discarded
    assert staler != fresher


def test_recoveries_are_followed_and_allocation_restored_once_they_are_done(tmp_path: Path) -> None:
    code, out = run(tmp_path / "run", "sim-es-recoveries-in-flight", "--yes", "--gone", "node-3")
    assert code == 0, out
    seen = looks(tmp_path / "run")
    progress = [result for text, result in seen if text.startswith("GET /_cat/recovery")]
    assert any("in flight" in p and "copied" in p for p in progress), progress
    assert progress[-1] == "no recovery in flight"
    assert sent(tmp_path / "run") == [
        'PUT /_cluster/settings {"persistent": {"cluster.routing.allocation.enable": "all"}}',
    ]
    model = model_after(tmp_path / "run")
    assert model.health()["status"] == "green" and model.state.persistent[ENABLE_SETTING] == "all"


def test_a_deadline_passing_under_running_recoveries_leaves_allocation_enabled(tmp_path: Path) -> None:
    runbook = tmp_path / "short-wait.yaml"
    text = (ROOT / "runbooks" / f"{RUNBOOK}.yaml").read_text()
    runbook.write_text(text.replace("params: {timeout: 3600, stall: 600, poll: 60}", "params: {timeout: 60, stall: 600, poll: 30}"))
    code, out = cli("run", str(runbook), "-i", INVENTORY, "-c", "sim-es-recoveries-in-flight", "--run-dir",
                    str(tmp_path / "run"), "--yes", "--gone", "node-3")
    assert code != 0, out
    assert "deadline passed while recoveries were still progressing" in out
    assert "cluster.routing.allocation.enable at 'all' as the goal" in out  # kept: 'primaries' caused the outage
    assert sent(tmp_path / "run") == ['PUT /_cluster/settings {"persistent": {"cluster.routing.allocation.enable": "all"}}']
    assert model_after(tmp_path / "run").state.persistent[ENABLE_SETTING] == "all"


def test_a_failed_forced_primary_stays_red_after_the_in_sync_node_returns_until_forced_again(tmp_path: Path) -> None:
    # Issue 22, item 1: Elasticsearch replaces the in-sync set when the forced primary initializes
    # (IndexMetadataUpdater.updateInSyncAllocations); its recovery failing, the node with the old
    # in-sync copy coming back does not make the index green. The runbook says so.
    state = tmp_path / "state.json"
    model = build_scenario("red-stale-copy")
    lost = next(n.name for n in model.state.nodes if not n.alive)
    model.fail_recoveries("orders", 0, 1)  # the only stale copy is found corrupt while it recovers
    save_model(model.to_json(), state)
    inventory = inventory_with_state(tmp_path, "red-stale-copy", state)

    code, out = run(tmp_path / "first", "es", "--yes", "--accept-data-loss", "--gone", lost, inventory=inventory)
    assert code != 0, out
    assert "did not start: its recovery failed" in out
    assert "coming back does NOT bring the shard back" in out

    model = model_after(tmp_path, state)
    model.return_node(lost)
    model.settle()
    assert model.health("orders")["status"] == "red"  # back, but its copy is no longer in sync
    save_model(model.to_json(), state)

    code, out = run(tmp_path / "second", "es", "--yes", "--accept-data-loss", "--input",
                    f"stale_copy=orders[0]={lost}", inventory=inventory)
    assert code == 0, out
    assert any("allocate_stale_primary" in s and f'"node": "{lost}"' in s for s in sent(tmp_path / "second"))
    model = model_after(tmp_path, state)
    assert model.health("orders")["status"] == "green"
    assert model.count("orders")["count"] == 8  # the returned copy's documents, all of them


def test_the_replica_of_a_red_shard_is_explained_as_waiting_for_its_primary(tmp_path: Path) -> None:
    # Issue 22, item 5: Elasticsearch explains such a replica with replica_after_primary_active only
    # (no store rows, no delay): the runbook's explain table says the primary comes first.
    code, out = run(tmp_path / "run", "sim-es-red-stale", "--yes")
    assert code != 0, out  # stops at the dangerous gate without --accept-data-loss
    line = next(row for row in out.splitlines() if "orders[0] replica:" in row)
    assert "its primary is not active" in line and "assigning its primary first" in line
    assert "more for it to come back" not in line


def test_a_plan_that_needs_a_stale_copy_chosen_does_not_promise_green(tmp_path: Path) -> None:
    # Issue 25, item 3: without --input stale_copy the plan fails; its decision must not say green unconditionally.
    code, out = cli("plan", RUNBOOK, "-i", INVENTORY, "-c", "sim-es-two-stale-copies", "--run-dir", str(tmp_path / "p"))
    assert code == 1, out
    decided = [line for line in out.splitlines() if line.startswith("plan [read")][0]
    assert decided.endswith("expected health afterwards: green once a stale copy is chosen for orders[0] "
                            "(--input stale_copy=INDEX[SHARD]=NODE), red without"), decided

"""The change ledger with elasticsearch-reallocate on the simulator (served over HTTP): the
settings the run changes are open entries while it runs, listed at a stop, checked by
`drengine status`, and closed by the run's restore step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli, of_type
from tests.sim.test_elasticsearch_runbook import _every_server_stopped, inventory_with_state, run

pytestmark = pytest.mark.sim
__all__ = ["_every_server_stopped"]


def test_a_stop_lists_the_delay_status_checks_it_and_the_restore_closes_it(tmp_path: Path) -> None:
    state = tmp_path / "es-state.json"
    inventory = inventory_with_state(tmp_path, "red-stale-copy", state)
    code, out = run(tmp_path / "run", "es", "--yes", inventory=inventory)
    assert code == 3, out  # at the dangerous gate allocate-stale-primary, after shorten-delay
    assert "left changed by this run (1 open in the ledger" in out
    assert "[elasticsearch.delayed_timeout] index.unassigned.node_left.delayed_timeout of index orders set to '0' " \
           "(was not set; run" in out
    assert 'undo: PUT /orders/_settings {"index.unassigned.node_left.delayed_timeout": null}' in out
    code, report = cli("report", str(tmp_path / "run"), "--format", "md", "--out", "-")
    assert "## Left changed (open in the change ledger)" in report and "delayed_timeout of index orders" in report

    code, out = cli("status", "-i", inventory, "--json")
    (cluster,) = json.loads(out)["clusters"]
    (change,) = cluster["changes"]
    assert change["holding"] == "still in place" and change["expect_undo_within"] == 4 * 3600
    assert change["entry"]["target"] == "orders index.unassigned.node_left.delayed_timeout"

    code, out = cli("run", "--resume", str(tmp_path / "run"), "--yes", "--accept-data-loss")
    assert code == 0, out
    assert "left changed by this run" not in out
    (closed,) = of_type(tmp_path / "run", "change_closed")
    assert closed.data["step"] == "restore-settings" and closed.data["id"] == change["entry"]["id"]
    code, out = cli("changes", "-i", inventory, "--json")
    assert json.loads(out)["clusters"][0]["entries"] == []


def test_allocation_reenabled_is_opened_then_closed_by_the_restore(tmp_path: Path) -> None:
    code, out = run(tmp_path / "run", "sim-es-allocation-disabled", "--yes")
    assert code == 0, out
    (opened,) = of_type(tmp_path / "run", "change_opened")
    (closed,) = of_type(tmp_path / "run", "change_closed")
    assert opened.data["step"] == "enable-allocation" and closed.data["step"] == "restore-settings"
    entry = opened.data["entry"]
    assert entry["kind"] == "elasticsearch.allocation" and entry["before"] == "primaries" and entry["after"] == "all"
    assert entry["undo"] == 'PUT /_cluster/settings {"persistent": {"cluster.routing.allocation.enable": "primaries"}}'
    assert closed.data["id"] == opened.data["id"] and "left changed by this run" not in out
    assert "open_changes" not in of_type(tmp_path / "run", "run_finished")[-1].data


def test_runs_show_names_what_a_stopped_run_left_changed(tmp_path: Path) -> None:
    code, out = run(tmp_path / "run", "sim-es-red-stale", "--yes")
    assert code == 3, out
    code, out = cli("runs", "show", str(tmp_path / "run"))
    assert code == 0, out
    assert "left changed by this run (1 open in the ledger" in out
    assert 'undo: PUT /orders/_settings {"index.unassigned.node_left.delayed_timeout": null}' in out
    code, report = cli("report", str(tmp_path / "run"), "--format", "md", "--out", "-")
    assert "## Left changed (open in the change ledger)" in report and "delayed_timeout of index orders" in report

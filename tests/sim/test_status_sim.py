"""`drengine status`, `runs`, `--json` and the lab's up-front checks, against the simulators of
all five datastores."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from drengine.errors import InputError
from drengine.inventory import load_inventory
from drengine.lab.procs import LabDir, LabError, check_lab_dir, port_free
from drengine.lab.simulated import serve
from drengine.status import probe_fleet
from tests.helpers import ROOT, cli

CASES = [
    ("simulated.yaml", "sim-mariadb", "down", "mariadb-promote-survivor", "Most advanced replica: db2"),
    ("simulated.yaml", "sim-mariadb-healthy", "healthy", None, "db1 is the primary"),
    ("simulated-galera.yaml", "sim-galera-two-killed", "down", "galera-bootstrap-survivor", "Most advanced running node: g1"),
    ("simulated-galera.yaml", "sim-galera-partition", "split", None, "both sides of a partition"),
    ("simulated-galera.yaml", "sim-galera-one-primary", "degraded", None, "g3 is out of it"),
    ("simulated-galera.yaml", "sim-galera-healthy", "healthy", None, "Synced"),
    ("simulated-mongodb.yaml", "sim-mongo-majority-lost", "down", "mongodb-force-primary", "Most advanced survivor: m1"),
    ("simulated-mongodb.yaml", "sim-mongo-hung", "degraded", None, "m1 is PRIMARY"),
    ("simulated-mongodb.yaml", "sim-mongo-partition", "degraded", None, "m0 is PRIMARY"),
    ("simulated-mongodb.yaml", "sim-mongo-healthy", "healthy", None, "m0 is PRIMARY"),
    ("simulated-ceph.yaml", "sim-ceph-two-osds-down", "down", "ceph-degrade", "I/O is blocked on pool(s) drengine"),
    ("simulated-ceph.yaml", "sim-ceph-one-osd-down", "degraded", "ceph-degrade", "osd.2 down"),
    ("simulated-ceph.yaml", "sim-ceph-mon-quorum-lost", "down", "ceph-mon-quorum", "the monitors have lost quorum"),
    ("simulated-ceph.yaml", "sim-ceph-healthy", "healthy", None, "HEALTH_OK"),
    ("simulated-elasticsearch.yaml", "sim-es-red-no-copy", "down", "elasticsearch-reallocate", "health red"),
    ("simulated-elasticsearch.yaml", "sim-es-one-node-lost", "degraded", "elasticsearch-reallocate", "health yellow"),
    ("simulated-elasticsearch.yaml", "sim-es-healthy", "healthy", None, "health green"),
]


def status_doc(inventory: str, *args: str) -> tuple[int, dict[str, Any]]:
    code, out = cli("status", "-i", inventory, *args, "--json")
    return code, json.loads(out)


@pytest.mark.parametrize("inventory,cluster,verdict,runbook,headline", CASES, ids=[c[1] for c in CASES])
def test_status_of_every_datastore(inventory: str, cluster: str, verdict: str, runbook: str | None, headline: str) -> None:
    path = f"inventory/{inventory}"
    code, doc = status_doc(path, "-c", cluster)
    one = doc["clusters"][0]
    assert one["verdict"] == verdict, one
    assert code == (0 if verdict == "healthy" else 1)
    assert headline in one["headline"], one["headline"]
    runbooks = [a["runbook"] for a in one["advice"] if a["runbook"]]
    if runbook:
        assert runbooks[0] == runbook
        assert one["advice"][0]["command"] == f"drengine plan {runbook} -i {path} -c {cluster}"
    assert len(one["members"]) == len(load_inventory(path).cluster(cluster).members)


def test_text_output_names_the_dead_primary_and_the_command() -> None:
    code, out = cli("status", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb")
    assert code == 1
    assert "sim-mariadb (mariadb, simulated: primary-dead-replica-lagging): DOWN" in out
    assert "the primary db1 is down: dead" in out and "connection refused" in out
    assert "$ drengine plan mariadb-promote-survivor -i inventory/simulated.yaml -c sim-mariadb" in out
    assert "\x1b[" not in out  # no colour off a terminal


def test_fleet_view_and_bad_input() -> None:
    code, out = cli("status", "-i", "inventory/simulated-galera.yaml")
    assert code == 1 and "6 cluster(s) in" in out and "2 healthy" not in out
    code, out = cli("status", "-i", "inventory/nope.yaml")
    assert code == 2
    code, out = cli("status", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb-helthy")
    assert code == 2 and "Did you mean 'sim-mariadb-healthy'" in out


def test_one_bad_cluster_entry_does_not_hide_the_others(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text((ROOT / "inventory/simulated.yaml").read_text().replace("scenario: healthy", "scenario: nonsense"))
    code, doc = status_doc(str(inventory))
    assert code == 2
    verdicts = {c["cluster"]: c for c in doc["clusters"]}
    assert verdicts["sim-mariadb"]["verdict"] == "down"
    assert verdicts["sim-mariadb-healthy"]["verdict"] == "unknown"
    assert "unknown MariaDB scenario 'nonsense'" in verdicts["sim-mariadb-healthy"]["bad_input"]


def test_status_never_changes_a_simulation(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    inventory = tmp_path / "inv.yaml"
    inventory.write_text((ROOT / "inventory/simulated.yaml").read_text().replace(
        "scenario: primary-dead-replica-lagging", f"scenario: primary-dead-replica-lagging\n      state_file: {state}"))
    code, _ = cli("plan", "mariadb-promote-survivor", "-i", str(inventory), "-c", "sim-mariadb", "--run-dir",
                  str(tmp_path / "p"))
    assert code == 0 and not state.exists()  # a plan works on its own copy: it changes nothing
    code, _ = cli("run", "mariadb-promote-survivor", "-i", str(inventory), "-c", "sim-mariadb", "--run-dir",
                  str(tmp_path / "r"), "--yes")
    assert code == 0 and state.exists()
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    code, _ = cli("status", "-i", str(inventory), "-c", "sim-mariadb")
    assert code == 1
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before


def test_fleet_answers_in_about_one_timeout(tmp_path: Path) -> None:
    """Eight clusters, each with a hung member: probed at once, not one after the other."""
    members = "[{name: m0}, {name: m1}, {name: m2}]"
    text = "clusters:\n" + "".join(
        f"  h{i}:\n    kind: mongodb\n    simulated: {{scenario: hung-member}}\n"
        f"    timeouts: {{connect: 0.5, read: 1.0}}\n    members: {members}\n" for i in range(8))
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    fleet = probe_fleet(load_inventory(path))
    assert [c.verdict.value for c in fleet.clusters] == ["degraded"] * 8
    assert all(any(m.state.value == "hung" for m in c.members) for c in fleet.clusters)
    # One after the other this costs at least 8 x 0.5 s; at once, about one timeout.
    assert fleet.seconds < 3.0, fleet.seconds


def test_json_of_plan_and_runbook_list(tmp_path: Path) -> None:
    code, out = cli("plan", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb",
                    "--run-dir", str(tmp_path / "p"), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["success"] is True and doc["exit_code"] == 0
    assert [s["step"] for s in doc["steps"]][:3] == ["observe", "check-no-primary", "choose-survivor"]
    promote = next(s for s in doc["steps"] if s["step"] == "promote")
    assert promote["ran"] is False and "[db2] RESET SLAVE ALL" in promote["statements"]
    code, out = cli("runbook", "list", "--json")
    assert code == 0
    names = {r["name"]: r for r in json.loads(out)}
    assert names["ceph-degrade"]["kind"] == "ceph" and names["ceph-degrade"]["valid"] is True


def test_runs_list_and_show(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cli("plan", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb",
        "--run-dir", str(runs / "a-plan"))
    code, out = cli("run", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb",
                    "--run-dir", str(runs / "b-stopped"))
    assert code == 3  # no terminal and no --yes: stopped at the first gate
    code, out = cli("run", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb-healthy",
                    "--run-dir", str(runs / "c-refused"), "--yes")
    assert code == 1
    code, out = cli("runs", "list", "--runs-dir", str(runs), "--json")
    assert code == 0
    found = {Path(r["run_dir"]).name: r for r in json.loads(out)["runs"]}
    assert found["a-plan"]["mode"] == "plan" and found["a-plan"]["result"] == "done" and not found["a-plan"]["resumable"]
    stopped = found["b-stopped"]
    assert stopped["result"] == "stopped" and stopped["resumable"] is True
    assert stopped["resume_command"] == f"drengine run --resume {runs / 'b-stopped'}"
    assert stopped["operator"] and stopped["cluster"] == "sim-mariadb" and stopped["duration_seconds"] >= 0
    assert found["c-refused"]["result"] == "failed" and not found["c-refused"]["resumable"]
    code, out = cli("runs", "--runs-dir", str(runs))
    assert code == 0 and "resume " in out and f"drengine run --resume {runs / 'b-stopped'}" in out
    code, out = cli("runs", "show", stopped["id"][:16], "--runs-dir", str(runs))
    assert code == 2 and "give more of the id" in out
    code, out = cli("runs", "show", stopped["id"][:-1], "--runs-dir", str(runs))
    assert code == 0, out
    assert "gates:" in out and "promote: stopped" in out and "resumable: $ drengine run --resume" in out
    code, out = cli("runs", "show", "20991231-nope", "--runs-dir", str(runs))
    assert code == 2 and "no run" in out
    code, out = cli("runs", "list", "--runs-dir", str(tmp_path / "missing"))
    assert code == 2 and "--runs-dir" in out


def test_a_killed_run_is_interrupted_and_resumable(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "killed"
    code, _ = cli("run", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb",
                  "--run-dir", str(run_dir))
    # Cut the journal back to before the end, as if the process had been killed (and keep the head honest).
    lines = (run_dir / "journal.jsonl").read_text().splitlines()
    kept = [line for line in lines if '"run_finished"' not in line]
    (run_dir / "journal.jsonl").write_text("\n".join(kept) + "\n")
    last = json.loads(kept[-1])
    (run_dir / "journal.head").write_text(f"{last['seq']:012d} {last['hash']}\n")
    code, out = cli("runs", "list", "--runs-dir", str(tmp_path / "runs"), "--json")
    run = json.loads(out)["runs"][0]
    assert run["result"] == "interrupted" and run["resumable"] and run["journal"] == "intact"


def test_lab_scenario_checked_before_anything_starts(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    code, out = cli("lab", "up", "mongodb", "--scenario", "nonsense", "--dir", str(lab), "--inventory-out",
                    str(tmp_path / "inv.yaml"))
    assert code == 2 and "no mongodb lab scenario named 'nonsense'" in out and "healthy-3" in out
    assert not LabDir(lab).processes() and not (tmp_path / "inv.yaml").exists()
    code, out = cli("lab", "up", "elasticsearch", "--scenario", "red-no-cpy", "--dir", str(lab))
    assert code == 2 and "Did you mean 'red-no-copy'" in out
    code, out = cli("lab", "up", "--help")
    out = re.sub(r"-\n\s+", "-", out)  # click wraps long lists at hyphens
    assert code == 0 and "majority-lost-5" in out and "red-stale-copy" in out


def test_a_server_that_dies_at_start_is_reported(tmp_path: Path) -> None:
    lab = LabDir(tmp_path / "lab")
    free = 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(LabError, match="exited at start"):
        # `drengine lab serve` refuses the scenario and exits after printing its error.
        serve(lab, "mongodb", ["--scenario", "nonsense", "--port", str(free)], [free], ready_prefix="member ")
    assert not any(p.kind == "mongodb" for p in lab.processes())


def test_port_in_time_wait_is_free_the_way_daemons_bind() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert not port_free(port)  # something listens
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its end of the connection sits in TIME_WAIT
    time.sleep(0.1)
    client.close()
    listener.close()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # how the old check looked: refused for a minute
    assert port_free(port)


def test_lab_directory_checked_up_front() -> None:
    # Not pytest's tmp_path: its parents are mode 700, which is what this test builds on purpose.
    root = Path(tempfile.mkdtemp(prefix="drengine-labdir-"))
    try:
        os.chmod(root, 0o755)
        closed = root / "closed"
        closed.mkdir(mode=0o700)
        os.chmod(closed, 0o700)
        with pytest.raises(InputError, match=r"cannot reach .* does not let mysql through.*chmod o\+x"):
            check_lab_dir(closed / "lab", "mysql")
        check_lab_dir(closed / "lab")  # root itself may enter
        code, out = cli("lab", "up", "mariadb", "--dir", str(closed / "lab"))
        assert code == 2 and "does not let mysql through" in out and "internal error" not in out
        assert not (closed / "lab").exists()  # nothing was started or made
        os.chmod(closed, 0o755)
        check_lab_dir(closed / "lab", "mysql")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_registry_in_runs_list_and_status(tmp_path: Path) -> None:
    """A run stopped at a gate is in the cluster's run registry: `runs list -i` and `status` say it
    can be resumed, with the command."""
    run_dir = tmp_path / "runs" / "stopped"
    code, _ = cli("run", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb",
                  "--run-dir", str(run_dir))
    assert code == 3
    code, out = cli("runs", "list", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb", "--runs-dir",
                    str(tmp_path / "runs"))
    assert code == 0, out
    assert "sim-mariadb: lock local" in out and "lock free" in out
    assert "stopped (resumable)" in out and f"$ drengine run --resume {run_dir.resolve()}" in out
    code, out = cli("runs", "list", "-i", "inventory/simulated.yaml", "--json", "--runs-dir", str(tmp_path / "nothing"))
    registry = {c["cluster"]: c for c in json.loads(out)["registry"]}
    assert registry["sim-mariadb"]["runs"][0]["status"] == "stopped (resumable)"
    assert registry["sim-mariadb-healthy"]["runs"] == []
    code, doc = status_doc("inventory/simulated.yaml", "-c", "sim-mariadb")
    assert "is stopped (resumable): drengine run --resume" in doc["clusters"][0]["runs_registry"]


def test_status_shows_where_each_proxy_sends_writes() -> None:
    code, out = cli("status", "-i", str(ROOT / "inventory" / "simulated.yaml"), "-c", "sim-mariadb-healthy", "--json")
    assert code == 0, out
    [cluster] = json.loads(out)["clusters"]
    assert cluster["proxies"] == [{"name": "haproxy1", "state": "writes to one server", "points_to": "db1", "error": ""}]


def test_status_sees_what_a_run_did_and_lab_reset_starts_the_scenario_over(tmp_path: Path) -> None:
    # Issue 25, item 6: each status used to build the scenario afresh, whatever the runs did.
    inventory = "inventory/simulated.yaml"
    code, doc = status_doc(inventory, "-c", "sim-mariadb")
    assert doc["clusters"][0]["verdict"] == "down"
    code, out = cli("run", "mariadb-promote-survivor", "-i", inventory, "-c", "sim-mariadb", "--yes",
                    "--run-dir", str(tmp_path / "run"))
    assert code == 0, out
    code, doc = status_doc(inventory, "-c", "sim-mariadb")
    one = doc["clusters"][0]
    assert one["verdict"] == "degraded" and "db2 is the primary" in one["headline"], one
    assert one["kept_state"] is True
    code, out = cli("status", "-i", inventory, "-c", "sim-mariadb")
    assert "simulated: primary-dead-replica-lagging, as runs left it" in out
    assert f"drengine lab reset -i {inventory} -c sim-mariadb" in out
    code, out = cli("plan", "mariadb-promote-survivor", "-i", inventory, "-c", "sim-mariadb",
                    "--run-dir", str(tmp_path / "plan"))
    assert code == 1 and "a writable primary is reachable: db2" in out  # the next run sees it too
    code, out = cli("lab", "reset", "-i", inventory, "-c", "sim-mariadb")
    assert code == 0 and "sim-mariadb: back to scenario primary-dead-replica-lagging" in out, out
    code, doc = status_doc(inventory, "-c", "sim-mariadb")
    assert doc["clusters"][0]["verdict"] == "down" and doc["clusters"][0]["kept_state"] is False
    code, out = cli("lab", "reset", "-i", inventory, "-c", "sim-mariadb-helthy")
    assert code == 2 and "did you mean" in out.lower(), out

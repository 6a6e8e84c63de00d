"""The MariaDB runbooks against the simulator: every scenario, gates, plan, lock, resume."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from drengine.datastores.mariadb.sim import SimCluster
from tests.helpers import cli, cli_subprocess, events, of_type

INVENTORY = """\
hosts:
  h1: {{address: 127.0.1.11}}
  h2: {{address: 127.0.1.12}}
  h3: {{address: 127.0.1.13}}
clusters:
  sim:
    kind: mariadb
    simulated: {{scenario: {scenario}}}
    drill_target: true
    timeouts: {{connect: 1, read: 2, catch_up: 5}}
    replication: {{user: repl, password: {{env: SIM_REPL_PASSWORD}}}}
    members:
      - {{name: db1, address: 127.0.1.11, port: 3306, host: h1, pid_file: /run/mysqld/mysqld.pid}}
      - {{name: db2, address: 127.0.1.12, port: 3306, host: h2, pid_file: /run/mysqld/mysqld.pid}}
      - {{name: db3, address: 127.0.1.13, port: 3306, host: h3, pid_file: /run/mysqld/mysqld.pid}}
    proxies:
      - name: haproxy1
        api: {{socket: /run/haproxy/admin.sock}}
        frontend: {{address: 127.0.1.10, port: 3306}}
        backends:
          - {{name: mariadb_write, servers: {{db1: db1, db2: db2, db3: db3}}}}
          - {{name: mariadb_read, role: read, servers: {{db1: db1, db2: db2, db3: db3}}}}
"""


@pytest.fixture(autouse=True)
def _replication_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_REPL_PASSWORD", "repl-secret-for-tests")


def inventory(tmp_path: Path, scenario: str) -> str:
    p = tmp_path / f"inv-{scenario}.yaml"
    p.write_text(INVENTORY.format(scenario=scenario))
    return str(p)


def state(run_dir: Path) -> SimCluster:
    return SimCluster.model_validate_json((run_dir / "sim-state.json").read_text())


def run(tmp_path: Path, scenario: str, *flags: str, runbook: str = "mariadb-promote-survivor", name: str = "run") -> tuple[int, str, Path]:
    run_dir = tmp_path / name
    code, out = cli("run", runbook, "-i", inventory(tmp_path, scenario), "-c", "sim", "--run-dir", str(run_dir), *flags)
    return code, out, run_dir


def primary_of(sim: SimCluster) -> list[str]:
    return [s.name for s in sim.servers if s.alive and not s.hung and not s.read_only and s.source is None]


def test_lagging_replica_loses_and_catches_up(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "primary-dead-replica-lagging", "--yes")
    assert code == 0, out
    sim = state(run_dir)
    assert primary_of(sim) == ["db2"]
    db3 = sim.server("db3")
    assert db3.source == "db2" and db3.io_on and db3.sql_on
    assert db3.position() == sim.server("db2").position()  # caught up from the new primary, heartbeat included
    assert "chose db2: db2 has received the most from db1: 0-1-100; db3 received 0-1-90" in out


def test_relay_log_is_applied_before_promotion(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "primary-dead-relay-unapplied", "--yes")
    assert code == 0, out
    sim = state(run_dir)
    assert primary_of(sim) == ["db3"]
    assert len(sim.server("db3").keys()) == 120  # the 20 received-but-unapplied rows survived
    sent = [e.data["text"] for e in of_type(run_dir, "statement_sent") if e.data["target"] == "db3"]
    assert sent[:3] == ["START SLAVE SQL_THREAD", "SELECT MASTER_GTID_WAIT('0-1-120', 5.0)", "STOP SLAVE"]


def test_primary_alive_is_refused_with_override_named(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "primary-alive", "--yes")
    assert code == 1
    assert "a writable primary is reachable: db1" in out
    assert "why it matters: promoting a replica while the primary still takes writes" in out
    assert "--override check-no-primary --accept-data-loss" in out
    assert primary_of(state(run_dir)) == ["db1"]
    assert not of_type(run_dir, "statement_sent")


def test_override_is_journaled_with_the_risk(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "primary-alive", "--yes", "--override", "check-no-primary", "--accept-data-loss",
                             "--reason", "db1 is fenced at the load balancer")
    # The override is honoured and db1 is fenced before the promotion (read-only: no split brain), but
    # the verdict comes from the final observation: db1 follows nobody yet, so the run is not DONE.
    assert code == 1, out
    assert "INCOMPLETE" in out and "db1 follows nobody (read_only=1); run mariadb-rejoin" in out
    assert "overridden: check-no-primary" in out
    overrides = of_type(run_dir, "override")
    assert len(overrides) == 1
    assert overrides[0].data["reason"] == "db1 is fenced at the load balancer"
    assert "is fenced and replaced" in overrides[0].data["risk"]
    sim = state(run_dir)
    assert sim.server("db1").read_only and primary_of(sim) == ["db2"]  # the override fenced db1 by SQL first
    fenced = [e.data for e in of_type(run_dir, "statement_sent") if e.data["step"] == "fence-old-primary"]
    assert fenced[0]["target"] == "db1" and fenced[0]["text"] == "SET GLOBAL read_only=1"


def test_hung_primary_is_fenced_behind_a_dangerous_gate(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "primary-hung", "--yes")
    assert code == 3, out  # --yes does not approve fencing a primary that may be alive
    assert "stopped at step fence-old-primary" in out and "split brain: db1 (hung" in out
    assert primary_of(state(run_dir)) == [] and not of_type(run_dir, "statement_sent")
    code, out, run_dir = run(tmp_path, "primary-hung", "--yes", "--accept-data-loss", name="run2")
    assert code == 0, out
    assert "no answer within the read timeout of 2 s" in out
    sim = state(run_dir)
    assert primary_of(sim) == ["db2"]
    assert not sim.server("db1").alive  # stopped by the service template: it cannot come back writable
    fence = next(e for e in of_type(run_dir, "step_finished") if e.data["step"] == "fence-old-primary")
    assert "db1: sql: SKIPPED: it did not answer the probe (hung); SQL cannot reach it" in fence.data["evidence"]
    assert any(line.startswith("db1: service: FENCED:") for line in fence.data["evidence"])
    assert "db1: signal: NOT NEEDED: already fenced by service" in fence.data["evidence"]
    promote = next(e for e in of_type(run_dir, "gate_asked") if e.data["step"] == "promote")
    assert promote.data["level"] == "confirm"  # fenced: the promotion itself is an ordinary gate
    assert "Fencing: db1 fenced by service: `systemctl stop mariadb` exited 0" in promote.data["reason"]
    writers = [v for v in state(run_dir).proxies[0].admin["mariadb_write"].items() if v[1] == "ready"]
    assert writers == [("db2", "ready")]


def test_all_replicas_down_fails_clearly(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, "all-replicas-down", "--yes")
    assert code == 1
    assert "no server answered" in out and "db2: error 2003: connection refused" in out, out


def test_best_replica_without_binlog_is_skipped_behind_a_dangerous_gate(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "best-replica-without-binlog", "--yes")
    assert code == 3, out
    assert "needs a dangerous gate" in out
    assert primary_of(state(run_dir)) == []
    code, out, run_dir = run(tmp_path, "best-replica-without-binlog", "--yes", "--accept-data-loss", name="run2")
    # The risk the gate named comes true: db2 holds transactions db3 lacks and cannot follow it.
    assert code == 1, out
    assert primary_of(state(run_dir)) == ["db3"]
    assert "db2: replication error" in out and "1236" in out


def test_stop_at_gate_changes_nothing_and_can_resume(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "primary-dead-replica-lagging")
    assert code == 3
    assert "stopped at step promote" in out
    assert not of_type(run_dir, "statement_sent")
    code, out = cli("run", "--resume", str(run_dir), "--yes")
    assert code == 0, out
    assert primary_of(state(run_dir)) == ["db2"]


def test_interactive_break_glass_takes_typed_cluster_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("drengine.cli.recovery._is_interactive", lambda: True)
    # The check refuses (db1 is alive): details, proceed, a wrong name, the right one, a reason; then the dangerous
    # gate of fencing db1 (the cluster name again), and the plain gates of promote, repoint and switch-traffic.
    answers = "d\np\nwrong\nsim\ndb1 is fenced\np\nsim\n\np\n\np\n\np\n\n"
    code, out = cli("run", "mariadb-promote-survivor", "-i", inventory(tmp_path, "primary-alive"), "-c", "sim",
                    "--run-dir", str(tmp_path / "i"), input=answers)
    assert code == 1, out  # db1 stays writable beside db2: INCOMPLETE, not DONE
    assert "INCOMPLETE" in out and "split brain" in out
    assert "SAFETY CHECK REFUSED" in out and "That is not the cluster name" in out
    assert "exact statements:" in out and "[db2] RESET SLAVE ALL" in out
    gates = of_type(tmp_path / "i", "gate_answered")
    assert [g.data["policy"] for g in gates] == ["interactive"] * 5
    assert gates[0].data["reason"] == "db1 is fenced"
    assert of_type(tmp_path / "i", "override")[0].data["reason"] == "db1 is fenced"


def test_plan_changes_nothing_and_shows_statements(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "primary-dead-replica-lagging")
    code, out = cli("plan", "mariadb-promote-survivor", "-i", inv, "-c", "sim", "--run-dir", str(tmp_path / "p"))
    assert code == 0, out
    assert "PLAN OK" in out
    assert "[db2] RESET SLAVE ALL" in out and "[db3] CHANGE MASTER TO MASTER_HOST='127.0.1.12'" in out
    before = SCENARIO_STATE = state(tmp_path / "p")
    assert primary_of(before) == [] and SCENARIO_STATE.server("db3").source == "db1"
    code, out = cli("plan", "mariadb-promote-survivor", "-i", inventory(tmp_path, "primary-alive"), "-c", "sim",
                    "--run-dir", str(tmp_path / "p2"))
    assert code == 1 and "PLAN FAILS: the run would stop at the failed safety check check-no-primary" in out
    assert "--override check-no-primary --accept-data-loss" in out
    assert "[db2] RESET SLAVE ALL" in out  # the path the override would take is shown too
    assert primary_of(state(tmp_path / "p2")) == ["db1"]


def test_rejoin_old_primary(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "old-primary-returned", "--yes", runbook="mariadb-rejoin")
    assert code == 0, out
    sim = state(run_dir)
    assert sim.server("db1").source == "db2" and sim.server("db1").read_only
    assert sim.server("db1").position() == sim.server("db2").position()
    assert "MASTER_DEMOTE_TO_SLAVE=1" in out


def test_rejoin_refuses_errant_transactions(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "old-primary-errant", "--yes", runbook="mariadb-rejoin")
    assert code == 1
    assert "db1 has 3 transaction(s) in domain 0" in out and "rebuild the server from a backup" in out
    assert state(run_dir).server("db1").source is None


def test_secret_never_in_journal_or_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_REPL_PASSWORD", "hunter2-very-secret")
    # The simulator takes the replication password from the inventory like the real connector.
    code, out, run_dir = run(tmp_path, "primary-dead-replica-lagging", "--yes")
    assert code == 0, out
    texts = [out] + [p.read_text() for p in run_dir.iterdir() if p.is_file()]
    assert all("hunter2-very-secret" not in t for t in texts)
    assert "MASTER_PASSWORD='***'" in out
    assert "MASTER_USER='repl'" in out


def test_missing_secret_is_a_clear_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIM_REPL_PASSWORD")
    code, out, _ = run(tmp_path, "primary-dead-replica-lagging", "--yes")
    assert code == 2
    assert "environment variable SIM_REPL_PASSWORD, which is not set" in out


def test_lock_contention_names_the_holder(tmp_path: Path) -> None:
    from drengine.lock import me
    from drengine.lock.local import LocalLock

    held = LocalLock("sim", Path(os.environ["DRENGINE_LOCK_DIR"])).acquire(me("other-run", tmp_path / "other"))
    code, out, _ = run(tmp_path, "primary-dead-replica-lagging", "--yes")
    assert code == 4
    assert "locked by run other-run" in out and "--break-lock" in out
    code, out, run_dir = run(tmp_path, "primary-dead-replica-lagging", "--yes", "--break-lock", name="broken")
    assert code == 0, out
    assert of_type(run_dir, "lock_broken")[0].data["previous"].startswith("run other-run")
    assert held.lost() is not None
    held.release()


def _crash_points(run_dir: Path) -> list[str]:
    """Every journal boundary of a clean run: TYPE:STEP:N for each event that belongs to a step."""
    seen: dict[tuple[str, str], int] = {}
    points = []
    for e in events(run_dir):
        step = e.data.get("step")
        if not step or e.type.value in ("plan_step",):
            continue
        key = (e.type.value, step)
        seen[key] = seen.get(key, 0) + 1
        points.append(f"{e.type.value}:{step}:{seen[key]}")
    return points


def _mutates(data: dict[str, str]) -> bool:
    """Statements that change the cluster (drengine's own schema aside: verify and the proxy canary)."""
    return data["step"] != "verify" and "drengine" not in data["text"]


def test_crash_at_every_boundary_then_resume(tmp_path: Path) -> None:
    """SIGKILL the engine after each journal event of the run (step boundaries and each
    statement inside mutating steps), resume, and check no mutating statement was sent twice
    and none was skipped: the end state equals a clean run's. (The verify step only rewrites
    drengine's heartbeat row, so it may run again.)"""
    code, out, clean = run(tmp_path, "primary-dead-replica-lagging", "--yes", name="clean")
    assert code == 0, out
    clean_sent = [(e.data["target"], e.data["text"]) for e in of_type(clean, "statement_sent") if _mutates(e.data)]
    points = _crash_points(clean)
    assert len(points) > 15
    inv = inventory(tmp_path, "primary-dead-replica-lagging")
    env = {**os.environ}
    for point in points:
        run_dir = tmp_path / f"crash-{point.replace(':', '-')}"
        env["DRENGINE_TEST_CRASH_AFTER"] = point
        env["DRENGINE_SIM_DIR"] = str(run_dir) + "-cluster"  # each crash starts from the scenario
        first = cli_subprocess("run", "mariadb-promote-survivor", "-i", inv, "-c", "sim", "--yes", "--run-dir", str(run_dir), env=env)
        assert first.returncode == -signal.SIGKILL, (point, first.stdout, first.stderr)
        env.pop("DRENGINE_TEST_CRASH_AFTER")
        second = cli_subprocess("run", "--resume", str(run_dir), "--yes", env=env)
        assert second.returncode == 0, (point, second.stdout, second.stderr)
        sent = [(e.data["target"], e.data["text"]) for e in of_type(run_dir, "statement_sent") if _mutates(e.data)]
        mutating = [s for s in sent if not s[1].startswith("SELECT")]
        assert len(mutating) == len(set(mutating)), (point, sent)
        assert [s for s in clean_sent if not s[1].startswith("SELECT")] == mutating, (point, sent)
        sim = state(run_dir)
        assert primary_of(sim) == ["db2"], point
        assert sim.server("db3").source == "db2" and sim.server("db3").position() == sim.server("db2").position(), point
        env["DRENGINE_TEST_CRASH_AFTER"] = ""


def test_resume_refuses_tampered_journal(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "primary-dead-replica-lagging")
    assert code == 3
    p = run_dir / "journal.jsonl"
    lines = p.read_text().splitlines(keepends=True)
    raw = json.loads(lines[1])
    raw["data"]["x"] = 1
    lines[1] = json.dumps(raw) + "\n"
    p.write_text("".join(lines))
    code, out = cli("run", "--resume", str(run_dir), "--yes")
    assert code == 2 and "cannot resume" in out and "journal.jsonl:2" in out


def test_override_of_an_unknown_check_is_refused(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "primary-alive", "--yes", "--override", "check-no-primry", "--accept-data-loss")
    assert code == 2
    assert "has no safety check named 'check-no-primry'. Did you mean 'check-no-primary'?" in out
    assert "Its checks are: check-no-primary" in out
    assert not (run_dir / "journal.jsonl").exists()


def test_the_goal_names_a_stopped_replica_of_the_primary_by_its_address(tmp_path: Path) -> None:
    """Issue 21: "db2 replicates from 127.0.0.1:23063, not from db3" when db3 IS that address."""
    from drengine.datastores.mariadb.goals import replication_goal
    from drengine.datastores.mariadb.sim import SimMariaDBBackend, scenario_old_primary_returned
    from drengine.inventory import load_inventory

    cluster = load_inventory(inventory(tmp_path, "healthy")).cluster("sim")
    sim = scenario_old_primary_returned(cluster)
    sim.server("db1").alive = False
    sim.server("db3").io_on = False  # db3 points at db2, the primary, but its IO thread stopped
    holds, summary, left = replication_goal(SimMariaDBBackend(cluster, sim, None).observe())
    assert not holds
    assert "db3 points at db2 but IO=No" in summary, summary
    assert "not from db2" not in summary

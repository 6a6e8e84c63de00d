"""The MariaDB runbooks against three real mariadbd processes with GTID replication."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drengine.clock import wait_until
from drengine.datastores.mariadb import lab as lab_mariadb
from drengine.lab.procs import LabDir
from tests.helpers import cli, cli_subprocess, mariadb_lab, of_type


@pytest.fixture
def lab() -> Iterator[tuple[LabDir, str]]:
    with mariadb_lab("drengine-mariadb-lab-") as made:
        yield made


def sql(lab: LabDir, name: str, *statements: str) -> list[tuple[Any, ...]]:
    return lab_mariadb.sql(lab, name, *statements)


def write_rows(lab: LabDir, first: int, count: int) -> None:
    sql(lab, "db1", "CREATE DATABASE IF NOT EXISTS app",
        "CREATE TABLE IF NOT EXISTS app.t (id INT PRIMARY KEY)",
        *[f"INSERT INTO app.t VALUES ({i})" for i in range(first, first + count)])


def rows(lab: LabDir, name: str) -> int:
    return int(sql(lab, name, "SELECT COUNT(*) FROM app.t")[0][0])


def slave(lab: LabDir, name: str) -> dict[str, object]:
    import pymysql

    conn = pymysql.connect(unix_socket=str(lab.root / "mariadb" / name / "mysqld.sock"), user="root",
                           password=(lab.root / "mariadb" / "root.password").read_text().strip(),
                           cursorclass=pymysql.cursors.DictCursor)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            row = cur.fetchone()
            return dict(row) if row else {}
    finally:
        conn.close()


def read_only(lab: LabDir, name: str) -> int:
    return int(sql(lab, name, "SELECT @@read_only")[0][0])


def run(inventory: str, run_dir: Path, *flags: str, runbook: str = "mariadb-promote-survivor") -> tuple[int, str]:
    return cli("run", runbook, "-i", inventory, "-c", "lab-mariadb", "--run-dir", str(run_dir), *flags)


def assert_promoted(lab: LabDir, new: str, other: str, expected_rows: int) -> None:
    assert read_only(lab, new) == 0 and slave(lab, new) == {}
    s = slave(lab, other)
    assert s["Master_Port"] == 23061 + lab_mariadb.NAMES.index(new)
    assert s["Slave_IO_Running"] == "Yes" and s["Slave_SQL_Running"] == "Yes" and s["Using_Gtid"] == "Slave_Pos"
    assert rows(lab, new) == expected_rows
    assert wait_until(lambda: rows(lab, other) == expected_rows, 10)


def test_primary_killed_lagging_replica_catches_up(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    lab_dir, inventory = lab
    write_rows(lab_dir, 1, 10)
    lab_mariadb.wait_replicated(lab_dir)
    sql(lab_dir, "db3", "STOP SLAVE IO_THREAD")  # db3 lags: it receives nothing more
    write_rows(lab_dir, 11, 20)
    lab_mariadb.wait_replicated(lab_dir, replicas=("db2",))
    lab_mariadb.kill(lab_dir, "db1")
    started = time.monotonic()
    code, out = run(inventory, tmp_path / "r", "--yes")
    took = time.monotonic() - started
    assert code == 0, out
    assert "chose db2" in out
    assert_promoted(lab_dir, "db2", "db3", 30)
    assert took < 10, took
    secrets = [(lab_dir.root / "mariadb" / f"{n}.password").read_text().strip() for n in ("root", "repl")]
    written = [out] + [p.read_text() for p in (tmp_path / "r").iterdir() if p.is_file()]
    assert all(s not in text for s in secrets for text in written)
    assert "MASTER_PASSWORD='***'" in out


def test_relay_log_received_but_unapplied_is_kept(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    lab_dir, inventory = lab
    write_rows(lab_dir, 1, 5)
    lab_mariadb.wait_replicated(lab_dir)
    sql(lab_dir, "db2", "STOP SLAVE SQL_THREAD")  # db2 receives but does not apply
    sql(lab_dir, "db3", "STOP SLAVE IO_THREAD")  # db3 receives nothing more
    write_rows(lab_dir, 6, 25)
    pos = sql(lab_dir, "db1", "SELECT @@gtid_binlog_pos")[0][0]
    assert wait_until(lambda: slave(lab_dir, "db2").get("Gtid_IO_Pos") == pos, 10)
    lab_mariadb.kill(lab_dir, "db1")
    code, out = run(inventory, tmp_path / "r", "--yes")
    assert code == 0, out
    assert "START SLAVE SQL_THREAD" in out and "MASTER_GTID_WAIT" in out
    assert_promoted(lab_dir, "db2", "db3", 30)


def through_proxy(lab: LabDir, sql_text: str) -> list[tuple[object, ...]]:
    """A statement through HAProxy's write frontend, as the application account."""
    import pymysql

    password = (lab.root / "mariadb" / "app.password").read_text().strip()
    conn = pymysql.connect(host="127.0.0.1", port=lab_mariadb.WRITE_PORT, user="app", password=password,
                           connect_timeout=2, read_timeout=3, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql_text)
            return list(cur.fetchall())
    finally:
        conn.close()


def writable(lab: LabDir) -> list[str]:
    out = []
    for name in lab_mariadb.NAMES:
        if not lab_mariadb.is_running(lab, name):
            continue
        ro, channels = sql(lab, name, "SELECT @@read_only")[0][0], slave(lab, name)
        if ro == 0 and not channels:
            out.append(name)
    return out


@pytest.mark.parametrize("fencing", [None, ["signal"]])
def test_hung_primary_is_fenced_then_wakes_to_one_writable_primary(lab: tuple[LabDir, str], tmp_path: Path,
                                                                   fencing: list[str] | None) -> None:
    """Issue 13's first "done when": primary hung (SIGSTOP), run with --yes --accept-data-loss, then
    the old primary wakes up: exactly one writable primary, and HAProxy's write frontend reaches it."""
    lab_dir, inventory = lab
    if fencing is not None:
        data = yaml.safe_load(Path(inventory).read_text())
        data["clusters"]["lab-mariadb"]["fencing"] = fencing
        Path(inventory).write_text(yaml.safe_dump(data, sort_keys=False))
    write_rows(lab_dir, 1, 5)
    lab_mariadb.wait_replicated(lab_dir)
    assert through_proxy(lab_dir, "SELECT @@server_id") == [(1,)]
    lab_mariadb.hang(lab_dir, "db1")
    try:
        code, out = run(inventory, tmp_path / "r1", "--yes")
        assert code == 3, out  # fencing a primary that may be alive is a dangerous gate: --yes is not enough
        assert "split brain: db1 (hung" in out
        assert not of_type(tmp_path / "r1", "statement_sent")
        started = time.monotonic()
        code, out = run(inventory, tmp_path / "r2", "--yes", "--accept-data-loss")
        took = time.monotonic() - started
        assert code == 0, out
        method = "signal" if fencing else "service"
        fence = next(e for e in of_type(tmp_path / "r2", "step_finished") if e.data["step"] == "fence-old-primary")
        assert any(line.startswith(f"db1: {method}: FENCED") for line in fence.data["evidence"]), fence.data["evidence"]
        assert took < 20, took
    finally:
        if lab_mariadb.is_running(lab_dir, "db1"):
            lab_mariadb.resume(lab_dir, "db1")  # the old primary wakes up; nothing else is done to it
    assert writable(lab_dir) in (["db2"], ["db3"])
    new = writable(lab_dir)[0]
    new_id = sql(lab_dir, new, "SELECT @@server_id")[0][0]
    assert through_proxy(lab_dir, "SELECT @@server_id") == [(new_id,)]
    through_proxy(lab_dir, "INSERT INTO drengine.heartbeat (id, written_at) VALUES ('after-wake', 1)")
    assert sql(lab_dir, new, "SELECT COUNT(*) FROM drengine.heartbeat WHERE id = 'after-wake'") == [(1,)]
    traffic = next(e for e in of_type(tmp_path / "r2", "step_finished") if e.data["step"] == "switch-traffic")
    assert any(f"landed on {new}" in line and "GTID 0-" in line for line in traffic.data["evidence"]), traffic.data


def positions(lab: LabDir) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for n in ("db2", "db3"):
        s = slave(lab, n)
        out.append((n, sql(lab, n, "SELECT @@gtid_binlog_pos, @@gtid_slave_pos, @@read_only")[0],
                    s.get("Master_Port"), s.get("Using_Gtid"), s.get("Slave_SQL_Running")))
    return out


def test_plan_changes_nothing(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    lab_dir, inventory = lab
    write_rows(lab_dir, 1, 5)
    lab_mariadb.wait_replicated(lab_dir)
    lab_mariadb.kill(lab_dir, "db1")
    before = positions(lab_dir)
    code, out = cli("plan", "mariadb-promote-survivor", "-i", inventory, "-c", "lab-mariadb", "--run-dir", str(tmp_path / "p"))
    assert code == 0, out
    assert "RESET SLAVE ALL" in out and "CHANGE MASTER TO" in out and "MASTER_PASSWORD='***'" in out
    assert positions(lab_dir) == before


def test_primary_alive_refused_then_overridden(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    lab_dir, inventory = lab
    before = positions(lab_dir)
    code, out = run(inventory, tmp_path / "r1", "--yes")
    assert code == 1, out
    assert "a writable primary is reachable: db1" in out
    assert positions(lab_dir) == before
    code, out = run(inventory, tmp_path / "r2", "--yes", "--override", "check-no-primary", "--accept-data-loss",
                    "--reason", "drill: db1 is fenced")
    # Overridden: db1 is fenced by SQL before the promotion (read-only, its clients cut; db2 first
    # applies everything db1 wrote); the final observation says db1 still needs rejoining.
    assert code == 1, out
    assert "INCOMPLETE" in out and "db1 follows nobody (read_only=1); run mariadb-rejoin" in out
    assert of_type(tmp_path / "r2", "override")[0].data["reason"] == "drill: db1 is fenced"
    assert read_only(lab_dir, "db2") == 0 and read_only(lab_dir, "db1") == 1
    assert writable(lab_dir) == ["db2"]
    code, out = run(inventory, tmp_path / "r3", "--yes", runbook="mariadb-rejoin")
    assert code == 0, out
    assert through_proxy(lab_dir, "SELECT @@server_id") == [(2,)]


def test_all_members_down_fails_clearly(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    lab_dir, inventory = lab
    for n in lab_mariadb.NAMES:
        lab_mariadb.kill(lab_dir, n)
    started = time.monotonic()
    code, out = run(inventory, tmp_path / "r", "--yes")
    assert code == 1
    assert "no server answered" in out and "db1: error 2003: connection refused" in out, out
    assert time.monotonic() - started < 10


def test_rejoin_returned_old_primary(lab: tuple[LabDir, str], tmp_path: Path) -> None:
    lab_dir, inventory = lab
    write_rows(lab_dir, 1, 5)
    lab_mariadb.wait_replicated(lab_dir)
    lab_mariadb.kill(lab_dir, "db1")
    code, out = run(inventory, tmp_path / "r", "--yes")
    assert code == 0, out
    sql(lab_dir, "db2", "INSERT INTO app.t VALUES (100)")
    lab_mariadb.start_server(lab_dir, "db1")
    code, out = run(inventory, tmp_path / "j", "--yes", runbook="mariadb-rejoin")
    assert code == 0, out
    s = slave(lab_dir, "db1")
    assert s["Master_Port"] == 23062 and s["Slave_SQL_Running"] == "Yes" and read_only(lab_dir, "db1") == 1
    assert wait_until(lambda: rows(lab_dir, "db1") == 6, 10)
    # Back in the proxy as the lab inventory says: ready in the read backend, in maint for writes.
    readmit = [e.data["text"] for e in of_type(tmp_path / "j", "statement_sent") if e.data["step"] == "readmit"]
    assert any("set server mariadb_read/db1 state ready" in t for t in readmit), readmit


CRASH_POINTS = [
    "step_finished:observe:1",
    "step_finished:choose-survivor:1",
    "gate_answered:promote:1",
    "statement_sent:promote:1",  # inside the mutating step: after STOP SLAVE
    "statement_sent:promote:2",  # after RESET SLAVE ALL, before read_only=0
    "step_finished:promote:1",
    "statement_sent:repoint-replicas:2",  # after CHANGE MASTER, before START SLAVE
    "step_finished:repoint-replicas:1",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_and_resume_on_real_servers(lab: tuple[LabDir, str], tmp_path: Path, point: str) -> None:
    lab_dir, inventory = lab
    write_rows(lab_dir, 1, 5)
    lab_mariadb.wait_replicated(lab_dir)
    lab_mariadb.kill(lab_dir, "db1")
    run_dir = tmp_path / "r"
    env = {**os.environ, "DRENGINE_TEST_CRASH_AFTER": point}
    first = cli_subprocess("run", "mariadb-promote-survivor", "-i", inventory, "-c", "lab-mariadb", "--yes",
                           "--run-dir", str(run_dir), env=env)
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    env.pop("DRENGINE_TEST_CRASH_AFTER")
    second = cli_subprocess("run", "--resume", str(run_dir), "--yes", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    sent = [(e.data["target"], e.data["text"]) for e in of_type(run_dir, "statement_sent")
            if e.data["step"] != "verify" and not e.data["text"].startswith("SELECT")]
    assert len(sent) == len(set(sent)), sent
    assert_promoted(lab_dir, "db2", "db3", 5)

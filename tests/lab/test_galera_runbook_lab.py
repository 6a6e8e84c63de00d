"""galera-bootstrap-survivor against a real three-node Galera cluster on loopback, its nodes
reached over SSH lab hosts: two of three nodes killed, all three killed with a node other
than the first most advanced, a hung node, and a healthy cluster (refused).

One lab for the module, started in a world-searchable mkdtemp (the nodes run as mysql) and
always torn down by PID; a stopped (SIGSTOP) node is continued before anything else.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drengine.clock import wait_until
from drengine.datastores.galera import lab as galera
from drengine.lab import ssh as ssh_lab
from drengine.lab.procs import LabDir, LabError
from tests.helpers import cli, of_type

pytestmark = pytest.mark.lab

NODES = list(galera.NODE_NAMES)
RUNBOOK = "galera-bootstrap-survivor"
PORT_BASE = 3326  # not the Galera lab's default 3316, nor the MariaDB lab's 23061-23063
SSH_FIRST = "127.0.0.41"


class Lab:
    def __init__(self, root: Path, inventory: Path) -> None:
        self.root = root
        self.dir = LabDir(root)
        self.inventory = inventory
        self.runs = 0

    def query(self, node: str, sql: str, timeout: float = 5.0) -> list[tuple[Any, ...]]:
        conn = galera.connect(self.dir, node, timeout=timeout)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def status(self, node: str) -> dict[str, str]:
        return galera.wsrep_status(self.dir, node)

    def run(self, *flags: str, resume: Path | None = None) -> tuple[int, str, Path]:
        self.runs += 1
        if resume is not None:
            code, out = cli("run", "--resume", str(resume), *flags)
            return code, out, resume
        run_dir = self.root / f"run-{self.runs}"
        code, out = cli("run", RUNBOOK, "-i", str(self.inventory), "-c", galera.CLUSTER, "--run-dir", str(run_dir), *flags)
        return code, out, run_dir

    def wait_whole(self, timeout: float = 60.0) -> None:
        """Every node Synced in one Primary component of size 3."""

        def whole() -> bool:
            try:
                return all(galera.is_synced(self.status(n), cluster_size=3) for n in NODES)
            except Exception:  # noqa: BLE001 - a node still starting does not answer yet
                return False

        assert wait_until(whole, timeout, interval=0.2), {n: self._safe_status(n) for n in NODES}

    def _safe_status(self, node: str) -> str:
        try:
            s = self.status(node)
            return f"{s['wsrep_cluster_status']} size {s['wsrep_cluster_size']} {s['wsrep_local_state_comment']}"
        except Exception as exc:  # noqa: BLE001
            return str(exc)

    def wait_status(self, node: str, key: str, value: str, timeout: float = 20.0) -> None:
        assert wait_until(lambda: self.status(node)[key] == value, timeout, interval=0.1), (node, key, self.status(node))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _galera_up(lab_dir: LabDir, inventory: Path, hosts: list[str]) -> None:
    """Start the cluster; once more from scratch if mariadb-install-db failed. It does so now
    and then on this machine (`Could not remove temporary table '/tmp/#sql-temptable-...'`,
    with the three installs running in parallel and sharing /tmp)."""
    try:
        galera.up(lab_dir, inventory_out=inventory, port_base=PORT_BASE, hosts=hosts)
    except LabError as exc:
        if "mariadb-install-db failed" not in str(exc):
            raise
        galera.down(lab_dir)
        shutil.rmtree(galera.galera_dir(lab_dir), ignore_errors=True)
        galera.up(lab_dir, inventory_out=inventory, port_base=PORT_BASE, hosts=hosts)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ports = (4567, 4577, 4587, PORT_BASE, PORT_BASE + 1, PORT_BASE + 2)
    # The lab's group communication ports are fixed: another Galera lab (another test module, an
    # engineer's `lab up`) must finish first. Wait a while for it rather than fail at once.
    if not wait_until(lambda: all(_port_free(p) for p in ports), 180, interval=1.0):
        busy = [p for p in ports if not _port_free(p)]
        pytest.fail(f"ports {busy} are in use on 127.0.0.1: another Galera lab is running (the lab's group "
                    f"communication ports are fixed); stop it (`drengine lab down galera`) and rerun")
    # Not pytest's tmp_path: its parents are mode 700 and the nodes run as mysql.
    root = Path(tempfile.mkdtemp(prefix="drg-galera-rb-"))
    os.chmod(root, 0o755)
    lab_dir = LabDir(root)
    inventory = root / "inventory.yaml"
    try:
        hosts = ssh_lab.up(lab_dir, n_hosts=3, first_address=SSH_FIRST, inventory_out=inventory)
        _galera_up(lab_dir, inventory, sorted(hosts["hosts"]))
        # A shorter read timeout than the lab's 5 s: a hung node costs that much on every probe.
        data = yaml.safe_load(inventory.read_text())
        data["clusters"][galera.CLUSTER]["timeouts"].update({"read": 2.0, "catch_up": 30.0})
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        yield Lab(root, inventory)
    finally:
        # galera.down sends SIGCONT before SIGTERM (a stopped node ignores SIGTERM), then SIGKILL
        # after a timeout; every node is in lab.json, including those the runbook started over SSH.
        galera.down(lab_dir)
        ssh_lab.down(lab_dir)
        leftovers = lab_dir.processes()
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers, leftovers


class MariadbdWatch:
    """Every mariadbd process of the lab that appears while the block runs (read from /proc every
    20 ms: a --wsrep-recover lasts about a second): a plan must start none."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.seen: list[str] = []
        self.before: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _mariadbd(self) -> dict[int, str]:
        found = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "mariadbd" in cmdline and self.root in cmdline:
                found[int(proc.name)] = cmdline
        return found

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.seen += [c for pid, c in self._mariadbd().items() if pid not in self.before and c not in self.seen]
            time.sleep(0.02)

    def __enter__(self) -> list[str]:
        self.before = set(self._mariadbd())
        self._thread.start()
        return self.seen

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def sent(run_dir: Path, step: str | None = None) -> list[tuple[str, str]]:
    return [(e.data["target"], e.data["text"]) for e in of_type(run_dir, "statement_sent")
            if step is None or e.data["step"] == step]


def test_any_node_primary_is_refused(lab: Lab) -> None:
    code, out, run_dir = lab.run("--yes")
    assert code == 1, out
    assert "nothing to do: every node is in a Primary component (g1, g2, g3, size [3])" in out
    assert "--override check-no-primary --accept-data-loss" in out
    assert not sent(run_dir)
    lab.query("g1", "CREATE DATABASE IF NOT EXISTS drill")
    lab.query("g1", "CREATE TABLE IF NOT EXISTS drill.writes (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(60))")


def test_two_of_three_killed_survivor_becomes_primary_and_others_rejoin(lab: Lab) -> None:
    lab.query("g1", "INSERT INTO drill.writes (note) VALUES ('last write before the outage')")
    logs = {n: galera.node_dir(lab.dir, n) / "mariadbd.log" for n in NODES}
    offsets = {n: logs[n].stat().st_size for n in NODES}
    galera.kill_node(lab.dir, "g2")
    galera.kill_node(lab.dir, "g3")
    lab.wait_status("g1", "wsrep_cluster_status", "non-Primary")

    started = time.monotonic()
    code, out, run_dir = lab.run("--yes")
    seconds = time.monotonic() - started
    assert code == 0, out
    assert "chose g1: g1 is the only node still running" in out
    # What g2 and g3 saved is read again just before the bootstrap (it is not further on), then the bootstrap.
    assert [t for t, x in sent(run_dir, "bootstrap-running") if x.startswith("cat ")] == ["g2", "g3"]
    assert sent(run_dir, "bootstrap-running")[-1] == ("g1", "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
    lab.wait_whole(timeout=10)
    for node in NODES:
        assert ("last write before the outage",) in lab.query(node, "SELECT note FROM drill.writes")
    for node in ("g2", "g3"):  # crashed nodes rejoined by IST, not a full copy
        assert "IST received" in logs[node].read_text(errors="replace")[offsets[node]:], node
    assert seconds < 60, seconds


def test_all_killed_the_most_advanced_node_is_chosen(lab: Lab) -> None:
    lab.query("g1", "INSERT INTO drill.writes (note) VALUES ('seen by all three')")
    galera.kill_node(lab.dir, "g1")
    lab.wait_status("g2", "wsrep_cluster_size", "2")  # g1 evicted: writes no longer wait for it
    lab.query("g2", "INSERT INTO drill.writes (note) VALUES ('after g1 died')")
    galera.kill_node(lab.dir, "g2")
    galera.kill_node(lab.dir, "g3")
    assert all(galera.read_grastate(lab.dir, n).seqno == -1 for n in NODES)  # crashed: only --wsrep-recover knows

    # Issue 21 #4: a plan started mariadbd --wsrep-recover on the hosts. It starts no process now.
    with MariadbdWatch(galera.galera_dir(lab.dir)) as seen:
        code, out = cli("plan", RUNBOOK, "-i", str(lab.inventory), "-c", galera.CLUSTER)
    assert code == 0, out
    assert seen == [], seen
    assert "recover-positions [mutate, gate: confirm] WOULD RUN" in out and "--wsrep-recover" in out
    assert not any(galera.is_running(lab.dir, n) for n in NODES)

    code, out, run_dir = lab.run("--yes")
    assert code == 0, out
    assert not [x for _, x in sent(run_dir, "read-positions") if "--wsrep-recover" in x]
    recovered = [t for t, x in sent(run_dir, "recover-positions") if "--wsrep-recover" in x]
    assert recovered == NODES
    boot = [(t, x) for t, x in sent(run_dir, "bootstrap-start") if not x.startswith("cat ")]
    chosen = boot[-1][0]
    assert chosen in ("g2", "g3") and chosen != "g1", out  # g1 missed the last write
    assert "safe_to_bootstrap: 1" in boot[0][1] and "--bootstrap" in boot[-1][1]
    assert f"chose {chosen}: {chosen} is the most advanced" in out
    lab.wait_whole(timeout=10)
    for node in NODES:
        assert ("after g1 died",) in lab.query(node, "SELECT note FROM drill.writes")


def test_hung_node_is_fenced_behind_the_dangerous_gate_then_rejoins(lab: Lab) -> None:
    lab.query("g1", "INSERT INTO drill.writes (note) VALUES ('before the hang')")
    galera.hang_node(lab.dir, "g3")
    try:
        lab.wait_status("g1", "wsrep_cluster_size", "2")
        galera.kill_node(lab.dir, "g2")
        lab.wait_status("g1", "wsrep_cluster_status", "non-Primary")

        code, out, run_dir = lab.run("--yes")
        assert code == 3, out  # a dangerous gate: g3 may be alive (split brain) and its position is unknown
        assert "stopped at step fence-others" in out and "split brain: g3 (hung" in out
        # Only reads on the hosts (g3's says its mariadbd still runs), and g2's position recovered; nothing changed.
        reads = sent(run_dir)
        assert reads and {target for target, _ in reads} == {"g2", "g3"}, reads
        assert [t for t, text in reads if "--wsrep-recover" in text] == ["g2"], reads

        started = time.monotonic()
        code, out, _ = lab.run("--yes", "--accept-data-loss", resume=run_dir)
        assert code == 0, out
        assert time.monotonic() - started < 90  # every probe of the hung node is bounded by the read timeout
        fence = next(e for e in of_type(run_dir, "step_finished") if e.data["step"] == "fence-others")
        assert any(line.startswith("g3: service: FENCED") for line in fence.data["evidence"]), fence.data["evidence"]
        for node in ("g1", "g2"):
            assert galera.is_running(lab.dir, node), out
            assert lab.status(node)["wsrep_cluster_status"] == "Primary", out
            assert ("before the hang",) in lab.query(node, "SELECT note FROM drill.writes")
    finally:
        if galera.is_running(lab.dir, "g3"):
            galera.continue_node(lab.dir, "g3")
    lab.wait_whole(timeout=60)  # fenced by its stop command, g3 was started again and rejoined


def through_proxy(lab: Lab, sql_text: str) -> list[tuple[Any, ...]]:
    import pymysql

    password = galera.app_password_file(lab.dir).read_text().strip()
    conn = pymysql.connect(host="127.0.0.1", port=PORT_BASE + galera.PROXY_PORT_OFFSET, user=galera.APP_USER,
                           password=password, connect_timeout=2, read_timeout=3, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql_text)
            return list(cur.fetchall())
    finally:
        conn.close()


def test_other_nodes_hung_then_woken_leave_one_primary_component_behind_the_proxy(lab: Lab) -> None:
    """Issue 13's second "done when": the other nodes hung, the run fences them, bootstraps the survivor
    and points HAProxy at it; after they wake: one Primary component, writes through the proxy reach it."""
    lab.wait_whole(90)
    assert through_proxy(lab, "SELECT @@port") == [(PORT_BASE,)]
    for node in ("g2", "g3"):
        galera.hang_node(lab.dir, node)
    try:
        lab.wait_status("g1", "wsrep_cluster_status", "non-Primary")
        code, out, run_dir = lab.run("--yes", "--accept-data-loss")
        assert code == 0, out
        fence = next(e for e in of_type(run_dir, "step_finished") if e.data["step"] == "fence-others")
        for node in ("g2", "g3"):
            assert any(line.startswith(f"{node}: service: FENCED") for line in fence.data["evidence"]), fence.data
    finally:
        for node in ("g2", "g3"):
            if galera.is_running(lab.dir, node):
                galera.continue_node(lab.dir, node)  # they wake up; nothing else is done to them
    lab.wait_whole(60)
    statuses = {n: lab.status(n) for n in NODES}
    assert {s["wsrep_cluster_status"] for s in statuses.values()} == {"Primary"}
    assert len({s["wsrep_cluster_state_uuid"] for s in statuses.values()}) == 1
    assert through_proxy(lab, "SELECT @@port") == [(PORT_BASE,)]  # g1, the bootstrapped node
    through_proxy(lab, "INSERT INTO drengine.heartbeat (id, written_at) VALUES ('after-wake', 1)")
    assert lab.query("g1", "SELECT COUNT(*) FROM drengine.heartbeat WHERE id = 'after-wake'") == [(1,)]


def test_drill_kill_two_nodes_on_the_lab(lab: Lab) -> None:
    """Issue 7: a drill on the real lab: two nodes SIGKILLed through their pid files over the
    SSH lab hosts, the runbook unattended, canary rows measured, the cluster whole again."""
    lab.wait_whole(90)
    run_dir = lab.root / "drill"
    code, out = cli("drill", RUNBOOK, "-i", str(lab.inventory), "-c", galera.CLUSTER, "--fault", "kill-two-nodes",
                    "--run-dir", str(run_dir), "--canary-interval", "0.1")
    assert code == 0, out
    measured = {e.data["name"]: e.data["value"] for e in of_type(run_dir, "measurement")}
    assert measured["lost_writes"] == 0
    assert isinstance(measured["recovery_seconds"], float) and measured["recovery_seconds"] > 0
    lab.wait_whole(90)

"""The Ceph runbooks (ceph-degrade, ceph-restore) against the simulator: one OSD down, two
down, several pools of which only some are affected, unfound objects with an OSD declared
gone, and the restore after the OSDs return."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from drengine.clock import SimulatedClock
from drengine.datastores.ceph.scenarios import scenario
from drengine.datastores.ceph.simcluster import CephSim
from drengine.engine import RunRequest, start_run
from drengine.gates import FlagPolicy
from drengine.inventory import load_inventory
from drengine.machine import Machine
from drengine.runbook import load_runbook
from drengine.steps import Mode
from tests.helpers import cli, cli_subprocess, of_type

INVENTORY = """\
clusters:
  sim:
    kind: ceph
    simulated: {{scenario: {scenario}, state_file: {state}}}
    drill_target: true
    timeouts: {{connect: 1, read: 2}}
    members:
      - {{name: mon.a, role: mon}}
      - {{name: mon.b, role: mon}}
      - {{name: mon.c, role: mon}}
{osds}
"""


class Sim:
    """One simulated cluster kept in a state file across runs, with the runs under one folder."""

    def __init__(self, tmp_path: Path, scenario: str, osds: int = 3) -> None:
        self.runs = tmp_path / "runs"
        self.state = tmp_path / "ceph-state.json"
        self.inventory = tmp_path / "inventory.yaml"
        members = "\n".join(f"      - {{name: osd.{i}, role: osd}}" for i in range(osds))
        self.inventory.write_text(INVENTORY.format(scenario=scenario, state=self.state, osds=members))
        self.count = 0
        self.scenario = scenario

    def run(self, runbook: str, *flags: str) -> tuple[int, str, Path]:
        if runbook == "ceph-restore" and not any(f.startswith("runs_dir=") for f in flags):
            flags = (*flags, "--input", f"runs_dir={self.runs}")  # the degrade runs of this test, and only those
        self.count += 1
        run_dir = self.runs / f"{self.count:02d}-{runbook}"
        code, out = cli("run", f"runbooks/{runbook}.yaml", "-i", str(self.inventory), "-c", "sim", "--run-dir", str(run_dir), *flags)
        return code, out, run_dir

    def model(self) -> CephSim:
        if not self.state.exists():  # no run yet: the scenario as a first run would build it
            return scenario(self.scenario)
        return CephSim.from_json(self.state.read_text())

    def change(self, sim: CephSim) -> None:
        self.state.write_text(sim.to_json())


def sent(run_dir: Path) -> list[str]:
    return [e.data["text"] for e in of_type(run_dir, "statement_sent")]


def mon_sent(run_dir: Path) -> list[str]:
    return [e.data["text"] for e in of_type(run_dir, "statement_sent") if e.data["language"] == "ceph-mon"]


def test_one_osd_down_only_flags(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "one-osd-down")
    code, out, run_dir = sim.run("ceph-degrade", "--yes")
    assert code == 0, out
    assert mon_sent(run_dir) == ['{"prefix": "osd set", "key": "noout"}', '{"prefix": "osd set", "key": "norebalance"}']
    assert ("no pool needs a lower min_size: every PG is active: client I/O is served (pools drengine run degraded, "
            "with fewer copies); min_size stays as it is") in out
    model = sim.model()
    assert model.pool("drengine").min_size == 2
    assert {"noout", "norebalance"} <= set(model.state.flags)
    # Writes still work (one copy down, min_size 2 met) and were proven.
    assert "client I/O works on drengine" in out
    # No dangerous gate was asked: --yes alone was enough.
    assert all(e.data["level"] != "dangerous" for e in of_type(run_dir, "gate_asked"))


def test_two_osds_down_lowers_min_size_and_io_works(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    code, out, run_dir = sim.run("ceph-degrade", "--yes")
    assert code == 3, out  # lowering min_size is a dangerous gate: --yes is not enough
    assert "stopped at step lower-min-size" in out and "--accept-data-loss" in out
    assert sim.model().pool("drengine").min_size == 2
    with pytest.raises(Exception, match="undersized"):
        sim.model().write_object("drengine", "blocked", b"x", timeout=1)
    gate = [e for e in of_type(run_dir, "gate_asked") if e.data["step"] == "lower-min-size"][0]
    assert gate.data["level"] == "dangerous"
    assert any("writes to pool drengine are acknowledged with only 1 copy" in r for r in gate.data["risks"])
    assert "waiting for osd.1, osd.2" in gate.data["reason"]

    code, out, run_dir = sim.run("ceph-degrade", "--yes", "--accept-data-loss")
    assert code == 0, out
    assert '{"prefix": "osd pool set", "pool": "drengine", "var": "min_size", "val": "1"}' in mon_sent(run_dir)
    model = sim.model()
    assert model.pool("drengine").min_size == 1
    model.write_object("drengine", "after-degrade", b"served on one copy", timeout=1)
    assert model.read_object("drengine", "after-degrade") == b"served on one copy"
    assert "client I/O works on drengine" in out
    finished = {e.data["step"]: e.data for e in of_type(run_dir, "step_finished")}
    changes = finished["lower-min-size"]["facts"]["min_size_changes"]["value"]["changes"]
    assert [(c["pool"], c["old"], c["new"]) for c in changes] == [("drengine", 2, 1)]
    # The first run (stopped at the gate) set the flags; this one found them set and recorded that.
    assert finished["set-flags"]["outcome"] == "ok"


def test_several_pools_only_affected_ones_change(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "several-pools-some-affected", osds=6)
    code, out, run_dir = sim.run("ceph-degrade", "--yes", "--accept-data-loss")
    assert code == 0, out
    min_size_cmds = [t for t in mon_sent(run_dir) if '"min_size"' in t]
    assert min_size_cmds == ['{"prefix": "osd pool set", "pool": "volumes", "var": "min_size", "val": "1"}']
    model = sim.model()
    assert (model.pool("images").min_size, model.pool("volumes").min_size, model.pool("backups").min_size) == (2, 1, 1)
    # I/O is proven on the pools the outage touched, not on the untouched SSD pool.
    assert "client I/O works on backups, volumes" in out
    assert "pool images (size 3, min_size 2): 8 PGs: 8 active+clean" in out


def test_unfound_objects_need_the_osd_declared_gone(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "unfound-objects")
    code, out, run_dir = sim.run("ceph-degrade", "--yes", "--accept-data-loss")
    assert code == 1, out
    assert "may be on osd.0, which is down but not marked lost" in out
    assert "--gone osd.0" in out
    assert not [t for t in sent(run_dir) if "lost" in t]
    assert sum(len(pg.unfound) for pg in sim.model().state.pgs) == 3


def test_unfound_objects_reverted_after_gone_osd_marked_out_and_lost(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "unfound-objects")
    code, out, run_dir = sim.run("ceph-degrade", "--yes", "--gone", "osd.0")
    assert code == 3, out  # marking lost is dangerous: --yes alone stops there
    assert "stopped at step mark-lost" in out
    assert '{"prefix": "osd out", "ids": ["0"]}' in mon_sent(run_dir)
    assert not sim.model().osd(0).lost

    code, out, run_dir = sim.run("ceph-degrade", "--yes", "--accept-data-loss", "--gone", "osd.0")
    assert code == 0, out
    texts = sent(run_dir)
    assert '{"prefix": "osd lost", "id": 0, "yes_i_really_mean_it": true}' in texts
    assert texts.count('{"prefix": "mark_unfound_lost", "mulcmd": "revert"}') >= 1
    model = sim.model()
    assert model.osd(0).lost and not model.osd(0).in_
    assert sum(len(pg.unfound) for pg in model.state.pgs) == 0
    # Reverted: the previous versions are back, the object that had none is gone.
    assert model.read_object("drengine", "drengine-object-0") == b"drengine object 0\n"
    with pytest.raises(Exception, match="does not exist"):
        model.read_object("drengine", "drengine-new-object")
    lost_gate = [e for e in of_type(run_dir, "gate_asked") if e.data["step"] == "mark-lost"][0]
    assert lost_gate.data["level"] == "dangerous" and "unfound objects may be on it" in lost_gate.data["reason"]


def test_restore_after_osds_return(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    model = sim.model()
    model.state.flags.append("noscrub")  # an operator's own flag: restore must leave it
    sim.change(model)
    code, out, degrade_dir = sim.run("ceph-degrade", "--yes", "--accept-data-loss")
    assert code == 0, out

    # OSDs still down: restore waits (bounded), then says what it waits for, and changes nothing.
    code, out, run_dir = sim.run("ceph-restore", "--yes")
    assert code == 1, out
    assert "osd.1, osd.2 still down: start them again" in out
    assert sim.model().pool("drengine").min_size == 1 and not mon_sent(run_dir)

    model = sim.model()
    model.start_osds([1, 2])
    sim.change(model)
    code, out, run_dir = sim.run("ceph-restore", "--yes")
    assert code == 1 and "health is HEALTH_WARN, expected HEALTH_OK; what remains: OSDMAP_FLAGS: noscrub flag(s) set" in out
    assert mon_sent(run_dir) == [
        '{"prefix": "osd pool set", "pool": "drengine", "var": "min_size", "val": "2"}',
        '{"prefix": "osd unset", "key": "noout"}',
        '{"prefix": "osd unset", "key": "norebalance"}',
    ]
    assert "left alone (not set by drengine): noscrub" in out
    model = sim.model()
    assert model.pool("drengine").min_size == 2
    assert set(model.state.flags) == {"noscrub"}
    assert str(degrade_dir) in out


def test_restore_to_health_ok_and_second_restore_changes_nothing(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    code, out, _ = sim.run("ceph-degrade", "--yes", "--accept-data-loss")
    assert code == 0, out
    model = sim.model()
    model.start_osds([1, 2])
    sim.change(model)
    code, out, run_dir = sim.run("ceph-restore", "--yes")
    assert code == 0, out
    assert "HEALTH_OK" in out
    # The restore finished: a later restore finds no unrestored degrade run and refuses to guess.
    code, out, run_dir = sim.run("ceph-restore", "--yes")
    assert code == 1, out
    assert "no unrestored ceph-degrade run of sim" in out
    assert "--input degrade_run=RUN_DIR" in out
    assert not mon_sent(run_dir)


def test_restore_from_a_named_degrade_run(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    code, out, degrade_dir = sim.run("ceph-degrade", "--yes", "--accept-data-loss")
    assert code == 0, out
    model = sim.model()
    model.start_osds([1, 2])
    sim.change(model)
    code, out, run_dir = sim.run("ceph-restore", "--yes", "--input", f"runs_dir={tmp_path / 'elsewhere'}",
                                 "--input", f"degrade_run={degrade_dir}")
    assert code == 0, out
    assert sim.model().pool("drengine").min_size == 2 and not sim.model().state.flags
    started = of_type(run_dir, "run_started")[0]
    assert started.data["inputs"] == {"degrade_run": str(degrade_dir), "runs_dir": str(tmp_path / "elsewhere")}
    assert f"input degrade_run = {degrade_dir}" in out


def test_inputs_the_runbook_does_not_declare_or_needs_are_refused(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "healthy")
    code, out = cli("plan", "runbooks/ceph-restore.yaml", "-i", str(sim.inventory), "-c", "sim", "--input", "degrade=x")
    assert code == 2, out
    assert ("--input degrade: runbook ceph-restore has no input named 'degrade'; its inputs: degrade_run, runs_dir"
            in out)
    code, out = cli("run", "runbooks/ceph-degrade.yaml", "-i", str(sim.inventory), "-c", "sim", "--input", "runs_dir")
    assert code == 2 and "--input 'runs_dir': expected NAME=VALUE" in out, out
    code, out = cli("run", "runbooks/ceph-degrade.yaml", "-i", str(sim.inventory), "-c", "sim", "--input", "a=1",
                    "--input", "a=2")
    assert code == 2 and "--input a is given twice" in out, out
    # A runbook that requires an input: refused before anything runs, naming the input and the runbook.
    required = tmp_path / "ceph-restore.yaml"
    required.write_text(Path("runbooks/ceph-restore.yaml").read_text().replace(
        "  degrade_run:\n", "  degrade_run:\n    required: true\n"))
    code, out = cli("run", str(required), "-i", str(sim.inventory), "-c", "sim", "--yes", "--run-dir", str(tmp_path / "r"))
    assert code == 2, out
    assert "runbook ceph-restore needs --input degrade_run=VALUE (the directory (or journal.jsonl) of the" in out
    assert not (tmp_path / "r" / "journal.jsonl").exists()
    code, out = cli("run", "--resume", str(tmp_path / "r"), "--input", "degrade_run=x")
    assert code == 2 and "--resume takes the runbook, inventory, cluster and inputs from the journal" in out, out


def test_inputs_come_back_on_resume(tmp_path: Path) -> None:
    """A restore killed right after it started resumes with the inputs it was given: the named
    degrade run, and a runs_dir where no degrade run is (so only the input can find it)."""
    sim = Sim(tmp_path, "two-osds-down")
    code, out, degrade_dir = sim.run("ceph-degrade", "--yes", "--accept-data-loss")
    assert code == 0, out
    model = sim.model()
    model.start_osds([1, 2])
    sim.change(model)
    run_dir = tmp_path / "restore"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRENGINE_")}
    env["DRENGINE_LOCK_DIR"] = str(tmp_path / "locks")
    crashed = cli_subprocess("run", "runbooks/ceph-restore.yaml", "-i", str(sim.inventory), "-c", "sim", "--yes",
                             "--run-dir", str(run_dir), "--input", f"degrade_run={degrade_dir}",
                             "--input", f"runs_dir={tmp_path / 'elsewhere'}",
                             env={**env, "DRENGINE_TEST_CRASH_AFTER": "run_started"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    assert not of_type(run_dir, "step_started")
    resumed = cli_subprocess("run", "--resume", str(run_dir), "--yes", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    found = [e for e in of_type(run_dir, "step_finished") if e.data["step"] == "find-record"][0]
    assert found.data["ok"] and str(degrade_dir) in " ".join(found.data["evidence"])
    assert sim.model().pool("drengine").min_size == 2 and not sim.model().state.flags


def test_plan_shows_the_commands_and_changes_nothing(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    before = sim.model().to_json() if sim.state.exists() else None
    code, out = cli("plan", "runbooks/ceph-degrade.yaml", "-i", str(sim.inventory), "-c", "sim", "--run-dir", str(tmp_path / "plan"))
    assert code == 0, out
    assert '{"prefix": "osd pool set", "pool": "drengine", "var": "min_size", "val": "1"}' in out
    assert '{"prefix": "osd set", "key": "noout"}' in out
    model = sim.model()
    assert model.pool("drengine").min_size == 2 and not model.state.flags
    assert before is None or before == model.to_json()


def test_no_quorum_fails_with_what_to_do(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "mon-quorum-lost")
    code, out, run_dir = sim.run("ceph-degrade", "--yes")
    assert code == 1, out
    assert "no Ceph monitor quorum answered" in out and "1 of 3 monitors are up" in out
    assert "the runbook ceph-mon-quorum restores a quorum from the survivors" in out
    assert not of_type(run_dir, "statement_sent")


def test_mon_quorum_restored_by_monmap_surgery(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "mon-quorum-lost")
    code, out, run_dir = sim.run("ceph-mon-quorum", "--yes")
    assert code == 3, out  # the surgery is a dangerous gate
    assert "stopped at step surgery" in out
    gate = [e for e in of_type(run_dir, "gate_asked") if e.data["step"] == "surgery"][0]
    assert "only a of the monmap's a, b, c (epoch 1) run(s)" in gate.data["reason"]
    shown = "\n".join(gate.data["statements"])
    assert "--extract-monmap" in shown and "monmaptool" in shown and "--rm b --rm c" in shown and "--inject-monmap" in shown
    assert sim.model().quorum() == []

    code, out, run_dir = sim.run("ceph-mon-quorum", "--yes", "--accept-data-loss")
    assert code == 0, out
    model = sim.model()
    assert model.quorum() == ["a"] and model.mon("a").monmap == ["a"]
    assert "quorum a answers" in out
    texts = [e.data["text"] for e in of_type(run_dir, "statement_sent") if e.data["language"] == "shell"]
    assert texts[0].startswith("systemctl stop ceph-mon@a") and texts[-1].startswith("systemctl start ceph-mon@a")
    # The cluster answers again: a degrade run (nothing to degrade) observes it.
    code, out, _ = sim.run("ceph-degrade", "--yes")
    assert code == 0, out


def test_mon_quorum_healthy_needs_no_surgery(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "healthy")
    code, out, run_dir = sim.run("ceph-mon-quorum", "--yes", "--accept-data-loss")
    assert code == 0, out
    assert "no surgery needed" in out and not of_type(run_dir, "statement_sent")



def test_crash_after_lowering_min_size_then_resume_and_restore(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "two-osds-down")
    model = sim.model()
    model.pool("drengine").min_size = 3  # not Ceph's default for size 3: only the journal knows it
    sim.change(model)
    run_dir = tmp_path / "runs" / "01-ceph-degrade"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRENGINE_")}
    env["DRENGINE_LOCK_DIR"] = str(tmp_path / "locks")
    crashed = cli_subprocess("run", "runbooks/ceph-degrade.yaml", "-i", str(sim.inventory), "-c", "sim", "--run-dir",
                          str(run_dir), "--yes", "--accept-data-loss",
                          env={**env, "DRENGINE_TEST_CRASH_AFTER": "statement_sent:lower-min-size"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    assert sim.model().pool("drengine").min_size == 1
    assert not [e for e in of_type(run_dir, "step_finished") if e.data["step"] == "lower-min-size"]

    resumed = cli_subprocess("run", "--resume", str(run_dir), "--yes", "--accept-data-loss", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len([t for t in mon_sent(run_dir) if '"min_size"' in t]) == 1  # not sent twice

    model = sim.model()
    model.start_osds([1, 2])
    sim.change(model)
    restore = cli_subprocess("run", "runbooks/ceph-restore.yaml", "-i", str(sim.inventory), "-c", "sim", "--run-dir",
                          str(tmp_path / "runs" / "02-ceph-restore"), "--yes", "--input", f"runs_dir={tmp_path / 'runs'}",
                          env=env)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert sim.model().pool("drengine").min_size == 3
    assert not sim.model().state.flags


def test_down_pgs_wait_for_a_gone_osd_then_lost_min_size_and_unfound(tmp_path: Path) -> None:
    """PGs whose latest data sits only on a dead OSD are `down`: a lower min_size alone does not
    help. Declared gone, the OSD is marked out and lost, the PGs peer on what is left (short of
    copies: min_size lowered) and the objects no one has are given up."""
    sim = Sim(tmp_path, "healthy")
    model = sim.model()
    model.kill_osds([1, 2])
    model.pool("drengine").min_size = 1
    model.write_object("drengine", "only-on-osd0", b"newest", timeout=1)
    model.pool("drengine").min_size = 2
    model.kill_osds([0])
    model.start_osds([1])
    sim.change(model)

    code, out, run_dir = sim.run("ceph-degrade", "--yes", "--accept-data-loss")
    assert code == 1, out  # without --gone nothing can bring the down PG back
    assert "are down: only osd.0 hold(s) their latest data" in out
    assert "1 PGs (1.7) of drengine still do not serve I/O (down, waiting for osd.0)" in out
    assert not [t for t in mon_sent(run_dir) if '"osd lost"' in t]

    code, out, run_dir = sim.run("ceph-degrade", "--yes", "--accept-data-loss", "--gone", "osd.0")
    assert code == 0, out
    texts = sent(run_dir)
    order = [t for t in texts if '"osd out"' in t or '"osd lost"' in t or '"min_size"' in t or "mark_unfound_lost" in t]
    assert order[0] == '{"prefix": "osd out", "ids": ["0"]}'
    assert order[1] == '{"prefix": "osd lost", "id": 0, "yes_i_really_mean_it": true}'
    assert "mark_unfound_lost" in order[2]  # min_size was lowered by the first run already
    model = sim.model()
    model.write_object("drengine", "after", b"served", timeout=1)
    with pytest.raises(Exception, match="does not exist"):
        model.read_object("drengine", "only-on-osd0")  # the data only osd.0 had is gone, as the gate said


def _request(sim: Sim, runbook: str, run_dir: Path, clock: SimulatedClock, **inputs: str) -> RunRequest:
    inventory = load_inventory(sim.inventory)
    return RunRequest(runbook=load_runbook(f"runbooks/{runbook}.yaml"), inventory=inventory,
                      cluster=inventory.cluster("sim"), mode=Mode.RUN,
                      gates=FlagPolicy(yes=True, accept_data_loss=True), run_dir=run_dir, machine=Machine(clock), inputs=inputs)


def test_runbooks_on_the_simulator_take_time_from_the_runs_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The explorer drives the Ceph runbooks on a SimulatedClock: every bounded wait passes on
    that clock, the simulator's time follows it, and nothing really sleeps."""

    def no_sleeping(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s of real time in the simulated path")

    monkeypatch.setattr(time, "sleep", no_sleeping)
    sim = Sim(tmp_path, "two-osds-down")
    clock = SimulatedClock()
    started = time.monotonic()
    degraded = start_run(_request(sim, "ceph-degrade", tmp_path / "runs" / "degrade", clock))
    assert degraded.success, degraded.summary
    # The OSDs stay down: ceph-restore waits its whole recovery_timeout (120 s) on the run's clock.
    before = clock.now()
    restored = start_run(_request(sim, "ceph-restore", tmp_path / "restore", clock, runs_dir=str(tmp_path / "runs")))
    assert not restored.success and "osd.1, osd.2 still down" in restored.summary
    assert clock.now() - before >= 120.0
    assert time.monotonic() - started < 30.0
    # The model's time moved with the clock (noout, set by the degrade, kept the OSDs in).
    model = sim.model()
    assert model.state.clock >= 120.0 and all(o.in_ for o in model.state.osds)


def test_the_simulators_time_follows_the_clock_across_processes(tmp_path: Path) -> None:
    """Ten simulated minutes with an OSD down and no noout: the monitors mark it out, as
    mon_osd_down_out_interval says, and the state file keeps the model's time for the next run."""
    from drengine.datastores.ceph.sim import SimCephBackend

    sim = Sim(tmp_path, "one-osd-down")
    cluster = load_inventory(sim.inventory).cluster("sim")
    clock = SimulatedClock()
    backend = SimCephBackend.open(cluster, sim.state, clock=clock)
    assert backend.observe().status.num_in_osds == 3
    clock.advance(599.0)
    assert backend.observe().status.num_in_osds == 3
    backend.close()
    later = SimulatedClock(start=5000.0)  # another process: its clock starts elsewhere
    backend = SimCephBackend.open(cluster, sim.state, clock=later)
    later.advance(2.0)
    snap = backend.observe()
    assert snap.status.num_in_osds == 2 and sim.model().state.clock == pytest.approx(601.0)
    backend.close()

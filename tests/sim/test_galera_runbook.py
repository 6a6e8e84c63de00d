"""The galera-bootstrap-survivor runbook against the simulator: every scenario through the
CLI, gates, refusals with their override, plan, and resume after a crash of drengine."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from drengine.datastores.galera.sim import SimGalera
from tests.helpers import ROOT, cli, cli_subprocess, of_type

INVENTORY = str(ROOT / "inventory" / "simulated-galera.yaml")
RUNBOOK = "galera-bootstrap-survivor"


def run(tmp_path: Path, cluster: str, *flags: str, name: str = "run", command: str = "run") -> tuple[int, str, Path]:
    run_dir = tmp_path / name
    code, out = cli(command, RUNBOOK, "-i", INVENTORY, "-c", f"sim-galera-{cluster}", "--run-dir", str(run_dir), *flags)
    return code, out, run_dir


def state(run_dir: Path) -> SimGalera:
    return SimGalera.model_validate_json((run_dir / "sim-state.json").read_text())


def sent(run_dir: Path) -> list[tuple[str, str, str]]:
    return [(e.data["step"], e.data["target"], e.data["text"]) for e in of_type(run_dir, "statement_sent")]


def whole(sim: SimGalera) -> bool:
    nodes = sim.nodes
    return all(n.process == "running" and n.primary for n in nodes) and len({n.seqno for n in nodes}) == 1


def test_two_of_three_killed_survivor_bootstrapped_then_others_rejoin_by_ist(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "two-killed", "--yes")
    assert code == 0, out
    assert "chose g1: g1 is the only node still running (wsrep_last_committed 105)" in out
    sim = state(run_dir)
    # Five writes after g3 died, three heartbeats: the survivor's, the canary through the proxy, the cluster's.
    assert whole(sim) and sim.node("g1").seqno == 108
    assert sim.proxies[0].admin == {"galera_write": {"g1": "ready", "g2": "maint", "g3": "maint"},
                                    "galera_read": {"g1": "ready", "g2": "ready", "g3": "ready"}}
    assert [n.joined_by for n in sim.nodes] == ["", "IST", "IST"]
    assert all("galera-recovery" in n.rows for n in sim.nodes)
    steps = [(s, t, x) for s, t, x in sent(run_dir) if s in ("bootstrap-running", "start-others")]
    # Just before the bootstrap, what the nodes that are down saved is read again (never a process started).
    assert steps[:2] == [("bootstrap-running", "g2", "cat -- /var/lib/mysql/grastate.dat"),
                         ("bootstrap-running", "g3", "cat -- /var/lib/mysql/grastate.dat")]
    assert steps[2:] == [
        ("bootstrap-running", "g1", "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'"),
        ("start-others", "g2", "systemctl start mariadb"),
        ("start-others", "g3", "systemctl start mariadb"),
    ]
    # The survivor took a write before anyone else was started.
    order = [s for s, _, _ in sent(run_dir)]
    assert order.index("verify-survivor") < order.index("start-others")


def test_all_killed_the_most_advanced_third_node_is_bootstrapped(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "all-killed", "--yes")
    assert code == 0, out
    assert "chose g3: g3 is the most advanced: seqno 112 (--wsrep-recover); g2 108 (--wsrep-recover), g1 100 (grastate.dat)" in out
    reads = [(s, t, x.split()[0]) for s, t, x in sent(run_dir) if s in ("read-positions", "recover-positions")]
    # Status and grastate.dat on every node; --wsrep-recover, behind its own gate, only where grastate.dat says -1.
    assert reads == [("read-positions", "g1", "systemctl"), ("read-positions", "g1", "cat"),
                     ("read-positions", "g2", "systemctl"), ("read-positions", "g2", "cat"),
                     ("read-positions", "g3", "systemctl"), ("read-positions", "g3", "cat"),
                     ("recover-positions", "g2", "galera_recovery"), ("recover-positions", "g3", "galera_recovery")]
    assert state(run_dir).launched[:2] == ["recover g2", "recover g3"]
    boot = [(t, x) for s, t, x in sent(run_dir) if s == "bootstrap-start" and not x.startswith("cat ")]
    assert boot == [("g3", "sed -i 's/^safe_to_bootstrap: *0 *$/safe_to_bootstrap: 1/' /var/lib/mysql/grastate.dat"),
                    ("g3", "galera_new_cluster")]
    sim = state(run_dir)
    assert whole(sim) and sim.node("g1").seqno >= 112  # nothing g3 had was lost
    assert sim.node("g3").joined_by == "bootstrap"


def test_hung_node_is_fenced_behind_the_dangerous_gate_then_rejoins(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "hung", "--yes")
    assert code == 3, out
    assert "RISK: g3 did not answer (hung" in out  # its position is unknown until it is fenced and read again
    assert "stopped at step fence-others: it needs a dangerous gate" in out
    assert "split brain: g3 (hung" in out
    # Only reads so far: where g2, which is down, saved its position (it might be further on than g1).
    assert [(t, x.split()[0]) for _, t, x in sent(run_dir)] == [("g2", "systemctl"), ("g2", "cat"), ("g3", "systemctl"),
                                                                 ("g2", "galera_recovery")]
    code, out = cli("run", "--resume", str(run_dir), "--yes", "--accept-data-loss")
    assert code == 0, out
    # Fenced (stopped cleanly), g3's grastate.dat is read before the bootstrap: it is not further on.
    assert ("bootstrap-running", "g3", "cat -- /var/lib/mysql/grastate.dat") in sent(run_dir)
    fence = next(e for e in of_type(run_dir, "step_finished") if e.data["step"] == "fence-others")
    assert "g3: sql: SKIPPED: it did not answer the probe (hung); SQL cannot reach it" in fence.data["evidence"]
    assert any(line.startswith("g3: service: FENCED:") for line in fence.data["evidence"])
    sim = state(run_dir)
    # Fenced by its stop command, g3 was then started like the other nodes and rejoined the new component.
    assert whole(sim) and [n.joined_by for n in sim.nodes][2] in ("IST", "SST")
    assert sim.proxies[0].admin["galera_write"] == {"g1": "ready", "g2": "maint", "g3": "maint"}


def test_one_primary_is_refused_with_the_override_named(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "one-primary", "--yes")
    assert code == 1, out
    assert "a Primary component is alive (g1, g2); g3 is not in it" in out
    assert "what you can do: start the missing node(s) normally (on g3: `systemctl start mariadb`)" in out
    assert "--override check-no-primary --accept-data-loss" in out
    assert not sent(run_dir)
    assert [n.primary for n in state(run_dir).nodes] == [True, True, False]


def test_partition_with_both_sides_non_primary_is_refused(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "partition", "--yes")
    assert code == 1, out
    assert "both sides of a partition are non-Primary and each could be bootstrapped: {g1, g2} | {g3, g4}" in out
    assert not sent(run_dir)


def test_partition_override_bootstraps_one_side_only(tmp_path: Path) -> None:
    code, out, run_dir = run(tmp_path, "partition", "--yes", "--override", "check-no-primary", "--accept-data-loss",
                             "--reason", "g3 and g4 are fenced")
    assert code == 1, out  # the other side stays out: the final check says so
    assert "OVERRIDE by" in out and "risk accepted" in out
    assert [(s, t) for s, t, x in sent(run_dir) if "pc.bootstrap" in x] == [("bootstrap-running", "g1")]
    sim = state(run_dir)
    assert [n.primary for n in sim.nodes] == [True, True, False, False]
    assert "the cluster is not whole yet: " in out and "g3 is non-Primary, expected Primary" in out
    overrides = of_type(run_dir, "override")
    assert len(overrides) == 1 and overrides[0].data["reason"] == "g3 and g4 are fenced"


def test_plan_shows_every_command_and_starts_no_process(tmp_path: Path) -> None:
    """Issue 21 #4: a plan ran --wsrep-recover (mariadbd in recovery mode) on the hosts. It shows
    the recovery as a gated step of its own and starts nothing: the twin records every process."""
    before = state_of_scenario("all-killed", "all-killed-third-most-advanced")
    code, out, run_dir = run(tmp_path, "all-killed", command="plan")
    assert code == 0, out
    assert "recover-positions [mutate, gate: confirm] WOULD RUN" in out
    assert "[g2] galera_recovery" in out and "[g3] galera_recovery" in out
    assert "galera_new_cluster" in out and "systemctl start mariadb" in out
    after = state(run_dir)
    assert after.launched == []
    assert [(n.process, n.seqno, n.grastate_seqno) for n in after.nodes] == before
    code, out, run_dir = run(tmp_path, "two-killed", command="plan", name="plan2")
    assert code == 0 and "[g1] SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'" in out
    assert state(run_dir).launched == []


def state_of_scenario(cluster: str, scenario: str) -> list[tuple[str, int, int]]:
    from drengine.datastores.galera.sim import SCENARIOS
    from drengine.inventory import load_inventory

    sim = SCENARIOS[scenario](load_inventory(Path(INVENTORY)).cluster(f"sim-galera-{cluster}"))
    return [(n.process, n.seqno, n.grastate_seqno) for n in sim.nodes]


def test_crash_inside_mutating_steps_then_resume_repeats_nothing(tmp_path: Path) -> None:
    code, out, clean = run(tmp_path, "all-killed", "--yes", name="clean")
    assert code == 0, out
    mutating = ("bootstrap-start", "start-others")
    clean_sent = [x for x in sent(clean) if x[0] in mutating and not x[2].startswith("cat ")]
    env = {**os.environ}
    for point in ("statement_sent:bootstrap-start:1", "statement_sent:bootstrap-start:2", "statement_sent:start-others:1",
                  "step_started:start-others"):
        run_dir = tmp_path / f"crash-{point.replace(':', '-')}"
        env["DRENGINE_TEST_CRASH_AFTER"] = point
        env["DRENGINE_SIM_DIR"] = str(run_dir) + "-cluster"  # each crash starts from the scenario
        first = cli_subprocess("run", RUNBOOK, "-i", INVENTORY, "-c", "sim-galera-all-killed", "--yes",
                               "--run-dir", str(run_dir), env=env)
        assert first.returncode == -signal.SIGKILL, (point, first.stdout, first.stderr)
        env.pop("DRENGINE_TEST_CRASH_AFTER")
        second = cli_subprocess("run", "--resume", str(run_dir), "--yes", env=env)
        assert second.returncode == 0, (point, second.stdout, second.stderr)
        assert [x for x in sent(run_dir) if x[0] in mutating and not x[2].startswith("cat ")] == clean_sent, point
        assert whole(state(run_dir)), point

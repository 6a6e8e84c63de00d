"""Pure parts of `drengine status`, `drengine runs` and the terminal: the MariaDB reading of a
view, error classification, gate answers, "did you mean", help on every command, README and
help agreeing, and shell completion."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from drengine.cli import main
from drengine.datastores.mariadb.connector import Channel, ClusterView, ServerView
from drengine.datastores.mariadb.status import read_view
from drengine.gates import Answer, GateRequest, parse_answer
from drengine.status import MemberState, Verdict, classify_error
from drengine.steps import GateLevel, Proposal, Refusal
from drengine.suggest import close_names, did_you_mean
from tests.helpers import ROOT, cli

REFUSED = "cannot connect: error 2003: Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection refused)"
HUNG = "no answer within the read timeout of 1.5 s (hung or overloaded server?)"


def primary(name: str = "db1", pos: str = "0-1-100", port: int = 1) -> ServerView:
    return ServerView(name=name, address="127.0.0.1", port=port, read_only=False, log_bin=True,
                      log_slave_updates=True, gtid_binlog_pos=pos, gtid_current_pos=pos)


def replica(name: str, port: int, received: str, io: str = "Yes", source_port: int = 1, behind: int | None = 0) -> ServerView:
    ch = Channel(master_host="127.0.0.1", master_port=source_port, io_running=io, sql_running="Yes",
                 using_gtid="Slave_Pos", gtid_io_pos=received, seconds_behind_master=behind if io == "Yes" else None)
    return ServerView(name=name, address="127.0.0.1", port=port, read_only=True, log_bin=True,
                      log_slave_updates=True, gtid_binlog_pos=received, gtid_slave_pos=received,
                      gtid_current_pos=received, channels=[ch])


def down(name: str, port: int, error: str) -> ServerView:
    # The probe's own reading of the failure (by exception type and errno), as the connector gives it.
    state = "hung" if error == HUNG else "down"
    return ServerView(name=name, address="127.0.0.1", port=port, state=state, error=error)


def view(*servers: ServerView) -> ClusterView:
    return ClusterView(cluster="c", servers=list(servers), observed_at=0.0)


def test_healthy_replication() -> None:
    reading = read_view(view(primary(), replica("db2", 2, "0-1-100"), replica("db3", 3, "0-1-100", behind=3)))
    assert reading.verdict is Verdict.HEALTHY
    assert reading.headline.startswith("db1 is the primary; 2 replica(s) follow it") and "at most 3 s behind" in reading.headline
    assert not reading.advice


def test_primary_dead_names_the_error_and_the_most_advanced_replica() -> None:
    reading = read_view(view(down("db1", 1, REFUSED), replica("db2", 2, "0-1-90", io="Connecting"),
                             replica("db3", 3, "0-1-100", io="Connecting")))
    assert reading.verdict is Verdict.DOWN
    assert "the primary db1 is down: dead" in reading.headline and "error 2003" in reading.headline
    assert reading.headline.endswith("Most advanced replica: db3")
    assert reading.advice[0].runbook == "mariadb-promote-survivor" and "promote db3" in reading.advice[0].why
    rows = {m.name: m for m in reading.members}
    assert rows["db1"].state is MemberState.DEAD and rows["db1"].role.startswith("primary")
    assert rows["db3"].lag == "IO Connecting, SQL Yes"


def test_hung_primary_still_fed_replicas_are_evidence() -> None:
    reading = read_view(view(down("db1", 1, HUNG), replica("db2", 2, "0-1-100"), replica("db3", 3, "0-1-100")))
    assert reading.verdict is Verdict.DOWN
    assert {m.name: m.state for m in reading.members}["db1"] is MemberState.HUNG
    assert any("still receive from db1" in e for e in reading.evidence)


def test_two_writable_primaries_are_a_split() -> None:
    reading = read_view(view(primary("db1", "0-1-100", 1), primary("db2", "0-1-90,0-2-5", 2), replica("db3", 3, "0-1-90")))
    assert reading.verdict is Verdict.SPLIT and "split brain" in reading.headline
    assert reading.advice[0].runbook == "mariadb-rejoin"


def test_old_primary_back_read_only_is_degraded_with_rejoin() -> None:
    old = down("db1", 1, "").model_copy(update={"state": "up", "read_only": True, "gtid_current_pos": "0-1-100"})
    reading = read_view(view(old, primary("db2", "0-1-100,0-2-3", 2), replica("db3", 3, "0-1-100,0-2-3", source_port=2)))
    assert reading.verdict is Verdict.DEGRADED
    assert any(a.runbook == "mariadb-rejoin" and "db1" in a.why for a in reading.advice)


def test_nothing_answers() -> None:
    reading = read_view(view(down("db1", 1, REFUSED), down("db2", 2, HUNG)))
    assert reading.verdict is Verdict.DOWN and "no server answered" in reading.headline
    assert all(a.runbook is None for a in reading.advice)


@pytest.mark.parametrize("error,state", [
    (REFUSED, MemberState.DEAD),
    ("m2 (127.0.0.1:1): cannot connect: Connection refused (is mongod running there?)", MemberState.DEAD),
    (HUNG, MemberState.HUNG),
    ("the member did not complete the handshake within 0.5 s (hung member?)", MemberState.HUNG),
    ("no TCP connection within 2 s (host down or packets dropped?)", MemberState.UNREACHABLE),
    ("error 1045: Access denied for user 'root'", MemberState.UNREACHABLE),
])
def test_errors_in_words(error: str, state: MemberState) -> None:
    assert classify_error(error) is state


def gate(level: GateLevel = GateLevel.CONFIRM, override: bool = False) -> GateRequest:
    refusal = Refusal("o", "e", "w", "n", "r") if override else None
    return GateRequest(step="promote", title="t", cluster="c1", level=level, proposal=Proposal(summary="s"),
                       refusal=refusal)


@pytest.mark.parametrize("typed,answer", [
    ("y", Answer.PROCEED), ("YES", Answer.PROCEED), ("p", Answer.PROCEED), ("proc", Answer.PROCEED),
    ("s", Answer.SKIP), ("skip", Answer.SKIP), ("r", Answer.RETRY), ("re", Answer.RETRY), ("abort", Answer.ABORT),
    (" a ", Answer.ABORT),
])
def test_gate_answers(typed: str, answer: Answer) -> None:
    assert parse_answer(typed, gate()).answer is answer


def test_gate_details_and_refusals() -> None:
    assert parse_answer("d", gate()).details and parse_answer("det", gate()).details
    ambiguous = parse_answer("no", gate())
    assert ambiguous.answer is None and "skip this step (s) or abort the run (a)" in ambiguous.problem
    # At a break-glass override "no" has one meaning: do not override.
    assert parse_answer("n", gate(GateLevel.DANGEROUS, override=True)).answer is Answer.SKIP
    assert "not an answer" in parse_answer("maybe", gate()).problem
    assert "Please answer" in parse_answer("", gate()).problem


def test_did_you_mean() -> None:
    names = ["mariadb-promote-survivor", "mariadb-rejoin", "galera-bootstrap-survivor"]
    assert close_names("mariadb-promote-survivr", names)[0] == "mariadb-promote-survivor"
    assert "mariadb-rejoin" in close_names("mariadb-re", names)
    assert did_you_mean("zzz", names) == ""


def test_unknown_names_get_a_suggestion(tmp_path: Path) -> None:
    code, out = cli("plan", "mariadb-promote-survivr", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb")
    assert code == 2 and "Did you mean 'mariadb-promote-survivor'" in out
    code, out = cli("plan", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb-helthy")
    assert code == 2 and "Did you mean 'sim-mariadb-healthy'" in out
    code, out = cli("plan", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb",
                    "--gone", "db22", "--run-dir", str(tmp_path / "r"))
    assert code == 2 and "no member named 'db22'" in out and "Did you mean" in out
    code, out = cli("drill", "run", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c",
                    "sim-mariadb-healthy", "--fault", "kill-primry", "--run-dir", str(tmp_path / "d"))
    assert code == 2 and "Did you mean 'kill-primary'" in out


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in group.commands.items():
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found += commands(command, (*path, name))
    return found


def test_every_command_has_help() -> None:
    for path, command in commands(main):
        assert (command.help or "").strip(), f"`drengine {' '.join(path)}` has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden and param.name not in ("help",):
                assert param.help, f"`drengine {' '.join(path)}` option {param.opts} has no help"
        code, out = cli(*path, "--help")
        assert code == 0 and "Usage:" in out, (path, out)


def test_bare_commands_show_help_and_exit_0() -> None:
    for args in [(), ("lab",), ("runbook",), ("journal",), ("inventory",), ("drill",)]:
        code, out = cli(*args)
        assert code == 0, (args, out)
        assert "Usage: drengine" in out and "Commands:" in out, (args, out)


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            for part in line.split(";"):
                words = part.split("#")[0].split()
                if words[:1] == ["drengine"]:
                    found.append(words[1:])
    return found


def test_readme_and_help_agree() -> None:
    """Every command the README shows exists under that name (no `drill RUNBOOK` where help says `drill run`)."""
    listed = readme_commands()
    assert len(listed) > 15
    for words in listed:
        group: click.Command = main
        for word in words:
            if not isinstance(group, click.Group) or word.startswith("-") or word.isupper() or "/" in word:
                break
            assert word in group.commands, f"README shows `drengine {' '.join(words)}`; `{word}` is not a command"
            group = group.commands[word]
    shown = {" ".join(w[:2]) for w in listed}
    assert "drill run" in shown and "status -i" in shown and "runs list" in shown


def complete(words: str, env_extra: dict[str, str] | None = None) -> list[str]:
    env = {"_DRENGINE_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1
                                                                                       + words.endswith(" "))}
    result = subprocess.run([sys.executable, "-m", "drengine.cli"], env={**env, **(env_extra or {}),
                            "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if "," in line]


def test_completion_of_runbooks_clusters_members_and_faults() -> None:
    assert "mariadb-promote-survivor" in complete("drengine plan mariadb-pro")
    assert complete("drengine status -i inventory/simulated.yaml -c sim-") == ["sim-mariadb", "sim-mariadb-healthy"]
    assert complete("drengine plan mariadb-rejoin -i inventory/simulated.yaml -c sim-mariadb --gone d") == ["db1", "db2", "db3"]
    faults = complete("drengine drill run mariadb-promote-survivor -i inventory/simulated.yaml -c sim-mariadb --fault ")
    assert "kill-primary" in faults and "kill-two-nodes" not in faults
    # Issue 25, item 11: no -c yet, the runbook's kind decides (no Ceph faults for a MariaDB drill).
    faults = complete("drengine drill run mariadb-promote-survivor --fault ")
    assert "kill-primary" in faults and "kill-osds" not in faults and "kill-majority" not in faults, faults
    script = subprocess.run([sys.executable, "-m", "drengine.cli", "completion", "bash"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert script.returncode == 0 and "_DRENGINE_COMPLETE" in script.stdout


def test_ceph_timeout_after_status_is_not_called_a_lost_quorum() -> None:
    from drengine.datastores.ceph.status import _quorum_answered

    assert _quorum_answered('monitor command {"format": "json", "prefix": "pg ls"} got no answer within 5 s')
    assert not _quorum_answered('monitor command {"format": "json", "prefix": "status"} got no answer within 5 s')
    assert not _quorum_answered("no Ceph monitor quorum answered within 1 s")


def test_long_documents_are_folded_at_the_gate_and_whole_under_d() -> None:
    from click.testing import CliRunner

    from drengine.cli.terminal import Screen, TextTerminal
    from drengine.steps import Statement

    document = '{"replSetReconfig": {"_id": "rs0", "members": [' + ", ".join(
        f'{{"_id": {i}, "host": "10.0.0.{i}:27017", "priority": 1, "votes": 1}}' for i in range(20)) + "]}, \"force\": true}"
    request = GateRequest(step="force-reconfig", title="force", cluster="c1", level=GateLevel.DANGEROUS,
                          proposal=Proposal(summary="force a config", statements=[Statement("m1", document, "mongo")]))
    screen = Screen()
    screen.evidence["observe"] = ["m0 127.0.0.1:27017: UNREACHABLE (refused)", "m1 127.0.0.1:27018: SECONDARY"]
    terminal = TextTerminal(screen)
    runner = CliRunner()
    with runner.isolation() as streams:
        terminal.show_gate(request)
        shown_gate = streams[0].getvalue().decode()
    with runner.isolation() as streams:
        terminal.show_details(request)
        details = streams[0].getvalue().decode()
    assert "DANGEROUS GATE (data may be lost): step force-reconfig" in shown_gate
    assert document not in shown_gate and "more characters: answer d to see the whole statement" in shown_gate
    assert document in details
    assert "from step observe:" in details and "m0 127.0.0.1:27017: UNREACHABLE (refused)" in details


def test_resume_completes_the_ids_of_resumable_runs_not_files(tmp_path: Path) -> None:
    from drengine.journal import Event, JournalWriter

    runs = tmp_path / "runs"
    for name, end in (("20260101T000000Z-a-0001", "stopped"), ("20260101T000000Z-b-0002", "done")):
        journal = JournalWriter(runs / name)
        journal.append(Event.RUN_STARTED, run_id=name, mode="run", runbook="rb", cluster="a", kind="mariadb")
        journal.append(Event.RUN_FINISHED, end=end, success=end == "done", summary=end)
        journal.close()
    (runs / "notes.txt").write_text("not a run")
    offered = complete(f"drengine run --runs-dir {runs} --resume ")
    assert offered == ["20260101T000000Z-a-0001"], offered

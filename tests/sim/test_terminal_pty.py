"""The CLI at a real terminal (a pty, as an operator's ssh session): gates answered with the
new keys (d, an ambiguous no, yes, y), colour on a terminal and none with NO_COLOR, and
"did you mean" for a mistyped runbook."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, of_type

pexpect = pytest.importorskip("pexpect")

PROMPT = r"\(y = proceed\)\? "
ESCAPE = "\x1b["
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def loose(text: str) -> str:
    """A pattern for `text` that allows style codes anywhere inside it (a highlighted word)."""
    return r"(?:\x1b\[[0-9;]*m)*".join(re.escape(c) for c in text)


def plain(text: str) -> str:
    return SGR.sub("", text)


def colours(text: str) -> list[str]:
    """The colour parameters of the style codes (foreground 30-38, 90-97; background 40-48, 100-107)."""
    found = []
    for params in SGR.findall(text):
        for p in params.split(";"):
            if p.isdigit() and (30 <= int(p) <= 48 or 90 <= int(p) <= 107):
                found.append(p)
    return found


def spawn(*args: str, env: dict[str, str] | None = None) -> Any:
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    base.update({"TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50", "PYTHONPATH": str(ROOT)})
    return pexpect.spawn(sys.executable, ["-m", "drengine.cli", *args], env={**base, **(env or {})}, cwd=str(ROOT),
                         encoding="utf-8", timeout=60, dimensions=(50, 160))


def test_gates_answered_with_the_new_keys_in_colour(tmp_path: Path) -> None:
    child = spawn("run", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb",
                  "--run-dir", str(tmp_path / "run"))
    child.expect(PROMPT)
    seen = child.before
    assert "confirmation gate: step promote" in plain(seen)
    child.sendline("d")
    child.expect(PROMPT)
    details = plain(child.before)
    assert "evidence per member, as this run observed it" in details
    assert "db1 127.0.1.11:3306" in details and "DOWN (error 2003" in details  # per member, from the observe step
    assert "exact statements, whole" in details and "[db2] RESET SLAVE ALL" in details
    child.sendline("no")
    child.expect(PROMPT)
    assert "could mean skip this step (s) or abort the run (a)" in plain(child.before)
    child.sendline("yes")  # an ordinary approval asks no reason: the next gate comes straight away
    for step in ("repoint-replicas", "switch-traffic"):
        child.expect(loose(f"step {step}"))
        assert "Reason" not in child.before
        child.expect(PROMPT)
        child.sendline("y")
    child.expect(["DONE", "FAILED"])
    rest = child.before + child.after
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, rest + child.before
    assert ESCAPE in seen  # colour and emphasis at a terminal
    assert re.search(r"\x1b\[[0-9;]*33m=== confirmation gate", seen)  # the gate stands out (yellow)
    journal = (tmp_path / "run" / "journal.jsonl").read_text()
    assert '"policy":"flags+interactive"' in journal and '"answer":"proceed"' in journal


def test_no_color_and_did_you_mean_at_a_terminal(tmp_path: Path) -> None:
    child = spawn("plan", "mariadb-promote-survivr", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert "Did you mean 'mariadb-promote-survivor'" in plain(child.before)
    assert colours(child.before)  # errors in red at a terminal
    child = spawn("status", "-i", "inventory/simulated.yaml", env={"NO_COLOR": "1"})
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1 and "DOWN" in plain(child.before)
    assert not colours(child.before)  # NO_COLOR: emphasis (bold) may stay, colour goes


def test_no_at_a_break_glass_gate_keeps_the_refusal(tmp_path: Path) -> None:
    child = spawn("run", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb-healthy",
                  "--run-dir", str(tmp_path / "run"))
    child.expect(loose("SAFETY CHECK REFUSED"))
    child.expect(PROMPT)
    assert re.search(r"\x1b\[[0-9;]*31m", child.before)  # refused check and its risk in red
    child.sendline("n")  # at a break-glass gate "no" means: do not override
    child.expect("Reason")
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "gate check-no-primary: skip" in plain(child.before)


def test_dangerous_gate_wants_the_cluster_name_typed(tmp_path: Path) -> None:
    child = spawn("run", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb-healthy",
                  "--run-dir", str(tmp_path / "run"))
    child.expect(PROMPT)
    child.sendline("y")
    child.expect(loose("type the cluster name (sim-mariadb-healthy) exactly"))
    child.sendline("sim-mariadb")
    child.expect(loose("That is not the cluster name (sim-mariadb-healthy); s skips, a aborts"))
    child.sendline("sim-mariadb-healthy")
    child.expect("Reason")
    child.sendline("drill of the override")
    child.expect(loose("OVERRIDE by"))
    child.expect(PROMPT)  # the next gate (fencing the primary that answers: dangerous)
    child.sendline("a")
    child.expect("Reason")
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
    assert "aborted by" in plain(child.before)


def test_the_cluster_name_prompt_can_go_back_or_abort(tmp_path: Path) -> None:
    child = spawn("run", "mariadb-promote-survivor", "-i", "inventory/simulated.yaml", "-c", "sim-mariadb-healthy",
                  "--run-dir", str(tmp_path / "run"))
    child.expect(PROMPT)
    child.sendline("y")
    child.expect(loose("Enter to go back"))
    child.sendline("")  # back to the question, nothing done
    child.expect(loose("Nothing was done; answer again."))
    child.expect(PROMPT)
    child.sendline("y")
    child.expect("cluster name: ")
    child.sendline("a")
    child.expect("Reason")  # a dangerous gate left by abort: the reason is asked
    child.sendline("wrong cluster")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
    assert "aborted by" in plain(child.before)


def test_a_run_piped_through_tee_still_asks_at_the_terminal(tmp_path: Path) -> None:
    # stdin is the terminal, stdout a pipe into tee: the gates are asked, and the log gets them too.
    log = tmp_path / "run.log"
    command = (f"{sys.executable} -m drengine.cli run mariadb-promote-survivor -i inventory/simulated.yaml "
               f"-c sim-mariadb --run-dir {tmp_path / 'run'} | tee {log}")
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    base.update({"TERM": "xterm-256color", "PYTHONPATH": str(ROOT)})
    child = pexpect.spawn("bash", ["-c", command], env=base, cwd=str(ROOT), encoding="utf-8", timeout=60)
    for _ in range(3):  # promote, repoint-replicas, switch-traffic
        child.expect(PROMPT)
        child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    text = log.read_text()
    assert "no terminal to ask" not in text
    assert "confirmation gate: step promote" in text and "DONE" in text


def test_a_step_that_waits_shows_its_elapsed_time() -> None:
    script = ("import time\n"
              "from drengine.cli.terminal import SCREEN, out\n"
              "SCREEN.start_timer('catch-up: wait for db2 to apply its relay log')\n"
              "time.sleep(1.6)\n"
              "SCREEN.stop_timer()\n"
              "out('   catch-up ok [ok]: applied')\n")
    base = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    child = pexpect.spawn(sys.executable, ["-c", script], env={**base, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)},
                          cwd=str(ROOT), encoding="utf-8", timeout=30, dimensions=(50, 160))
    child.expect(pexpect.EOF)
    child.close()
    shown = plain(child.before)
    assert re.search(r"catch-up: wait for db2 to apply its relay log: 1\.\d s", shown), shown
    assert "catch-up ok [ok]: applied" in shown


def test_the_allocation_restore_gate_explains_the_trade_off_and_skipping_it_keeps_the_fix(tmp_path: Path) -> None:
    # Issue 25, item 5: putting `primaries` back is what broke the cluster; the gate says so and keeping 'all' is the goal.
    child = spawn("run", "elasticsearch-reallocate", "-i", "inventory/simulated-elasticsearch.yaml",
                  "-c", "sim-es-allocation-disabled", "--run-dir", str(tmp_path / "run"))
    child.expect(PROMPT)
    assert "step enable-allocation" in plain(child.before)
    child.sendline("p")
    child.expect(PROMPT)
    gate = loose_text = plain(child.before)
    assert "step restore-settings" in gate
    assert "keep cluster.routing.allocation.enable at 'all' as the goal" in " ".join(loose_text.split())
    assert "what kept the unassigned copies from being allocated" in " ".join(gate.split())
    child.sendline("s")
    child.expect("[Rr]eason")
    child.sendline("keep all")
    child.expect(pexpect.EOF)
    rest = plain(child.before)
    child.close()
    assert child.exitstatus == 0, rest
    assert "DONE:" in rest and "skipped: restore-settings" in rest
    assert "kept at 'all' by choice" in " ".join(rest.split())


def test_observing_again_after_a_slow_answer_prints_only_what_changed(tmp_path: Path) -> None:
    # Issue 25, item 9: the whole observation used to be printed again, and the approval journaled twice.
    child = spawn("run", "mongodb-force-primary", "-i", "inventory/simulated-mongodb.yaml", "-c", "sim-mongo-majority-lost",
                  "--run-dir", str(tmp_path / "run"))
    child.expect(PROMPT)
    assert "step fence-removed" in plain(child.before)
    time.sleep(1.5)  # longer than a gate may wait before the cluster is observed again
    child.sendline("p")
    child.expect(PROMPT)  # the dangerous gate of force-reconfig
    between = plain(child.before)
    child.sendline("a")
    child.expect("[Rr]eason")
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert "observing again from observe" in between
    again = between.split("observing again from observe", 1)[1]
    assert "-> observe:" not in again and "m0 127.0.0.1" not in again, again  # no second full observation
    assert "observe ok [ok]" in again and "(nothing else changed)" in again
    assert "the approval by" in again and "stands (the decision is unchanged after observing again)" in again
    answers = [e.data for e in of_type(tmp_path / "run", "gate_answered") if e.data["step"] == "fence-removed"]
    asked = [e for e in of_type(tmp_path / "run", "gate_asked") if e.data["step"] == "fence-removed"]
    assert len(asked) == 1 and len(answers) == 2 and answers[1]["standing"] is True

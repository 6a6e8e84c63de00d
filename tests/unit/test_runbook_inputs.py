"""Runbook inputs: declared under `inputs:` (validated with FILE:LINE), resolved against what
the operator gave (`--input NAME=VALUE`), read by steps through the typed `ctx.inputs`."""

from __future__ import annotations

from pathlib import Path

import pytest

from drengine.errors import InputError, StepFailed
from drengine.runbook import load_runbook, resolve_inputs
from drengine.steps import RunInputs
from tests.helpers import cli

RUNBOOK = """\
name: t
kind: ceph
summary: test
inputs:
  degrade_run:
    description: the degrade run to undo
  runs_dir:
    description: where runs are kept
    default: runs
start: find
steps:
  - id: find
    action: ceph.find_degrade_record
    next: done
goal:
  action: ceph.goal_restored
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rb.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_then_what_the_operator_gave(tmp_path: Path) -> None:
    rb = load_runbook(write(tmp_path, RUNBOOK))
    assert resolve_inputs(rb, {}) == {"runs_dir": "runs"}
    assert resolve_inputs(rb, {"degrade_run": "runs/x", "runs_dir": "/srv/runs"}) == {
        "runs_dir": "/srv/runs", "degrade_run": "runs/x"}


def test_unknown_and_missing_inputs_name_the_input_and_the_runbook(tmp_path: Path) -> None:
    rb = load_runbook(write(tmp_path, RUNBOOK))
    with pytest.raises(InputError, match=r"--input degrade: runbook t has no input named 'degrade'; its inputs: "
                                         r"degrade_run, runs_dir"):
        resolve_inputs(rb, {"degrade": "x"})
    rb = load_runbook(write(tmp_path, RUNBOOK.replace("the degrade run to undo", "the degrade run to undo\n    required: true")))
    with pytest.raises(InputError, match=r"runbook t needs --input degrade_run=VALUE \(the degrade run to undo\)"):
        resolve_inputs(rb, {})


def test_a_step_reading_an_undeclared_input_is_refused_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, RUNBOOK.replace("  runs_dir:\n    description: where runs are kept\n    default: runs\n", ""))
    code, out = cli("runbook", "show", path)
    assert code == 2, out
    assert f"{path}:10: step find (ceph.find_degrade_record) reads the input 'runs_dir'; declare it under `inputs:`" in out


@pytest.mark.parametrize(("edit", "expected"), [
    ("default: runs", "default: runs\n    required: true"),
    ("runs_dir:", "Runs-Dir:"),
    ("    description: where runs are kept\n", ""),
])
def test_bad_declarations_are_refused(tmp_path: Path, edit: str, expected: str) -> None:
    code, out = cli("runbook", "show", write(tmp_path, RUNBOOK.replace(edit, expected)))
    assert code == 2, out
    assert "rb.yaml:" in out and "Traceback" not in out


def test_runbook_show_lists_the_inputs(tmp_path: Path) -> None:
    code, out = cli("runbook", "show", "runbooks/ceph-restore.yaml")
    assert code == 0, out
    assert "input degrade_run (optional): the directory (or journal.jsonl) of the ceph-degrade run to undo" in out
    assert "input runs_dir (default runs): where run directories are kept" in out


def test_reading_an_input_the_runbook_does_not_declare_fails_the_step() -> None:
    inputs = RunInputs("t", frozenset({"degrade_run"}), {"degrade_run": "runs/x"})
    assert inputs.get("degrade_run") == "runs/x"
    with pytest.raises(StepFailed, match="reads the input 'runs_dir', which runbook t does not declare"):
        inputs.get("runs_dir")
    assert RunInputs("t", frozenset({"degrade_run"}), {}).get("degrade_run") is None

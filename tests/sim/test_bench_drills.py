"""bench/bench_drills.py reads a drill's journal to split drengine's overhead from the runbook's
time; `make bench` once stopped there with StopIteration (it looked for a "fault injected" note
the drill no longer writes). The same reading, on a simulated drill's journal."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from drengine.journal import read_entries
from tests.helpers import ROOT, cli

pytestmark = pytest.mark.sim


def bench_drills() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_drills", ROOT / "bench" / "bench_drills.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_cuts_a_drill_journal_into_phases(tmp_path: Path) -> None:
    bench = bench_drills()
    code, out = cli("drill", "mariadb-promote-survivor", "-i", str(ROOT / "inventory" / "simulated.yaml"),
                    "-c", "sim-mariadb-healthy", "--fault", "kill-primary", "--run-dir", str(tmp_path / "drill"))
    assert code == 0, out
    entries = list(read_entries(tmp_path / "drill" / "journal.jsonl"))
    cut = bench.phases(entries)
    assert cut.before_fault >= 0 and cut.runbook >= 0 and cut.after_runbook >= 0
    assert cut.before_fault + cut.runbook + cut.after_runbook <= entries[-1].ts - entries[0].ts + 1e-6


def test_bench_names_a_journal_without_a_fault(tmp_path: Path) -> None:
    bench = bench_drills()
    code, out = cli("run", "mariadb-promote-survivor", "-i", str(ROOT / "inventory" / "simulated.yaml"),
                    "-c", "sim-mariadb", "--yes", "--run-dir", str(tmp_path / "run"))
    entries = list(read_entries(tmp_path / "run" / "journal.jsonl"))
    with pytest.raises(ValueError, match="no fault_injected event"):
        bench.phases(entries)

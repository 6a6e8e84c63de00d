"""Drill journals written by the real journal writer on a chosen clock, for tests of what is
read from them (history, timeline) with exact, known figures."""

from __future__ import annotations

from pathlib import Path

from drengine.journal import Event, JournalWriter
from drengine.objectives import Objectives, judge


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds


def write_drill(run_dir: Path, start: float, rto: float | None, lost: int | None, *, cluster: str = "c1",
                runbook: str = "rb", fault: str = "kill-primary", objectives: Objectives | None = None,
                steps: tuple[tuple[str, float, float], ...] = (("observe", 0.0, 1.0), ("promote", 2.0, 1.0),
                                                                ("verify", 0.0, 0.5))) -> Path:
    """A drill: run start, fault, then each step (name, gate wait, work seconds), then the
    measurements, the verdict and the end. Steps follow each other with no gap."""
    clock = Clock(start)
    journal = JournalWriter(run_dir, clock=clock)
    journal.append(Event.RUN_STARTED, run_id=run_dir.name, mode="drill", runbook=runbook, runbook_sha256="0" * 64,
                   cluster=cluster, kind="mariadb", simulated=True, operator="op@host", host="host", policy="drill", argv=[])
    clock.wait(0.5)
    journal.append(Event.FAULT_INJECTED, fault=fault, description="kill it", members=["db1"], text=f"fault injected: {fault}",
                   at=clock.now)
    fault_at = clock.now
    for step, gate, work in steps:
        if gate:
            journal.append(Event.GATE_ASKED, step=step, level="dangerous", risks=["data may be lost"], summary="promote")
            clock.wait(gate)
            journal.append(Event.GATE_ANSWERED, step=step, answer="proceed", who="op@host", policy="flags",
                           reason="--accept-data-loss")
        journal.append(Event.STEP_STARTED, step=step, effect="mutate", summary=step)
        clock.wait(work)
        journal.append(Event.STEP_FINISHED, step=step, ok=True, outcome="ok", summary=f"{step} done", effect="mutate")
    objectives = objectives or Objectives()
    journal.append(Event.MEASUREMENT, name="recovery_seconds", value=rto, unit="s")
    journal.append(Event.MEASUREMENT, name="lost_writes", value=lost, unit="writes", lost=[])
    judgements = judge(rto, lost, objectives)
    passed = rto is not None and all(j.met is not False for j in judgements)
    journal.append(Event.DRILL_VERDICT, verdict="passed" if passed else "failed", fault=fault, runbook_end="done",
                   runbook_success=True, runbook_summary="done", recovered=rto is not None,
                   objectives=[j.as_dict() for j in judgements], reasons=[] if passed else ["missed"])
    clock.wait(0.1)
    journal.append(Event.RUN_FINISHED, end="done" if passed else "objective-missed", success=passed, summary="s")
    journal.close()
    assert fault_at == start + 0.5
    return run_dir

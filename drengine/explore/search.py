"""The search: hypothesis generates scenarios (the datastore's situations, the operator's
answers, kill points, world changes), the runner runs each one, and a scenario that breaks an
invariant is shrunk by hypothesis to a minimal one, per violated invariant. Derandomized by
the seed: the same seed and number of scenarios explore the same scenarios.

A budget stops the generation of new scenarios when it runs out; a violation already found is
still shrunk (and only scenarios that failed before are run again), so what is reported is
always a scenario that was seen to fail.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.reporting import with_reporter

from drengine.engine import FRESH_FOR
from drengine.explore.kit import Kit, Situation, Violation, digits, pick, portion
from drengine.explore.runner import Result, Runner
from drengine.explore.scenario import Scenario, WorldChange, write
from drengine.machine import DISK

ANSWERS = ("proceed", "skip", "retry", "abort", "stop")
SLOW = "slow"  # a world change that is only time: the member answers, late


def _change(d: list[int], kit: Kit, members: list[str]) -> WorldChange | None:
    """One world change from six digits (None when the first says there is none)."""
    when = pick(d[0], None, "gate", "crash", *(["event"] if kit.flaps else []), percent=40)
    if when is None or not kit.ops:
        return None
    member = members[portion(d[1], len(members) - 1)]
    if when == "event":
        # Behind the engine's back: a member gone between two events, or a member so slow that the
        # statement in flight outlasts its step's deadline (the run's clock jumps past it).
        flaps = (*kit.flaps, SLOW)
        op = flaps[d[3] * len(flaps) // 100]
        advance = pick(d[4], 700.0, 90.0, 4000.0, percent=50) if op == SLOW else 0.0
        return WorldChange(when="event", index=1 + portion(d[2], LATEST_KILL - 1), op=op, member=member, advance=advance)
    # A change while a gate waits or while the engine is dead takes time: past the engine's
    # freshness limit, so what it decided before must be observed again.
    advance = pick(d[4], 2 * FRESH_FOR, 60.0, 3600.0, percent=50)
    index = portion(d[2], 6) if when == "gate" else 1 + portion(d[2], 2)
    return WorldChange(when=when, index=index, op=kit.ops[d[3] * len(kit.ops) // 100], member=member, advance=advance)


ANSWER_DIGITS = digits(6)
CRASH_DIGITS = digits(6)
LATEST_KILL = 200  # journal events: past the end of the longest run explored (Galera's full path)


def _kill(high: int, low: int) -> int:
    """A kill point from two digits: none for most, else any event from 1 to LATEST_KILL, denser
    early (runs differ in length; half the kills land in the first quarter); shrinks towards no
    kill, then towards early kills."""
    if high < 45:
        return 0
    x = ((high - 45) * 100 + low) / 5500
    return 1 + int(x * x * LATEST_KILL)
CHANGE_DIGITS = digits(18)


def scenarios(kit: Kit, runbook: str) -> st.SearchStrategy[Scenario]:
    """Every dimension of a scenario; each one shrinks towards "nothing unusual happens". The
    answers, kills and world changes are packed into one draw each (see kit.digits)."""

    @st.composite
    def build(draw: st.DrawFn) -> Scenario:
        situation: Situation = draw(kit.situations(runbook))
        names = [m.name for m in situation.members]
        answers = []
        for d in draw(ANSWER_DIGITS):
            answer = pick(d, None, *ANSWERS, percent=45)
            if answer is None:
                break
            answers.append(answer)
        packed_kills = draw(CRASH_DIGITS)
        crashes = [_kill(packed_kills[i], packed_kills[i + 1]) for i in range(0, 6, 2)]
        while crashes and not crashes[-1]:
            crashes.pop()
        packed = draw(CHANGE_DIGITS)
        changes = [c for c in (_change(packed[i:i + 6], kit, names) for i in range(0, 18, 6)) if c is not None]
        changes += draw(kit.suggested(runbook, situation))
        prelude = kit.prelude(runbook)
        if prelude is not None:
            changes = draw(kit.after_prelude(runbook, situation)) + changes
        return Scenario(runbook=runbook, kind=kit.kind, label=situation.label, members=situation.members,
                        state=situation.state, prelude=prelude, inputs=situation.inputs, answers=answers, crashes=crashes, changes=changes)

    return build()


@dataclass
class Found:
    invariant: str
    result: Result
    path: Path | None = None

    @property
    def violations(self) -> list[Violation]:
        return self.result.violations


@dataclass
class Report:
    runbook: str
    seed: int
    wanted: int
    explored: int = 0  # scenarios generated and run (shrinking not counted)
    runs: int = 0  # every run, shrinking included
    seconds: float = 0.0
    ends: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    resumes: int = 0
    changes: int = 0
    out_of_budget: bool = False
    found: list[Found] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


class _StopGenerating(BaseException):
    """Stop generating now (the budget ran out before any violation, or `first` has its
    violation): hypothesis passes a BaseException through."""


_VIOLATION_TYPES: dict[str, type[AssertionError]] = {}


def _violation_type(invariant: str) -> type[AssertionError]:
    """One exception type per invariant, so that hypothesis shrinks each one separately."""
    if invariant not in _VIOLATION_TYPES:
        _VIOLATION_TYPES[invariant] = type(f"Violated_{invariant.replace('.', '_').replace('-', '_')}",
                                           (AssertionError,), {})
    return _VIOLATION_TYPES[invariant]


def _key(scenario: Scenario) -> str:
    return hashlib.sha256(scenario.model_dump_json().encode()).hexdigest()


def explore(runbook: str, work: Path, count: int = 500, seed: int = 0, budget: float | None = None,
            progress: Callable[[Report], None] | None = None, runner: Runner | None = None,
            ignore: frozenset[str] = frozenset(), first: bool = False) -> Report:
    """Explore `count` scenarios of `runbook` (fewer when the budget in seconds runs out).
    Violations of the invariants in `ignore` (known, being fixed elsewhere) are counted in
    `report.ignored` but neither shrunk nor reported as found. `first`: stop at the first
    scenario that violates anything, unshrunk (the mutation suite only asks whether one exists)."""
    runner = runner or Runner(runbook, work)
    report = Report(runbook=runner.runbook.name, seed=seed, wanted=count)
    failed: dict[str, Result] = {}
    failed_keys: set[str] = set()
    started = time.perf_counter()
    over = [False]

    def check(scenario: Scenario) -> None:
        spent = over[0] or (budget is not None and time.perf_counter() - started > budget)
        if spent and not failed:
            over[0] = True
            raise _StopGenerating  # nothing to shrink: stop generating at once
        seen = spent and _key(scenario) in failed_keys  # hashed only when it matters: it costs
        if spent and not seen:
            over[0] = True
            return  # shrinking goes on with the scenarios seen to fail only
        fresh = not seen and not failed
        if fresh:
            report.explored += 1
        result = runner.run(scenario)
        report.runs += 1
        if fresh:
            report.ends[result.end] += 1
            report.kills += result.kills
            report.resumes += result.segments - 1
            report.changes += len(scenario.changes)
        if progress is not None and report.runs % 100 == 0:
            report.seconds = time.perf_counter() - started
            progress(report)
        for v in result.violations:
            if v.invariant in ignore:
                report.ignored[v.invariant] += 1
        violations = [v for v in result.violations if v.invariant not in ignore]
        if violations:
            invariant = sorted(v.invariant for v in violations)[0]
            failed[invariant] = result
            failed_keys.add(_key(scenario))
            if first:
                raise _StopGenerating
            raise _violation_type(invariant)("; ".join(v.line() for v in violations))

    test = settings(
        max_examples=count, database=None, deadline=None, derandomize=False, print_blob=False,
        verbosity=Verbosity.quiet, phases=(Phase.generate, Phase.shrink), report_multiple_bugs=True,
        suppress_health_check=list(HealthCheck),
    )(given(scenarios(runner.kit, runner.runbook.name))(check))
    test = hypothesis_seed(seed)(test)
    with with_reporter(lambda _text: None):
        try:
            test()
        except (AssertionError, BaseExceptionGroup, _StopGenerating):
            pass  # the minimal failing scenario of each invariant is in `failed`
    report.seconds = time.perf_counter() - started
    report.out_of_budget = over[0]
    report.found = [Found(name, result) for name, result in sorted(failed.items())]
    return report


def save_cases(report: Report, out: Path) -> None:
    """Write each minimal counterexample as a case file under `out`."""
    for found in report.found:
        scenario = found.result.scenario.model_copy(update={"found": [v.line() for v in found.violations]})
        name = f"{report.runbook}--{found.invariant}--{_key(scenario)[:8]}.yaml"
        found.path = write(scenario, out / name)


def replay(path: Path, work: Path) -> Result:
    """Run a case file again, exactly, keeping its run directory (on a real disk: it is kept)."""
    from drengine.explore.scenario import load

    scenario = load(path)
    runner = Runner(scenario.runbook, work, disk=DISK, keep=True)
    return runner.run(scenario)


def case_strategy_example(kit: Kit, runbook: str) -> Any:
    """One scenario, for tests and the benchmark's warm-up."""
    return scenarios(kit, runbook).example()

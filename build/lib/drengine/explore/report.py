"""What `drengine explore` shows, as lines (the CLI prints them): per runbook, how many
scenarios ran and how they ended, and each violated invariant with its minimal scenario."""

from __future__ import annotations

from drengine.explore.runner import Result
from drengine.explore.search import Report

# How each end reads in the summary, in the order shown.
ENDS = ("done", "incomplete", "failed", "stopped", "interrupted", "never-started", "error")


def summary(report: Report) -> list[str]:
    rate = f"{report.rate:.0f} scenarios/s"
    cut = f" (budget spent after {report.explored} of {report.wanted})" if report.out_of_budget else ""
    lines = [f"explore {report.runbook}: {report.explored} scenarios in {report.seconds:.1f} s, {rate}, "
             f"seed {report.seed}{cut}"]
    ends = ", ".join(f"{name} {report.ends[name]}" for name in (*ENDS, *sorted(set(report.ends) - set(ENDS)))
                     if report.ends.get(name))
    lines.append(f"  ends: {ends or 'none'}; engine killed {report.kills} times, resumed {report.resumes} times; "
                 f"{report.changes} world changes")
    for name, count in sorted(report.ignored.items()):
        lines.append(f"  ignored (--ignore): {name} seen in {count} scenario(s)")
    if not report.found:
        lines.append("  no invariant violated")
    for found in report.found:
        lines.append(f"  VIOLATED {found.invariant} (minimal scenario, shrunk):")
        lines += [f"    {line}" for line in violation(found.result)]
        if found.path is not None:
            lines.append(f"    case file: {found.path}")
            lines.append(f"    replay:    drengine explore --replay {found.path}")
    return lines


def violation(result: Result) -> list[str]:
    lines = list(result.scenario.describe())
    lines.append(f"the run ended: {result.end}" + (f" ({result.error})" if result.error else ""))
    lines += [f"-> {v.line()}" for v in result.violations]
    return lines


def replayed(result: Result) -> list[str]:
    lines = list(result.scenario.describe())
    lines.append(f"the run ended: {result.end} after {result.segments} segment(s), {result.kills} kill(s)"
                 + (f" ({result.error})" if result.error else ""))
    if result.run_dir is not None:
        lines.append(f"journal: drengine journal show {result.run_dir}")
    if not result.violations:
        lines.append("no invariant violated")
    lines += [f"VIOLATED {v.line()}" for v in result.violations]
    return lines

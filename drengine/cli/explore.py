"""`drengine explore`: the command line of the fault-space explorer (runbooks checked against
generated failures on the simulator, with invariants; `--replay` of a case file). The work is in
drengine/explore/command.py; this module parses, prints its lines and picks the exit code."""

from __future__ import annotations

from pathlib import Path

import click

from drengine.cli.terminal import out
from drengine.errors import ExitCode


@click.command()
@click.argument("runbooks", nargs=-1)
@click.option("--scenarios", "count", type=click.IntRange(min=1), default=500, show_default=True,
              help="Scenarios to generate per runbook.")
@click.option("--seed", "seeds", default="0", show_default=True, metavar="SEEDS",
              help="The same seed explores the same scenarios; several: 0-19 or 0,3,7 (each explores --scenarios).")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop generating new scenarios of a runbook after this long (a violation found is still shrunk).")
@click.option("--out", "out_dir", type=click.Path(), default="runs/explore", show_default=True,
              help="Where the minimal counterexamples are written (case files).")
@click.option("--replay", "replay_file", type=click.Path(), help="Run a case file again, exactly.")
@click.option("--export", "export_dir", type=click.Path(),
              help="With --replay: write an inventory and a state file here, and print the `drengine run` commands.")
@click.option("--ignore", multiple=True, metavar="INVARIANT", help="Count this invariant's violations, do not shrink them.")
@click.option("--all", "every", is_flag=True, help="Explore every runbook that has an explore kit.")
@click.option("--site", "site", is_flag=True,
              help="Explore site runs instead: simulated clusters with dependencies lose hosts (drengine/explore/site.py).")
def explore(runbooks: tuple[str, ...], count: int, seeds: str, budget: float | None, out_dir: str,
            replay_file: str | None, export_dir: str | None, ignore: tuple[str, ...], every: bool, site: bool) -> None:
    """Check runbooks against generated failures on the simulator, with invariants.

    Each scenario is a generated cluster situation, the operator's answers at every gate, the
    engine killed at journal boundaries and resumed, and the cluster changing between a gate
    and its action; invariants are checked after every journal event and at the end. Exit 0
    when nothing was violated, 1 when a violation was found (its minimal scenario is written
    as a case file under --out, replayed by `drengine explore --replay FILE`)."""
    from drengine.explore import command

    if site:
        if runbooks or every or replay_file:
            raise click.UsageError("--site explores generated sites; give no RUNBOOK, --all or --replay")
        from drengine.explore.site import explore_command

        lines, ok = explore_command(count, command.seeds(seeds), budget, Path(out_dir))
    elif replay_file:
        if runbooks or every:
            raise click.UsageError("--replay takes the runbook from the case file; give no RUNBOOK")
        lines, ok = command.replay(Path(replay_file), Path(out_dir), Path(export_dir) if export_dir else None)
    else:
        if export_dir:
            raise click.UsageError("--export goes with --replay FILE")
        names = command.runbooks(runbooks, every)
        lines, ok = command.explore(names, count, command.seeds(seeds), budget, Path(out_dir), frozenset(ignore), out)
    for line in lines:
        out(line)
    raise SystemExit(ExitCode.DONE if ok else ExitCode.FAILED)

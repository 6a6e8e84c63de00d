"""`drengine drill`: `drill run` (break a drill-target cluster on purpose, recover it with a
runbook, measure against the objectives; `drengine drill RUNBOOK ...` for short), `drill history`
(past drills, regressions flagged) and `drill schedule` (systemd units or crontab lines); the
fault names per datastore in their help."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from drengine.cli.options import (
    cluster_option,
    complete_faults,
    complete_runbooks,
    help_if_bare,
    inventory_option,
    runbooks,
    runbooks_option,
)
from drengine.cli.recovery import check_kind, close_notifier, notifier_for
from drengine.cli.terminal import SCREEN, out
from drengine.errors import ExitCode


def _fault_epilog(formatter: click.HelpFormatter) -> None:
    """The fault names per datastore, importing the drill kits only when help is shown."""
    from drengine.drill import fault_names, kit_for

    with formatter.section("Faults"):
        rows = []
        for kind, names in fault_names().items():
            kit = kit_for(kind)
            rows += [(f"{kind} {name}", kit.faults[name].description) for name in names]
        formatter.write_dl(rows)


class _DrillCommand(click.Command):
    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _fault_epilog(formatter)


class _DrillGroup(click.Group):
    """`drengine drill run RUNBOOK ...` runs a drill (`drengine drill RUNBOOK ...` is the same, for
    short); `drengine drill schedule ...` renders schedules."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _fault_epilog(formatter)


@click.group("drill", cls=_DrillGroup, invoke_without_command=True)
@click.pass_context
def drill_group(ctx: click.Context) -> None:
    """DR drills: `drengine drill run RUNBOOK -i INVENTORY -c CLUSTER --fault NAME` breaks a drill-target
    cluster on purpose and measures the recovery (`drengine drill RUNBOOK ...` for short);
    `drengine drill schedule -f DRILLS` renders schedules."""
    help_if_bare(ctx)


@drill_group.command("run", cls=_DrillCommand)
@click.argument("runbook", shell_complete=complete_runbooks)
@runbooks_option
@inventory_option()
@cluster_option(text="Cluster (must be marked `drill_target: true`).")
@click.option("--fault", required=True, shell_complete=complete_faults, help="The fault to inject (see below).")
@click.option("--rto", type=float, default=None, metavar="SECONDS",
              help="Recovery-time objective: the drill fails when writes are refused longer than this after the fault.")
@click.option("--max-lost-writes", type=int, default=None, metavar="N",
              help="Lost-writes objective: the drill fails when more acknowledged writes than this are missing.")
@click.option("--drills", "drills_file", type=click.Path(), default=None,
              help="Drills file: objectives of this cluster and drill (the flags above win), and webhooks to notify.")
@click.option("--run-dir", type=click.Path(), help="Directory for the drill's journal and reports (default runs/<run-id>).")
@click.option("--canary-interval", type=float, default=0.05, show_default=True, help="Seconds between canary writes.")
@click.option("--recovery-timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the first successful canary write after the runbook.")
@click.option("--textfile", type=click.Path(), help="Also write the Prometheus text here (node-exporter textfile collector).")
@click.option("--restore", is_flag=True,
              help="Afterwards bring the cluster back to full health (start what the fault stopped, run the rejoin runbook).")
def drill(runbook: str, inventory: str, cluster: str, fault: str, rto: float | None, max_lost_writes: int | None,
          drills_file: str | None, run_dir: str | None, canary_interval: float, recovery_timeout: float,
          textfile: str | None, restore: bool) -> None:
    """Break a drill-target cluster on purpose, recover it unattended with RUNBOOK, measure.

    Checks the cluster is healthy, writes canaries at a steady rate, injects --fault, runs the
    runbook with every gate approved by the drill policy, and measures the recovery time
    (fault to first acknowledged write) and the lost writes. The drill PASSES (exit 0) only
    when the runbook succeeded and every objective set is met; otherwise exit 1, naming the
    objective missed and by how much. Reports: Markdown, HTML, JUnit XML and Prometheus text,
    next to the journal."""
    from drengine.drill import DrillRequest, run_drill
    from drengine.inventory import load_inventory
    from drengine.objectives import Objectives
    from drengine.report import write_all

    if canary_interval <= 0 or recovery_timeout <= 0:
        raise click.UsageError("--canary-interval and --recovery-timeout must be positive")
    if rto is not None and rto <= 0:
        raise click.UsageError(f"--rto {rto:g}: a recovery-time objective is a number of seconds above 0")
    if max_lost_writes is not None and max_lost_writes < 0:
        raise click.UsageError(f"--max-lost-writes {max_lost_writes}: expected 0 or more writes")
    search = runbooks()
    rb = search.load(runbook)
    inv = load_inventory(inventory)
    cl = inv.cluster(cluster)
    check_kind(rb, cl)
    targets = list(inv.notify)
    objectives = Objectives()
    if drills_file:
        from drengine.schedule import load_drills

        spec = load_drills(drills_file)
        objectives = spec.objectives_for(cluster, runbook, fault)
        targets += spec.notify
    objectives = Objectives(rto=rto, lost_writes=max_lost_writes).over(objectives)
    notifier = notifier_for(targets, drills_file or inventory, run_dir=Path(run_dir) if run_dir else None)
    try:
        outcome = run_drill(DrillRequest(
            runbook=rb, inventory=inv, cluster=cl, fault=fault, run_dir=Path(run_dir) if run_dir else None,
            canary_interval=canary_interval, recovery_timeout=recovery_timeout, listeners=[SCREEN.listen], argv=sys.argv[1:],
            restore=restore, objectives=objectives, notifier=notifier, runbooks=search,
        ))
    finally:
        close_notifier(notifier)
    out("")
    out(f"{'DRILL PASSED' if outcome.success else 'DRILL FAILED'}: {outcome.summary}")
    if cl.simulated:
        from drengine.report import SIMULATED_TIME

        out(SIMULATED_TIME)
    for path in write_all(outcome.run_dir, textfile=Path(textfile) if textfile else None):
        out(f"report: {path}")
    raise SystemExit(ExitCode.DONE if outcome.success else ExitCode.FAILED)


@drill_group.command("history")
@click.option("-c", "--cluster", help="Only the drills of this cluster.")
@click.option("--runs", "--runs-dir", "runs_dir", type=click.Path(), default="runs", show_default=True,
              help="Directory holding the run directories (each with its journal).")
@click.option("--last", type=int, default=5, show_default=True,
              help="Compare each drill with the median of this many drills before it (same cluster, runbook and fault).")
@click.option("--threshold", type=float, default=50.0, show_default=True, metavar="PERCENT",
              help="Flag a regression when the RTO is up by more than this against that median.")
@click.option("--html", "html_file", type=click.Path(), help="Also write an HTML page with a chart per figure.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per drill.")
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 when the latest drill of a series regressed.")
def drill_history(cluster: str | None, runs_dir: str, last: int, threshold: float, html_file: str | None,
                  as_json: bool, fail_on_regression: bool) -> None:
    """Past drills: RTO and lost writes over time per cluster, runbook and fault, regressions flagged."""
    from drengine.files import atomic_write
    from drengine.history import history, history_html, history_lines

    if last < 1 or threshold < 0:
        raise click.UsageError("--last must be at least 1 and --threshold at least 0")
    series = history(Path(runs_dir), cluster=cluster, last=last, threshold=threshold / 100)
    if not series:
        where = f" of cluster {cluster}" if cluster else ""
        out(f"no drills{where} under {runs_dir}: run `drengine drill ...` first (or point --runs at the runs directory)")
        raise SystemExit(ExitCode.DONE)
    if as_json:
        for s in series:
            for row in s.rows:
                out(json.dumps(row.as_dict()))
    else:
        for line in history_lines(series, last=last, threshold=threshold):
            out(line)
    if html_file:
        atomic_write(Path(html_file), history_html(series, last=last, threshold=threshold))
        out(f"history page: {html_file}")
    if fail_on_regression and any(s.rows[-1].regressions for s in series):
        raise SystemExit(ExitCode.FAILED)


@drill_group.command("schedule")
@click.option("-f", "--drills", "drills_file", type=click.Path(), required=True, help="Drills file (YAML).")
@click.option("--format", "fmt", type=click.Choice(["systemd", "crontab"]), default="systemd", show_default=True,
              help="systemd timer and service units, or crontab lines.")
@click.option("--out", "out_dir", type=click.Path(), help="Write the units into this directory instead of printing them.")
def drill_schedule(drills_file: str, fmt: str, out_dir: str | None) -> None:
    """Render scheduled drills as systemd timer and service units, or crontab lines."""
    from drengine.schedule import crontab, load_drills, systemd_units

    spec = load_drills(drills_file)
    files = systemd_units(spec) if fmt == "systemd" else {"drengine-drills.crontab": crontab(spec)}
    if out_dir:
        from drengine.files import atomic_write

        for name, text in files.items():
            atomic_write(Path(out_dir) / name, text)
            out(f"wrote {Path(out_dir) / name}")
        return
    for name, text in files.items():
        out(f"# --- {name}")
        out(text.rstrip())

"""`drengine runs list|show`: what has been done and what can be resumed, from the run
directories' journals; with -i also the run registry behind the cluster locks (who holds each
lock and what each run is doing, on every machine of the team or this one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from drengine.cli.options import FC, complete_clusters, complete_runs
from drengine.cli.terminal import emit_json, out, print_table


def _runs_dir_option() -> Callable[[FC], FC]:
    return click.option("--runs-dir", type=click.Path(), default=None,
                        help="Directory holding the run directories (default: runs).")


def _registry_options(fn: FC) -> FC:
    fn = click.option("-c", "--cluster", default=None, shell_complete=complete_clusters,
                      help="With -i: only this cluster's runs.")(fn)
    fn = click.option("-i", "--inventory", type=click.Path(), default=None,
                      help="Also show the run registry of the inventory's clusters: who holds each lock and what "
                           "each run is doing, on every machine of the team (etcd lock) or this one (local).")(fn)
    return fn


@click.group("runs", invoke_without_command=True)
@_runs_dir_option()
@_registry_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document for automation.")
@click.pass_context
def runs_group(ctx: click.Context, runs_dir: str | None, inventory: str | None, cluster: str | None, as_json: bool) -> None:
    """Past and current runs: `runs list` (the default) and `runs show RUN`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(runs_list, runs_dir=runs_dir, inventory=inventory, cluster=cluster, as_json=as_json)


@runs_group.command("list")
@_runs_dir_option()
@_registry_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document for automation.")
def runs_list(runs_dir: str | None, inventory: str | None, cluster: str | None, as_json: bool) -> None:
    """Every run under the runs directory, newest first: id, cluster, runbook, mode, operator,
    start, duration, result, and the command to resume the ones that can be resumed. With -i,
    also what the run registry says: who holds each cluster's lock and what each run is doing."""
    from rich.table import Table

    from drengine.runs import list_runs

    if cluster and not inventory:
        raise click.UsageError("-c CLUSTER needs -i INVENTORY (it picks the run registry of that cluster)")
    # No runs/ yet is normal on a fresh machine; a directory named on purpose must exist.
    folder = Path(runs_dir or "runs")
    runs = list_runs(folder) if runs_dir is not None and not inventory or folder.is_dir() else []
    registry = _registry(inventory, cluster) if inventory else []
    if as_json:
        emit_json({"runs_dir": str(folder),
                   "runs": [r.model_dump(mode="json") | {"started_text": r.started_text} for r in runs],
                   "registry": [c.model_dump(mode="json") for c in registry]})
        return
    if runs:
        table = Table(box=None, padding=(0, 2), header_style="bold")
        for column in ("run", "cluster", "runbook", "mode", "operator", "started", "took", "result", "resumable"):
            table.add_column(column)
        for r in runs:
            took = f"{r.duration_seconds:.1f} s" if r.duration_seconds is not None else "-"
            table.add_row(r.id, r.cluster, r.runbook, r.mode, r.operator, r.started_text, took, r.result,
                          "yes" if r.resumable else "no")
        print_table(table, indent=0)
        for r in runs:
            if r.resumable:
                out(f"resume {r.id}: $ {r.resume_command}")
            if r.journal != "intact":
                out(f"{r.id}: journal {r.journal}")
    elif not inventory:
        out(f"{folder}: no runs yet")
    for entry in registry:
        _show_registry(entry)


def _registry(inventory: str, cluster: str | None) -> list[Any]:
    from drengine.inventory import load_inventory
    from drengine.lock.registry import list_runs as registry_runs

    return registry_runs(load_inventory(inventory), cluster)


def _show_registry(entry: Any) -> None:
    out(f"{entry.cluster}: lock {entry.backend} ({entry.where})", style="bold")
    if entry.problem:
        out(f"  the registry could not be read: {entry.problem}", style="red")
        return
    out(f"  held by {entry.holder.describe()}" if entry.holder else "  lock free")
    for view in entry.runs[:10]:
        run = view.run
        where = f", waiting at gate {run.gate}" if run.gate else (f", at step {run.step}" if run.step and not run.finished else "")
        end = f": {run.end}{' (' + run.summary + ')' if run.summary else ''}" if run.finished else ""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.started)) if run.started else "-"
        out(f"  {run.run_id}  {run.runbook} ({run.mode}) by {run.user}@{run.host}, started {when}: "
            f"{view.status.value}{where}{end}")
        if view.status.value.endswith("(resumable)") and run.run_dir:
            out(f"    $ drengine run --resume {run.run_dir}")


@runs_group.command("close")
@click.argument("run", shell_complete=complete_runs)
@_runs_dir_option()
@click.option("--reason", required=True, help="Why it is closed without resuming it (journaled).")
def runs_close(run: str, runs_dir: str | None, reason: str) -> None:
    """Close a stopped or interrupted run that will not be resumed: its journal ends `closed`,
    with who and why, and it is no longer offered for resuming. Nothing is sent to the cluster."""
    from drengine.gates import operator_name
    from drengine.runs import close_run, find_run

    closed = close_run(find_run(Path(runs_dir or "runs"), run), reason, operator_name())
    out(f"run {closed.id}: {closed.summary}")


@runs_group.command("show")
@click.argument("run", shell_complete=complete_runs)
@_runs_dir_option()
@click.option("--json", "as_json", is_flag=True, help="One JSON document for automation.")
def runs_show(run: str, runs_dir: str | None, as_json: bool) -> None:
    """One run: who ran what, where and when, each step's outcome, the gates and who answered
    them, overrides, and how to resume it. RUN is a run id, the start of one, or a run directory."""
    from drengine.runs import find_run, show_run

    detail = show_run(find_run(Path(runs_dir or "runs"), run))
    if as_json:
        emit_json(detail.model_dump(mode="json"))
        return
    r = detail.run
    out(f"run {r.id}: {r.runbook} on {r.cluster} ({r.kind}), mode {r.mode}", style="bold")
    out(f"  by {r.operator or '?'}, started {r.started_text}, took "
        f"{f'{r.duration_seconds:.1f} s' if r.duration_seconds is not None else '-'}")
    out(f"  result: {r.result}" + (f": {r.summary}" if r.summary else ""))
    out(f"  directory: {r.run_dir}; journal {r.journal}")
    if detail.argv:
        out(f"  command: drengine {' '.join(detail.argv)}")
    if detail.steps:
        out("  steps:", style="bold")
        for step in detail.steps:
            if step.after_resume:
                out("    -- resumed --")
            tries = f" ({step.attempts} attempts)" if step.attempts > 1 else ""
            out(f"    {step.step} {'ok' if step.ok else 'FAILED'} [{step.outcome}]{tries}: {step.summary}")
    if detail.gates:
        out("  gates:", style="bold")
        for g in detail.gates:
            out(f"    {g.step}: {g.answer} by {g.who} ({g.policy}{': ' + g.reason if g.reason else ''})")
    for line in detail.overrides:
        out(f"  OVERRIDE {line}")
    out(f"  statements sent: {detail.statements}")
    for line in detail.left_changed:
        out(f"  {line}", style="yellow")
    for path in detail.reports:
        out(f"  report: {path}")
    if r.resumable:
        out(f"  resumable: $ {r.resume_command}")

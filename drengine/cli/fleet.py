"""`drengine status`: ask every cluster of an inventory what is wrong, without guessing a runbook,
and show it: per cluster a table of members and proxies, a verdict with its evidence, and the
runbook that applies with the exact command; or one JSON document."""

from __future__ import annotations

import shlex
from typing import Any

import click

from drengine.cli.options import cluster_option, inventory_option
from drengine.cli.terminal import console, emit_json, out, print_table
from drengine.errors import ExitCode

VERDICT_STYLES = {"healthy": "bold green", "degraded": "bold yellow", "down": "bold red", "split": "bold white on red",
                  "unknown": "bold magenta"}
STATE_STYLES = {"reachable": "green", "dead": "bold red", "hung": "bold red", "unreachable": "red", "absent": "red",
                "unknown": "yellow"}


def _show_cluster(status: Any, inventory: str) -> None:
    from rich.table import Table
    from rich.text import Text

    from drengine.redact import REDACTOR

    sim = f", simulated: {status.simulated}" if status.simulated else ""
    sim += ", as runs left it" if status.kept_state else ""
    head = Text(f"{status.cluster} ({status.kind}{sim}): ", style="bold")
    head.append(status.verdict.value.upper(), style=VERDICT_STYLES[status.verdict.value])
    head.append(f"  [{status.seconds:.2f} s]", style="dim")
    console().print(head)
    out(f"  {status.headline}")
    if status.runs_registry:
        out(f"  runs: {status.runs_registry}", style="yellow")
    if status.kept_state:
        out(f"  to start it over from its scenario: drengine lab reset -i {shlex.quote(inventory)} "
            f"-c {status.cluster}", style="dim")
    table = Table(box=None, pad_edge=False, padding=(0, 2), show_edge=False, header_style="bold")
    for column in ("member", "role", "state", "position", "lag", "error / note"):
        table.add_column(column, overflow="fold")
    for m in status.members:
        table.add_row(m.name, m.role or "-", Text(m.state.value, style=STATE_STYLES.get(m.state.value, "")),
                      m.position or "-", m.lag or "-", REDACTOR.text(m.error or m.note or ""))
    print_table(table)
    if status.proxies:
        proxies = Table(box=None, padding=(0, 2), header_style="bold")
        for column in ("proxy", "state", "points to", "error"):
            proxies.add_column(column)
        for p in status.proxies:
            proxies.add_row(p.name, p.state, p.points_to or "-", p.error or "")
        print_table(proxies)
    for line in status.facts:
        out(f"  {line}", style="dim")
    if status.evidence:
        out("  evidence:", style="bold")
        for line in status.evidence:
            out(f"    - {line}")
    for advice in status.advice:
        out("  what to do: " + advice.why, style="bold")
        if advice.command:
            out(f"    $ {advice.command}")
    _show_changes(status, inventory)
    out("")


def _show_changes(status: Any, inventory: str) -> None:
    """The change ledger's open entries: age, whether each still holds, how to undo it."""
    if status.changes_problem:
        out(f"  {status.changes_problem}", style="red")
    if not status.changes:
        return
    overdue = sum(1 for c in status.changes if c.overdue)
    out(f"  changes left open by runs: {len(status.changes)}" + (f", {overdue} NEEDING ACTION (overdue)" if overdue else ""),
        style="bold red" if overdue else "bold yellow")
    for change in status.changes:
        out(f"    - {change.line()}", style="red" if change.overdue else "")
        if change.holding.value == "already undone":
            out(f"      $ drengine changes close {change.entry.id} -i {inventory} --reason \"...\"")
        else:
            for line in change.entry.undo_lines():
                out(f"      {line}")



@click.command()
@inventory_option()
@cluster_option(required=False, text="One cluster (default: every cluster of the inventory, probed at once).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document for automation.")
@click.option("--textfile", type=click.Path(), default=None,
              help="Also write the open change-ledger entries as Prometheus text here (node-exporter textfile collector).")
def status(inventory: str, cluster: str | None, as_json: bool, textfile: str | None) -> None:
    """Ask the clusters what is wrong: every member probed in parallel, within the cluster's timeouts.

    Per cluster: a table of members (role, reachable / dead / hung with the error, position,
    lag), a verdict (healthy, degraded, down, split) with its evidence, and the runbook that
    applies with the exact `drengine plan` command; the changes runs left open (the change
    ledger), each checked against the cluster, with its age. Read-only: nothing is changed.

    Exit 0 when every cluster is healthy, 1 when one needs action (or has a change left open past
    its expected undo time), 2 on bad input."""
    from drengine.inventory import load_inventory
    from drengine.ledger import check_expectations
    from drengine.status import probe_fleet

    inv = load_inventory(inventory)
    check_expectations(inv)
    fleet = probe_fleet(inv, [cluster] if cluster else None)
    ledger_outputs(inv, {c.cluster: c.changes for c in fleet.clusters}, textfile)
    code = ExitCode.INVALID_INPUT if fleet.bad_input else ExitCode.FAILED if fleet.needs_action else ExitCode.DONE
    try:
        from drengine.site.view import has_dependencies, site_status

        site = site_status(inv, fleet) if has_dependencies(inv) and not cluster else None
        _show_fleet(fleet, as_json, code, site)
    finally:
        # Shown first, then the connections are closed (bounded: a hung member does not hold us up).
        fleet.wait_closed(max((c.timeouts.connect for c in inv.clusters.values()), default=1.0) + 1.0)
    raise SystemExit(code)


def ledger_outputs(inv: Any, checked: dict[str, Any], textfile: str | None) -> None:
    """The change ledger told to the team: the textfile metric, and a webhook per entry past its
    expected undo time (once each). A failure is said, and changes nothing else."""
    from pathlib import Path

    from drengine.cli.terminal import err
    from drengine.ledger_check import tell_overdue, write_textfile

    if textfile:
        write_textfile(Path(textfile), checked)
    for problem in tell_overdue(inv, checked):
        err(problem)


def _show_fleet(fleet: Any, as_json: bool, code: int, site: Any = None) -> None:
    if as_json:
        document = fleet.model_dump(mode="json")
        document["needs_action"] = fleet.needs_action
        document["exit_code"] = int(code)
        if site is not None:
            document["site"] = site.model_dump(mode="json")
        emit_json(document)
        return
    by_name = {c.cluster: c for c in fleet.clusters}
    for each in [by_name[n] for n in site.order] if site is not None else fleet.clusters:
        _show_cluster(each, fleet.inventory)
    if site is not None:
        from drengine.cli.site import show_site_status

        show_site_status(site, fleet.inventory)
    counts: dict[str, int] = {}
    for each in fleet.clusters:
        counts[each.verdict.value] = counts.get(each.verdict.value, 0) + 1
    words = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: list(VERDICT_STYLES).index(kv[0])))
    out(f"{len(fleet.clusters)} cluster(s) in {fleet.seconds:.2f} s: {words}"
        + (". Nothing needs action." if not fleet.needs_action else ". Act on the ones not HEALTHY (above)."))

"""`drengine site plan` / `drengine site run` (the site's recovery, dependencies first) and the
site part of `drengine status` (the clusters as a dependency tree, what to do first)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from drengine.cli.options import help_if_bare, inventory_option, runbooks, runbooks_option
from drengine.cli.terminal import SCREEN, emit_json, out
from drengine.errors import ExitCode

STANDING_STYLES = {"healthy": "green", "broken": "bold red", "waits": "yellow", "at-risk": "yellow"}


# -- status -----------------------------------------------------------------------------------------

def show_site_status(site: Any, inventory: str) -> None:
    """The site as a tree (each cluster under the first cluster it depends on), then what to do first."""
    out("site, in dependency order (each cluster under what it depends on):", style="bold")
    rows = {r.cluster: r for r in site.clusters}
    children: dict[str | None, list[str]] = {}
    for row in site.clusters:
        children.setdefault(row.depends_on[0] if row.depends_on else None, []).append(row.cluster)

    def show(name: str, depth: int) -> None:
        indent = "  " + "   " * (depth - 1) + "└─ " if depth else "  "
        row = rows[name]
        also = f"; also depends on {', '.join(row.depends_on[1:])}" if len(row.depends_on) > 1 else ""
        waits = f"; waits for {', '.join(row.waits_for)}" if row.waits_for else ""
        out(f"{indent}{name} ({row.kind}): {row.verdict.value.upper()}, {row.standing.value}{waits}{also}",
            style=STANDING_STYLES.get(row.standing.value))
        for child in children.get(name, []):
            show(child, depth + 1)

    for root in children.get(None, []):
        show(root, 0)
    if site.first_words:
        out("what to do first:", style="bold")
        for i, words in enumerate(site.first_words, 1):
            out(f"  {i}. {words}")
        out(f"  the whole site, in this order: $ drengine site plan -i {shlex.quote(inventory)}")
    out("")


# -- site plan / site run ---------------------------------------------------------------------------

@click.group("site", invoke_without_command=True)
@click.pass_context
def site_group(ctx: click.Context) -> None:
    """Recover a whole site: every broken cluster of the inventory, dependencies (`depends_on:`) first.

    \b
    drengine status -i INVENTORY          the site in dependency order, what to do first
    drengine site plan -i INVENTORY       one ordered plan, the exact statements; nothing changed
    drengine site run -i INVENTORY        each cluster's runbook, once what it depends on holds
    drengine site run --resume SITE_RUN   continue where a site run stopped"""
    help_if_bare(ctx)


@site_group.command("plan")
@runbooks_option
@inventory_option()
@click.option("--run-dir", type=click.Path(), help="Directory for the plans' journals (default runs/<site-plan-id>).")
@click.option("--input", "input_values", multiple=True, metavar="CLUSTER:NAME=VALUE",
              help="An input of a cluster's runbook (repeatable), e.g. --input site-galera:bootstrap=g1.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document for automation.")
def site_plan(inventory: str, run_dir: str | None, input_values: tuple[str, ...], as_json: bool) -> None:
    """Dry run of the site: per broken cluster, in dependency order, the runbook its status names
    and every step with the exact statements. Read-only probes; nothing is changed.

    A cluster whose runbook needs an input only the operator can choose (the status says so, or
    the runbook declares it required) is not planned on defaults: the plan names the
    `--input CLUSTER:NAME=VALUE` it needs.

    Exit 0 when every broken cluster has a recovery path, 1 when one has none."""
    from drengine.engine import new_run_id
    from drengine.inventory import load_inventory
    from drengine.site.inputs import parse_site_inputs
    from drengine.site.plan import plan_site

    inv = load_inventory(inventory)
    given = parse_site_inputs(input_values, inv)
    plan_dir = Path(run_dir) if run_dir else Path("runs") / new_run_id("site-plan")
    plan = plan_site(inv, plan_dir, runbooks(), inputs=given)
    code = ExitCode.DONE if plan.success else ExitCode.FAILED
    if as_json:
        emit_json({"inventory": inventory, "order": plan.order, "success": plan.success, "exit_code": int(code),
                   "clusters": [vars(c) for c in plan.clusters], "site": plan.site.model_dump(mode="json")})
        raise SystemExit(code)
    if not plan.clusters:
        out("Every cluster of the site is healthy: nothing to recover.")
        raise SystemExit(code)
    for i, entry in enumerate(plan.clusters, 1):
        after = f" (starts once {', '.join(entry.after)} hold{'s' if len(entry.after) == 1 else ''} "
        after = after + "on a fresh observation; planned against what is true now)" if entry.after else ""
        head = f"{i}. {entry.cluster}: {entry.verdict.upper()}"
        out(f"{head}: {entry.runbook or 'no runbook'}{after}", style="bold")
        if entry.runbook is None:
            out(f"   {entry.summary}")
            continue
        for name, value in entry.inputs.items():
            out(f"   input {name}={value} (--input {entry.cluster}:{name}=...)")
        if entry.needs:
            from drengine.site.inputs import input_flags

            out("   NEEDS INPUT (not planned on the runbook's defaults): give", style="bold red")
            for flag in input_flags(entry.cluster, entry.needs):
                out(f"     {flag}")
            continue
        for row in entry.steps:
            mark = "runs now (read-only)" if row["ran"] else "would run"
            out(f"   - {row['step']} [{row['effect']}, gate {row['gate']}, {mark}]: {row['summary']}")
            for statement in row["statements"]:
                out(f"       {statement}")
        out(f"   {'PLAN OK' if entry.success else 'PLAN FAILS'}: {entry.summary}",
            style="green" if entry.success else "bold red")
    out("")
    if plan.success:
        flags = "".join(f" --input {shlex.quote(v)}" for v in input_values)
        out(f"to run it: $ drengine site run -i {shlex.quote(inventory)}{flags}   (add --yes for the ordinary gates)")
    else:
        out("PLAN FAILS for " + ", ".join(c.cluster for c in plan.clusters if not (c.runbook and c.success))
            + ". Nothing was changed.")
    raise SystemExit(code)


@site_group.command("run")
@runbooks_option
@inventory_option(required=False)
@click.option("--yes", is_flag=True, help="Approve ordinary confirmation gates.")
@click.option("--accept-data-loss", is_flag=True, help="Approve dangerous gates (data may be lost) without a terminal.")
@click.option("--reason", default="", help="Why: recorded in the journals with every gate answer.")
@click.option("--run-dir", type=click.Path(), help="Directory of the site run (default runs/<site-run-id>).")
@click.option("--resume", "resume_dir", metavar="SITE_RUN", help="Resume a site run: its directory or id.")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(), help="With --resume ID: where to look.")
@click.option("--parallel", type=click.IntRange(1, 4), default=None,
              help="Clusters recovered side by side when no gate needs a person (default: 4 without a terminal, "
                   "1 at a terminal: one gate at a time).")
@click.option("--input", "input_values", multiple=True, metavar="CLUSTER:NAME=VALUE",
              help="An input of a cluster's runbook (repeatable), e.g. --input site-galera:bootstrap=g1.")
def site_run(inventory: str | None, yes: bool, accept_data_loss: bool, reason: str, run_dir: str | None,
             resume_dir: str | None, runs_dir: str, parallel: int | None, input_values: tuple[str, ...]) -> None:
    """Recover the site: each broken cluster's runbook (the one `status` names), dependencies
    first. A cluster's recovery starts only when what it depends on holds on a fresh observation.
    Each cluster's run has its own journal and lock under the site run's directory.

    A cluster whose runbook needs an input only the operator can choose is not started on the
    runbook's defaults: its turn says which `--input CLUSTER:NAME=VALUE` to give, and what depends
    on it waits. Ctrl-C stops every cluster run in flight (each resumable).

    Exit 0 when every cluster holds (DONE), 1 when one does not (INCOMPLETE, naming it),
    3 stopped at a gate or by Ctrl-C (resume with --resume)."""
    from drengine.cli.recovery import _gates, _is_interactive
    from drengine.site.inputs import parse_site_inputs
    from drengine.site.run import SiteRequest, resume_site, run_site

    gates = _gates(yes, accept_data_loss, (), reason)
    at_terminal = _is_interactive()
    width = parallel if parallel is not None else (1 if at_terminal else 4)
    if at_terminal and width > 1 and not (yes and accept_data_loss):
        width = 1  # a gate may need the person at the terminal: one at a time
    search = runbooks()

    def request(inv: Any) -> SiteRequest:
        return SiteRequest(
            inventory=inv, gates=gates, parallel=width, argv=sys.argv[1:], runbooks=search,
            site_dir=Path(run_dir) if run_dir else None, runs_root=Path(runs_dir),
            listeners=(lambda cluster: [SCREEN.listen]) if width == 1 else (lambda cluster: []),
            on_event=_site_line, inputs=parse_site_inputs(input_values, inv))

    if resume_dir:
        if inventory:
            raise click.UsageError("--resume takes the inventory from the site journal; give only the site run")
        outcome = resume_site(_find_site(Path(runs_dir), resume_dir), request)
    else:
        if not inventory:
            raise click.UsageError("give -i INVENTORY (or --resume SITE_RUN)")
        from drengine.inventory import load_inventory

        outcome = run_site(request(load_inventory(inventory)))
    report_site(outcome)


def _find_site(runs_dir: Path, ref: str) -> Path:
    from drengine.runs import find_run

    return find_run(runs_dir, ref)


def _site_line(entry: Any) -> None:
    """One line per site event (whose turn, what held), in the words `journal show` uses."""
    from drengine.events import describe

    kind, d = entry.type.value, entry.data
    if kind == "site_cluster":
        style = {"recovered": "green", "healthy": "green", "failed": "bold red"}.get(str(d.get("phase")), "yellow")
    elif kind == "goal_checked" and "cluster" in d:
        style = "green" if d.get("holds") else "yellow"
    else:
        return
    out(f"site: {describe(entry).line}", style=style)


def report_site(outcome: Any) -> NoReturn:
    out("")
    out(f"{'DONE' if outcome.success else 'INCOMPLETE'}: {outcome.summary}")
    for name, turn in outcome.turns.items():
        journal = f"  (journal: drengine journal show {turn.run_dir})" if turn.run_dir else ""
        out(f"  {name}: {turn.phase}{' ' + turn.runbook if turn.runbook else ''}{journal}")
    out(f"site journal: {outcome.site_dir / 'journal.jsonl'}  (resume: drengine site run --resume {outcome.site_dir})"
        if not outcome.success else f"site journal: {outcome.site_dir / 'journal.jsonl'}")
    raise SystemExit(ExitCode.DONE if outcome.success else ExitCode.FAILED)


@click.command("site")
@runbooks_option
@inventory_option()
@click.option("--lose-host", "host", required=True, metavar="HOST", help="The inventory host lost: every member on it.")
@click.option("--hang", is_flag=True, help="Hang (SIGSTOP) the members instead of killing them; woken after the drill.")
@click.option("--rto", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Site recovery-time objective: the host lost to the last cluster taking writes again.")
@click.option("--max-lost-writes", type=click.IntRange(min=0), default=None, metavar="N",
              help="Lost-writes objective, per cluster.")
@click.option("--run-dir", type=click.Path(), help="Directory of the drill (default runs/<drill-site-id>).")
def drill_site(inventory: str, host: str, hang: bool, rto: float | None, max_lost_writes: int | None,
               run_dir: str | None) -> None:
    """Lose a host: kill (or hang) every member of every cluster on HOST at once, recover the site
    unattended (dependencies first, drill policy), and measure the site's recovery time and each
    cluster's recovery time and lost writes. Every cluster must be a drill target and healthy.

    Exit 0 when the site recovered within the objectives, 1 when it did not."""
    from drengine.inventory import load_inventory
    from drengine.objectives import Objectives
    from drengine.site.drill import SiteDrillRequest, run_site_drill

    outcome = run_site_drill(SiteDrillRequest(
        inventory=load_inventory(inventory), host=host, fault="hang" if hang else "kill",
        drill_dir=Path(run_dir) if run_dir else None, objectives=Objectives(rto=rto, lost_writes=max_lost_writes),
        argv=sys.argv[1:], on_event=_site_line, runbooks=runbooks()))
    out("")
    for name, m in outcome.measures.items():
        lost_members = f"lost {', '.join(m.members)}" if m.members else "nothing on the host"
        rto_words = "never" if m.rto is None else f"{m.rto:g} s"
        lost_words = "unknown" if m.lost is None else str(m.lost)
        out(f"  {name}: {lost_members}; recovery {rto_words}; lost writes {lost_words}")
    from drengine.site.report import chart, timelines, write_markdown

    out("")
    for line in chart(timelines(outcome.drill_dir)[1], outcome.site_rto):
        out(f"  {line}")
    out(f"{'PASSED' if outcome.passed else 'FAILED'}: {outcome.summary}")
    out(f"drill journal: {outcome.drill_dir / 'journal.jsonl'}  (the site run: {outcome.drill_dir / 'site'})")
    from drengine.site.html import write_html

    out(f"report: {write_markdown(outcome.drill_dir)}")
    out(f"report: {write_html(outcome.drill_dir)}")
    raise SystemExit(ExitCode.DONE if outcome.passed else ExitCode.FAILED)

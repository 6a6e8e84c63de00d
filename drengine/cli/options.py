"""What several commands share besides printing: the `--runbooks` search path (global and per
command, adding up), the `-i`/`-c` options, a group that shows its help when named alone, and
shell completion of the names an operator would otherwise look up (runbooks, clusters and
members of the inventory given with -i, faults, lab scenarios, runs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from drengine.errors import InputError

if TYPE_CHECKING:  # imported when used: `drengine --help` must stay instant
    from click.shell_completion import CompletionItem

    from drengine.runbook import RunbookSearch

FC = TypeVar("FC", bound=Callable[..., Any])
RUNBOOK_DIRS = "drengine.runbook_dirs"
INPUT_HELP = "A runbook input, NAME=VALUE (repeatable; `drengine runbook show RUNBOOK` lists them)."


def _add_runbook_dirs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    # ctx.meta is shared by the whole command chain: global and per-command --runbooks add up, in order.
    ctx.meta.setdefault(RUNBOOK_DIRS, []).extend(value)


runbooks_option = click.option(
    "--runbooks", multiple=True, metavar="DIR", expose_value=False, callback=_add_runbook_dirs,
    help="Also look for runbooks in DIR (repeatable; searched first, then $DRENGINE_RUNBOOKS, then the built-ins).")


def runbooks() -> RunbookSearch:
    """The runbook search path of this invocation: every --runbooks given, in order."""
    from drengine.runbook import RunbookSearch

    return RunbookSearch(click.get_current_context().meta.get(RUNBOOK_DIRS, []))


def help_if_bare(ctx: click.Context) -> None:
    """A group named without a command shows its help and exits 0: asking is not an error."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)


# -- shell completion: names the operator would otherwise have to look up --------------------------


def _starting(names: list[str], incomplete: str) -> list[CompletionItem]:
    from click.shell_completion import CompletionItem

    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


def complete_runbooks(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from drengine.runbook import RunbookSearch

    try:
        found = RunbookSearch(ctx.meta.get(RUNBOOK_DIRS, [])).found()
    except InputError:
        return []  # a --runbooks folder that does not exist: nothing to offer
    return _starting([f.name for f in found], incomplete)


def _raw_inventory(ctx: click.Context) -> dict[str, Any]:
    """The inventory named by -i so far, read without validation (completion must never fail)."""
    import yaml

    path = ctx.params.get("inventory")
    try:
        data = yaml.safe_load(Path(path).read_text()) if path else None
    except (OSError, yaml.YAMLError):
        return {}
    clusters = data.get("clusters") if isinstance(data, dict) else None
    return clusters if isinstance(clusters, dict) else {}


def complete_clusters(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _starting([str(c) for c in _raw_inventory(ctx)], incomplete)


def complete_members(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    cluster = _raw_inventory(ctx).get(ctx.params.get("cluster") or "")
    members = cluster.get("members", []) if isinstance(cluster, dict) else []
    return _starting([str(m["name"]) for m in members if isinstance(m, dict) and "name" in m], incomplete)


def complete_faults(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from drengine.drill import fault_names

    faults = fault_names()
    cluster = _raw_inventory(ctx).get(ctx.params.get("cluster") or "")
    kind = cluster.get("kind") if isinstance(cluster, dict) else _runbook_kind(ctx)
    names = faults.get(str(kind), []) if kind in faults else [f for fs in faults.values() for f in fs]
    return _starting(names, incomplete)


def _runbook_kind(ctx: click.Context) -> str | None:
    """The datastore of the runbook named so far (a drill's faults are its kind's), or None."""
    import os
    import shlex

    from drengine.runbook import RunbookSearch

    try:
        search = RunbookSearch(ctx.meta.get(RUNBOOK_DIRS, []))
        known = {f.name for f in search.found()}
        # click loses the positional RUNBOOK while the option being completed has no value yet;
        # its completion scripts pass the whole command line in COMP_WORDS.
        words = [ctx.params.get("runbook") or "", *shlex.split(os.environ.get("COMP_WORDS", ""))]
        name = next((w for w in words if w in known), None)
        return str(search.load(name).spec.kind) if name else None
    except (InputError, ValueError):
        return None


def complete_runs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    runs_dir = Path(ctx.params.get("runs_dir") or "runs")
    return _starting([j.parent.name for j in runs_dir.glob("**/journal.jsonl")], incomplete)


def complete_resumable(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """`run --resume`: the ids of the runs that can be resumed (never arbitrary files)."""
    from drengine.runs import journals, summarize

    try:
        found = [summarize(j.parent)[0] for j in journals(Path(ctx.params.get("runs_dir") or "runs"))]
    except InputError:
        return []
    return _starting([r.id for r in found if r.resumable], incomplete)


def complete_scenarios(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from drengine.lab import lab_scenarios

    kind = ctx.params.get("kind")
    return _starting(lab_scenarios(kind) if kind else [], incomplete)


def inventory_option(required: bool = True) -> Callable[[FC], FC]:
    return click.option("-i", "--inventory", type=click.Path(), required=required, help="Inventory YAML file.")


def cluster_option(required: bool = True, text: str = "Cluster name in the inventory.") -> Callable[[FC], FC]:
    return click.option("-c", "--cluster", required=required, help=text, shell_complete=complete_clusters)

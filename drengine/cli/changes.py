"""`drengine changes`: the change ledger of an inventory's clusters (what runs left changed: flags,
settings, fenced members, with the command that undoes each), read from the run registry, and
`drengine changes close ID --reason` to record an undo done by hand once the cluster shows it."""

from __future__ import annotations

import time
from typing import Any

import click

from drengine.cli.options import cluster_option, inventory_option
from drengine.cli.terminal import emit_json, out


def _entry_lines(entry: Any, now: float, within: float | None = None) -> list[str]:
    from drengine.ledger import age_words

    age = age_words(entry.age(now))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(entry.opened))
    overdue = f"; OVERDUE: expected undone within {age_words(within)}" if within is not None and entry.age(now) > within else ""
    lines = [f"  {entry.id} [{entry.kind}] {entry.what}",
             f"    open {age} (since {when}){overdue}; was {'not set' if entry.before is None else entry.before}; "
             f"run {entry.run_id} ({entry.runbook}, step {entry.step}), approved by {entry.approved_by or '?'}"]
    if entry.closed is not None:
        lines.append(f"    closed {entry.closed_how} by {entry.closed_by}: {entry.close_reason}")
    else:
        lines += [f"    {u}" for u in entry.undo_lines()]
    return lines


@click.group("changes", invoke_without_command=True)
@inventory_option(required=False)
@cluster_option(required=False, text="One cluster (default: every cluster of the inventory).")
@click.option("--all", "show_all", is_flag=True, help="Also the entries already closed (kept 30 days).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document for automation.")
@click.option("--textfile", type=click.Path(), default=None,
              help="Also write the open entries as Prometheus text here (node-exporter textfile collector): "
                   "drengine_change_open_age_seconds, drengine_change_overdue, ... per cluster, kind and entry.")
@click.pass_context
def changes_group(ctx: click.Context, inventory: str | None, cluster: str | None, show_all: bool, as_json: bool,
                  textfile: str | None) -> None:
    """The change ledger: what runs left changed (temporary or diminishing changes: Ceph flags and
    min_size, Elasticsearch settings, fenced members, ...), with its age, who approved it and the
    exact command that undoes it. Read from the run registry (etcd for a team lock, else this
    machine's). `drengine changes close ID --reason ...` records an undo done by hand. An entry
    past its expected undo time (`expect_undo_within`) is notified once to the inventory's
    webhooks (event change_overdue); `drengine status` also checks each against the cluster."""
    if ctx.invoked_subcommand is not None:
        return
    if inventory is None:
        raise click.UsageError("give the inventory: drengine changes -i INVENTORY (its clusters' run registry holds the ledger)")
    from drengine.inventory import load_inventory
    from drengine.ledger import check_expectations, expect_undo_within
    from drengine.lock.changes import cluster_changes

    inv = load_inventory(inventory)
    check_expectations(inv)
    names = [cluster] if cluster else sorted(inv.clusters)
    found = [cluster_changes(inv, name) for name in names]
    now = time.time()
    from drengine.cli.fleet import ledger_outputs
    from drengine.ledger_check import check_open

    ledger_outputs(inv, {c.cluster: check_open(inv.cluster(c.cluster), inv, None, c.entries, now) for c in found
                         if not c.problem}, textfile)
    if as_json:
        emit_json({"inventory": inventory, "clusters": [
            {**c.model_dump(mode="json", exclude={"entries"}),
             "entries": [e.model_dump(mode="json") | {
                 "open": e.is_open, "age_seconds": round(e.age(now), 1),
                 "expect_undo_within": expect_undo_within(inv, inv.cluster(c.cluster), e.kind)}
                 for e in c.entries if show_all or e.is_open]}
            for c in found]})
        return
    for each in found:
        shown = [e for e in each.entries if show_all or e.is_open]
        if each.problem:
            out(f"{each.cluster}: the ledger ({each.backend}, {each.where}) could not be read: {each.problem}", style="red")
            continue
        opened = sum(1 for e in each.entries if e.is_open)
        out(f"{each.cluster}: {opened} open change(s)" + (f", {len(shown) - opened} closed" if show_all else ""),
            style="bold")
        for entry in shown:
            within = expect_undo_within(inv, inv.cluster(each.cluster), entry.kind)
            for line in _entry_lines(entry, now, within if entry.is_open else None):
                out(line)


@changes_group.command("close")
@click.argument("entry")
@inventory_option(required=False)
@cluster_option(required=False, text="The cluster of the entry (default: look in every cluster of the inventory).")
@click.option("--reason", required=True, help="How the change was undone (journaled).")
@click.option("--runs-dir", type=click.Path(), default="runs", show_default=True,
              help="Where the journal of this close is written (a run directory of its own).")
@click.option("--force", is_flag=True, help="Close it even when the cluster shows it changed again or cannot be "
                                            "asked (journaled); never while it is still in place.")
@click.pass_context
def changes_close(ctx: click.Context, entry: str, inventory: str | None, cluster: str | None, reason: str, runs_dir: str,
                  force: bool) -> None:
    """Record that a change was undone by hand: ENTRY (its id, or the end of it) is checked
    against the cluster first; still in place is refused (exit 1) with the command that undoes
    it. The close is journaled in a run directory of its own and written to the run registry."""
    from pathlib import Path

    from drengine.gates import operator_name
    from drengine.inventory import load_inventory
    from drengine.ledger_check import close_by_hand, find_entry

    parent = ctx.parent.params if ctx.parent is not None else {}
    path = inventory or parent.get("inventory")
    if path is None:
        raise click.UsageError("give the inventory: drengine changes close ID -i INVENTORY --reason \"...\"")
    inv = load_inventory(path)
    found = find_entry(inv, entry, cluster or parent.get("cluster"))
    closed = close_by_hand(inv, found, reason, operator_name(), Path(runs_dir), force=force)
    out(f"ledger entry {closed.id} closed by {closed.closed_by}: {closed.what}")
    out(f"  {closed.close_reason}")

"""`drengine approve RUN_ID`: the second person of the two-person rule. It finds the run's request
in the run registry (etcd, or the local registry directory), shows what the run's gate showed
(the decision, why, the risks, the exact statements and the evidence) and who approved it so far,
then asks for the cluster name typed and a reason. Exit 0 approved; 2 refused (no such request,
the run no longer runs, or the same person again); 3 nothing approved (declined, or the run
asked something else meanwhile); 4 the registry could not be reached."""

from __future__ import annotations

import time

import click

from drengine.cli.options import cluster_option, inventory_option
from drengine.cli.terminal import SCREEN, TextTerminal, out, show_proposal
from drengine.errors import OperatorStop


def _show(found: object) -> None:
    from drengine.approvals import Found

    assert isinstance(found, Found)
    r = found.request
    dangerous = r.level == "dangerous"
    kind = "break-glass override of a failed check" if r.override else (
        "DANGEROUS GATE (data may be lost)" if dangerous else "confirmation gate")
    asked = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r.asked_at))
    out(f"=== run {r.run_id} waits for approval: {kind}: step {r.step}: {r.title} ===",
        style="bold white on red" if dangerous or r.override else "bold yellow")
    out(f"  cluster {r.cluster}, runbook {r.runbook}; asked {asked} by the run on {r.run_host} (pid {r.pid})")
    show_proposal(r.change, r.summary, r.reason, r.risks, r.statements)
    if r.evidence:
        out("  evidence, as the run observed it:", style="bold")
        for line in r.evidence:
            out(f"    {line}")
    approved = [r.first, *found.approvals]
    out(f"  approved so far ({len(approved)} of {r.needed}): "
        + "; ".join(f"{a.who.words()} ({a.via}{': ' + a.reason if a.reason else ''})" for a in approved))


@click.command()
@click.argument("run_id")
@inventory_option()
@cluster_option(required=False, text="The run's cluster (default: look in every cluster's registry).")
@click.option("--reason", default=None, help="Why you approve (journaled by the run); asked when not given.")
def approve(run_id: str, inventory: str, cluster: str | None, reason: str | None) -> None:
    """Approve, as another person, the gate run RUN_ID waits at (the two-person rule of the
    inventory's `approvals:`): shows its decision, risks, exact statements and evidence, then
    asks for the cluster name. The same person (OS user and host, or $DRENGINE_OPERATOR) is
    refused. Exit 0 approved, 2 refused, 3 nothing approved, 4 registry unreachable."""
    from drengine.approvals import check_not_approved_by, check_waiting, find_request, identity_now, record_approval
    from drengine.inventory import load_inventory

    inv = load_inventory(inventory)
    found = find_request(inv, run_id, cluster)
    _show(found)
    check_waiting(inv, found)
    me = identity_now()
    check_not_approved_by(found, me)
    terminal = TextTerminal(SCREEN)
    name = found.request.cluster
    terminal.say(f"To approve as {me.words()}, type the cluster name ({name}) exactly (Enter: approve nothing):")
    if terminal.prompt("cluster name: ").strip() != name:
        raise OperatorStop(f"nothing was approved (the cluster name {name} was not typed); run {run_id} still waits",
                           who=me.words())
    if reason is None:
        reason = terminal.prompt("Reason (recorded in the run's journal, Enter to skip): ").strip()
    approval = record_approval(found, me, reason)
    out(f"approved by {approval.who.words()}: step {found.request.step} of run {run_id} ({found.request.summary}); "
        f"the run goes on when it next looks at the registry (within a second)")

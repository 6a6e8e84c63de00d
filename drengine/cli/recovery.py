"""`drengine run` (start or resume a recovery, gate by gate) and `drengine plan` (the same walk,
read-only): building the run request from the command line (runbook, inventory, cluster, inputs,
gate policy, webhooks), and saying how the run ended. Also what `drengine drill` shares with
them: the runbook-to-cluster kind check and the notifier of an inventory's webhooks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from drengine.cli.options import (
    INPUT_HELP,
    cluster_option,
    complete_members,
    complete_resumable,
    complete_runbooks,
    inventory_option,
    runbooks,
    runbooks_option,
)
from drengine.cli.terminal import SCREEN, TextTerminal, emit_json, err, out
from drengine.errors import DrengineError, ExitCode, InputError


def _is_interactive() -> bool:
    """Someone can answer when the answers come from a terminal: stdin. Where the output goes does
    not matter (`drengine run ... | tee run.log` still asks at the terminal)."""
    return sys.stdin.isatty()


def _gates(yes: bool, accept_data_loss: bool, overrides: tuple[str, ...], reason: str) -> Any:
    from drengine.gates import FlagPolicy, InteractivePolicy, LayeredPolicy

    flags = FlagPolicy(yes=yes, accept_data_loss=accept_data_loss, overrides=frozenset(overrides), reason=reason)
    interactive = InteractivePolicy(TextTerminal(SCREEN)) if _is_interactive() else None
    return LayeredPolicy(flags, interactive)


def check_kind(rb: Any, cl: Any) -> None:
    if rb.spec.kind != cl.kind:
        raise InputError(f"runbook {rb.name} is for {rb.spec.kind} clusters but {cl.name} is a {cl.kind} cluster; "
                         f"choose a {cl.kind} runbook (`drengine runbook list`)")


def _check_overrides(rb: Any, flags: Any) -> None:
    """`--override STEP` must name a safety-check step of this runbook: a typo must not pass silently."""
    from drengine.steps import Effect

    checks = [s.id for s in rb.spec.steps if rb.action(s.id).effect is Effect.CHECK]
    for step in sorted(getattr(flags, "overrides", ())):
        if step not in checks:
            from drengine.suggest import did_you_mean

            raise InputError(f"--override {step}: runbook {rb.name} has no safety check named {step!r}."
                             f"{did_you_mean(step, checks)} Its checks are: {', '.join(checks) or 'none'}")


def _pairs(flag: str, given: tuple[str, ...], shape: str, example: str) -> dict[str, str]:
    """`--FLAG NAME=VALUE`, repeatable, each name once."""
    values: dict[str, str] = {}
    for raw in given:
        name, sep, value = raw.partition("=")
        if not sep or not name.strip():
            raise click.UsageError(f"--{flag} {raw!r}: expected {shape} (e.g. --{flag} {example})")
        if name.strip() in values:
            raise click.UsageError(f"--{flag} {name.strip()} is given twice; give each once")
        values[name.strip()] = value
    return values


def _inputs(given: tuple[str, ...]) -> dict[str, str]:
    """`--input NAME=VALUE`; the runbook checks the names when the run starts."""
    return _pairs("input", given, "NAME=VALUE", "degrade_run=runs/RUN_ID")


def _timeouts(given: tuple[str, ...]) -> dict[str, float]:
    """`--timeout STEP=SECONDS`; the engine checks the step names against the runbook."""
    found: dict[str, float] = {}
    for step, value in _pairs("timeout", given, "STEP=SECONDS", "promote=1800").items():
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise click.UsageError(f"--timeout {step}={value}: expected STEP=SECONDS with SECONDS above 0 "
                                   f"(e.g. --timeout promote=1800)")
        found[step] = seconds
    return found


def _request(runbook: str, inventory: str, cluster: str, mode: Any, gates: Any, quiet: bool = False, **kw: Any) -> Any:
    from drengine.engine import RunRequest
    from drengine.inventory import load_inventory
    rb = runbooks().load(runbook)
    inv = load_inventory(inventory)
    cl = inv.cluster(cluster)
    check_kind(rb, cl)
    _check_overrides(rb, getattr(gates, "flags", gates))
    gone = tuple(kw.pop("gone", ()) or ()) + tuple(cl.gone_for_good)
    for g in gone:
        cl.member(g)
    return RunRequest(runbook=rb, inventory=inv, cluster=cl, mode=mode, gates=gates, operator_said_gone=gone,
                      listeners=[] if quiet else [SCREEN.listen], argv=sys.argv[1:], **kw)


def notifier_for(targets: list[Any], where: str, run_dir: Path | None = None) -> Any:
    """A notifier for the webhooks of the inventory (and drills file), or None when there are none."""
    if not targets:
        return None
    from drengine.notify import Notifier

    return Notifier(targets, where, run_dir=run_dir)


def close_notifier(notifier: Any) -> None:
    """Let the last notifications go out (bounded by the webhooks' timeouts); say which failed."""
    if notifier is None:
        return
    for failed in notifier.close():
        err(f"notification {failed.event} to {failed.target} failed: {failed.detail} "
            f"(the recovery was not affected; see {notifier.run_dir}/notifications.jsonl)")


def verdict_word(outcome: Any) -> str:
    if outcome.success:
        return "DONE"
    return "INCOMPLETE" if outcome.end == "incomplete" else "FAILED"


def _report_outcome(outcome: Any) -> NoReturn:
    out("")
    out(f"{verdict_word(outcome)}: {outcome.summary}")
    if outcome.resume_at:
        _how_to_go_on(outcome)
    for line in outcome.left:
        out(f"  left to do: {line}")
    from drengine.ledger import listing

    for line in listing(outcome.open_changes):
        out(line)
    out(f"journal: {outcome.run_dir / 'journal.jsonl'}  (read it: drengine journal show {outcome.run_dir})")
    from drengine.report import write_markdown

    report = write_markdown(outcome.run_dir)
    out(f"report: {report}")
    raise SystemExit(ExitCode.DONE if outcome.success else ExitCode.FAILED)


def _how_to_go_on(outcome: Any) -> None:
    """A failed end after the run changed the cluster: what changed, the state now, and the way on."""
    import shlex

    out("  the run changed the cluster before it failed:" if outcome.changed else
        "  a step of this run that changes the cluster started before it failed")
    for line in outcome.changed:
        out(f"    {line}")
    out(f"  the cluster now: {outcome.now}")
    run = shlex.quote(str(outcome.run_dir))
    out(f"  next: once what failed can work (e.g. the members it waits for caught up or are back), go on at step "
        f"{outcome.resume_at} (what was observed and decided after the last change is done again; nothing that took "
        f"effect is repeated)")
    out(f"    $ drengine run --resume {run}   (add --yes / --accept-data-loss as the gates need)")
    if outcome.advice:
        out(f"  or: {outcome.advice}")
    out(f"  or, if nobody will go on with this run: $ drengine runs close {run} --reason \"...\"")


@click.command()
@click.argument("runbook", required=False, shell_complete=complete_runbooks)
@runbooks_option
@inventory_option(required=False)
@cluster_option(required=False)
@click.option("--yes", is_flag=True, help="Approve ordinary confirmation gates.")
@click.option("--accept-data-loss", is_flag=True, help="Approve dangerous gates (data may be lost) without a terminal.")
@click.option("--override", "overrides", multiple=True, metavar="STEP",
              help="Break glass: override the failed safety check of STEP (needs --accept-data-loss or a typed confirmation).")
@click.option("--reason", default="", help="Why: recorded in the journal with every gate answer.")
@click.option("--gone", multiple=True, metavar="MEMBER", shell_complete=complete_members,
              help="Declare a member gone for good (it will not come back).")
@click.option("--input", "inputs", multiple=True, metavar="NAME=VALUE", help=INPUT_HELP)
@click.option("--run-dir", type=click.Path(), help="Directory for this run's journal and report (default runs/<run-id>).")
@click.option("--resume", "resume_dir", metavar="RUN", shell_complete=complete_resumable,
              help="Resume an interrupted run: its id (or the start of it, as `drengine runs show` takes) or its directory.")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(),
              help="With --resume RUN_ID: where to look for the run.")
@click.option("--break-lock", is_flag=True,
              help="Take the cluster lock from the run holding it (journaled; that run stops at its next step boundary).")
@click.option("--lock", "lock_choice", type=click.Choice(["local"]), default=None,
              help="Break glass when etcd is down: take only this machine's lock instead of the inventory's etcd lock "
                   "(needs --reason; journaled as a dangerous gate).")
@click.option("--timeout", "timeouts", multiple=True, metavar="STEP=SECONDS",
              help="Give STEP this timeout instead of the runbook's (repeatable; journaled; also with --resume).")
@click.option("--alone", is_flag=True,
              help="Break glass under the two-person rule (inventory `approvals:`): pass its gates without a second "
                   "person (needs --reason; journaled, notified and flagged in the report).")
def run(runbook: str | None, inventory: str | None, cluster: str | None, yes: bool, accept_data_loss: bool,
        overrides: tuple[str, ...], reason: str, gone: tuple[str, ...], inputs: tuple[str, ...], run_dir: str | None,
        resume_dir: str | None, runs_dir: str, break_lock: bool, lock_choice: str | None,
        timeouts: tuple[str, ...], alone: bool) -> None:
    """Run RUNBOOK against a cluster, gating each step that changes it.

    At a terminal each gate asks: p(roceed) or y, s(kip), r(etry), a(bort), d(etails: the
    evidence per member and the whole statements). Dangerous gates also need the cluster
    name typed. Plan first: `drengine plan RUNBOOK -i INVENTORY -c CLUSTER`."""
    from drengine.engine import ResumeRequest, resume_run, start_run
    from drengine.steps import Mode

    gates = _gates(yes, accept_data_loss, overrides, reason)
    local_lock_reason = None
    if lock_choice == "local":
        if not reason.strip():
            raise click.UsageError('--lock local skips the team lock (break glass): say why with --reason "..." '
                                   "(it is journaled)")
        local_lock_reason = reason.strip()
    if alone and not reason.strip():
        raise click.UsageError('--alone passes gates that the inventory gives to two people with one (break glass): '
                               'say why with --reason "..." (it is journaled and notified)')
    alone_reason = reason.strip() if alone else None
    if resume_dir:
        if runbook or inventory or cluster or inputs:
            raise click.UsageError("--resume takes the runbook, inventory, cluster and inputs from the journal; "
                                   "give only the run (its id or directory)")
        from drengine.runs import find_run

        resume_dir = str(find_run(Path(runs_dir), resume_dir))
        notifier = notifier_for(_resumed_inventory_notify(Path(resume_dir)), resume_dir, run_dir=Path(resume_dir))
        try:
            outcome = resume_run(ResumeRequest(
                Path(resume_dir), gates, [SCREEN.listen, *([notifier.on_event] if notifier else [])],
                break_lock=break_lock, argv=sys.argv[1:], local_lock_reason=local_lock_reason,
                timeouts=_timeouts(timeouts), alone_reason=alone_reason))
        finally:
            close_notifier(notifier)
        _report_outcome(outcome)
    if not (runbook and inventory and cluster):
        raise click.UsageError("give RUNBOOK, -i INVENTORY and -c CLUSTER (or --resume RUN)")
    request = _request(runbook, inventory, cluster, Mode.RUN, gates, gone=gone, break_lock=break_lock,
                       run_dir=Path(run_dir) if run_dir else None, inputs=_inputs(inputs),
                       local_lock_reason=local_lock_reason, timeouts=_timeouts(timeouts), alone_reason=alone_reason)
    notifier = notifier_for(request.inventory.notify, inventory, run_dir=request.run_dir)
    if notifier is not None:
        request.listeners.append(notifier.on_event)
        request.around_walk = notifier.around
    try:
        outcome = start_run(request)
    finally:
        close_notifier(notifier)
    _report_outcome(outcome)


def _resumed_inventory_notify(run_dir: Path) -> list[Any]:
    """The webhooks of the inventory the interrupted run used (none when it cannot be read)."""
    from drengine.inventory import load_inventory
    from drengine.journal import Event, read_entries

    try:
        started = next(e.data for e in read_entries(run_dir / "journal.jsonl") if e.type is Event.RUN_STARTED)
        return list(load_inventory(started["inventory"]).notify)
    except (DrengineError, OSError, StopIteration, KeyError):
        return []  # resume_run itself says what is wrong with the run directory


@click.command()
@click.argument("runbook", shell_complete=complete_runbooks)
@runbooks_option
@inventory_option()
@cluster_option()
@click.option("--gone", multiple=True, metavar="MEMBER", shell_complete=complete_members, help="Declare a member gone for good.")
@click.option("--input", "inputs", multiple=True, metavar="NAME=VALUE", help=INPUT_HELP)
@click.option("--run-dir", type=click.Path(), help="Directory for the plan's journal.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON document (for automation).")
def plan(runbook: str, inventory: str, cluster: str, gone: tuple[str, ...], inputs: tuple[str, ...],
         run_dir: str | None, as_json: bool) -> None:
    """Dry run: probe read-only, then show every step with the exact statements it would send.

    Exit 0 when a recovery path exists, 1 when the runbook would fail (and why). Nothing is changed."""
    from drengine.engine import start_run
    from drengine.gates import FlagPolicy
    from drengine.steps import Mode

    request = _request(runbook, inventory, cluster, Mode.PLAN, FlagPolicy(yes=True, accept_data_loss=True),
                       quiet=as_json, gone=gone, run_dir=Path(run_dir) if run_dir else None, inputs=_inputs(inputs))
    outcome = start_run(request)
    code = ExitCode.DONE if outcome.success else ExitCode.FAILED
    if as_json:
        emit_json({"runbook": request.runbook.name, "cluster": request.cluster.name, "inventory": inventory,
                   "success": outcome.success, "end": outcome.end, "summary": outcome.summary,
                   "run_id": outcome.run_id, "run_dir": str(outcome.run_dir), "steps": outcome.plan,
                   "exit_code": int(code)})
        raise SystemExit(code)
    out("")
    if outcome.success:
        out(f"PLAN OK: a recovery path exists ({outcome.end}). Nothing was changed.")
        import shlex

        given = "".join(f" --gone {shlex.quote(g)}" for g in gone)
        given += "".join(f" --input {shlex.quote(raw)}" for raw in inputs)
        out(f"to run it: $ drengine run {shlex.quote(request.runbook.name)} -i {shlex.quote(inventory)} "
            f"-c {shlex.quote(request.cluster.name)}{given}")
    else:
        out(f"PLAN FAILS: {outcome.summary}. Nothing was changed.")
    raise SystemExit(code)

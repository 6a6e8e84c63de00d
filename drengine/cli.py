"""The command line: the only place that parses argv, prints and picks exit codes.

Every error is caught once here and turned into one clear message and a documented exit
code (0 done, 1 failed or cannot recover, 2 invalid input, 3 stopped at a gate or by the
operator, 4 cluster lock held, unavailable or lost). `--debug` shows the traceback.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from drengine.errors import DrengineError, ExitCode, InputError, StepInterrupted
from drengine.lab import lab_kinds

DEBUG = {"on": False}


def _out(text: str = "") -> None:
    from drengine.redact import REDACTOR

    click.echo(REDACTOR.text(text))


def _err(text: str) -> None:
    from drengine.redact import REDACTOR

    click.echo(REDACTOR.text(text), err=True)


class TextTerminal:
    """Gate prompts at a terminal."""

    def show_gate(self, request: Any) -> None:
        from drengine.steps import GateLevel

        p = request.proposal
        _out("")
        if request.is_override:
            _out(f"=== SAFETY CHECK REFUSED at step {request.step}: break-glass override possible ===")
            for line in request.refusal.lines():
                _out(f"  {line}")
            _out(f"  risk if you override: {request.refusal.risk_if_overridden}")
        else:
            level = "DANGEROUS GATE (data may be lost)" if request.level is GateLevel.DANGEROUS else "confirmation gate"
            _out(f"=== {level}: step {request.step}: {request.title} ===")
            if request.change:
                _out(f"  CHANGED since it was last shown: {request.change}")
            _out(f"  would: {p.summary}")
            if p.reason:
                _out(f"  why: {p.reason}")
            for risk in p.risks:
                _out(f"  RISK: {risk}")
            if p.statements:
                _out("  exact statements:")
                for s in p.statements:
                    _out(f"    {s.show()}")

    def show_details(self, request: Any) -> None:
        for line in request.proposal.evidence or ["(no further evidence)"]:
            _out(f"  {line}")
        for line in request.details:
            _out(f"  {line}")

    def prompt(self, text: str) -> str:
        try:
            return str(click.prompt(text, default="", show_default=False, prompt_suffix=""))
        except (EOFError, click.Abort):
            from drengine.errors import OperatorStop
            from drengine.gates import operator_name

            # click turns Ctrl-C and the end of input alike into Abort: either way the operator stopped here.
            raise OperatorStop("interrupted at the gate by the operator (Ctrl-C or end of input); nothing further "
                               "was changed", who=operator_name()) from None

    def say(self, text: str) -> None:
        _out(text)


def _progress(entry: Any) -> None:
    """Show the run as it is journaled."""
    t, d = entry.type.value, entry.data
    if t == "run_started":
        _out(f"run {d['run_id']}: {d['runbook']} on {d['cluster']} ({d['mode']}{', simulated' if d['simulated'] else ''})")
        for name, value in (d.get("inputs") or {}).items():
            _out(f"   input {name} = {value}")
    elif t == "run_resumed":
        _out(f"resuming run {d['run_id']} at {d['state']}" + (f" (step {d['in_flight']} was in flight)" if d["in_flight"] else ""))
    elif t == "lock_broken":
        _out(f"lock: {d['text']} (was {d['previous']})")
    elif t == "lock_taken" and d.get("previous"):
        _out(f"lock: {d['text']} (was {d['previous']})")
    elif t == "lock_lost":
        _out(f"   LOCK LOST before step {d['step']}: nothing further is sent")
    elif t == "step_started":
        _out(f"-> {d['step']}: {d['summary']}")
        if d["effect"] == "mutate":
            for s in d["statements"]:
                _out(f"     {s}")
    elif t == "step_finished":
        mark = "ok" if d["ok"] else "FAILED"
        _out(f"   {d['step']} {mark} [{d['outcome']}]: {d['summary']}")
        if not d["ok"] or d.get("effect") in ("read", "check"):
            for line in d.get("evidence") or []:
                _out(f"     {line}")
        for line in d.get("refusal") or []:
            _out(f"     {line}")
    elif t == "step_reconciled":
        _out(f"   {d['step']}: {d['summary']}")
    elif t == "step_interrupted":
        _out(f"   {d['step']} INTERRUPTED (effect unknown): {d['summary']}")
    elif t == "observed_again":
        _out(f"   observing again from {d['start']}: {d['reason']}")
    elif t == "decision_changed":
        _out(f"   {d['step']}: the decision changed: {d['text']}")
    elif t == "goal_checked":
        _out(f"   goal {'holds' if d['holds'] else 'DOES NOT hold'}: {d['summary']}")
    elif t == "override":
        _out(f"   OVERRIDE by {d['who']} at {d['step']}: risk accepted: {d['risk']}")
    elif t == "gate_answered" and d["answer"] != "stopped":
        _out(f"   gate {d['step']}: {d['answer']} by {d['who']} ({d['policy']}{': ' + d['reason'] if d['reason'] else ''})")
    elif t == "note":
        _out(f"   note: {d['text']}")
    elif t == "measurement":
        _out(f"   measured {d['name']}: {d['value']} {d.get('unit', '')}")
    elif t == "fault_injected":
        _out(f"   FAULT on {', '.join(d.get('members') or ['?'])}: {d['text']}")
    elif t == "drill_verdict":
        for objective in d.get("objectives") or []:
            _out(f"   {objective['label']}: {objective['text']}")
    elif t == "plan_step":
        ran = "observed" if d["ran"] else ("WOULD RUN" if d["effect"] == "mutate" else "would check")
        if d.get("nothing_to_do"):
            ran = "nothing to do"
        _out(f"{d['step']} [{d['effect']}, gate: {d['gate']}] {ran}: {d['summary']}")
        if d["reason"]:
            _out(f"    why: {d['reason']}")
        for r in d["risks"]:
            _out(f"    RISK: {r}")
        for s in d["statements"]:
            _out(f"    {s}")
        for line in d.get("refusal") or []:
            _out(f"    {line}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="drengine")
def main(debug: bool) -> None:
    """drengine: disaster-recovery runbooks for MariaDB, Galera, MongoDB, Ceph and Elasticsearch.

    Exit codes: 0 done, 1 runbook failed or cannot recover, 2 invalid input or usage,
    3 stopped at a gate or by the operator, 4 cluster lock held by another run, unavailable
    (etcd down: see --lock local) or lost during the run.
    """
    DEBUG["on"] = debug


def _is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _gates(yes: bool, accept_data_loss: bool, overrides: tuple[str, ...], reason: str) -> Any:
    from drengine.gates import FlagPolicy, InteractivePolicy, LayeredPolicy

    flags = FlagPolicy(yes=yes, accept_data_loss=accept_data_loss, overrides=frozenset(overrides), reason=reason)
    interactive = InteractivePolicy(TextTerminal()) if _is_interactive() else None
    return LayeredPolicy(flags, interactive)


def _check_kind(rb: Any, cl: Any) -> None:
    if rb.spec.kind != cl.kind:
        raise InputError(f"runbook {rb.name} is for {rb.spec.kind} clusters but {cl.name} is a {cl.kind} cluster; "
                         f"choose a {cl.kind} runbook (`drengine runbook list`)")


def _check_overrides(rb: Any, flags: Any) -> None:
    """`--override STEP` must name a safety-check step of this runbook: a typo must not pass silently."""
    from drengine.steps import Effect

    checks = [s.id for s in rb.spec.steps if rb.action(s.id).effect is Effect.CHECK]
    for step in sorted(getattr(flags, "overrides", ())):
        if step not in checks:
            raise InputError(f"--override {step}: runbook {rb.name} has no safety check named {step!r}; "
                             f"its checks are: {', '.join(checks) or 'none'}")


def _inputs(given: tuple[str, ...]) -> dict[str, str]:
    """`--input NAME=VALUE`, each name once; the runbook checks the names when the run starts."""
    values: dict[str, str] = {}
    for raw in given:
        name, sep, value = raw.partition("=")
        if not sep or not name.strip():
            raise click.UsageError(f"--input {raw!r}: expected NAME=VALUE (e.g. --input degrade_run=runs/RUN_ID)")
        if name.strip() in values:
            raise click.UsageError(f"--input {name.strip()} is given twice; give each input once")
        values[name.strip()] = value
    return values


_INPUT_HELP = "A runbook input, NAME=VALUE (repeatable; `drengine runbook show RUNBOOK` lists them)."


def _request(runbook: str, inventory: str, cluster: str, mode: Any, gates: Any, **kw: Any) -> Any:
    from drengine.engine import RunRequest
    from drengine.inventory import load_inventory
    from drengine.runbook import load_runbook

    rb = load_runbook(runbook)
    inv = load_inventory(inventory)
    cl = inv.cluster(cluster)
    _check_kind(rb, cl)
    _check_overrides(rb, getattr(gates, "flags", gates))
    gone = tuple(kw.pop("gone", ()) or ()) + tuple(cl.gone_for_good)
    for g in gone:
        cl.member(g)
    return RunRequest(runbook=rb, inventory=inv, cluster=cl, mode=mode, gates=gates, operator_said_gone=gone,
                      listeners=[_progress], argv=sys.argv[1:], **kw)


def _notifier(targets: list[Any], where: str, run_dir: Path | None = None) -> Any:
    """A notifier for the webhooks of the inventory (and drills file), or None when there are none."""
    if not targets:
        return None
    from drengine.notify import Notifier

    return Notifier(targets, where, run_dir=run_dir)


def _close_notifier(notifier: Any) -> None:
    """Let the last notifications go out (bounded by the webhooks' timeouts); say which failed."""
    if notifier is None:
        return
    for failed in notifier.close():
        _err(f"notification {failed.event} to {failed.target} failed: {failed.detail} "
             f"(the recovery was not affected; see {notifier.run_dir}/notifications.jsonl)")


def verdict_word(outcome: Any) -> str:
    if outcome.success:
        return "DONE"
    return "INCOMPLETE" if outcome.end == "incomplete" else "FAILED"


def _report_outcome(outcome: Any) -> NoReturn:
    _out("")
    _out(f"{verdict_word(outcome)}: {outcome.summary}")
    for line in outcome.left:
        _out(f"  left to do: {line}")
    _out(f"journal: {outcome.run_dir / 'journal.jsonl'}  (read it: drengine journal show {outcome.run_dir})")
    from drengine.report import write_markdown

    report = write_markdown(outcome.run_dir)
    _out(f"report: {report}")
    raise SystemExit(ExitCode.DONE if outcome.success else ExitCode.FAILED)


@main.command()
@click.argument("runbook", required=False)
@click.option("-i", "--inventory", type=click.Path(), help="Inventory YAML file.")
@click.option("-c", "--cluster", help="Cluster name in the inventory.")
@click.option("--yes", is_flag=True, help="Approve ordinary confirmation gates.")
@click.option("--accept-data-loss", is_flag=True, help="Approve dangerous gates (data may be lost) without a terminal.")
@click.option("--override", "overrides", multiple=True, metavar="STEP",
              help="Break glass: override the failed safety check of STEP (needs --accept-data-loss or a typed confirmation).")
@click.option("--reason", default="", help="Why: recorded in the journal with every gate answer.")
@click.option("--gone", multiple=True, metavar="MEMBER", help="Declare a member gone for good (it will not come back).")
@click.option("--input", "inputs", multiple=True, metavar="NAME=VALUE", help=_INPUT_HELP)
@click.option("--run-dir", type=click.Path(), help="Directory for this run's journal and report (default runs/<run-id>).")
@click.option("--resume", "resume_dir", type=click.Path(), help="Resume the interrupted run in this directory.")
@click.option("--break-lock", is_flag=True,
              help="Take the cluster lock from the run holding it (journaled; that run stops at its next step boundary).")
@click.option("--lock", "lock_choice", type=click.Choice(["local"]), default=None,
              help="Break glass when etcd is down: take only this machine's lock instead of the inventory's etcd lock "
                   "(needs --reason; journaled as a dangerous gate).")
def run(runbook: str | None, inventory: str | None, cluster: str | None, yes: bool, accept_data_loss: bool,
        overrides: tuple[str, ...], reason: str, gone: tuple[str, ...], inputs: tuple[str, ...], run_dir: str | None,
        resume_dir: str | None, break_lock: bool, lock_choice: str | None) -> None:
    """Run RUNBOOK against a cluster, gating each step that changes it."""
    from drengine.engine import resume_run, start_run
    from drengine.steps import Mode

    gates = _gates(yes, accept_data_loss, overrides, reason)
    local_lock_reason = None
    if lock_choice == "local":
        if not reason.strip():
            raise click.UsageError('--lock local skips the team lock (break glass): say why with --reason "..." '
                                   "(it is journaled)")
        local_lock_reason = reason.strip()
    if resume_dir:
        if runbook or inventory or cluster or inputs:
            raise click.UsageError("--resume takes the runbook, inventory, cluster and inputs from the journal; "
                                   "give only RUN_DIR")
        notifier = _notifier(_resumed_inventory_notify(Path(resume_dir)), resume_dir, run_dir=Path(resume_dir))
        try:
            outcome = resume_run(Path(resume_dir), gates, [_progress, *([notifier.on_event] if notifier else [])],
                                 break_lock=break_lock, argv=sys.argv[1:], local_lock_reason=local_lock_reason)
        finally:
            _close_notifier(notifier)
        _report_outcome(outcome)
    if not (runbook and inventory and cluster):
        raise click.UsageError("give RUNBOOK, -i INVENTORY and -c CLUSTER (or --resume RUN_DIR)")
    request = _request(runbook, inventory, cluster, Mode.RUN, gates, gone=gone, break_lock=break_lock,
                       run_dir=Path(run_dir) if run_dir else None, inputs=_inputs(inputs),
                       local_lock_reason=local_lock_reason)
    notifier = _notifier(request.inventory.notify, inventory, run_dir=request.run_dir)
    if notifier is not None:
        request.listeners.append(notifier.on_event)
        request.around_walk = notifier.around
    try:
        outcome = start_run(request)
    finally:
        _close_notifier(notifier)
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


@main.command()
@click.argument("runbook")
@click.option("-i", "--inventory", type=click.Path(), required=True, help="Inventory YAML file.")
@click.option("-c", "--cluster", required=True, help="Cluster name in the inventory.")
@click.option("--gone", multiple=True, metavar="MEMBER", help="Declare a member gone for good.")
@click.option("--input", "inputs", multiple=True, metavar="NAME=VALUE", help=_INPUT_HELP)
@click.option("--run-dir", type=click.Path(), help="Directory for the plan's journal.")
def plan(runbook: str, inventory: str, cluster: str, gone: tuple[str, ...], inputs: tuple[str, ...],
         run_dir: str | None) -> None:
    """Dry run: probe read-only, then show every step with the exact statements it would send.

    Exit 0 when a recovery path exists, 1 when the runbook would fail (and why)."""
    from drengine.engine import start_run
    from drengine.gates import FlagPolicy
    from drengine.steps import Mode

    request = _request(runbook, inventory, cluster, Mode.PLAN, FlagPolicy(yes=True, accept_data_loss=True),
                       gone=gone, run_dir=Path(run_dir) if run_dir else None, inputs=_inputs(inputs))
    outcome = start_run(request)
    _out("")
    if outcome.success:
        _out(f"PLAN OK: a recovery path exists ({outcome.end}). Nothing was changed.")
        raise SystemExit(ExitCode.DONE)
    _out(f"PLAN FAILS: {outcome.summary}. Nothing was changed.")
    raise SystemExit(ExitCode.FAILED)


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
    """`drengine drill RUNBOOK ...` runs a drill; `drengine drill schedule ...` renders schedules."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _fault_epilog(formatter)


@main.group("drill", cls=_DrillGroup)
def drill_group() -> None:
    """DR drills: `drengine drill RUNBOOK -i INVENTORY -c CLUSTER --fault NAME` breaks a drill-target
    cluster on purpose and measures the recovery; `drengine drill schedule -f DRILLS` renders schedules."""


@drill_group.command("run", cls=_DrillCommand)
@click.argument("runbook")
@click.option("-i", "--inventory", type=click.Path(), required=True, help="Inventory YAML file.")
@click.option("-c", "--cluster", required=True, help="Cluster (must be marked `drill_target: true`).")
@click.option("--fault", required=True, help="The fault to inject (see below).")
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
    from drengine.runbook import load_runbook

    if canary_interval <= 0 or recovery_timeout <= 0:
        raise click.UsageError("--canary-interval and --recovery-timeout must be positive")
    if rto is not None and rto <= 0:
        raise click.UsageError(f"--rto {rto:g}: a recovery-time objective is a number of seconds above 0")
    if max_lost_writes is not None and max_lost_writes < 0:
        raise click.UsageError(f"--max-lost-writes {max_lost_writes}: expected 0 or more writes")
    rb = load_runbook(runbook)
    inv = load_inventory(inventory)
    cl = inv.cluster(cluster)
    _check_kind(rb, cl)
    targets = list(inv.notify)
    objectives = Objectives()
    if drills_file:
        from drengine.schedule import load_drills

        spec = load_drills(drills_file)
        objectives = spec.objectives_for(cluster, runbook, fault)
        targets += spec.notify
    objectives = Objectives(rto=rto, lost_writes=max_lost_writes).over(objectives)
    notifier = _notifier(targets, drills_file or inventory, run_dir=Path(run_dir) if run_dir else None)
    try:
        outcome = run_drill(DrillRequest(
            runbook=rb, inventory=inv, cluster=cl, fault=fault, run_dir=Path(run_dir) if run_dir else None,
            canary_interval=canary_interval, recovery_timeout=recovery_timeout, listeners=[_progress], argv=sys.argv[1:],
            restore=restore, objectives=objectives, notifier=notifier,
        ))
    finally:
        _close_notifier(notifier)
    _out("")
    _out(f"{'DRILL PASSED' if outcome.success else 'DRILL FAILED'}: {outcome.summary}")
    for path in write_all(outcome.run_dir, textfile=Path(textfile) if textfile else None):
        _out(f"report: {path}")
    raise SystemExit(ExitCode.DONE if outcome.success else ExitCode.FAILED)


@drill_group.command("history")
@click.option("-c", "--cluster", help="Only the drills of this cluster.")
@click.option("--runs", "runs_dir", type=click.Path(), default="runs", show_default=True,
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
        _out(f"no drills{where} under {runs_dir}: run `drengine drill ...` first (or point --runs at the runs directory)")
        raise SystemExit(ExitCode.DONE)
    if as_json:
        for s in series:
            for row in s.rows:
                _out(json.dumps(row.as_dict()))
    else:
        for line in history_lines(series, last=last, threshold=threshold):
            _out(line)
    if html_file:
        atomic_write(Path(html_file), history_html(series, last=last, threshold=threshold))
        _out(f"history page: {html_file}")
    if fail_on_regression and any(s.rows[-1].regressions for s in series):
        raise SystemExit(ExitCode.FAILED)


@drill_group.command("schedule")
@click.option("-f", "--drills", "drills_file", type=click.Path(), required=True, help="Drills file (YAML).")
@click.option("--format", "fmt", type=click.Choice(["systemd", "crontab"]), default="systemd", show_default=True)
@click.option("--out", "out_dir", type=click.Path(), help="Write the units into this directory instead of printing them.")
def drill_schedule(drills_file: str, fmt: str, out_dir: str | None) -> None:
    """Render scheduled drills as systemd timer and service units, or crontab lines."""
    from drengine.schedule import crontab, load_drills, systemd_units

    spec = load_drills(drills_file)
    files = systemd_units(spec) if fmt == "systemd" else {"drengine-drills.crontab": crontab(spec)}
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (Path(out_dir) / name).write_text(text)
            _out(f"wrote {Path(out_dir) / name}")
        return
    for name, text in files.items():
        _out(f"# --- {name}")
        _out(text.rstrip())


@main.group("inventory")
def inventory_group() -> None:
    """Inventories: where the clusters are."""


@inventory_group.command("check")
@click.option("-i", "--inventory", type=click.Path(), required=True)
def inventory_check(inventory: str) -> None:
    """Validate an inventory; each problem as FILE:LINE (exit 2)."""
    from drengine.inventory import load_inventory

    inv = load_inventory(inventory)
    for name, cl in inv.clusters.items():
        sim = f", simulated ({cl.simulated.scenario})" if cl.simulated else ""
        _out(f"{name}: {cl.kind}, {len(cl.members)} member(s){sim}")
    _out(f"{inventory}: OK")


@main.group("runbook")
def runbook_group() -> None:
    """Runbooks: what drengine can do."""


@runbook_group.command("list")
def runbook_list() -> None:
    from drengine.runbook import list_runbooks

    bad = 0
    for name, rb in list_runbooks():
        if isinstance(rb, InputError):
            bad += 1
            _out(f"{name}: INVALID: {rb}")
            for p in rb.problems:
                _out(f"    {p}")
        else:
            _out(f"{name:32} {rb.spec.kind:14} {rb.spec.summary}")
    if bad:
        raise SystemExit(ExitCode.INVALID_INPUT)


@runbook_group.command("show")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid"]), default="text")
def runbook_show(name: str, fmt: str) -> None:
    from drengine.runbook import describe, load_runbook

    rb = load_runbook(name)
    if fmt == "mermaid":
        _out(rb.mermaid().rstrip())
        return
    _out(f"{rb.name} ({rb.spec.kind}): {rb.spec.summary}")
    if rb.spec.description:
        _out(rb.spec.description.rstrip())
    for name, spec in rb.spec.inputs.items():
        need = "required" if spec.required else (f"default {spec.default}" if spec.default is not None else "optional")
        _out(f"input {name} ({need}): {spec.description}")
    _out(f"start: {rb.spec.start}")
    for row in describe(rb):
        _out(f"  {row['id']}: {row['title']}  [{row['action']}, {row['effect']}, gate: {row['gate']}]")
        for outcome, dest in row["transitions"].items():
            _out(f"      {outcome} -> {dest}")
    _out("ends: " + ", ".join(f"{k} ({'success' if v.success else 'failure'})" for k, v in rb.spec.ends.items()))


@main.group("journal")
def journal_group() -> None:
    """Run journals: verify and show."""


@journal_group.command("verify")
@click.argument("path", type=click.Path())
def journal_verify(path: str) -> None:
    """Check the hash chain; exit 1 naming the first bad line."""
    from drengine.journal import verify

    count = verify(path)
    _out(f"{path}: OK, {count} events, chain intact")


@journal_group.command("show")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def journal_show(path: str, as_json: bool) -> None:
    from drengine.journal import read_entries, resolve_journal

    for entry in read_entries(resolve_journal(path)):
        if as_json:
            _out(json.dumps({"seq": entry.seq, "ts": entry.ts, "type": entry.type.value, "data": entry.data}))
        else:
            _progress(entry)


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["md", "html", "junit", "prom", "markdown"]), default="md",
              show_default=True, help="Markdown, self-contained HTML, JUnit XML or Prometheus text.")
@click.option("--out", "out_file", type=click.Path(),
              help="Where to write it (default: next to the journal: report.md, report.html, junit.xml, drill.prom); "
                   "`-` prints it.")
def report(run_dir: str, fmt: str, out_file: str | None) -> None:
    """Write the report of a run from its journal alone."""
    from drengine.files import atomic_write
    from drengine.journal import resolve_journal
    from drengine.report import FORMATS, render

    fmt = "md" if fmt == "markdown" else fmt
    journal = resolve_journal(run_dir)
    text = render(journal.parent, fmt)
    if out_file == "-":
        _out(text.rstrip("\n"))
        return
    path = Path(out_file) if out_file else journal.parent / FORMATS[fmt]
    atomic_write(path, text)
    _out(str(path))


@main.group("lab")
def lab_group() -> None:
    """Real local services on loopback for drills and tests."""


@lab_group.command("up")
@click.argument("kind", type=click.Choice(lab_kinds()))
@click.option("--dir", "lab_dir", type=click.Path(), default=None, help="Lab directory (default /tmp/drengine-lab).")
@click.option("--inventory-out", type=click.Path(), default="inventory/lab.yaml", show_default=True)
@click.option("--scenario", default=None,
              help="For the simulated labs (mongodb, elasticsearch): which situation the served cluster is in.")
def lab_up(kind: str, lab_dir: str | None, inventory_out: str, scenario: str | None) -> None:
    """Start a lab cluster and write its inventory.

    mariadb, galera, ceph and ssh start real daemons on loopback; mongodb and elasticsearch
    serve the simulators over the real protocols (no such servers can be installed here);
    etcd starts a three-member etcd for the team lock and points the inventory's `lock:` at it."""
    from drengine.lab import start_lab

    summary = start_lab(kind, lab_dir, inventory_out, scenario)
    _out(summary)


@lab_group.command("status")
@click.option("--dir", "lab_dir", type=click.Path(), default=None)
def lab_status(lab_dir: str | None) -> None:
    from drengine.lab import lab_status_lines

    for line in lab_status_lines(lab_dir):
        _out(line)


@lab_group.command("down")
@click.argument("kind", required=False)
@click.option("--dir", "lab_dir", type=click.Path(), default=None)
def lab_down(kind: str | None, lab_dir: str | None) -> None:
    """Stop what the lab started (by PID)."""
    from drengine.lab import stop_lab

    for line in stop_lab(kind, lab_dir):
        _out(line)


def _where_the_run_is(exc: DrengineError) -> None:
    """Every stop of a run says where its journal is and how to go on."""
    if exc.run_dir is None:
        return
    _err(f"run directory: {exc.run_dir}")
    if exc.resumable:
        _err(f"resume: drengine run --resume {exc.run_dir}   (add --yes / --accept-data-loss as the gates need)")
    _err(f"journal: drengine journal show {exc.run_dir}")


def run_cli(argv: list[str] | None = None) -> int:
    """The one error boundary."""
    try:
        main.main(args=argv, prog_name="drengine", standalone_mode=False)
        return ExitCode.DONE
    except SystemExit as exc:
        return int(exc.code or 0)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        _err(f"usage error: {exc.format_message()}")
        if exc.ctx is not None:
            _err(f"see `{exc.ctx.command_path} --help`")
        return ExitCode.INVALID_INPUT
    except click.Abort:
        _err("stopped by the operator")
        return ExitCode.STOPPED
    except click.ClickException as exc:
        _err(f"error: {exc.format_message()}")
        return ExitCode.INVALID_INPUT
    except DrengineError as exc:
        if DEBUG["on"]:
            traceback.print_exc()
        _err(f"{'INTERRUPTED' if isinstance(exc, StepInterrupted) else 'error'}: {exc}")
        for problem in getattr(exc, "problems", []):
            _err(f"  {problem}")
        _where_the_run_is(exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _err("interrupted: every event so far is in the journal; continue with `drengine run --resume RUN_DIR`")
        return ExitCode.STOPPED
    except Exception as exc:  # noqa: BLE001 - the error boundary: never a bare traceback
        if DEBUG["on"]:
            traceback.print_exc()
        _err(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback; please report it)")
        return ExitCode.FAILED


def entry() -> None:
    sys.exit(run_cli())


if __name__ == "__main__":
    entry()

"""The command line: the only place that parses argv, prints and picks exit codes.

Every error is caught once here and turned into one clear message and a documented exit
code (0 done, 1 failed or cannot recover, 2 invalid input, 3 stopped at a gate or by the
operator, 4 cluster lock held, unavailable or lost). `--debug` shows the traceback.

Output goes through rich: colour and emphasis only when the stream is a terminal (and
NO_COLOR is not set), plain text otherwise, so logs and pipes stay clean. Every line passes
the redactor first.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from drengine.errors import DrengineError, ExitCode, InputError, StepInterrupted
from drengine.lab import lab_kinds, node_kinds, served_kinds

if TYPE_CHECKING:  # imported when used: `drengine --help` must stay instant
    from drengine.runbook import RunbookSearch

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem
    from rich.console import Console

DEBUG = {"on": False}
FC = TypeVar("FC", bound=Callable[..., Any])
# A statement longer than this is folded at a gate; `d` shows it whole.
FOLD_CHARS = 400
FOLD_LINES = 8

# Words that carry the meaning of a line, coloured wherever they appear (terminal only).
HIGHLIGHTS = [
    r"(?P<bad>\b(?:FAILED|FAILS|REFUSED|RISK|DANGEROUS GATE|OVERRIDDEN|OVERRIDE|UNREACHABLE|INVALID|DOWN|HUNG|DEAD|SPLIT|"
    r"BROKEN)\b)",
    r"(?P<good>\b(?:DONE|PLAN OK|DRILL PASSED|HEALTHY|intact)\b|(?<= )ok(?= \[)|: OK\b)",
    r"(?P<warn>\b(?:WOULD RUN|DEGRADED|STOPPED|INCOMPLETE|UNKNOWN|interrupted|resumable)\b)",
    r"(?P<cmd>(?:^|(?<=\s))\$ drengine .*$|`drengine [^`]+`)",
]
THEME = {"dr.bad": "bold red", "dr.good": "bold green", "dr.warn": "bold yellow", "dr.cmd": "bold cyan",
         "dr.dim": "dim", "dr.head": "bold"}
_CONSOLES: dict[bool, Console] = {}


def _console(err: bool = False) -> Console:
    """The console for stdout (or stderr), made again whenever the stream changed (tests swap it)."""
    from rich.console import Console
    from rich.highlighter import RegexHighlighter
    from rich.theme import Theme

    stream = sys.stderr if err else sys.stdout
    current = _CONSOLES.get(err)
    if current is not None and current.file is stream:
        return current

    class Words(RegexHighlighter):
        base_style = "dr."
        highlights = HIGHLIGHTS

    tty = bool(getattr(stream, "isatty", lambda: False)())
    console = Console(file=stream, theme=Theme(THEME), highlighter=Words(), markup=False, emoji=False,
                      soft_wrap=True, width=None if tty else 1000, highlight=True)
    _CONSOLES[err] = console
    return console


def _out(text: str = "", style: str | None = None) -> None:
    from drengine.redact import REDACTOR

    _console().print(REDACTOR.text(text), style=style)


def _err(text: str) -> None:
    from drengine.redact import REDACTOR

    _console(err=True).print(REDACTOR.text(text),
                             style="bold red" if text.startswith(("error", "internal", "INTERRUPTED")) else None)


def _json(document: Any) -> None:
    """Machine-readable output: plain JSON on stdout (never coloured), secrets redacted."""
    from drengine.redact import REDACTOR

    click.echo(json.dumps(REDACTOR.deep(json.loads(json.dumps(document, default=str))), indent=2))


def _fold(text: str) -> str:
    """A long statement (a whole config document) shortened for the gate; `d` shows all of it."""
    lines = text.splitlines() or [""]
    if len(text) <= FOLD_CHARS and len(lines) <= FOLD_LINES:
        return text
    shown = "\n".join(lines[:FOLD_LINES])[:FOLD_CHARS]
    return f"{shown} ... [{len(text) - len(shown)} more characters: answer d to see the whole statement]"


class _Elapsed:
    """What the live line shows under a running step: its name and the seconds so far."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(f"     ... {self.label}: {time.monotonic() - self.started:.1f} s", style="dim")


class Screen:
    """What one invocation shows besides the journal lines: a live elapsed timer under the step
    that is running (terminal only), and the evidence steps recorded, for `d` at a later gate."""

    # A step that ends sooner shows no timer at all (no flicker on fast steps).
    TIMER_AFTER = 0.5

    def __init__(self) -> None:
        self._live: Any = None
        self._pending: threading.Timer | None = None
        self._guard = threading.Lock()
        self.evidence: dict[str, list[str]] = {}

    def start_timer(self, label: str) -> None:
        console = _console()
        if not console.is_terminal:
            return
        with self._guard:
            self._stop()
            elapsed = _Elapsed(label)
            self._pending = threading.Timer(self.TIMER_AFTER, self._show, args=(elapsed,))
            self._pending.daemon = True
            self._pending.start()

    def _show(self, elapsed: _Elapsed) -> None:
        from rich.live import Live

        with self._guard:
            if self._pending is None or self._live is not None:
                return  # the step ended meanwhile
            self._live = Live(elapsed, console=_console(), refresh_per_second=4, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()

    def stop_timer(self) -> None:
        with self._guard:
            self._stop()

    def _stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._live is not None:
            self._live.stop()
            self._live = None

    def listen(self, entry: Any) -> None:
        t, d = entry.type.value, entry.data
        if t != "statement_sent":  # statements are sent while the step runs; anything else ends its line
            self.stop_timer()
        if t == "step_finished" and d.get("evidence"):
            self.evidence[str(d["step"])] = list(d["evidence"])
        _progress(entry)
        if t == "step_started":
            self.start_timer(f"{d['step']}: {d['summary']}")


SCREEN = Screen()


class TextTerminal:
    """Gate prompts at a terminal: dangerous gates in red, long documents folded, `d` for all of it."""

    def __init__(self, screen: Screen | None = None) -> None:
        self.screen = screen or SCREEN

    def show_gate(self, request: Any) -> None:
        from drengine.steps import GateLevel

        self.screen.stop_timer()
        p = request.proposal
        _out("")
        if request.is_override:
            _out(f"=== SAFETY CHECK REFUSED at step {request.step}: break-glass override possible ===", style="bold red")
            for line in request.refusal.lines():
                _out(f"  {line}")
            _out(f"  risk if you override: {request.refusal.risk_if_overridden}", style="red")
        else:
            dangerous = request.level is GateLevel.DANGEROUS
            level = "DANGEROUS GATE (data may be lost)" if dangerous else "confirmation gate"
            _out(f"=== {level}: step {request.step}: {request.title} ===",
                 style="bold white on red" if dangerous else "bold yellow")
            if request.change:
                _out(f"  CHANGED since it was last shown: {request.change}", style="bold yellow")
            _out(f"  would: {p.summary}")
            if p.reason:
                _out(f"  why: {p.reason}")
            for risk in p.risks:
                _out(f"  RISK: {risk}", style="red")
            if p.statements:
                _out("  exact statements:")
                for s in p.statements:
                    _out(f"    {_fold(s.show())}")

    def show_details(self, request: Any) -> None:
        shown = False
        if self.screen.evidence:
            _out("  evidence per member, as this run observed it:", style="bold")
            for step, lines in self.screen.evidence.items():
                _out(f"    from step {step}:")
                for line in lines:
                    _out(f"      {line}")
            shown = True
        for line in [*request.proposal.evidence, *request.details]:
            _out(f"  {line}")
            shown = True
        if request.proposal.statements:
            _out("  exact statements, whole:", style="bold")
            for s in request.proposal.statements:
                _out(f"    {s.show()}")
            shown = True
        if not shown:
            _out("  (this run has recorded no evidence for this step yet)")

    def prompt(self, text: str) -> str:
        from rich.text import Text

        self.screen.stop_timer()
        try:
            return str(_console().input(Text(text, style="bold")))
        except (EOFError, click.Abort):
            from drengine.errors import OperatorStop
            from drengine.gates import operator_name

            # click turns Ctrl-C and the end of input alike into Abort: either way the operator stopped here.
            raise OperatorStop("interrupted at the gate by the operator (Ctrl-C or end of input); nothing further "
                               "was changed", who=operator_name()) from None

    def say(self, text: str) -> None:
        _out(text, style="yellow")


def _progress(entry: Any) -> None:
    """Show the run as it is journaled, in the words of the one event renderer."""
    from drengine.events import describe

    text = describe(entry)
    if not text.live:
        return
    indent = "   " if text.nested else ""
    _out(indent + text.line)
    for line in text.details:
        _out(f"     {line}")


RUNBOOK_DIRS = "drengine.runbook_dirs"


def _add_runbook_dirs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    # ctx.meta is shared by the whole command chain: global and per-command --runbooks add up, in order.
    ctx.meta.setdefault(RUNBOOK_DIRS, []).extend(value)


runbooks_option = click.option(
    "--runbooks", multiple=True, metavar="DIR", expose_value=False, callback=_add_runbook_dirs,
    help="Also look for runbooks in DIR (repeatable; searched first, then $DRENGINE_RUNBOOKS, then the built-ins).")


def _runbooks() -> RunbookSearch:
    from drengine.runbook import RunbookSearch

    return RunbookSearch(click.get_current_context().meta.get(RUNBOOK_DIRS, []))


def _help_if_bare(ctx: click.Context) -> None:
    """A group named without a command shows its help and exits 0: asking is not an error."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)


# -- shell completion: names the operator would otherwise have to look up --------------------------


def _starting(names: list[str], incomplete: str) -> list[CompletionItem]:
    from click.shell_completion import CompletionItem

    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


def _complete_runbooks(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
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


def _complete_clusters(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _starting([str(c) for c in _raw_inventory(ctx)], incomplete)


def _complete_members(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    cluster = _raw_inventory(ctx).get(ctx.params.get("cluster") or "")
    members = cluster.get("members", []) if isinstance(cluster, dict) else []
    return _starting([str(m["name"]) for m in members if isinstance(m, dict) and "name" in m], incomplete)


def _complete_faults(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from drengine.drill import fault_names

    faults = fault_names()
    cluster = _raw_inventory(ctx).get(ctx.params.get("cluster") or "")
    kind = cluster.get("kind") if isinstance(cluster, dict) else None
    names = faults.get(str(kind), []) if kind in faults else [f for fs in faults.values() for f in fs]
    return _starting(names, incomplete)


def _complete_runs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    runs_dir = Path(ctx.params.get("runs_dir") or "runs")
    return _starting([j.parent.name for j in runs_dir.glob("**/journal.jsonl")], incomplete)


def _complete_scenarios(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from drengine.lab import lab_scenarios

    kind = ctx.params.get("kind")
    return _starting(lab_scenarios(kind) if kind else [], incomplete)


def _inventory_option(required: bool = True) -> Callable[[FC], FC]:
    return click.option("-i", "--inventory", type=click.Path(), required=required, help="Inventory YAML file.")


def _cluster_option(required: bool = True, text: str = "Cluster name in the inventory.") -> Callable[[FC], FC]:
    return click.option("-c", "--cluster", required=required, help=text, shell_complete=_complete_clusters)


# -- the commands ----------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@runbooks_option
@click.version_option(package_name="drengine")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """drengine: disaster-recovery runbooks for MariaDB, Galera, MongoDB, Ceph and Elasticsearch.

    Start with `drengine status -i INVENTORY`: it asks every cluster what is wrong and names
    the runbook that applies, with the exact `drengine plan` command.

    Exit codes: 0 done, 1 runbook failed or cannot recover (for `status`: a cluster needs
    action), 2 invalid input or usage, 3 stopped at a gate or by the operator, 4 cluster lock
    held by another run, unavailable (etcd down: see --lock local) or lost during the run.
    Colour only at a terminal; NO_COLOR turns it off. Shell completion: `drengine completion --help`.
    """
    DEBUG["on"] = debug
    _help_if_bare(ctx)


def _is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _gates(yes: bool, accept_data_loss: bool, overrides: tuple[str, ...], reason: str) -> Any:
    from drengine.gates import FlagPolicy, InteractivePolicy, LayeredPolicy

    flags = FlagPolicy(yes=yes, accept_data_loss=accept_data_loss, overrides=frozenset(overrides), reason=reason)
    interactive = InteractivePolicy(TextTerminal(SCREEN)) if _is_interactive() else None
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
            from drengine.suggest import did_you_mean

            raise InputError(f"--override {step}: runbook {rb.name} has no safety check named {step!r}."
                             f"{did_you_mean(step, checks)} Its checks are: {', '.join(checks) or 'none'}")


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


def _request(runbook: str, inventory: str, cluster: str, mode: Any, gates: Any, quiet: bool = False, **kw: Any) -> Any:
    from drengine.engine import RunRequest
    from drengine.inventory import load_inventory
    rb = _runbooks().load(runbook)
    inv = load_inventory(inventory)
    cl = inv.cluster(cluster)
    _check_kind(rb, cl)
    _check_overrides(rb, getattr(gates, "flags", gates))
    gone = tuple(kw.pop("gone", ()) or ()) + tuple(cl.gone_for_good)
    for g in gone:
        cl.member(g)
    return RunRequest(runbook=rb, inventory=inv, cluster=cl, mode=mode, gates=gates, operator_said_gone=gone,
                      listeners=[] if quiet else [SCREEN.listen], argv=sys.argv[1:], **kw)


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
@click.argument("runbook", required=False, shell_complete=_complete_runbooks)
@runbooks_option
@_inventory_option(required=False)
@_cluster_option(required=False)
@click.option("--yes", is_flag=True, help="Approve ordinary confirmation gates.")
@click.option("--accept-data-loss", is_flag=True, help="Approve dangerous gates (data may be lost) without a terminal.")
@click.option("--override", "overrides", multiple=True, metavar="STEP",
              help="Break glass: override the failed safety check of STEP (needs --accept-data-loss or a typed confirmation).")
@click.option("--reason", default="", help="Why: recorded in the journal with every gate answer.")
@click.option("--gone", multiple=True, metavar="MEMBER", shell_complete=_complete_members,
              help="Declare a member gone for good (it will not come back).")
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
    """Run RUNBOOK against a cluster, gating each step that changes it.

    At a terminal each gate asks: p(roceed) or y, s(kip), r(etry), a(bort), d(etails: the
    evidence per member and the whole statements). Dangerous gates also need the cluster
    name typed. Plan first: `drengine plan RUNBOOK -i INVENTORY -c CLUSTER`."""
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
            outcome = resume_run(Path(resume_dir), gates, [SCREEN.listen, *([notifier.on_event] if notifier else [])],
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
@click.argument("runbook", shell_complete=_complete_runbooks)
@runbooks_option
@_inventory_option()
@_cluster_option()
@click.option("--gone", multiple=True, metavar="MEMBER", shell_complete=_complete_members, help="Declare a member gone for good.")
@click.option("--input", "inputs", multiple=True, metavar="NAME=VALUE", help=_INPUT_HELP)
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
        _json({"runbook": request.runbook.name, "cluster": request.cluster.name, "inventory": inventory,
               "success": outcome.success, "end": outcome.end, "summary": outcome.summary,
               "run_id": outcome.run_id, "run_dir": str(outcome.run_dir), "steps": outcome.plan, "exit_code": int(code)})
        raise SystemExit(code)
    _out("")
    if outcome.success:
        _out(f"PLAN OK: a recovery path exists ({outcome.end}). Nothing was changed.")
        import shlex

        gone_flags = "".join(f" --gone {shlex.quote(g)}" for g in gone)
        _out(f"to run it: $ drengine run {shlex.quote(request.runbook.name)} -i {shlex.quote(inventory)} "
             f"-c {shlex.quote(request.cluster.name)}{gone_flags}")
    else:
        _out(f"PLAN FAILS: {outcome.summary}. Nothing was changed.")
    raise SystemExit(code)


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


@main.group("drill", cls=_DrillGroup, invoke_without_command=True)
@click.pass_context
def drill_group(ctx: click.Context) -> None:
    """DR drills: `drengine drill run RUNBOOK -i INVENTORY -c CLUSTER --fault NAME` breaks a drill-target
    cluster on purpose and measures the recovery (`drengine drill RUNBOOK ...` for short);
    `drengine drill schedule -f DRILLS` renders schedules."""
    _help_if_bare(ctx)


@drill_group.command("run", cls=_DrillCommand)
@click.argument("runbook", shell_complete=_complete_runbooks)
@runbooks_option
@_inventory_option()
@_cluster_option(text="Cluster (must be marked `drill_target: true`).")
@click.option("--fault", required=True, shell_complete=_complete_faults, help="The fault to inject (see below).")
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
    search = _runbooks()
    rb = search.load(runbook)
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
            canary_interval=canary_interval, recovery_timeout=recovery_timeout, listeners=[SCREEN.listen], argv=sys.argv[1:],
            restore=restore, objectives=objectives, notifier=notifier, runbooks=search,
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
            _out(f"wrote {Path(out_dir) / name}")
        return
    for name, text in files.items():
        _out(f"# --- {name}")
        _out(text.rstrip())


@main.command()
@click.argument("runbooks", nargs=-1)
@click.option("--scenarios", "count", type=click.IntRange(min=1), default=500, show_default=True,
              help="Scenarios to generate per runbook.")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed explores the same scenarios.")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop generating new scenarios of a runbook after this long (a violation found is still shrunk).")
@click.option("--out", "out_dir", type=click.Path(), default="runs/explore", show_default=True,
              help="Where the minimal counterexamples are written (case files).")
@click.option("--replay", "replay_file", type=click.Path(), help="Run a case file again, exactly.")
@click.option("--export", "export_dir", type=click.Path(),
              help="With --replay: write an inventory and a state file here, and print the `drengine run` commands.")
@click.option("--ignore", multiple=True, metavar="INVARIANT", help="Count this invariant's violations, do not shrink them.")
@click.option("--all", "every", is_flag=True, help="Explore every runbook that has an explore kit.")
def explore(runbooks: tuple[str, ...], count: int, seed: int, budget: float | None, out_dir: str,
            replay_file: str | None, export_dir: str | None, ignore: tuple[str, ...], every: bool) -> None:
    """Check runbooks against generated failures on the simulator, with invariants.

    Each scenario is a generated cluster situation, the operator's answers at every gate, the
    engine killed at journal boundaries and resumed, and the cluster changing between a gate
    and its action; invariants are checked after every journal event and at the end. Exit 0
    when nothing was violated, 1 when a violation was found (its minimal scenario is written
    as a case file under --out, replayed by `drengine explore --replay FILE`)."""
    from drengine.explore import command

    if replay_file:
        if runbooks or every:
            raise click.UsageError("--replay takes the runbook from the case file; give no RUNBOOK")
        lines, ok = command.replay(Path(replay_file), Path(out_dir), Path(export_dir) if export_dir else None)
    else:
        if export_dir:
            raise click.UsageError("--export goes with --replay FILE")
        names = command.runbooks(runbooks, every)
        lines, ok = command.explore(names, count, seed, budget, Path(out_dir), frozenset(ignore), _out)
    for line in lines:
        _out(line)
    raise SystemExit(ExitCode.DONE if ok else ExitCode.FAILED)


@main.group("inventory", invoke_without_command=True)
@click.pass_context
def inventory_group(ctx: click.Context) -> None:
    """Inventories: where the clusters are."""
    _help_if_bare(ctx)


@inventory_group.command("check")
@_inventory_option()
def inventory_check(inventory: str) -> None:
    """Validate an inventory; each problem as FILE:LINE (exit 2)."""
    from drengine.inventory import load_inventory

    inv = load_inventory(inventory)
    for name, cl in inv.clusters.items():
        sim = f", simulated ({cl.simulated.scenario})" if cl.simulated else ""
        _out(f"{name}: {cl.kind}, {len(cl.members)} member(s){sim}")
    _out(f"{inventory}: OK")


@main.group("runbook", invoke_without_command=True)
@click.pass_context
def runbook_group(ctx: click.Context) -> None:
    """Runbooks: what drengine can do."""
    _help_if_bare(ctx)


@runbook_group.command("list")
@runbooks_option
@click.option("--json", "as_json", is_flag=True, help="One JSON document: every runbook, its datastore, summary and folder.")
def runbook_list(as_json: bool) -> None:
    """The runbooks found (--runbooks folders, then $DRENGINE_RUNBOOKS, then the built-ins), each
    with the folder it came from; a name found twice is taken from the first folder (exit 2 if one
    is invalid)."""
    from drengine.runbook import list_runbooks

    found_all = list_runbooks(_runbooks())
    bad = sum(1 for _, rb in found_all if isinstance(rb, InputError))
    if as_json:
        _json([{"name": found.name, "folder": found.folder.describe(), "path": str(found.path),
                "shadows": [str(s.path) for s in found.shadows]}
               | ({"valid": False, "error": str(rb), "problems": rb.problems} if isinstance(rb, InputError)
                  else {"valid": True, "kind": rb.spec.kind, "summary": rb.spec.summary})
               for found, rb in found_all])
    else:
        for found, rb in found_all:
            if isinstance(rb, InputError):
                _out(f"{found.name}: INVALID: {rb}")
                for p in rb.problems:
                    _out(f"    {p}")
            else:
                _out(f"{found.name:32} {rb.spec.kind:14} {rb.spec.summary}")
            _out(f"{'':32} from {found.folder.describe()}", style="dim")
            for hidden in found.shadows:
                _out(f"{'':32} shadows the copy in {hidden.folder.describe()}")
    if bad:
        raise SystemExit(ExitCode.INVALID_INPUT)


@runbook_group.command("show")
@click.argument("name", shell_complete=_complete_runbooks)
@runbooks_option
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid"]), default="text",
              help="text: steps, gates and transitions; mermaid: the state machine as a diagram.")
def runbook_show(name: str, fmt: str) -> None:
    """Show a runbook: its steps, what each does, its gate and where each outcome leads."""
    from drengine.runbook import describe

    rb = _runbooks().load(name)
    if fmt == "mermaid":
        _out(rb.mermaid().rstrip())
        return
    _out(f"{rb.name} ({rb.spec.kind}): {rb.spec.summary}")
    _out(f"file: {rb.path}")
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


@main.group("journal", invoke_without_command=True)
@click.pass_context
def journal_group(ctx: click.Context) -> None:
    """Run journals: verify and show."""
    _help_if_bare(ctx)


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
    """Show a run's journal (a run directory or the journal file) event by event."""
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


class _LabUpCommand(click.Command):
    """`lab up --help` lists the scenarios of the simulated labs (imported only when help is shown)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from drengine.lab import lab_scenarios, simulated_labs

        with formatter.section("Scenarios (--scenario, simulated labs only)"):
            formatter.write_dl([(kind, ", ".join(lab_scenarios(kind))) for kind in simulated_labs()])


@main.group("lab", invoke_without_command=True)
@click.pass_context
def lab_group(ctx: click.Context) -> None:
    """Real local services on loopback for drills and tests."""
    _help_if_bare(ctx)


@lab_group.command("up", cls=_LabUpCommand)
@click.argument("kind", type=click.Choice(lab_kinds()))
@click.option("--dir", "lab_dir", type=click.Path(), default=None, help="Lab directory (default /tmp/drengine-lab).")
@click.option("--inventory-out", type=click.Path(), default="inventory/lab.yaml", show_default=True,
              help="Inventory file to add the lab cluster to (other clusters in it are kept).")
@click.option("--scenario", default=None, shell_complete=_complete_scenarios,
              help="For the simulated labs (mongodb, elasticsearch): which situation the served cluster is in "
                   "(listed below).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=None,
              help="For the simulated labs: run the simulator's time this many times faster than real time "
                   "(elections, initial syncs, shard recoveries take their realistic time at 1).")
def lab_up(kind: str, lab_dir: str | None, inventory_out: str, scenario: str | None, speed: float | None) -> None:
    """Start a lab cluster and write its inventory.

    mariadb, galera, ceph and ssh start real daemons on loopback; mongodb and elasticsearch
    serve the simulators over the real protocols (no such servers can be installed here);
    etcd starts a three-member etcd for the team lock and points the inventory's `lock:` at it.
    The scenario and the lab directory are checked before anything starts."""
    from drengine.lab import start_lab

    summary = start_lab(kind, lab_dir, inventory_out, scenario, speed)
    _out(summary)


@lab_group.command("status")
@click.option("--dir", "lab_dir", type=click.Path(), default=None, help="Lab directory (default /tmp/drengine-lab).")
def lab_status(lab_dir: str | None) -> None:
    """List the lab's processes: kind, name, PID, running or GONE, and log file."""
    from drengine.lab import lab_status_lines

    for line in lab_status_lines(lab_dir):
        _out(line)


@lab_group.command("down")
@click.argument("kind", required=False)
@click.option("--dir", "lab_dir", type=click.Path(), default=None, help="Lab directory (default /tmp/drengine-lab).")
def lab_down(kind: str | None, lab_dir: str | None) -> None:
    """Stop what the lab started (by PID): one KIND, or everything."""
    from drengine.lab import stop_lab

    for line in stop_lab(kind, lab_dir):
        _out(line)


# -- status: what is wrong, without guessing a runbook ----------------------------------------------

VERDICT_STYLES = {"healthy": "bold green", "degraded": "bold yellow", "down": "bold red", "split": "bold white on red",
                  "unknown": "bold magenta"}
STATE_STYLES = {"reachable": "green", "dead": "bold red", "hung": "bold red", "unreachable": "red", "absent": "red",
                "unknown": "yellow"}


def _print_table(table: Any, indent: int = 2) -> None:
    """A table, indented; off a terminal without the padding rich adds at the ends of lines."""
    from rich.padding import Padding

    console = _console()
    block = Padding(table, (0, 0, 0, indent))
    if console.is_terminal:
        console.print(block)
        return
    with console.capture() as captured:
        console.print(block)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


def _show_cluster(status: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    from drengine.redact import REDACTOR

    console = _console()
    sim = f", simulated: {status.simulated}" if status.simulated else ""
    head = Text(f"{status.cluster} ({status.kind}{sim}): ", style="bold")
    head.append(status.verdict.value.upper(), style=VERDICT_STYLES[status.verdict.value])
    head.append(f"  [{status.seconds:.2f} s]", style="dim")
    console.print(head)
    _out(f"  {status.headline}")
    if status.runs_registry:
        _out(f"  runs: {status.runs_registry}", style="yellow")
    table = Table(box=None, pad_edge=False, padding=(0, 2), show_edge=False, header_style="bold")
    for column in ("member", "role", "state", "position", "lag", "error / note"):
        table.add_column(column, overflow="fold")
    for m in status.members:
        table.add_row(m.name, m.role or "-", Text(m.state.value, style=STATE_STYLES.get(m.state.value, "")),
                      m.position or "-", m.lag or "-", REDACTOR.text(m.error or m.note or ""))
    _print_table(table)
    if status.proxies:
        proxies = Table(box=None, padding=(0, 2), header_style="bold")
        for column in ("proxy", "state", "points to", "error"):
            proxies.add_column(column)
        for p in status.proxies:
            proxies.add_row(p.name, p.state, p.points_to or "-", p.error or "")
        _print_table(proxies)
    for line in status.facts:
        _out(f"  {line}", style="dim")
    if status.evidence:
        _out("  evidence:", style="bold")
        for line in status.evidence:
            _out(f"    - {line}")
    for advice in status.advice:
        _out("  what to do: " + advice.why, style="bold")
        if advice.command:
            _out(f"    $ {advice.command}")
    _out("")


@main.command()
@_inventory_option()
@_cluster_option(required=False, text="One cluster (default: every cluster of the inventory, probed at once).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document for automation.")
def status(inventory: str, cluster: str | None, as_json: bool) -> None:
    """Ask the clusters what is wrong: every member probed in parallel, within the cluster's timeouts.

    Per cluster: a table of members (role, reachable / dead / hung with the error, position,
    lag), a verdict (healthy, degraded, down, split) with its evidence, and the runbook that
    applies with the exact `drengine plan` command. Read-only: nothing is changed.

    Exit 0 when every cluster is healthy, 1 when one needs action, 2 on bad input."""
    from drengine.inventory import load_inventory
    from drengine.status import probe_fleet

    inv = load_inventory(inventory)
    fleet = probe_fleet(inv, [cluster] if cluster else None)
    code = ExitCode.INVALID_INPUT if fleet.bad_input else ExitCode.FAILED if fleet.needs_action else ExitCode.DONE
    try:
        _show_fleet(fleet, as_json, code)
    finally:
        # Shown first, then the connections are closed (bounded: a hung member does not hold us up).
        fleet.wait_closed(max((c.timeouts.connect for c in inv.clusters.values()), default=1.0) + 1.0)
    raise SystemExit(code)


def _show_fleet(fleet: Any, as_json: bool, code: int) -> None:
    if as_json:
        document = fleet.model_dump(mode="json")
        document["needs_action"] = fleet.needs_action
        document["exit_code"] = int(code)
        _json(document)
        return
    for each in fleet.clusters:
        _show_cluster(each)
    counts: dict[str, int] = {}
    for each in fleet.clusters:
        counts[each.verdict.value] = counts.get(each.verdict.value, 0) + 1
    words = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: list(VERDICT_STYLES).index(kv[0])))
    _out(f"{len(fleet.clusters)} cluster(s) in {fleet.seconds:.2f} s: {words}"
         + (". Nothing needs action." if not fleet.needs_action else ". Act on the ones not HEALTHY (above)."))


# -- runs: what has been done, and what can be resumed ---------------------------------------------


def _runs_dir_option() -> Callable[[FC], FC]:
    return click.option("--runs-dir", type=click.Path(), default=None,
                        help="Directory holding the run directories (default: runs).")


def _registry_options(fn: FC) -> FC:
    fn = click.option("-c", "--cluster", default=None, shell_complete=_complete_clusters,
                      help="With -i: only this cluster's runs.")(fn)
    fn = click.option("-i", "--inventory", type=click.Path(), default=None,
                      help="Also show the run registry of the inventory's clusters: who holds each lock and what "
                           "each run is doing, on every machine of the team (etcd lock) or this one (local).")(fn)
    return fn


@main.group("runs", invoke_without_command=True)
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
        _json({"runs_dir": str(folder), "runs": [r.model_dump(mode="json") | {"started_text": r.started_text} for r in runs],
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
        _print_table(table, indent=0)
        for r in runs:
            if r.resumable:
                _out(f"resume {r.id}: $ {r.resume_command}")
            if r.journal != "intact":
                _out(f"{r.id}: journal {r.journal}")
    elif not inventory:
        _out(f"{folder}: no runs yet")
    for entry in registry:
        _show_registry(entry)


def _registry(inventory: str, cluster: str | None) -> list[Any]:
    from drengine.inventory import load_inventory
    from drengine.lock.registry import list_runs as registry_runs

    return registry_runs(load_inventory(inventory), cluster)


def _show_registry(entry: Any) -> None:
    _out(f"{entry.cluster}: lock {entry.backend} ({entry.where})", style="bold")
    if entry.problem:
        _out(f"  the registry could not be read: {entry.problem}", style="red")
        return
    _out(f"  held by {entry.holder.describe()}" if entry.holder else "  lock free")
    for view in entry.runs[:10]:
        run = view.run
        where = f", waiting at gate {run.gate}" if run.gate else (f", at step {run.step}" if run.step and not run.finished else "")
        end = f": {run.end}{' (' + run.summary + ')' if run.summary else ''}" if run.finished else ""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.started)) if run.started else "-"
        _out(f"  {run.run_id}  {run.runbook} ({run.mode}) by {run.user}@{run.host}, started {when}: "
             f"{view.status.value}{where}{end}")
        if view.status.value.endswith("(resumable)") and run.run_dir:
            _out(f"    $ drengine run --resume {run.run_dir}")


@runs_group.command("show")
@click.argument("run", shell_complete=_complete_runs)
@_runs_dir_option()
@click.option("--json", "as_json", is_flag=True, help="One JSON document for automation.")
def runs_show(run: str, runs_dir: str | None, as_json: bool) -> None:
    """One run: who ran what, where and when, each step's outcome, the gates and who answered
    them, overrides, and how to resume it. RUN is a run id, the start of one, or a run directory."""
    from drengine.runs import find_run, show_run

    detail = show_run(find_run(Path(runs_dir or "runs"), run))
    if as_json:
        _json(detail.model_dump(mode="json"))
        return
    r = detail.run
    _out(f"run {r.id}: {r.runbook} on {r.cluster} ({r.kind}), mode {r.mode}", style="bold")
    _out(f"  by {r.operator or '?'}, started {r.started_text}, took "
         f"{f'{r.duration_seconds:.1f} s' if r.duration_seconds is not None else '-'}")
    _out(f"  result: {r.result}" + (f": {r.summary}" if r.summary else ""))
    _out(f"  directory: {r.run_dir}; journal {r.journal}")
    if detail.argv:
        _out(f"  command: drengine {' '.join(detail.argv)}")
    if detail.steps:
        _out("  steps:", style="bold")
        for step in detail.steps:
            _out(f"    {step.step} {'ok' if step.ok else 'FAILED'} [{step.outcome}]: {step.summary}")
    if detail.gates:
        _out("  gates:", style="bold")
        for g in detail.gates:
            _out(f"    {g.step}: {g.answer} by {g.who} ({g.policy}{': ' + g.reason if g.reason else ''})")
    for line in detail.overrides:
        _out(f"  OVERRIDE {line}")
    _out(f"  statements sent: {detail.statements}")
    for path in detail.reports:
        _out(f"  report: {path}")
    if r.resumable:
        _out(f"  resumable: $ {r.resume_command}")


# -- shell completion -------------------------------------------------------------------------------


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: runbook names, clusters of the inventory given with -i,
    members, faults, scenarios and runs complete with Tab.

    \b
    bash: eval "$(drengine completion bash)"   (in ~/.bashrc)
    zsh:  eval "$(drengine completion zsh)"    (in ~/.zshrc)
    fish: drengine completion fish > ~/.config/fish/completions/drengine.fish"""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "drengine", "_DRENGINE_COMPLETE").source())


def _where_the_run_is(exc: DrengineError) -> None:
    """Every stop of a run says where its journal is and how to go on."""
    if exc.run_dir is None:
        return
    _err(f"run directory: {exc.run_dir}")
    if exc.resumable:
        _err(f"resume: drengine run --resume {exc.run_dir}   (add --yes / --accept-data-loss as the gates need)")
    _err(f"journal: drengine journal show {exc.run_dir}")


LAB_DIR_OPTION = click.option("--dir", "--lab-dir", "lab_dir", type=click.Path(), default=None,
                              help="Lab directory (default $DRENGINE_LAB_DIR or /tmp/drengine-lab).")


@lab_group.group("node", hidden=True)
def lab_node() -> None:
    """One lab node: what the lab inventories' service templates run, so that drengine starts and
    stops lab servers the way it starts and stops real ones."""


@lab_node.command("start")
@click.argument("kind", type=click.Choice(node_kinds()))
@click.argument("name")
@LAB_DIR_OPTION
@click.option("--bootstrap", is_flag=True, help="Galera: start a new Primary component (--wsrep-new-cluster).")
@click.option("--start-position", metavar="UUID:SEQNO", help="Galera: position from --wsrep-recover (rejoin by IST).")
@click.option("--no-recover", is_flag=True, help="Galera: do not run --wsrep-recover first when grastate.dat has seqno -1.")
@click.option("--timeout", type=float, help="Galera: seconds to wait until the node is Synced.")
def lab_node_start(kind: str, name: str, lab_dir: str | None, bootstrap: bool, start_position: str | None,
                   no_recover: bool, timeout: float | None) -> None:
    """Start one lab node detached (recorded in the lab, so `lab down` stops it)."""
    from drengine.lab import node_start
    from drengine.lab.procs import NodeStart

    _out(node_start(kind, lab_dir, name, NodeStart(bootstrap, start_position, not no_recover, timeout)))


@lab_node.command("stop")
@click.argument("kind", type=click.Choice(node_kinds()))
@click.argument("name")
@LAB_DIR_OPTION
def lab_node_stop(kind: str, name: str, lab_dir: str | None) -> None:
    """Stop one lab node by its PID."""
    from drengine.lab import node_stop

    _out(node_stop(kind, lab_dir, name))


@lab_node.command("status")
@click.argument("kind", type=click.Choice(node_kinds()))
@click.argument("name")
@LAB_DIR_OPTION
def lab_node_status(kind: str, name: str, lab_dir: str | None) -> None:
    """Exit 0 when the node runs, 3 (the LSB init scripts' "not running") when it does not."""
    from drengine.lab import node_status

    running, text = node_status(kind, lab_dir, name)
    _out(text)
    if not running:
        raise SystemExit(3)


@lab_group.command("serve", hidden=True)
@click.argument("kind", type=click.Choice(served_kinds()))
@click.option("--scenario", help="The situation the served cluster starts in (when --state does not exist yet).")
@click.option("--port", type=int, help="The (first) port to listen on, on 127.0.0.1.")
@click.option("--state", type=click.Path(), help="State file: loaded when it exists, written back when serving stops.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="How much faster than real time the simulator's own time runs (heartbeats, recoveries).")
def lab_serve(kind: str, scenario: str | None, port: int | None, state: str | None, speed: float) -> None:
    """Serve a simulator over its real protocol until SIGTERM (`lab down`) or Ctrl-C."""
    from drengine.lab import serve_simulator
    from drengine.lab.simulated import serve_until_stopped

    served = serve_simulator(kind, scenario, port, Path(state) if state else None, speed)
    for line in served.endpoints:
        _out(line)
    serve_until_stopped(served.stop)


def run_cli(argv: list[str] | None = None) -> int:
    """The one error boundary."""
    SCREEN.evidence.clear()
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
        SCREEN.stop_timer()
        if DEBUG["on"]:
            traceback.print_exc()
        _err(f"{'INTERRUPTED' if isinstance(exc, StepInterrupted) else 'error'}: {exc}")
        for problem in getattr(exc, "problems", []):
            _err(f"  {problem}")
        _where_the_run_is(exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        SCREEN.stop_timer()
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

"""What the command line shows and asks, shared by every command: the rich consoles (colour only
at a terminal, NO_COLOR honoured, plain text in logs and pipes), the one `out`/`err`/JSON writers
(every line passes the redactor first), tables, the live line of a run (journal events as they
happen, the elapsed timer under a running step) and the gate prompts.

Nothing else in drengine prints: the commands (drengine/cli/*.py) call these.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

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


def console(err: bool = False) -> Console:
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
    made = Console(file=stream, theme=Theme(THEME), highlighter=Words(), markup=False, emoji=False,
                   soft_wrap=True, width=None if tty else 1000, highlight=True)
    _CONSOLES[err] = made
    return made


def out(text: str = "", style: str | None = None) -> None:
    from drengine.redact import REDACTOR

    console().print(REDACTOR.text(text), style=style)


def err(text: str) -> None:
    from drengine.redact import REDACTOR

    console(err=True).print(REDACTOR.text(text),
                            style="bold red" if text.startswith(("error", "internal", "INTERRUPTED")) else None)


def emit_json(document: Any) -> None:
    """Machine-readable output: plain JSON on stdout (never coloured), secrets redacted."""
    from drengine.redact import REDACTOR

    click.echo(json.dumps(REDACTOR.deep(json.loads(json.dumps(document, default=str))), indent=2))


def print_table(table: Any, indent: int = 2) -> None:
    """A table, indented; off a terminal without the padding rich adds at the ends of lines."""
    from rich.padding import Padding

    shown = console()
    block = Padding(table, (0, 0, 0, indent))
    if shown.is_terminal:
        shown.print(block)
        return
    with shown.capture() as captured:
        shown.print(block)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


def fold(text: str) -> str:
    """A long statement (a whole config document) shortened for the gate; `d` shows all of it."""
    lines = text.splitlines() or [""]
    if len(text) <= FOLD_CHARS and len(lines) <= FOLD_LINES:
        return text
    shown = "\n".join(lines[:FOLD_LINES])[:FOLD_CHARS]
    return f"{shown} ... [{len(text) - len(shown)} more characters: answer d to see the whole statement]"


def progress(entry: Any) -> None:
    """Show the run as it is journaled, in the words of the one event renderer."""
    from drengine.events import describe

    text = describe(entry)
    if not text.live:
        return
    indent = "   " if text.nested else ""
    out(indent + text.line)
    for line in text.details:
        out(f"     {line}")


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
        # What each step showed last (its details), and whether the run is observing again after
        # a gate: then a step shows only what changed since (issue 25, item 9).
        self._shown: dict[str, tuple[str, ...]] = {}
        self._again = False

    def start_timer(self, label: str) -> None:
        if not console().is_terminal:
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
            self._live = Live(elapsed, console=console(), refresh_per_second=4, transient=True,
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
        if t == "observed_again":
            self._again = True
        elif t in ("gate_asked", "run_finished") or (t == "step_started" and d.get("effect") == "mutate"):
            self._again = False
        if not self._again or not self._changes_only(t, d, entry):
            progress(entry)
        if t == "step_finished":
            from drengine.events import describe

            self._shown[str(d.get("step"))] = describe(entry).details
        if t == "step_started":
            self.start_timer(f"{d['step']}: {d['summary']}")


    def _changes_only(self, kind: str, data: Any, entry: Any) -> bool:
        """Observing again: a step seen before shows its result line and only the lines that differ
        from last time; its start line is not repeated. False: show the entry as it is."""
        from drengine.events import describe

        step = str(data.get("step"))
        if step not in self._shown or kind not in ("step_started", "step_finished", "statement_sent"):
            return False
        if kind == "step_finished":
            text = describe(entry)
            before = self._shown[step]
            new = [line for line in text.details if line not in before]
            out(f"   {text.line}" + ("" if new else " (nothing else changed)"))
            for line in new:
                out(f"     now: {line}")
        return True


SCREEN = Screen()


def show_proposal(change: str, summary: str, reason: str, risks: list[str], statements: list[str]) -> None:
    """What a gate asks about: what changed, what it would do and why, its risks and exact statements
    (at the gate, and to the second person of the two-person rule)."""
    if change:
        out(f"  CHANGED since it was last shown: {change}", style="bold yellow")
    out(f"  would: {summary}")
    if reason:
        out(f"  why: {reason}")
    for risk in risks:
        out(f"  RISK: {risk}", style="red")
    if statements:
        out("  exact statements:")
        for text in statements:
            out(f"    {fold(text)}")


class TextTerminal:
    """Gate prompts at a terminal: dangerous gates in red, long documents folded, `d` for all of it."""

    def __init__(self, screen: Screen | None = None) -> None:
        self.screen = screen or SCREEN

    def show_gate(self, request: Any) -> None:
        from drengine.steps import GateLevel

        self.screen.stop_timer()
        p = request.proposal
        out("")
        if request.is_override:
            out(f"=== SAFETY CHECK REFUSED at step {request.step}: break-glass override possible ===", style="bold red")
            for line in request.refusal.lines():
                out(f"  {line}")
            out(f"  risk if you override: {request.refusal.risk_if_overridden}", style="red")
        else:
            dangerous = request.level is GateLevel.DANGEROUS
            level = "DANGEROUS GATE (data may be lost)" if dangerous else "confirmation gate"
            out(f"=== {level}: step {request.step}: {request.title} ===",
                style="bold white on red" if dangerous else "bold yellow")
            show_proposal(request.change, p.summary, p.reason, p.risks, [s.show() for s in p.statements])

    def show_details(self, request: Any) -> None:
        shown = False
        if self.screen.evidence:
            out("  evidence per member, as this run observed it:", style="bold")
            for step, lines in self.screen.evidence.items():
                out(f"    from step {step}:")
                for line in lines:
                    out(f"      {line}")
            shown = True
        for line in [*request.proposal.evidence, *request.details]:
            out(f"  {line}")
            shown = True
        if request.proposal.statements:
            out("  exact statements, whole:", style="bold")
            for s in request.proposal.statements:
                out(f"    {s.show()}")
            shown = True
        if not shown:
            out("  (this run has recorded no evidence for this step yet)")

    def prompt(self, text: str) -> str:
        from rich.text import Text

        self.screen.stop_timer()
        try:
            return str(console().input(Text(text, style="bold")))
        except (EOFError, click.Abort):
            from drengine.errors import OperatorStop
            from drengine.gates import operator_name

            # click turns Ctrl-C and the end of input alike into Abort: either way the operator stopped here.
            raise OperatorStop("interrupted at the gate by the operator (Ctrl-C or end of input); nothing further "
                               "was changed", who=operator_name()) from None

    def say(self, text: str) -> None:
        out(text, style="yellow")

"""Confirmation gates and the policies that answer them: an operator at a terminal,
flags (`--yes`, `--accept-data-loss`, `--override STEP`) for unattended runs, and the drill
policy. Every answer says who answered, when, under which policy, and why."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from drengine.errors import OperatorStop
from drengine.steps import GateLevel, Proposal, Refusal


class Answer(str, Enum):
    PROCEED = "proceed"
    SKIP = "skip"
    RETRY = "retry"
    ABORT = "abort"


@dataclass
class GateRequest:
    step: str
    title: str
    cluster: str
    level: GateLevel
    proposal: Proposal
    refusal: Refusal | None = None  # set when the gate is a break-glass override of a failed check
    details: list[str] = field(default_factory=list)
    # Set when this gate is asked again because the decision changed since it was last shown:
    # "approved: promote db3; now: promote db2 ...".
    change: str = ""

    @property
    def is_override(self) -> bool:
        return self.refusal is not None


@dataclass
class GateAnswer:
    answer: Answer
    who: str
    policy: str
    reason: str
    when: float = field(default_factory=time.time)


def operator_name() -> str:
    from drengine.lock import current_user

    return f"{current_user()}@{socket.gethostname()}"


class GatePolicy(Protocol):
    name: str

    def ask(self, request: GateRequest) -> GateAnswer: ...


def describe_needed(request: GateRequest) -> str:
    if request.is_override:
        return f"--override {request.step} --accept-data-loss"
    return "--accept-data-loss" if request.level is GateLevel.DANGEROUS else "--yes"


@dataclass
class FlagPolicy:
    """Unattended runs: flags decide. A gate the flags do not cover stops the run (exit 3)."""

    yes: bool = False
    accept_data_loss: bool = False
    overrides: frozenset[str] = frozenset()
    reason: str = ""
    name: str = "flags"

    def ask(self, request: GateRequest) -> GateAnswer:
        who = operator_name()
        if request.is_override:
            if request.step in self.overrides and self.accept_data_loss:
                return GateAnswer(Answer.PROCEED, who, self.name, self.reason or f"--override {request.step} --accept-data-loss")
            raise OperatorStop(self._stop_message(request))
        if request.level is GateLevel.DANGEROUS:
            if self.accept_data_loss:
                return GateAnswer(Answer.PROCEED, who, self.name, self.reason or "--accept-data-loss")
            raise OperatorStop(self._stop_message(request))
        if self.yes or self.accept_data_loss:
            return GateAnswer(Answer.PROCEED, who, self.name, self.reason or "--yes")
        raise OperatorStop(self._stop_message(request))

    @staticmethod
    def _stop_message(request: GateRequest) -> str:
        kind = "a break-glass override" if request.is_override else (
            "a dangerous gate (data may be lost)" if request.level is GateLevel.DANGEROUS else "a confirmation gate"
        )
        risks = "".join(f" RISK: {r}." for r in request.proposal.risks)
        change = f" It changed since it was last shown ({request.change})." if request.change else ""
        return (
            f"stopped at step {request.step}: it needs {kind} and there is no terminal to ask.{change} "
            f"It would: {request.proposal.summary}.{risks} "
            f"Nothing further was changed. Review the plan (`drengine plan ...`), then rerun with "
            f"{describe_needed(request)} or from a terminal."
        )


@dataclass
class DrillPolicy:
    """Drills approve every gate, dangerous ones too: they only run against clusters the
    inventory marks as drill targets. Break-glass overrides are never approved."""

    name: str = "drill"

    def ask(self, request: GateRequest) -> GateAnswer:
        if request.is_override:
            # A refused safety check in a drill means the runbook met a situation it must not
            # act on: the drill fails and says so, it never breaks glass by itself.
            raise OperatorStop(f"the drill policy never overrides a failed safety check (step {request.step})")
        return GateAnswer(Answer.PROCEED, operator_name(), self.name, "drill policy approves every gate on a drill target")


class Terminal(Protocol):
    """What the interactive policy needs from the CLI (the only place that prints)."""

    def show_gate(self, request: GateRequest) -> None: ...

    def show_details(self, request: GateRequest) -> None: ...

    def prompt(self, text: str) -> str: ...

    def say(self, text: str) -> None: ...


@dataclass(frozen=True)
class Choice:
    """One answer the operator can type at a gate: its key, its word, and what it means."""

    key: str
    word: str
    answer: Answer | None  # None: show the details, then ask again
    meaning: str


GATE_CHOICES: tuple[Choice, ...] = (
    Choice("p", "proceed", Answer.PROCEED, "do it"),
    Choice("s", "skip", Answer.SKIP, "leave this step out and go on"),
    Choice("r", "retry", Answer.RETRY, "look at the cluster again and propose afresh"),
    Choice("a", "abort", Answer.ABORT, "stop the run here; it can be resumed"),
    Choice("d", "details", None, "show the evidence per member and the full statements"),
)
YES = ("y", "yes")
NO = ("n", "no")


@dataclass(frozen=True)
class Parsed:
    """What a typed answer means: an answer, a request for details, or a problem to tell the operator."""

    answer: Answer | None = None
    details: bool = False
    problem: str = ""


def gate_prompt(request: GateRequest) -> str:
    keys = ", ".join(f"[{c.key}]{c.word[1:]}" for c in GATE_CHOICES)
    return f"{keys} (y = proceed)? "


def parse_answer(raw: str, request: GateRequest) -> Parsed:
    """Read an answer: a key, a word or an unambiguous start of one, `y`/`yes` for proceed, and
    `n`/`no` where it has one meaning (at a break-glass override it means: do not override)."""
    text = raw.strip().lower()
    if text in YES:
        return Parsed(Answer.PROCEED)
    if text in NO:
        if request.is_override:
            return Parsed(Answer.SKIP)
        return Parsed(problem=f"'{text}' could mean skip this step (s) or abort the run (a); answer s or a.")
    found = [c for c in GATE_CHOICES if text and (text == c.key or c.word.startswith(text))]
    if len(found) == 1:
        return Parsed(found[0].answer, details=found[0].answer is None)
    listed = "; ".join(f"{c.key} = {c.word} ({c.meaning})" for c in GATE_CHOICES)
    if not text:
        return Parsed(problem=f"Please answer: {listed}.")
    return Parsed(problem=f"'{raw.strip()}' is not an answer here. {listed}.")


@dataclass
class InteractivePolicy:
    terminal: Terminal
    name: str = "interactive"
    max_tries: int = 3

    def ask(self, request: GateRequest) -> GateAnswer:
        self.terminal.show_gate(request)
        while True:
            parsed = parse_answer(self.terminal.prompt(gate_prompt(request)), request)
            if parsed.details:
                self.terminal.show_details(request)
                continue
            if parsed.answer is None:
                self.terminal.say(parsed.problem)
                continue
            choice = parsed.answer
            weighty = request.level is GateLevel.DANGEROUS or request.is_override
            if choice is Answer.PROCEED and weighty:
                typed = self._typed_cluster_name(request)
                if typed is None:
                    self.terminal.say("Nothing was done; answer again.")
                    continue
                choice = typed
            reason = ""
            # A reason is asked where a postmortem will want one: data may be lost, a check is
            # overridden, or a step is left out. An ordinary approval needs no extra Enter.
            if weighty or choice is Answer.SKIP:
                reason = self.terminal.prompt("Reason (recorded in the journal, Enter to skip): ").strip()
            return GateAnswer(choice, operator_name(), self.name, reason)

    def _typed_cluster_name(self, request: GateRequest) -> Answer | None:
        """PROCEED when the cluster name is typed; SKIP or ABORT when the operator says so instead
        (s, a); None (back to the question) on Enter or after too many wrong names."""
        self.terminal.say(
            f"This step may lose data. To go on, type the cluster name ({request.cluster}) exactly "
            f"(or s to skip this step, a to abort the run, Enter to go back):"
        )
        for _ in range(self.max_tries):
            typed = self.terminal.prompt("cluster name: ").strip()
            if typed == request.cluster:
                return Answer.PROCEED
            if not typed:
                return None
            if typed.lower() in ("s", "skip"):
                return Answer.SKIP
            if typed.lower() in ("a", "abort"):
                return Answer.ABORT
            self.terminal.say(f"That is not the cluster name ({request.cluster}); s skips, a aborts, Enter goes back.")
        return None


@dataclass
class LayeredPolicy:
    """Flags first (`--yes` answers ordinary gates even at a terminal); what the flags do not
    cover goes to the operator at the terminal, or stops the run when there is none."""

    flags: FlagPolicy
    interactive: InteractivePolicy | None
    name: str = "flags+interactive"

    def ask(self, request: GateRequest) -> GateAnswer:
        try:
            return self.flags.ask(request)
        except OperatorStop:
            if self.interactive is None:
                raise
            return self.interactive.ask(request)

"""The step contract shared by the engine and every action.

An action is a registered class with a name (`mariadb.promote`) and an `effect` declared
in code: READ (probes), CHECK (a safety check that may refuse; every refusal can be
overridden by a human) or MUTATE (changes the cluster). `propose` observes and decides
(read-only I/O allowed) and returns what the step would send and why; `run` acts and must
be idempotent (check, then act) so a resumed run never repeats a statement that already
took effect; `took_effect` tells a resumed run whether an interrupted step had finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from drengine.clock import SYSTEM, Clock, Deadline, wait_until
from drengine.errors import InputError, StepFailed, StepInterrupted

if TYPE_CHECKING:
    from drengine.inventory import Cluster, Inventory
    from drengine.ledger import Change, RunLedger


class Effect(str, Enum):
    READ = "read"
    CHECK = "check"
    MUTATE = "mutate"


class GateLevel(IntEnum):
    NONE = 0
    CONFIRM = 1  # approved by --yes or an interactive "proceed"
    DANGEROUS = 2  # data may be lost: typed cluster name, or --accept-data-loss


class Mode(str, Enum):
    RUN = "run"
    PLAN = "plan"
    DRILL = "drill"


@dataclass(frozen=True)
class Statement:
    """One exact command a step sends: SQL, an admin command document, a mon command, an
    HTTP request or a shell command. `text` is what the operator could type by hand;
    secrets appear in it only as `***`."""

    target: str
    text: str
    language: str = "sql"

    def show(self) -> str:
        return f"[{self.target}] {self.text}"


@dataclass
class Proposal:
    """What a step would do, and why: shown at gates and in plans."""

    summary: str
    reason: str = ""
    statements: list[Statement] = field(default_factory=list)
    gate: GateLevel = GateLevel.NONE
    risks: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    nothing_to_do: bool = False


@dataclass
class Refusal:
    """A failed safety check in plain words: what was observed, what was expected, why it
    matters and what the operator can do next (the override included)."""

    observed: str
    expected: str
    why: str
    next_steps: str
    risk_if_overridden: str

    def lines(self) -> list[str]:
        return [
            f"observed: {self.observed}",
            f"expected: {self.expected}",
            f"why it matters: {self.why}",
            f"what you can do: {self.next_steps}",
        ]


@dataclass
class StepResult:
    ok: bool
    summary: str
    outcome: str = ""
    facts: dict[str, BaseModel] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    refusal: Refusal | None = None

    def __post_init__(self) -> None:
        if not self.outcome:
            self.outcome = "ok" if self.ok else "failed"


class Fact(BaseModel):
    """Base of every fact a step hands to later steps: typed, and journaled as JSON so a
    resumed run gets back exactly what was decided."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StepParams(BaseModel):
    """Base of every action's parameters: unknown keys in a runbook are errors, values are fixed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(StepParams):
    pass


F = TypeVar("F", bound=Fact)

FACT_MODELS: dict[str, type[Fact]] = {}


def fact(cls: type[F]) -> type[F]:
    FACT_MODELS[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return cls


def fact_key(model: BaseModel) -> str:
    return f"{type(model).__module__}:{type(model).__qualname__}"


class Facts:
    """Facts gathered so far in a run, by name."""

    def __init__(self) -> None:
        self._items: dict[str, BaseModel] = {}

    def put(self, name: str, value: BaseModel) -> None:
        self._items[name] = value

    def get(self, name: str, kind: type[F]) -> F:
        value = self._items.get(name)
        if value is None:
            raise StepFailed(
                f"this step needs the fact {name!r}, which no earlier step produced; "
                f"check the runbook's order of steps"
            )
        if not isinstance(value, kind):
            raise StepFailed(f"fact {name!r} is a {type(value).__name__}, expected {kind.__name__}")
        return value

    def maybe(self, name: str, kind: type[F]) -> F | None:
        value = self._items.get(name)
        return value if isinstance(value, kind) else None

    def names(self) -> list[str]:
        return sorted(self._items)

    def update(self, other: Facts) -> None:
        self._items.update(other._items)

    def dump(self, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        return {
            n: {"model": fact_key(v), "value": v.model_dump(mode="json")}
            for n, v in self._items.items()
            if names is None or n in names
        }

    def load(self, dumped: dict[str, Any]) -> None:
        for name, item in dumped.items():
            model = FACT_MODELS.get(item["model"])
            if model is None:
                raise InputError(f"the journal names an unknown fact type {item['model']}; was drengine downgraded?")
            self._items[name] = model.model_validate(item["value"])


B = TypeVar("B")
P = TypeVar("P", bound=StepParams)


@dataclass(frozen=True)
class RunInputs:
    """The run's inputs (`--input NAME=VALUE`, or the runbook's defaults), as the runbook declared them."""

    runbook: str = ""
    declared: frozenset[str] = frozenset()
    values: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        """The input's value, None when it is optional and was not given."""
        if name not in self.declared:
            raise StepFailed(f"this step reads the input {name!r}, which runbook {self.runbook or '(none)'} does not "
                             f"declare under `inputs:`")
        return self.values.get(name)


@dataclass
class RunContext(Generic[B]):
    """Everything a step may use: one object instead of eight arguments. `backend` is the
    connector set of the cluster's kind (real or simulated), typed by the action's datastore."""

    inventory: Inventory
    cluster: Cluster
    mode: Mode
    facts: Facts
    backend: B
    record_statement: Callable[[Statement, str], None]
    clock: Clock = SYSTEM
    operator_said_gone: tuple[str, ...] = ()
    inputs: RunInputs = field(default_factory=RunInputs)
    # Set by the engine for the step being run: when its deadline passes or the operator
    # interrupts, the step stops at its next statement or wait (nothing outlives its step).
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: Deadline | None = None
    # The run's change ledger (drengine/ledger.py), set by the engine: `changed` and `undone` journal through it.
    ledger: RunLedger | None = None

    def changed(self, change: Change) -> None:
        """Declare a change this step made that is temporary or leaves the cluster diminished: an
        open ledger entry (journaled), listed at every stop and verdict until a step undoes it."""
        if self.ledger is not None:
            self.ledger.opened(change)

    def undone(self, kind: str, target: str, reason: str = "") -> None:
        """Say that this step put back `kind` on `target`: every open ledger entry of the cluster
        for it (this run's or an earlier run's) is closed (journaled)."""
        if self.ledger is not None:
            self.ledger.undone(kind, target, reason)

    def check_deadline(self) -> None:
        """Raise StepInterrupted when the step must stop (deadline passed, or interrupted)."""
        if self.cancel.is_set():
            raise StepInterrupted("the step was interrupted; it sends nothing more")
        if self.deadline is not None and self.deadline.passed():
            self.cancel.set()
            raise StepInterrupted("the step passed its deadline; it sends nothing more")

    def wait_until(self, check: Callable[[], bool], seconds: float, interval: float = 0.05) -> bool:
        """Poll `check` until it is true or `seconds` have passed (on the run's clock); a step
        that must stop (deadline, interruption) stops waiting."""

        def checked() -> bool:
            self.check_deadline()
            return check()

        return wait_until(checked, seconds, interval, self.clock)

    def sent(self, statement: Statement, result: str = "ok") -> None:
        """Journal a statement that was just sent (the journal writes before the next one),
        then stop the step if it must not send another."""
        self.record_statement(statement, result)
        self.check_deadline()


class Action(Generic[B, P]):
    """Base class of actions, generic in the datastore's backend type and the step's
    parameters. Subclasses set name, effect and optionally Params and gate; the engine builds
    an action with its validated parameters (`self.params`)."""

    name: ClassVar[str]
    effect: ClassVar[Effect]
    Params: ClassVar[type[StepParams]] = NoParams
    description: ClassVar[str] = ""
    # The runbook inputs this action reads from `ctx.inputs`: a runbook naming it must declare them.
    inputs: ClassVar[tuple[str, ...]] = ()
    # Custom outcomes (besides ok, failed, skipped) a runbook must map under `branches:`.
    outcomes: ClassVar[tuple[str, ...]] = ()
    # The least gate this action needs; mutating actions default to CONFIRM. An action that only
    # writes to drengine's own heartbeat table may lower it, in code, with a comment saying so.
    min_gate: ClassVar[GateLevel | None] = None
    # A mutating action whose repetition is harmless (it only rewrites drengine's own heartbeat,
    # or checks before each statement) may be retried by a runbook; others may not.
    repeatable: ClassVar[bool] = False

    def __init__(self, params: P) -> None:
        self.params = params

    @classmethod
    def build(cls, params: dict[str, Any]) -> Action[Any, Any]:
        """The action with its parameters validated against `Params`."""
        built: Action[Any, Any] = cls(cls.Params.model_validate(params))  # type: ignore[arg-type]
        return built

    @classmethod
    def least_gate(cls) -> GateLevel:
        if cls.min_gate is not None:
            return cls.min_gate
        return GateLevel.CONFIRM if cls.effect is Effect.MUTATE else GateLevel.NONE

    def propose(self, ctx: RunContext[B]) -> Proposal:
        raise NotImplementedError

    def run(self, ctx: RunContext[B], proposal: Proposal) -> StepResult:
        raise NotImplementedError

    def took_effect(self, ctx: RunContext[B], proposal: Proposal) -> bool:
        """Resume: did an interrupted run of this step finish? Mutating actions override it."""
        return False

    def result_after_interruption(self, ctx: RunContext[B], proposal: Proposal) -> StepResult:
        """Resume: the result of a step found to have taken effect before the interruption.
        Actions whose later steps need facts from this one override it to give them again."""
        return StepResult(ok=True, summary=f"{proposal.summary} (had taken effect before the interruption)")

    def assumed_result(self, ctx: RunContext[B], proposal: Proposal) -> StepResult:
        """Plan mode: the result a mutating step would have, so the walk can go on."""
        return StepResult(ok=True, summary=f"(plan) {proposal.summary}")


@dataclass(frozen=True)
class GoalLook:
    """One look at the cluster against a runbook's goal: does it hold, in words, what is left."""

    holds: bool
    summary: str
    left: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


LEFT = "LEFT: "  # a goal's evidence line naming something left to do


def left_of(result: StepResult) -> list[str]:
    """What a goal check says is left to do (its `LEFT:` evidence lines)."""
    return [line[len(LEFT):] for line in result.evidence if line.startswith(LEFT)]


def judge_goal(ctx: RunContext[Any], look: Callable[[], GoalLook], seconds: float, interval: float = 0.5) -> StepResult:
    """Look until the goal holds or `seconds` pass (a member started a moment ago may still be
    joining); the verdict is the last look. `LEFT:` evidence lines become what is left to do."""
    looks: list[GoalLook] = []

    def holds() -> bool:
        looks.append(look())
        return looks[-1].holds

    ctx.wait_until(holds, seconds, interval)
    last = looks[-1]
    return StepResult(ok=last.holds, summary=last.summary, evidence=[*last.evidence, *(f"{LEFT}{x}" for x in last.left)])


ACTIONS: dict[str, type[Action[Any, Any]]] = {}

A = TypeVar("A", bound=type[Action[Any, Any]])


def register(cls: A) -> A:
    if cls.name in ACTIONS:
        raise RuntimeError(f"action {cls.name} registered twice")
    ACTIONS[cls.name] = cls
    return cls


def load_actions(kind: str | None = None) -> dict[str, type[Action[Any, Any]]]:
    """Import the action modules of one datastore kind, or of all (client libraries are
    imported lazily; even so, importing only what a run needs keeps start-up short)."""
    import importlib

    from drengine.datastores import kinds

    for each in (kind,) if kind else kinds():
        importlib.import_module(f"drengine.datastores.{each}.actions")
        try:
            importlib.import_module(f"drengine.datastores.{each}.goals")
        except ModuleNotFoundError as exc:
            if exc.name != f"drengine.datastores.{each}.goals":
                raise
    return ACTIONS

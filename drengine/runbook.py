"""Runbooks: YAML data describing steps, gates and transitions, validated and built into a
state machine (the `transitions` library). Problems are reported as FILE:LINE."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from transitions import Machine

from drengine.datastores import check_kind
from drengine.errors import InputError
from drengine.steps import ACTIONS, Action, Effect, GateLevel, load_actions
from drengine.yamlsrc import Source, load_yaml, validate

StepId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
Outcome = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")]
InputName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")]
ParamValue = str | int | float | bool | list[str]

DEFAULT_ENDS = {"done": True, "failed": False}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepSpec(Strict):
    id: StepId
    action: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    title: str = ""
    params: dict[str, ParamValue] = Field(default_factory=dict)
    gate: Literal["none", "confirm", "dangerous"] = "none"
    retries: int = Field(default=0, ge=0, le=100)
    retry_delay: float = Field(default=1.0, ge=0, le=3600)
    timeout: float = Field(default=120.0, gt=0, le=86400, description="seconds the whole step may take")
    next: StepId | None = None
    # Not `on:`: YAML 1.1 reads a bare `on` key as the boolean true.
    branches: dict[Outcome, StepId] = Field(default_factory=dict, description="outcome -> next state")

    def gate_level(self) -> GateLevel:
        return {"none": GateLevel.NONE, "confirm": GateLevel.CONFIRM, "dangerous": GateLevel.DANGEROUS}[self.gate]


class InputSpec(Strict):
    """A value the operator gives a run on the command line (`--input NAME=VALUE`): journaled
    with the run's start, given back on resume, read by steps through `ctx.inputs`."""

    description: str = Field(min_length=1)
    required: bool = False
    default: str | None = None

    @model_validator(mode="after")
    def _required_or_default(self) -> InputSpec:
        if self.required and self.default is not None:
            raise ValueError("an input with a default is not required: give `required: true` or a `default:`, not both")
        return self


class GoalSpec(Strict):
    """What must hold at the end for the run to say DONE, checked on a fresh observation."""

    action: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    params: dict[str, ParamValue] = Field(default_factory=dict)
    timeout: float = Field(default=120.0, gt=0, le=86400)


class EndSpec(Strict):
    success: bool
    summary: str = ""
    # A failed end reached after the run changed the cluster: what the operator can do besides
    # resuming (the engine says what changed, what holds now and the resume command).
    advice: str = ""


class RunbookSpec(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    kind: str
    _kind = field_validator("kind")(check_kind)
    summary: str
    description: str = ""
    inputs: dict[InputName, InputSpec] = Field(default_factory=dict)
    start: StepId
    steps: list[StepSpec] = Field(min_length=1, max_length=200)
    goal: GoalSpec | None = Field(default=None, description="checked on a fresh observation before a run says DONE")
    ends: dict[StepId, EndSpec] = Field(default_factory=lambda: {k: EndSpec(success=v) for k, v in DEFAULT_ENDS.items()})


class _Model:
    """The model object a `transitions` machine drives; holds the current state."""

    state: str


class Walk:
    """One walk through a runbook's state machine: where it is, and where an outcome leads
    (`transitions` computes every next state)."""

    def __init__(self, machine: Machine, model: _Model) -> None:
        self.machine = machine
        self._model = model

    @property
    def state(self) -> str:
        return self._model.state

    def go_to(self, state: str) -> None:
        self.machine.set_state(state, self._model)

    def outcomes(self) -> list[str]:
        """The outcomes the current step maps."""
        triggers: list[str] = self.machine.get_triggers(self._model.state)
        return triggers

    def follow(self, outcome: str) -> None:
        """Move on along the current step's `outcome` (one of `outcomes()`): the outcome is the
        machine's trigger, fired (about 20 us, against milliseconds for a step on a simulator);
        an outcome the step does not map raises as `transitions` does."""
        self._model.trigger(outcome)  # type: ignore[attr-defined]


class Runbook:
    """A validated runbook and its state machine."""

    def __init__(self, spec: RunbookSpec, path: str, digest: str) -> None:
        self.spec = spec
        self.path = path
        self.digest = digest
        self.steps = {s.id: s for s in spec.steps}
        self._walks: list[Walk] = []  # their machines built, not in use

    @property
    def name(self) -> str:
        return self.spec.name

    def action(self, step_id: str) -> type[Action[Any, Any]]:
        return ACTIONS[self.steps[step_id].action]

    def is_end(self, state: str) -> bool:
        return state in self.spec.ends

    def transitions_of(self, step: StepSpec) -> dict[str, str]:
        """Outcome -> next state. `ok` and `skipped` follow `next`; `failed` goes to the `failed` end unless mapped."""
        table: dict[str, str] = {}
        if step.next is not None:
            table["ok"] = step.next
            table["skipped"] = step.next
        table["failed"] = "failed"
        table.update(step.branches)
        return table

    def _machine_args(self, initial: str | None) -> dict[str, Any]:
        states = [s.id for s in self.spec.steps] + [{"name": end, "final": True} for end in self.spec.ends]
        transitions = [
            {"trigger": outcome, "source": step.id, "dest": dest}
            for step in self.spec.steps
            for outcome, dest in self.transitions_of(step).items()
        ]
        return {"states": states, "transitions": transitions, "initial": initial or self.spec.start,
                "auto_transitions": False, "ignore_invalid_triggers": False}

    def machine(self, model: object, initial: str | None = None) -> Machine:
        """The state machine the engine walks: `transitions` computes every next state."""
        return Machine(model=model, **self._machine_args(initial))

    @contextmanager
    def walking(self, initial: str | None = None) -> Iterator[Walk]:
        """A walk through this runbook's state machine, from `initial` (else the start). Building
        a machine costs more than a step on a simulator: a walk takes one a finished walk gave
        back, else builds one; the state is all a walk leaves on it, and it is set here."""
        try:
            walk = self._walks.pop()
        except IndexError:
            model = _Model()
            walk = Walk(self.machine(model), model)
        walk.go_to(initial or self.spec.start)
        try:
            yield walk
        finally:
            self._walks.append(walk)

    def mermaid(self) -> str:
        """The state diagram, drawn by `transitions`' GraphMachine (its mermaid engine)."""
        from transitions.extensions.diagrams import GraphMachine

        class _Drawn:
            pass

        drawn = _Drawn()
        GraphMachine(model=drawn, graph_engine="mermaid", title=self.name, show_state_attributes=False,
                     **self._machine_args(None))
        text: str = drawn.get_graph().draw(None)  # type: ignore[attr-defined]
        return text if text.endswith("\n") else text + "\n"


def _check_graph(spec: RunbookSpec, source: Source) -> list[str]:
    """Every problem of a runbook's shape, each as FILE:LINE: ids, targets, actions and their
    parameters and outcomes, the goal, then whether every step is reachable and can end."""
    actions = load_actions(spec.kind)
    known = {s.id for s in spec.steps} | set(spec.ends)
    problems = _check_ids(spec, source)
    for i, step in enumerate(spec.steps):
        problems += _check_targets(i, step, known, source)
        action = actions.get(step.action)
        if action is None:
            close = sorted(a for a in actions if a.split(".")[0] == step.action.split(".")[0])
            problems.append(
                f"{source.where(('steps', i, 'action'))}: unknown action {step.action!r}; "
                f"known actions of this kind: {', '.join(close) or 'none'}"
            )
            continue
        problems += _check_inputs(i, step, action, spec, source) + _check_step_action(i, step, action, source)
    if problems:
        return problems
    return _check_goal(spec, source, actions) + _check_reachable(spec, source, known)


def _check_ids(spec: RunbookSpec, source: Source) -> list[str]:
    problems: list[str] = []
    if "failed" not in spec.ends:
        problems.append(f"{source.where(('ends',))}: ends must include `failed` (where unmapped failures go)")
    seen: set[str] = set()
    for i, step in enumerate(spec.steps):
        if step.id in seen:
            problems.append(f"{source.where(('steps', i, 'id'))}: step id {step.id!r} is used twice")
        if step.id in spec.ends:
            problems.append(f"{source.where(('steps', i, 'id'))}: {step.id!r} is both a step and an end")
        seen.add(step.id)
    if spec.start not in seen:
        problems.append(f"{source.where(('start',))}: start names {spec.start!r}, which is not a step; steps: {sorted(seen)}")
    return problems


def _check_targets(i: int, step: StepSpec, known: set[str], source: Source) -> list[str]:
    targets = ([("next", step.next)] if step.next else []) + [(f"branches.{k}", v) for k, v in step.branches.items()]
    problems: list[str] = []
    for label, target in targets:
        if target not in known:
            loc: tuple[str | int, ...] = ("steps", i, *label.split("."))
            problems.append(f"{source.where(loc)}: step {step.id} goes to {target!r}, which is neither a step nor an end")
    return problems


def _check_inputs(i: int, step: StepSpec, action: type[Action[Any, Any]], spec: RunbookSpec, source: Source) -> list[str]:
    return [
        f"{source.where(('steps', i, 'action'))}: step {step.id} ({step.action}) reads the input {name!r}; "
        f"declare it under `inputs:` (with a description, and `required: true` or a `default:`)"
        for name in action.inputs if name not in spec.inputs
    ]


def _check_step_action(i: int, step: StepSpec, action: type[Action[Any, Any]], source: Source) -> list[str]:
    """What the step's action says about the step: gate, retries, parameters, outcomes."""
    problems: list[str] = []
    if action.least_gate() > GateLevel.NONE and step.gate == "none" and "gate" in (source.data["steps"][i] or {}):
        problems.append(
            f"{source.where(('steps', i, 'gate'))}: step {step.id} changes the cluster ({step.action}); "
            f"mutating steps are always gated, so `gate: none` is not allowed (use confirm or dangerous)"
        )
    if step.retries and action.effect is Effect.MUTATE and not action.repeatable:
        problems.append(
            f"{source.where(('steps', i, 'retries'))}: step {step.id} changes the cluster ({step.action}) and its "
            f"action does not declare that running it again is safe; a retry would run beside an attempt whose "
            f"effect is unknown. Remove `retries` (a failed run is resumed instead, which checks what took effect)"
        )
    try:
        action.Params.model_validate(step.params)
    except ValidationError as exc:
        for err in exc.errors():
            ploc: tuple[str | int, ...] = ("steps", i, "params", *err["loc"])
            problems.append(f"{source.where(ploc)}: parameter {'.'.join(map(str, err['loc'])) or ''}: {err['msg']}")
    return problems + _check_outcomes(i, step, action, source)


def _check_outcomes(i: int, step: StepSpec, action: type[Action[Any, Any]], source: Source) -> list[str]:
    outcomes: tuple[str, ...] = tuple(getattr(action, "outcomes", ()))
    problems = [
        f"{source.where(('steps', i, 'branches', outcome))}: action {step.action} never reports outcome {outcome!r}; "
        f"it reports: ok, failed, skipped{''.join(', ' + o for o in outcomes)}"
        for outcome in sorted(set(step.branches) - set(outcomes) - {"ok", "failed", "skipped"})
    ]
    problems += [
        f"{source.where(('steps', i))}: step {step.id}: action {step.action} may report outcome {outcome!r}; "
        f"map it under `branches:`"
        for outcome in outcomes if outcome not in step.branches
    ]
    if step.next is None and "ok" not in step.branches and not outcomes:
        problems.append(f"{source.where(('steps', i))}: step {step.id} has no `next`; say where it goes when it succeeds")
    return problems


def _check_reachable(spec: RunbookSpec, source: Source, known: set[str]) -> list[str]:
    """From start forwards every step is reached, and from every step an end can be reached."""
    runbook = Runbook(spec, source.path, "")
    edges = {step.id: set(runbook.transitions_of(step).values()) for step in spec.steps}
    reached = _walk(spec.start, edges)
    reverse: dict[str, set[str]] = {state: set() for state in known}
    for src, dests in edges.items():
        for dest in dests:
            reverse[dest].add(src)
    can_end: set[str] = set()
    for end in spec.ends:
        can_end |= _walk(end, reverse)
    problems = [f"{source.where(('steps', i, 'id'))}: step {step.id} cannot be reached from start {spec.start}"
                for i, step in enumerate(spec.steps) if step.id not in reached]
    problems += [f"{source.where(('steps', i, 'id'))}: step {step.id} can never reach an end (a loop with no way out)"
                 for i, step in enumerate(spec.steps) if step.id not in can_end]
    return problems


def resolve_inputs(runbook: Runbook, given: Mapping[str, str]) -> dict[str, str]:
    """The run's inputs: what the operator gave, then the declared defaults. An input the
    runbook does not declare, or a required one not given, is an input error (exit 2)."""
    declared = runbook.spec.inputs
    known = ", ".join(f"{n}{' (required)' if s.required else ''}" for n, s in declared.items()) or "none"
    for name in given:
        if name not in declared:
            raise InputError(f"--input {name}: runbook {runbook.name} has no input named {name!r}; its inputs: {known}")
    missing = [n for n, s in declared.items() if s.required and n not in given]
    if missing:
        raise InputError(f"runbook {runbook.name} needs " + "; ".join(
            f"--input {n}=VALUE ({declared[n].description})" for n in missing))
    values = {n: s.default for n, s in declared.items() if s.default is not None}
    values.update(given)
    return values


def _check_goal(spec: RunbookSpec, source: Source, actions: dict[str, type[Action[Any, Any]]]) -> list[str]:
    if spec.goal is None:
        if any(end.success for end in spec.ends.values()):
            return [f"{source.where(('start',))}: runbook {spec.name} has a successful end but no `goal:`; name the "
                    f"read-only action that checks, on a fresh observation, that the recovery holds "
                    f"(a run says DONE only when it does)"]
        return []
    action = actions.get(spec.goal.action)
    if action is None:
        return [f"{source.where(('goal', 'action'))}: unknown goal action {spec.goal.action!r}"]
    if action.effect is Effect.MUTATE:
        return [f"{source.where(('goal', 'action'))}: the goal {spec.goal.action} changes the cluster; a goal only observes"]
    try:
        action.Params.model_validate(spec.goal.params)
    except ValidationError as exc:
        return [f"{source.where(('goal', 'params'))}: {err['msg']} ({'.'.join(map(str, err['loc']))})" for err in exc.errors()]
    return []


def _walk(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen = {start}
    queue = deque([start])
    while queue:
        for nxt in edges.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


ENV_VAR = "DRENGINE_RUNBOOKS"
BUILT_IN = "built-in"


def builtin_runbooks() -> Path:
    """The runbooks shipped with drengine: installed, they are package data (`drengine/runbooks/`,
    mapped from the top-level runbooks/ folder at build time); in a source checkout run with
    PYTHONPATH, that folder itself, beside the package."""
    shipped = resources.files("drengine") / "runbooks"
    if isinstance(shipped, Path) and shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parent.parent / "runbooks"


@dataclass(frozen=True)
class RunbookFolder:
    """One folder of the search path and where it was named."""

    path: Path
    origin: str  # "--runbooks", "DRENGINE_RUNBOOKS" or "built-in"

    def describe(self) -> str:
        return f"{self.origin} {self.path}" if self.origin != BUILT_IN else f"{BUILT_IN} ({self.path})"


@dataclass(frozen=True)
class FoundRunbook:
    """A runbook file found on the search path; `shadows` are later copies of the same name it hides."""

    name: str
    path: Path
    folder: RunbookFolder
    shadows: tuple[FoundRunbook, ...] = ()


class RunbookSearch:
    """Where runbooks are looked up by name: every `--runbooks DIR` in the order given, then the
    folders of $DRENGINE_RUNBOOKS (separated by os.pathsep), then the built-in runbooks. The first
    folder holding NAME.yaml wins, so an operator's copy of a built-in runbook replaces it."""

    def __init__(self, dirs: Sequence[str | Path] = (), environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        folders = [_folder(d, "--runbooks") for d in dirs]
        folders += [_folder(d, ENV_VAR) for d in env.get(ENV_VAR, "").split(os.pathsep) if d.strip()]
        folders.append(RunbookFolder(builtin_runbooks(), BUILT_IN))
        self.folders = folders

    def found(self) -> list[FoundRunbook]:
        """Every runbook name once, by name, with the copies it shadows."""
        copies: dict[str, list[FoundRunbook]] = {}
        for folder in self.folders:
            for path in sorted(folder.path.glob("*.yaml")):
                copies.setdefault(path.stem, []).append(FoundRunbook(path.stem, path, folder))
        return [FoundRunbook(name, first.path, first.folder, tuple(rest))
                for name, (first, *rest) in sorted(copies.items())]

    def resolve(self, name_or_path: str) -> Path:
        if _is_path(name_or_path):
            return Path(name_or_path)
        for folder in self.folders:
            candidate = folder.path / f"{name_or_path}.yaml"
            if candidate.is_file():
                return candidate
        from drengine.suggest import did_you_mean

        names = [f.name for f in self.found()]
        where = "; ".join(f.describe() for f in self.folders)
        raise InputError(f"no runbook named {name_or_path!r} in {where}.{did_you_mean(name_or_path, names)} "
                         f"Known runbooks: {', '.join(names) or 'none'}")

    def load(self, name_or_path: str) -> Runbook:
        return load_runbook(name_or_path, self)


def _folder(directory: str | Path, origin: str) -> RunbookFolder:
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise InputError(f"{origin} names {str(directory)!r}, which is not a directory; "
                         f"give a directory holding runbook YAML files (NAME.yaml)")
    return RunbookFolder(path.resolve(), origin)


def _is_path(name_or_path: str) -> bool:
    return Path(name_or_path).suffix in (".yaml", ".yml") or "/" in name_or_path


def load_runbook(name_or_path: str, search: RunbookSearch | None = None) -> Runbook:
    """Load a runbook by name (from the search path) or by file path."""
    path = Path(name_or_path) if _is_path(name_or_path) else (search or RunbookSearch()).resolve(name_or_path)
    source = load_yaml(path)
    if source.data is None:
        raise InputError(f"{path}:1: the runbook is empty")
    spec = validate(source, RunbookSpec)
    problems = _check_graph(spec, source)
    if problems:
        raise InputError(f"{path}: {len(problems)} problem(s)", problems)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return Runbook(spec, str(path), digest)


def list_runbooks(search: RunbookSearch | None = None) -> list[tuple[FoundRunbook, Runbook | InputError]]:
    out: list[tuple[FoundRunbook, Runbook | InputError]] = []
    for found in (search or RunbookSearch()).found():
        try:
            out.append((found, load_runbook(str(found.path))))
        except InputError as exc:
            out.append((found, exc))
    return out


def describe(runbook: Runbook) -> list[dict[str, Any]]:
    """Rows for `runbook show`: each step, its action, effect, gate and transitions."""
    rows = []
    for step in runbook.spec.steps:
        action = ACTIONS[step.action]
        gate = max(step.gate_level(), action.least_gate())
        rows.append(
            {
                "id": step.id,
                "title": step.title or action.description,
                "action": step.action,
                "effect": action.effect.value,
                "gate": gate.name.lower(),
                "transitions": runbook.transitions_of(step),
            }
        )
    return rows

"""What a datastore gives the explorer, in its own `datastores/<kind>/explore.py` (`KIT`):
the situations to generate, the fault operations the world may undergo, the goal and the
invariants computed from the simulator's own state (never by asking the runbook's actions).

The engine-side invariants every datastore shares (the journal verifies, nothing after
run_finished, no mutating statement without a journaled gate answer, no statement sent
twice across a resume, success implies the goal) live in `drengine.explore.invariants`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from drengine.errors import InputError
from drengine.explore.scenario import MemberSpec, Prelude, WorldChange
from drengine.simstate import Parse, snapshot

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from drengine.journal import Entry


@dataclass(frozen=True)
class Violation:
    invariant: str  # a short name: "mariadb.two-writable-primaries"
    detail: str  # what was observed, in plain words
    at: str = ""  # where in the run: "after event #12 (statement_sent, step promote)"

    def line(self) -> str:
        return f"{self.invariant}: {self.detail}" + (f" [{self.at}]" if self.at else "")


@dataclass(frozen=True)
class Situation:
    """A generated cluster: its members (for the inventory) and its simulator state, and the
    runbook inputs an operator gave (an explicit choice: `survivor=db3`)."""

    label: str
    members: list[MemberSpec]
    state: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Ledger:
    """What the journal has said so far, as facts about what the run did and what the operator
    explicitly chose. It holds no risk text on purpose: a runbook that does the wrong thing and
    says so is still wrong. An invariant excuses a worse outcome only when the operator chose it
    by name (`chose`), or when the oracle shows that no choice could have avoided it."""

    inputs: dict[str, str] = field(default_factory=dict)  # the run's --input NAME=VALUE
    gone: list[str] = field(default_factory=list)  # members the operator said are gone for good (--gone)
    overrides: list[str] = field(default_factory=list)  # steps whose refused check the operator overrode
    step: str = ""  # the step of the last event
    events: int = 0  # journal events seen in the scenario (all segments)
    skipped: list[str] = field(default_factory=list)  # steps the operator skipped at their gate
    ended: str = ""  # the end of the last run_finished
    success: bool = False  # what the last run_finished said
    told: str = ""  # what it said: its summary and what it left to do
    started: dict[str, int] = field(default_factory=dict)  # step -> times it started (all segments)
    dangerous: list[str] = field(default_factory=list)  # steps approved at a dangerous gate
    _asked: dict[str, tuple[str, bool]] = field(default_factory=dict)  # step -> (gate level, override?)

    def see(self, entry: Entry) -> None:
        self.events += 1
        data = entry.data
        self.step = str(data.get("step", self.step))
        kind = entry.type.value
        if kind == "run_started":
            self.inputs = {str(k): str(v) for k, v in (data.get("inputs") or {}).items()}
            self.gone = [str(g) for g in data.get("gone_for_good") or []]
        elif kind == "step_started":
            self.started[self.step] = self.started.get(self.step, 0) + 1
        elif kind == "step_finished" and data.get("outcome") == "skipped":
            self.skipped.append(str(data.get("step")))
        elif kind == "run_finished":
            self.ended = str(data.get("end", ""))
            self.success = bool(data.get("success"))
            self.told = " ".join([str(data.get("summary", "")), *map(str, data.get("left") or [])])
        elif kind == "gate_asked":
            self._asked[str(data["step"])] = (str(data.get("level", "")), bool(data.get("override")))
        elif kind == "gate_answered" and data.get("answer") == "proceed":
            level, override = self._asked.get(str(data["step"]), ("", False))
            if override:
                self.overrides.append(str(data["step"]))
            elif level == "dangerous":
                self.dangerous.append(str(data["step"]))

    def chose(self, name: str) -> bool:
        """Did the operator name `name` explicitly: as the value of a runbook input (`survivor=db3`,
        a list `a,b`), or as a member gone for good? Only a name counts, never a risk text."""
        if name in self.gone:
            return True
        return any(name in {part.strip() for part in value.replace(";", ",").split(",")} for value in self.inputs.values())

    def overrode(self, step: str) -> bool:
        return step in self.overrides


class Watch:
    """The invariants of one datastore over one scenario: sees the simulated world after every
    journal event (`model` is the live simulator state, None before the backend is open)."""

    def after_event(self, entry: Entry, model: Any, ledger: Ledger) -> list[Violation]:
        return []

    def at_end(self, model: Any, ledger: Ledger, success: bool) -> list[Violation]:
        return []

    def prelude(self, before: Any, after: Any) -> None:
        """The simulator state before and after the scenario's prelude run (if it has one)."""

    def world(self, model: Any, what: str) -> None:
        """The explorer changed the world (`what`: "kill db1 while gate #0 waits"): what follows
        from it is the world's doing, not the run's (re-take any baseline kept between events)."""


class Kit:
    """Base of a datastore's explore kit."""

    kind: ClassVar[str]
    runbooks: ClassVar[tuple[str, ...]]
    # Fault operations of the simulated backend (methods taking a member name): any of them may
    # happen while a gate waits or while the engine is dead; `flaps` may also happen behind the
    # engine's back, at any journal event (a member gone between observe and act).
    ops: ClassVar[tuple[str, ...]] = ()
    flaps: ClassVar[tuple[str, ...]] = ()
    timeouts: ClassVar[dict[str, float]] = {"connect": 1, "read": 2, "catch_up": 5}

    def situations(self, runbook: str) -> SearchStrategy[Situation]:
        raise NotImplementedError

    def prelude(self, runbook: str) -> Prelude | None:
        return None

    def after_prelude(self, runbook: str, situation: Situation) -> SearchStrategy[list[WorldChange]]:
        """How the world changes between the prelude run and the explored one."""
        from hypothesis import strategies as st

        return st.just([])

    def suggested(self, runbook: str, situation: Situation) -> SearchStrategy[list[WorldChange]]:
        """World changes the situation itself makes likely, beside the generic ones (a member hung
        in the situation waking while a gate waits or while the engine is dead)."""
        from hypothesis import strategies as st

        return st.just([])

    def model(self, backend: Any) -> Any:
        """The live simulator state of an open backend."""
        raise NotImplementedError

    def load(self, state: dict[str, Any]) -> Any:
        """The simulator state of a state file's JSON."""
        raise NotImplementedError

    def load_text(self, text: str) -> Any:
        """The simulator state of a state file's text (a kit may parse it in one go)."""
        return self.load(json.loads(text))

    def saved_state(self) -> Parse[Any]:
        """How the state file is read back: the simulator's model when its backend saves it as one
        (the explorer keeps it in memory as the model and loads a snapshot of it), else `load_text`."""
        return self.load_text

    def copy(self, model: Any) -> Any:
        """A copy of the live state, kept as it is now (the state the goal check saw)."""
        return snapshot(model)

    def attach(self, backend: Any, clock: Any) -> None:
        """A simulated backend was opened for the scenario (its clock is the run's)."""

    def applies(self, model: Any, op: str, member: str) -> bool:
        """Does `op` change anything on `member` now (a hung member cannot be hung again)?"""
        return True

    def change(self, backend: Any, op: str, member: str) -> None:
        """Apply a fault operation through the backend (it saves its state)."""
        getattr(backend, op)(member)

    def goal(self, runbook: str, model: Any, watch: Watch) -> str | None:
        """None when the runbook's goal holds in this final state, else why not. Computed
        from the simulator's state, independently of the runbook's goal action (`watch` is
        the scenario's, for what it saw before: the state before a prelude run)."""
        raise NotImplementedError

    def watch(self, runbook: str) -> Watch:
        return Watch()

    def expect_done(self, runbook: str, start: Any) -> str | None:
        """The liveness oracle: from the simulator state `start` (the scenario's, before the run),
        with every ordinary and dangerous gate approved, no override and the world left alone,
        can a correct recovery reach the runbook's goal? The reason when it can (the explorer
        then demands a DONE run whose goal holds), None when it cannot or the kit cannot tell.
        Computed from the simulator's truth, apart from the runbook's decisions."""
        return None

    def ledger_changes(self, runbook: str, start: Any, end: Any) -> list[tuple[str, str, str]] | None:
        """The temporary or diminishing changes the simulator shows at the end against the start
        of the run (kind, target, in words), as the change ledger names them (drengine/ledger.py):
        each must be an open ledger entry of the run. What the runbook's goal is (a restore
        putting a flag back) is not listed. None: this datastore's kit does not say (not checked)."""
        return None

    def mutating(self, language: str, text: str) -> bool:
        """Does this statement change the cluster? (Reads may be repeated across a resume.)"""
        return True

    def once(self, language: str, text: str) -> bool:
        """Must this statement reach its target at most once across a resume? Statements that
        set a state (start a thread, set a flag) may be sent again when the state is not there
        any more; those that throw something away or add something may not."""
        return self.mutating(language, text)

    def hosts(self, work: Path) -> dict[str, Any]:
        """Inventory hosts the generated clusters' members run on (`work`: a directory the
        explorer owns, for the members' directories)."""
        return {}

    def inventory(self, name: str, members: list[MemberSpec]) -> dict[str, Any]:
        """The inventory cluster for a generated situation (the state file is the run's)."""
        return {
            "kind": self.kind,
            "simulated": {"scenario": "healthy"},
            "timeouts": dict(self.timeouts),
            "members": [{"name": m.name, "address": m.address, "port": m.port} for m in members],
        }


def mostly(common: Any, *rare: Any, percent: int = 75) -> SearchStrategy[Any]:
    """`common` about `percent`% of the time, else one of `rare`; shrinks towards `common`
    (generators keep most scenarios on the runbook's main path, where the mutations are)."""
    from hypothesis import strategies as st

    return st.integers(0, 99).map(lambda v: common if v < percent or not rare else
                                  rare[(v - percent) * len(rare) // (100 - percent)])


def pick(digit: int, common: Any, *rare: Any, percent: int = 75) -> Any:
    """A value from one base-100 digit: `common` for digits below `percent`, else one of `rare`
    (0 is always `common`: packed digits shrink towards the usual case)."""
    if digit < percent or not rare:
        return common
    return rare[(digit - percent) * len(rare) // (100 - percent)]


def portion(digit: int, top: int) -> int:
    """A number from 0 to `top` from one base-100 digit (0 for 0)."""
    return digit * (top + 1) // 100


def digits(count: int) -> SearchStrategy[list[int]]:
    """`count` digits (0-99) from ONE draw: hypothesis spends most of a scenario's generation
    time per draw, so a record (a server, a node) is one draw, decoded with `pick`/`portion`.
    One byte per digit (a big integer would leave its high digits mostly 0: every dimension
    must vary); shrinking the bytes shrinks the digits towards 0, the usual case."""
    from hypothesis import strategies as st

    return st.binary(min_size=count, max_size=count).map(lambda raw: [b * 100 // 256 for b in raw])


def kit_for(kind: str) -> Kit:
    """The explore kit of a datastore kind (`drengine/datastores/<kind>/explore.py`)."""
    try:
        module = importlib.import_module(f"drengine.datastores.{kind}.explore")
    except ModuleNotFoundError as exc:
        if exc.name != f"drengine.datastores.{kind}.explore":
            raise
        raise InputError(f"the {kind} datastore has no explore kit (drengine/datastores/{kind}/explore.py)") from None
    kit = getattr(module, "KIT", None)
    if not isinstance(kit, Kit):
        raise InputError(f"drengine/datastores/{kind}/explore.py defines no KIT")
    return kit

"""What one explored scenario is, and its file: the simulated cluster a run starts from, the
operator's answers at the gates, where the engine is killed, and how the world changes under
the run. A counterexample is this file; `drengine explore --replay FILE` runs it again
exactly (the simulator, the clock and the answers are deterministic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drengine.errors import InputError

FORMAT = "drengine-explore-case/1"

# The operator's answers. `proceed` at a break-glass gate overrides the refused check; `stop`
# is "nobody there to answer" (no terminal, no flag): the run stops at an ordinary gate, a
# refused check stands. Once the scripted answers are used up, every ordinary or dangerous
# gate is approved and every refused check stands (`--yes --accept-data-loss`, no override).
Answer = Literal["proceed", "skip", "retry", "abort", "stop"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberSpec(Strict):
    name: str
    address: str = "127.0.0.1"
    port: int = 0


class WorldChange(Strict):
    """The cluster changing under the run, through the simulator's own fault operations.

    when: `gate`: while the `index`-th gate asked in the scenario (0-based) waits for its
    answer; `event`: right after the `index`-th journal event of the scenario (1-based, all
    segments counted), a member flapping behind the engine's back (op `slow`: no fault, only
    time: a slow member's statement outlasting its step's deadline); `crash`: while the engine
    is dead after its `index`-th kill (1-based), before it is resumed; `prelude`: after the
    prelude run, before the explored one (the OSDs back before ceph-restore). The simulated
    clock moves on by `advance` seconds at the same time.
    """

    when: Literal["gate", "event", "crash", "prelude"]
    index: int = Field(ge=0)
    op: str
    member: str
    advance: float = Field(default=0.0, ge=0)

    def describe(self) -> str:
        where = {"gate": f"while gate #{self.index} waits", "event": f"right after journal event #{self.index}",
                 "crash": f"while the engine is dead after kill #{self.index}",
                 "prelude": "after the prelude run"}[self.when]
        later = f", {self.advance:g} s later" if self.advance else ""
        return f"{self.op} {self.member} {where}{later}"


class Prelude(Strict):
    """A run that must happen before the explored one, on the same cluster (ceph-restore needs
    the journal of a ceph-degrade run): run with every gate approved, never killed. Its run
    directory is given to the explored run as the runbook input `input`."""

    runbook: str
    input: str = ""


class Scenario(Strict):
    format: str = FORMAT
    runbook: str
    kind: str
    label: str = ""  # the situation in a few words, from the datastore's generator
    members: list[MemberSpec]
    state: dict[str, Any]  # the simulator's state file, as JSON
    prelude: Prelude | None = None
    inputs: dict[str, str] = {}  # runbook inputs the operator gave (an explicit choice, `survivor=db3`)
    answers: list[Answer] = []
    # Per segment (a run and each resume): kill the engine right after the n-th journal event
    # that segment writes (1-based); 0 lets that segment end by itself.
    crashes: list[int] = []
    changes: list[WorldChange] = []
    found: list[str] = []  # the violations this scenario showed when it was written

    def describe(self) -> list[str]:
        lines = [f"runbook {self.runbook} on a simulated {self.kind} cluster: {self.label or 'generated state'}"]
        if self.prelude is not None:
            lines.append(f"after a {self.prelude.runbook} run on the same cluster")
        if self.inputs:
            lines.append("runbook inputs: " + ", ".join(f"{k}={v}" for k, v in self.inputs.items()))
        lines.append("answers at the gates, in order: " + (", ".join(self.answers) if self.answers else "none scripted")
                     + " (then: approve, and let every refused check stand)")
        kills = [f"segment {i + 1}: after event #{n}" for i, n in enumerate(self.crashes) if n]
        lines.append("engine killed and resumed: " + ("; ".join(kills) if kills else "never"))
        lines.append("world changes: " + ("; ".join(c.describe() for c in self.changes) if self.changes else "none"))
        return lines


def dump(scenario: Scenario) -> str:
    """The case file: YAML, the simulator state (its state file's JSON) included as a mapping."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False, width=120, allow_unicode=True)


def write(scenario: Scenario, path: Path) -> Path:
    from drengine.files import atomic_write

    atomic_write(path, dump(scenario))
    return path


def load(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the case file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not a YAML case file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not a drengine explore case (expected `format: {FORMAT}`)")
    if isinstance(data.get("state"), str):
        try:
            data["state"] = json.loads(data["state"])
        except ValueError as exc:
            raise InputError(f"{path}: `state` is not the JSON of a simulator state ({exc})") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = [f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise InputError(f"{path}: not a valid explore case", problems) from None

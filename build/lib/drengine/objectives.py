"""Recovery objectives of a drill, and the pure judgement of measured figures against them.

An objective is what the team promised: recovery within `rto` seconds (fault to the first
acknowledged write) and at most `lost_writes` acknowledged writes missing afterwards. A drill
passes only when its runbook succeeded and every objective set is met; each judgement says in
words what was measured, what was promised and by how much it was missed or met.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class Objectives(BaseModel):
    """`objectives: {rto: SECONDS, lost_writes: N}` in a drills file, or `--rto` / `--max-lost-writes`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rto: float | None = Field(default=None, gt=0, le=86400,
                              description="seconds from the fault to the first acknowledged write")
    lost_writes: int | None = Field(default=None, ge=0, le=10_000_000,
                                    description="acknowledged writes that may be missing after recovery")

    def over(self, base: Objectives | None) -> Objectives:
        """These objectives, each unset one taken from `base` (a drill's over its cluster's)."""
        if base is None:
            return self
        return Objectives(rto=self.rto if self.rto is not None else base.rto,
                          lost_writes=self.lost_writes if self.lost_writes is not None else base.lost_writes)

    @property
    def empty(self) -> bool:
        return self.rto is None and self.lost_writes is None


@dataclass(frozen=True)
class Judgement:
    """One objective against its measurement. `target` None: no objective was set."""

    name: str  # "rto" or "lost_writes"
    label: str  # what people call it
    measured: float | None  # None: never recovered (RTO) or not measured
    target: float | None
    unit: str
    met: bool | None  # None when no objective was set
    by: float | None  # how far past the objective (missed) or below it (met); None when unknown
    text: str

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "label": self.label, "measured": self.measured, "target": self.target,
                "unit": self.unit, "met": self.met, "by": self.by, "text": self.text}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Judgement:
        def num(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        met = data.get("met")
        return cls(name=str(data.get("name", "")), label=str(data.get("label", data.get("name", ""))),
                   measured=num("measured"), target=num("target"), unit=str(data.get("unit", "")),
                   met=met if isinstance(met, bool) else None, by=num("by"), text=str(data.get("text", "")))


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def _writes(value: float) -> str:
    n = int(value)
    return f"{n} write" if n == 1 else f"{n} writes"


def judge_rto(measured: float | None, target: float | None) -> Judgement:
    label = "recovery time (RTO)"
    if measured is None:
        text = ("the cluster never took a write again after the fault: no recovery time could be measured"
                + (f"; the objective was {_seconds(target)}" if target is not None else ""))
        return Judgement("rto", label, None, target, "s", False if target is not None else None, None, text)
    said = f"writes were refused for {_seconds(measured)} after the fault, until the first acknowledged canary write"
    if target is None:
        return Judgement("rto", label, measured, None, "s", None, None, f"{said}; no recovery-time objective was set")
    by = round(measured - target, 3)
    if measured <= target:
        return Judgement("rto", label, measured, target, "s", True, round(target - measured, 3),
                         f"{said}: within the objective of {_seconds(target)} ({_seconds(target - measured)} to spare)")
    return Judgement("rto", label, measured, target, "s", False, by,
                     f"{said}: MISSED the objective of {_seconds(target)} by {_seconds(by)}")


def judge_lost_writes(measured: int | None, target: int | None) -> Judgement:
    label = "lost writes"
    if measured is None:
        return Judgement("lost_writes", label, None, target, "writes", False if target is not None else None, None,
                         "the canaries could not be read back after the drill: lost writes are unknown")
    if measured == 0:
        said = "every acknowledged canary write was found after the recovery (none lost)"
    else:
        said = (f"{_writes(measured)} acknowledged before or during the outage "
                f"{'was' if measured == 1 else 'were'} missing after the recovery")
    if target is None:
        return Judgement("lost_writes", label, measured, None, "writes", None, None,
                         f"{said}; no lost-writes objective was set")
    if measured <= target:
        return Judgement("lost_writes", label, measured, target, "writes", True, float(target - measured),
                         f"{said}: within the objective of at most {_writes(target)}")
    return Judgement("lost_writes", label, measured, target, "writes", False, float(measured - target),
                     f"{said}: MISSED the objective of at most {_writes(target)} by {_writes(measured - target)}")


def judge(rto: float | None, lost_writes: int | None, objectives: Objectives) -> list[Judgement]:
    return [judge_rto(rto, objectives.rto), judge_lost_writes(lost_writes, objectives.lost_writes)]


def missed(judgements: list[Judgement]) -> list[Judgement]:
    return [j for j in judgements if j.met is False]


def missed_summary(judgements: list[Judgement]) -> str:
    """`objective missed: RTO 1.234 s > 0.001 s (by 1.233 s)` for a verdict line."""
    parts = []
    for j in missed(judgements):
        if j.measured is None:
            parts.append(f"{j.label}: not measured (objective {_fmt(j.target, j.unit)})")
        else:
            parts.append(f"{j.label} {_fmt(j.measured, j.unit)} > objective {_fmt(j.target, j.unit)}"
                         f" (by {_fmt(j.by, j.unit)})")
    return "; ".join(parts)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "?"
    return _seconds(value) if unit == "s" else _writes(value)

"""The goal of the Elasticsearch runbook, checked on a fresh observation before a run says DONE:
every primary is assigned, and every setting the run changed is back to what it was."""

from __future__ import annotations

from drengine.datastores.elasticsearch.calls import ENABLE_SETTING
from drengine.datastores.elasticsearch.connector import ElasticAPI
from drengine.datastores.elasticsearch.esview import EsView
from drengine.datastores.elasticsearch.finishing import put_enable_back, split_lifted
from drengine.datastores.elasticsearch.planning import SettingChange, SettingChanges
from drengine.steps import Action, Effect, NoParams, Proposal, RunContext, StepResult, register

Ctx = RunContext[ElasticAPI]
CHANGE_FACTS = ("es_changed_delay", "es_changed_enable")


def _current(view: EsView, change: SettingChange) -> str | None:
    """The setting's value now, in the form SettingChange keeps it (None: not set)."""
    if change.key == ENABLE_SETTING:
        enable = view.allocation_enable
        return None if enable.scope == "default" else enable.value
    index = next((i for i in view.indices if i.name == change.target), None)
    if index is None:
        return change.old  # the index is gone: nothing of the run is left on it
    if change.key.endswith("delayed_timeout"):
        return index.delayed_timeout if index.delayed_timeout_set else None
    return change.old  # settings the goal cannot read back are judged by the restore step


def primaries_goal(view: EsView, changes: list[SettingChange],
                   kept: list[SettingChange] | None = None) -> tuple[bool, str, list[str]]:
    """`kept`: settings the run lifted and keeps lifted by choice (the restore step's trade-off):
    their goal is the value the run set."""
    left = []
    kept = kept or []
    changes = [c for c in changes if c not in kept]
    # Active, not only placed: a primary still initializing serves nothing yet (and may fail its recovery).
    red = sorted({f"{s.index}[{s.shard}]" for s in view.shards if s.primary and s.state != "STARTED"})
    if red:
        left.append(f"{len(red)} primary shard(s) not active (unassigned or still initializing: "
                    f"{', '.join(red[:5])}{'...' if len(red) > 5 else ''}); run elasticsearch-reallocate again and "
                    f"read the allocation explanations")
    for change in changes:
        now = _current(view, change)
        if now != change.old:
            left.append(f"{change.key} on {change.target} is {now!r}, was {change.old!r} before the run; put it back")
    for change in kept:
        now = _current(view, change)
        if now not in (change.new, None):
            left.append(f"{change.key} on {change.target} is {now!r}; the run keeps it at {change.new!r}")
    if left:
        return False, "; ".join(left), left
    said = "".join(f"; {c.key} kept at {c.new!r} by choice (was {c.old!r})" for c in kept)
    back = f"; {len(changes)} changed setting(s) are back" if changes or not kept else ""
    return True, f"every primary is active ({view.health.status}){back}{said}", []


@register
class PrimariesGoal(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.goal_primaries_assigned"
    effect = Effect.READ
    description = "Goal: every primary assigned; every setting the run changed back to what it was"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="observe shards and settings: every primary assigned, settings restored")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        changes = [c for name in CHANGE_FACTS
                   for c in (ctx.facts.maybe(name, SettingChanges) or SettingChanges()).changes]
        changes, kept = split_lifted(changes, put_enable_back(ctx))
        view = ctx.backend.observe()
        ok, summary, left = primaries_goal(view, changes, kept)
        return StepResult(ok=ok, summary=summary, evidence=[view.health.line(), *(f"LEFT: {x}" for x in left)])

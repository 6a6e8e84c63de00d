"""The last steps of elasticsearch-reallocate: wait for the expected health, then put back
every setting the run changed."""

from __future__ import annotations

from pydantic import Field

from drengine.datastores.elasticsearch.calls import DELAY_SETTING, health_call
from drengine.datastores.elasticsearch.connector import ElasticAPI
from drengine.datastores.elasticsearch.planning import (
    PrimariesDone,
    ReallocationPlan,
    SettingChange,
    SettingChanges,
    Status,
    expected_after,
    restore_calls,
)
from drengine.datastores.elasticsearch.stepkit import Ctx, plan_of, send
from drengine.steps import Action, Effect, Mode, Proposal, StepParams, StepResult, register


class WaitParams(StepParams):
    timeout: float = Field(default=60.0, gt=0, le=86400, description="seconds to wait for the expected health")
    canary_index: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9._-]{0,200})?$",
                              description="drills: write and read back a document in this index")


@register
class WaitForHealth(Action[ElasticAPI, WaitParams]):
    name = "elasticsearch.wait_for_health"
    effect = Effect.READ
    Params = WaitParams
    description = "Wait for green (or yellow when replicas are knowingly left unassigned)"

    def _expected(self, ctx: Ctx) -> tuple[Status, list[str]]:
        plan = plan_of(ctx)
        planning = ctx.mode is Mode.PLAN  # a plan shows the health a run approving every gate would reach
        return expected_after(plan, planning or ctx.facts.maybe("es_stale_done", PrimariesDone) is not None,
                              planning or ctx.facts.maybe("es_empty_done", PrimariesDone) is not None)

    def propose(self, ctx: Ctx) -> Proposal:
        params = self.params
        expected, _ = self._expected(ctx)
        return Proposal(summary=f"wait up to {params.timeout:g} s for health {expected}",
                        statements=[health_call(expected, params.timeout).statement()])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        params = self.params
        plan = plan_of(ctx)
        expected, left_red = self._expected(ctx)
        if left_red:
            return StepResult(ok=False, summary=(
                f"{', '.join(left_red)} still ha(s|ve) no primary (the data-losing step was not approved): the cluster "
                f"stays red and those shards serve nothing. Bring back the node with their in-sync copy, restore them "
                f"from a snapshot, or rerun and approve the step with --accept-data-loss"))
        if expected == "red":
            return StepResult(ok=False, summary="some primaries cannot be assigned by this runbook: "
                              + "; ".join(w for w in plan.waiting if " primary:" in w), evidence=plan.waiting)
        health = ctx.backend.health(expected, params.timeout)
        evidence = [health.line()]
        if params.canary_index:
            works = ctx.backend.canary(params.canary_index, "drengine-canary")
            evidence.append(f"canary write and read in {params.canary_index}: {'ok' if works else 'FAILED'}")
            if not works:
                return StepResult(ok=False, summary="the canary document written could not be read back", evidence=evidence)
        if health.timed_out:
            return StepResult(ok=False, evidence=evidence + plan.waiting, summary=(
                f"health is {health.status} after {params.timeout:g} s, expected {expected}: "
                f"{health.unassigned_shards} copies still unassigned ({health.delayed_unassigned_shards} delayed). "
                f"Rerun the runbook to see why each one is unassigned, or rerun with a longer wait"))
        if health.status == "green":
            return StepResult(ok=True, summary="cluster is green: every shard copy is assigned", evidence=evidence)
        waits = [w for w in plan.waiting if " replica:" in w]
        return StepResult(ok=True, evidence=evidence + waits, summary=(
            f"cluster is {health.status}, as expected: every primary is assigned; {health.unassigned_shards} replica "
            f"copies are knowingly left unassigned ({len(waits)} listed below)"))


class RestoreParams(StepParams):
    restore_replicas: bool = Field(default=False, description="also raise lowered replica counts again (yellow again "
                                                              "until nodes are added)")


@register
class RestoreSettings(Action[ElasticAPI, RestoreParams]):
    name = "elasticsearch.restore_settings"
    effect = Effect.MUTATE
    Params = RestoreParams
    description = "Put back every setting this run changed"

    def _changes(self, ctx: Ctx) -> tuple[list[SettingChange], list[SettingChange]]:
        """(to restore, lowered replicas kept)."""
        params = self.params
        found: list[SettingChange] = []
        replicas: list[SettingChange] = []
        names = ("es_changed_delay", "es_changed_enable", "es_changed_replicas")
        recorded = [ctx.facts.maybe(n, SettingChanges) for n in names]
        if ctx.mode is Mode.PLAN and all(r is None for r in recorded):
            plan = ctx.facts.maybe("es_plan", ReallocationPlan)
            if plan is not None:  # a plan changes nothing: show what a run would restore
                recorded = [SettingChanges(changes=plan.shorten_delay),
                            SettingChanges(changes=[plan.enable] if plan.enable else []),
                            SettingChanges(changes=plan.lower_replicas)]
        for name, changes in zip(names, recorded, strict=True):
            if changes is None:
                continue
            if name == "es_changed_replicas" and not params.restore_replicas:
                replicas.extend(changes.changes)
            else:
                found.extend(changes.changes)
        return found, replicas

    def _differing(self, ctx: Ctx, changes: list[SettingChange]) -> list[SettingChange]:
        if not changes:
            return []
        api = ctx.backend
        out = []
        if any(c.scope != "index" for c in changes):
            enable = api.allocation_enable()
            out += [c for c in changes if c.scope != "index" and enable.value != (c.old or "all")]
        if any(c.scope == "index" for c in changes):
            current = {i.name: i for i in api.index_settings()}
            for c in changes:
                if c.scope != "index" or c.target not in current:
                    continue
                info = current[c.target]
                if c.key == DELAY_SETTING:
                    now: str | None = info.delayed_timeout if info.delayed_timeout_set else None
                else:
                    now = str(info.number_of_replicas)
                if now != c.old:
                    out.append(c)
        return out

    def propose(self, ctx: Ctx) -> Proposal:
        changes, kept = self._changes(ctx)
        follow_up = [f"replicas kept lowered; once data nodes are back: {c.statement().text}"
                     for c in restore_calls(kept)]
        if not changes:
            return Proposal(summary="no setting was changed" + (" (lowered replicas are kept)" if kept else ""),
                            nothing_to_do=True, evidence=follow_up)
        return Proposal(summary=f"restore {len(changes)} setting(s) this run changed",
                        reason="temporary recovery settings must not outlive the recovery",
                        statements=[c.statement() for c in restore_calls(changes)], evidence=follow_up)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return not self._differing(ctx, self._changes(ctx)[0])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        changes, kept = self._changes(ctx)
        todo = self._differing(ctx, changes)
        for call in restore_calls(todo):
            send(ctx, call)
        evidence = [f"{c.target} {c.key}: back to {c.old if c.old is not None else 'the default'}" for c in changes]
        evidence += [f"kept lowered: {c.target} {c.key} {c.old} -> {c.new}; once data nodes are back send: "
                     f"{s.text}" for c in kept for s in [restore_calls([c])[0].statement()]]
        return StepResult(ok=True, summary=f"{len(changes)} setting(s) restored" + (
            f"; {len(kept)} lowered replica count(s) kept so the cluster stays green" if kept else ""), evidence=evidence)



"""The last steps of elasticsearch-reallocate: wait for the expected health, then put back
every setting the run changed."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from drengine.datastores.elasticsearch.calls import DELAY_SETTING, ENABLE_SETTING, health_call, recovery_call
from drengine.datastores.elasticsearch.connector import ElasticAPI
from drengine.datastores.elasticsearch.esview import Health, RecoveryProgress
from drengine.datastores.elasticsearch.ledger import KIND_OF, target
from drengine.datastores.elasticsearch.planning import (
    PrimariesDone,
    PrimaryChoice,
    ReallocationPlan,
    SettingChange,
    SettingChanges,
    Status,
    expected_after,
    restore_calls,
)
from drengine.datastores.elasticsearch.stepkit import Ctx, plan_of, send
from drengine.errors import CommandFailed, ConnectError, ProbeTimeout
from drengine.steps import Action, Effect, Mode, Proposal, StepParams, StepResult, register


class WaitParams(StepParams):
    timeout: float = Field(default=3600.0, gt=0, le=7 * 86400,
                           description="seconds to wait in all for the expected health (a total deadline)")
    stall: float = Field(default=600.0, gt=0, le=86400,
                         description="give up when the recoveries copy nothing more and no copy starts for this long")
    poll: float = Field(default=60.0, gt=0, le=3600,
                        description="seconds Elasticsearch holds each health request (one look at the recoveries each)")
    canary_index: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9._-]{0,200})?$",
                              description="drills: write and read back a document in this index")


@dataclass
class _Watch:
    """How far the recoveries have come, and since when nothing moved."""

    started: float
    moved_at: float
    marker: tuple[int, int, int] | None = None
    looks: int = 0

    def saw(self, now: float, health: Health, progress: RecoveryProgress) -> None:
        # Progress: more active copies, more bytes copied, or a different set of recoveries.
        marker = (health.active_shards, progress.bytes_recovered, progress.count)
        if marker != self.marker:
            self.marker, self.moved_at = marker, now
        self.looks += 1


@register
class WaitForHealth(Action[ElasticAPI, WaitParams]):
    name = "elasticsearch.wait_for_health"
    effect = Effect.READ
    Params = WaitParams
    description = "Wait for green (or yellow when replicas are knowingly left unassigned) while recoveries progress"

    def _expected(self, ctx: Ctx) -> tuple[Status, list[str]]:
        plan = plan_of(ctx)
        planning = ctx.mode is Mode.PLAN  # a plan shows the health a run approving every gate would reach
        return expected_after(plan, planning or ctx.facts.maybe("es_stale_done", PrimariesDone) is not None,
                              planning or ctx.facts.maybe("es_empty_done", PrimariesDone) is not None)

    def propose(self, ctx: Ctx) -> Proposal:
        params = self.params
        expected, _ = self._expected(ctx)
        return Proposal(
            summary=(f"wait up to {params.timeout:g} s for health {expected}, following the recoveries (giving up "
                     f"after {params.stall:g} s without progress)"),
            statements=[health_call(expected, params.poll, settled=True).statement(), recovery_call().statement()])

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
        health, watch, progress = self._wait(ctx, expected)
        evidence = [health.line(), progress.line(),
                    f"{watch.looks} look(s) over {ctx.clock.now() - watch.started:.0f} s"]
        if params.canary_index and not health.timed_out:
            works = ctx.backend.canary(params.canary_index, "drengine-canary")
            evidence.append(f"canary write and read in {params.canary_index}: {'ok' if works else 'FAILED'}")
            if not works:
                return StepResult(ok=False, summary="the canary document written could not be read back", evidence=evidence)
        if health.timed_out:
            failed = self._forced_not_started(ctx)
            if failed:
                return _forced_failed(failed, evidence)
            return self._gave_up(ctx, health, progress, watch, expected, evidence + plan.waiting)
        if health.status == "green":
            return StepResult(ok=True, summary="cluster is green: every shard copy is assigned", evidence=evidence)
        waits = [w for w in plan.waiting if " replica:" in w]
        return StepResult(ok=True, evidence=evidence + waits, summary=(
            f"cluster is {health.status}, as expected: every primary is assigned; {health.unassigned_shards} replica "
            f"copies are knowingly left unassigned ({len(waits)} listed below)"))

    @staticmethod
    def _forced_not_started(ctx: Ctx) -> list[tuple[PrimaryChoice, str]]:
        """The primaries this run forced that are unassigned again (their recovery failed), with
        what Elasticsearch says of the failure."""
        forced = [p for name in ("es_stale_done", "es_empty_done")
                  for done in [ctx.facts.maybe(name, PrimariesDone)] if done is not None for p in done.done]
        if not forced:
            return []
        unassigned = {(s.index, s.shard): s for s in ctx.backend.shards() if s.primary and s.state == "UNASSIGNED"}
        return [(p, unassigned[(p.index, p.shard)].details or "no details") for p in forced
                if (p.index, p.shard) in unassigned]

    def _wait(self, ctx: Ctx, expected: Status) -> tuple[Health, _Watch, RecoveryProgress]:
        """Ask Elasticsearch to hold each health request up to `poll` seconds; between two, look
        at the recoveries (journaled, so the progress shows); stop at the deadline or a stall."""
        params = self.params
        now = ctx.clock.now()
        watch = _Watch(started=now, moved_at=now)
        deadline = now + params.timeout
        while True:
            ctx.check_deadline()
            remaining = deadline - ctx.clock.now()
            # Settled too: a new empty primary still initializing already makes the cluster yellow.
            call = health_call(expected, max(min(params.poll, remaining), 1.0), settled=True)
            health = ctx.backend.health(expected, max(min(params.poll, remaining), 1.0), settled=True)
            ctx.sent(call.statement(), result=health.line())
            progress = ctx.backend.recoveries()
            ctx.sent(recovery_call().statement(), result=progress.line())
            now = ctx.clock.now()
            watch.saw(now, health, progress)
            if not health.timed_out or now >= deadline or now - watch.moved_at >= params.stall:
                return health, watch, progress

    def _gave_up(self, ctx: Ctx, health: Health, progress: RecoveryProgress, watch: _Watch, expected: Status,
                 evidence: list[str]) -> StepResult:
        params = self.params
        if ctx.clock.now() - watch.moved_at >= params.stall:
            why = (f"nothing moved for {params.stall:g} s (no byte copied, no copy started): "
                   f"{health.unassigned_shards} copies still unassigned ({health.delayed_unassigned_shards} delayed)")
        else:
            why = (f"the {params.timeout:g} s deadline passed while recoveries were still progressing "
                   f"({progress.line()})")
        return StepResult(ok=False, evidence=evidence, summary=(
            f"health is {health.status}, expected {expected}: {why}. Recoveries in flight go on by themselves; rerun the "
            f"runbook to see why each copy is unassigned, or rerun with a longer wait (params timeout/stall)"))


def _forced_failed(failed: list[tuple[PrimaryChoice, str]], evidence: list[str]) -> StepResult:
    """A forced primary whose recovery failed. Elasticsearch replaced the shard's in-sync set when
    the forced copy initialized (IndexMetadataUpdater.updateInSyncAllocations, in
    server/src/main/java/org/elasticsearch/cluster/routing/allocation/IndexMetadataUpdater.java:
    `_forced_allocation_` for a stale primary, the empty set for an empty one): no copy is in sync
    any more, so the node with the old in-sync copy coming back does NOT make the shard green."""
    labels = ", ".join(f"{p.label} ({p.kind} copy on {p.node})" for p, _ in failed)
    return StepResult(ok=False, evidence=evidence + [f"{p.label} on {p.node}: {why}" for p, why in failed], summary=(
        f"the forced primary of {labels} did not start: its recovery failed (below). Elasticsearch replaced the "
        f"in-sync set when the forced copy initialized: no copy of the shard is in sync any more, and the node with "
        f"the old in-sync copy coming back does NOT bring the shard back. It stays red until another forced "
        f"allocation: rerun the runbook (it shows the copies left as stale, a returning node's included) and approve "
        f"allocate-stale-primary on another copy (--input stale_copy=index[shard]=node), or restore the index from a "
        f"snapshot"))


RESTORE_ENABLE_INPUT = "restore_enable"


def put_enable_back(ctx: Ctx) -> bool:
    """`--input restore_enable=yes`: put a restrictive allocation setting back although it is what
    kept the copies unassigned (the default keeps the value the run set, as the run's goal)."""
    inputs = ctx.inputs
    if RESTORE_ENABLE_INPUT not in inputs.declared:
        return False
    return (inputs.get(RESTORE_ENABLE_INPUT) or "").strip().lower() in ("yes", "true", "1")


def trade_off(change: SettingChange) -> str:
    """Why putting the allocation setting back re-breaks the cluster, in words."""
    return (f"{change.key} was {change.old!r} before this run: that value is what kept the unassigned copies from "
            f"being allocated. Put back, Elasticsearch stops allocating again: the next copy lost (a node restarting, "
            f"a disk failing) stays unassigned, and the cluster goes yellow or red again")


def split_lifted(changes: list[SettingChange], put_back: bool) -> tuple[list[SettingChange], list[SettingChange]]:
    """(to restore, kept at the value the run set): a restrictive allocation setting the run
    lifted is kept lifted, as the run's goal, unless the operator asked for it back."""
    if put_back:
        return changes, []
    fixed = [c for c in changes if c.key == ENABLE_SETTING and c.new == "all" and c.old not in (None, "all")]
    return [c for c in changes if c not in fixed], fixed


class RestoreParams(StepParams):
    restore_replicas: bool = Field(default=False, description="also raise lowered replica counts again (yellow again "
                                                              "until nodes are added)")


@register
class RestoreSettings(Action[ElasticAPI, RestoreParams]):
    name = "elasticsearch.restore_settings"
    effect = Effect.MUTATE
    Params = RestoreParams
    description = "Put back the settings this run changed (allocation it re-enabled stays enabled, as the goal)"

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

    @staticmethod
    def _keep_fixed(ctx: Ctx, changes: list[SettingChange]) -> tuple[list[SettingChange], list[SettingChange]]:
        return split_lifted(changes, put_enable_back(ctx))

    @staticmethod
    def _kept_words(fixed: list[SettingChange]) -> list[str]:
        return [f"KEPT as the goal: {c.key} stays {c.new!r} ({trade_off(c)}). To put it back anyway (a rolling "
                f"restart under way, say): send {s.text} by hand, or run with --input {RESTORE_ENABLE_INPUT}=yes"
                for c in fixed for s in [restore_calls([c])[0].statement()]]

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

    def _held(self, ctx: Ctx, changes: list[SettingChange]) -> tuple[list[SettingChange], RecoveryProgress | None]:
        """Putting back a restrictive cluster.routing.allocation.enable while copies recover would
        stop Elasticsearch from starting the ones still waiting: held while recoveries run."""
        enable = [c for c in changes if c.key == ENABLE_SETTING]
        if not enable or ctx.mode is Mode.PLAN:
            return [], None
        try:
            progress = ctx.backend.recoveries()
        except (ConnectError, CommandFailed, ProbeTimeout):
            return [], None  # not known: the restore itself will say what it could not do
        return (enable if progress.count else []), progress

    def propose(self, ctx: Ctx) -> Proposal:
        changes, kept = self._changes(ctx)
        changes, fixed = self._keep_fixed(ctx, changes)
        follow_up = [f"replicas kept lowered; once data nodes are back: {c.statement().text}"
                     for c in restore_calls(kept)] + self._kept_words(fixed)
        keep = "; ".join(f"keep {c.key} at {c.new!r} as the goal (was {c.old!r}, the value that kept copies "
                         f"unassigned)" for c in fixed)
        choice = "".join(f". Proceed keeps {c.new!r} as the run's goal; to put {c.old!r} back anyway (a rolling restart "
                         f"under way, say): send {s.text} by hand, or run with --input {RESTORE_ENABLE_INPUT}=yes"
                         for c in fixed for s in [restore_calls([c])[0].statement()])
        if not changes and fixed:
            return Proposal(summary=keep, reason=trade_off(fixed[0]) + choice, evidence=follow_up)
        if not changes:
            return Proposal(summary="no setting was changed" + (" (lowered replicas are kept)" if kept else ""),
                            nothing_to_do=True, evidence=follow_up)
        risks = [f"{c.key} goes back to {c.old!r} (--input {RESTORE_ENABLE_INPUT}=yes): {trade_off(c)}"
                 for c in changes if c.key == ENABLE_SETTING and c.old not in (None, "all")]
        held, progress = self._held(ctx, changes)
        now = [c for c in changes if c not in held]
        follow_up += [f"held while recoveries run ({progress.line() if progress else ''}): {s.text}"
                      for s in (c.statement() for c in restore_calls(held))]
        if not now:
            return Proposal(summary=f"restore nothing yet: {ENABLE_SETTING} stays {held[0].new!r} while recoveries run",
                            nothing_to_do=True, evidence=follow_up)
        return Proposal(summary=f"restore {len(now)} setting(s) this run changed" + (f"; {keep}" if keep else ""),
                        reason="temporary recovery settings must not outlive the recovery" + choice,
                        statements=[c.statement() for c in restore_calls(now)], evidence=follow_up, risks=risks)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return not self._differing(ctx, self._keep_fixed(ctx, self._changes(ctx)[0])[0])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        changes, kept = self._changes(ctx)
        changes, fixed = self._keep_fixed(ctx, changes)
        try:
            todo = self._differing(ctx, changes)
        except (ConnectError, CommandFailed, ProbeTimeout) as exc:
            return self._not_restored(changes, exc)
        held, progress = self._held(ctx, todo)
        try:
            for call in restore_calls([c for c in todo if c not in held]):
                send(ctx, call)
        except (ConnectError, CommandFailed, ProbeTimeout) as exc:
            return self._not_restored([c for c in todo if c not in held], exc)
        for c in changes:
            if c not in held:
                ctx.undone(KIND_OF[c.key], target(c))
        evidence = [f"{c.target} {c.key}: back to {c.old if c.old is not None else 'the default'}"
                    for c in changes if c not in held]
        evidence += [f"NOT restored while recoveries run: {c.key} stays {c.new!r} ({progress.line() if progress else ''}); "
                     f"once GET /_cat/recovery?active_only=true lists none, send: {s.text}"
                     for c in held for s in [restore_calls([c])[0].statement()]]
        evidence += [f"kept lowered: {c.target} {c.key} {c.old} -> {c.new}; once data nodes are back send: "
                     f"{s.text}" for c in kept for s in [restore_calls([c])[0].statement()]]
        restored = len(changes) - len(held)
        summary = f"{restored} setting(s) restored"
        if held:
            summary += (f"; {ENABLE_SETTING} left at {held[0].new!r}: {progress.count if progress else 0} recoveries are "
                        f"still running (the request to send once they are done is below)")
        if kept:
            summary += f"; {len(kept)} lowered replica count(s) kept so the cluster stays green"
        if fixed:
            summary = "nothing put back" if summary == "0 setting(s) restored" else summary
            summary += "".join(f"; {c.key} kept at {c.new!r} as the goal (was {c.old!r}, the value that kept copies "
                               f"unassigned)" for c in fixed)
            evidence += self._kept_words(fixed)
        return StepResult(ok=True, summary=summary, evidence=evidence)

    @staticmethod
    def _not_restored(changes: list[SettingChange], exc: Exception) -> StepResult:
        """The cluster did not take the restore (no master any more, say): name every setting
        that may not be back, and the requests that put them back."""
        named = "; ".join(f"{c.key} on {c.target} (was {c.old if c.old is not None else 'the default'}, set to "
                          f"{c.new!r})" for c in changes)
        return StepResult(ok=False, evidence=[f"send once the cluster answers again: {c.statement().text}"
                                              for c in restore_calls(changes)], summary=(
            f"could not put back {len(changes)} setting(s) this run changed: {named}; the cluster refused ({exc}). "
            f"Send the requests below once it answers again (a master elected), or rerun the runbook"))



"""The mutating steps of elasticsearch-reallocate, least risky first: shorten the delayed
allocation, re-enable allocation, retry failed allocations, allocate replicas, lower
replica counts, and (dangerous gates) allocate a stale or an empty primary."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import ClassVar, Literal, cast

from drengine.datastores.elasticsearch.calls import (
    DELAY_SETTING,
    ENABLE_SETTING,
    REPLICAS_SETTING,
    put_cluster_settings_call,
    put_index_settings_calls,
    reroute_call,
)
from drengine.datastores.elasticsearch.connector import ElasticAPI
from drengine.datastores.elasticsearch.ledger import declare, setting_changed
from drengine.datastores.elasticsearch.planning import (
    PrimariesDone,
    PrimaryChoice,
    ReplicaAssignment,
    SettingChange,
    SettingChanges,
    is_zero_delay,
    primary_command,
)
from drengine.datastores.elasticsearch.stepkit import Ctx, nothing_to_do, plan_of, send, unassigned_now
from drengine.errors import StepFailed
from drengine.steps import Action, Effect, GateLevel, NoParams, Proposal, StepResult, register


class _GivesBackItsChanges(Action[ElasticAPI, NoParams]):
    """A step whose run records what it changed, from what (for the restore and the goal).
    Found to have taken effect when a killed run resumes, it runs again: it sends nothing
    already in place and gives that record back (found by the explorer: killed right after
    enabling allocation, resumed, DONE with the setting left changed)."""

    def result_after_interruption(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        result = self.run(ctx, proposal)
        result.summary += " (had taken effect before the interruption)"
        return result


@register
class ShortenDelay(_GivesBackItsChanges):
    name = "elasticsearch.shorten_delay"
    effect = Effect.MUTATE
    description = "Stop waiting for nodes declared gone: delayed_timeout 0 on the affected indices"

    def propose(self, ctx: Ctx) -> Proposal:
        plan = plan_of(ctx)
        if not plan.shorten_delay:
            why = "no delayed shard waits for a node declared gone" if plan.departed else "no delayed shard"
            return nothing_to_do(why)
        indices = [c.target for c in plan.shorten_delay]
        return Proposal(
            summary=f"set {DELAY_SETTING} to 0 on {len(indices)} index(es) so their replicas are reallocated now",
            reason=((f"{', '.join(plan.absent_members) or 'the departed node'} is declared gone for good" if plan.gone_confirmed
                     else "the node these replicas wait for is back in the cluster already")
                    + ": waiting only prolongs the time with missing replicas. The old values are restored at the end"),
            statements=[c.statement() for c in put_index_settings_calls(indices, {DELAY_SETTING: "0"})],
            risks=["if the node does come back, its copies are discarded and the replicas are rebuilt over the network"
                   if plan.gone_confirmed else
                   "the replicas are rebuilt over the network: the copies the node held when it left are not reused"],
        )

    def _still_delayed(self, ctx: Ctx) -> list[str]:
        planned = {c.target for c in plan_of(ctx).shorten_delay}
        return [i.name for i in ctx.backend.index_settings() if i.name in planned and not is_zero_delay(i.delayed_timeout)]

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return not self._still_delayed(ctx)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        todo = self._still_delayed(ctx)
        for call in put_index_settings_calls(todo, {DELAY_SETTING: "0"}):
            send(ctx, call)
        planned = plan_of(ctx).shorten_delay
        for change in declare(planned):
            ctx.changed(change)
        # The old values come from the plan, not from a fresh read: a resumed run must not take
        # its own "0" for the value to restore.
        return StepResult(ok=True, summary=f"delayed allocation set to 0 on {len(planned)} index(es) ({len(todo)} sent now)",
                          facts={"es_changed_delay": SettingChanges(changes=planned)})


@register
class EnableAllocation(_GivesBackItsChanges):
    name = "elasticsearch.enable_allocation"
    effect = Effect.MUTATE
    description = "Re-enable shard allocation left disabled (kept enabled at the end: the old value caused this)"

    def propose(self, ctx: Ctx) -> Proposal:
        change = plan_of(ctx).enable
        if change is None:
            return nothing_to_do(f"{ENABLE_SETTING} already allows all allocations")
        scope = cast(Literal["persistent", "transient"], change.scope)
        return Proposal(
            summary=f"set {ENABLE_SETTING} from {change.old!r} to 'all' ({scope})",
            reason=f"allocation is limited to {change.old!r} (left by a maintenance?): unassigned copies cannot be placed",
            statements=[put_cluster_settings_call(scope, {ENABLE_SETTING: "all"}).statement()],
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return ctx.backend.allocation_enable().value == "all"

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        change = plan_of(ctx).enable
        assert change is not None
        scope = cast(Literal["persistent", "transient"], change.scope)
        if ctx.backend.allocation_enable().value != "all":
            send(ctx, put_cluster_settings_call(scope, {ENABLE_SETTING: "all"}))
        ctx.changed(setting_changed(change))
        return StepResult(ok=True, summary=f"allocation enabled (was {change.old!r})",
                          facts={"es_changed_enable": SettingChanges(changes=[change])})


@register
class RetryFailed(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.retry_failed"
    effect = Effect.MUTATE
    description = "Retry allocations that failed too many times"

    def propose(self, ctx: Ctx) -> Proposal:
        labels = plan_of(ctx).retry_failed
        if not labels:
            return nothing_to_do("no shard hit the allocation retry limit")
        return Proposal(summary=f"retry the failed allocations of {', '.join(labels[:10])}"
                        + (f" and {len(labels) - 10} more" if len(labels) > 10 else ""),
                        reason="after index.allocation.max_retries failures Elasticsearch stops trying until told to retry",
                        statements=[reroute_call(retry_failed=True).statement()])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        # Retrying is harmless if already done: no check needed before sending it again.
        send(ctx, reroute_call(retry_failed=True))
        return StepResult(ok=True, summary="failed allocations retried")


@register
class AllocateReplicas(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.allocate_replicas"
    effect = Effect.MUTATE
    description = "Allocate replicas the deciders allow but the allocator has not placed"

    def _todo(self, ctx: Ctx) -> list[ReplicaAssignment]:
        planned = plan_of(ctx).allocate_replicas
        if not planned:
            return []
        now = unassigned_now(ctx)
        return [r for r in planned if (r.index, r.shard, False) in now]

    def propose(self, ctx: Ctx) -> Proposal:
        todo = self._todo(ctx)
        if not todo:
            return nothing_to_do("no replica needs allocating by hand")
        commands = [{"allocate_replica": {"index": r.index, "shard": r.shard, "node": r.node}} for r in todo]
        return Proposal(summary=f"allocate {len(todo)} replica(s)", reason="the deciders allow these nodes",
                        statements=[reroute_call(commands).statement()])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        todo = self._todo(ctx)
        if todo:
            send(ctx, reroute_call([{"allocate_replica": {"index": r.index, "shard": r.shard, "node": r.node}}
                                     for r in todo]))
        return StepResult(ok=True, summary=f"{len(todo)} replica(s) allocated")


@register
class LowerReplicas(_GivesBackItsChanges):
    name = "elasticsearch.lower_replicas"
    effect = Effect.MUTATE
    description = "Lower number_of_replicas where the remaining data nodes cannot hold every copy"

    def propose(self, ctx: Ctx) -> Proposal:
        changes = plan_of(ctx).lower_replicas
        if not changes:
            return nothing_to_do("the remaining data nodes can hold every replica")
        calls = [call for (new, idx) in _by_new(changes) for call in put_index_settings_calls(idx, {REPLICAS_SETTING: int(new)})]
        return Proposal(
            summary=f"lower {REPLICAS_SETTING} on {len(changes)} index(es) "
                    + ", ".join(f"{c.target} {c.old}->{c.new}" for c in changes[:10]),
            reason="a replica can never sit on the node that holds its primary or another copy: with fewer data "
                   "nodes than copies, the cluster stays yellow until replicas are lowered or nodes added",
            statements=[c.statement() for c in calls],
            risks=["fewer copies: losing one more node may lose data of these indices until replicas are raised again"],
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        wanted = {c.target: int(c.new or 0) for c in plan_of(ctx).lower_replicas}
        return all(i.number_of_replicas <= wanted[i.name] for i in ctx.backend.index_settings() if i.name in wanted)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        changes = plan_of(ctx).lower_replicas
        current = {i.name: i.number_of_replicas for i in ctx.backend.index_settings()}
        todo = [c for c in changes if c.target in current and current[c.target] > int(c.new or 0)]
        for new, indices in _by_new(todo):
            for call in put_index_settings_calls(indices, {REPLICAS_SETTING: int(new)}):
                send(ctx, call)
        for declared in declare(changes):
            ctx.changed(declared)
        return StepResult(ok=True, summary=f"replicas lowered on {len(changes)} index(es)",
                          facts={"es_changed_replicas": SettingChanges(changes=changes)})


def _by_new(changes: Sequence[SettingChange]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for c in changes:
        groups[c.new or "0"].append(c.target)
    return sorted(groups.items())


STALE_COPY_INPUT = "stale_copy"


def parse_stale_choice(text: str | None, undecided: Sequence[PrimaryChoice]) -> dict[str, str]:
    """The operator's `--input stale_copy=...`: `index[shard]=node` pairs separated by commas, or
    a bare node name when a single shard waits for the choice. Label -> node."""
    if not text:
        return {}
    chosen: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        label, sep, node = part.partition("=")
        if not sep:
            if len(undecided) != 1:
                raise StepFailed(f"--input {STALE_COPY_INPUT}={text!r}: several shards wait for a choice "
                                 f"({', '.join(c.label for c in undecided)}); give index[shard]=node for each")
            label, node = undecided[0].label, part
        chosen[label.strip()] = node.strip()
    return chosen


class _AllocatePrimary(_GivesBackItsChanges):
    kind: ClassVar[Literal["stale", "empty"]]
    effect = Effect.MUTATE
    min_gate = GateLevel.DANGEROUS

    def _planned(self, ctx: Ctx) -> list[PrimaryChoice]:
        plan = plan_of(ctx)
        return plan.stale_primaries if self.kind == "stale" else plan.empty_primaries

    def _choices(self, ctx: Ctx) -> list[PrimaryChoice]:
        """The planned choices, with the operator's choice among several stale copies filled in."""
        return self._planned(ctx)

    def _todo(self, ctx: Ctx) -> list[PrimaryChoice]:
        planned = self._choices(ctx)
        if not planned:
            return []
        # Looked at again right before asking: a node that came back makes this step unnecessary.
        now = unassigned_now(ctx)
        return [p for p in planned if (p.index, p.shard, True) in now]

    def propose(self, ctx: Ctx) -> Proposal:
        todo = self._todo(ctx)
        article = "a stale" if self.kind == "stale" else "an empty"
        if not todo:
            return nothing_to_do(f"no red shard needs {article} primary")
        reason = (f"no in-sync copy of {', '.join(p.label for p in todo)} is left in the cluster. Waiting for the node "
                  f"that held it ({', '.join(plan_of(ctx).absent_members) or 'unknown'}) loses nothing if it can come back; "
                  f"restoring from a snapshot is the other way")
        evidence = []
        for p in todo:
            if p.kind != "stale":
                continue
            how = ("the only stale copy Elasticsearch shows" if p.chosen_by == "only copy" else
                   f"chosen by the operator (--input {STALE_COPY_INPUT}) among {len(p.candidates)} stale copies")
            evidence.append(f"{p.label} on {p.node}: {how}")
            evidence += [f"  candidate: {c}" for c in p.candidates]
            evidence += [f"  not a candidate (unreadable): {c}" for c in p.unreadable]
        if self.kind == "stale":
            reason += ("; Elasticsearch shows each stale copy's allocation id only: it does not say which one is the "
                       "most recent")
        return Proposal(
            summary=f"allocate {article} primary for " + ", ".join(f"{p.label} on {p.node}" for p in todo),
            reason=reason,
            statements=[reroute_call([primary_command(p)]).statement() for p in todo],
            gate=self.min_gate or GateLevel.DANGEROUS,
            risks=[p.lost.replace("the chosen node", p.node) for p in todo],
            evidence=evidence,
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return not self._todo(ctx)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        todo = self._todo(ctx)
        for choice in todo:
            send(ctx, reroute_call([primary_command(choice)]))
        planned = self._choices(ctx)
        return StepResult(ok=True, summary=f"{self.kind} primary allocated for " + ", ".join(p.label for p in planned),
                          facts={f"es_{self.kind}_done": PrimariesDone(done=planned)},
                          evidence=[f"LOST: {p.lost.replace('the chosen node', p.node)}" for p in planned])


@register
class AllocateStalePrimary(_AllocatePrimary):
    name = "elasticsearch.allocate_stale_primary"
    kind: ClassVar[Literal["stale", "empty"]] = "stale"
    inputs = (STALE_COPY_INPUT,)
    description = ("DATA LOSS: promote a stale copy of a red shard to primary (the only one, or the one the operator "
                   "chose among several)")

    def _choices(self, ctx: Ctx) -> list[PrimaryChoice]:
        planned = self._planned(ctx)
        undecided = [p for p in planned if not p.node]
        if not undecided:
            return planned
        chosen = parse_stale_choice(ctx.inputs.get(STALE_COPY_INPUT), undecided)
        resolved = []
        for p in planned:
            if p.node:
                resolved.append(p)
                continue
            node = chosen.get(p.label)
            if node is None:
                raise StepFailed(
                    f"{p.label}: Elasticsearch does not say which of its {len(p.candidates)} stale copies is the most "
                    f"recent (it shows each copy's allocation id and in_sync: false, nothing more): "
                    f"{'; '.join(p.candidates)}. Choose one, knowing what its node went through (which node left "
                    f"last, its logs), and rerun with --input {STALE_COPY_INPUT}={p.label}=<node>; the choice is then "
                    f"shown at this step's dangerous gate. Or bring back the node with the in-sync copy, or restore "
                    f"the index from a snapshot")
            if node not in p.candidate_nodes:
                raise StepFailed(f"--input {STALE_COPY_INPUT}: {node!r} holds no stale copy of {p.label}; the "
                                 f"candidates are {', '.join(p.candidate_nodes)}")
            resolved.append(p.model_copy(update={"node": node, "chosen_by": "operator"}))
        return resolved


@register
class AllocateEmptyPrimary(_AllocatePrimary):
    name = "elasticsearch.allocate_empty_primary"
    kind: ClassVar[Literal["stale", "empty"]] = "empty"
    description = "DATA LOSS: give a red shard with no copy left an empty primary"



"""The goals of the Ceph runbooks, checked on a fresh observation before a run says DONE:
degrade leaves every PG active (client I/O is served), restore leaves none of drengine's
changes in place, and mon-quorum leaves a monitor quorum that answers."""

from __future__ import annotations

from drengine.datastores.ceph.backend import CephBackend
from drengine.datastores.ceph.explain import explain_health
from drengine.datastores.ceph.facts import DegradeRecord
from drengine.errors import ConnectError
from drengine.steps import Action, Effect, NoParams, Proposal, RunContext, StepResult, register

Ctx = RunContext[CephBackend]


@register
class ServingGoal(Action[CephBackend, NoParams]):
    name = "ceph.goal_serving"
    effect = Effect.READ
    description = "Goal: every PG active, so client I/O is served (with reduced redundancy if need be)"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="observe the PGs: every one active")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        snap = ctx.backend.observe()
        inactive = snap.inactive_pgs
        if inactive:
            pools = ", ".join(p.name for p in snap.pools_blocked())
            left = [f"{len(inactive)} PG(s) inactive ({', '.join(sorted({s for pg in inactive for s in pg.states}))}); "
                    f"I/O to {pools} blocks: see `ceph pg ls` and run ceph-degrade again"]
            return StepResult(ok=False, summary=left[0], evidence=[*explain_health(snap), *(f"LEFT: {x}" for x in left)])
        return StepResult(ok=True, summary=f"all {len(snap.pgs)} PGs active: client I/O is served",
                          evidence=explain_health(snap))


@register
class RestoredGoal(Action[CephBackend, NoParams]):
    name = "ceph.goal_restored"
    effect = Effect.READ
    description = "Goal: none of the degrade runs' flags or min_size changes is left in place"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="observe flags and pools: what the degrade runs changed is back")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        record = ctx.facts.maybe("degrade_record", DegradeRecord) or DegradeRecord()
        snap = ctx.backend.observe()
        left = [f"flag {f} is still set; `ceph osd unset {f}`" for f in record.flags if f in snap.flags]
        for change in record.min_size:
            pool = snap.pool(change.pool)
            if pool is not None and pool.min_size != change.old:
                left.append(f"pool {change.pool} has min_size {pool.min_size}, was {change.old} before the degrade run")
        if left:
            return StepResult(ok=False, summary="; ".join(left), evidence=[*explain_health(snap), *(f"LEFT: {x}" for x in left)])
        what = f"{len(record.flags)} flag(s) and {len(record.min_size)} min_size change(s)"
        return StepResult(ok=True, summary=f"{what} of the degrade run(s) are back; health {snap.status.health}",
                          evidence=explain_health(snap))


@register
class QuorumGoal(Action[CephBackend, NoParams]):
    name = "ceph.goal_quorum"
    effect = Effect.READ
    description = "Goal: the monitors form a quorum that answers"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="ask the monitors for status: a quorum answers")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        try:
            snap = ctx.backend.observe()
        except ConnectError as exc:
            left = f"the monitors do not answer ({exc}); run ceph-mon-quorum"
            return StepResult(ok=False, summary=left, evidence=[f"LEFT: {left}"])
        quorum = snap.status.quorum_names
        if not quorum:
            return StepResult(ok=False, summary="the monitors answer without a quorum", evidence=["LEFT: run ceph-mon-quorum"])
        return StepResult(ok=True, summary=f"monitors {', '.join(quorum)} form a quorum and answer", evidence=explain_health(snap))

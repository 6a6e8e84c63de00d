"""ceph-restore: put back the redundancy ceph-degrade lowered, once the OSDs are back.

Read what the degrade run(s) changed from their journals, wait (bounded) for every PG to be
active+clean, restore each pool's recorded min_size, unset only the OSD flags drengine set,
and verify HEALTH_OK or explain what remains.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from drengine.datastores.ceph.actions.common import Ctx, flag_cmd, look_until, min_size_cmd, mon_statement, send, snapshot
from drengine.datastores.ceph.backend import CephBackend
from drengine.datastores.ceph.decisions import decide_restore_min_size, decide_unset
from drengine.datastores.ceph.degrade_record import DegradeRun, find_degrade_runs, merge_degrade_runs, read_degrade_run
from drengine.datastores.ceph.explain import explain_health, health_summary, osd_names
from drengine.datastores.ceph.facts import DegradeRecord, MinSizeChanges
from drengine.datastores.ceph.ledger import FLAG, MIN_SIZE, pool_target
from drengine.errors import JournalCorrupt
from drengine.steps import Action, Effect, NoParams, Proposal, Refusal, StepParams, StepResult, register

# The runbook inputs ceph.find_degrade_record reads (declared under `inputs:` in ceph-restore).
DEGRADE_RUN_INPUT = "degrade_run"
RUNS_DIR_INPUT = "runs_dir"


@register
class FindDegradeRecord(Action[CephBackend, NoParams]):
    name = "ceph.find_degrade_record"
    effect = Effect.CHECK
    inputs = (DEGRADE_RUN_INPUT, RUNS_DIR_INPUT)
    description = "Read back from the ceph-degrade journal(s) which flags and min_size drengine changed"

    @staticmethod
    def _where(ctx: Ctx) -> tuple[Path | None, Path]:
        single = ctx.inputs.get(DEGRADE_RUN_INPUT)
        runs = ctx.inputs.get(RUNS_DIR_INPUT) or "runs"
        return (Path(single) if single else None), Path(runs)

    def propose(self, ctx: Ctx) -> Proposal:
        single, runs = self._where(ctx)
        where = f"the run {single}" if single else f"unrestored ceph-degrade runs of {ctx.cluster.name} under {runs}/"
        return Proposal(summary=f"read what ceph-degrade changed from {where}")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        single, runs_dir = self._where(ctx)
        snap = snapshot(ctx)
        try:
            if single is not None:
                found = self._named_run(single, ctx.cluster.name)
                if isinstance(found, StepResult):
                    return found
                runs = [found]
            else:
                runs = find_degrade_runs(runs_dir, ctx.cluster.name) if runs_dir.is_dir() else []
        except JournalCorrupt as exc:
            return StepResult(ok=False, summary=f"a degrade journal failed verification: {exc}", refusal=Refusal(
                observed=str(exc),
                expected="an intact, hash-chained journal of the ceph-degrade run",
                why="drengine restores only what its journal proves it changed; an edited journal could make it unset "
                    "flags or change min_size that someone else set",
                next_steps=f"rerun with --input {DEGRADE_RUN_INPUT}=RUN_DIR naming an intact degrade run, or restore by "
                           f"hand from the journal; or override to go on with nothing to restore (only waiting for "
                           f"recovery and checking health)",
                risk_if_overridden="flags and min_size drengine lowered stay as they are until restored by hand",
            ), facts={"degrade_record": DegradeRecord()})
        if not runs:
            return self._nothing(f"no unrestored ceph-degrade run of {ctx.cluster.name} under {runs_dir}/",
                                 f"the journal of the ceph-degrade run (--input {DEGRADE_RUN_INPUT}=RUN_DIR, or "
                                 f"--input {RUNS_DIR_INPUT}=DIR where the runs are kept)")
        record = merge_degrade_runs(runs, snap)
        evidence = [f"degrade run {r.run_dir} ({r.finished}): flags set {', '.join(r.flags) or 'none'}; min_size "
                    + (", ".join(f"{c.pool} {c.old} -> {c.new}" for c in r.min_size) or "unchanged") for r in runs]
        evidence += record.notes
        summary = (f"from {len(runs)} degrade run(s): flags drengine set: {', '.join(record.flags) or 'none'}; "
                   f"min_size to restore: " + (", ".join(f"{c.pool} -> {c.old}" for c in record.min_size) or "none"))
        return StepResult(ok=True, summary=summary, facts={"degrade_record": record}, evidence=evidence)

    def _named_run(self, given: Path, cluster: str) -> DegradeRun | StepResult:
        """The degrade run the operator named (its directory or its journal), or why it is not one."""
        run_dir = given.parent if given.name == "journal.jsonl" else given
        if not (run_dir / "journal.jsonl").is_file():
            return self._nothing(f"{run_dir} holds no journal.jsonl",
                                 f"the directory of a ceph-degrade run (--input {DEGRADE_RUN_INPUT}=RUN_DIR)")
        found = read_degrade_run(run_dir, cluster)
        if found is None:
            return self._nothing(f"{run_dir} is not a ceph-degrade run of cluster {cluster}",
                                 f"the directory of a ceph-degrade run on {cluster}")
        return found

    @staticmethod
    def _nothing(observed: str, expected: str) -> StepResult:
        return StepResult(ok=False, summary=f"no record of what ceph-degrade changed: {observed}", refusal=Refusal(
            observed=observed,
            expected=expected,
            why="without it drengine cannot tell the flags and min_size it changed from those an operator set on purpose",
            next_steps=f"rerun with --input {DEGRADE_RUN_INPUT}=RUN_DIR naming the degrade run (or --input "
                       f"{RUNS_DIR_INPUT}=DIR where runs are kept); or override to go on with nothing to restore "
                       f"(wait for recovery, check health)",
            risk_if_overridden="flags and min_size lowered by an earlier degrade stay as they are until restored by hand",
        ), facts={"degrade_record": DegradeRecord()})


class WaitParams(StepParams):
    recovery_timeout: float = Field(default=120.0, gt=0, le=86400, description="seconds to wait for every PG active+clean")
    poll: float = Field(default=1.0, gt=0, le=60)


@register
class WaitForRecovery(Action[CephBackend, WaitParams]):
    name = "ceph.wait_for_recovery"
    effect = Effect.READ
    Params = WaitParams
    description = "Wait, bounded, until the OSDs are back and every PG is active+clean"

    def propose(self, ctx: Ctx) -> Proposal:
        p = self.params
        return Proposal(summary=f"wait up to {p.recovery_timeout:g} s for every OSD up and every PG active+clean",
                        statements=[mon_statement(ctx, {"prefix": "pg ls"})])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        p = self.params
        started = ctx.clock.now()
        snap = look_until(ctx, lambda s: s.all_active_clean and not s.inactive_pgs, p.recovery_timeout, p.poll)
        if snap.all_active_clean and not snap.inactive_pgs:
            waited = ctx.clock.now() - started
            return StepResult(ok=True, summary=f"every PG is active+clean after {waited:.1f} s", evidence=explain_health(snap))
        unclean = [pg for pg in snap.pgs if not pg.clean]
        down = snap.down_osds
        advice = (f"{osd_names(o.id for o in down)} still down: start them again (or replace them), then rerun ceph-restore"
                  if down else "the OSDs are up but recovery has not finished: wait and rerun, or raise recovery_timeout "
                  "(check norecover/nobackfill flags)")
        return StepResult(
            ok=False,
            summary=(f"after {p.recovery_timeout:g} s, {len(unclean)} of {len(snap.pgs)} PGs are not active+clean "
                     f"({', '.join(sorted({pg.state for pg in unclean}))}); expected every PG active+clean before putting "
                     f"min_size back. {advice}"),
            evidence=explain_health(snap),
        )


@register
class RestoreMinSize(Action[CephBackend, NoParams]):
    name = "ceph.restore_min_size"
    effect = Effect.MUTATE
    description = "Put back each pool's min_size as it was before ceph-degrade"

    def propose(self, ctx: Ctx) -> Proposal:
        d = decide_restore_min_size(ctx.facts.get("degrade_record", DegradeRecord), snapshot(ctx))
        return Proposal(summary=("restore min_size: " + ", ".join(f"{c.pool} {c.old} -> {c.new}" for c in d.changes))
                        if d.changes else f"no min_size to restore: {d.reason}",
                        reason=d.reason, statements=[mon_statement(ctx, min_size_cmd(c.pool, c.new)) for c in d.changes],
                        evidence=d.held, nothing_to_do=not d.changes and not d.held)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        d = decide_restore_min_size(ctx.facts.get("degrade_record", DegradeRecord), snapshot(ctx))
        for c in d.changes:
            send(ctx, min_size_cmd(c.pool, c.new))
            ctx.undone(MIN_SIZE, pool_target(c.pool))
        if d.held:
            return StepResult(ok=False, summary="min_size not restored everywhere: " + " | ".join(d.held), evidence=d.held)
        return StepResult(ok=True, summary="restored min_size: " + (", ".join(f"{c.pool} {c.new}" for c in d.changes) or "none"),
                          facts={"min_size_restored": MinSizeChanges(changes=d.changes)})


@register
class UnsetFlags(Action[CephBackend, NoParams]):
    name = "ceph.unset_flags"
    effect = Effect.MUTATE
    description = "Unset the OSD flags drengine set, and only those"

    def propose(self, ctx: Ctx) -> Proposal:
        ours, theirs = decide_unset(ctx.facts.get("degrade_record", DegradeRecord), snapshot(ctx))
        reason = (f"ceph-degrade set {', '.join(ours)}" if ours else "no flag drengine set is still set")
        if theirs:
            reason += f"; left alone (not set by drengine): {', '.join(theirs)}"
        return Proposal(summary=f"unset {', '.join(ours)}" if ours else f"no OSD flag to unset: {reason}", reason=reason,
                        statements=[mon_statement(ctx, flag_cmd("unset", f)) for f in ours], nothing_to_do=not ours)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        ours, theirs = decide_unset(ctx.facts.get("degrade_record", DegradeRecord), snapshot(ctx))
        for flag in ours:
            send(ctx, flag_cmd("unset", flag))
            ctx.undone(FLAG, flag)
        summary = f"unset {', '.join(ours) or 'nothing'}"
        if theirs:
            summary += f"; left alone (not set by drengine): {', '.join(theirs)}"
        return StepResult(ok=True, summary=summary)


class HealthParams(StepParams):
    settle_timeout: float = Field(default=20.0, ge=0, le=3600, description="seconds to let health catch up with the PG states")
    poll: float = Field(default=1.0, gt=0, le=60)


@register
class VerifyHealth(Action[CephBackend, HealthParams]):
    name = "ceph.verify_health"
    effect = Effect.READ
    Params = HealthParams
    outcomes = ("not-ok",)
    description = "Verify HEALTH_OK, or explain what remains"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="check that health is HEALTH_OK", statements=[mon_statement(ctx, {"prefix": "status"})])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        p = self.params
        # `status` lags `pg ls` by a few seconds after recovery: give it a bounded while.
        snap = look_until(ctx, lambda s: s.status.health == "HEALTH_OK", p.settle_timeout, p.poll)
        if snap.status.health == "HEALTH_OK":
            return StepResult(ok=True, summary="HEALTH_OK: " + health_summary(snap), evidence=explain_health(snap))
        checks = "; ".join(f"{c.code}: {c.summary}" for c in snap.status.checks) or "no check listed"
        return StepResult(ok=False, outcome="not-ok",
                          summary=f"health is {snap.status.health}, expected HEALTH_OK; what remains: {checks}",
                          evidence=explain_health(snap))


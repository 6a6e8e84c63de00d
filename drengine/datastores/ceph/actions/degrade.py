"""ceph-degrade: keep serving client I/O with reduced redundancy while OSDs are down.

Look (health, OSDs, every PG and what it waits for), set noout/norebalance, lower min_size on
exactly the pools whose PGs are inactive for want of copies, mark OSDs declared gone out
(and lost when PGs or unfound objects wait for them), give up unfound objects no OSD that is
up holds, and prove I/O with a test object. Every change is recorded as a fact so that
ceph-restore can put back exactly what this runbook changed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from drengine.clock import Deadline
from drengine.datastores.ceph.actions.common import (
    Ctx,
    flag_cmd,
    lost_cmd,
    lost_osds,
    min_size_cmd,
    mon_statement,
    out_cmd,
    pg_statement,
    send,
    settled_snapshot,
    snapshot,
    unfound_cmd,
    unfound_sources,
)
from drengine.datastores.ceph.backend import CephBackend
from drengine.datastores.ceph.connector import CephSnapshot
from drengine.datastores.ceph.decisions import (
    FlagDecision,
    LostDecision,
    UnfoundDecision,
    decide_flags,
    decide_lost,
    decide_min_size,
    decide_out,
    decide_unfound,
    gone_osd_ids,
    io_check_pools,
)
from drengine.datastores.ceph.degrade_record import was_note
from drengine.datastores.ceph.explain import explain_health, health_summary, osd_names, pg_list
from drengine.datastores.ceph.facts import (
    FlagsSet,
    IoChecked,
    MinSizeChanges,
    Observation,
    OsdsMarked,
    UnfoundGivenUp,
)
from drengine.datastores.ceph.ledger import flag_set, min_size_lowered
from drengine.errors import ConnectError, StepFailed
from drengine.steps import (
    Action,
    Effect,
    GateLevel,
    NoParams,
    Proposal,
    Statement,
    StepParams,
    StepResult,
    register,
)

DEFAULT_FLAGS = ("noout", "norebalance")
IO_CHECK_OBJECT = "drengine-io-check"


@register
class ExplainHealth(Action[CephBackend, NoParams]):
    name = "ceph.explain_health"
    effect = Effect.READ
    description = "Look at the cluster: health checks, OSDs down, which PGs are inactive and what they wait for"

    def propose(self, ctx: Ctx) -> Proposal:
        stmts = [mon_statement(ctx, {"prefix": p}) for p in ("status", "mon dump", "osd dump", "osd tree", "pg ls")]
        return Proposal(summary="observe health, monitors, OSDs, pools and every PG", statements=stmts)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        try:
            snap = settled_snapshot(ctx)
        except ConnectError as exc:
            ctx.backend.reconnect()
            raise StepFailed(f"{exc}. Nothing else can be done while the monitors have no quorum; when a majority of "
                             f"them is gone for good, the runbook ceph-mon-quorum restores a quorum from the survivors "
                             f"(drengine run ceph-mon-quorum -c {ctx.cluster.name} ...)") from None
        return StepResult(ok=True, summary=health_summary(snap), facts={"observed": Observation(snapshot=snap)},
                          evidence=explain_health(snap))


class FlagParams(StepParams):
    flags: list[str] = Field(default_factory=lambda: list(DEFAULT_FLAGS))


@register
class SetFlags(Action[CephBackend, FlagParams]):
    name = "ceph.set_flags"
    effect = Effect.MUTATE
    Params = FlagParams
    description = "Set noout and norebalance so nothing is marked out or shuffled while OSDs are fixed"

    def _decide(self, ctx: Ctx) -> FlagDecision:
        return decide_flags(snapshot(ctx), self.params.flags)

    def propose(self, ctx: Ctx) -> Proposal:
        d = self._decide(ctx)
        return Proposal(
            summary=f"set {', '.join(d.to_set)}" if d.to_set else f"no OSD flag to set: {d.reason}",
            reason=d.reason,
            statements=[mon_statement(ctx, flag_cmd("set", f)) for f in d.to_set],
            nothing_to_do=not d.to_set,
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        # Never skip: run() sets only what is missing and records what it set.
        return False

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        d = self._decide(ctx)
        for flag in d.to_set:
            # In the ledger before it is sent: a run killed right after sending it still names it.
            ctx.changed(flag_set(flag))
            send(ctx, flag_cmd("set", flag))
        after = snapshot(ctx)
        missing = [f for f in d.to_set if f not in after.flags]
        if missing:
            raise StepFailed(f"sent `osd set` for {', '.join(missing)} but the OSD map does not show them set "
                             f"(flags now: {', '.join(after.flags) or 'none'}); check the monitors and rerun")
        wanted = self.params.flags
        record = FlagsSet(wanted=list(wanted), set_by_drengine=d.to_set, already_set=d.already)
        summary = f"set {', '.join(d.to_set) or 'nothing'}" + (f"; already set before: {', '.join(d.already)}" if d.already else "")
        return StepResult(ok=True, summary=summary, facts={"flags_set": record})


@register
class LowerMinSize(Action[CephBackend, NoParams]):
    name = "ceph.lower_min_size"
    effect = Effect.MUTATE
    description = "Lower min_size on exactly the pools whose PGs are inactive for want of copies"

    def propose(self, ctx: Ctx) -> Proposal:
        snap = settled_snapshot(ctx)
        d = decide_min_size(snap)
        evidence = list(d.not_helped)
        return Proposal(
            summary=("lower min_size: " + ", ".join(f"{c.pool} {c.old} -> {c.new}" for c in d.changes))
            if d.changes else f"no pool needs a lower min_size: {d.reason}",
            reason=d.reason,
            statements=[mon_statement(ctx, min_size_cmd(c.pool, c.new)) for c in d.changes],
            gate=GateLevel.DANGEROUS if d.changes else GateLevel.NONE,
            risks=[f"writes to pool {c.pool} are acknowledged with only {c.new} copy(ies) up: if "
                   f"{'that OSD' if c.new == 1 else 'those OSDs'} fail(s) before the others return, those writes are lost"
                   for c in d.changes],
            evidence=evidence,
            nothing_to_do=not d.changes,
        )

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        snap = settled_snapshot(ctx)
        d = decide_min_size(snap)
        # A resumed run may find its own change made already: keep the record of the original value.
        earlier = ctx.facts.maybe("min_size_changes", MinSizeChanges)
        done = list(earlier.changes) if earlier else []
        for c in d.changes:
            ctx.changed(min_size_lowered(c.pool, c.old, c.new))  # in the ledger before it is sent, as the flags
            send(ctx, min_size_cmd(c.pool, c.new), note=was_note(c.old))
            if all(x.pool != c.pool for x in done):
                done.append(c)
        after = snapshot(ctx)
        wrong = [c for c in d.changes if (p := after.pool(c.pool)) is None or p.min_size != c.new]
        if wrong:
            raise StepFailed("min_size did not change on " + ", ".join(c.pool for c in wrong) + "; check `osd pool get POOL min_size`")
        return StepResult(
            ok=True,
            summary="lowered min_size: " + (", ".join(f"{c.pool} {c.old} -> {c.new}" for c in d.changes) or "none")
            + "".join(f"; {n}" for n in d.not_helped),
            facts={"min_size_changes": MinSizeChanges(changes=done)},
            evidence=d.not_helped,
        )


class IoParams(StepParams):
    io_timeout: float = Field(default=30.0, gt=0, le=3600, description="seconds to wait for a test write to be acknowledged")
    poll: float = Field(default=1.0, gt=0, le=60)


@register
class VerifyIo(Action[CephBackend, IoParams]):
    name = "ceph.verify_io"
    effect = Effect.MUTATE
    # It only writes drengine's own test object (`drengine-io-check`), so it needs no confirmation.
    min_gate = GateLevel.NONE
    Params = IoParams
    description = "Write and read back a test object in each pool the outage touched"

    def _pools(self, ctx: Ctx, snap: CephSnapshot) -> tuple[list[str], list[str]]:
        before = ctx.facts.maybe("observed", Observation)
        changes = ctx.facts.maybe("min_size_changes", MinSizeChanges)
        return io_check_pools(before.snapshot if before else None, snap, changes.changes if changes else [])

    def propose(self, ctx: Ctx) -> Proposal:
        pools, notes = self._pools(ctx, snapshot(ctx))
        stmts = []
        for pool in pools:
            stmts.append(Statement(pool, f"rados -p {pool} put {IO_CHECK_OBJECT} <test data>", language="rados"))
            stmts.append(Statement(pool, f"rados -p {pool} get {IO_CHECK_OBJECT} -", language="rados"))
        return Proposal(summary=f"prove client I/O on {', '.join(pools) or 'no pool'}",
                        reason="a write acknowledged and read back is what applications need; PG states alone do not prove it",
                        statements=stmts, evidence=notes, nothing_to_do=not pools)

    def _write(self, ctx: Ctx, pool: str, data: bytes, deadline: Deadline) -> None:
        """Write the test object until it is acknowledged, each try bounded, all of them by the deadline."""
        last: list[Exception] = []

        def acknowledged() -> bool:
            attempt = max(1.0, min(deadline.remaining(), ctx.cluster.timeouts.read))
            try:
                ctx.backend.write_object(pool, IO_CHECK_OBJECT, data, timeout=attempt)
            except ConnectError as exc:  # ProbeTimeout included: the PG still blocks
                last[:] = [exc]
                return False
            ctx.sent(Statement(pool, f"rados -p {pool} put {IO_CHECK_OBJECT} <{len(data)} bytes>", "rados"))
            return True

        if not ctx.wait_until(acknowledged, max(0.0, deadline.remaining()), interval=self.params.poll):
            snap = snapshot(ctx)
            raise StepFailed(
                f"client I/O on pool {pool} is still blocked after {self.params.io_timeout:g} s "
                f"({last[0] if last else 'no try finished in time'}). Observed now: {health_summary(snap)}. Expected: "
                f"every PG of {pool} active. See the explanation below; bring the OSDs back, or lower min_size / "
                f"declare OSDs gone (--gone osd.N) and rerun. Details: " + " | ".join(explain_health(snap))
            )

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        pools, notes = self._pools(ctx, snapshot(ctx))
        started = ctx.clock.now()
        deadline = Deadline(self.params.io_timeout, ctx.clock)
        evidence = list(notes)
        for pool in pools:
            data = f"drengine I/O check at {ctx.clock.wall():.3f}\n".encode()
            self._write(ctx, pool, data, deadline)
            read = ctx.backend.read_object(pool, IO_CHECK_OBJECT)
            ctx.sent(Statement(pool, f"rados -p {pool} get {IO_CHECK_OBJECT} -", "rados"), result=f"{len(read)} bytes")
            if read != data:
                raise StepFailed(f"pool {pool}: read back {len(read)} bytes that differ from the {len(data)} bytes just "
                                 f"written to {IO_CHECK_OBJECT}; the pool does not serve consistent I/O")
            evidence.append(f"pool {pool}: wrote and read back {IO_CHECK_OBJECT} ({len(data)} bytes)")
        seconds = ctx.clock.now() - started
        # One object lands in one PG: the pool serves only if none of its PGs is still inactive.
        after = settled_snapshot(ctx)
        names = {p.id: p.name for p in after.pools}
        still = [pg for pg in after.inactive_pgs if names.get(pg.pool_id) in pools]
        if still:
            raise StepFailed(
                f"the test object was written and read back, but {len(still)} PGs ({pg_list(still)}) of "
                f"{', '.join(sorted({names[pg.pool_id] for pg in still}))} "
                f"still do not serve I/O ({', '.join(sorted({pg.state for pg in still}))}, waiting for "
                f"{osd_names({o for pg in still for o in pg.waiting_for})}); objects in them stay blocked. Expected every PG "
                f"active. Bring those OSDs back, or declare them gone (--gone osd.N) and rerun. "
                + " | ".join(explain_health(after)))
        return StepResult(ok=True, summary=f"client I/O works on {', '.join(pools) or 'no pool'} ({seconds:.1f} s)",
                          facts={"io_checked": IoChecked(pools=pools, seconds=round(seconds, 3))}, evidence=evidence)


@register
class MarkOut(Action[CephBackend, NoParams]):
    name = "ceph.mark_out"
    effect = Effect.MUTATE
    description = "Mark OSDs declared gone for good `out` so their data is copied elsewhere"

    def propose(self, ctx: Ctx) -> Proposal:
        d = decide_out(snapshot(ctx), gone_osd_ids(ctx.operator_said_gone))
        return Proposal(summary=f"mark {osd_names(d.to_out)} out" if d.to_out else f"no OSD to mark out: {d.reason}", reason=d.reason,
                        statements=[mon_statement(ctx, out_cmd(i)) for i in d.to_out], evidence=d.notes,
                        nothing_to_do=not d.to_out)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        d = decide_out(snapshot(ctx), gone_osd_ids(ctx.operator_said_gone))
        for i in d.to_out:
            send(ctx, out_cmd(i))
        marked = ctx.facts.maybe("osds_marked", OsdsMarked) or OsdsMarked()
        record = OsdsMarked(out=sorted(set(marked.out) | set(d.to_out)), lost=marked.lost)
        return StepResult(ok=True, summary=f"marked {osd_names(d.to_out)} out", facts={"osds_marked": record}, evidence=d.notes)


@register
class MarkLost(Action[CephBackend, NoParams]):
    name = "ceph.mark_lost"
    effect = Effect.MUTATE
    # Ceph gives up on whatever only this OSD had: always a dangerous gate, whatever the YAML says.
    min_gate = GateLevel.DANGEROUS
    description = "Mark OSDs declared gone `lost` when PGs or unfound objects wait for them (data loss)"

    def _decide(self, ctx: Ctx) -> LostDecision:
        gone = gone_osd_ids(ctx.operator_said_gone)
        if not gone:
            # Nothing can be marked lost: no need to wait for PGs still peering after a min_size change.
            return decide_lost(snapshot(ctx), [], set(), [])
        snap = settled_snapshot(ctx)
        return decide_lost(snap, gone, lost_osds(ctx), unfound_sources(ctx, snap))

    def propose(self, ctx: Ctx) -> Proposal:
        d = self._decide(ctx)
        return Proposal(summary=f"mark {osd_names(d.to_lose)} lost" if d.to_lose else f"no OSD to mark lost: {d.reason}", reason=d.reason,
                        statements=[mon_statement(ctx, lost_cmd(i)) for i in d.to_lose], risks=d.risks,
                        gate=GateLevel.DANGEROUS, nothing_to_do=not d.to_lose)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        d = self._decide(ctx)
        for i in d.to_lose:
            send(ctx, lost_cmd(i))
        marked = ctx.facts.maybe("osds_marked", OsdsMarked) or OsdsMarked()
        record = OsdsMarked(out=marked.out, lost=sorted(set(marked.lost) | set(d.to_lose)))
        return StepResult(ok=True, summary=f"marked {osd_names(d.to_lose)} lost", facts={"osds_marked": record})


class UnfoundParams(StepParams):
    mode: Literal["revert", "delete"] = "revert"


@register
class MarkUnfoundLost(Action[CephBackend, UnfoundParams]):
    name = "ceph.mark_unfound_lost"
    effect = Effect.MUTATE
    Params = UnfoundParams
    # The newest version of each unfound object is given up for good.
    min_gate = GateLevel.DANGEROUS
    description = "Give up unfound objects no OSD that is up holds (revert to the previous version, or delete)"

    def _decide(self, ctx: Ctx, planning: bool) -> UnfoundDecision:
        snap = snapshot(ctx)
        mode = self.params.mode
        if not snap.pgs_with_unfound:
            return decide_unfound([], set(), mode)
        lost = lost_osds(ctx)
        if planning:
            # The mark-lost step before this one marks the down OSDs declared gone lost; a plan
            # (which does not run it) must still show what would follow.
            lost |= {i for i in gone_osd_ids(ctx.operator_said_gone) if any(o.id == i and not o.up for o in snap.osds)}
        d = decide_unfound(unfound_sources(ctx, snap), lost, mode)
        if d.blocked and not d.pgs:
            raise StepFailed("unfound objects remain and cannot be given up yet: " + " | ".join(d.blocked))
        return d

    def propose(self, ctx: Ctx) -> Proposal:
        d = self._decide(ctx, planning=True)
        mode = self.params.mode
        return Proposal(
            summary=f"mark_unfound_lost {mode} on PGs {', '.join(d.pgs)}" if d.pgs else f"no unfound objects to give up: {d.reason}",
            reason=d.reason,
            statements=[pg_statement(p, unfound_cmd(mode)) for p in d.pgs],
            gate=GateLevel.DANGEROUS,
            risks=[f"the newest version of {d.objects} object(s) is given up for good: "
                   + ("readers get the previous version, objects new since then are deleted" if mode == "revert"
                      else "the objects are deleted")] if d.pgs else [],
            evidence=d.blocked,
            nothing_to_do=not d.pgs,
        )

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        d = self._decide(ctx, planning=False)
        mode = self.params.mode
        for pgid in d.pgs:
            answer = ctx.backend.pg_command(pgid, unfound_cmd(mode))
            message = answer.get("message", "") if isinstance(answer, dict) else ""
            ctx.sent(pg_statement(pgid, unfound_cmd(mode)), result=str(message or "ok"))
        if d.blocked:
            return StepResult(ok=False, summary=f"gave up unfound objects in {', '.join(d.pgs)}, but others remain: "
                              + " | ".join(d.blocked), evidence=d.blocked)
        return StepResult(ok=True, summary=f"{mode}: {d.objects} unfound object(s) in PGs {', '.join(d.pgs)}",
                          facts={"unfound_given_up": UnfoundGivenUp(mode=mode, pgs=d.pgs, objects=d.objects)})


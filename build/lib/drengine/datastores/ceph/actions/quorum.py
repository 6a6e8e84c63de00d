"""ceph-mon-quorum: bring back a monitor quorum by monmap surgery when a majority of the
monitors is gone for good.

Ask the monitors (a quorum that answers needs no surgery), probe each monitor's admin socket
on its host, decide who survives, then stop the survivors, remove the dead monitors from
their monmap, start them again and wait (bounded) for their quorum. librados cannot do any
of this: the backend's `MonitorControl` runs it on the monitors' hosts.
"""

from __future__ import annotations

from pydantic import Field

from drengine.datastores.ceph.actions.common import Ctx, mon_statement, monitors, snapshot
from drengine.datastores.ceph.backend import CephBackend, mon_id
from drengine.datastores.ceph.connector import CephSnapshot
from drengine.datastores.ceph.decisions import decide_mon_surgery
from drengine.datastores.ceph.explain import explain_health
from drengine.datastores.ceph.facts import MonSurgery
from drengine.errors import ConnectError, StepFailed
from drengine.steps import Action, Effect, GateLevel, Mode, NoParams, Proposal, Statement, StepParams, StepResult, register


@register
class CheckQuorum(Action[CephBackend, NoParams]):
    name = "ceph.check_quorum"
    effect = Effect.READ
    outcomes = ("quorate",)
    description = "Ask the monitors for status; a quorum that answers needs no surgery"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="ask the monitors for status (bounded by the connect timeout)",
                        statements=[mon_statement(ctx, {"prefix": "status"})])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        try:
            snap = snapshot(ctx)
        except ConnectError as exc:  # ProbeTimeout included
            ctx.backend.reconnect()
            return StepResult(ok=True, summary=f"the monitors have no quorum: {exc}")
        return StepResult(ok=True, outcome="quorate",
                          summary=f"monitors {', '.join(snap.status.quorum_names)} are in quorum and answer: no surgery needed",
                          evidence=explain_health(snap))


@register
class FindSurvivingMons(Action[CephBackend, NoParams]):
    name = "ceph.find_surviving_mons"
    effect = Effect.READ
    description = "Ask each monitor's admin socket on its host whether it runs and which monmap it holds"

    def propose(self, ctx: Ctx) -> Proposal:
        conf = (ctx.cluster.ceph.conf_file if ctx.cluster.ceph else "/etc/ceph/ceph.conf")
        return Proposal(summary="probe every monitor through its admin socket",
                        statements=[Statement(m, f"ceph -c {conf} daemon {m} mon_status", "shell")
                                    for m in monitors(ctx).monitors()])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        control = monitors(ctx)
        names = control.monitors()
        if not names:
            raise StepFailed(f"cluster {ctx.cluster.name} lists no monitor in the inventory (members named mon.X or with "
                             f"role: mon); expected every monitor, so that drengine can find the survivors")
        probes = [control.probe(m) for m in names]
        decision = decide_mon_surgery(probes, {mon_id(m): m for m in names})
        evidence = [f"{p.name}: " + (f"running, {p.state}, monmap epoch {p.monmap_epoch}: {', '.join(p.monmap)}"
                                     if p.running else f"not running ({p.error})") for p in probes]
        if decision.surgery is None:
            return StepResult(ok=False, summary=decision.reason, evidence=evidence)
        return StepResult(ok=True, summary=f"survivors: {', '.join(decision.surgery.survivors)}; to remove from the monmap: "
                          f"{', '.join(decision.surgery.removed)}", facts={"mon_surgery": decision.surgery}, evidence=evidence)


@register
class MonmapSurgery(Action[CephBackend, NoParams]):
    name = "ceph.monmap_surgery"
    effect = Effect.MUTATE
    # Removing monitors from the monmap is hard to undo and, if a removed one was in fact ahead,
    # loses what it committed alone.
    min_gate = GateLevel.DANGEROUS
    description = "Stop the survivors, remove the dead monitors from their monmap, start them again"

    def propose(self, ctx: Ctx) -> Proposal:
        s = ctx.facts.get("mon_surgery", MonSurgery)
        control = monitors(ctx)
        stmts = [Statement(m, control.stop_command(m), "shell") for m in s.survivors]
        for m in s.survivors:
            stmts += [Statement(m, c, "shell") for c in control.extract_commands(m, s.removed)]
        stmts += [Statement(m, control.start_command(m), "shell") for m in s.survivors]
        return Proposal(
            summary=f"remove {', '.join(s.removed)} from the monmap of {', '.join(s.survivors)} and restart them",
            reason=s.reason + ". The original monmap is kept beside each store (*.monmap.before-drengine)",
            statements=stmts,
            gate=GateLevel.DANGEROUS,
            risks=[f"{', '.join(s.removed)} leave(s) the cluster: to come back they must be re-added as new monitors "
                   f"(their stores are stale); if one of them is in fact running behind a partition, there are now two "
                   f"monitor clusters"],
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        s = ctx.facts.get("mon_surgery", MonSurgery)
        probes = [monitors(ctx).probe(m) for m in s.survivors]
        return all(p.running and not set(s.removed) & set(p.monmap) for p in probes)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        s = ctx.facts.get("mon_surgery", MonSurgery)
        control = monitors(ctx)
        evidence = []
        for m in s.survivors:
            # Check, then act: a resumed run skips a monitor already edited and running.
            probe = control.probe(m)
            if probe.running and not set(s.removed) & set(probe.monmap):
                evidence.append(f"{m}: already runs with monmap {', '.join(probe.monmap)}")
                continue
            if probe.running:
                control.stop(m)
                ctx.sent(Statement(m, control.stop_command(m), "shell"))
            kept = control.edit_monmap(m, s.removed)
            for c in control.extract_commands(m, s.removed):
                ctx.sent(Statement(m, c, "shell"))
            if set(s.removed) & set(kept):
                raise StepFailed(f"{m}: the edited monmap still lists {', '.join(set(s.removed) & set(kept))}; "
                                 f"it was not injected as expected. The backup is beside the store; check by hand")
            evidence.append(f"{m}: monmap now {', '.join(kept)}")
        for m in s.survivors:
            if not control.probe(m).running:
                control.start(m)
                ctx.sent(Statement(m, control.start_command(m), "shell"))
        ctx.backend.reconnect()
        return StepResult(ok=True, summary=f"removed {', '.join(s.removed)}; started {', '.join(s.survivors)}", evidence=evidence)


class QuorumParams(StepParams):
    quorum_timeout: float = Field(default=60.0, gt=0, le=3600)
    poll: float = Field(default=1.0, gt=0, le=60)


@register
class VerifyQuorum(Action[CephBackend, QuorumParams]):
    name = "ceph.verify_quorum"
    effect = Effect.READ
    Params = QuorumParams
    description = "Wait (bounded) for the survivors to form a quorum and the cluster to answer"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="wait for a quorum of the survivors", statements=[mon_statement(ctx, {"prefix": "status"})])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        p = self.params
        s = ctx.facts.maybe("mon_surgery", MonSurgery)
        wanted = sorted(mon_id(m) for m in s.survivors) if s else []
        backend = ctx.backend
        started = ctx.clock.now()
        last: list[str] = [""]
        answered: list[CephSnapshot] = []

        def quorate() -> bool:
            try:
                snap = backend.observe()
            except ConnectError as exc:
                last[0] = str(exc)
                backend.reconnect()
                return False
            if not wanted or sorted(snap.status.quorum_names) == wanted:
                answered.append(snap)
                return True
            last[0] = f"quorum is {', '.join(snap.status.quorum_names)}, expected {', '.join(wanted)}"
            return False

        if ctx.wait_until(quorate, 0.0 if ctx.mode is Mode.PLAN else p.quorum_timeout, interval=p.poll):
            snap = answered[0]
            conf = ctx.cluster.ceph.conf_file if ctx.cluster.ceph else "ceph.conf"
            note = (f"; clients still list the removed monitors in `mon host` of {conf}: rewrite it to "
                    f"{', '.join(wanted)} so they stop trying dead ones") if s else ""
            return StepResult(ok=True, summary=f"quorum {', '.join(snap.status.quorum_names)} answers after "
                              f"{ctx.clock.now() - started:.1f} s{note}", evidence=explain_health(snap))
        raise StepFailed(f"no quorum of {', '.join(wanted) or 'the monitors'} within {p.quorum_timeout:g} s: {last[0]}. "
                         f"Check the monitors' logs; the original monmaps are kept beside their stores")

"""The fencing steps of mongodb-force-primary: stop the members the forced config removes
(`fence-removed`, by the inventory's methods), then refuse to go on while any is UNFENCED
(`check-fenced`: a refused connection is not a fence; an operator who fenced by hand overrides).
The methods and the decision are in `fencing`."""

from __future__ import annotations

from drengine.datastores.mongodb.connector import MongoAPI
from drengine.datastores.mongodb.fencing import (
    FenceOutcome,
    FenceReport,
    fence_refusal,
    removed_members,
    sql_statements,
    usable_methods,
)
from drengine.datastores.mongodb.setview import SetView
from drengine.datastores.mongodb.stepkit import Ctx, back_since_chosen, forced_for
from drengine.faults import stop_command
from drengine.inventory import FenceMethod
from drengine.steps import Action, Effect, NoParams, Proposal, Statement, StepResult, register
from drengine.transport import command_text as command_text_of


@register
class FenceRemoved(Action[MongoAPI, NoParams]):
    name = "mongodb.fence_removed"
    effect = Effect.MUTATE
    description = "Stop the members the forced reconfig removes, by the inventory's fence methods (split-brain guard)"

    def _targets(self, ctx: Ctx) -> list[tuple[str, str, str]]:
        _, _, forced = forced_for(ctx)
        return removed_members(ctx.facts.get("view", SetView), forced.removed)

    @staticmethod
    def _methods(ctx: Ctx, name: str) -> tuple[list[tuple[FenceMethod, str | None]], list[FenceMethod], bool]:
        """A removed member's methods (with why each cannot be used), those that can reach it now
        (its own commands only while it answers), and whether it is the writable primary."""
        view = ctx.facts.get("view", SetView)
        member = view.member(name) if name in {m.name for m in view.members} else None
        methods = usable_methods(ctx.cluster, name) if member is not None else []
        answers = member is not None and member.reachable
        reach = [m for m, why in methods if why is None and (answers or m is not FenceMethod.SQL)]
        return methods, reach, bool(member and member.is_writable_primary)

    def propose(self, ctx: Ctx) -> Proposal:
        targets = self._targets(ctx)
        if not targets:
            return Proposal(summary="the forced config removes nobody: nothing to fence", nothing_to_do=True)
        statements: list[Statement] = []
        evidence: list[str] = []
        unfenceable: list[str] = []
        for name, _, seen in targets:
            methods, reach, primary = self._methods(ctx, name)
            evidence.append(f"{name}: {seen}; methods: " + ", ".join(
                f"{m.value}{'' if why is None else f' (not usable: {why})'}" for m, why in methods))
            statements += [s for m in reach for s in _method_statements(ctx, name, m, primary)]
            if not reach:
                unfenceable.append(f"{name} ({seen})")
        # A refused connection is not a fence: a member no method can reach stays UNFENCED, and check-fenced refuses.
        risks = ([f"no fence method can reach {', '.join(unfenceable)}: they will be UNFENCED (a refused connection "
                  f"is not a fence) and check-fenced will refuse until they are fenced by hand and the check is "
                  f"overridden; add `service: stop:` or the members' `pid_file:` to the inventory"]
                 if unfenceable else [])
        return Proposal(
            summary=f"fence {', '.join(n for n, _, _ in targets)} before the forced reconfig removes them",
            reason="a removed member that comes back with its old config and sees a majority of its old voters "
                   "elects a second primary; each is stopped by the first of the inventory's methods that works "
                   f"({', '.join(m.value for m in ctx.cluster.fence_methods())})",
            statements=statements, risks=risks, evidence=evidence)

    def assumed_result(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        """Plan mode: a member some method can reach is assumed fenced by the first; one no method
        reaches is UNFENCED (check-fenced then shows the refusal the run would meet)."""
        outcomes = []
        for name, host, seen in self._targets(ctx):
            _, reach, _ = self._methods(ctx, name)
            if reach:
                outcomes.append(FenceOutcome(member=name, host=host, status="fenced", method=reach[0].value,
                                             attempts=["(plan) assumed, not sent"]))
            else:
                outcomes.append(FenceOutcome(member=name, host=host, status="unfenced",
                                             down="its port refuses connections" if "refused" in seen.lower() else "",
                                             attempts=["(plan) no fence method can reach it"]))
        return StepResult(ok=True, summary=f"(plan) {proposal.summary}", facts={"fence": FenceReport(outcomes=outcomes)})

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision, _, forced = forced_for(ctx)
        back = back_since_chosen(ctx, forced.removed)
        if back:
            # Shutting down a member that came back could take away a majority that is back, and the
            # forced config would then throw away what it holds: the choice is stale, look again.
            return StepResult(ok=False, summary=(
                f"nothing fenced: {', '.join(back)} answer(s) again since {decision.chosen} was chosen, and the forced "
                f"config would remove them; the majority may be back, or a member may hold more than "
                f"{decision.chosen}. Rerun the runbook: it observes the set again"))
        outcomes = [self._fence_one(ctx, name, host) for name, host, _ in self._targets(ctx)]
        report = FenceReport(outcomes=outcomes)
        left = report.unfenced()
        summary = (f"{len(outcomes) - len(left)} of {len(outcomes)} removed member(s) fenced"
                   + (f"; UNFENCED: {', '.join(o.member for o in left)}" if left else ""))
        # The step did what it could; whether the run may go on is check-fenced's decision.
        return StepResult(ok=True, summary=summary, facts={"fence": report}, evidence=[o.line() for o in outcomes])

    def _fence_one(self, ctx: Ctx, name: str, host: str) -> FenceOutcome:
        if name not in {m.name for m in ctx.cluster.members}:
            return FenceOutcome(member=name, host=host, status="unfenced", attempts=["not in the inventory"])
        down = ctx.backend.down(name)
        attempts: list[str] = []
        for method, why in usable_methods(ctx.cluster, name):
            if why is not None:
                attempts.append(f"{method.value}: not tried ({why})")
                continue
            attempt = ctx.backend.fence(name, method)
            for statement in attempt.statements:
                ctx.sent(statement, result="ok" if attempt.ok else f"failed: {attempt.detail}")
            attempts.append(f"{method.value}: {'ok' if attempt.ok else 'failed'}: {attempt.detail}")
            if attempt.ok:
                return FenceOutcome(member=name, host=host, status="fenced", method=method.value, down=down or "",
                                    attempts=attempts)
        return FenceOutcome(member=name, host=host, status="unfenced", down=down or "", attempts=attempts)


def _method_statements(ctx: Ctx, member: str, method: FenceMethod, primary: bool) -> list[Statement]:
    """What a method would send, for the plan and the gate."""
    entry = ctx.cluster.member(member)
    where = entry.host or "localhost"
    if method is FenceMethod.SQL:
        return sql_statements(member, primary)
    if method is FenceMethod.SERVICE:
        return [Statement(where, command_text_of(stop_command(ctx.cluster, entry)), language="shell")]
    if method is FenceMethod.SIGNAL:
        return [Statement(where, f"kill -KILL $(cat {entry.pid_file})", language="shell")]
    return []


@register
class CheckFenced(Action[MongoAPI, NoParams]):
    name = "mongodb.check_fenced"
    effect = Effect.CHECK
    description = "Refuse while a member the forced reconfig removes is UNFENCED (a refused connection is not a fence)"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="check that every member the forced config removes is fenced")

    def assumed_result(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        return self.run(ctx, proposal)  # it only reads the facts: the plan shows the refusal the run meets

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        _, _, forced = forced_for(ctx)
        removed = removed_members(ctx.facts.get("view", SetView), forced.removed)
        report = ctx.facts.maybe("fence", FenceReport)
        if report is None:
            # fence-removed was skipped (or fenced nobody): nothing is known to be fenced.
            report = FenceReport(outcomes=[FenceOutcome(member=name, host=host, status="unfenced",
                                                        attempts=[f"not fenced: {seen}"])
                                           for name, host, seen in removed])
        evidence = [o.line() for o in report.outcomes]
        refusal = fence_refusal(ctx.cluster, report)
        if refusal is not None:
            return StepResult(ok=False, summary=f"UNFENCED: {', '.join(o.member for o in report.unfenced())}",
                              refusal=refusal, evidence=evidence)
        return StepResult(ok=True, evidence=evidence, summary=(
            f"every removed member is fenced: {', '.join(o.member for o in report.outcomes)}" if report.outcomes
            else "the forced config removes nobody: nothing to fence"))

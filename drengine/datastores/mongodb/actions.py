"""MongoDB replica sets: the steps of mongodb-force-primary (force a primary after the
majority is lost); mongodb-rejoin's are in `rejoin`, the pure decisions in `decisions`.

A forced reconfig is the vendor's last resort and never something to do from a script on
its own: here it is always a dangerous gate, preceded by checks that refuse while a primary
exists or a voting majority is healthy, and followed by a write with `w: majority`.
"""

from __future__ import annotations

import json

from pydantic import BaseModel

from drengine.datastores.mongodb import rejoin, verify  # noqa: F401 - their steps register
from drengine.datastores.mongodb.concerns import implicit_default_change, implicit_default_is_majority
from drengine.datastores.mongodb.connector import MongoAPI, MongoCommandFailed
from drengine.datastores.mongodb.decisions import (
    check_majority_lost,
    choose_survivor,
    member_names,
    observed,
    reconfig_text,
    view_lines,
)
from drengine.datastores.mongodb.fencing import (
    FenceOutcome,
    FenceReport,
    removed_members,
    split_brain_risk,
    sql_statements,
    usable_methods,
)
from drengine.datastores.mongodb.setview import SetView, command_text
from drengine.datastores.mongodb.stepkit import Ctx, forced_for
from drengine.faults import stop_command
from drengine.inventory import FenceMethod
from drengine.steps import (
    Action,
    Effect,
    GateLevel,
    NoParams,
    Proposal,
    Refusal,
    Statement,
    StepResult,
    register,
)
from drengine.transport import command_text as command_text_of

# mongod's NewReplicaSetConfigurationIncompatible: here, a config that changes the implicit default
# write concern while no cluster-wide default is set (replication_coordinator_impl.cpp, 5.0+).
IMPLICIT_DEFAULT_REFUSED = 103
GET_DEFAULT_RW_CONCERN = '{"getDefaultRWConcern": 1}'

# -- actions: force a primary ----------------------------------------------------------------------------


@register
class Observe(Action[MongoAPI, NoParams]):
    name = "mongodb.observe"
    effect = Effect.READ
    description = "Probe every member in parallel (hello, replSetGetStatus, replSetGetConfig)"

    def propose(self, ctx: Ctx) -> Proposal:
        stmts = [Statement(m.name, command_text({cmd: 1}), language="mongodb")
                 for m in ctx.cluster.members for cmd in ("hello", "replSetGetStatus", "replSetGetConfig")]
        t = ctx.cluster.timeouts
        return Proposal(summary=f"probe {len(ctx.cluster.members)} members in parallel (bounded by "
                                f"{t.connect + t.read:g} s)", statements=stmts)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.backend.observe()
        reachable = view.reachable()
        lines = view_lines(view)
        summary = f"{len(reachable)} of {len(view.members)} members answered in {view.probe_seconds:g} s"
        if not reachable:
            return StepResult(ok=False, summary=f"no member answered: {observed(view)}", facts={"view": view},
                              evidence=lines)
        return StepResult(ok=True, summary=summary, facts={"view": view}, evidence=lines)


@register
class CheckMajorityLost(Action[MongoAPI, NoParams]):
    name = "mongodb.check_majority_lost"
    effect = Effect.CHECK
    description = "Refuse while any member is PRIMARY or a voting majority is healthy"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="check that no primary exists and the voting majority is lost")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.facts.get("view", SetView)
        refusal = check_majority_lost(view)
        lines = view_lines(view)
        if refusal is not None:
            return StepResult(ok=False, summary=refusal.observed, refusal=refusal, evidence=lines)
        config = view.newest_config()
        needed = config.majority() if config else 0
        return StepResult(ok=True, evidence=lines, summary=(
            f"no member is PRIMARY and no member sees a voting majority healthy ({needed} votes needed)"))


@register
class ChooseSurvivor(Action[MongoAPI, NoParams]):
    name = "mongodb.choose_survivor"
    effect = Effect.CHECK
    description = "Choose the survivor with the highest optime, and say why"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="rank the survivors by optime (term, then timestamp)")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision = choose_survivor(ctx.facts.get("view", SetView))
        evidence = [f"{c.name}: optime {c.optime}, priority {c.priority:g}, votes {c.votes}"
                    + (f", {c.kind}" if c.kind else "")
                    + ("" if c.eligible else f" (not a candidate: {c.note})") for c in decision.ranking]
        evidence += [f"RISK: {r}" for r in decision.risks]
        facts: dict[str, BaseModel] = {"survivor": decision}
        if decision.chosen is None:
            return StepResult(ok=False, summary=decision.reason, evidence=evidence, facts=facts)
        if decision.by_override:
            lifted = ", ".join(decision.lifted)
            return StepResult(ok=False, summary=f"the most advanced survivor, {decision.chosen}, is configured never "
                              f"to be primary", evidence=evidence, facts=facts, refusal=Refusal(
                observed=decision.reason,
                expected="the most advanced data-bearing survivor may be primary as configured (priority > 0, a "
                         "vote, not hidden, not delayed)",
                why="such a config marks a member that must never be primary (a backup, analytics or delayed "
                    "member, or one in another data centre); promoting it changes what the set was built for, and "
                    "promoting a member that may be primary instead loses the writes only this one holds",
                next_steps=f"bring back a member that may be primary and holds as much, then rerun; or override this "
                           f"check to promote {decision.chosen} (the forced config changes {lifted})",
                risk_if_overridden=f"{decision.chosen} becomes primary although configured never to be ({lifted}); "
                                   + " ".join(decision.risks[-2:]),
            ))
        return StepResult(ok=True, summary=f"chose {decision.chosen}: {decision.reason}", evidence=evidence,
                          facts=facts)


@register
class FenceRemoved(Action[MongoAPI, NoParams]):
    name = "mongodb.fence_removed"
    effect = Effect.MUTATE
    description = "Stop the members the forced reconfig removes, by the inventory's fence methods (split-brain guard)"

    def _targets(self, ctx: Ctx) -> list[tuple[str, str, str]]:
        _, _, forced = forced_for(ctx)
        return removed_members(ctx.facts.get("view", SetView), forced.removed)

    def propose(self, ctx: Ctx) -> Proposal:
        targets = self._targets(ctx)
        if not targets:
            return Proposal(summary="the forced config removes nobody: nothing to fence", nothing_to_do=True)
        view = ctx.facts.get("view", SetView)
        statements: list[Statement] = []
        evidence: list[str] = []
        unfenceable: list[str] = []
        for name, _, seen in targets:
            member = view.member(name) if name in {m.name for m in view.members} else None
            methods = usable_methods(ctx.cluster, name) if member is not None else []
            evidence.append(f"{name}: {seen}; methods: " + ", ".join(
                f"{m.value}{'' if why is None else f' (not usable: {why})'}" for m, why in methods))
            answers = member is not None and member.reachable
            statements += [s for m, why in methods if why is None and (answers or m is not FenceMethod.SQL)
                           for s in _method_statements(ctx, name, m, bool(member and member.is_writable_primary))]
            if all(why is not None for _, why in methods) and "refused" not in seen.lower():
                unfenceable.append(f"{name} ({seen})")
        risks = ([f"no fence method can reach {', '.join(unfenceable)}: the forced reconfig will be a dangerous "
                  f"gate naming the split-brain risk; add `service: stop:` or the members' `pid_file:` to the "
                  f"inventory"] if unfenceable else [])
        return Proposal(
            summary=f"fence {', '.join(n for n, _, _ in targets)} before the forced reconfig removes them",
            reason="a removed member that comes back with its old config and sees a majority of its old voters "
                   "elects a second primary; each is stopped by the first of the inventory's methods that works "
                   f"({', '.join(m.value for m in ctx.cluster.fence_methods())})",
            statements=statements, risks=risks, evidence=evidence)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        outcomes = [self._fence_one(ctx, name, host) for name, host, _ in self._targets(ctx)]
        report = FenceReport(outcomes=outcomes)
        left = report.unfenced()
        summary = (f"{len(outcomes) - len(left)} of {len(outcomes)} removed member(s) fenced or down"
                   + (f"; NOT FENCED: {', '.join(o.member for o in left)}" if left else ""))
        return StepResult(ok=True, summary=summary, facts={"fence": report}, evidence=[o.line() for o in outcomes])

    def _fence_one(self, ctx: Ctx, name: str, host: str) -> FenceOutcome:
        if name not in {m.name for m in ctx.cluster.members}:
            return FenceOutcome(member=name, host=host, status="unfenced", attempts=["not in the inventory"])
        down = ctx.backend.down(name)
        attempts: list[str] = [f"before: {down}"] if down else []
        for method, why in usable_methods(ctx.cluster, name):
            if why is not None:
                attempts.append(f"{method.value}: not tried ({why})")
                continue
            attempt = ctx.backend.fence(name, method)
            for statement in attempt.statements:
                ctx.sent(statement, result="ok" if attempt.ok else f"failed: {attempt.detail}")
            attempts.append(f"{method.value}: {'ok' if attempt.ok else 'failed'}: {attempt.detail}")
            if attempt.ok:
                return FenceOutcome(member=name, host=host, status="fenced", method=method.value, attempts=attempts)
        return FenceOutcome(member=name, host=host, status="down" if down else "unfenced", attempts=attempts)


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
class ForceReconfig(Action[MongoAPI, NoParams]):
    name = "mongodb.force_reconfig"
    effect = Effect.MUTATE
    # The vendor's last resort: it discards members and may lose writes. Always dangerous.
    min_gate = GateLevel.DANGEROUS
    description = "Force a config that keeps only the survivors, on the chosen member"

    def propose(self, ctx: Ctx) -> Proposal:
        decision, old, forced = forced_for(ctx)
        assert decision.chosen is not None
        view = ctx.facts.get("view", SetView)
        removed = [view.name_of(h) for h in forced.removed]
        risks = list(decision.risks)
        split = split_brain_risk(ctx.facts.maybe("fence", FenceReport), removed_members(view, forced.removed))
        if split:
            risks.insert(0, split)
        data_removed = [view.name_of(h) for h in forced.removed if h not in forced.left_out]
        if data_removed:
            risks.append(f"{', '.join(data_removed)} are removed from the set: they must stay down until their dbPath "
                         f"is emptied and they are added back (mongodb-rejoin); if one returns with the old config it "
                         f"can elect a second primary")
        if forced.left_out:
            risks.append(verify.left_out_words(view, forced.left_out, decision.chosen))
        if forced.arbiter_cost:
            risks.append(forced.arbiter_cost)
        if forced.default_change:
            risks.append(f"mongod may refuse this: {forced.default_change}")
        return Proposal(
            summary=f"force a new config on {decision.chosen}: keep {', '.join(view.name_of(h) for h in forced.kept)}"
                    f"; remove {', '.join(removed) or 'nobody'}",
            reason=f"{decision.reason}. New config (was version {old.version}): " + "; ".join(
                line.strip() for line in forced.diff),
            statements=[Statement(decision.chosen, reconfig_text(forced.document, force=True), language="mongodb")],
            gate=GateLevel.DANGEROUS,
            risks=risks,
            evidence=forced.diff,
        )

    def _applied(self, ctx: Ctx) -> bool:
        decision, old, forced = forced_for(ctx)
        assert decision.chosen is not None
        # One replSetGetConfig rather than a whole probe: this runs right before the dangerous command.
        now = ctx.backend.get_config(decision.chosen)
        return now.version > old.version and sorted(m.host for m in now.members) == sorted(forced.kept)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return self._applied(ctx)

    @staticmethod
    def _back_since_chosen(ctx: Ctx, removed: list[str]) -> list[str]:
        """The members the forced config removes that answer now (one probe each, right before
        the dangerous command)."""
        view = ctx.facts.get("view", SetView)
        back = []
        for host in removed:
            member = view.by_config_host(host)
            if member is not None and not member.reachable and ctx.backend.probe(member.name).reachable:
                back.append(member.name)
        return back

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision, old, forced = forced_for(ctx)
        assert decision.chosen is not None
        api = ctx.backend
        view = ctx.facts.get("view", SetView)
        if self._applied(ctx):
            return StepResult(ok=True, summary=f"{decision.chosen} already holds the forced config; not sent again")
        back = self._back_since_chosen(ctx, forced.removed)
        if back:
            # The survivor was chosen from an earlier look (before a gate waited, or before the
            # engine died and resumed): a member the config removes answers again, so the choice
            # and the majority check are stale. Sending would throw its writes away.
            return StepResult(ok=False, summary=(
                f"not sent: {', '.join(back)} answer(s) again since {decision.chosen} was chosen, and the forced "
                f"config would remove them; the majority may be back, or a member may hold more than "
                f"{decision.chosen}. Rerun the runbook: it observes the set again"))
        if forced.default_change and not _cluster_wide_default_set(ctx, decision.chosen):
            # Observed right before the dangerous command: mongod would refuse it (103), so it is not sent.
            return StepResult(ok=False, evidence=forced.diff, summary=(
                f"not sent: {decision.chosen} holds no cluster-wide default write concern "
                f"(getDefaultRWConcern: defaultWriteConcernSource implicit), and {forced.default_change}"))
        statement = proposal.statements[0]
        try:
            api.command(decision.chosen, statement.text)
        except MongoCommandFailed as exc:
            if exc.code != IMPLICIT_DEFAULT_REFUSED or "implicit default write concern" not in str(exc):
                raise
            ctx.sent(statement, result=f"refused: code {exc.code}")
            why = forced.default_change or implicit_default_change(
                implicit_default_is_majority(json.loads(old.document).get("members", [])),
                json.loads(forced.document).get("members", []), member_names(view))
            return StepResult(ok=False, evidence=forced.diff, summary=(
                f"{decision.chosen} refused the forced config (nothing changed): {why}"))
        ctx.sent(statement)
        version = api.get_config(decision.chosen).version
        summary = (f"{decision.chosen} accepted the forced config: version {old.version} -> {version}, members "
                   f"{', '.join(view.name_of(h) for h in forced.kept)}")
        if forced.left_out:
            summary += f". {verify.left_out_words(view, forced.left_out, decision.chosen)}"
        return StepResult(ok=True, evidence=forced.diff, summary=summary)


def _cluster_wide_default_set(ctx: Ctx, member: str) -> bool:
    """Whether `member` holds a cluster-wide default write concern (getDefaultRWConcern answers on any
    member, https://www.mongodb.com/docs/manual/reference/command/getDefaultRWConcern/). A server
    that cannot tell (before 4.4) is given the benefit of the doubt: the command is sent, and a
    refusal explained."""
    try:
        reply = ctx.backend.command(member, GET_DEFAULT_RW_CONCERN)
    except MongoCommandFailed:
        return True
    return reply.get("defaultWriteConcernSource") == "global"

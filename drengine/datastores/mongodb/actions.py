"""MongoDB replica sets: the steps of mongodb-force-primary (force a primary after the
majority is lost); mongodb-rejoin's are in `rejoin`, the pure decisions in `decisions`.

A forced reconfig is the vendor's last resort and never something to do from a script on
its own: here it is always a dangerous gate, preceded by checks that refuse while a primary
exists or a voting majority is healthy, and followed by a write with `w: majority`.
"""

from __future__ import annotations

import json

from pydantic import BaseModel

from drengine.datastores.mongodb import fencesteps, rejoin, verify  # noqa: F401 - their steps register
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
    FenceReport,
    removed_members,
    split_brain_risk,
)
from drengine.datastores.mongodb.ledger import removed
from drengine.datastores.mongodb.setview import SetView, command_text
from drengine.datastores.mongodb.stepkit import Ctx, back_since_chosen, forced_for
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
    def _declare(ctx: Ctx) -> None:
        """Each member the forced config removed is an open ledger entry until mongodb-rejoin adds it back."""
        decision, _, forced = forced_for(ctx)
        view = ctx.facts.get("view", SetView)
        for host in forced.removed:
            ctx.changed(removed(view.name_of(host), host, decision.chosen or "?"))

    @staticmethod
    def _back_since_chosen(ctx: Ctx, removed: list[str]) -> list[str]:
        """The members the forced config removes that answer now (one probe each, right before
        the dangerous command)."""
        return back_since_chosen(ctx, removed)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision, old, forced = forced_for(ctx)
        assert decision.chosen is not None
        api = ctx.backend
        view = ctx.facts.get("view", SetView)
        if self._applied(ctx):
            self._declare(ctx)
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
        self._declare(ctx)
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

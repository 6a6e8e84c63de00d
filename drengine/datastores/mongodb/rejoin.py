"""The steps of mongodb-rejoin: find the member the primary's config lacks, check it holds
no data, add it with a normal reconfig, wait for its initial sync."""

from __future__ import annotations

from pydantic import BaseModel, Field

from drengine.datastores.mongodb.connector import MongoAPI, MongoCommandFailed
from drengine.datastores.mongodb.decisions import (
    RejoinDecision,
    added_config,
    member_line,
    plan_rejoin,
    view_lines,
)
from drengine.datastores.mongodb.ledger import REMOVED
from drengine.datastores.mongodb.setview import (
    RECONFIG_MAX_TIME_MS,
    MemberView,
    ReplConfig,
    SetView,
    command_text,
    reconfig_command,
)
from drengine.datastores.mongodb.stepkit import Ctx
from drengine.errors import StepFailed
from drengine.steps import Action, Effect, NoParams, Proposal, Refusal, Statement, StepParams, StepResult, register


@register
class PlanRejoin(Action[MongoAPI, NoParams]):
    name = "mongodb.plan_rejoin"
    effect = Effect.READ
    outcomes = ("nothing-to-do",)
    description = "Find the primary and the inventory member its config lacks"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="find the primary and the member to add back")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.facts.get("view", SetView)
        decision = plan_rejoin(view, [m.name for m in ctx.cluster.members])
        facts: dict[str, BaseModel] = {"rejoin": decision}
        if decision.primary is None:
            return StepResult(ok=False, summary=decision.reason, facts=facts, evidence=view_lines(view))
        if decision.member is None and "nothing to add" in decision.reason:
            return StepResult(ok=True, outcome="nothing-to-do", summary=decision.reason, facts=facts)
        if decision.member is None:
            return StepResult(ok=False, summary=decision.reason, facts=facts, evidence=view_lines(view))
        return StepResult(ok=True, summary=decision.reason, facts=facts)


# mongod's answers while a safe reconfig cannot start yet (repl_set_commands.cpp,
# replication_coordinator_impl.cpp): both clear by themselves within seconds.
RECONFIG_NOT_YET = {
    308: "its current config is not committed yet (a previous reconfig has not reached a majority of voters, or "
         "the writes of its term are not majority-committed)",
    109: "it is installing a config of its own (a newly added member finished its initial sync)",
    50: "the new config did not reach a majority of voters within maxTimeMS",
}

ROLLBACK_REMINDER = ("if it ever held writes the set rolled back, they are in <dbPath>/rollback/: copy them "
                     "away before emptying the dbPath; they are not replayed automatically")


@register
class CheckWiped(Action[MongoAPI, NoParams]):
    name = "mongodb.check_wiped"
    effect = Effect.CHECK
    description = "Refuse while the member's dbPath still holds data"

    def _where(self, ctx: Ctx) -> tuple[str, str | None, str | None]:
        decision = ctx.facts.get("rejoin", RejoinDecision)
        if decision.member is None:
            raise StepFailed(f"no member to add: {decision.reason}")
        member = ctx.cluster.member(decision.member)
        return decision.member, member.host, member.data_dir

    def propose(self, ctx: Ctx) -> Proposal:
        name, host, data_dir = self._where(ctx)
        stmts = [Statement(name, command_text({"hello": 1}), language="mongodb")]
        if host and data_dir:
            stmts.append(Statement(host, f"ls -A {data_dir}", language="shell"))
        return Proposal(summary=f"check that {name} holds no data (no config, no oplog, empty dbPath)",
                        statements=stmts)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        name, host, data_dir = self._where(ctx)
        member = ctx.backend.probe(name)
        held = ""
        if member.reachable and member.set_name:
            held = f"a replica-set config (set {member.set_name}, version {member.set_version})"
        elif member.reachable and member.state == "REMOVED":
            # replSetGetStatus says its config no longer names it: it kept its old config and data.
            held = "its old replica-set config and data (state REMOVED: the current config no longer names it)"
        elif member.reachable and member.optime is not None and member.optime.term >= 0:
            held = f"an oplog up to {member.optime.show()}"
        if held:
            return StepResult(ok=False, summary=f"{name} still holds {held}", refusal=Refusal(
                observed=f"{name} answers hello with {held}",
                expected="a member started on an empty dbPath: no replica-set config and no oplog",
                why="a member that kept its data rolls back the writes the set does not have, or with its old config "
                    "may elect itself primary; only an empty member resyncs cleanly (initial sync)",
                next_steps=f"stop mongod on {name}, back up its dbPath ({ROLLBACK_REMINDER}), empty it, start mongod "
                           f"and rerun; or override this check",
                risk_if_overridden=f"writes only {name} holds are rolled back (lost unless recovered from rollback/)",
            ))
        if not (host and data_dir):
            return StepResult(ok=False, summary=f"cannot check the dbPath of {name}", refusal=Refusal(
                observed=f"the inventory gives {name} no `host:` and `data_dir:`, so drengine cannot look at its "
                         f"dbPath; over the wire it answers with no replica-set config and no oplog",
                expected="an empty dbPath, checked over the host transport",
                why="a dbPath that still holds data makes the member roll back or diverge instead of resyncing",
                next_steps=f"make sure the dbPath of {name} is empty ({ROLLBACK_REMINDER}), then override this "
                           f"check; or add `host:` and `data_dir:` to the member in the inventory and rerun",
                risk_if_overridden=f"if {name}'s dbPath still holds data, its writes are rolled back or it fails "
                                   f"initial sync",
            ))
        from drengine.transport import member_transport

        transport = member_transport(ctx.inventory, ctx.cluster.name, ctx.cluster.member(name), f"list the dbPath of {name}")
        try:
            result = transport.run(["ls", "-A", data_dir])
        finally:
            transport.close()
        ctx.sent(Statement(host, result.command, language="shell"), result=f"exit {result.exit_status}")
        if not result.ok:
            return StepResult(ok=False, summary=f"cannot list {data_dir} on {host}", refusal=Refusal(
                observed=f"`{result.command}` on {host} exited {result.exit_status}: "
                         f"{(result.stderr or result.stdout).strip()[:300]}",
                expected=f"{data_dir} to exist and be empty",
                why="drengine cannot tell whether the member still holds data",
                next_steps=f"check the path (inventory data_dir of {name}) and the host; or override this check",
                risk_if_overridden=f"if {name}'s dbPath still holds data, its writes are rolled back",
            ))
        entries = [e for e in result.stdout.split("\n") if e]
        if entries:
            shown = ", ".join(entries[:8]) + (f" and {len(entries) - 8} more" if len(entries) > 8 else "")
            rollback = ("; it holds rollback/: copy those files away first, they are writes the set rolled back"
                        if "rollback" in entries else f"; {ROLLBACK_REMINDER}")
            return StepResult(ok=False, summary=f"{data_dir} on {host} is not empty ({len(entries)} entries)",
                              refusal=Refusal(
                observed=f"{data_dir} on {host} holds {shown}",
                expected="an empty dbPath",
                why="a member restarted on its old data rolls back or diverges instead of resyncing" + rollback,
                next_steps=f"stop mongod on {name}, move the contents of {data_dir} aside, start it and rerun; or "
                           f"override this check",
                risk_if_overridden=f"writes only {name} holds are rolled back; it may keep its old config",
            ))
        return StepResult(ok=True, summary=f"{name} answers with no config and no oplog, and {data_dir} on {host} is "
                                           f"empty. Reminder: {ROLLBACK_REMINDER}")


@register
class AddMember(Action[MongoAPI, NoParams]):
    name = "mongodb.add_member"
    effect = Effect.MUTATE
    # It checks the primary's config before sending, so a retry never adds the member twice.
    repeatable = True
    description = "Add the member back by a normal reconfig on the primary (version + 1)"

    def _target(self, ctx: Ctx) -> tuple[RejoinDecision, ReplConfig]:
        decision = ctx.facts.get("rejoin", RejoinDecision)
        if decision.primary is None or decision.member is None:
            raise StepFailed(f"nothing to add: {decision.reason}")
        config = ctx.facts.get("view", SetView).member(decision.primary).config
        if config is None:
            raise StepFailed(f"{decision.primary} returned no config")
        return decision, config

    def propose(self, ctx: Ctx) -> Proposal:
        decision, config = self._target(ctx)
        assert decision.primary is not None
        text = reconfig_command(added_config(config, decision.member_host), False, RECONFIG_MAX_TIME_MS)
        return Proposal(
            summary=f"add {decision.member} ({decision.member_host}) to the set on {decision.primary}",
            reason=f"a normal reconfig (version {config.version} -> {config.version + 1}); the member then copies "
                   f"everything from the set (initial sync)",
            statements=[Statement(decision.primary, text, language="mongodb")],
        )

    def _present(self, ctx: Ctx) -> tuple[bool, ReplConfig | None]:
        decision, _ = self._target(ctx)
        assert decision.primary is not None
        now = ctx.backend.probe(decision.primary).config
        return (now is not None and now.member_with_host(decision.member_host) is not None), now

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return self._present(ctx)[0]

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision, config = self._target(ctx)
        assert decision.primary is not None
        present, now = self._present(ctx)
        if present:
            ctx.undone(REMOVED, decision.member or "")
            return StepResult(ok=True, summary=f"{decision.member} is already in the config; not sent again")
        if now is None or now.version != config.version:
            raise StepFailed(f"{decision.primary}'s config changed since it was observed (version {config.version} -> "
                             f"{now.version if now else 'none'}); rerun so the new config is built on the current one")
        statement = proposal.statements[0]
        try:
            ctx.backend.command(decision.primary, statement.text)
        except MongoCommandFailed as exc:
            ctx.sent(statement, result=f"refused: code {exc.code}")
            if exc.code in RECONFIG_NOT_YET:
                return StepResult(ok=False, summary=f"{decision.primary} cannot take a new config yet: "
                                  f"{RECONFIG_NOT_YET[exc.code]} ({exc}); the step is retried, or rerun in a while")
            raise
        ctx.sent(statement)
        ctx.undone(REMOVED, decision.member or "")
        return StepResult(ok=True, summary=f"{decision.primary} accepted {decision.member} into the config "
                                           f"(version {config.version + 1}); it joins as newlyAdded and gets its vote "
                                           f"once its initial sync is done")


class VerifyMemberParams(StepParams):
    wait: float = Field(default=120.0, gt=0, le=86400, description="seconds to wait for the initial sync")
    poll: float = Field(default=1.0, gt=0, le=60)


@register
class VerifyMember(Action[MongoAPI, VerifyMemberParams]):
    name = "mongodb.verify_member"
    effect = Effect.READ
    Params = VerifyMemberParams
    description = "Wait for the added member to reach SECONDARY"

    def propose(self, ctx: Ctx) -> Proposal:
        decision = ctx.facts.get("rejoin", RejoinDecision)
        return Proposal(summary=f"wait for {decision.member} to finish its initial sync and reach SECONDARY")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        params = self.params
        decision = ctx.facts.get("rejoin", RejoinDecision)
        if decision.member is None:
            raise StepFailed(f"no member was added: {decision.reason}")
        probes: list[MemberView] = []
        name = decision.member

        def secondary() -> bool:
            probes.append(ctx.backend.probe(name))
            return probes[-1].state == "SECONDARY"

        ctx.wait_until(secondary, params.wait, params.poll)
        member = probes[-1]
        if member.state != "SECONDARY":
            seen = member.state if member.reachable else f"unreachable ({member.error})"
            return StepResult(ok=False, evidence=[member_line(member)], summary=(
                f"{decision.member} is {seen} after {params.wait:g} s, expected SECONDARY"
                + (" (STARTUP2: the initial sync is still copying; resume the run later)" if seen == "STARTUP2" else "")))
        summary = f"{decision.member} is SECONDARY at {member.optime.show() if member.optime else '-'}"
        if decision.waiting:
            summary += f"; still to add, one per run: {', '.join(decision.waiting)}"
        return StepResult(ok=True, summary=summary, evidence=[member_line(member)])

"""mongodb-force-primary's last step: exactly one writable primary, proven by a canary write with
w: majority. A primary that steps down while the write waits (189, or refused as no longer primary)
proves nothing either way: the set is observed again and the write repeated, a few times at most."""

from __future__ import annotations

from pydantic import Field

from drengine.datastores.mongodb.connector import MongoAPI, MongoCommandFailed
from drengine.datastores.mongodb.decisions import (
    SurvivorDecision,
    acknowledging_members,
    forced_config,
    member_names,
    survivors_of,
    view_lines,
)
from drengine.datastores.mongodb.setview import COUNT_CANARY, MemberView, SetView, canary_failure
from drengine.datastores.mongodb.stepkit import Ctx, canary
from drengine.errors import ProbeTimeout
from drengine.steps import Action, Effect, GateLevel, Proposal, Statement, StepParams, StepResult, register

# A write that meets a member no longer primary: refused (10107, 13435) or, once written, its wait for
# the write concern failed because the primary stepped down or its term moved on (189, 11602).
NO_LONGER_PRIMARY = frozenset({189, 10107, 11602, 13435})
MAX_STEP_DOWNS = 3


class VerifyParams(StepParams):
    wait: float = Field(default=30.0, gt=0, le=3600, description="seconds to wait for the election")
    # One heartbeat interval (settings.heartbeatIntervalMillis, 2 s): an election takes the
    # election timeout (10 s) and more, and every look probes each member (a hung one costs its timeout).
    poll: float = Field(default=2.0, gt=0, le=60)


def left_out_words(view: SetView, hosts: list[str], primary: str) -> str:
    names = ", ".join(view.name_of(h) for h in hosts)
    return (f"Left out: {names} (arbiter): kept, it would have changed the implicit default write concern, which "
            f"mongod refuses without a cluster-wide default (code 103). To add it back: on {primary}, "
            f"setDefaultRWConcern with the defaultWriteConcern you want, then rs.addArb; until then it must stay "
            f"down (it still holds the old config)")


@register
class VerifyPrimary(Action[MongoAPI, VerifyParams]):
    name = "mongodb.verify_primary"
    effect = Effect.MUTATE
    # It only writes drengine's own heartbeat/canary and reads it back: running it again is harmless.
    repeatable = True
    # It only inserts a marker document into drengine's own canary collection: no confirmation.
    min_gate = GateLevel.NONE
    Params = VerifyParams
    description = "Wait for exactly one writable primary, then write with w: majority"

    def propose(self, ctx: Ctx) -> Proposal:
        decision = ctx.facts.get("survivor", SurvivorDecision)
        target = decision.chosen or "the new primary"
        return Proposal(summary=f"wait for exactly one writable primary (expected {target}); write a canary "
                                f"with w: majority", statements=[
            Statement(target, canary("recovery-check-<run time>", ctx.clock.wall()), language="mongodb"),
            Statement(target, COUNT_CANARY, language="mongodb"),
        ])

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return False  # harmless to repeat: each attempt inserts its own marker

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        params = self.params
        view = ctx.facts.get("view", SetView)
        decision = ctx.facts.get("survivor", SurvivorDecision)
        old = view.newest_config()
        old_version = old.version if old else 0
        removed = []
        left_out = ""
        if old is not None and decision.chosen_host:
            forced = forced_config(old, survivors_of(view, old), decision.chosen_host, member_names(view))
            removed = [view.name_of(h) for h in forced.removed if h not in forced.left_out]
            if forced.left_out:
                left_out = left_out_words(view, forced.left_out, decision.chosen or "the new primary")
        deadline = ctx.clock.now() + params.wait
        stepped_down: list[str] = []
        while True:
            outcome = self._one_canary(ctx, max(params.poll, deadline - ctx.clock.now()), old_version,
                                       len(stepped_down))
            if isinstance(outcome, StepResult):
                return outcome
            primary, now, lost = outcome
            if lost is None:
                break
            # The primary stepped down (or lost its term) while the write waited: the write's fate is
            # unknown and nothing is proven. Observe again: another election may settle it.
            stepped_down.append(f"{primary.name}: {lost}")
            if len(stepped_down) >= MAX_STEP_DOWNS or ctx.clock.now() >= deadline:
                return StepResult(ok=False, evidence=view_lines(now) + stepped_down, summary=(
                    f"the primary stepped down during {len(stepped_down)} canary write(s) within {params.wait:g} s "
                    f"({'; '.join(stepped_down)}): the set is not stable yet, so no w: majority write is proven. "
                    f"Check the members' logs (elections, lost heartbeats), then resume the run"))
        count = ctx.backend.command(primary.name, COUNT_CANARY)
        ctx.sent(Statement(primary.name, COUNT_CANARY, language="mongodb"), result=str(count.get("n", "?")))
        summary = (f"{primary.name} is the one writable primary (setVersion {old_version} -> {primary.set_version}); "
                   f"a w: majority write was acknowledged")
        if stepped_down:
            summary += f" (after {len(stepped_down)} step-down(s) during the write: {'; '.join(stepped_down)})"
        if decision.chosen and primary.name != decision.chosen:
            summary += f" (not {decision.chosen}, the member chosen: check why)"
        if removed:
            summary += (f". Removed from the set: {', '.join(removed)}: they MUST stay down until their dbPath is "
                        f"emptied (copy rollback/ away first) and they are added back with mongodb-rejoin; "
                        f"started with their old config they can elect a second primary")
        if left_out:
            summary += f". {left_out}"
        return StepResult(ok=True, summary=summary, evidence=view_lines(now))

    def _one_canary(self, ctx: Ctx, wait: float, old_version: int,
                    attempt: int) -> StepResult | tuple[MemberView, SetView, str | None]:
        """Wait for exactly one writable primary and write a canary on it: a failed step's result, or
        (primary, view, why the primary lost the write while it waited, None when acknowledged)."""
        api = ctx.backend
        views: list[SetView] = []

        def one_primary() -> bool:
            views.append(api.observe())
            return len([m for m in views[-1].reachable() if m.is_writable_primary]) == 1

        ctx.wait_until(one_primary, wait, self.params.poll)
        now = views[-1]
        primaries = [m for m in now.reachable() if m.is_writable_primary]
        lines = view_lines(now)
        if len(primaries) != 1:
            seen = ", ".join(m.name for m in primaries) or "none"
            return StepResult(ok=False, evidence=lines, summary=(
                f"expected exactly one writable primary within {self.params.wait:g} s, found {seen}. "
                f"{'Two primaries: split brain; stop the one not chosen now. ' if len(primaries) > 1 else ''}"
                f"Check the members' logs, then resume the run"))
        primary = primaries[0]
        if primary.set_version is not None and primary.set_version <= old_version:
            return StepResult(ok=False, evidence=lines, summary=(
                f"setVersion is {primary.set_version}, expected above {old_version} after a forced reconfig"))
        written_at = ctx.clock.wall()
        # Each attempt its own marker: the one before may have reached the new primary already.
        marker = f"recovery-check-{written_at:.3f}" + (f"-{attempt + 1}" if attempt else "")
        insert = Statement(primary.name, canary(marker, written_at), language="mongodb")
        try:
            reply = api.command(primary.name, insert.text)
        except ProbeTimeout as exc:
            ctx.sent(insert, result="no answer")
            return StepResult(ok=False, evidence=lines, summary=(
                f"{primary.name} is primary but did not answer the canary write: {exc}. Check {primary.name} "
                f"(a stopped process, a full disk, a frozen VM), then resume the run"))
        except MongoCommandFailed as exc:
            if exc.code not in NO_LONGER_PRIMARY:
                raise
            ctx.sent(insert, result=f"refused: code {exc.code}")
            return primary, now, f"no longer primary when the canary write arrived (code {exc.code})"
        concern = reply.get("writeConcernError")
        code = concern.get("code") if isinstance(concern, dict) else None
        if code in NO_LONGER_PRIMARY:
            ctx.sent(insert, result=f"written, then writeConcernError {code}")
            assert isinstance(concern, dict)
            return primary, now, (f"{concern.get('errmsg', concern)} (code {code}): the canary was written but may "
                                  f"be rolled back")
        ctx.sent(insert, result=str(reply.get("n", "?")))
        failure = canary_failure(reply)
        if failure:
            return StepResult(ok=False, evidence=lines + acknowledging_members(now, primary), summary=(
                f"{primary.name} is primary but {failure}; a majority of the new set cannot acknowledge writes "
                f"yet"))
        return primary, now, None

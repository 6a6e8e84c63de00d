"""MongoDB replica sets: the pure decisions (is the majority really lost, which survivor,
what forced config) and the steps the MongoDB runbooks name (force a primary after the
majority is lost; add a wiped member back).

A forced reconfig is the vendor's last resort and never something to do from a script on
its own: here it is always a dangerous gate, preceded by checks that refuse while a primary
exists or a voting majority is healthy, and followed by a write with `w: majority`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field

from drengine.datastores.mongodb.connector import (
    COUNT_CANARY,
    MemberView,
    MongoAPI,
    ReplConfig,
    SetView,
    canary_insert_command,
    command_text,
    reconfig_command,
)
from drengine.errors import StepFailed
from drengine.steps import (
    Action,
    Effect,
    Fact,
    GateLevel,
    NoParams,
    Proposal,
    Refusal,
    RunContext,
    Statement,
    StepParams,
    StepResult,
    fact,
    register,
)

# States in which a member holds a complete copy of the data it has replicated so far.
DATA_STATES = ("PRIMARY", "SECONDARY")
MAX_VOTERS = 7

# -- facts -------------------------------------------------------------------------------------------


@fact
class Candidate(Fact):
    name: str
    host: str
    optime: str
    priority: float
    votes: int
    eligible: bool
    note: str = ""


@fact
class SurvivorDecision(Fact):
    chosen: str | None
    chosen_host: str = ""
    reason: str
    ranking: list[Candidate] = Field(default_factory=list)
    risks: list[str] = Field(default_factory=list)
    by_override: bool = False  # a priority-0 member, chosen only if the operator breaks glass


@fact
class ForcedConfig(Fact):
    """The config a forced reconfig would install, and how it differs from the old one."""

    document: str  # the new config as extended JSON
    kept: list[str]  # config hosts
    removed: list[str]
    diff: list[str]


@fact
class RejoinDecision(Fact):
    primary: str | None
    primary_host: str = ""
    member: str | None = None
    member_host: str = ""
    reason: str
    waiting: list[str] = Field(default_factory=list)  # further members to add in later runs


# -- pure decisions ----------------------------------------------------------------------------------


def _votes_of(config: ReplConfig | None, host: str) -> int:
    entry = config.member_with_host(host) if config else None
    return entry.votes if entry else 0


def primaries_seen(view: SetView) -> dict[str, str]:
    """Members believed PRIMARY, by name -> who says so (itself, or a peer's status row)."""
    seen: dict[str, str] = {}
    for m in view.reachable():
        if m.is_writable_primary:
            seen[m.name] = f"{m.name} answers hello with isWritablePrimary: true"
    for m in view.reachable():
        for peer in m.peers:
            if peer.healthy and peer.state == "PRIMARY" and not peer.is_self:
                name = view.name_of(peer.host)
                seen.setdefault(name, f"{m.name} sees {name} ({peer.host}) as PRIMARY in replSetGetStatus")
    return seen


def healthy_majority(view: SetView) -> tuple[str, list[str], int, int] | None:
    """A member that sees a voting majority healthy (itself included): (member, voters, votes,
    needed). Such a set elects a primary by itself."""
    config = view.newest_config()
    if config is None:
        return None
    needed = config.majority()
    for m in view.reachable():
        if not m.peers:
            continue
        healthy = [p.host for p in m.peers if p.healthy]
        votes = sum(_votes_of(config, h) for h in healthy)
        if votes >= needed:
            voters = [view.name_of(h) for h in healthy if _votes_of(config, h)]
            return m.name, voters, votes, needed
    return None


def check_majority_lost(view: SetView) -> Refusal | None:
    """Refuse while any member is PRIMARY (say which) or a voting majority is healthy."""
    primaries = primaries_seen(view)
    if primaries:
        names = ", ".join(sorted(primaries))
        said = "; ".join(primaries[n] for n in sorted(primaries))
        return Refusal(
            observed=f"{names} is PRIMARY ({said})",
            expected="no member in state PRIMARY: the majority is lost and every survivor is SECONDARY",
            why="forcing a new config while a primary exists makes a second primary (split brain): the writes "
                f"{names} accepts and the writes the forced set accepts diverge, and one side's are rolled back",
            next_steps=f"if the applications can reach {names}, there is nothing to recover; if it is on the far "
                       f"side of a partition, stop (fence) it first and rerun; or override this check",
            risk_if_overridden=f"{names} keeps accepting writes that the forced set will never have; when the "
                               f"network heals, one side's writes are rolled back",
        )
    majority = healthy_majority(view)
    if majority is not None:
        who, voters, votes, needed = majority
        return Refusal(
            observed=f"{who} sees {', '.join(voters)} healthy: {votes} votes, and {needed} make a majority",
            expected=f"fewer than {needed} healthy voting members: the majority is lost",
            why="with a healthy voting majority the set elects a primary by itself (within electionTimeoutMillis, "
                "10 s by default); a forced reconfig would throw away members the set still has",
            next_steps="wait a few seconds and observe again (drengine plan), check why no primary was elected "
                       "(priorities, freeze, lag); or override this check",
            risk_if_overridden="members that are healthy now are removed from the set and must be resynced; "
                               "an election already under way may elect a second primary",
        )
    return None


def _config_entry(view: SetView, member: MemberView) -> Any:
    config = view.newest_config()
    return config.member_with_host(member.config_host) if config else None


def choose_survivor(view: SetView) -> SurvivorDecision:
    """The survivor with the highest optime (term, then timestamp). Never an arbiter (it holds
    no data). A member with priority 0 (or no vote, or hidden) is configured never to be
    primary: it is chosen only when no electable survivor exists, and then only by override."""
    config = view.newest_config()
    if config is None:
        return SurvivorDecision(chosen=None, reason="no reachable member returned a replica-set config; "
                                "nothing to choose from. Observed: " + _observed(view))
    rows: list[Candidate] = []
    data: list[tuple[MemberView, Any]] = []
    for m in view.members:
        entry = config.member_with_host(m.config_host)
        if not m.reachable:
            continue
        prio = entry.priority if entry else 0.0
        votes = entry.votes if entry else 0
        note = ""
        if entry is None:
            note = "not in the current config"
        elif entry.arbiter_only or m.arbiter_only:
            note = "an arbiter holds no data"
        elif m.state not in DATA_STATES or m.optime is None:
            note = f"in state {m.state or 'unknown'}: its data is incomplete"
        rows.append(Candidate(name=m.name, host=m.config_host, optime=m.optime.show() if m.optime else "-",
                              priority=prio, votes=votes, eligible=not note, note=note))
        if not note:
            data.append((m, entry))
    if not data:
        return SurvivorDecision(chosen=None, ranking=rows, reason=(
            "no reachable member holds data that can be promoted ("
            + ("; ".join(f"{r.name}: {r.note}" for r in rows) or "no member answered") + ")"))
    order = {m.name: i for i, m in enumerate(view.members)}
    data.sort(key=lambda pair: (pair[0].optime.key() if pair[0].optime else (-1, 0, 0), -order[pair[0].name]),
              reverse=True)
    electable = [(m, e) for m, e in data if e.electable and not e.hidden]
    unreachable = [m.name for m in view.members if not m.reachable]
    risks: list[str] = []
    if unreachable:
        risks.append(f"{', '.join(unreachable)} could not be reached: any writes they hold beyond the chosen "
                     f"member's are lost when they are resynced")
    best, _ = data[0]
    assert best.optime is not None
    if not electable:
        why = ", ".join(f"{m.name} ({_why_not_electable(e)})" for m, e in data)
        return SurvivorDecision(
            chosen=best.name, chosen_host=best.config_host, by_override=True, ranking=rows, risks=risks,
            reason=(f"no survivor may become primary as configured: {why}. {best.name} has the highest optime "
                    f"({best.optime.show()}); if you override, the forced config gives it priority 1 and 1 vote"),
        )
    chosen, _ = electable[0]
    assert chosen.optime is not None
    others = [f"{m.name} at {m.optime.show()}" for m, _ in data if m is not chosen and m.optime]
    reason = f"{chosen.name} has the highest optime among the survivors that may be primary: {chosen.optime.show()}"
    if others:
        reason += "; " + ", ".join(others)
    ahead = [(m, e) for m, e in data if m.optime and m.optime.key() > chosen.optime.key()]
    for m, e in ahead:
        risks.append(f"{m.name} ({_why_not_electable(e)}) holds writes up to {m.optime.show() if m.optime else '-'}, "
                     f"beyond {chosen.name}: they are rolled back into its rollback/ directory")
    skipped = [r for r in rows if not r.eligible]
    if skipped:
        reason += ". Not candidates: " + "; ".join(f"{r.name} ({r.note})" for r in skipped)
    return SurvivorDecision(chosen=chosen.name, chosen_host=chosen.config_host, reason=reason, ranking=rows,
                            risks=risks)


def _why_not_electable(entry: Any) -> str:
    if entry.hidden:
        return "hidden, priority 0"
    if entry.votes == 0:
        return "no vote, priority 0"
    if entry.priority <= 0:
        return "priority 0"
    return f"priority {entry.priority:g}"


def _member_words(m: dict[str, Any]) -> str:
    words = f"priority {float(m.get('priority', 1.0)):g}, votes {int(m.get('votes', 1))}"
    if m.get("arbiterOnly"):
        words += ", arbiter"
    if m.get("hidden"):
        words += ", hidden"
    return words


def forced_config(old_config: ReplConfig, survivors: list[str], chosen: str,
                  names: dict[str, str] | None = None) -> ForcedConfig:
    """Keep only the survivors (config hosts); make sure the chosen one may be elected
    (priority > 0, one vote, not hidden). Returns the new config and a readable diff."""
    names = names or {}
    doc: dict[str, Any] = json.loads(old_config.document)

    def label(host: str) -> str:
        name = names.get(host, host)
        return f"{name} ({host})" if name != host else host

    kept_docs: list[dict[str, Any]] = []
    diff: list[str] = []
    kept: list[str] = []
    removed: list[str] = []
    if chosen not in survivors:
        raise ValueError(f"the chosen member {chosen} is not among the survivors {survivors}")
    for m in doc.get("members", []):
        host = str(m["host"])
        if host not in survivors:
            removed.append(host)
            diff.append(f"- remove {label(host)}: {_member_words(m)}")
            continue
        kept.append(host)
        new = dict(m)
        if host == chosen:
            changes = []
            if float(new.get("priority", 1.0)) <= 0:
                new["priority"] = 1.0
                changes.append(f"priority {float(m.get('priority', 0.0)):g} -> 1")
            if int(new.get("votes", 1)) != 1:
                new["votes"] = 1
                changes.append(f"votes {int(m.get('votes', 0))} -> 1")
            if new.get("hidden"):
                new["hidden"] = False
                changes.append("hidden -> false")
            line = f"  keep {label(host)}: {_member_words(new)}; chosen, to become primary"
            if changes:
                line += " (changed: " + ", ".join(changes) + ")"
            diff.append(line)
        else:
            diff.append(f"  keep {label(host)}: {_member_words(new)}")
        kept_docs.append(new)
    doc["members"] = kept_docs
    # The server replaces the version with a large random jump; send one past the old.
    doc["version"] = old_config.version + 1
    # The term is the server's to set (4.4+); an old one in the document only confuses a reader.
    doc.pop("term", None)
    votes = sum(int(m.get("votes", 1)) for m in kept_docs)
    diff.append(f"version {old_config.version} -> larger (a forced reconfig adds a large random increment); "
                f"voting members {old_config.total_votes()} -> {votes}, majority {votes // 2 + 1}")
    return ForcedConfig(document=json.dumps(doc), kept=kept, removed=removed, diff=diff)


def reconfig_text(config_document: str, force: bool) -> str:
    """The exact admin command document sent: `{"replSetReconfig": {...}, "force": true}`."""
    return reconfig_command(config_document, force)


def survivors_of(view: SetView, config: ReplConfig) -> list[str]:
    """Config hosts of the members drengine reached that the config still names."""
    return [m.config_host for m in view.reachable() if config.member_with_host(m.config_host) is not None]


def plan_rejoin(view: SetView, member_order: list[str]) -> RejoinDecision:
    """The writable primary, and the first inventory member its config does not name."""
    primaries = [m for m in view.reachable() if m.is_writable_primary]
    if len(primaries) != 1:
        seen = ", ".join(m.name for m in primaries) or "none"
        return RejoinDecision(primary=None, reason=(
            f"expected exactly one writable primary to add a member on, found {seen}; "
            f"recover the set first (mongodb-force-primary) or wait for its election"))
    primary = primaries[0]
    config = primary.config
    if config is None:
        return RejoinDecision(primary=None, reason=f"{primary.name} is primary but returned no config")
    missing = [view.member(n) for n in member_order
               if config.member_with_host(view.member(n).config_host) is None
               and config.member_with_host(view.member(n).host) is None]
    if not missing:
        return RejoinDecision(primary=primary.name, primary_host=primary.config_host,
                              reason=f"every inventory member is already in {primary.name}'s config "
                                     f"(version {config.version}): nothing to add")
    reachable = [m for m in missing if m.reachable]
    if not reachable:
        return RejoinDecision(primary=primary.name, primary_host=primary.config_host, reason=(
            f"{', '.join(m.name for m in missing)} are not in the config but do not answer: start mongod on the "
            f"member to add (with an emptied dbPath), then rerun"))
    target = reachable[0]
    waiting = [m.name for m in missing if m is not target]
    reason = (f"{target.name} ({target.host}) is not in {primary.name}'s config (version {config.version}) and "
              f"answers in state {target.state or 'unknown'}")
    if waiting:
        reason += (f"; {', '.join(waiting)} also missing: a normal reconfig adds one voting member at a time, "
                   f"rerun for each")
    return RejoinDecision(primary=primary.name, primary_host=primary.config_host, member=target.name,
                          member_host=target.host, reason=reason, waiting=waiting)


def added_config(config: ReplConfig, host: str) -> str:
    """The primary's config plus the new member (version + 1). Past seven voters it joins
    without a vote (MongoDB's limit)."""
    doc: dict[str, Any] = json.loads(config.document)
    members: list[dict[str, Any]] = list(doc.get("members", []))
    voters = sum(int(m.get("votes", 1)) for m in members)
    new_id = max((int(m["_id"]) for m in members), default=-1) + 1
    entry: dict[str, Any] = {"_id": new_id, "host": host, "priority": 1.0, "votes": 1}
    if voters >= MAX_VOTERS:
        entry.update(priority=0.0, votes=0)
    members.append(entry)
    doc["members"] = members
    doc["version"] = config.version + 1
    doc.pop("term", None)
    return json.dumps(doc)


# -- helpers -----------------------------------------------------------------------------------------


Ctx = RunContext[MongoAPI]


def _observed(view: SetView) -> str:
    return "; ".join(_member_line(m) for m in view.members) or "no members"


def _member_line(m: MemberView) -> str:
    if not m.reachable:
        return f"{m.name} {m.host}: UNREACHABLE ({m.error})"
    line = f"{m.name} {m.host}: {m.state or 'unknown state'}"
    if m.optime is not None:
        line += f", optime {m.optime.show()}"
    if m.config is not None:
        entry = m.config.member_with_host(m.config_host)
        line += f", config version {m.config.version}"
        if entry is not None:
            line += f" (priority {entry.priority:g}, votes {entry.votes}{', arbiter' if entry.arbiter_only else ''})"
    elif not m.set_name:
        line += ", no replica-set config"
    down = [p for p in m.peers if not p.healthy]
    if down:
        line += f"; sees {len(down)} member(s) unreachable"
    return line


def _view_lines(view: SetView) -> list[str]:
    return [_member_line(m) for m in view.members]


def _names(view: SetView) -> dict[str, str]:
    config = view.newest_config()
    return {m.host: view.name_of(m.host) for m in config.members} if config else {}


def _forced_for(ctx: Ctx) -> tuple[SurvivorDecision, ReplConfig, ForcedConfig]:
    view = ctx.facts.get("view", SetView)
    decision = ctx.facts.get("survivor", SurvivorDecision)
    config = view.newest_config()
    if decision.chosen is None or config is None:
        raise StepFailed(f"no survivor was chosen ({decision.reason}); nothing to force")
    forced = forced_config(config, survivors_of(view, config), decision.chosen_host, _names(view))
    return decision, config, forced


def _canary(run_marker: str) -> str:
    return canary_insert_command(run_marker, time.time())




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
        lines = _view_lines(view)
        summary = f"{len(reachable)} of {len(view.members)} members answered in {view.probe_seconds:g} s"
        if not reachable:
            return StepResult(ok=False, summary=f"no member answered: {_observed(view)}", facts={"view": view},
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
        lines = _view_lines(view)
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
                    + ("" if c.eligible else f" (not a candidate: {c.note})") for c in decision.ranking]
        evidence += [f"RISK: {r}" for r in decision.risks]
        facts: dict[str, BaseModel] = {"survivor": decision}
        if decision.chosen is None:
            return StepResult(ok=False, summary=decision.reason, evidence=evidence, facts=facts)
        if decision.by_override:
            return StepResult(ok=False, summary=f"only members configured never to be primary survive; "
                              f"{decision.chosen} would be chosen", evidence=evidence, facts=facts, refusal=Refusal(
                observed=decision.reason,
                expected="a surviving data-bearing member with priority > 0 and a vote",
                why="priority 0 marks a member that must never be primary (a backup, analytics or delayed "
                    "member, or one in another data centre); promoting it may serve stale or partial data",
                next_steps=f"bring back a member that may be primary and rerun; or override this check to promote "
                           f"{decision.chosen} (its priority is raised to 1 in the forced config)",
                risk_if_overridden=f"{decision.chosen} becomes primary although configured never to be; "
                                   f"if it is delayed or behind, recent writes are lost",
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
        decision, old, forced = _forced_for(ctx)
        assert decision.chosen is not None
        view = ctx.facts.get("view", SetView)
        removed = [view.name_of(h) for h in forced.removed]
        risks = list(decision.risks)
        if removed:
            risks.append(f"{', '.join(removed)} are removed from the set: they must stay down until their dbPath is "
                         f"emptied and they are added back (mongodb-rejoin); if one returns with the old config it "
                         f"can elect a second primary")
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
        decision, old, forced = _forced_for(ctx)
        assert decision.chosen is not None
        # One replSetGetConfig rather than a whole probe: this runs right before the dangerous command.
        now = ctx.backend.get_config(decision.chosen)
        return now.version > old.version and sorted(m.host for m in now.members) == sorted(forced.kept)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return self._applied(ctx)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision, old, forced = _forced_for(ctx)
        assert decision.chosen is not None
        api = ctx.backend
        if self._applied(ctx):
            return StepResult(ok=True, summary=f"{decision.chosen} already holds the forced config; not sent again")
        statement = proposal.statements[0]
        api.command(decision.chosen, statement.text)
        ctx.sent(statement)
        version = api.get_config(decision.chosen).version
        return StepResult(ok=True, evidence=forced.diff, summary=(
            f"{decision.chosen} accepted the forced config: version {old.version} -> {version}, members "
            f"{', '.join(ctx.facts.get('view', SetView).name_of(h) for h in forced.kept)}"))


class VerifyParams(StepParams):
    wait: float = Field(default=30.0, gt=0, le=3600, description="seconds to wait for the election")
    poll: float = Field(default=0.5, gt=0, le=60)


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
            Statement(target, _canary("recovery-check-<run time>"), language="mongodb"),
            Statement(target, COUNT_CANARY, language="mongodb"),
        ])

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return False  # harmless to repeat: each attempt inserts its own marker

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        params = self.params
        api = ctx.backend
        view = ctx.facts.get("view", SetView)
        decision = ctx.facts.get("survivor", SurvivorDecision)
        old = view.newest_config()
        old_version = old.version if old else 0
        removed = []
        if old is not None and decision.chosen_host:
            forced = forced_config(old, survivors_of(view, old), decision.chosen_host, _names(view))
            removed = [view.name_of(h) for h in forced.removed]
        views: list[SetView] = []

        def one_primary() -> bool:
            views.append(api.observe())
            return len([m for m in views[-1].reachable() if m.is_writable_primary]) == 1

        ctx.wait_until(one_primary, params.wait, params.poll)
        now = views[-1]
        primaries = [m for m in now.reachable() if m.is_writable_primary]
        lines = _view_lines(now)
        if len(primaries) != 1:
            seen = ", ".join(m.name for m in primaries) or "none"
            return StepResult(ok=False, evidence=lines, summary=(
                f"expected exactly one writable primary within {params.wait:g} s, found {seen}. "
                f"{'Two primaries: split brain; stop the one not chosen now. ' if len(primaries) > 1 else ''}"
                f"Check the members' logs, then resume the run"))
        primary = primaries[0]
        problems = []
        if primary.set_version is not None and primary.set_version <= old_version:
            problems.append(f"setVersion is {primary.set_version}, expected above {old_version} after a forced "
                            f"reconfig")
        if problems:
            return StepResult(ok=False, summary="; ".join(problems), evidence=lines)
        marker = f"recovery-check-{time.time():.3f}"
        insert = Statement(primary.name, _canary(marker), language="mongodb")
        reply = api.command(primary.name, insert.text)
        ctx.sent(insert, result=str(reply.get("n", "?")))
        failure = reply.get("writeConcernError") or (reply.get("writeErrors") or [None])[0]
        if failure:
            return StepResult(ok=False, evidence=lines, summary=(
                f"{primary.name} is primary but the canary write with w: majority failed: "
                f"{failure.get('errmsg', failure)}; a majority of the new set cannot acknowledge writes yet"))
        count = api.command(primary.name, COUNT_CANARY)
        ctx.sent(Statement(primary.name, COUNT_CANARY, language="mongodb"), result=str(count.get("n", "?")))
        summary = (f"{primary.name} is the one writable primary (setVersion {old_version} -> {primary.set_version}); "
                   f"a w: majority write was acknowledged")
        if decision.chosen and primary.name != decision.chosen:
            summary += f" (not {decision.chosen}, the member chosen: check why)"
        if removed:
            summary += (f". Removed from the set: {', '.join(removed)}: they MUST stay down until their dbPath is "
                        f"emptied (copy rollback/ away first) and they are added back with mongodb-rejoin; "
                        f"started with their old config they can elect a second primary")
        return StepResult(ok=True, summary=summary, evidence=lines)


# -- actions: rejoin a wiped member ---------------------------------------------------------------------


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
            return StepResult(ok=False, summary=decision.reason, facts=facts, evidence=_view_lines(view))
        if decision.member is None and "nothing to add" in decision.reason:
            return StepResult(ok=True, outcome="nothing-to-do", summary=decision.reason, facts=facts)
        if decision.member is None:
            return StepResult(ok=False, summary=decision.reason, facts=facts, evidence=_view_lines(view))
        return StepResult(ok=True, summary=decision.reason, facts=facts)


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
        text = reconfig_text(added_config(config, decision.member_host), force=False)
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
            return StepResult(ok=True, summary=f"{decision.member} is already in the config; not sent again")
        if now is None or now.version != config.version:
            raise StepFailed(f"{decision.primary}'s config changed since it was observed (version {config.version} -> "
                             f"{now.version if now else 'none'}); rerun so the new config is built on the current one")
        statement = proposal.statements[0]
        ctx.backend.command(decision.primary, statement.text)
        ctx.sent(statement)
        return StepResult(ok=True, summary=f"{decision.primary} accepted {decision.member} into the config "
                                           f"(version {config.version + 1})")


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
            return StepResult(ok=False, evidence=[_member_line(member)], summary=(
                f"{decision.member} is {seen} after {params.wait:g} s, expected SECONDARY"
                + (" (STARTUP2: the initial sync is still copying; resume the run later)" if seen == "STARTUP2" else "")))
        summary = f"{decision.member} is SECONDARY at {member.optime.show() if member.optime else '-'}"
        if decision.waiting:
            summary += f"; still to add, one per run: {', '.join(decision.waiting)}"
        return StepResult(ok=True, summary=summary, evidence=[_member_line(member)])

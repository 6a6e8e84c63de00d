"""MongoDB replica sets: the pure decisions, each with its reason: is the majority really
lost, which survivor, what forced config; which member to add back and with what config;
and the lines that show a member or the set to the operator."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from drengine.datastores.mongodb.setview import MemberView, ReplConfig, SetView, reconfig_command
from drengine.steps import Fact, Refusal, fact

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
                                "nothing to choose from. Observed: " + observed(view))
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


def observed(view: SetView) -> str:
    return "; ".join(member_line(m) for m in view.members) or "no members"


def member_line(m: MemberView) -> str:
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


def view_lines(view: SetView) -> list[str]:
    return [member_line(m) for m in view.members]


def member_names(view: SetView) -> dict[str, str]:
    config = view.newest_config()
    return {m.host: view.name_of(m.host) for m in config.members} if config else {}



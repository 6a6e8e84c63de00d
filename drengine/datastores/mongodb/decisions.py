"""MongoDB replica sets: the pure decisions, each with its reason: is the majority really
lost, which survivor, what forced config; which member to add back and with what config;
and the lines that show a member or the set to the operator."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from drengine.datastores.mongodb.concerns import (
    arbiter_cost,
    arbiter_left_out,
    implicit_default_change,
    implicit_default_is_majority,
)
from drengine.datastores.mongodb.setview import ConfigMember, MemberView, ReplConfig, SetView, reconfig_command
from drengine.steps import Fact, Refusal, fact

DATA_STATES = ("PRIMARY", "SECONDARY")
Docs = list[dict[str, Any]]
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
    kind: str = ""  # hidden, delayed, non-voting, priority 0... as its config says


@fact
class SurvivorDecision(Fact):
    chosen: str | None
    chosen_host: str = ""
    reason: str
    ranking: list[Candidate] = Field(default_factory=list)
    risks: list[str] = Field(default_factory=list)
    by_override: bool = False  # configured never to be primary: chosen only if the operator breaks glass
    lifted: list[str] = Field(default_factory=list)  # what the forced config changes so it can be elected


@fact
class ForcedConfig(Fact):
    """The config a forced reconfig would install, and how it differs from the old one."""

    document: str  # the new config as extended JSON
    kept: list[str]  # config hosts
    removed: list[str]
    diff: list[str]
    arbiter_cost: str | None = None  # what an arbiter left among the voters costs
    # The implicit default write concern would change and mongod 5.0+ refuses that (code 103)
    # unless a cluster-wide default is set: what it means and what the operator can do.
    default_change: str | None = None
    left_out: list[str] = Field(default_factory=list)  # surviving arbiters left out to keep that default


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


def _candidate_rows(view: SetView, config: ReplConfig) -> tuple[list[Candidate], list[tuple[MemberView, ConfigMember]]]:
    """Every reachable member with why it can or cannot be promoted; and the data-bearing ones."""
    rows: list[Candidate] = []
    data: list[tuple[MemberView, ConfigMember]] = []
    for m in view.reachable():
        entry = config.member_with_host(m.config_host)
        note = ""
        if entry is None:
            note = "not in the current config"
        elif entry.arbiter_only or m.arbiter_only:
            note = "an arbiter holds no data"
        elif m.state not in DATA_STATES or m.optime is None:
            note = f"in state {m.state or 'unknown'}: its data is incomplete"
        rows.append(Candidate(name=m.name, host=m.config_host, optime=m.optime.show() if m.optime else "-",
                              priority=entry.priority if entry else 0.0, votes=entry.votes if entry else 0,
                              kind=entry.kind() if entry else "", eligible=not note, note=note))
        if entry is not None and not note:
            data.append((m, entry))
    return rows, data


def _most_advanced(view: SetView, data: list[tuple[MemberView, ConfigMember]]) -> list[tuple[MemberView, ConfigMember]]:
    """Most advanced first; among equals, a member that may be primary as configured, then the
    inventory's order."""
    order = {m.name: i for i, m in enumerate(view.members)}
    return sorted(data, key=lambda pair: (_key(pair[0]), pair[1].may_be_primary, -order[pair[0].name]), reverse=True)


def _key(member: MemberView) -> tuple[int, int, int]:
    return member.optime.key() if member.optime else (-1, 0, 0)


def choose_survivor(view: SetView) -> SurvivorDecision:
    """The most advanced data-bearing survivor (optime: term, then timestamp); never an arbiter.
    A member configured never to be primary (priority 0, no vote, hidden, delayed) is chosen
    when it is the most advanced, the forced config then lifts what stops it, and the choice
    needs an override: its config said it must not be primary, and the operator decides."""
    config = view.newest_config()
    if config is None:
        return SurvivorDecision(chosen=None, reason="no reachable member returned a replica-set config; "
                                "nothing to choose from. Observed: " + observed(view))
    rows, data = _candidate_rows(view, config)
    if not data:
        return SurvivorDecision(chosen=None, ranking=rows, reason=(
            "no reachable member holds data that can be promoted ("
            + ("; ".join(f"{r.name}: {r.note}" for r in rows) or "no member answered") + ")"))
    ranked = _most_advanced(view, data)
    chosen, entry = ranked[0]
    risks = _unreachable_risk(view)
    reason = _survivor_reason(chosen, entry, ranked, rows)
    if entry.may_be_primary:
        return SurvivorDecision(chosen=chosen.name, chosen_host=chosen.config_host, reason=reason, ranking=rows,
                                risks=risks)
    risks += _never_primary_risks(chosen, entry, ranked)
    return SurvivorDecision(chosen=chosen.name, chosen_host=chosen.config_host, by_override=True, ranking=rows,
                            risks=risks, reason=reason, lifted=lifted_settings(entry))


def _unreachable_risk(view: SetView) -> list[str]:
    unreachable = [m.name for m in view.members if not m.reachable]
    if not unreachable:
        return []
    return [f"{', '.join(unreachable)} could not be reached: any writes they hold beyond the chosen member's are lost "
            f"when they are resynced"]


def _survivor_reason(chosen: MemberView, entry: ConfigMember, ranked: list[tuple[MemberView, ConfigMember]],
                     rows: list[Candidate]) -> str:
    assert chosen.optime is not None
    what = f" ({entry.kind()})" if entry.kind() else ""
    reason = f"{chosen.name}{what} is the most advanced data-bearing survivor: {chosen.optime.show()}"
    others = [f"{m.name}{f' ({e.kind()})' if e.kind() else ''} at {m.optime.show()}" for m, e in ranked[1:] if m.optime]
    if others:
        reason += "; " + ", ".join(others)
    behind_by_design = [m.name for m, e in ranked[1:] if e.secondary_delay_secs]
    if behind_by_design and entry.secondary_delay_secs == 0:
        reason += (f". {', '.join(behind_by_design)} lag(s) behind by design (secondaryDelaySecs): a delayed member "
                   f"is never preferred to a current one that holds more")
    if not entry.may_be_primary:
        reason += (f". Its config says it must never be primary ({entry.kind()}); the forced config changes "
                   f"{', '.join(lifted_settings(entry))} so that it can be")
    skipped = [r for r in rows if not r.eligible]
    if skipped:
        reason += ". Not candidates: " + "; ".join(f"{r.name} ({r.note})" for r in skipped)
    return reason


def _never_primary_risks(chosen: MemberView, entry: ConfigMember,
                         ranked: list[tuple[MemberView, ConfigMember]]) -> list[str]:
    risks = []
    current = [(m, e) for m, e in ranked[1:] if e.may_be_primary and m.optime]
    for m, _ in current:
        assert m.optime is not None and chosen.optime is not None
        risks.append(f"{m.name} may be primary as configured but is behind ({m.optime.show()}, against "
                     f"{chosen.optime.show()}): promoting it instead would lose the writes in between")
    if entry.secondary_delay_secs:
        prefer = ", ".join(m.name for m, e in ranked[1:] if e.secondary_delay_secs == 0) or "no current member"
        risks.append(f"{chosen.name} is a delayed member (secondaryDelaySecs {entry.secondary_delay_secs}): it is "
                     f"preferred to {prefer} only because it holds more; its own data lags the lost primary by up "
                     f"to {entry.secondary_delay_secs} s of writes")
    if entry.hidden or entry.priority <= 0:
        risks.append(f"{chosen.name} was kept from being primary on purpose (a backup, analytics or remote member?): "
                     f"clients that do not know it may not reach it, and its hardware may not carry the load")
    return risks


def lifted_settings(entry: ConfigMember) -> list[str]:
    """What the forced config changes so that this member can be elected."""
    changes = []
    if entry.priority <= 0:
        changes.append(f"priority {entry.priority:g} -> 1")
    if entry.votes != 1:
        changes.append(f"votes {entry.votes} -> 1")
    if entry.hidden:
        changes.append("hidden -> false")
    if entry.secondary_delay_secs:
        changes.append(f"secondaryDelaySecs {entry.secondary_delay_secs} -> 0")
    return changes


def _member_words(m: dict[str, Any]) -> str:
    words = f"priority {float(m.get('priority', 1.0)):g}, votes {int(m.get('votes', 1))}"
    if m.get("arbiterOnly"):
        words += ", arbiter"
    if m.get("hidden"):
        words += ", hidden"
    delay = int(m.get("secondaryDelaySecs", m.get("slaveDelay", 0)) or 0)
    if delay:
        words += f", secondaryDelaySecs {delay}"
    return words


def _electable_copy(m: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The member's config entry changed so that it can be elected, and the changes in words."""
    new = dict(m)
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
    for key in ("secondaryDelaySecs", "slaveDelay"):
        if int(new.get(key, 0) or 0):
            changes.append(f"{key} {int(new[key])} -> 0")
            new[key] = 0
    return new, changes


def _kept_copy(m: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A kept member other than the chosen one. A delayed voter loses its vote: it acknowledges a
    w: majority write only once its delay has passed, so in a small forced set every majority
    write would wait for it (https://www.mongodb.com/docs/manual/core/replica-set-delayed-member/:
    delayed members non-voting "will not count towards acknowledging write operations with
    write concern majority")."""
    new = dict(m)
    delay = int(m.get("secondaryDelaySecs", m.get("slaveDelay", 0)) or 0)
    if delay and int(m.get("votes", 1)) > 0:
        new["votes"] = 0
        new["priority"] = 0.0
        return new, [f"votes {int(m.get('votes', 1))} -> 0: a delayed voter would hold every w: majority write "
                     f"back by {delay} s"]
    return new, []


def forced_config(old_config: ReplConfig, survivors: list[str], chosen: str,
                  names: dict[str, str] | None = None) -> ForcedConfig:
    """Keep only the survivors (config hosts); make sure the chosen one may be elected
    (priority > 0, one vote, not hidden, not delayed). Returns the new config and a readable diff."""
    names = names or {}
    doc: dict[str, Any] = json.loads(old_config.document)

    def label(host: str) -> str:
        name = names.get(host, host)
        return f"{name} ({host})" if name != host else host

    if chosen not in survivors:
        raise ValueError(f"the chosen member {chosen} is not among the survivors {survivors}")
    kept_docs: list[dict[str, Any]] = []
    diff: list[str] = []
    kept: list[str] = []
    removed: list[str] = []
    for m in doc.get("members", []):
        host = str(m["host"])
        if host not in survivors:
            removed.append(host)
            diff.append(f"- remove {label(host)}: {_member_words(m)}")
            continue
        kept.append(host)
        new, changes = _electable_copy(m) if host == chosen else _kept_copy(m)
        line = f"  keep {label(host)}: {_member_words(new)}"
        if host == chosen:
            line += "; chosen, to become primary"
        if changes:
            line += " (changed: " + ", ".join(changes) + ")"
        diff.append(line)
        kept_docs.append(new)
    old_members: list[dict[str, Any]] = doc.get("members", [])
    old_majority = implicit_default_is_majority(old_members)
    down_arbiters = [m for m in old_members if m.get("arbiterOnly") and str(m["host"]) not in survivors]
    kept_docs, dropped, added, default_change = _keeping_the_implicit_default(old_majority, kept_docs, down_arbiters,
                                                                              names)
    left_out = [str(m["host"]) for m in dropped]
    for m in dropped:
        host = str(m["host"])
        kept.remove(host)
        removed.append(host)
        diff[:] = [line for line in diff if not line.startswith(f"  keep {label(host)}:")]
        diff.append(f"- leave out {label(host)}: {_member_words(m)}: {arbiter_left_out(old_majority)}")
    for m in added:
        host = str(m["host"])
        kept.append(host)
        removed.remove(host)
        diff[:] = [line for line in diff if not line.startswith(f"- remove {label(host)}:")]
        diff.append(f"  keep {label(host)}: {_member_words(m)}: down, kept in the config so that the implicit default "
                    f"write concern stays w: 1 (without it mongod 5.0+ refuses the forced config, code 103); the "
                    f"survivors still hold the voting majority, and it takes the new config when it is back")
    doc["members"] = kept_docs
    # The server replaces the version with a large random jump; send one past the old.
    doc["version"] = old_config.version + 1
    # The term is the server's to set (4.4+); an old one in the document only confuses a reader.
    doc.pop("term", None)
    votes = sum(int(m.get("votes", 1)) for m in kept_docs)
    diff.append(f"version {old_config.version} -> larger (a forced reconfig adds a large random increment); "
                f"voting members {old_config.total_votes()} -> {votes}, majority {votes // 2 + 1}")
    return ForcedConfig(document=json.dumps(doc), kept=kept, removed=removed, diff=diff,
                        arbiter_cost=arbiter_cost(kept_docs, names), default_change=default_change,
                        left_out=left_out)


def _keeping_the_implicit_default(old_majority: bool, kept: list[dict[str, Any]], down_arbiters: list[dict[str, Any]],
                                  names: dict[str, str]) -> tuple[Docs, Docs, Docs, str | None]:
    """mongod 5.0+ refuses a config, forced too, that changes the implicit default write concern
    while no cluster-wide default is set (103). Keep it: leave the kept arbiters out (w: "majority"
    kept), or keep arbiters that are down in the config (w: 1 kept) while the survivors still hold
    the voting majority; else say what the change means.
    (members to keep, arbiters left out, down arbiters kept, the change no config avoids)"""
    if implicit_default_is_majority(kept) == old_majority:
        return kept, [], [], None
    data_only = [m for m in kept if not m.get("arbiterOnly")]
    if len(data_only) < len(kept) and implicit_default_is_majority(data_only) == old_majority:
        return data_only, [m for m in kept if m.get("arbiterOnly")], [], None
    alive_votes = sum(1 for m in kept if int(m.get("votes", 1)) > 0)
    for count in range(1, len(down_arbiters) + 1):
        candidate = kept + down_arbiters[:count]
        voters = sum(1 for m in candidate if int(m.get("votes", 1)) > 0)
        if implicit_default_is_majority(candidate) == old_majority and alive_votes >= voters // 2 + 1:
            return candidate, [], down_arbiters[:count], None
    return kept, [], [], implicit_default_change(old_majority, kept, names)


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




def acknowledging_members(view: SetView, primary: MemberView) -> list[str]:
    """Who w: majority waits for on the primary's config: its data-bearing voters, and how each looks."""
    config = primary.config
    if config is None:
        return []
    lines = []
    for entry in config.members:
        if entry.arbiter_only or entry.votes == 0:
            continue
        member = view.by_config_host(entry.host)
        if member is None or not member.reachable:
            lines.append(f"w: majority counts {entry.host}: UNREACHABLE")
            continue
        optime = member.optime.show() if member.optime else "-"
        lines.append(f"w: majority counts {member.name}: {member.state or 'unknown'} at {optime}")
    return lines

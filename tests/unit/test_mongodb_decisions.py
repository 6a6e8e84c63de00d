"""The MongoDB decisions, on hand-built views: no network, assertions on the reasons."""

from __future__ import annotations

import json
from typing import Any

from drengine.datastores.mongodb.decisions import (
    added_config,
    check_majority_lost,
    choose_survivor,
    forced_config,
    plan_rejoin,
    reconfig_text,
    survivors_of,
)
from drengine.datastores.mongodb.setview import MemberView, OpTimeView, PeerStatus, SetView, config_from_json


def config_doc(members: list[dict[str, Any]], version: int = 1) -> str:
    return json.dumps({
        "_id": "rs0", "version": version, "term": 1, "protocolVersion": 1,
        "members": [{"_id": i, "host": f"h{i}:27017", "priority": 1.0, "votes": 1, "arbiterOnly": False,
                     "hidden": False, **m} for i, m in enumerate(members)],
        "settings": {"replicaSetId": {"$oid": "0123456789abcdef01234567"}},
    })


def make_view(states: dict[int, tuple[str, int | None]], members: list[dict[str, Any]] | None = None,
              seen_healthy: dict[int, list[int]] | None = None) -> SetView:
    """states: member index -> (state or 'DOWN' for unreachable, optime seconds or None)."""
    members = members if members is not None else [{} for _ in states]
    cfg = config_from_json(config_doc(members))
    views = []
    for i in range(len(members)):
        state, secs = states.get(i, ("DOWN", None))
        host = f"h{i}:27017"
        if state == "DOWN":
            views.append(MemberView(name=f"m{i}", host=host, reachable=False, error="connection refused"))
            continue
        healthy = set((seen_healthy or {}).get(i, [j for j, (s, _) in states.items() if s != "DOWN"]))
        peers = [PeerStatus(id=j, host=f"h{j}:27017", healthy=j in healthy or j == i,
                            state=(states.get(j, ("DOWN", None))[0] if j in healthy or j == i else "(not reachable/healthy)"),
                            is_self=j == i) for j in range(len(members))]
        views.append(MemberView(
            name=f"m{i}", host=host, reachable=True, me=host, state=state,
            is_writable_primary=state == "PRIMARY", arbiter_only=state == "ARBITER", set_name="rs0", set_version=1,
            optime=None if secs is None else OpTimeView(term=1, seconds=secs, increment=1),
            config=cfg, peers=peers))
    return SetView(cluster="c", members=views, observed_at=0.0)


def test_majority_lost_passes_and_most_advanced_survivor_is_chosen() -> None:
    view = make_view({0: ("SECONDARY", 100), 1: ("SECONDARY", 160)}, [{} for _ in range(5)])
    assert check_majority_lost(view) is None
    decision = choose_survivor(view)
    assert decision.chosen == "m1"
    assert decision.reason.startswith("m1 is the most advanced data-bearing survivor: term 1, 1970-01-01 00:02:40 UTC #1")
    assert "m0 at term 1, 1970-01-01 00:01:40 UTC #1" in decision.reason
    assert any("m2, m3, m4 could not be reached" in r for r in decision.risks)


def test_term_beats_timestamp() -> None:
    # m0 wrote later by the clock, but m1 holds a write from a later term: m1 is ahead.
    view = make_view({0: ("SECONDARY", 900), 1: ("SECONDARY", 100)}, [{} for _ in range(5)])
    members = list(view.members)
    members[1] = members[1].model_copy(update={"optime": OpTimeView(term=2, seconds=100, increment=1)})
    assert choose_survivor(view.model_copy(update={"members": members})).chosen == "m1"


def test_refuses_while_a_primary_exists_and_names_it() -> None:
    view = make_view({0: ("PRIMARY", 100), 1: ("SECONDARY", 100), 2: ("SECONDARY", 100), 3: ("SECONDARY", 90)},
                     [{} for _ in range(5)], seen_healthy={0: [0, 1, 2], 1: [0, 1, 2], 2: [0, 1, 2], 3: [3, 4]})
    refusal = check_majority_lost(view)
    assert refusal is not None
    assert refusal.observed.startswith("m0 is PRIMARY")
    assert "split brain" in refusal.why and "override" in refusal.next_steps
    assert "m0 keeps accepting writes" in refusal.risk_if_overridden


def test_refuses_a_primary_only_a_peer_can_see() -> None:
    # drengine cannot reach m0, but m1 sees it as PRIMARY: a partition between drengine and m0.
    view = make_view({1: ("SECONDARY", 100)}, [{} for _ in range(3)])
    members = list(view.members)
    peers = [p.model_copy(update={"healthy": True, "state": "PRIMARY"}) if p.id == 0 else p for p in members[1].peers]
    members[1] = members[1].model_copy(update={"peers": peers})
    refusal = check_majority_lost(view.model_copy(update={"members": members}))
    assert refusal is not None and "m1 sees m0 (h0:27017) as PRIMARY" in refusal.observed


def test_refuses_while_a_voting_majority_is_healthy() -> None:
    view = make_view({0: ("SECONDARY", 100), 1: ("SECONDARY", 100), 2: ("SECONDARY", 100)}, [{} for _ in range(5)])
    refusal = check_majority_lost(view)
    assert refusal is not None
    assert refusal.observed == "m0 sees m0, m1, m2 healthy: 3 votes, and 3 make a majority"
    assert "elects a primary by itself" in refusal.why


def test_majority_reachable_by_drengine_but_partitioned_from_each_other_is_not_refused() -> None:
    view = make_view({0: ("SECONDARY", 100), 1: ("SECONDARY", 100), 2: ("SECONDARY", 100)}, [{} for _ in range(5)],
                     seen_healthy={0: [0], 1: [1], 2: [2]})
    assert check_majority_lost(view) is None


def test_an_arbiter_is_never_chosen() -> None:
    members = [{}, {"arbiterOnly": True, "priority": 0.0}, {}]
    view = make_view({0: ("SECONDARY", 100), 1: ("ARBITER", None)}, members)
    decision = choose_survivor(view)
    assert decision.chosen == "m0"
    assert "m1 (an arbiter holds no data)" in decision.reason
    only_arbiter = make_view({1: ("ARBITER", None)}, members)
    decision = choose_survivor(only_arbiter)
    assert decision.chosen is None
    assert "no reachable member holds data that can be promoted (m1: an arbiter holds no data)" in decision.reason


def test_priority_zero_only_by_override() -> None:
    members = [{}, {}, {"priority": 0.0}, {"arbiterOnly": True, "priority": 0.0}, {}]
    view = make_view({2: ("SECONDARY", 100), 3: ("ARBITER", None)}, members)
    decision = choose_survivor(view)
    assert decision.chosen == "m2" and decision.by_override
    assert decision.reason.startswith("m2 (priority 0) is the most advanced data-bearing survivor")
    assert "the forced config changes priority 0 -> 1 so that it can be" in decision.reason
    assert decision.lifted == ["priority 0 -> 1"]


def test_a_more_advanced_priority_zero_member_is_chosen_by_override_and_the_loss_of_the_other_named() -> None:
    members = [{}, {"priority": 0.0}, {}]
    view = make_view({0: ("SECONDARY", 100), 1: ("SECONDARY", 200)}, members)
    decision = choose_survivor(view)
    assert decision.chosen == "m1" and decision.by_override
    assert any(r.startswith("m0 may be primary as configured but is behind (term 1, 1970-01-01 00:01:40 UTC #1, against term 1, "
                            "1970-01-01 00:03:20 UTC #1): promoting it instead would lose the writes in between") for r in decision.risks)


def test_at_equal_optimes_a_member_that_may_be_primary_is_preferred() -> None:
    members = [{"priority": 0.0}, {}, {}]
    view = make_view({0: ("SECONDARY", 100), 1: ("SECONDARY", 100)}, members)
    decision = choose_survivor(view)
    assert decision.chosen == "m1" and not decision.by_override


def test_a_hidden_survivor_is_unhidden_and_given_priority() -> None:
    members = [{}, {"hidden": True, "priority": 0.0}, {}]
    view = make_view({1: ("SECONDARY", 100)}, members)
    decision = choose_survivor(view)
    assert decision.chosen == "m1" and decision.by_override
    assert decision.lifted == ["priority 0 -> 1", "hidden -> false"]
    forced = forced_config(view.members[1].config, ["h1:27017"], "h1:27017")  # type: ignore[arg-type]
    entry = json.loads(forced.document)["members"][0]
    assert (entry["hidden"], entry["priority"], entry["votes"]) == (False, 1.0, 1)


def test_a_non_voting_survivor_gets_a_vote() -> None:
    members = [{}, {"votes": 0, "priority": 0.0}, {}]
    view = make_view({1: ("SECONDARY", 100)}, members)
    decision = choose_survivor(view)
    assert decision.chosen == "m1" and decision.by_override
    assert decision.lifted == ["priority 0 -> 1", "votes 0 -> 1"]
    assert "non-voting" in decision.reason


def test_a_delayed_member_is_never_preferred_to_a_current_one_without_saying_so() -> None:
    members = [{"priority": 0.0, "hidden": True, "secondaryDelaySecs": 3600}, {}, {}]
    behind = make_view({0: ("SECONDARY", 100), 1: ("SECONDARY", 200)}, members)
    decision = choose_survivor(behind)
    assert decision.chosen == "m1" and not decision.by_override
    assert "m0 lag(s) behind by design (secondaryDelaySecs)" in decision.reason
    ahead = make_view({0: ("SECONDARY", 300), 1: ("SECONDARY", 200)}, members)
    decision = choose_survivor(ahead)
    assert decision.chosen == "m0" and decision.by_override
    assert "secondaryDelaySecs 3600 -> 0" in decision.lifted
    assert any("m0 is a delayed member (secondaryDelaySecs 3600): it is preferred to m1 only because it holds more"
               in r for r in decision.risks)


def test_an_arbiter_left_among_the_voters_says_what_it_costs() -> None:
    # Three data-bearing voters and an arbiter: the implicit default is already w: 1, so the arbiter stays.
    two_data = [{}, {}, {"arbiterOnly": True, "priority": 0.0}, {}]
    old = config_from_json(config_doc(two_data))
    forced = forced_config(old, ["h0:27017", "h1:27017", "h2:27017"], "h0:27017")
    assert forced.arbiter_cost is not None
    assert "with 2 data-bearing voters, w: majority needs all 2 of them" in forced.arbiter_cost
    assert "majority commit point stalls" in forced.arbiter_cost
    one_data = forced_config(old, ["h0:27017", "h2:27017"], "h0:27017")
    assert one_data.arbiter_cost is not None and "acknowledged by the primary alone" in one_data.arbiter_cost
    # Without the (down) arbiter the implicit default would turn w: "majority": it stays, and costs the same.
    kept_down = forced_config(old, ["h0:27017", "h1:27017"], "h0:27017")
    assert "h2:27017" in kept_down.kept and kept_down.arbiter_cost is not None


def test_an_arbiter_that_would_change_the_implicit_default_write_concern_is_left_out() -> None:
    # Four data-bearing voters and an arbiter: implicit w: "majority" (4 > 3). Keeping the arbiter beside
    # two survivors would make it w: 1 (2 is not above 2), which mongod 5.0+ refuses with code 103.
    members = [{}, {}, {"arbiterOnly": True, "priority": 0.0}, {}, {}]
    old = config_from_json(config_doc(members))
    names = {f"h{i}:27017": f"m{i}" for i in range(5)}
    forced = forced_config(old, ["h0:27017", "h1:27017", "h2:27017"], "h0:27017", names)
    assert forced.kept == ["h0:27017", "h1:27017"] and "h2:27017" in forced.removed
    assert [m["host"] for m in json.loads(forced.document)["members"]] == ["h0:27017", "h1:27017"]
    left_out = [line for line in forced.diff if line.startswith("- leave out m2 (h2:27017)")]
    assert left_out and 'implicit default write concern from w: "majority" into w: 1' in left_out[0]
    assert "setDefaultRWConcern needs a primary" in left_out[0]
    assert forced.arbiter_cost is None and forced.default_change is None


def test_an_arbiter_that_is_down_stays_in_the_config_when_that_keeps_the_implicit_default() -> None:
    # m0, m1, m2 data-bearing, m3 non-voting, m4 an arbiter: implicit w: 1 (3 is not above 3). m0 and m4 are down:
    # {m1, m2, m3} alone would be w: "majority" (103); keeping the arbiter m4 keeps w: 1, and m1 + m2 still
    # hold the voting majority of {m1, m2, m4}.
    members = [{}, {}, {}, {"priority": 0.0, "votes": 0}, {"arbiterOnly": True, "priority": 0.0}]
    old = config_from_json(config_doc(members))
    names = {f"h{i}:27017": f"m{i}" for i in range(5)}
    forced = forced_config(old, ["h1:27017", "h2:27017", "h3:27017"], "h1:27017", names)
    assert [m["host"] for m in json.loads(forced.document)["members"]] == ["h1:27017", "h2:27017", "h3:27017",
                                                                           "h4:27017"]
    assert forced.removed == ["h0:27017"] and forced.default_change is None
    assert any(line.startswith("  keep m4 (h4:27017): priority 0, votes 1, arbiter: down, kept in the config")
               for line in forced.diff)


def test_a_change_of_the_implicit_default_no_config_avoids_is_named() -> None:
    # Primary-secondary-arbiter (implicit w: 1) with the secondary alone left: {m1} alone is w: "majority".
    old = config_from_json(config_doc([{}, {}, {"arbiterOnly": True, "priority": 0.0}]))
    forced = forced_config(old, ["h1:27017"], "h1:27017", {"h1:27017": "m1"})
    assert forced.kept == ["h1:27017"]
    assert forced.default_change is not None
    assert 'from w: 1 into w: "majority"' in forced.default_change and "code 103" in forced.default_change
    assert "start a fresh arbiter" in forced.default_change


def test_members_without_complete_data_are_not_candidates() -> None:
    view = make_view({0: ("STARTUP2", 100), 1: ("SECONDARY", 50)}, [{} for _ in range(5)])
    decision = choose_survivor(view)
    assert decision.chosen == "m1"
    assert "m0 (in state STARTUP2: its data is incomplete)" in decision.reason


def test_forced_config_keeps_survivors_and_shows_the_diff() -> None:
    members = [{}, {}, {"priority": 0.0}, {"arbiterOnly": True, "priority": 0.0}, {"priority": 2.0}]
    old = config_from_json(config_doc(members, version=7))
    names = {f"h{i}:27017": f"m{i}" for i in range(5)}
    forced = forced_config(old, ["h2:27017", "h3:27017"], "h2:27017", names)
    doc = json.loads(forced.document)
    # The arbiter m3 is left out: beside m2 alone it would turn the implicit default write concern into w: 1.
    assert [m["host"] for m in doc["members"]] == ["h2:27017"]
    assert doc["members"][0]["priority"] == 1.0 and doc["members"][0]["votes"] == 1
    assert doc["version"] == 8 and doc["settings"]["replicaSetId"] == {"$oid": "0123456789abcdef01234567"}
    assert forced.removed == ["h0:27017", "h1:27017", "h4:27017", "h3:27017"]
    assert forced.diff[0] == "- remove m0 (h0:27017): priority 1, votes 1"
    assert ("  keep m2 (h2:27017): priority 1, votes 1; chosen, to become primary (changed: priority 0 -> 1)"
            in forced.diff)
    assert any(line.startswith("- leave out m3 (h3:27017): priority 0, votes 1, arbiter: kept, it would turn")
               for line in forced.diff)
    assert "- remove m4 (h4:27017): priority 2, votes 1" in forced.diff
    assert forced.diff[-1].endswith("voting members 5 -> 1, majority 1")


def test_reconfig_text_is_the_exact_command_document() -> None:
    old = config_from_json(config_doc([{}, {}]))
    text = reconfig_text(forced_config(old, ["h1:27017"], "h1:27017").document, force=True)
    cmd = json.loads(text)
    assert list(cmd) == ["replSetReconfig", "force"] and cmd["force"] is True
    assert text.startswith('{"replSetReconfig": {"_id": "rs0", "version": 2')


def test_survivors_are_the_reachable_members_of_the_config() -> None:
    view = make_view({0: ("SECONDARY", 1), 3: ("SECONDARY", 2)}, [{} for _ in range(5)])
    config = view.newest_config()
    assert config is not None
    assert survivors_of(view, config) == ["h0:27017", "h3:27017"]


def test_rejoin_picks_the_member_missing_from_the_primary_config() -> None:
    cfg = config_from_json(config_doc([{}, {}]))
    primary = MemberView(name="m0", host="h0:27017", reachable=True, me="h0:27017", state="PRIMARY",
                         is_writable_primary=True, set_name="rs0", config=cfg)
    wiped = MemberView(name="m2", host="h2:27017", reachable=True, state="STARTUP")
    view = SetView(cluster="c", observed_at=0.0, members=[
        primary, MemberView(name="m1", host="h1:27017", reachable=True, me="h1:27017", state="SECONDARY", config=cfg),
        wiped, MemberView(name="m3", host="h3:27017", reachable=False, error="refused")])
    decision = plan_rejoin(view, ["m0", "m1", "m2", "m3"])
    assert decision.member == "m2" and decision.primary == "m0" and decision.waiting == ["m3"]
    assert "one voting member at a time" in decision.reason
    added = json.loads(added_config(cfg, "h2:27017"))
    assert added["version"] == 2 and added["members"][-1] == {"_id": 2, "host": "h2:27017", "priority": 1.0, "votes": 1}
    no_primary = SetView(cluster="c", observed_at=0.0, members=[wiped])
    assert "expected exactly one writable primary" in plan_rejoin(no_primary, ["m2"]).reason

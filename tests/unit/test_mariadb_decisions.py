"""Which survivor, and why: decisions over views, no I/O."""

from __future__ import annotations

from drengine.datastores.mariadb.actions import choose_survivor, plan_rejoin
from drengine.datastores.mariadb.connector import Channel, ClusterView, ServerView


def replica(name: str, port: int, received: str, applied: str | None = None, **kw: object) -> ServerView:
    applied = applied if applied is not None else received
    return ServerView(
        name=name, address="127.0.0.1", port=port, reachable=True, read_only=True, log_bin=True,
        log_slave_updates=True, gtid_binlog_pos=applied, gtid_slave_pos=applied, gtid_current_pos=applied,
        channels=[Channel(master_host="127.0.0.1", master_port=3001, io_running="Connecting", sql_running="Yes",
                          using_gtid="Slave_Pos", gtid_io_pos=received)],
        **kw,
    )


def dead(name: str, port: int) -> ServerView:
    return ServerView(name=name, address="127.0.0.1", port=port, reachable=False, error="connection refused")


def view(*servers: ServerView) -> ClusterView:
    return ClusterView(cluster="c", servers=list(servers), observed_at=0)


def test_most_received_wins_and_reason_names_both() -> None:
    d = choose_survivor(view(dead("db1", 3001), replica("db2", 3002, "0-1-90"), replica("db3", 3003, "0-1-100")))
    assert d.chosen == "db3"
    assert "db3 has received the most from db1: 0-1-100" in d.reason
    assert "db2 received 0-1-90" in d.reason
    assert d.risks == []
    assert d.catch_up_to == ""


def test_received_beats_applied_and_needs_catch_up() -> None:
    d = choose_survivor(view(dead("db1", 3001), replica("db2", 3002, "0-1-120", "0-1-100"), replica("db3", 3003, "0-1-110")))
    assert d.chosen == "db2"
    assert d.catch_up_to == "0-1-120"
    assert "relay log" in d.reason


def test_tie_on_received_prefers_more_applied() -> None:
    d = choose_survivor(view(dead("db1", 3001), replica("db2", 3002, "0-1-100", "0-1-90"), replica("db3", 3003, "0-1-100")))
    assert d.chosen == "db3"


def test_replica_without_log_slave_updates_is_not_eligible() -> None:
    best = replica("db2", 3002, "0-1-100")
    best = best.model_copy(update={"log_slave_updates": False})
    d = choose_survivor(view(dead("db1", 3001), best, replica("db3", 3003, "0-1-90")))
    assert d.chosen == "db3"
    assert "db2 (log_slave_updates off" in d.reason
    assert any("db2 has transactions db3 lacks" in r for r in d.risks)


def test_unreachable_replica_is_a_data_loss_risk() -> None:
    d = choose_survivor(view(dead("db1", 3001), replica("db2", 3002, "0-1-100"), dead("db3", 3003)))
    assert d.chosen == "db2"
    assert any("db3 could not be reached" in r for r in d.risks)


def test_diverging_domains_pick_most_and_warn() -> None:
    d = choose_survivor(view(dead("db1", 3001), replica("db2", 3002, "0-1-100,1-1-5"), replica("db3", 3003, "0-1-90,1-1-50")))
    assert d.chosen == "db3"
    assert any("db2 has transactions db3 lacks (10 in domain 0)" in r for r in d.risks)


def test_no_replica_reachable_says_what_was_seen() -> None:
    d = choose_survivor(view(dead("db1", 3001), dead("db2", 3002), dead("db3", 3003)))
    assert d.chosen is None
    assert "no reachable replica can be promoted" in d.reason
    assert "db2 (unreachable: connection refused)" in d.reason


def primary(name: str, port: int, pos: str, state: str = "") -> ServerView:
    return ServerView(name=name, address="127.0.0.1", port=port, reachable=True, read_only=False, log_bin=True,
                      log_slave_updates=True, gtid_binlog_pos=pos, gtid_current_pos=pos, gtid_binlog_state=state or pos)


def follower(name: str, port: int, source_port: int, pos: str) -> ServerView:
    s = replica(name, port, pos)
    return s.model_copy(update={"channels": [s.channels[0].model_copy(update={"master_port": source_port, "io_running": "Yes"})]})


def test_rejoin_finds_the_followed_primary_and_the_stray() -> None:
    d = plan_rejoin(view(primary("db1", 3001, "0-1-100"), primary("db2", 3002, "0-2-105", "0-1-100,0-2-105"),
                         follower("db3", 3003, 3002, "0-2-105")))
    assert d.primary == "db2"
    assert [s.name for s in d.strays] == ["db1"]
    assert d.strays[0].errant == {}


def test_rejoin_flags_errant_transactions() -> None:
    # db1 wrote 0-1-101..103 after db2 had taken over at 0-1-100: same domain, lower sequence than
    # db2's 0-2-105, yet errant: only the per-server binlog state shows it.
    d = plan_rejoin(view(primary("db1", 3001, "0-1-103"), primary("db2", 3002, "0-2-105", "0-1-100,0-2-105"),
                         follower("db3", 3003, 3002, "0-2-105")))
    assert d.primary == "db2"
    assert d.strays[0].errant == {0: 3}

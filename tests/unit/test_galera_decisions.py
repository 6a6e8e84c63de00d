"""Galera decisions without I/O: which node to bootstrap, and when to refuse; plus the
parsers of grastate.dat and --wsrep-recover output, and the rendered service commands."""

from __future__ import annotations

import pytest

from drengine.datastores.galera.connector import (
    GaleraView,
    NodeView,
    parse_grastate,
    parse_recovered,
    render_service,
    safe_to_bootstrap_command,
)
from drengine.datastores.galera.decisions import DiskPosition, assess_primary, choose_bootstrap_node, components
from drengine.errors import CommandFailed, InputError
from drengine.inventory import Cluster

UUID = "6f1e4c3a-2b1d-11ef-9a3b-0242ac120002"
OTHER_UUID = "0a0b0c0d-1111-2222-3333-444455556666"


def node(name: str, state: str = "up", status: str = "non-Primary", size: int = 1, committed: int = 100,
         incoming: list[str] | None = None, uuid: str = UUID) -> NodeView:
    port = {"g1": 3316, "g2": 3317, "g3": 3318, "g4": 3319}[name]
    if state != "up":
        return NodeView(name=name, address="127.0.0.1", port=port, state=state, error=f"{state} for the test")
    return NodeView(name=name, address="127.0.0.1", port=port, state="up", cluster_status=status, cluster_size=size,
                    local_state="Synced" if status == "Primary" else "Initialized", last_committed=committed,
                    state_uuid=uuid, incoming=incoming if incoming is not None else [f"127.0.0.1:{port}"])


def view(*nodes: NodeView) -> GaleraView:
    return GaleraView(cluster="c", nodes=list(nodes), observed_at=0.0)


def addr(*names: str) -> list[str]:
    return [f"127.0.0.1:{ {'g1': 3316, 'g2': 3317, 'g3': 3318, 'g4': 3319}[n]}" for n in names]


# -- running nodes -----------------------------------------------------------------------------------


def test_lone_survivor_is_chosen_and_the_dead_are_started_after() -> None:
    d = choose_bootstrap_node(view(node("g1", committed=105), node("g2", "down"), node("g3", "down")))
    assert (d.branch, d.chosen, d.others, d.risks) == ("running", "g1", ["g2", "g3"], [])
    assert d.position == f"{UUID}:105"
    assert d.reason.startswith("g1 is the only node still running (wsrep_last_committed 105)")
    assert "g2, g3 are down; they will be started afterwards and catch up from g1" in d.reason


def test_running_nodes_ranked_by_last_committed_not_by_order() -> None:
    both = addr("g1", "g2", "g3")
    d = choose_bootstrap_node(view(node("g1", size=3, committed=90, incoming=both),
                                   node("g2", size=3, committed=97, incoming=both),
                                   node("g3", size=3, committed=95, incoming=both)))
    assert d.chosen == "g2"
    assert d.reason.startswith("g2 is the most advanced: wsrep_last_committed 97 (wsrep_last_committed); g3 95")
    assert [c.name for c in d.ranking] == ["g2", "g3", "g1"]


def test_a_hung_node_is_a_named_risk() -> None:
    d = choose_bootstrap_node(view(node("g1", committed=104), node("g2", "down"), node("g3", "hung")))
    assert d.chosen == "g1"
    assert len(d.risks) == 1 and d.risks[0].startswith("g3 did not answer (hung: hung for the test); its position is unknown")


def test_gone_members_are_not_started_again() -> None:
    d = choose_bootstrap_node(view(node("g1"), node("g2", "down"), node("g3", "down")), gone=("g3",))
    assert d.others == ["g2"]


# -- refusals --------------------------------------------------------------------------------------------


def test_healthy_cluster_is_nothing_to_do() -> None:
    every = addr("g1", "g2", "g3")
    v = view(*(node(n, status="Primary", size=3, incoming=every) for n in ("g1", "g2", "g3")))
    block = assess_primary(v)
    assert block is not None and block.kind == "healthy"
    assert block.summary.startswith("nothing to do: every node is in a Primary component (g1, g2, g3")
    d = choose_bootstrap_node(v)
    assert d.chosen is None and d.refused == "healthy"


def test_primary_with_dead_nodes_says_restart_them() -> None:
    two = addr("g1", "g2")
    block = assess_primary(view(node("g1", status="Primary", size=2, incoming=two),
                                node("g2", status="Primary", size=2, incoming=two), node("g3", "down")))
    assert block is not None and block.kind == "primary-alive"
    assert block.summary == "a Primary component is alive (g1, g2); g3 is not in it"
    assert "start the missing node(s) normally (with the service's start command on their hosts)" in block.next_steps
    hinted = assess_primary(view(node("g1", status="Primary", size=2, incoming=two),
                                 node("g2", status="Primary", size=2, incoming=two), node("g3", "down")),
                            {"g3": "start-node g3"})
    assert hinted is not None and "(on g3: `start-node g3`)" in hinted.next_steps
    assert "second Primary component" in block.risk


def test_primary_on_one_side_non_primary_on_the_other_is_a_partition() -> None:
    block = assess_primary(view(node("g1", status="Primary", size=2, incoming=addr("g1", "g2")),
                                node("g2", status="Primary", size=2, incoming=addr("g1", "g2")),
                                node("g3", committed=120)))
    assert block is not None and block.kind == "partition-primary"
    assert block.summary == "a partition: g1, g2 are Primary while g3 is non-Primary"
    assert "split brain" in block.risk


def test_two_non_primary_groups_refused() -> None:
    v = view(node("g1", size=2, incoming=addr("g1", "g2")), node("g2", size=2, incoming=addr("g1", "g2")),
             node("g3", size=2, incoming=addr("g3", "g4")), node("g4", size=2, incoming=addr("g3", "g4")))
    assert components(v) == [["g1", "g2"], ["g3", "g4"]]
    block = assess_primary(v)
    assert block is not None and block.kind == "split"
    assert block.summary == "both sides of a partition are non-Primary and each could be bootstrapped: {g1, g2} | {g3, g4}"
    assert choose_bootstrap_node(v).chosen is None


def test_two_lone_non_primary_nodes_with_a_dead_third_are_two_sides() -> None:
    v = view(node("g1", committed=100), node("g2", committed=100), node("g3", "down"))
    assert components(v) == [["g1"], ["g2"]]
    assert assess_primary(v) is not None


def test_without_incoming_addresses_sizes_decide() -> None:
    together = view(node("g1", size=2, incoming=[]), node("g2", size=2, incoming=[]), node("g3", "down"))
    assert components(together) == [["g1", "g2"]] and assess_primary(together) is None
    apart = view(node("g1", size=1, incoming=[]), node("g2", size=1, incoming=[]), node("g3", "down"))
    assert components(apart) == [["g1"], ["g2"]]


def test_override_never_bootstraps_a_node_that_is_already_primary() -> None:
    two = addr("g1", "g2")
    v = view(node("g1", status="Primary", size=2, incoming=two), node("g2", status="Primary", size=2, incoming=two),
             node("g3", "down"))
    d = choose_bootstrap_node(v, overridden=True)
    assert (d.chosen, d.branch, d.refused) == (None, "running", "primary-alive")
    assert d.reason.startswith("nothing to bootstrap: g1, g2 are already Primary")


def test_override_chooses_anyway_and_names_the_risk() -> None:
    v = view(node("g1", committed=100), node("g2", committed=103), node("g3", "down"))
    d = choose_bootstrap_node(v, overridden=True)
    assert d.chosen == "g2"
    assert d.risks[0].startswith("the safety check was overridden: both sides of a partition")


# -- every node down ------------------------------------------------------------------------------------


def all_down() -> GaleraView:
    return view(node("g1", "down"), node("g2", "down"), node("g3", "down"))


def test_all_down_without_positions_asks_for_them() -> None:
    d = choose_bootstrap_node(all_down())
    assert (d.branch, d.chosen) == ("all-down", None)
    assert "The positions saved on disk decide: grastate.dat, then --wsrep-recover where its seqno is -1" in d.reason


def test_all_down_the_third_node_is_most_advanced() -> None:
    disk = [
        DiskPosition(name="g1", uuid=UUID, seqno=100, source="grastate.dat"),
        DiskPosition(name="g2", uuid=UUID, seqno=108, source="--wsrep-recover"),
        DiskPosition(name="g3", uuid=UUID, seqno=112, source="--wsrep-recover"),
    ]
    d = choose_bootstrap_node(all_down(), disk=disk)
    assert (d.branch, d.chosen, d.others, d.safe_to_bootstrap) == ("all-down", "g3", ["g1", "g2"], False)
    assert d.reason == ("g3 is the most advanced: seqno 112 (--wsrep-recover); g2 108 (--wsrep-recover), "
                        "g1 100 (grastate.dat)")
    assert d.risks == []


def test_tie_prefers_safe_to_bootstrap_then_inventory_order() -> None:
    disk = [DiskPosition(name=n, uuid=UUID, seqno=50, source="--wsrep-recover", safe_to_bootstrap=(n == "g3"))
            for n in ("g1", "g2", "g3")]
    assert choose_bootstrap_node(all_down(), disk=disk).chosen == "g3"
    plain = [p.model_copy(update={"safe_to_bootstrap": False}) for p in disk]
    d = choose_bootstrap_node(all_down(), disk=plain)
    assert d.chosen == "g1" and "g2, g3 have the same position: either is safe; g1 comes first in the inventory" in d.reason


def test_a_down_node_of_unknown_position_refuses_unless_gone_or_named() -> None:
    disk = [
        DiskPosition(name="g1", uuid=UUID, seqno=100, source="grastate.dat"),
        DiskPosition(name="g2", error="host host2 is unreachable over SSH"),
        DiskPosition(name="g3", running=True),
    ]
    v = view(node("g1", "down"), node("g2", "unreachable"), node("g3", "hung"))
    d = choose_bootstrap_node(v, disk=disk)
    assert (d.chosen, d.refused) == (None, "unknown")
    assert "the position of g2 is unknown (g2: host host2 is unreachable over SSH)" in d.reason
    # Declared gone, g2 no longer counts; the hung g3 is fenced and compared before the bootstrap.
    d = choose_bootstrap_node(v, disk=disk, gone=("g2",))
    assert d.chosen == "g1"
    assert d.risks == ["g3: its mariadbd still runs but does not answer (hung?): position unknown. It is fenced first, "
                       "and what it saved is compared before the bootstrap"]
    assert choose_bootstrap_node(v, disk=disk, named="g1").chosen == "g1"


def test_no_readable_position_refuses() -> None:
    d = choose_bootstrap_node(all_down(), disk=[DiskPosition(name=n, error="cannot read") for n in ("g1", "g2", "g3")])
    assert d.chosen is None and d.refused == "unknown"


def test_seqnos_of_another_history_are_not_compared() -> None:
    """Issue 21 #2: a stray node at 300 of another history is not ahead of 100 of the cluster's."""
    disk = [DiskPosition(name="g1", uuid=OTHER_UUID, seqno=300, source="grastate.dat"),
            DiskPosition(name="g2", uuid=UUID, seqno=100, source="grastate.dat"),
            DiskPosition(name="g3", uuid=UUID, seqno=101, source="grastate.dat")]
    d = choose_bootstrap_node(all_down(), disk=disk)
    assert d.chosen == "g3" and "different cluster history" in d.risks[0]
    assert d.held == {"g1": OTHER_UUID, "g2": UUID, "g3": UUID}


def test_histories_held_by_as_many_nodes_refuse_unless_named() -> None:
    disk = [DiskPosition(name="g1", uuid=OTHER_UUID, seqno=300, source="grastate.dat"),
            DiskPosition(name="g2", uuid=UUID, seqno=100, source="grastate.dat")]
    v = view(node("g1", "down"), node("g2", "down"))
    d = choose_bootstrap_node(v, disk=disk)
    assert (d.chosen, d.refused) == (None, "histories")
    d = choose_bootstrap_node(v, disk=disk, named="g1")
    assert (d.chosen, d.named) == ("g1", True)


def test_a_running_survivor_behind_a_down_node_refuses() -> None:
    disk = [DiskPosition(name="g2", uuid=UUID, seqno=101, source="--wsrep-recover")]
    v = view(node("g1", committed=100), node("g2", "down"))
    d = choose_bootstrap_node(v, disk=disk)
    assert (d.chosen, d.refused) == (None, "down-ahead")
    assert "g2 is down but its data ends at seqno 101 (--wsrep-recover), past g1's 100" in d.reason
    assert choose_bootstrap_node(v, disk=disk, named="g1").chosen == "g1"
    assert choose_bootstrap_node(v, disk=disk, named="g2").refused == "named"


# -- parsing and rendering -------------------------------------------------------------------------------


def test_parse_grastate() -> None:
    text = f"# GALERA saved state\nversion: 2.1\nuuid:    {UUID}\nseqno:   -1\nsafe_to_bootstrap: 0\n"
    g = parse_grastate(text, "g2")
    assert (g.uuid, g.seqno, g.safe_to_bootstrap) == (UUID, -1, False)
    with pytest.raises(CommandFailed, match="grastate.dat has no uuid or seqno"):
        parse_grastate("garbage", "g2")


def test_parse_recovered_from_mariadbd_and_galera_recovery() -> None:
    log = f"2026-11-26 [Note] WSREP: Recovered position: {UUID}:1234\n"
    assert parse_recovered(log, "g1").seqno == 1234
    assert parse_recovered(f"--wsrep_start_position={UUID}:77\n", "g1").seqno == 77
    with pytest.raises(CommandFailed, match="printed no `Recovered position"):
        parse_recovered("[ERROR] Aborting\n", "g1")


def test_service_commands_quote_inventory_values() -> None:
    cluster = Cluster.model_validate({
        "name": "c", "kind": "galera",
        "service": {"start": "start-node {name} --datadir {data_dir}"},
        "members": [{"name": "g1", "data_dir": "/srv/my data/$(reboot)"}],
    })
    member = cluster.members[0]
    assert render_service(cluster, member, "start").text == "start-node g1 --datadir '/srv/my data/$(reboot)'"
    assert render_service(cluster, member, "bootstrap").text == "galera_new_cluster"  # the systemd default
    assert safe_to_bootstrap_command(member).text == (
        "sed -i 's/^safe_to_bootstrap: *0 *$/safe_to_bootstrap: 1/' '/srv/my data/$(reboot)'/grastate.dat")
    bad = cluster.model_copy(update={"service": cluster.service.model_copy(update={"stop": "stop '{name}'"})})
    with pytest.raises(InputError, match="inside ' quotes"):
        render_service(bad, member, "stop")


def test_probe_errors_say_what_state_the_node_is_in() -> None:
    """The state comes from the exception's type, errno and the timeout that fired, as pymysql
    raises them (the socket error kept as `original_exception` or as the context)."""
    import pymysql

    from drengine.datastores.mysql_pool import classify

    def wrapped(code: int, cause: OSError, kept: bool) -> pymysql.err.OperationalError:
        try:
            try:
                raise cause
            except OSError as exc:
                error = pymysql.err.OperationalError(code, "some text that is not read")
                if kept:
                    error.original_exception = exc
                    raise error from None
                raise error  # noqa: B904 - pymysql raises its own error inside the except block
        except pymysql.err.OperationalError as exc:
            return exc

    refused = wrapped(2003, ConnectionRefusedError(111, "Connection refused"), kept=True)
    assert classify(refused, 2, 5).state == "down" and classify(refused, 2, 5).detail.startswith("error 2003: ")
    no_syn = wrapped(2003, TimeoutError("timed out"), kept=True)
    assert classify(no_syn, 2, 5).detail == "error 2003: no TCP answer within the connect timeout of 2 s (host down or partitioned?)"
    assert classify(no_syn, 2, 5).state == "unreachable"
    stopped = wrapped(2013, TimeoutError("timed out"), kept=False)
    assert classify(stopped, 2, 5).state == "hung"
    closed = pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query (timed out)")
    assert classify(closed, 2, 5).state == "unreachable"  # the words "timed out" alone do not make it hung
    denied = pymysql.err.OperationalError(1045, "Access denied for user 'root'@'127.0.0.1'")
    assert classify(denied, 2, 5).state == "up" and classify(denied, 2, 5).errno == 1045


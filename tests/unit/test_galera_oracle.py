"""The Galera explore kit's oracle, computed from the simulator's nodes alone: which history is
the cluster's, the best bootstrap any recovery could pick, and when a recovery must end DONE."""

from __future__ import annotations

from drengine.datastores.galera.explore import HISTORY, OTHER_HISTORY, best_bootstrap, recovery_possible, revived
from drengine.datastores.galera.sim import SimGalera, SimNode


def cluster(*nodes: tuple[str, str, int, str]) -> SimGalera:
    built = [SimNode(name=name, address="127.0.0.1", port=3306 + i, process=process, seqno=seqno, uuid=uuid)
             for i, (name, process, seqno, uuid) in enumerate(nodes)]
    return SimGalera(nodes=built, state_uuid=HISTORY, last_primary=[n.name for n in built if n.uuid == HISTORY])


def test_the_best_is_the_highest_seqno_of_the_history_most_nodes_hold() -> None:
    sim = cluster(("g1", "killed", 103, HISTORY), ("g2", "killed", 101, OTHER_HISTORY), ("g3", "hung", 104, HISTORY))
    best = best_bootstrap(sim)
    assert (best.history, best.seqno, best.holders) == (HISTORY, 104, ("g3",))
    assert best_bootstrap(sim, gone=("g3",)).holders == ("g1",)


def test_histories_held_by_as_many_nodes_name_no_best() -> None:
    sim = cluster(("g1", "killed", 103, HISTORY), ("g2", "killed", 101, OTHER_HISTORY))
    assert best_bootstrap(sim).history is None
    assert recovery_possible(sim) is None


def test_a_recovery_is_demanded_only_where_no_person_must_decide() -> None:
    every_node_down = cluster(("g1", "killed", 100, HISTORY), ("g2", "stopped", 102, HISTORY),
                              ("g3", "killed", 120, OTHER_HISTORY))
    assert recovery_possible(every_node_down) is not None
    down_ahead_of_the_running = cluster(("g1", "running", 100, HISTORY), ("g2", "killed", 102, HISTORY),
                                        ("g3", "killed", 100, HISTORY))
    assert recovery_possible(down_ahead_of_the_running) is None
    hung_ahead = cluster(("g1", "killed", 100, HISTORY), ("g2", "hung", 102, HISTORY), ("g3", "killed", 100, HISTORY))
    assert recovery_possible(hung_ahead) is None
    hung_behind = cluster(("g1", "killed", 103, HISTORY), ("g2", "hung", 102, HISTORY), ("g3", "killed", 100, HISTORY))
    assert recovery_possible(hung_behind) is not None


def test_revived_wakes_the_hung_nodes_in_a_copy() -> None:
    sim = cluster(("g1", "running", 100, HISTORY), ("g2", "hung", 100, HISTORY))
    assert [n.process for n in revived(sim).nodes] == ["running", "running"]
    assert [n.process for n in sim.nodes] == ["running", "hung"]

"""mongodb-force-primary's verify step when the primary steps down while the canary write waits
(issue 22, item 3): mongod fails the wait with 189; the step observes again and writes again on
the primary elected next, and says what happened; it never claims the first write. Through the
real pymongo connector against the simulator served on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from drengine.clock import SimulatedClock
from drengine.datastores.mongodb.decisions import SurvivorDecision
from drengine.datastores.mongodb.sim import SimMongoBackend
from drengine.datastores.mongodb.simulator import SimulatedReplicaSet, build_scenario
from drengine.datastores.mongodb.simulator.model import OpTime, WriteConcernW
from drengine.datastores.mongodb.simulator.writeconcern import WriteConcernProgress
from drengine.datastores.mongodb.verify import VerifyPrimary
from drengine.datastores.mongodb.wire import WireCluster
from drengine.inventory import load_inventory
from drengine.steps import Facts, Mode, RunContext, Statement
from tests.helpers import ROOT

pytestmark = pytest.mark.sim


class SteppingDown(SimulatedReplicaSet):
    """The set as the scenario built it; the primary of a canary write steps down (forced) the
    first `times` times that write starts waiting, and the lagging members catch up then."""

    times = 1

    def write_concern_progress(self, member_id: int, optime: OpTime, w: WriteConcernW) -> WriteConcernProgress:
        if self.times and self.node(member_id).state.value == "PRIMARY" and any(
                e.ns == "drengine.canary" and e.optime == optime for e in self.node(member_id).oplog):
            self.times -= 1
            self.step_down(member_id, 60, force=True)
            for other in self.member_ids():
                self.lag(other)
        return super().write_concern_progress(member_id, optime, w)


def verify_once(tmp_path: Path, times: int) -> tuple[object, list[tuple[str, str]], SteppingDown]:
    inventory = load_inventory(str(ROOT / "inventory" / "simulated-mongodb.yaml"))
    cluster = inventory.cluster("sim-mongo-healthy")
    clock = SimulatedClock()
    built = build_scenario("healthy-5", clock=clock)
    model = SteppingDown(built.state, clock=clock)
    model.times = times
    wire = WireCluster(model)
    wire.start()
    backend = SimMongoBackend(cluster, model, wire, {m.name: i for i, m in enumerate(cluster.members)},
                              tmp_path / "state.json")
    sent: list[tuple[str, str]] = []
    try:
        view = backend.observe()
        with wire.locked() as live:
            # As after a forced reconfig: the primary's config is newer than the one observed.
            primary = live.primaries()[0]
            config = live.get_config(primary)
            live.reconfig(primary, config.model_copy(update={"version": config.version + 1}))
            for other in live.member_ids():
                if other != primary:
                    live.lag(other, ops=1_000_000)  # the canary waits for a majority
        facts = Facts()
        facts.put("view", view)
        facts.put("survivor", SurvivorDecision(chosen=None, reason="as the set is"))

        def record(statement: Statement, result: str) -> None:
            sent.append((statement.text, result))

        ctx = RunContext(inventory=inventory, cluster=cluster, mode=Mode.RUN, facts=facts, backend=backend,
                         record_statement=record, clock=clock)
        action = VerifyPrimary.build({"wait": 60})
        result = action.run(ctx, action.propose(ctx))
        return result, sent, model
    finally:
        backend.close()
        wire.stop()


def test_a_step_down_during_the_canary_write_is_observed_again_not_claimed(tmp_path: Path) -> None:
    result, sent, model = verify_once(tmp_path, times=1)
    assert getattr(result, "ok", None) is True, result
    summary = str(getattr(result, "summary", ""))
    assert "after 1 step-down(s) during the write" in summary
    assert "Primary stepped down while waiting for replication (code 189)" in summary
    inserts = [(text, outcome) for text, outcome in sent if '"insert"' in text]
    assert len(inserts) == 2
    assert inserts[0][1] == "written, then writeConcernError 189" and inserts[1][1] == "1"
    assert len(model.primaries()) == 1


def test_a_primary_that_keeps_stepping_down_fails_the_step_in_plain_words(tmp_path: Path) -> None:
    result, sent, _ = verify_once(tmp_path, times=5)
    assert getattr(result, "ok", None) is False, result
    summary = str(getattr(result, "summary", ""))
    assert "the primary stepped down during 3 canary write(s)" in summary
    assert "the set is not stable yet, so no w: majority write is proven" in summary
    assert len([t for t, _ in sent if '"insert"' in t]) == 3

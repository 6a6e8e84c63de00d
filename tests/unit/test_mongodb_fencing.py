"""The fence step's decision (issue 25 item 4): a refused connection is not a fence. A removed
member no method stopped is UNFENCED, whether it is down now or not; check-fenced refuses with
what that risks and how to fence it by hand, from the inventory's own templates."""

from __future__ import annotations

from drengine.datastores.mongodb.fencing import FenceOutcome, FenceReport, fence_refusal
from drengine.inventory import Cluster, load_inventory
from tests.helpers import ROOT

INVENTORY = ROOT / "inventory" / "simulated-mongodb.yaml"


def cluster(name: str) -> Cluster:
    return load_inventory(str(INVENTORY)).cluster(name)


REFUSED = FenceOutcome(member="m3", host="mongo3:27017", status="unfenced", down="its port refuses connections",
                       attempts=["sql: failed: it does not answer", "service: not tried (no template)"])
HUNG = FenceOutcome(member="m2", host="mongo2:27017", status="unfenced", attempts=["sql: failed: it does not answer"])
STOPPED = FenceOutcome(member="m4", host="mongo4:27017", status="fenced", method="service",
                       down="its port refuses connections", attempts=["service: ok: down: its service stopped"])


def test_a_member_that_only_refused_a_connection_is_unfenced_not_down() -> None:
    line = REFUSED.line()
    assert line.startswith("m3 (mongo3:27017): UNFENCED (down now: its port refuses connections; but nothing keeps "
                           "it down)"), line
    assert "fenced or down" not in line
    assert HUNG.line().startswith("m2 (mongo2:27017): UNFENCED and not confirmed down (it may still run)")
    assert STOPPED.line().startswith("m4 (mongo4:27017): FENCED by service (down already: its port refuses")
    # A journal of an earlier version said "down" for a refused connection: read back, it is unfenced.
    old = FenceOutcome(member="m3", host="mongo3:27017", status="down")
    assert FenceReport(outcomes=[old]).unfenced() == [old] and "UNFENCED (down now" in old.line()


def test_every_removed_member_fenced_passes() -> None:
    assert fence_refusal(cluster("sim-mongo-hung-removed"), FenceReport(outcomes=[STOPPED])) is None
    assert fence_refusal(cluster("sim-mongo-hung-removed"), FenceReport()) is None


def test_an_unfenced_member_is_refused_with_the_risk_and_how_to_fence_by_hand() -> None:
    refusal = fence_refusal(cluster("sim-mongo-hung-removed"), FenceReport(outcomes=[HUNG, REFUSED, STOPPED]))
    assert refusal is not None
    assert refusal.observed.startswith("UNFENCED: m2 (not confirmed down: it may still run); m3 (down now (its port "
                                       "refuses connections), but nothing keeps it down)"), refusal.observed
    assert "m4" not in refusal.observed
    assert "a refused connection is not a fence" in refusal.why and "second primary" in refusal.why
    # No template in the inventory: the generic commands, for both members at once.
    assert ("m2, m3: `systemctl stop mongod` and `systemctl disable mongod` (so that no reboot starts it), or "
            "`kill -9` of its mongod process") in refusal.next_steps, refusal.next_steps
    assert "override this check" in refusal.next_steps and "`pid_file:`" in refusal.next_steps
    assert refusal.risk_if_overridden.startswith("SPLIT BRAIN if m2, m3 start(s) again")


def test_how_to_fence_by_hand_uses_the_inventorys_templates() -> None:
    base = cluster("sim-mongo-majority-lost")
    members = [m.model_copy(update={"pid_file": f"/var/run/mongodb/{m.name}.pid"}) if m.name == "m3" else m
               for m in base.members]
    refusal = fence_refusal(base.model_copy(update={"members": members}), FenceReport(outcomes=[HUNG, REFUSED]))
    assert refusal is not None
    assert "m2: `systemctl stop mongod@m2`, or `kill -9` of its mongod process" in refusal.next_steps, refusal.next_steps
    assert "m3: `systemctl stop mongod@m3`, or `kill -KILL $(cat /var/run/mongodb/m3.pid)`" in refusal.next_steps

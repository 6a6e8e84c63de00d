"""The fault space of elasticsearch-reallocate, for `drengine explore`: generated clusters
(two to five nodes, one to three indices with one to three shards and zero to two replicas,
delayed allocation at 0, 1m or 5m) after nodes were lost, with allocation left disabled,
a copy gone stale while its node was away, a full disk, recoveries that keep failing: every
unassigned reason the simulator knows (NODE_LEFT, INDEX_CREATED, ALLOCATION_FAILED, and the
deciders behind them). The invariants, computed from the simulator's own shards:

- a primary started on a copy that was not in sync (stale) or on no copy at all (empty)
  only in a step whose dangerous gate the operator approved;
- a finished run (done or failed, both restore first) leaves every setting it changed as
  it found it (allocation enable, delayed timeouts), or names in its verdict the one it could
  not put back, unless the operator skipped the restore;
- the goal (success implies it): every primary assigned, those settings back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from drengine.clock import SimulatedClock
from drengine.datastores.elasticsearch.simulator import EsCluster
from drengine.datastores.elasticsearch.simulator.model import DELAYED_TIMEOUT_SETTING, ENABLE_SETTING, ShardGroup
from drengine.explore.kit import Kit, Ledger, Situation, Violation, Watch, digits, pick
from drengine.explore.scenario import MemberSpec
from drengine.journal import Entry

EPOCH = SimulatedClock().wall()  # the time scenarios are built at: a run's simulated clock starts there
CLUSTER = digits(9)
INDEX = digits(4)
INDICES = ("orders", "customers", "logs")


def _member(i: int) -> MemberSpec:
    return MemberSpec(name=f"node-{i + 1}", address="127.0.0.1", port=9200)


def _docs(cluster: EsCluster, index: str, count: int, start: int = 1) -> None:
    for number in range(start, start + count):
        cluster.index_doc(index, f"doc-{number}", {"n": number})


@st.composite
def nodes_lost(draw: st.DrawFn) -> Situation:
    c = draw(CLUSTER)  # one draw for the cluster, one per index (see kit.digits)
    count = pick(c[0], 3, 2, 4, 5, percent=60)
    cluster = EsCluster("drengine-sim", clock=SimulatedClock())  # its wall time is EPOCH
    cluster.build_instantly()  # the healthy past: copies start at once
    for number in range(1, count + 1):
        cluster.add_node(f"node-{number}", attributes={"zone": f"zone-{(number - 1) % 3 + 1}"})
    indices = []
    for name in INDICES[:pick(c[1], 2, 1, 3, percent=50)]:
        d = draw(INDEX)
        delay = pick(d[0], None, "0", "5m", percent=50)
        cluster.create_index(name, number_of_shards=pick(d[1], 1, 2, 3, percent=50),
                             number_of_replicas=min(pick(d[2], 1, 0, 2, percent=70), count - 1),
                             settings={DELAYED_TIMEOUT_SETTING: delay} if delay else None)
        _docs(cluster, name, pick(d[3], 3, 0, 1, 6, percent=60))
        indices.append(name)
    first = cluster.shard_group(indices[0], 0)
    stale = pick(c[2], False, True, percent=80) and count >= 3 and \
        any(not r.primary and r.node_id for r in first.routings)
    lost: list[str] = []
    if stale:
        # The replica's node dropped out while allocation was held back and missed writes: its copy is
        # stale when it comes back; then the primary's node is lost.
        replica = cluster.node_by_id(next(r.node_id for r in first.routings if not r.primary and r.node_id) or "")
        primary = cluster.node_by_id(first.primary().node_id or "")
        cluster.disable_allocation("primaries")
        cluster.kill_node(replica.name)
        _docs(cluster, indices[0], 2, start=100)
        cluster.return_node(replica.name)
        cluster.kill_node(primary.name)
        cluster.put_cluster_settings(persistent={ENABLE_SETTING: None})
        lost.append(primary.name)
    disabled = pick(c[3], None, "primaries", "none", "new_primaries", percent=75)
    if disabled:
        cluster.disable_allocation(disabled)  # left over from maintenance
    if pick(c[4], False, True, percent=85):
        cluster.disk_full(f"node-{1 + c[4] % count}")
    if pick(c[5], False, True, percent=85):
        cluster.fail_recoveries(indices[-1], 0, 5)  # its next recoveries fail: retries run out
    for number in range(count, 0, -1):
        if len(lost) >= pick(c[6], 1, 2, 0, percent=70) or len(lost) >= count - 1:
            break
        name = f"node-{number}"
        if name not in lost:
            cluster.kill_node(name)
            lost.append(name)
    cluster.build_instantly(False)  # from here on, copies recover at their pace
    label = (f"{count} nodes, indices {', '.join(indices)}, lost {', '.join(lost) or 'none'}"
             f"{', a stale copy' if stale else ''}{f', allocation {disabled}' if disabled else ''}")
    return Situation(label, [_member(i) for i in range(count)], cluster.to_json())


def _settings(cluster: EsCluster) -> dict[str, str | None]:
    """The settings elasticsearch-reallocate may change and must put back."""
    state = cluster.state
    out: dict[str, str | None] = {
        f"persistent {ENABLE_SETTING}": state.persistent.get(ENABLE_SETTING),
        f"transient {ENABLE_SETTING}": state.transient.get(ENABLE_SETTING),
    }
    for name, meta in state.indices.items():
        out[f"{name} {DELAYED_TIMEOUT_SETTING}"] = meta.settings.get(DELAYED_TIMEOUT_SETTING)
    return out


@dataclass(frozen=True)
class Copies:
    """What the watch keeps of a shard between two events."""

    primary_started: bool
    in_sync: frozenset[str]


def _copies(group: ShardGroup) -> Copies:
    return Copies(group.primary().state == "STARTED", frozenset(group.in_sync))


class ElasticWatch(Watch):
    def __init__(self) -> None:
        self.first: dict[str, str | None] | None = None
        self.shards: dict[tuple[str, int], Copies] = {}
        self.dangerous: dict[str, bool] = {}  # step -> its last gate was dangerous and approved
        self.asked: dict[str, str] = {}
        # A primary forced by a reroute command initializes in the step that sent the command and
        # starts when its recovery is done, often in a later step: the approval is the sender's.
        self.forced: dict[tuple[str, int], bool] = {}

    def after_event(self, entry: Entry, model: Any, ledger: Ledger) -> list[Violation]:
        kind, data = entry.type.value, entry.data
        if kind == "gate_asked":
            self.asked[str(data.get("step"))] = str(data.get("level"))
        elif kind == "gate_answered":
            step = str(data.get("step"))
            self.dangerous[step] = data.get("answer") == "proceed" and self.asked.get(step) == "dangerous"
        if model is None:
            return []
        cluster: EsCluster = model
        if self.first is None:
            self.first = _settings(cluster)
        found = []
        for group in cluster.groups():
            key = (group.index, group.shard)
            now, before = _copies(group), self.shards.get(key)
            self.shards[key] = now
            primary = group.primary()
            if primary.state == "INITIALIZING" and primary.recovery is not None and primary.recovery.forced:
                self.forced.setdefault(key, self.dangerous.get(ledger.step, False))
            if before is None or before.primary_started or not now.primary_started:
                continue
            approved = self.forced.pop(key, self.dangerous.get(ledger.step, False))
            node = group.primary().node_id
            copy = group.stores.get(node or "")
            if copy is not None and copy.allocation_id in before.in_sync:
                continue  # an in-sync copy: no data lost
            what = "an empty primary" if copy is None or not copy.docs else "a stale primary"
            if not approved:
                found.append(Violation("elasticsearch.stale-or-empty-only-behind-a-dangerous-gate",
                                       f"{group.index}[{group.shard}] got {what} in step {ledger.step or '-'} without an "
                                       f"approved dangerous gate"))
        return found

    def at_end(self, model: Any, ledger: Ledger, success: bool) -> list[Violation]:
        # Both ends of the runbook restore first; a run stopped on the way has not finished.
        if ledger.ended not in ("done", "failed", "incomplete") or any("restore" in s for s in ledger.skipped):
            return []
        # A setting it could not put back (no master any more, say) must at least be named in its verdict.
        now = _settings(model)
        unsaid = [f"{key} is {now.get(key)!r}, was {value!r}" for key, value in (self.first or {}).items()
                  if now.get(key) != value and key.split(" ", 1)[1] not in ledger.told]
        return [Violation("elasticsearch.settings-restored",
                          f"the run ended {ledger.ended} without putting back, or naming, {'; '.join(unsaid)}")] \
            if unsaid else []

    def restored(self, model: Any) -> str | None:
        if self.first is None:
            return None
        now = _settings(model)
        left = [f"{key} is {now.get(key)!r}, was {value!r}" for key, value in self.first.items() if now.get(key) != value]
        return "; ".join(left) or None


def primaries_goal(model: Any, watch: Watch) -> str | None:
    cluster: EsCluster = model
    red = [f"{g.index}[{g.shard}]" for g in cluster.groups() if g.primary().state != "STARTED"]
    if red:
        return f"primaries unassigned: {', '.join(red)}"
    return watch.restored(model) if isinstance(watch, ElasticWatch) else None


class ElasticKit(Kit):
    kind = "elasticsearch"
    runbooks = ("elasticsearch-reallocate",)
    ops = ("kill", "revive")
    flaps = ("kill",)
    timeouts = {"connect": 1, "read": 5, "catch_up": 5}

    def situations(self, runbook: str) -> st.SearchStrategy[Situation]:
        return nodes_lost()

    def model(self, backend: Any) -> Any:
        return backend.model

    def load(self, state: dict[str, Any]) -> Any:
        return EsCluster.from_json(state, clock=SimulatedClock())

    def copy(self, model: Any) -> Any:
        return model.clone()

    def applies(self, model: Any, op: str, member: str) -> bool:
        alive = bool(model.node(member).alive)
        return alive if op == "kill" else not alive

    def change(self, backend: Any, op: str, member: str) -> None:
        backend.server.with_model(lambda m: m.kill_node(member) if op == "kill" else m.return_node(member))
        backend.save()

    def goal(self, runbook: str, model: Any, watch: Watch) -> str | None:
        return primaries_goal(model, watch)

    def watch(self, runbook: str) -> Watch:
        return ElasticWatch()

    def mutating(self, language: str, text: str) -> bool:
        return not text.lstrip().upper().startswith(("GET ", "HEAD "))

    def once(self, language: str, text: str) -> bool:
        # Allocating a stale or empty primary throws the other copies' data away.
        return "allocate_stale_primary" in text or "allocate_empty_primary" in text


KIT = ElasticKit()


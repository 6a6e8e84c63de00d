"""The fault space of elasticsearch-reallocate, for `drengine explore`: generated clusters
(two to five nodes, one to three indices with one to three shards and zero to two replicas,
delayed allocation at 0, 1m or 5m) after nodes were lost, with allocation left disabled,
several copies gone stale at different times while their nodes were away (which node holds
the fullest copy is independent of the node names), copies whose store cannot be opened, a
forced primary whose recovery fails (no copy is in sync after it), a full disk, recoveries that keep failing: every unassigned reason the simulator knows. Where
several stale copies are candidates, some scenarios carry the operator's choice
(`--input stale_copy=index[shard]=node`), the best copy or another.

The invariants compare what the run did with the oracle (`oracle.py`, from the simulator's own
copies, never from the runbook's planning):
- a forced primary (stale or empty) is the best any recovery could do from the copies in the
  cluster at that moment (no in-sync copy there; the stale copy holding the most documents;
  an empty one only without a readable copy), unless the operator named that copy; a copy
  the operator named for the shard is the one forced; and only behind an approved dangerous gate;
- a finished run leaves every setting it changed (allocation enable, delayed timeouts) as it
  found it, or names in its verdict the one it could not put back;
- liveness: from a state where the oracle says every primary can be assigned (no choice among
  several stale copies left to the operator), a run with every gate approved ends DONE;
- the goal (success implies it): every primary assigned, those settings back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from drengine.clock import SimulatedClock
from drengine.datastores.elasticsearch.oracle import ShardCopies, copies_of, recovery_possible, red_shards
from drengine.datastores.elasticsearch.simulator import EsCluster
from drengine.datastores.elasticsearch.simulator.model import (
    DELAYED_TIMEOUT_SETTING,
    ENABLE_SETTING,
    INITIALIZING,
    REPLICAS_SETTING,
    STARTED,
    Recovery,
    ShardGroup,
)
from drengine.explore.kit import Kit, Ledger, Situation, Violation, Watch, digits, pick
from drengine.explore.scenario import MemberSpec
from drengine.journal import Entry

EPOCH = SimulatedClock().wall()  # the time scenarios are built at: a run's simulated clock starts there
CLUSTER = digits(9)
INDEX = digits(4)
STALE = digits(12)
INDICES = ("orders", "customers", "logs")
STALE_INPUT = "stale_copy"
CORRUPT = ("corrupt_index_exception",
           "CorruptIndexException[checksum failed (hardware problem?) : expected=1f8a8c3 actual=9b02e5d1 "
           "(resource=BufferedChecksumIndexInput(NIOFSIndexInput(path=\"_0.cfs\")))]")


def _member(i: int) -> MemberSpec:
    return MemberSpec(name=f"node-{i + 1}", address="127.0.0.1", port=9200)


def _docs(cluster: EsCluster, index: str, count: int, start: int = 1) -> None:
    for number in range(start, start + count):
        cluster.index_doc(index, f"doc-{number}", {"n": number})


def _go_stale(cluster: EsCluster, index: str, d: list[int]) -> str:
    """The replicas' nodes leave one after another while replica allocation is held back, each
    missing the writes from then on, and come back with their copy stale; then the primary's node
    is lost. The order they leave in (so which copy is fullest) is drawn apart from their names;
    some leave at the same moment (copies as full as each other); a copy may be unreadable."""
    group = cluster.shard_group(index, 0)
    replicas = [cluster.node_by_id(r.node_id).name for r in group.routings if not r.primary and r.node_id]
    primary = cluster.node_by_id(group.primary().node_id or "")
    leaving = sorted(replicas, key=lambda name: d[replicas.index(name)])
    cluster.disable_allocation("primaries")
    written = 100
    for i, name in enumerate(leaving):
        cluster.kill_node(name)
        gap = pick(d[3 + i], 2, 1, 0, 4, percent=50)
        _docs(cluster, index, gap, start=written)
        written += gap
        cluster.return_node(name)
    cluster.kill_node(primary.name)
    cluster.put_cluster_settings(persistent={ENABLE_SETTING: None})
    for i, name in enumerate(replicas):
        if pick(d[6 + i], False, True, percent=85):
            group.stores[cluster.node(name).id].unreadable = CORRUPT
    if pick(d[11], False, True, percent=80):
        # A copy that reads fine but is found corrupt while it recovers: the forced primary fails.
        cluster.fail_recoveries(index, 0, 1)
    return primary.name


def _operator_choice(cluster: EsCluster, d: list[int]) -> dict[str, str]:
    """Where a red shard has several readable stale copies, the operator may name one: the
    fullest, or another (an explicit choice the run must follow)."""
    choices = []
    for copies in red_shards(cluster).values():
        if len(copies.stale) < 2 or copies.in_sync_here or not pick(d[9], True, False, percent=50):
            continue
        best = [name for name, docs in copies.stale if docs == copies.fullest()]
        node = pick(d[10], best[0], *[name for name, _ in copies.stale], percent=50)
        choices.append(f"{copies.label}={node}")
    return {STALE_INPUT: ",".join(choices)} if choices else {}


@st.composite
def nodes_lost(draw: st.DrawFn) -> Situation:
    c = draw(CLUSTER)  # one draw for the cluster, one per index (see kit.digits)
    count = pick(c[0], 4, 3, 2, 5, percent=40)
    cluster = EsCluster("drengine-sim", clock=SimulatedClock())  # its wall time is EPOCH
    cluster.build_instantly()  # the healthy past: copies start at once
    for number in range(1, count + 1):
        cluster.add_node(f"node-{number}", attributes={"zone": f"zone-{(number - 1) % 3 + 1}"})
    stale = count >= 3 and pick(c[2], False, True, percent=55)
    indices: list[str] = []
    names = INDICES[:pick(c[1], 2, 1, 3, percent=50)]
    failing = pick(c[5], False, True, percent=80)
    for name in names:
        d = draw(INDEX)
        # The copies that keep failing to recover fail at once (no delayed allocation holds them back):
        # their retries are used up before the run.
        delay = "0" if failing and name == names[-1] else pick(d[0], None, "0", "5m", percent=50)
        first = not indices
        replicas = max(1, min(3, count - 2) - (d[2] >= 75)) if first and stale else \
            min(pick(d[2], 1, 0, 2, percent=70), count - 1)
        cluster.create_index(name, number_of_shards=1 if first and stale else pick(d[1], 1, 2, 3, percent=50),
                             number_of_replicas=replicas,
                             settings={DELAYED_TIMEOUT_SETTING: delay} if delay else None)
        _docs(cluster, name, pick(d[3], 3, 0, 1, 6, percent=60))
        indices.append(name)
    lost: list[str] = []
    inputs: dict[str, str] = {}
    if stale:
        s = draw(STALE)
        lost.append(_go_stale(cluster, indices[0], s))
    if failing:
        _fail_a_replica(cluster, indices[-1], lost)
    disabled = pick(c[3], None, "primaries", "none", "new_primaries", percent=75)
    if disabled:
        cluster.disable_allocation(disabled)  # left over from maintenance
    if pick(c[4], False, True, percent=85):
        cluster.disk_full(f"node-{1 + c[4] % count}")
    for name in [f"node-{number}" for number in range(count, 0, -1)]:
        if len(lost) >= pick(c[6], 1, 2, 0, percent=70) or len(lost) >= count - 1:
            break
        if name not in lost:
            cluster.kill_node(name)
            lost.append(name)
    if stale:
        inputs = _operator_choice(cluster, s)
    cluster.build_instantly(False)  # from here on, copies recover at their pace
    label = (f"{count} nodes, indices {', '.join(indices)}, lost {', '.join(lost) or 'none'}"
             f"{'; ' + _stale_words(cluster) if stale else ''}{f', allocation {disabled}' if disabled else ''}")
    return Situation(label, [_member(i) for i in range(count)], cluster.to_json(), inputs=inputs)


def _fail_a_replica(cluster: EsCluster, index: str, lost: list[str]) -> None:
    """The next recoveries of the index's first shard fail (a copy that cannot be read, a network
    that drops them): where its replica's node is lost, they fail at once and use up the shard's
    retries before the run."""
    cluster.fail_recoveries(index, 0, 5)
    group = cluster.shard_group(index, 0)
    holder = next((cluster.node_by_id(r.node_id).name for r in group.routings if not r.primary and r.node_id), None)
    alive = sum(n.alive for n in cluster.state.nodes)
    if holder is not None and holder not in lost and (alive - 1) * 2 > len(cluster.state.nodes):
        cluster.kill_node(holder)
        lost.append(holder)


def _stale_words(cluster: EsCluster) -> str:
    words = []
    for copies in red_shards(cluster).values():
        held = [f"{n} {d} docs" for n, d in copies.stale] + [f"{n} unreadable" for n in copies.unreadable]
        words.append(f"{copies.label} red, copies: {', '.join(held) or 'none'}"
                     + (f", in sync on {', '.join(copies.in_sync_away)} (lost)" if copies.in_sync_away else ""))
    return "; ".join(words) or "no red shard"


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


def named_copies(ledger: Ledger) -> dict[str, str]:
    """The operator's `--input stale_copy=...`: shard label -> node ("" for a bare node name,
    which the runbook takes for the only shard waiting for a choice)."""
    named: dict[str, str] = {}
    for part in (p.strip() for p in ledger.inputs.get(STALE_INPUT, "").split(",") if p.strip()):
        label, sep, node = part.partition("=")
        named[label.strip() if sep else ""] = (node if sep else label).strip()
    return named


@dataclass(frozen=True)
class Forced:
    """A primary forced by a reroute command, as the watch sees it initialize (or started already)."""

    kind: str  # "stale" or "empty"
    node: str
    key: tuple[str, int, str, float]  # shard, allocation id and start: each forced allocation once


def _forced(cluster: EsCluster, group: ShardGroup) -> Forced | None:
    primary = group.primary()
    recovery: Recovery | None = primary.recovery if primary.state == INITIALIZING else \
        primary.last_recovery if primary.state == STARTED else None
    if recovery is None or not recovery.forced or primary.node_id is None:
        return None
    return Forced("empty" if recovery.type == "empty_store" else "stale", cluster.node_by_id(primary.node_id).name,
                  (group.index, group.shard, recovery.allocation_id, recovery.started_at))


class ElasticWatch(Watch):
    def __init__(self) -> None:
        self.first: dict[str, str | None] | None = None
        self.red: dict[tuple[str, int], ShardCopies] = {}  # the red shards' copies, as last seen
        self.judged: set[tuple[str, int, str, float]] = set()
        self.dangerous: dict[str, bool] = {}  # step -> its last gate was dangerous and approved
        self.asked: dict[str, str] = {}

    def world(self, model: Any, what: str) -> None:
        # A node the explorer brought back (or took away) changes which copies a run could use.
        self.red = red_shards(model)

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
            forced = _forced(cluster, group)
            if forced is None or forced.key in self.judged:
                continue
            self.judged.add(forced.key)
            found += self._judge(cluster, group, forced, ledger)
        self.red = red_shards(cluster)
        return found

    def _judge(self, cluster: EsCluster, group: ShardGroup, forced: Forced, ledger: Ledger) -> list[Violation]:
        key = (group.index, group.shard)
        copies = self.red.get(key) or copies_of(cluster, group)
        found = []
        what = f"{copies.label} got a forced {forced.kind} primary on {forced.node} in step {ledger.step or '-'}"
        if not self.dangerous.get(ledger.step, False):
            found.append(Violation("elasticsearch.stale-or-empty-only-behind-a-dangerous-gate",
                                   f"{what} without an approved dangerous gate"))
        named = named_copies(ledger)
        choice = named.get(copies.label) or (named.get("") if len(self.red) <= 1 else None)
        if choice and choice != forced.node:
            found.append(Violation("elasticsearch.operator-choice-followed",
                                   f"{what}, but the operator chose the copy on {choice}"))
        worse = copies.judge(forced.kind, forced.node)
        if worse is not None and choice != forced.node and not ledger.overrode(ledger.step):
            found.append(Violation(worse[0], worse[1]))
        return found

    def at_end(self, model: Any, ledger: Ledger, success: bool) -> list[Violation]:
        # Both ends of the runbook restore first; a run stopped on the way has not finished.
        if ledger.ended not in ("done", "failed", "incomplete") or any("restore" in s for s in ledger.skipped):
            return []
        # A setting it could not put back (no master any more, say) must at least be named in its verdict.
        now = _settings(model)
        unsaid = [f"{key} is {now.get(key)!r}, was {value!r}" for key, value in (self.first or {}).items()
                  if now.get(key) != value and not _lifted(key, now.get(key)) and key.split(" ", 1)[1] not in ledger.told]
        return [Violation("elasticsearch.settings-restored",
                          f"the run ended {ledger.ended} without putting back, or naming, {'; '.join(unsaid)}")] \
            if unsaid else []

    def restored(self, model: Any) -> str | None:
        if self.first is None:
            return None
        now = _settings(model)
        left = [f"{key} is {now.get(key)!r}, was {value!r}" for key, value in self.first.items()
                if now.get(key) != value and not _lifted(key, now.get(key))]
        return "; ".join(left) or None


def _lifted(key: str, now: str | None) -> bool:
    """Allocation left enabled for everything: what lets the cluster heal, kept as the run's goal
    instead of putting back the restrictive value that caused the outage (issue 25, item 5)."""
    return key.endswith(ENABLE_SETTING) and now in ("all", None)


def primaries_goal(model: Any, watch: Watch) -> str | None:
    cluster: EsCluster = model
    red = [f"{g.index}[{g.shard}]" for g in cluster.groups() if g.primary().state != STARTED]
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

    def ledger_changes(self, runbook: str, start: Any, end: Any) -> list[tuple[str, str, str]] | None:
        """Settings the run changed and did not put back (drengine/datastores/elasticsearch/ledger.py):
        the delayed timeout, cluster.routing.allocation.enable, replica counts lowered."""
        # The ledger's kind names, written here rather than imported: the explorer stays apart from
        # the runbook's own modules (the ledger's declarations import its planning).
        delay, enable, replicas = "elasticsearch.delayed_timeout", "elasticsearch.allocation", "elasticsearch.replicas"
        before, after = start.state, end.state
        found = []
        for name, index in after.indices.items():
            old = before.indices.get(name)
            if old is None:
                continue
            key = DELAYED_TIMEOUT_SETTING
            if index.settings.get(key) != old.settings.get(key):
                found.append((delay, f"{name} {key}",
                              f"{key} of {name} is {index.settings.get(key)!r} (was {old.settings.get(key)!r})"))
            if index.number_of_replicas < old.number_of_replicas:
                found.append((replicas, f"{name} {REPLICAS_SETTING}",
                              f"{name} has {index.number_of_replicas} replica(s) (was {old.number_of_replicas})"))
        for scope in ("persistent", "transient"):
            now, was = getattr(after, scope).get(ENABLE_SETTING), getattr(before, scope).get(ENABLE_SETTING)
            if now != was:
                found.append((enable, f"cluster {ENABLE_SETTING}", f"{scope} {ENABLE_SETTING} is {now!r} (was {was!r})"))
        return found

    def watch(self, runbook: str) -> Watch:
        return ElasticWatch()

    def expect_done(self, runbook: str, start: Any) -> str | None:
        return recovery_possible(start)

    def mutating(self, language: str, text: str) -> bool:
        return not text.lstrip().upper().startswith(("GET ", "HEAD "))

    def once(self, language: str, text: str) -> bool:
        # Allocating a stale or empty primary throws the other copies' data away.
        return "allocate_stale_primary" in text or "allocate_empty_primary" in text


KIT = ElasticKit()

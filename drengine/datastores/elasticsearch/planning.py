"""The reallocation plan: what to do about every unassigned copy, least risky first, as
small pure functions with reasons; and the requests that carry the plan out or undo it."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from drengine.datastores.elasticsearch.calls import (
    DELAY_SETTING,
    ENABLE_SETTING,
    REPLICAS_SETTING,
    HttpCall,
    put_cluster_settings_call,
    put_index_settings_calls,
)
from drengine.datastores.elasticsearch.diagnosis import (
    ExplanationIndex,
    absent_members,
    decider_words,
    no_deciders,
    node_name,
    stale_copies,
    unreadable_copies,
)
from drengine.datastores.elasticsearch.esview import EsView, Explanation, IndexInfo, ShardCopy
from drengine.steps import Fact, fact

Status = Literal["green", "yellow", "red"]


@fact
class SettingChange(Fact):
    scope: Literal["persistent", "transient", "index"]
    target: str  # "cluster" or an index name
    key: str
    old: str | None  # None: not set before (Elasticsearch's default applied)
    new: str | None


@fact
class SettingChanges(Fact):
    changes: list[SettingChange] = []


@fact
class ReplicaAssignment(Fact):
    index: str
    shard: int
    node: str


@fact
class PrimaryChoice(Fact):
    index: str
    shard: int
    node: str  # "" while the operator has not chosen among several stale copies
    kind: Literal["stale", "empty"]
    lost: str
    # Stale copies: every candidate, with what Elasticsearch shows of it; and copies it cannot read.
    candidates: list[str] = []
    candidate_nodes: list[str] = []
    unreadable: list[str] = []
    chosen_by: Literal["only copy", "operator", ""] = ""

    @property
    def label(self) -> str:
        return f"{self.index}[{self.shard}]"


@fact
class PrimariesDone(Fact):
    done: list[PrimaryChoice] = []


@fact
class ReallocationPlan(Fact):
    """What the run will do, in order of risk, and what it leaves as is (and why)."""

    reason: str
    departed: list[str] = []  # ids of nodes unassigned copies left from, no longer in the cluster
    absent_members: list[str] = []  # inventory members not in the cluster
    gone_confirmed: bool = False
    shorten_delay: list[SettingChange] = []
    enable: SettingChange | None = None
    retry_failed: list[str] = []
    allocate_replicas: list[ReplicaAssignment] = []
    lower_replicas: list[SettingChange] = []
    stale_primaries: list[PrimaryChoice] = []
    empty_primaries: list[PrimaryChoice] = []
    waiting: list[str] = []
    expected_status: Status = "green"
    notes: list[str] = []

    @property
    def dangerous(self) -> bool:
        return bool(self.stale_primaries or self.empty_primaries)


def is_zero_delay(value: str) -> bool:
    return value.strip().lower() in ("0", "0s", "0ms", "0m", "0h", "0d", "-1")


def _least_loaded(view: EsView, exclude: frozenset[str] = frozenset()) -> str | None:
    load = Counter(s.node for s in view.shards if s.node)
    candidates = [n.name for n in view.data_nodes() if n.name not in exclude]
    return min(candidates, key=lambda name: (load[name], name)) if candidates else None


def _delay_change(info: IndexInfo) -> SettingChange:
    return SettingChange(scope="index", target=info.name, key=DELAY_SETTING,
                         old=info.delayed_timeout if info.delayed_timeout_set else None, new="0")


@dataclass(frozen=True)
class Departures:
    """Which nodes left, which inventory members are absent, and whether the operator declared
    the departed ones gone for good."""

    live_ids: frozenset[str]
    departed: list[str]  # ids of nodes unassigned copies left from, no longer in the cluster
    absent: list[str]  # inventory members not in the cluster
    gone_confirmed: bool
    notes: list[str]

    @property
    def words(self) -> str:
        return ", ".join(self.absent) if self.absent else "the node that left"


def departures(view: EsView, gone_nodes: Sequence[str]) -> Departures:
    live_ids = frozenset(n.id for n in view.nodes)
    live_names = {n.name for n in view.nodes}
    departed = sorted({s.left_node_id for s in view.unassigned if s.left_node_id and s.left_node_id not in live_ids})
    declared_absent = [g for g in gone_nodes if g not in live_names]
    declared_live = [g for g in gone_nodes if g in live_names]
    # Elasticsearch names a departed node only by its id: the declaration covers them when at least
    # as many absent members are declared gone as nodes have left.
    gone_confirmed = bool(departed) and len(declared_absent) >= len(departed)
    notes: list[str] = []
    if declared_live:
        notes.append(f"{', '.join(declared_live)} declared gone but still in the cluster: ignored")
    if departed and declared_absent and not gone_confirmed:
        notes.append(f"{len(departed)} nodes left the cluster but only {', '.join(declared_absent)} was declared gone; "
                     f"Elasticsearch names departed nodes by id only, so drengine cannot tell which: delayed "
                     f"allocation is left to run out. Declare every lost node with --gone")
    return Departures(live_ids, departed, absent_members(view), gone_confirmed, notes)


@dataclass
class _Draft:
    """The plan being built: each decision function adds to it."""

    shorten: dict[str, SettingChange] = field(default_factory=dict)
    enable_needed: bool = False
    retry: list[str] = field(default_factory=list)
    replicas: list[ReplicaAssignment] = field(default_factory=list)
    lower: dict[str, SettingChange] = field(default_factory=dict)
    stale: list[PrimaryChoice] = field(default_factory=list)
    empty: list[PrimaryChoice] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    unresolved_primary: bool = False
    placed: dict[tuple[str, int], str] = field(default_factory=dict)
    red: set[tuple[str, int]] = field(default_factory=set)  # shards whose primary is unassigned


def _decided_no(draft: _Draft, view: EsView, shard: ShardCopy, expl: Explanation) -> bool:
    """A copy the deciders refuse everywhere: re-enable allocation and/or retry (both when both
    refuse it: a copy out of retries while allocation is disabled stays out after re-enabling
    alone, found by the explorer), or wait (False)."""
    nos = no_deciders(expl)
    disabled = "enable" in nos and view.allocation_enable.value != "all"
    if disabled:
        draft.enable_needed = True
    if "max_retry" in nos:
        draft.retry.append(shard.label)
    elif not disabled:
        why, fix = decider_words(expl)
        draft.waiting.append(f"{shard.label}: {why}; needs {fix}")
        return False
    return True


def _red_primary(draft: _Draft, view: EsView, shard: ShardCopy, expl: Explanation, gone: Departures) -> None:
    """No valid copy: the stale copy, else an empty primary, each only behind a dangerous gate."""
    copies = stale_copies(expl)
    if copies:
        # Elasticsearch does not say which stale copy is the most recent: with one, it is that one;
        # with several, the operator chooses (allocate-stale-primary reads the choice).
        node = copies[0][0] if len(copies) == 1 else ""
        lost = (f"{shard.label}: the copy on {node or 'the chosen node'} is stale: every write acknowledged after it "
                f"fell out of sync is lost (the in-sync copy was on {gone.words}); if that node comes back, its "
                f"newer copy is discarded")
        draft.stale.append(PrimaryChoice(
            index=shard.index, shard=shard.shard, node=node, kind="stale", lost=lost,
            candidates=[text for _, text in copies], candidate_nodes=[n for n, _ in copies],
            unreadable=unreadable_copies(expl), chosen_by="only copy" if node else ""))
    else:
        target = _least_loaded(view)
        if target is None:
            draft.waiting.append(f"{shard.label}: no copy left and no data node to put an empty primary on")
            draft.unresolved_primary = True
            return
        node = target
        lost = (f"{shard.label}: no copy of its data is left in the cluster: an empty primary loses every "
                f"document of this shard; if a node holding a copy comes back, that copy is discarded "
                f"(restoring the index from a snapshot is the alternative)")
        draft.empty.append(PrimaryChoice(index=shard.index, shard=shard.shard, node=node, kind="empty", lost=lost))
    draft.placed[(shard.index, shard.shard)] = node


def _plan_primary(draft: _Draft, view: EsView, shard: ShardCopy, expl: Explanation | None, gone: Departures) -> None:
    if (shard.index, shard.shard) in draft.placed:
        return
    if expl is None:
        draft.waiting.append(f"{shard.label}: not explained; look at it by hand")
        draft.unresolved_primary = True
    elif expl.can_allocate == "no_valid_shard_copy":
        _red_primary(draft, view, shard, expl, gone)
    elif expl.can_allocate == "no" and not _decided_no(draft, view, shard, expl):
        draft.unresolved_primary = True
    # yes, throttled: Elasticsearch is assigning it


@dataclass(frozen=True)
class _ReplicaWait:
    """Whether a replica's delayed allocation waits for a node that may return (awaited) or
    waits for nothing: the node is back, or declared gone (pointless)."""

    awaited: bool
    pointless: bool


def _replica_wait(shard: ShardCopy, gone: Departures) -> _ReplicaWait:
    left = shard.reason == "NODE_LEFT"
    awaited = left and shard.left_node_id in gone.departed and not gone.gone_confirmed
    pointless = left and (shard.left_node_id in gone.live_ids
                          or (shard.left_node_id in gone.departed and gone.gone_confirmed))
    return _ReplicaWait(awaited, pointless)


def _shorten(draft: _Draft, info: IndexInfo | None) -> None:
    if info is not None and not is_zero_delay(info.delayed_timeout):
        draft.shorten.setdefault(info.name, _delay_change(info))


def _too_many_copies(draft: _Draft, view: EsView, shard: ShardCopy, info: IndexInfo, wait: _ReplicaWait) -> None:
    data_nodes = len(view.data_nodes())
    if wait.awaited:
        draft.waiting.append(f"{shard.label}: waits for {node_name(view, shard.left_node_id)} to come back "
                             f"({data_nodes} data node(s) cannot hold {info.number_of_replicas + 1} copies)")
    elif shard.index not in draft.lower:
        draft.lower[shard.index] = SettingChange(scope="index", target=shard.index, key=REPLICAS_SETTING,
                                                 old=str(info.number_of_replicas), new=str(max(data_nodes - 1, 0)))


def _delayed_replica(draft: _Draft, view: EsView, shard: ShardCopy, expl: Explanation | None,
                     info: IndexInfo | None, wait: _ReplicaWait) -> None:
    if wait.pointless:
        _shorten(draft, info)
        return
    remaining = f", {expl.remaining_delay} left" if expl is not None and expl.remaining_delay else ""
    draft.waiting.append(f"{shard.label}: waits for {node_name(view, shard.left_node_id)} to come back "
                         f"(delayed allocation{remaining}); if it will not, rerun with --gone")


def _plan_replica(draft: _Draft, view: EsView, shard: ShardCopy, expl: Explanation | None,
                  info: IndexInfo | None, gone: Departures) -> None:
    wait = _replica_wait(shard, gone)
    if (shard.index, shard.shard) in draft.red:
        # Follows its primary: assigned once the primary is, unless a delay holds it back.
        if (shard.index, shard.shard) in draft.placed and wait.pointless:
            _shorten(draft, info)
        return
    if info is not None and info.number_of_replicas + 1 > len(view.data_nodes()):
        _too_many_copies(draft, view, shard, info, wait)
        return
    kind = expl.can_allocate if expl is not None else ""
    if kind == "allocation_delayed" or (expl is None and shard.reason == "NODE_LEFT"
                                        and view.health.delayed_unassigned_shards > 0):
        _delayed_replica(draft, view, shard, expl, info, wait)
    elif kind == "no" and expl is not None:
        _decided_no(draft, view, shard, expl)
    elif kind == "yes" and expl is not None and expl.key == (shard.index, shard.shard, False):
        target = next((n.node_name for n in expl.nodes if n.decision == "yes"), None)
        if target is not None:
            draft.replicas.append(ReplicaAssignment(index=shard.index, shard=shard.shard, node=target))


def _enable_change(draft: _Draft, view: EsView) -> SettingChange | None:
    if not (draft.enable_needed or (view.allocation_enable.value != "all" and view.unassigned)):
        return None
    scope = view.allocation_enable.scope
    return SettingChange(scope="persistent" if scope == "default" else scope, target="cluster",
                         key=ENABLE_SETTING, old=view.allocation_enable.value, new="all")


def _expected_status(draft: _Draft) -> Status:
    if draft.unresolved_primary:
        return "red"
    return "yellow" if any(" replica:" in w for w in draft.waiting) else "green"


def _plan_steps(draft: _Draft, view: EsView, enable: SettingChange | None, gone: Departures) -> list[str]:
    steps = []
    if draft.shorten:
        why = f"{gone.words} declared gone" if gone.gone_confirmed else "the node they wait for is back already"
        steps.append(f"shorten the delayed allocation of {len(draft.shorten)} index(es) to 0 ({why})")
    if enable:
        steps.append(f"re-enable allocation ({ENABLE_SETTING} is {enable.old!r}; kept 'all' afterwards unless --input restore_enable=yes)")
    if draft.retry:
        steps.append(f"retry failed allocations ({len(draft.retry)} shard(s) hit the retry limit)")
    if draft.replicas:
        steps.append(f"allocate {len(draft.replicas)} replica(s) by hand")
    if draft.lower:
        steps.append(f"lower number_of_replicas on {len(draft.lower)} index(es): {len(view.data_nodes())} data "
                     f"node(s) cannot hold them")
    if draft.stale:
        steps.append(f"DATA LOSS: allocate a stale primary for {', '.join(p.label for p in draft.stale)}")
    if draft.empty:
        steps.append(f"DATA LOSS: allocate an empty primary for {', '.join(p.label for p in draft.empty)}")
    return steps


def _plan_reason(draft: _Draft, view: EsView, steps: list[str], expected: Status) -> str:
    count = len(view.unassigned)
    if not count:
        reason = f"every shard copy is assigned (health {view.health.status}): nothing to reallocate"
    elif steps:
        reason = f"{count} unassigned shard copies; in order of risk: " + "; ".join(steps)
    else:
        reason = f"{count} unassigned shard copies; nothing safe to change now"
    if draft.waiting:
        reason += f"; {len(draft.waiting)} left as is (see below)"
    undecided = [p.label for p in draft.stale if not p.node]
    if undecided and expected != "red":
        # Nobody can tell which stale copy is freshest: without the operator's choice the shard stays red.
        return reason + (f"; expected health afterwards: {expected} once a stale copy is chosen for "
                         f"{', '.join(undecided)} (--input stale_copy=INDEX[SHARD]=NODE), red without")
    return reason + f"; expected health afterwards: {expected}"


def plan_reallocation(view: EsView, gone_nodes: Sequence[str]) -> ReallocationPlan:
    """Choose what to do about every unassigned copy, least risky first: shorten the delayed
    allocation (only for nodes declared gone), re-enable allocation, retry failed allocations,
    allocate replicas, lower replica counts the remaining data nodes cannot hold, and only for
    red shards without a valid copy: a stale copy, else an empty primary."""
    gone = departures(view, gone_nodes)
    draft = _Draft(red={(s.index, s.shard) for s in view.unassigned if s.primary})
    explained = ExplanationIndex(view)
    indices = {i.name: i for i in view.indices}
    for shard in sorted(view.unassigned, key=lambda s: (not s.primary, s.index, s.shard)):
        expl, _like = explained.lookup(shard)
        if shard.primary:
            _plan_primary(draft, view, shard, expl, gone)
        else:
            _plan_replica(draft, view, shard, expl, indices.get(shard.index), gone)
    enable = _enable_change(draft, view)
    expected = _expected_status(draft)
    return ReallocationPlan(
        reason=_plan_reason(draft, view, _plan_steps(draft, view, enable, gone), expected),
        departed=gone.departed, absent_members=gone.absent, gone_confirmed=gone.gone_confirmed,
        shorten_delay=sorted(draft.shorten.values(), key=lambda c: c.target), enable=enable,
        retry_failed=draft.retry, allocate_replicas=draft.replicas,
        lower_replicas=sorted(draft.lower.values(), key=lambda c: c.target),
        stale_primaries=draft.stale, empty_primaries=draft.empty, waiting=draft.waiting,
        expected_status=expected, notes=gone.notes,
    )


def expected_after(plan: ReallocationPlan, done_stale: bool, done_empty: bool) -> tuple[Status, list[str]]:
    """The health to wait for given what the run actually did (a dangerous step may be skipped)."""
    left = [p.label for p, done in ([(p, done_stale) for p in plan.stale_primaries]
                                    + [(p, done_empty) for p in plan.empty_primaries]) if not done]
    if left:
        return "red", left
    return plan.expected_status, []


# -- requests --------------------------------------------------------------------------------------


def primary_command(choice: PrimaryChoice) -> dict[str, dict[str, str | int | bool]]:
    name = "allocate_stale_primary" if choice.kind == "stale" else "allocate_empty_primary"
    return {name: {"index": choice.index, "shard": choice.shard, "node": choice.node, "accept_data_loss": True}}


def restore_calls(changes: Sequence[SettingChange]) -> list[HttpCall]:
    """Requests putting each changed setting back to its old value (null: back to the default)."""
    calls: list[HttpCall] = []
    for scope in ("persistent", "transient"):
        cluster = {c.key: c.old for c in changes if c.scope == scope}
        if cluster:
            calls.append(put_cluster_settings_call(scope, cluster))
    by_value: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for change in changes:
        if change.scope == "index":
            by_value[(change.key, change.old)].append(change.target)
    for (key, old), indices in sorted(by_value.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        value: str | int | None = int(old) if key == REPLICAS_SETTING and old is not None else old
        calls.extend(put_index_settings_calls(indices, {key: value}))
    return calls



"""Elasticsearch: reallocate shards after losing nodes.

Pure decisions first: which unassigned copies to explain, the explanation table (shard,
why it is unassigned, what would assign it, in plain words) and `plan_reallocation`, which
chooses the recovery in order of risk. Then the steps the `elasticsearch-reallocate`
runbook names. Every request a step sends is shown, before and after, as the exact HTTP
text (`Statement(language="http")`); every setting a step changes is recorded as a fact so
the last step can put it back.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import ClassVar, Literal, cast

from pydantic import Field

from drengine.datastores.elasticsearch.connector import (
    DELAY_SETTING,
    ENABLE_SETTING,
    REPLICAS_SETTING,
    ElasticAPI,
    EsView,
    Explanation,
    HttpCall,
    IndexInfo,
    ShardCopy,
    cat_shards_call,
    cluster_settings_call,
    explain_call,
    health_call,
    index_settings_call,
    nodes_call,
    put_cluster_settings_call,
    put_index_settings_calls,
    reroute_call,
)
from drengine.errors import CommandFailed, ConnectError
from drengine.steps import (
    Action,
    Effect,
    Fact,
    GateLevel,
    Mode,
    NoParams,
    Proposal,
    RunContext,
    Statement,
    StepParams,
    StepResult,
    fact,
    register,
)

Status = Literal["green", "yellow", "red"]
SHOWN_ROWS = 30  # table rows printed at a gate; the journal keeps them all

# -- facts -----------------------------------------------------------------------------------------


@fact
class Explanations(Fact):
    items: list[Explanation] = []
    sampled: bool = False  # true when only some replicas of each kind were explained


@fact
class ExplainRow(Fact):
    shard: str
    why: str
    what_would_assign: str
    explained_like: str = ""  # another shard whose explanation stands for this one


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
    node: str
    kind: Literal["stale", "empty"]
    lost: str

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


# -- pure decisions --------------------------------------------------------------------------------


def _group_key(shard: ShardCopy) -> tuple[bool, str, str]:
    """Copies with the same role, reason and departed node are unassigned for the same reason."""
    return (shard.primary, shard.reason or "", shard.left_node_id or shard.details or "")


def shards_to_explain(view: EsView, explain_all_up_to: int = 50, per_group: int = 3) -> list[tuple[str, int, bool]]:
    """Every unassigned primary is explained (each red shard needs its own decision). Replicas
    too, up to `explain_all_up_to`; beyond that a few per kind, so that a big cluster costs a
    handful of explain requests rather than one per shard."""
    unassigned = view.unassigned
    seen: set[tuple[str, int, bool]] = set()
    chosen: list[tuple[str, int, bool]] = []
    taken: Counter[tuple[bool, str, str]] = Counter()
    sample = len([s for s in unassigned if not s.primary]) > explain_all_up_to
    for shard in sorted(unassigned, key=lambda s: (not s.primary, s.index, s.shard)):
        key = (shard.index, shard.shard, shard.primary)
        if key in seen:
            continue  # several unassigned replicas of one shard: explain answers for one of them
        if not shard.primary and sample:
            group = _group_key(shard)
            if taken[group] >= per_group:
                continue
            taken[group] += 1
        seen.add(key)
        chosen.append(key)
    return chosen


def with_explanations(view: EsView, explanations: Explanations) -> EsView:
    return view.model_copy(update={"explanations": list(explanations.items)})


class ExplanationIndex:
    """Explanations by shard copy and by kind, built once: a big cluster has thousands of
    unassigned copies and only a sample of them explained."""

    def __init__(self, view: EsView) -> None:
        self.own = {e.key: e for e in view.explanations}
        self.by_group: dict[tuple[bool, str, str], tuple[Explanation, str]] = {}
        for shard in view.unassigned:
            found = self.own.get((shard.index, shard.shard, shard.primary))
            if found is not None:
                self.by_group.setdefault(_group_key(shard), (found, shard.label))

    def lookup(self, shard: ShardCopy) -> tuple[Explanation | None, str]:
        """This copy's explanation, or that of an explained copy of the same kind (and its label)."""
        own = self.own.get((shard.index, shard.shard, shard.primary))
        if own is not None:
            return own, ""
        return self.by_group.get(_group_key(shard), (None, ""))


def explanation_for(view: EsView, shard: ShardCopy) -> tuple[Explanation | None, str]:
    return ExplanationIndex(view).lookup(shard)


def _node_name(view: EsView, node_id: str | None) -> str:
    if not node_id:
        return "an unknown node"
    for node in view.nodes:
        if node.id == node_id:
            return node.name
    absent = _absent_members(view)
    if len(absent) == 1:
        return f"{absent[0]} (id {node_id}, no longer in the cluster)"
    return f"node id {node_id} (no longer in the cluster)"


def _absent_members(view: EsView) -> list[str]:
    live = {n.name for n in view.nodes}
    return [m for m in view.inventory_members if m not in live]


REASONS = {
    "INDEX_CREATED": "the index was just created",
    "CLUSTER_RECOVERED": "the whole cluster restarted",
    "INDEX_REOPENED": "the index was reopened",
    "DANGLING_INDEX_IMPORTED": "a dangling index was imported",
    "NEW_INDEX_RESTORED": "the index is being restored from a snapshot",
    "EXISTING_INDEX_RESTORED": "the index is being restored from a snapshot",
    "REPLICA_ADDED": "a replica was added",
    "REROUTE_CANCELLED": "its allocation was cancelled by a reroute command",
    "REINITIALIZED": "its shard was reinitialized",
    "PRIMARY_FAILED": "its primary failed",
    "FORCED_EMPTY_PRIMARY": "an empty primary was forced",
    "MANUAL_ALLOCATION": "it was allocated by hand",
}


def _why_unassigned(view: EsView, shard: ShardCopy, failed_attempts: int = 0) -> str:
    reason = shard.reason or ""
    if reason == "NODE_LEFT":
        return f"its node {_node_name(view, shard.left_node_id)} left the cluster"
    if reason == "ALLOCATION_FAILED":
        times = f" {failed_attempts} times" if failed_attempts else ""
        return f"allocating it failed{times} ({shard.details or 'no details'})"
    return REASONS.get(reason, reason.lower().replace("_", " ") or "unknown reason")


def _no_deciders(expl: Explanation) -> dict[str, list[str]]:
    """Decider name -> nodes where it said NO."""
    found: dict[str, list[str]] = defaultdict(list)
    for node in expl.nodes:
        for verdict in node.deciders:
            if verdict.decision == "NO":
                found[verdict.decider].append(node.node_name)
    return found


def _stale_copies(expl: Explanation) -> list[tuple[str, int]]:
    """Nodes holding an out-of-sync, uncorrupted copy, largest first. Elasticsearch does not say
    how recent a stale copy is; the size of the copy is the best hint it gives."""
    copies = [(n.node_name, n.store.size_bytes or 0) for n in expl.nodes
              if n.store is not None and n.store.found and n.store.in_sync is not True and n.store.exception is None]
    return sorted(copies, key=lambda c: (-c[1], c[0]))


DECIDER_WORDS = {
    "enable": ("allocation is disabled by cluster.routing.allocation.enable",
               "re-enabling allocation (cluster.routing.allocation.enable: all)"),
    "max_retry": ("allocating it failed too many times (index.allocation.max_retries)",
                  "retrying failed allocations (POST /_cluster/reroute?retry_failed=true)"),
    "same_shard": ("every remaining data node already holds a copy of this shard",
                   "another data node joining, or fewer replicas (index.number_of_replicas)"),
    "replica_after_primary_active": ("its primary is not active", "assigning its primary first"),
    "disk_threshold": ("the nodes are above the disk watermark", "freeing disk space or adding a data node"),
    "filter": ("allocation filters exclude the nodes", "changing the cluster.routing.allocation.* filters"),
    "awareness": ("allocation awareness forbids more copies in the remaining zones",
                  "a node in another zone, or fewer replicas"),
    "throttling": ("recoveries are throttled", "waiting for running recoveries to finish"),
}


def _decider_words(expl: Explanation) -> tuple[str, str]:
    nos = _no_deciders(expl)
    if not nos:
        return expl.allocate_explanation or "no node may take it", "see the node-by-node explanation"
    whys, fixes = [], []
    for decider, nodes in nos.items():
        why, fix = DECIDER_WORDS.get(decider, (f"the {decider} decider says no", f"addressing the {decider} decider"))
        whys.append(f"{why} (on {', '.join(sorted(nodes))})")
        if fix not in fixes:
            fixes.append(fix)
    return "; ".join(whys), " and ".join(fixes)


def explain_row(view: EsView, shard: ShardCopy, index: ExplanationIndex | None = None) -> ExplainRow:
    expl, like = (index or ExplanationIndex(view)).lookup(shard)
    base = _why_unassigned(view, shard, expl.failed_attempts if expl and not like else 0)
    if expl is None:
        return ExplainRow(shard=shard.label, why=base, what_would_assign="not explained (the explain request was not sent)")
    kind = expl.can_allocate
    if kind == "allocation_delayed":
        someone = any(n.decision == "yes" for n in expl.nodes)
        why = (f"{base}; Elasticsearch waits {expl.remaining_delay or 'a while'} more for it to come back "
               f"(index.unassigned.node_left.delayed_timeout {expl.configured_delay or 'default 1m'})")
        fix = "the node coming back, or the delay running out"
        if someone:
            fix += ", or shortening the delay once the node is known to be gone"
        else:
            fix += "; no other node could take it now: " + _decider_words(expl)[1]
    elif kind == "no_valid_shard_copy":
        stale = _stale_copies(expl)
        why = f"{base}; no node holds an in-sync copy of its data"
        if stale:
            why += f" (a stale copy is on {', '.join(n for n, _ in stale)})"
            fix = (f"the node with the in-sync copy coming back; or, losing the writes newer than that copy, "
                   f"allocate_stale_primary on {stale[0][0]}; or a restore from a snapshot")
        else:
            why += " and no copy at all is left"
            fix = ("a node holding a copy coming back; or a restore from a snapshot; or, losing every document "
                   "of the shard, allocate_empty_primary")
    elif kind == "no":
        deny, fix = _decider_words(expl)
        why = f"{base}; {deny}"
    elif kind == "throttled":
        why, fix = f"{base}; recoveries are throttled", "waiting: Elasticsearch assigns it as recoveries finish"
    elif kind == "yes":
        why, fix = f"{base}; a node may take it now", "nothing: Elasticsearch is assigning it"
    else:
        why, fix = f"{base}; {expl.allocate_explanation or kind}", "see the allocation explanation"
    return ExplainRow(shard=shard.label, why=why, what_would_assign=fix, explained_like=like)


def explain_table(view: EsView) -> list[ExplainRow]:
    """One row per unassigned shard copy: shard, why it is unassigned, what would assign it."""
    index = ExplanationIndex(view)
    return [explain_row(view, s, index) for s in sorted(view.unassigned, key=lambda s: (not s.primary, s.index, s.shard))]


def table_lines(rows: Sequence[ExplainRow], limit: int = SHOWN_ROWS) -> list[str]:
    lines = [f"{r.shard}: unassigned because {r.why}. Would be assigned by {r.what_would_assign}"
             + (f" (as explained for {r.explained_like})" if r.explained_like else "") for r in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more unassigned copies (all rows are in the journal)")
    return lines


def _is_zero_delay(value: str) -> bool:
    return value.strip().lower() in ("0", "0s", "0ms", "0m", "0h", "0d", "-1")


def _least_loaded(view: EsView, exclude: frozenset[str] = frozenset()) -> str | None:
    load = Counter(s.node for s in view.shards if s.node)
    candidates = [n.name for n in view.data_nodes() if n.name not in exclude]
    return min(candidates, key=lambda name: (load[name], name)) if candidates else None


def _delay_change(info: IndexInfo) -> SettingChange:
    return SettingChange(scope="index", target=info.name, key=DELAY_SETTING,
                         old=info.delayed_timeout if info.delayed_timeout_set else None, new="0")


def plan_reallocation(view: EsView, gone_nodes: Sequence[str]) -> ReallocationPlan:
    """Choose what to do about every unassigned copy, least risky first: shorten the delayed
    allocation (only for nodes declared gone), re-enable allocation, retry failed allocations,
    allocate replicas, lower replica counts the remaining data nodes cannot hold, and only for
    red shards without a valid copy: the most recent stale copy, else an empty primary."""
    live_ids = {n.id for n in view.nodes}
    live_names = {n.name for n in view.nodes}
    unassigned = view.unassigned
    departed = sorted({s.left_node_id for s in unassigned if s.left_node_id and s.left_node_id not in live_ids})
    absent = _absent_members(view)
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
    data_nodes = len(view.data_nodes())
    unassigned_primaries = {(s.index, s.shard) for s in unassigned if s.primary}

    shorten: dict[str, SettingChange] = {}
    enable_needed = False
    retry: list[str] = []
    replicas: list[ReplicaAssignment] = []
    lower: dict[str, SettingChange] = {}
    stale: list[PrimaryChoice] = []
    empty: list[PrimaryChoice] = []
    waiting: list[str] = []
    unresolved_primary = False
    placed: dict[tuple[str, int], str] = {}
    departed_words = ", ".join(absent) if absent else "the node that left"

    explained = ExplanationIndex(view)
    indices = {i.name: i for i in view.indices}
    for shard in sorted(unassigned, key=lambda s: (not s.primary, s.index, s.shard)):
        expl, _like = explained.lookup(shard)
        info = indices.get(shard.index)
        if shard.primary:
            key = (shard.index, shard.shard)
            if key in placed:
                continue
            if expl is None:
                waiting.append(f"{shard.label}: not explained; look at it by hand")
                unresolved_primary = True
            elif expl.can_allocate == "no_valid_shard_copy":
                copies = _stale_copies(expl)
                if copies:
                    node = copies[0][0]
                    lost = (f"{shard.label}: the copy on {node} is stale: every write acknowledged after it fell out "
                            f"of sync is lost (the in-sync copy was on {departed_words}); if that node comes back, its "
                            f"newer copy is discarded")
                    stale.append(PrimaryChoice(index=shard.index, shard=shard.shard, node=node, kind="stale", lost=lost))
                else:
                    target = _least_loaded(view)
                    if target is None:
                        waiting.append(f"{shard.label}: no copy left and no data node to put an empty primary on")
                        unresolved_primary = True
                        continue
                    node = target
                    lost = (f"{shard.label}: no copy of its data is left in the cluster: an empty primary loses every "
                            f"document of this shard; if a node holding a copy comes back, that copy is discarded "
                            f"(restoring the index from a snapshot is the alternative)")
                    empty.append(PrimaryChoice(index=shard.index, shard=shard.shard, node=node, kind="empty", lost=lost))
                placed[key] = node
            elif expl.can_allocate == "no":
                nos = _no_deciders(expl)
                if "enable" in nos and view.allocation_enable.value != "all":
                    enable_needed = True
                elif "max_retry" in nos:
                    retry.append(shard.label)
                else:
                    waiting.append(f"{shard.label}: {_decider_words(expl)[0]}; needs {_decider_words(expl)[1]}")
                    unresolved_primary = True
            # yes, throttled: Elasticsearch is assigning it
            continue

        # replicas
        awaited = shard.reason == "NODE_LEFT" and shard.left_node_id in departed and not gone_confirmed
        # Delayed allocation waits for the node to return; when that node is back already (or is
        # declared gone), the wait only keeps the replica missing.
        pointless_wait = shard.reason == "NODE_LEFT" and (
            shard.left_node_id in live_ids or (shard.left_node_id in departed and gone_confirmed))
        if (shard.index, shard.shard) in unassigned_primaries:
            # Follows its primary: assigned once the primary is, unless a delay holds it back.
            if (shard.index, shard.shard) in placed and pointless_wait and info is not None \
                    and not _is_zero_delay(info.delayed_timeout):
                shorten.setdefault(shard.index, _delay_change(info))
            continue
        if info is not None and info.number_of_replicas + 1 > data_nodes:
            if awaited:
                waiting.append(f"{shard.label}: waits for {_node_name(view, shard.left_node_id)} to come back "
                               f"({data_nodes} data node(s) cannot hold {info.number_of_replicas + 1} copies)")
            elif shard.index not in lower:
                lower[shard.index] = SettingChange(scope="index", target=shard.index, key=REPLICAS_SETTING,
                                                   old=str(info.number_of_replicas), new=str(max(data_nodes - 1, 0)))
            continue
        kind = expl.can_allocate if expl is not None else ""
        if kind == "allocation_delayed" or (expl is None and shard.reason == "NODE_LEFT"
                                            and view.health.delayed_unassigned_shards > 0):
            if not pointless_wait:
                remaining = f", {expl.remaining_delay} left" if expl is not None and expl.remaining_delay else ""
                waiting.append(f"{shard.label}: waits for {_node_name(view, shard.left_node_id)} to come back "
                               f"(delayed allocation{remaining}); if it will not, rerun with --gone")
            elif info is not None and not _is_zero_delay(info.delayed_timeout):
                shorten.setdefault(shard.index, _delay_change(info))
        elif kind == "no" and expl is not None:
            nos = _no_deciders(expl)
            if "enable" in nos and view.allocation_enable.value != "all":
                enable_needed = True
            elif "max_retry" in nos:
                retry.append(shard.label)
            else:
                waiting.append(f"{shard.label}: {_decider_words(expl)[0]}; needs {_decider_words(expl)[1]}")
        elif kind in ("yes", "throttled") and expl is not None and expl.key == (shard.index, shard.shard, False):
            target_node = next((n.node_name for n in expl.nodes if n.decision == "yes"), None)
            if target_node is not None and kind == "yes":
                replicas.append(ReplicaAssignment(index=shard.index, shard=shard.shard, node=target_node))

    enable = None
    if enable_needed or (view.allocation_enable.value != "all" and unassigned):
        scope = view.allocation_enable.scope
        enable = SettingChange(scope="persistent" if scope == "default" else scope, target="cluster",
                               key=ENABLE_SETTING, old=view.allocation_enable.value, new="all")
    replica_waits = [w for w in waiting if " replica:" in w]
    expected: Status = "red" if unresolved_primary else ("yellow" if replica_waits else "green")
    steps = []
    if shorten:
        why = f"{departed_words} declared gone" if gone_confirmed else "the node they wait for is back already"
        steps.append(f"shorten the delayed allocation of {len(shorten)} index(es) to 0 ({why})")
    if enable:
        steps.append(f"re-enable allocation ({ENABLE_SETTING} is {enable.old!r}; restored afterwards)")
    if retry:
        steps.append(f"retry failed allocations ({len(retry)} shard(s) hit the retry limit)")
    if replicas:
        steps.append(f"allocate {len(replicas)} replica(s) by hand")
    if lower:
        steps.append(f"lower number_of_replicas on {len(lower)} index(es): {data_nodes} data node(s) cannot hold them")
    if stale:
        steps.append(f"DATA LOSS: allocate a stale primary for {', '.join(p.label for p in stale)}")
    if empty:
        steps.append(f"DATA LOSS: allocate an empty primary for {', '.join(p.label for p in empty)}")
    if not unassigned:
        reason = f"every shard copy is assigned (health {view.health.status}): nothing to reallocate"
    elif steps:
        reason = f"{len(unassigned)} unassigned shard copies; in order of risk: " + "; ".join(steps)
    else:
        reason = f"{len(unassigned)} unassigned shard copies; nothing safe to change now"
    if waiting:
        reason += f"; {len(waiting)} left as is (see below)"
    reason += f"; expected health afterwards: {expected}"
    return ReallocationPlan(
        reason=reason, departed=departed, absent_members=absent, gone_confirmed=gone_confirmed,
        shorten_delay=sorted(shorten.values(), key=lambda c: c.target), enable=enable, retry_failed=retry,
        allocate_replicas=replicas, lower_replicas=sorted(lower.values(), key=lambda c: c.target),
        stale_primaries=stale, empty_primaries=empty, waiting=waiting, expected_status=expected, notes=notes,
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


Ctx = RunContext[ElasticAPI]


def _send(ctx: Ctx, call: HttpCall) -> None:
    ctx.backend.send(call)
    ctx.sent(call.statement())


def _plan(ctx: Ctx) -> ReallocationPlan:
    return ctx.facts.get("es_plan", ReallocationPlan)


def _unassigned_now(ctx: Ctx) -> set[tuple[str, int, bool]]:
    return {(s.index, s.shard, s.primary) for s in ctx.backend.shards() if s.state == "UNASSIGNED"}


# -- actions ---------------------------------------------------------------------------------------


@register
class Observe(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.observe"
    effect = Effect.READ
    description = "Read health, nodes, every shard copy and the allocation settings (five requests)"

    def propose(self, ctx: Ctx) -> Proposal:
        calls = [health_call(), nodes_call(), cat_shards_call(), cluster_settings_call(), index_settings_call()]
        return Proposal(summary="read the cluster's health, nodes, shards and allocation settings",
                        statements=[c.statement() for c in calls])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.backend.observe()
        evidence = [view.health.line(), f"nodes in the cluster: {', '.join(n.name for n in view.nodes) or 'none'}"]
        absent = _absent_members(view)
        if absent:
            evidence.append(f"inventory members not in the cluster: {', '.join(absent)}")
        evidence.append(f"{ENABLE_SETTING}: {view.allocation_enable.value} ({view.allocation_enable.scope})")
        return StepResult(ok=True, summary=view.health.line(), facts={"es_view": view}, evidence=evidence)


class ExplainParams(StepParams):
    explain_all_up_to: int = Field(default=50, ge=0, le=100000,
                                   description="explain every unassigned replica up to this many; beyond, a sample per kind")
    per_group: int = Field(default=3, ge=1, le=1000)


@register
class ExplainUnassigned(Action[ElasticAPI, ExplainParams]):
    name = "elasticsearch.explain_unassigned"
    effect = Effect.READ
    Params = ExplainParams
    description = "Explain every unassigned shard: why, and what would assign it"

    def _targets(self, ctx: Ctx) -> list[tuple[str, int, bool]]:
        params = self.params
        return shards_to_explain(ctx.facts.get("es_view", EsView), params.explain_all_up_to, params.per_group)

    def propose(self, ctx: Ctx) -> Proposal:
        targets = self._targets(ctx)
        return Proposal(summary=f"explain {len(targets)} unassigned shard copies",
                        statements=[explain_call(*t).statement() for t in targets])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.facts.get("es_view", EsView)
        targets = self._targets(ctx)
        items = [ctx.backend.explain(*t) for t in targets]
        explained = Explanations(items=items, sampled=len(targets) < len({(s.index, s.shard, s.primary) for s in view.unassigned}))
        rows = explain_table(with_explanations(view, explained))
        summary = (f"{len(rows)} unassigned shard copies, {len(items)} explained"
                   + (" (a sample of each kind of replica)" if explained.sampled else "")) if rows else "no unassigned shard copies"
        return StepResult(ok=True, summary=summary, facts={"es_explanations": explained}, evidence=table_lines(rows))


@register
class PlanReallocation(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.plan_reallocation"
    effect = Effect.READ
    description = "Decide what to do about each unassigned shard, least risky first"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="decide the reallocation, least risky first")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = with_explanations(ctx.facts.get("es_view", EsView), ctx.facts.get("es_explanations", Explanations))
        plan = plan_reallocation(view, ctx.operator_said_gone)
        evidence = [f"left as is: {w}" for w in plan.waiting[:SHOWN_ROWS]]
        if len(plan.waiting) > SHOWN_ROWS:
            evidence.append(f"... and {len(plan.waiting) - SHOWN_ROWS} more left as is")
        evidence += [f"note: {n}" for n in plan.notes]
        evidence += [f"RISK: {p.lost}" for p in plan.stale_primaries + plan.empty_primaries]
        return StepResult(ok=True, summary=plan.reason, facts={"es_plan": plan}, evidence=evidence)


def _nothing(summary: str) -> Proposal:
    return Proposal(summary=summary, nothing_to_do=True)


@register
class ShortenDelay(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.shorten_delay"
    effect = Effect.MUTATE
    description = "Stop waiting for nodes declared gone: delayed_timeout 0 on the affected indices"

    def propose(self, ctx: Ctx) -> Proposal:
        plan = _plan(ctx)
        if not plan.shorten_delay:
            why = "no delayed shard waits for a node declared gone" if plan.departed else "no delayed shard"
            return _nothing(why)
        indices = [c.target for c in plan.shorten_delay]
        return Proposal(
            summary=f"set {DELAY_SETTING} to 0 on {len(indices)} index(es) so their replicas are reallocated now",
            reason=((f"{', '.join(plan.absent_members) or 'the departed node'} is declared gone for good" if plan.gone_confirmed
                     else "the node these replicas wait for is back in the cluster already")
                    + ": waiting only prolongs the time with missing replicas. The old values are restored at the end"),
            statements=[c.statement() for c in put_index_settings_calls(indices, {DELAY_SETTING: "0"})],
            risks=["if the node does come back, its copies are discarded and the replicas are rebuilt over the network"],
        )

    def _still_delayed(self, ctx: Ctx) -> list[str]:
        planned = {c.target for c in _plan(ctx).shorten_delay}
        return [i.name for i in ctx.backend.index_settings() if i.name in planned and not _is_zero_delay(i.delayed_timeout)]

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return not self._still_delayed(ctx)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        todo = self._still_delayed(ctx)
        for call in put_index_settings_calls(todo, {DELAY_SETTING: "0"}):
            _send(ctx, call)
        planned = _plan(ctx).shorten_delay
        # The old values come from the plan, not from a fresh read: a resumed run must not take
        # its own "0" for the value to restore.
        return StepResult(ok=True, summary=f"delayed allocation set to 0 on {len(planned)} index(es) ({len(todo)} sent now)",
                          facts={"es_changed_delay": SettingChanges(changes=planned)})

    def result_after_interruption(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        # The record of the old values, from the plan: without it the restore has nothing to put back
        # (found by the explorer: killed after the settings call, resumed, the delays stayed at 0).
        planned = _plan(ctx).shorten_delay
        return StepResult(ok=True, summary=f"delayed allocation set to 0 on {len(planned)} index(es) (before the "
                                           f"interruption)", facts={"es_changed_delay": SettingChanges(changes=planned)})


@register
class EnableAllocation(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.enable_allocation"
    effect = Effect.MUTATE
    description = "Re-enable shard allocation left disabled (the old value is restored at the end)"

    def propose(self, ctx: Ctx) -> Proposal:
        change = _plan(ctx).enable
        if change is None:
            return _nothing(f"{ENABLE_SETTING} already allows all allocations")
        scope = cast(Literal["persistent", "transient"], change.scope)
        return Proposal(
            summary=f"set {ENABLE_SETTING} from {change.old!r} to 'all' ({scope})",
            reason=f"allocation is limited to {change.old!r} (left by a maintenance?): unassigned copies cannot be placed",
            statements=[put_cluster_settings_call(scope, {ENABLE_SETTING: "all"}).statement()],
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return ctx.backend.allocation_enable().value == "all"

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        change = _plan(ctx).enable
        assert change is not None
        scope = cast(Literal["persistent", "transient"], change.scope)
        if ctx.backend.allocation_enable().value != "all":
            _send(ctx, put_cluster_settings_call(scope, {ENABLE_SETTING: "all"}))
        return StepResult(ok=True, summary=f"allocation enabled (was {change.old!r})",
                          facts={"es_changed_enable": SettingChanges(changes=[change])})

    def result_after_interruption(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        # The old value, from the plan: without it the restore has nothing to put back and the goal
        # sees nothing to check (found by the explorer: killed right after the PUT, resumed, DONE
        # with allocation left at 'all').
        change = _plan(ctx).enable
        assert change is not None
        return StepResult(ok=True, summary=f"allocation enabled (was {change.old!r}; before the interruption)",
                          facts={"es_changed_enable": SettingChanges(changes=[change])})


@register
class RetryFailed(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.retry_failed"
    effect = Effect.MUTATE
    description = "Retry allocations that failed too many times"

    def propose(self, ctx: Ctx) -> Proposal:
        labels = _plan(ctx).retry_failed
        if not labels:
            return _nothing("no shard hit the allocation retry limit")
        return Proposal(summary=f"retry the failed allocations of {', '.join(labels[:10])}"
                        + (f" and {len(labels) - 10} more" if len(labels) > 10 else ""),
                        reason="after index.allocation.max_retries failures Elasticsearch stops trying until told to retry",
                        statements=[reroute_call(retry_failed=True).statement()])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        # Retrying is harmless if already done: no check needed before sending it again.
        _send(ctx, reroute_call(retry_failed=True))
        return StepResult(ok=True, summary="failed allocations retried")


@register
class AllocateReplicas(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.allocate_replicas"
    effect = Effect.MUTATE
    description = "Allocate replicas the deciders allow but the allocator has not placed"

    def _todo(self, ctx: Ctx) -> list[ReplicaAssignment]:
        planned = _plan(ctx).allocate_replicas
        if not planned:
            return []
        now = _unassigned_now(ctx)
        return [r for r in planned if (r.index, r.shard, False) in now]

    def propose(self, ctx: Ctx) -> Proposal:
        todo = self._todo(ctx)
        if not todo:
            return _nothing("no replica needs allocating by hand")
        commands = [{"allocate_replica": {"index": r.index, "shard": r.shard, "node": r.node}} for r in todo]
        return Proposal(summary=f"allocate {len(todo)} replica(s)", reason="the deciders allow these nodes",
                        statements=[reroute_call(commands).statement()])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        todo = self._todo(ctx)
        if todo:
            _send(ctx, reroute_call([{"allocate_replica": {"index": r.index, "shard": r.shard, "node": r.node}}
                                     for r in todo]))
        return StepResult(ok=True, summary=f"{len(todo)} replica(s) allocated")


@register
class LowerReplicas(Action[ElasticAPI, NoParams]):
    name = "elasticsearch.lower_replicas"
    effect = Effect.MUTATE
    description = "Lower number_of_replicas where the remaining data nodes cannot hold every copy"

    def propose(self, ctx: Ctx) -> Proposal:
        changes = _plan(ctx).lower_replicas
        if not changes:
            return _nothing("the remaining data nodes can hold every replica")
        calls = [call for (new, idx) in _by_new(changes) for call in put_index_settings_calls(idx, {REPLICAS_SETTING: int(new)})]
        return Proposal(
            summary=f"lower {REPLICAS_SETTING} on {len(changes)} index(es) "
                    + ", ".join(f"{c.target} {c.old}->{c.new}" for c in changes[:10]),
            reason="a replica can never sit on the node that holds its primary or another copy: with fewer data "
                   "nodes than copies, the cluster stays yellow until replicas are lowered or nodes added",
            statements=[c.statement() for c in calls],
            risks=["fewer copies: losing one more node may lose data of these indices until replicas are raised again"],
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        wanted = {c.target: int(c.new or 0) for c in _plan(ctx).lower_replicas}
        return all(i.number_of_replicas <= wanted[i.name] for i in ctx.backend.index_settings() if i.name in wanted)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        changes = _plan(ctx).lower_replicas
        current = {i.name: i.number_of_replicas for i in ctx.backend.index_settings()}
        todo = [c for c in changes if c.target in current and current[c.target] > int(c.new or 0)]
        for new, indices in _by_new(todo):
            for call in put_index_settings_calls(indices, {REPLICAS_SETTING: int(new)}):
                _send(ctx, call)
        return StepResult(ok=True, summary=f"replicas lowered on {len(changes)} index(es)",
                          facts={"es_changed_replicas": SettingChanges(changes=changes)})

    def result_after_interruption(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        changes = _plan(ctx).lower_replicas  # what was lowered, for the request to raise them again
        return StepResult(ok=True, summary=f"replicas lowered on {len(changes)} index(es) (before the interruption)",
                          facts={"es_changed_replicas": SettingChanges(changes=changes)})


def _by_new(changes: Sequence[SettingChange]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for c in changes:
        groups[c.new or "0"].append(c.target)
    return sorted(groups.items())


class _AllocatePrimary(Action[ElasticAPI, NoParams]):
    kind: ClassVar[Literal["stale", "empty"]]
    effect = Effect.MUTATE
    min_gate = GateLevel.DANGEROUS

    def _planned(self, ctx: Ctx) -> list[PrimaryChoice]:
        plan = _plan(ctx)
        return plan.stale_primaries if self.kind == "stale" else plan.empty_primaries

    def _todo(self, ctx: Ctx) -> list[PrimaryChoice]:
        planned = self._planned(ctx)
        if not planned:
            return []
        # Looked at again right before asking: a node that came back makes this step unnecessary.
        now = _unassigned_now(ctx)
        return [p for p in planned if (p.index, p.shard, True) in now]

    def propose(self, ctx: Ctx) -> Proposal:
        todo = self._todo(ctx)
        article = "a stale" if self.kind == "stale" else "an empty"
        if not todo:
            return _nothing(f"no red shard needs {article} primary")
        reason = (f"no in-sync copy of {', '.join(p.label for p in todo)} is left in the cluster. Waiting for the node "
                  f"that held it ({', '.join(_plan(ctx).absent_members) or 'unknown'}) loses nothing if it can come back; "
                  f"restoring from a snapshot is the other way")
        if self.kind == "stale":
            reason += "; the stale copy chosen is the largest one found (Elasticsearch does not say which is most recent)"
        return Proposal(
            summary=f"allocate {article} primary for " + ", ".join(f"{p.label} on {p.node}" for p in todo),
            reason=reason,
            statements=[reroute_call([primary_command(p)]).statement() for p in todo],
            gate=GateLevel.DANGEROUS,
            risks=[p.lost for p in todo],
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return not self._todo(ctx)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        todo = self._todo(ctx)
        for choice in todo:
            _send(ctx, reroute_call([primary_command(choice)]))
        return self._done(ctx, "")

    def result_after_interruption(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        # The health awaited next counts these shards as allocated only with this fact.
        return self._done(ctx, " (before the interruption)")

    def _done(self, ctx: Ctx, when: str) -> StepResult:
        planned = self._planned(ctx)
        return StepResult(ok=True, summary=f"{self.kind} primary allocated for " + ", ".join(p.label for p in planned) + when,
                          facts={f"es_{self.kind}_done": PrimariesDone(done=planned)},
                          evidence=[f"LOST: {p.lost}" for p in planned])


@register
class AllocateStalePrimary(_AllocatePrimary):
    name = "elasticsearch.allocate_stale_primary"
    kind: ClassVar[Literal["stale", "empty"]] = "stale"
    description = "DATA LOSS: promote the most recent stale copy of a red shard to primary"


@register
class AllocateEmptyPrimary(_AllocatePrimary):
    name = "elasticsearch.allocate_empty_primary"
    kind: ClassVar[Literal["stale", "empty"]] = "empty"
    description = "DATA LOSS: give a red shard with no copy left an empty primary"


class WaitParams(StepParams):
    timeout: float = Field(default=60.0, gt=0, le=86400, description="seconds to wait for the expected health")
    canary_index: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9._-]{0,200})?$",
                              description="drills: write and read back a document in this index")


@register
class WaitForHealth(Action[ElasticAPI, WaitParams]):
    name = "elasticsearch.wait_for_health"
    effect = Effect.READ
    Params = WaitParams
    description = "Wait for green (or yellow when replicas are knowingly left unassigned)"

    def _expected(self, ctx: Ctx) -> tuple[Status, list[str]]:
        plan = _plan(ctx)
        planning = ctx.mode is Mode.PLAN  # a plan shows the health a run approving every gate would reach
        return expected_after(plan, planning or ctx.facts.maybe("es_stale_done", PrimariesDone) is not None,
                              planning or ctx.facts.maybe("es_empty_done", PrimariesDone) is not None)

    def propose(self, ctx: Ctx) -> Proposal:
        params = self.params
        expected, _ = self._expected(ctx)
        return Proposal(summary=f"wait up to {params.timeout:g} s for health {expected}",
                        statements=[health_call(expected, params.timeout).statement()])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        params = self.params
        plan = _plan(ctx)
        expected, left_red = self._expected(ctx)
        if left_red:
            return StepResult(ok=False, summary=(
                f"{', '.join(left_red)} still ha(s|ve) no primary (the data-losing step was not approved): the cluster "
                f"stays red and those shards serve nothing. Bring back the node with their in-sync copy, restore them "
                f"from a snapshot, or rerun and approve the step with --accept-data-loss"))
        if expected == "red":
            return StepResult(ok=False, summary="some primaries cannot be assigned by this runbook: "
                              + "; ".join(w for w in plan.waiting if " primary:" in w), evidence=plan.waiting)
        health = ctx.backend.health(expected, params.timeout)
        evidence = [health.line()]
        if params.canary_index:
            works = ctx.backend.canary(params.canary_index, "drengine-canary")
            evidence.append(f"canary write and read in {params.canary_index}: {'ok' if works else 'FAILED'}")
            if not works:
                return StepResult(ok=False, summary="the canary document written could not be read back", evidence=evidence)
        if health.timed_out:
            return StepResult(ok=False, evidence=evidence + plan.waiting, summary=(
                f"health is {health.status} after {params.timeout:g} s, expected {expected}: "
                f"{health.unassigned_shards} copies still unassigned ({health.delayed_unassigned_shards} delayed). "
                f"Rerun the runbook to see why each one is unassigned, or rerun with a longer wait"))
        if health.status == "green":
            return StepResult(ok=True, summary="cluster is green: every shard copy is assigned", evidence=evidence)
        waits = [w for w in plan.waiting if " replica:" in w]
        return StepResult(ok=True, evidence=evidence + waits, summary=(
            f"cluster is {health.status}, as expected: every primary is assigned; {health.unassigned_shards} replica "
            f"copies are knowingly left unassigned ({len(waits)} listed below)"))


class RestoreParams(StepParams):
    restore_replicas: bool = Field(default=False, description="also raise lowered replica counts again (yellow again "
                                                              "until nodes are added)")


@register
class RestoreSettings(Action[ElasticAPI, RestoreParams]):
    name = "elasticsearch.restore_settings"
    effect = Effect.MUTATE
    Params = RestoreParams
    description = "Put back every setting this run changed"

    def _changes(self, ctx: Ctx) -> tuple[list[SettingChange], list[SettingChange]]:
        """(to restore, lowered replicas kept)."""
        params = self.params
        found: list[SettingChange] = []
        replicas: list[SettingChange] = []
        names = ("es_changed_delay", "es_changed_enable", "es_changed_replicas")
        recorded = [ctx.facts.maybe(n, SettingChanges) for n in names]
        if ctx.mode is Mode.PLAN and all(r is None for r in recorded):
            plan = ctx.facts.maybe("es_plan", ReallocationPlan)
            if plan is not None:  # a plan changes nothing: show what a run would restore
                recorded = [SettingChanges(changes=plan.shorten_delay),
                            SettingChanges(changes=[plan.enable] if plan.enable else []),
                            SettingChanges(changes=plan.lower_replicas)]
        for name, changes in zip(names, recorded, strict=True):
            if changes is None:
                continue
            if name == "es_changed_replicas" and not params.restore_replicas:
                replicas.extend(changes.changes)
            else:
                found.extend(changes.changes)
        return found, replicas

    def _differing(self, ctx: Ctx, changes: list[SettingChange]) -> list[SettingChange]:
        if not changes:
            return []
        api = ctx.backend
        out = []
        if any(c.scope != "index" for c in changes):
            enable = api.allocation_enable()
            out += [c for c in changes if c.scope != "index" and enable.value != (c.old or "all")]
        if any(c.scope == "index" for c in changes):
            current = {i.name: i for i in api.index_settings()}
            for c in changes:
                if c.scope != "index" or c.target not in current:
                    continue
                info = current[c.target]
                if c.key == DELAY_SETTING:
                    now: str | None = info.delayed_timeout if info.delayed_timeout_set else None
                else:
                    now = str(info.number_of_replicas)
                if now != c.old:
                    out.append(c)
        return out

    def propose(self, ctx: Ctx) -> Proposal:
        changes, kept = self._changes(ctx)
        follow_up = [f"replicas kept lowered; once data nodes are back: {c.statement().text}"
                     for c in restore_calls(kept)]
        if not changes:
            return Proposal(summary="no setting was changed" + (" (lowered replicas are kept)" if kept else ""),
                            nothing_to_do=True, evidence=follow_up)
        return Proposal(summary=f"restore {len(changes)} setting(s) this run changed",
                        reason="temporary recovery settings must not outlive the recovery",
                        statements=[c.statement() for c in restore_calls(changes)], evidence=follow_up)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return not self._differing(ctx, self._changes(ctx)[0])

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        changes, kept = self._changes(ctx)
        todo = self._differing(ctx, changes)
        # Every setting is tried, and every one that could not be put back is named with the request
        # that puts it back: found by the explorer, a restore refused at its first request (no master
        # left) ended the run without a word of the other settings left changed.
        refused: list[str] = []
        for call in restore_calls(todo):
            try:
                _send(ctx, call)
            except (ConnectError, CommandFailed) as exc:
                refused.append(f"`{call.statement().text}` ({str(exc).split(': ', 1)[-1][:160]})")
        if refused:
            return StepResult(ok=False, summary=f"{len(refused)} setting(s) this run changed could not be put back; "
                                                f"send, once the cluster answers: " + "; ".join(refused))
        evidence = [f"{c.target} {c.key}: back to {c.old if c.old is not None else 'the default'}" for c in changes]
        evidence += [f"kept lowered: {c.target} {c.key} {c.old} -> {c.new}; once data nodes are back send: "
                     f"{s.text}" for c in kept for s in [restore_calls([c])[0].statement()]]
        return StepResult(ok=True, summary=f"{len(changes)} setting(s) restored" + (
            f"; {len(kept)} lowered replica count(s) kept so the cluster stays green" if kept else ""), evidence=evidence)


__all__ = [
    "ExplainRow", "ReallocationPlan", "SettingChange", "Statement", "explain_table", "plan_reallocation",
    "shards_to_explain", "with_explanations",
]

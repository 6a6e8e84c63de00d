"""Why each unassigned shard copy is unassigned and what would assign it, in plain words:
which copies to explain (every primary, a sample of each kind of replica on a big cluster)
and the explanation table built from the answers of `_cluster/allocation/explain`."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from drengine.datastores.elasticsearch.esview import EsView, Explanation, ShardCopy
from drengine.steps import Fact, fact

SHOWN_ROWS = 30  # table rows printed at a gate; the journal keeps them all


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


def node_name(view: EsView, node_id: str | None) -> str:
    if not node_id:
        return "an unknown node"
    for node in view.nodes:
        if node.id == node_id:
            return node.name
    absent = absent_members(view)
    if len(absent) == 1:
        return f"{absent[0]} (id {node_id}, no longer in the cluster)"
    return f"node id {node_id} (no longer in the cluster)"


def _node_left_words(view: EsView, node_id: str | None) -> str:
    """Why a copy is unassigned after its node left, in words that agree with the member table:
    a node that is back is said to be back (the copy waits to be assigned again), and a gone
    node is named once, not "(no longer in the cluster) left the cluster"."""
    live = next((n.name for n in view.nodes if node_id and n.id == node_id), None)
    if live is not None:
        return f"its node {live} left the cluster and is back now; the copy is not assigned again yet"
    absent = absent_members(view)
    if node_id and len(absent) == 1:
        return f"its node {absent[0]} (id {node_id}) left the cluster and is not back"
    return f"its node (id {node_id}) left the cluster and is not back" if node_id else "its node left the cluster"


def absent_members(view: EsView) -> list[str]:
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
        return _node_left_words(view, shard.left_node_id)
    if reason == "ALLOCATION_FAILED":
        times = f" {failed_attempts} times" if failed_attempts else ""
        return f"allocating it failed{times} ({shard.details or 'no details'})"
    return REASONS.get(reason, reason.lower().replace("_", " ") or "unknown reason")


def no_deciders(expl: Explanation) -> dict[str, list[str]]:
    """Decider name -> nodes where it said NO."""
    found: dict[str, list[str]] = defaultdict(list)
    for node in expl.nodes:
        for verdict in node.deciders:
            if verdict.decision == "NO":
                found[verdict.decider].append(node.node_name)
    return found


def stale_copies(expl: Explanation) -> list[tuple[str, str]]:
    """(node, what Elasticsearch shows of the copy) for every node holding an out-of-sync copy
    it could read, by node name. For a primary, Elasticsearch shows a copy's `in_sync` and
    `allocation_id` only (NodeAllocationResult.ShardStoreInfo): nothing says which copy is the
    most recent, nor how large it is."""
    copies = [(n.node_name, f"{n.node_name} (allocation id {n.store.allocation_id or 'unknown'}, in_sync false)")
              for n in expl.nodes
              if n.store is not None and n.store.found and n.store.in_sync is not True and n.store.exception is None]
    return sorted(copies)


def unreadable_copies(expl: Explanation) -> list[str]:
    """Copies Elasticsearch could not read (`store_exception`): never candidates."""
    return [f"{n.node_name} (allocation id {n.store.allocation_id or 'unknown'}, store exception: {n.store.exception})"
            for n in expl.nodes if n.store is not None and n.store.exception is not None]


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


def decider_words(expl: Explanation) -> tuple[str, str]:
    nos = no_deciders(expl)
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
            fix += "; no other node could take it now: " + decider_words(expl)[1]
    elif kind == "no_valid_shard_copy":
        stale = stale_copies(expl)
        why = f"{base}; no node holds an in-sync copy of its data"
        if stale:
            why += f" (a stale copy is on {', '.join(n for n, _ in stale)})"
            where = stale[0][0] if len(stale) == 1 else f"one of {', '.join(n for n, _ in stale)} (the operator's choice)"
            fix = (f"the node with the in-sync copy coming back; or, losing the writes newer than that copy, "
                   f"allocate_stale_primary on {where}; or a restore from a snapshot")
        else:
            why += " and no copy at all is left"
            fix = ("a node holding a copy coming back; or a restore from a snapshot; or, losing every document "
                   "of the shard, allocate_empty_primary")
    elif kind == "no":
        deny, fix = decider_words(expl)
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



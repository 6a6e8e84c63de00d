"""What any recovery of a red Elasticsearch shard could at best bring back, read from the
simulator's own copies (its ground truth: every copy's documents, which copies are in sync,
which nodes are in the cluster, which stores cannot be opened). Written apart from the
runbook's planning and repairs on purpose: the explorer judges the run against this, not
against the runbook's own reading of the explain API.

For a red shard (its primary unassigned after it was active once):
- an in-sync copy on a node in the cluster loses nothing: Elasticsearch allocates it by itself
  once nothing holds it back (allocation disabled, retries used up); forcing any other copy
  throws the newest writes away;
- else the out-of-sync (stale) copy that holds the most documents loses the least; a copy
  whose store cannot be opened is no candidate (its forced recovery fails);
- an empty primary only when no readable copy is left on a node in the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from drengine.datastores.elasticsearch.simulator import EsCluster
from drengine.datastores.elasticsearch.simulator.model import UNASSIGNED, ShardGroup


@dataclass(frozen=True)
class ShardCopies:
    """The copies of one shard, as the simulator holds them."""

    label: str
    in_sync_here: tuple[str, ...]  # nodes in the cluster holding a readable in-sync copy
    in_sync_away: tuple[str, ...]  # nodes out of the cluster holding an in-sync copy
    stale: tuple[tuple[str, int], ...]  # (node in the cluster, documents) of readable out-of-sync copies
    unreadable: tuple[str, ...]  # nodes in the cluster whose copy cannot be opened

    def documents(self, node: str) -> int | None:
        return next((docs for name, docs in self.stale if name == node), None)

    def fullest(self) -> int:
        return max((docs for _, docs in self.stale), default=-1)

    def best(self) -> str:
        """The best outcome in words."""
        if self.in_sync_here:
            return f"the in-sync copy on {', '.join(self.in_sync_here)} (nothing lost)"
        if self.stale:
            return "the stale copy on " + " or ".join(n for n, d in self.stale if d == self.fullest()) + \
                f" ({self.fullest()} documents)"
        return "an empty primary (no readable copy is left in the cluster)"

    def judge(self, kind: str, node: str) -> tuple[str, str] | None:
        """(invariant, what) when forcing a `kind` ("stale"/"empty") primary onto `node` is worse
        than the best any recovery could do from these copies; None when it is the best."""
        if self.in_sync_here:
            return ("elasticsearch.forced-over-an-in-sync-copy",
                    f"{self.label}: {kind} primary forced on {node} while {self.best()} was in the cluster")
        if kind == "empty":
            if self.stale:
                return ("elasticsearch.empty-over-a-stale-copy",
                        f"{self.label}: empty primary on {node} (every document lost) while {self.best()} was there")
            return None
        docs = self.documents(node)
        if docs is None and self.stale:
            why = "an unreadable copy" if node in self.unreadable else "no copy of the shard"
            return ("elasticsearch.stale-copy-not-the-fullest",
                    f"{self.label}: stale primary forced on {node}, which holds {why}, while {self.best()} was there")
        if docs is not None and docs < self.fullest():
            return ("elasticsearch.stale-copy-not-the-fullest",
                    f"{self.label}: stale primary on {node} ({docs} documents) while {self.best()} was there")
        return None


def copies_of(cluster: EsCluster, group: ShardGroup) -> ShardCopies:
    here: list[str] = []
    away: list[str] = []
    stale: list[tuple[str, int]] = []
    unreadable: list[str] = []
    for node_id, store in sorted(group.stores.items()):
        node = cluster.node_by_id(node_id)
        if store.allocation_id in group.in_sync and store.unreadable is None:
            (here if node.alive else away).append(node.name)
        elif not node.alive:
            continue
        elif store.unreadable is not None:
            unreadable.append(node.name)
        else:
            stale.append((node.name, len(store.docs)))
    return ShardCopies(f"{group.index}[{group.shard}]", tuple(sorted(here)), tuple(sorted(away)),
                       tuple(sorted(stale)), tuple(sorted(unreadable)))


def red_shards(cluster: EsCluster) -> dict[tuple[str, int], ShardCopies]:
    """Every shard whose primary is unassigned after it was active once, with its copies."""
    return {(g.index, g.shard): copies_of(cluster, g) for g in cluster.groups()
            if g.in_sync and g.primary().state == UNASSIGNED}


def recovery_possible(cluster: EsCluster) -> str | None:
    """The liveness oracle: from this state, with the world left alone and every gate approved,
    can a correct recovery assign every primary? Why, when it can; None when it cannot, or when
    it depends on a choice among several stale copies that only the operator can make (nothing
    Elasticsearch shows tells them apart), or when it cannot be told from here."""
    if not cluster.has_master() or not cluster.live_data_nodes():
        return None
    data_nodes = cluster.live_data_nodes()
    if any(node.disk_used_percent >= 90 for node in data_nodes):
        return None  # the disk decider may keep the replicas of a red shard out (see below)
    reasons = []
    for group in cluster.groups():
        if group.pending_recovery_failures and group.unassigned():
            # Its copies' recoveries will fail once they are tried, after the run planned (allocation
            # enabled, the primary back): the runbook waits for green and reports the stall where DONE
            # yellow would be as right, or retries when it saw them fail; the end cannot be told here.
            return None
        if group.primary().state != UNASSIGNED:
            continue
        if len(group.routings) > len(data_nodes):
            # The replicas of a red shard that the data nodes left cannot hold (nor a full disk, above)
            # keep the cluster yellow once its primary is back: the runbook plans them only once the
            # primary is assigned and waits for green (it reports the stall; DONE yellow would be as
            # right), so the end cannot be told from here either.
            return None
        if not group.in_sync:
            return None  # a new index's primary: not this fault space's business
        copies = copies_of(cluster, group)
        if len(copies.stale) > 1 and not copies.in_sync_here:
            return None
        reasons.append(f"{copies.label}: {copies.best()}")
    if not reasons:
        return "every primary is assigned: only replicas and settings to see to"
    return "every red shard can get a primary: " + "; ".join(reasons)

"""EsCluster: the simulated cluster, assembled from its parts, its faults, and time passing.

A killed node's connections drop, so the master removes it at once; a hung node still holds
its connections and is removed only after `cluster.fault_detection.follower_check.retry_count`
consecutive follower checks have timed out (defaults: interval 1s, timeout 10s, retry_count 3;
https://www.elastic.co/guide/en/elasticsearch/reference/8.4/modules-discovery-settings.html and
https://www.elastic.co/guide/en/elasticsearch/reference/8.17/cluster-fault-detection.html).
"""

from __future__ import annotations

from drengine.datastores.elasticsearch.simulator.documents import DocumentsApi
from drengine.datastores.elasticsearch.simulator.explain import ExplainApi
from drengine.datastores.elasticsearch.simulator.model import ENABLE_SETTING
from drengine.datastores.elasticsearch.simulator.recovery import Recoveries
from drengine.datastores.elasticsearch.simulator.reroute import RerouteCommands
from drengine.datastores.elasticsearch.simulator.settings import SettingsApi
from drengine.datastores.elasticsearch.simulator.views import ReadViews

FOLLOWER_CHECK_INTERVAL = 1.0
FOLLOWER_CHECK_TIMEOUT = 10.0
FOLLOWER_CHECK_RETRIES = 3
# A hung node fails each check at its timeout; the master removes it after the last retry.
HUNG_NODE_REMOVED_AFTER = FOLLOWER_CHECK_RETRIES * (FOLLOWER_CHECK_INTERVAL + FOLLOWER_CHECK_TIMEOUT)


class EsCluster(Recoveries, RerouteCommands, ExplainApi, SettingsApi, ReadViews, DocumentsApi):
    """A simulated Elasticsearch cluster. Not thread-safe: serve it behind one lock."""

    def kill_node(self, name: str) -> None:
        """The node leaves the cluster; its copies stay on its disk for a later return. Copies
        recovering from a primary on it fail with it (they are allocated again)."""
        self.advance_recoveries()
        node = self.node(name)
        if not node.alive:
            return
        node.alive = False
        for group in self.groups():
            for routing in group.routings:
                if routing.node_id == node.id:
                    self._unassign(group, routing, "NODE_LEFT", f"node_left [{node.id}]")
                    if routing.primary:
                        self._promote_replica(group, routing)
                elif routing.recovery is not None and routing.recovery.source_node == node.id:
                    self._unassign(group, routing, "PRIMARY_FAILED", f"primary failed while replica initializing: "
                                                                     f"node_left [{node.id}]")
        self._changed()
        self.allocate()

    def return_node(self, name: str) -> None:
        """The node rejoins with whatever copies it held; in-sync ones are reused."""
        node = self.node(name)
        node.hung_since = None
        if node.alive:
            return
        node.alive = True
        self._changed()
        self.allocate()

    def hang_node(self, name: str) -> None:
        """The node's process stops answering but keeps its connections: the master removes it
        only when its follower checks have timed out (see `advance`)."""
        node = self.node(name)
        if node.alive and node.hung_since is None:
            node.hung_since = self._now()

    def resume_node(self, name: str) -> None:
        """A hung node wakes up: still in the cluster if the master had not removed it yet,
        otherwise it joins again like a returning node."""
        self.return_node(name)

    def advance(self) -> None:
        """Let time pass up to the clock: recoveries progress (and start what they make room
        for), hung nodes whose follower checks ran out are removed, the allocator places what it may."""
        self._keep_time_monotonic()
        self.advance_recoveries()
        now = self._now()
        for node in self.state.nodes:
            if node.alive and node.hung_since is not None and now - node.hung_since >= HUNG_NODE_REMOVED_AFTER:
                self.kill_node(node.name)
                node.hung_since = now  # still hung: it rejoins only when resumed
        self.allocate(if_changed=True)

    def _keep_time_monotonic(self) -> None:
        now = self._now()
        if self.state.seen_at is not None and now < self.state.seen_at:
            self.state.skew += self.state.seen_at - now
        self.state.seen_at = max(now, self.state.seen_at or now)

    def next_event(self) -> float | None:
        """Seconds until the model next changes by itself: a recovery completes, an allocation
        delay runs out, the master removes a hung node (None: nothing is due)."""
        now = self._now()
        due = [self.next_recovery_event()]
        if self.allocation_current():  # the last round noted when the next delay runs out
            due.append(None if self._next_delay_expiry == float("inf") else self._next_delay_expiry - now)
        else:
            for key in self._unassigned_keys:
                meta = self.state.indices.get(key[0])
                if meta is not None:
                    due.extend(self.remaining_delay(meta, r) or None for r in meta.shards[key[1]].unassigned())
        due.extend(node.hung_since + HUNG_NODE_REMOVED_AFTER - now for node in self.state.nodes
                   if node.alive and node.hung_since is not None)
        found = [max(d, 0.0) for d in due if d is not None]
        return min(found) if found else None

    def disk_full(self, name: str, used_percent: float = 97.0) -> None:
        self.node(name).disk_used_percent = used_percent
        self._changed()

    def disable_allocation(self, mode: str = "none") -> None:
        self.put_cluster_settings(persistent={ENABLE_SETTING: mode})

    def fail_recoveries(self, index: str, shard: int, times: int) -> None:
        """The next ``times`` recoveries of this shard fail, as a corrupt or unreadable copy would."""
        self.shard_group(index, shard).pending_recovery_failures = times

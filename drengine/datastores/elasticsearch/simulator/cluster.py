"""EsCluster: the simulated cluster, assembled from its parts, and its faults."""

from __future__ import annotations

from drengine.datastores.elasticsearch.simulator.documents import DocumentsApi
from drengine.datastores.elasticsearch.simulator.explain import ExplainApi
from drengine.datastores.elasticsearch.simulator.model import ENABLE_SETTING
from drengine.datastores.elasticsearch.simulator.reroute import RerouteCommands
from drengine.datastores.elasticsearch.simulator.settings import SettingsApi
from drengine.datastores.elasticsearch.simulator.views import ReadViews


class EsCluster(RerouteCommands, ExplainApi, SettingsApi, ReadViews, DocumentsApi):
    """A simulated Elasticsearch cluster. Not thread-safe: serve it behind one lock."""

    def kill_node(self, name: str) -> None:
        """The node leaves the cluster; its copies stay on its disk for a later return."""
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
        self._changed()
        self.allocate()

    def return_node(self, name: str) -> None:
        """The node rejoins with whatever copies it held; in-sync ones are reused."""
        node = self.node(name)
        if node.alive:
            return
        node.alive = True
        self._changed()
        self.allocate()

    def disk_full(self, name: str, used_percent: float = 97.0) -> None:
        self.node(name).disk_used_percent = used_percent
        self._changed()

    def disable_allocation(self, mode: str = "none") -> None:
        self.put_cluster_settings(persistent={ENABLE_SETTING: mode})

    def fail_recoveries(self, index: str, shard: int, times: int) -> None:
        """The next ``times`` recoveries of this shard fail, as a corrupt or unreadable copy would."""
        self.shard_group(index, shard).pending_recovery_failures = times

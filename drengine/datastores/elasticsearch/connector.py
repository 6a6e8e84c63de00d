"""Elasticsearch connector (the official elasticsearch-py client, imported lazily): one
`HttpCall` per request, rendered as the exact text an operator could send with curl and
executed through the client's raw `perform_request`, so the statement shown at a gate is
the request that goes over the wire. Also the Fact models of what was observed (`EsView`),
parsed from the response shapes Elasticsearch documents.

Every request is bounded by the inventory's connect and read timeouts: a hung node still
accepts the TCP connection, so only the read timeout saves a probe from hanging.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from drengine.clock import SYSTEM, Clock
from drengine.errors import CommandFailed, ConnectError, ProbeTimeout
from drengine.faults import FaultsByProcess, ProcessFaults
from drengine.inventory import Cluster, Inventory

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

from drengine.datastores.elasticsearch.calls import (
    HttpCall,
    canary_calls,
    cat_shards_call,
    cluster_settings_call,
    explain_call,
    health_call,
    index_settings_call,
    nodes_call,
    recovery_call,
)
from drengine.datastores.elasticsearch.esview import (
    AllocationEnable,
    EsView,
    Explanation,
    Health,
    IndexInfo,
    RecoveryProgress,
    ShardCopy,
    build_view,
    parse_cat_shards,
    parse_cluster_settings,
    parse_explanation,
    parse_health,
    parse_index_settings,
    parse_recoveries,
)

# -- the connector ---------------------------------------------------------------------------------


class ElasticAPI(Protocol):
    """What the Elasticsearch actions use; the real connector and its simulated twin provide it."""

    cluster: Cluster
    url: str

    def send(self, call: HttpCall) -> Any: ...

    def observe(self) -> EsView: ...

    def explain(self, index: str, shard: int, primary: bool) -> Explanation: ...

    def shards(self) -> list[ShardCopy]: ...

    def index_settings(self) -> list[IndexInfo]: ...

    def allocation_enable(self) -> AllocationEnable: ...

    def health(self, wait_for_status: str | None = None, timeout_s: float | None = None,
               settled: bool = False) -> Health: ...

    def recoveries(self) -> RecoveryProgress: ...

    def canary(self, index: str, doc_id: str) -> bool: ...

    def close(self) -> None: ...


class ElasticBackend(FaultsByProcess):
    """The real connector: every member's HTTP address is a node the client may use."""

    def __init__(self, cluster: Cluster, inventory: Inventory | None = None, *, hosts: Sequence[str] | None = None,
                 clock: Clock = SYSTEM) -> None:
        self.cluster = cluster
        self.clock = clock  # the run's
        # Several members may share one endpoint (a load balancer, or the lab's simulator).
        self.hosts = list(dict.fromkeys(hosts if hosts else
                                        [f"http://{m.address}:{cluster.port_of(m)}" for m in cluster.members]))
        self.url = self.hosts[0]
        self._auth: tuple[str, str] | None = None
        cred = cluster.credentials
        if cred.password is not None:
            where = f"{inventory.path if inventory else 'inventory'}: cluster {cluster.name} credentials"
            self._auth = (cred.user, cred.password.resolve(where))
        self._client: Elasticsearch | None = None
        self._optioned: dict[tuple[tuple[str, Any], ...], Elasticsearch] = {}
        self._faults = ProcessFaults(inventory, cluster)

    # -- the client ----------------------------------------------------------------------------
    def _es(self) -> Elasticsearch:
        if self._client is None:
            from elasticsearch import Elasticsearch

            t = self.cluster.timeouts
            self._client = Elasticsearch(
                self.hosts,
                basic_auth=self._auth,
                node_class=_bounded_node_class(t.connect, t.read),
                # A connection refused by a dead member is retried on the next one; a timeout is
                # not retried (a hung node would double the wait).
                max_retries=min(max(len(self.hosts) - 1, 1), 3),
                retry_on_timeout=False,
            )
        return self._client

    def _with(self, client: Elasticsearch, options: dict[str, Any]) -> Elasticsearch:
        """The client with these per-request options, made once per set of options: each one is a
        new client object (some forty namespaces, each reading the OpenTelemetry environment)."""
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
        found = self._optioned.get(key)
        if found is None:
            found = self._optioned[key] = client.options(**options)
        return found

    def close(self) -> None:
        self._optioned.clear()
        if self._client is not None:
            self._client.close()
            self._client = None

    def send(self, call: HttpCall) -> Any:
        """Send exactly `call`; turn every failure into one clear error naming the node and request."""
        from elastic_transport import ConnectionError as TransportConnectionError
        from elastic_transport import ConnectionTimeout, TransportError
        from elasticsearch import ApiError, UnsupportedProductError

        client = self._es()
        t = self.cluster.timeouts
        options: dict[str, Any] = {}
        if call.ok_statuses:
            options["ignore_status"] = list(call.ok_statuses)
        if call.waits:
            options["request_timeout"] = t.connect + t.read + call.waits
        if options:
            client = self._with(client, options)
        headers = {"accept": "application/json"}
        if call.body is not None:
            headers["content-type"] = "application/json"
        what = call.what or "the request"
        try:
            response = client.perform_request(call.method, call.target(), headers=headers, body=call.body)
        except UnsupportedProductError:
            raise CommandFailed(
                f"{self.url}: the server that answered `{call.text()}` is not Elasticsearch (no X-Elastic-Product "
                f"header); check the inventory's address and port for cluster {self.cluster.name}"
            ) from None
        except ApiError as exc:
            node = getattr(getattr(exc.meta, "node", None), "base_url", self.url)
            raise CommandFailed(
                f"{node}: `{call.text()}` was refused (to {what}): HTTP {exc.meta.status} {_error_text(exc.body)}"
            ) from None
        except ConnectionTimeout:
            raise ProbeTimeout(
                f"{', '.join(self.hosts)}: no answer to `{call.text()}` (to {what}) within the read timeout of "
                f"{t.read + call.waits:g} s; the node accepts connections but does not answer (overloaded, in a long GC "
                f"or hung). Check it, raise timeouts.read in the inventory, or retry"
            ) from None
        except TransportConnectionError as exc:
            raise ConnectError(
                f"cannot reach Elasticsearch at {', '.join(self.hosts)} to {what}: {exc}; expected a node listening "
                f"there (connect timeout {t.connect:g} s). Check the nodes are running and the inventory's addresses"
            ) from None
        except TransportError as exc:
            raise ConnectError(f"{', '.join(self.hosts)}: `{call.text()}` failed (to {what}): {exc}") from None
        return response.body

    # -- probes ----------------------------------------------------------------------------------
    def health(self, wait_for_status: str | None = None, timeout_s: float | None = None,
               settled: bool = False) -> Health:
        return parse_health(self.send(health_call(wait_for_status, timeout_s, settled)))

    def shards(self) -> list[ShardCopy]:
        return parse_cat_shards(self.send(cat_shards_call()))

    def recoveries(self) -> RecoveryProgress:
        return parse_recoveries(self.send(recovery_call()))

    def index_settings(self) -> list[IndexInfo]:
        return parse_index_settings(self.send(index_settings_call()))

    def allocation_enable(self) -> AllocationEnable:
        return parse_cluster_settings(self.send(cluster_settings_call()))

    def observe(self) -> EsView:
        """Five requests whatever the cluster's size: health, nodes, every shard copy in one
        _cat/shards, cluster settings, and the two index settings for every index in one GET."""
        return build_view(
            self.cluster.name, self.url,
            health=self.send(health_call()), nodes=self.send(nodes_call()), shards=self.send(cat_shards_call()),
            cluster_settings=self.send(cluster_settings_call()), index_settings=self.send(index_settings_call()),
            members=[m.name for m in self.cluster.members], observed_at=self.clock.wall(),
        )

    def explain(self, index: str, shard: int, primary: bool) -> Explanation:
        return parse_explanation(self.send(explain_call(index, shard, primary)))

    def canary(self, index: str, doc_id: str) -> bool:
        """Drills: write a document and read it back; True when the read returns what was written."""
        document = {"drengine_canary": doc_id, "at": self.clock.wall()}
        write, read = canary_calls(index, doc_id, document)
        self.send(write)
        found = self.send(read)
        return bool(found.get("found")) and found.get("_source", {}).get("drengine_canary") == doc_id


def _error_text(body: Any) -> str:
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        err = body["error"]
        return f"{err.get('type', 'error')}: {err.get('reason', '')}".strip()
    if isinstance(body, Mapping) and body.get("error"):
        return str(body["error"])
    return str(body)[:500]


def _bounded_node_class(connect: float, read: float) -> Any:
    """The client has one request timeout; this node class applies separate connect and read
    timeouts (urllib3) so that a dead address fails in `connect` seconds and a hung node in `read`."""
    import urllib3
    from elastic_transport import NodeConfig, Urllib3HttpNode

    class BoundedNode(Urllib3HttpNode):
        def __init__(self, config: NodeConfig) -> None:
            super().__init__(config)
            self.pool.timeout = urllib3.Timeout(connect=connect, read=read)

    return BoundedNode

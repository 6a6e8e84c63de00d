"""Elasticsearch connector (the official elasticsearch-py client, imported lazily): one
`HttpCall` per request, rendered as the exact text an operator could send with curl and
executed through the client's raw `perform_request`, so the statement shown at a gate is
the request that goes over the wire. Also the Fact models of what was observed (`EsView`),
parsed from the response shapes Elasticsearch documents.

Every request is bounded by the inventory's connect and read timeouts: a hung node still
accepts the TCP connection, so only the read timeout saves a probe from hanging.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote, urlencode

from drengine.errors import CommandFailed, ConnectError, ProbeTimeout
from drengine.inventory import Cluster, Inventory
from drengine.steps import Fact, Statement, fact

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

ENABLE_SETTING = "cluster.routing.allocation.enable"
DELAY_SETTING = "index.unassigned.node_left.delayed_timeout"
REPLICAS_SETTING = "index.number_of_replicas"
DEFAULT_DELAY = "1m"  # Elasticsearch's default for index.unassigned.node_left.delayed_timeout
CAT_SHARD_COLUMNS = "index,shard,prirep,state,docs,node,unassigned.reason,unassigned.details"
NODE_LEFT_RE = re.compile(r"node_left\s*\[([^\]]+)\]")
# Elasticsearch refuses an HTTP request line longer than 4 KB (http.max_initial_line_length):
# requests naming many indices are split so that each path stays well under it.
MAX_PATH = 3000

JsonScalar = str | int | float | bool | None


# -- the exact request ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpCall:
    """One REST request. `text()` is what is shown and journaled; `ElasticBackend.send`
    executes exactly this method, path, query and body."""

    method: Literal["GET", "POST", "PUT"]
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    # Statuses that are an answer, not an error (health's 408 when wait_for_status times out).
    ok_statuses: tuple[int, ...] = ()
    # Extra seconds this request may take on top of the read timeout (a server-side wait).
    waits: float = 0.0
    what: str = field(default="", compare=False)

    def target(self) -> str:
        # `,` and `*` are legal in a query string: left readable, as an operator would type them.
        return self.path + (f"?{urlencode(self.query, safe=',*')}" if self.query else "")

    def text(self) -> str:
        shown = f"{self.method} {self.target()}"
        if self.body is not None:
            shown += " " + json.dumps(self.body, separators=(", ", ": "))
        return shown

    def statement(self) -> Statement:
        return Statement(target="cluster", text=self.text(), language="http")


def _q(**params: JsonScalar) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in params.items():
        if value is None:
            continue
        out.append((key, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    return tuple(out)


def index_path(indices: Sequence[str]) -> str:
    return "/" + ",".join(quote(i, safe="-_.*") for i in indices)


def chunk_indices(indices: Sequence[str], suffix: str = "/_settings") -> list[list[str]]:
    """Split index names into groups whose request path stays under MAX_PATH characters."""
    chunks: list[list[str]] = []
    current: list[str] = []
    length = len(suffix) + 1
    for name in indices:
        extra = len(quote(name, safe="-_.*")) + 1
        if current and length + extra > MAX_PATH:
            chunks.append(current)
            current, length = [], len(suffix) + 1
        current.append(name)
        length += extra
    if current:
        chunks.append(current)
    return chunks


def health_call(wait_for_status: str | None = None, timeout_s: float | None = None) -> HttpCall:
    if wait_for_status is None:
        return HttpCall("GET", "/_cluster/health", what="read cluster health")
    seconds = max(int(timeout_s or 30), 1)
    return HttpCall("GET", "/_cluster/health", _q(wait_for_status=wait_for_status, timeout=f"{seconds}s"),
                    ok_statuses=(408,), waits=float(seconds), what=f"wait for cluster health {wait_for_status}")


def nodes_call() -> HttpCall:
    return HttpCall("GET", "/_nodes", _q(filter_path="nodes.*.name,nodes.*.roles"), what="list the nodes")


def cat_shards_call() -> HttpCall:
    return HttpCall("GET", "/_cat/shards", _q(format="json", h=CAT_SHARD_COLUMNS), what="list every shard copy")


def cluster_settings_call() -> HttpCall:
    return HttpCall("GET", "/_cluster/settings", _q(flat_settings=True), what="read cluster settings")


def index_settings_call(names: Sequence[str] = (DELAY_SETTING, REPLICAS_SETTING)) -> HttpCall:
    # One request for every index: `_all` keeps the request line short whatever the index count.
    return HttpCall("GET", f"/_all/_settings/{','.join(names)}", _q(flat_settings=True, include_defaults=True),
                    what="read index settings")


def explain_call(index: str, shard: int, primary: bool) -> HttpCall:
    return HttpCall("POST", "/_cluster/allocation/explain", body={"index": index, "shard": shard, "primary": primary},
                    what=f"explain why {index}[{shard}] {'primary' if primary else 'replica'} is unassigned")


def put_cluster_settings_call(scope: Literal["persistent", "transient"], values: Mapping[str, str | None]) -> HttpCall:
    return HttpCall("PUT", "/_cluster/settings", body={scope: dict(values)}, what="change cluster settings")


def put_index_settings_calls(indices: Sequence[str], values: Mapping[str, str | int | None]) -> list[HttpCall]:
    return [
        HttpCall("PUT", index_path(chunk) + "/_settings", body=dict(values),
                 what=f"change settings of {len(chunk)} index(es)")
        for chunk in chunk_indices(sorted(indices))
    ]


def reroute_call(commands: Sequence[Mapping[str, Any]] = (), *, retry_failed: bool = False,
                 dry_run: bool = False, explain: bool = False) -> HttpCall:
    # metric=none: the default response carries the whole cluster state, megabytes on a big cluster.
    query = _q(retry_failed=retry_failed or None, dry_run=dry_run or None, explain=explain or None, metric="none")
    body = {"commands": [dict(c) for c in commands]} if commands else None
    return HttpCall("POST", "/_cluster/reroute", query, body=body, what="reroute shards")


def canary_calls(index: str, doc_id: str, document: Mapping[str, Any]) -> tuple[HttpCall, HttpCall]:
    path = f"/{quote(index, safe='-_.')}/_doc/{quote(doc_id, safe='-_.')}"
    return (HttpCall("PUT", path, _q(refresh="true"), body=dict(document), what="write a canary document"),
            HttpCall("GET", path, what="read the canary document back"))


# -- facts: what was observed ---------------------------------------------------------------------


@fact
class Health(Fact):
    cluster_name: str = ""
    status: str
    timed_out: bool = False
    number_of_nodes: int = 0
    number_of_data_nodes: int = 0
    active_primary_shards: int = 0
    active_shards: int = 0
    relocating_shards: int = 0
    initializing_shards: int = 0
    unassigned_shards: int = 0
    delayed_unassigned_shards: int = 0
    active_shards_percent: float = 0.0

    def line(self) -> str:
        return (f"health {self.status}: {self.number_of_nodes} node(s) ({self.number_of_data_nodes} data), "
                f"{self.active_shards} active shard copies ({self.active_shards_percent:.1f}%), "
                f"{self.unassigned_shards} unassigned ({self.delayed_unassigned_shards} delayed)")


@fact
class EsNode(Fact):
    id: str
    name: str
    roles: list[str] = []

    @property
    def is_data(self) -> bool:
        return any(r == "data" or r.startswith("data_") for r in self.roles)


@fact
class ShardCopy(Fact):
    """One row of _cat/shards."""

    index: str
    shard: int
    primary: bool
    state: str
    node: str | None = None
    docs: int | None = None
    reason: str | None = None
    details: str | None = None

    @property
    def label(self) -> str:
        return f"{self.index}[{self.shard}] {'primary' if self.primary else 'replica'}"

    @property
    def left_node_id(self) -> str | None:
        found = NODE_LEFT_RE.search(self.details or "")
        return found.group(1) if found else None


@fact
class DeciderVerdict(Fact):
    decider: str
    decision: str
    explanation: str = ""


@fact
class StoreInfo(Fact):
    found: bool
    in_sync: bool | None = None
    allocation_id: str | None = None
    size_bytes: int | None = None
    exception: str | None = None


@fact
class NodeDecision(Fact):
    node_id: str
    node_name: str
    decision: str
    store: StoreInfo | None = None
    deciders: list[DeciderVerdict] = []


@fact
class Explanation(Fact):
    """The answer of _cluster/allocation/explain for one unassigned shard copy."""

    index: str
    shard: int
    primary: bool
    can_allocate: str
    allocate_explanation: str = ""
    reason: str = ""
    details: str = ""
    failed_attempts: int = 0
    delayed: bool = False
    remaining_delay: str = ""
    remaining_delay_ms: int = 0
    configured_delay: str = ""
    nodes: list[NodeDecision] = []

    @property
    def key(self) -> tuple[str, int, bool]:
        return (self.index, self.shard, self.primary)


@fact
class IndexInfo(Fact):
    name: str
    number_of_replicas: int
    delayed_timeout: str = DEFAULT_DELAY
    delayed_timeout_set: bool = False  # set on the index (not Elasticsearch's default)


@fact
class AllocationEnable(Fact):
    value: str = "all"
    scope: Literal["persistent", "transient", "default"] = "default"


@fact
class EsView(Fact):
    """An immutable snapshot of the cluster: health, nodes, every shard copy, index settings
    the runbook cares about, and (once explained) why each unassigned copy is unassigned."""

    cluster: str
    url: str
    health: Health
    nodes: list[EsNode] = []
    shards: list[ShardCopy] = []
    indices: list[IndexInfo] = []
    allocation_enable: AllocationEnable = AllocationEnable()
    inventory_members: list[str] = []
    explanations: list[Explanation] = []
    observed_at: float = 0.0

    @property
    def unassigned(self) -> list[ShardCopy]:
        return [s for s in self.shards if s.state == "UNASSIGNED"]

    def index(self, name: str) -> IndexInfo | None:
        return next((i for i in self.indices if i.name == name), None)

    def explanation(self, index: str, shard: int, primary: bool) -> Explanation | None:
        return next((e for e in self.explanations if e.key == (index, shard, primary)), None)

    def data_nodes(self) -> list[EsNode]:
        return [n for n in self.nodes if n.is_data]


# -- parsing the documented response shapes -----------------------------------------------------


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_health(body: Mapping[str, Any]) -> Health:
    return Health(
        cluster_name=str(body.get("cluster_name", "")),
        status=str(body.get("status", "red")),
        timed_out=bool(body.get("timed_out", False)),
        number_of_nodes=int(body.get("number_of_nodes", 0)),
        number_of_data_nodes=int(body.get("number_of_data_nodes", 0)),
        active_primary_shards=int(body.get("active_primary_shards", 0)),
        active_shards=int(body.get("active_shards", 0)),
        relocating_shards=int(body.get("relocating_shards", 0)),
        initializing_shards=int(body.get("initializing_shards", 0)),
        unassigned_shards=int(body.get("unassigned_shards", 0)),
        delayed_unassigned_shards=int(body.get("delayed_unassigned_shards", 0)),
        active_shards_percent=float(body.get("active_shards_percent_as_number", 0.0)),
    )


def parse_nodes(body: Mapping[str, Any]) -> list[EsNode]:
    nodes = body.get("nodes") or {}
    return sorted((EsNode(id=str(node_id), name=str(info.get("name", node_id)), roles=list(info.get("roles", [])))
                   for node_id, info in nodes.items()), key=lambda n: n.name)


def parse_cat_shards(rows: Sequence[Mapping[str, Any]]) -> list[ShardCopy]:
    # _cat values are strings (or null); documented columns only.
    return [
        ShardCopy(
            index=str(r["index"]), shard=int(r["shard"]), primary=r.get("prirep") == "p",
            state=str(r.get("state", "")), node=r.get("node") or None, docs=_int(r.get("docs")),
            reason=r.get("unassigned.reason") or None, details=r.get("unassigned.details") or None,
        )
        for r in rows
    ]


def parse_cluster_settings(body: Mapping[str, Any]) -> AllocationEnable:
    scopes: tuple[Literal["transient"], Literal["persistent"]] = ("transient", "persistent")
    for scope in scopes:  # transient wins over persistent
        value = _flat(body.get(scope) or {}).get(ENABLE_SETTING)
        if value is not None:
            return AllocationEnable(value=str(value), scope=scope)
    return AllocationEnable()


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def parse_index_settings(body: Mapping[str, Any]) -> list[IndexInfo]:
    out = []
    for name, doc in sorted(body.items()):
        own = _flat(doc.get("settings") or {})
        defaults = _flat(doc.get("defaults") or {})
        delay = own.get(DELAY_SETTING)
        out.append(IndexInfo(
            name=str(name),
            number_of_replicas=int(own.get(REPLICAS_SETTING, defaults.get(REPLICAS_SETTING, 1))),
            delayed_timeout=str(delay if delay is not None else defaults.get(DELAY_SETTING, DEFAULT_DELAY)),
            delayed_timeout_set=delay is not None,
        ))
    return out


def parse_explanation(body: Mapping[str, Any]) -> Explanation:
    info = body.get("unassigned_info") or {}
    nodes = []
    for row in body.get("node_allocation_decisions") or []:
        store_doc = row.get("store")
        store = None
        if isinstance(store_doc, Mapping):
            # `found` is absent on some servers when a copy is there: only an explicit false means none.
            store = StoreInfo(
                found=bool(store_doc.get("found", "allocation_id" in store_doc or "in_sync" in store_doc)),
                in_sync=store_doc.get("in_sync"), allocation_id=store_doc.get("allocation_id"),
                size_bytes=_int(store_doc.get("matching_size_in_bytes")),
                exception=(str(store_doc["store_exception"]) if store_doc.get("store_exception") else None),
            )
        nodes.append(NodeDecision(
            node_id=str(row.get("node_id", "")), node_name=str(row.get("node_name", row.get("node_id", ""))),
            decision=str(row.get("node_decision", "")), store=store,
            deciders=[DeciderVerdict(decider=str(d.get("decider", "")), decision=str(d.get("decision", "")),
                                     explanation=str(d.get("explanation", ""))) for d in row.get("deciders") or []],
        ))
    return Explanation(
        index=str(body.get("index", "")), shard=int(body.get("shard", 0)), primary=bool(body.get("primary", False)),
        can_allocate=str(body.get("can_allocate", "")), allocate_explanation=str(body.get("allocate_explanation", "")),
        reason=str(info.get("reason", "")), details=str(info.get("details", "")),
        failed_attempts=int(info.get("failed_allocation_attempts", 0)), delayed=bool(info.get("delayed", False)),
        remaining_delay=str(body.get("remaining_delay", "")), remaining_delay_ms=int(body.get("remaining_delay_in_millis", 0)),
        configured_delay=str(body.get("configured_delay", "")), nodes=nodes,
    )


def build_view(cluster: str, url: str, *, health: Mapping[str, Any], nodes: Mapping[str, Any],
               shards: Sequence[Mapping[str, Any]], cluster_settings: Mapping[str, Any],
               index_settings: Mapping[str, Any], members: Sequence[str] = (),
               explanations: Sequence[Mapping[str, Any]] = (), observed_at: float = 0.0) -> EsView:
    """The view from raw response bodies: used by the connector and by tests that build views
    straight from the simulator's model, with no network."""
    return EsView(
        cluster=cluster, url=url, health=parse_health(health), nodes=parse_nodes(nodes),
        shards=parse_cat_shards(shards), indices=parse_index_settings(index_settings),
        allocation_enable=parse_cluster_settings(cluster_settings), inventory_members=list(members),
        explanations=[parse_explanation(e) for e in explanations], observed_at=observed_at,
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

    def health(self, wait_for_status: str | None = None, timeout_s: float | None = None) -> Health: ...

    def canary(self, index: str, doc_id: str) -> bool: ...

    def close(self) -> None: ...


class ElasticBackend:
    """The real connector: every member's HTTP address is a node the client may use."""

    def __init__(self, cluster: Cluster, inventory: Inventory | None = None, *, hosts: Sequence[str] | None = None) -> None:
        self.cluster = cluster
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

    def close(self) -> None:
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
            client = client.options(**options)
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
    def health(self, wait_for_status: str | None = None, timeout_s: float | None = None) -> Health:
        return parse_health(self.send(health_call(wait_for_status, timeout_s)))

    def shards(self) -> list[ShardCopy]:
        return parse_cat_shards(self.send(cat_shards_call()))

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
            members=[m.name for m in self.cluster.members], observed_at=time.time(),
        )

    def explain(self, index: str, shard: int, primary: bool) -> Explanation:
        return parse_explanation(self.send(explain_call(index, shard, primary)))

    def canary(self, index: str, doc_id: str) -> bool:
        """Drills: write a document and read it back; True when the read returns what was written."""
        document = {"drengine_canary": doc_id, "at": time.time()}
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

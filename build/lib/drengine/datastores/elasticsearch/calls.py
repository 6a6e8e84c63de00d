"""The REST requests drengine sends to Elasticsearch, as `HttpCall` values: each one
rendered as the exact text an operator could send with curl, and executed as it stands."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode

from drengine.steps import Statement

if TYPE_CHECKING:
    pass

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


def health_call(wait_for_status: str | None = None, timeout_s: float | None = None,
                settled: bool = False) -> HttpCall:
    """Cluster health; with `wait_for_status`, held by the server until that status (and, when
    `settled`, no copy initializing: a new empty primary initializing is already yellow) or
    the timeout (then 408)."""
    if wait_for_status is None:
        return HttpCall("GET", "/_cluster/health", what="read cluster health")
    seconds = max(int(timeout_s or 30), 1)
    query = _q(wait_for_status=wait_for_status, timeout=f"{seconds}s",
               **({"wait_for_no_initializing_shards": True} if settled else {}))
    return HttpCall("GET", "/_cluster/health", query, ok_statuses=(408,), waits=float(seconds),
                    what=f"wait for cluster health {wait_for_status}{' with no copy initializing' if settled else ''}")


def nodes_call() -> HttpCall:
    return HttpCall("GET", "/_nodes", _q(filter_path="nodes.*.name,nodes.*.roles"), what="list the nodes")


def cat_shards_call() -> HttpCall:
    return HttpCall("GET", "/_cat/shards", _q(format="json", h=CAT_SHARD_COLUMNS), what="list every shard copy")


RECOVERY_COLUMNS = "index,shard,type,stage,source_node,target_node,bytes_recovered,bytes_total"


def recovery_call() -> HttpCall:
    """The recoveries in flight, bytes as plain numbers (GET _cat/recovery, active_only)."""
    return HttpCall("GET", "/_cat/recovery", _q(active_only=True, bytes="b", format="json", h=RECOVERY_COLUMNS),
                    what="list the shard recoveries in flight")


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



def canary_ids_call(index: str, size: int = 10000) -> HttpCall:
    """The ids of the documents of an index (drills count their canaries with it)."""
    return HttpCall("GET", f"/{quote(index, safe='-_.')}/_search", _q(size=size, _source="false"),
                    what="list the canary documents")

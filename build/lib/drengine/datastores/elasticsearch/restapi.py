"""The REST endpoints of the simulated Elasticsearch server: routing, query and body
parsing, and each endpoint turned into model calls under the server's lock."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from drengine.datastores.elasticsearch.simulator import SimApiError
from drengine.datastores.elasticsearch.simulator.model import (
    JsonDict,
    human_bytes,
    human_time,
    iso_time,
    parse_time_value,
)

if TYPE_CHECKING:
    from drengine.datastores.elasticsearch.rest import SimServer

HEALTH_POLL_SECONDS = 0.05
STATUS_RANK = {"green": 0, "yellow": 1, "red": 2}
CAT_ALIASES = {
    "i": "index",
    "idx": "index",
    "s": "shard",
    "sh": "shard",
    "p": "prirep",
    "pr": "prirep",
    "primaryOrReplica": "prirep",
    "st": "state",
    "d": "docs",
    "dc": "docs",
    "sto": "store",
    "n": "node",
    "ur": "unassigned.reason",
    "ua": "unassigned.at",
    "ud": "unassigned.details",
    "r": "node.role",
    "role": "node.role",
    "nodeRole": "node.role",
    "m": "master",
    "hp": "heap.percent",
    "rp": "ram.percent",
    "dup": "disk.used_percent",
    "v": "version",
}
# RestShardsAction's default columns (the others only with `h`).
DEFAULT_CAT_SHARD_COLUMNS = (
    "index",
    "shard",
    "prirep",
    "state",
    "docs",
    "store",
    "dataset",
    "ip",
    "node",
)
# RestCatRecoveryAction.getTableWithHeader: its columns (all shown by default) and their aliases.
CAT_RECOVERY_COLUMNS = (
    "index", "shard", "time", "type", "stage", "source_host", "source_node", "target_host", "target_node",
    "repository", "snapshot", "files", "files_recovered", "files_percent", "files_total", "bytes", "bytes_recovered",
    "bytes_percent", "bytes_total", "translog_ops", "translog_ops_recovered", "translog_ops_percent",
)
CAT_RECOVERY_ALIASES = {
    "i": "index", "idx": "index", "s": "shard", "sh": "shard", "start": "start_time", "start_millis": "start_time_millis",
    "stop": "stop_time", "stop_millis": "stop_time_millis", "t": "time", "ti": "time", "ty": "type", "st": "stage",
    "shost": "source_host", "snode": "source_node", "thost": "target_host", "tnode": "target_node", "rep": "repository",
    "snap": "snapshot", "f": "files", "fr": "files_recovered", "fp": "files_percent", "tf": "files_total", "b": "bytes",
    "br": "bytes_recovered", "bp": "bytes_percent", "tb": "bytes_total", "to": "translog_ops",
    "tor": "translog_ops_recovered", "top": "translog_ops_percent",
}
DEFAULT_CAT_NODE_COLUMNS = (
    "ip",
    "heap.percent",
    "ram.percent",
    "cpu",
    "load_1m",
    "load_5m",
    "load_15m",
    "node.role",
    "master",
    "name",
)


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    accept: str

    def flag(self, name: str, default: bool = False) -> bool:
        if name not in self.query:
            return default
        return self.query[name].lower() in ("", "true", "1", "yes")


@dataclass
class Response:
    status: int
    body: Any
    text: bool = False
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["SimServer", Request], Response]


def ok(body: Any, status: int = 200) -> Response:
    return Response(status, body)


# ------------------------------------------------------------- endpoints ---


def root(server: SimServer, request: Request) -> Response:
    return ok(server.read(lambda m: m.root_info()))


def cluster_health(server: SimServer, request: Request) -> Response:
    wanted = request.query.get("wait_for_status")
    if wanted is not None and wanted not in STATUS_RANK:
        raise SimApiError(
            400,
            "illegal_argument_exception",
            f"unknown cluster health status [{wanted}]",
        )
    wanted_nodes = request.query.get("wait_for_nodes")
    timeout = parse_time_value(request.query.get("timeout", "30s"), "timeout")
    index, level = request.params.get("index"), request.query.get("level", "cluster")

    settled = request.flag("wait_for_no_initializing_shards")

    def satisfied(body: JsonDict) -> bool:
        status_ok = wanted is None or STATUS_RANK[body["status"]] <= STATUS_RANK[wanted]
        return (status_ok and (wanted_nodes is None or nodes_match(body["number_of_nodes"], wanted_nodes))
                and (not settled or body["initializing_shards"] == 0))

    body = server.wait_for(lambda m: m.health(index, level), satisfied, timeout)
    if satisfied(body):
        return ok(body)
    body["timed_out"] = True
    return ok(body, 408)


def nodes_match(count: int, expression: str) -> bool:
    found = re.fullmatch(r"\s*(>=|<=|>|<|ge\(|le\(|gt\(|lt\()?\s*(\d+)\)?\s*", expression)
    if found is None:
        raise SimApiError(
            400,
            "illegal_argument_exception",
            f"cannot parse wait_for_nodes [{expression}]",
        )
    operator, number = found.group(1) or "", int(found.group(2))
    checks: dict[str, Callable[[], bool]] = {
        ">=": lambda: count >= number,
        "ge(": lambda: count >= number,
        "<=": lambda: count <= number,
        "le(": lambda: count <= number,
        ">": lambda: count > number,
        "gt(": lambda: count > number,
        "<": lambda: count < number,
        "lt(": lambda: count < number,
        "": lambda: count == number,
    }
    return checks[operator]()


def cat_shards(server: SimServer, request: Request) -> Response:
    rows = server.read(lambda m: m.cat_shards(request.params.get("index")))
    return cat_response(request, rows, DEFAULT_CAT_SHARD_COLUMNS)


def cat_nodes(server: SimServer, request: Request) -> Response:
    return cat_response(request, server.read(lambda m: m.cat_nodes()), DEFAULT_CAT_NODE_COLUMNS)


def _percent(done: float, total: float) -> str:
    # Nothing to copy counts as all copied ("0b", "100.0%" in the specification's CatRecoveryResponseExample2).
    return f"{(100.0 * done / total) if total else 100.0:.1f}%"


def _sized(value: int, unit: str | None) -> str:
    """A byte count as _cat renders it: in `bytes=` units (whole numbers), else human-readable."""
    if unit is None:
        return human_bytes(value)
    factors = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4, "pb": 1024**5}
    if unit not in factors:
        raise SimApiError(400, "illegal_argument_exception", f"failed to parse setting [bytes] with value [{unit}]")
    return str(value // factors[unit])


def _timed(seconds: float, unit: str | None) -> str:
    if unit is None:
        return human_time(seconds)
    factors = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    if unit not in factors:
        raise SimApiError(400, "illegal_argument_exception", f"failed to parse setting [time] with value [{unit}]")
    return str(int(seconds / factors[unit]))


def cat_recovery(server: SimServer, request: Request) -> Response:
    """GET _cat/recovery: one row per shard copy's recovery, ongoing or done (RestCatRecoveryAction)."""
    rows = server.read(lambda m: m.cat_recovery(request.params.get("index"), request.flag("active_only")))
    unit, time_unit = request.query.get("bytes"), request.query.get("time")
    table = []
    for row in rows:
        table.append({
            "index": row.index, "shard": str(row.shard), "start_time": iso_time(row.started_at),
            "start_time_millis": str(int(row.started_at * 1000)),
            "stop_time": iso_time(row.stopped_at) if row.stopped_at is not None else None,
            "stop_time_millis": str(int(row.stopped_at * 1000)) if row.stopped_at is not None else None,
            "time": _timed(row.seconds, time_unit), "type": row.type, "stage": row.stage,
            "source_host": row.source_host or "n/a", "source_node": row.source_node or "n/a",
            "target_host": row.target_host, "target_node": row.target_node, "repository": "n/a", "snapshot": "n/a",
            "files": str(row.files), "files_recovered": str(row.files_recovered),
            "files_percent": _percent(row.files_recovered, row.files), "files_total": str(row.files),
            "bytes": _sized(row.bytes, unit), "bytes_recovered": _sized(row.bytes_recovered, unit),
            "bytes_percent": _percent(row.bytes_recovered, row.bytes), "bytes_total": _sized(row.bytes, unit),
            "translog_ops": "0", "translog_ops_recovered": "0", "translog_ops_percent": "100.0%",
        })
    return cat_response(request, table, CAT_RECOVERY_COLUMNS, CAT_RECOVERY_ALIASES)


def cat_response(request: Request, rows: list[dict[str, str | None]], defaults: tuple[str, ...],
                 aliases: dict[str, str] | None = None) -> Response:
    names = CAT_ALIASES if aliases is None else aliases
    # RestTable.buildDisplayHeaders: a column asked for by an alias is shown under that alias.
    shown = [c.strip() for c in request.query["h"].split(",")] if "h" in request.query else list(defaults)
    columns = shown
    selected = [{name: row.get(names.get(name, name)) for name in shown} for row in rows]
    if request.query.get("format") == "json":
        return ok(selected)
    table = [[value or "" for value in row.values()] for row in selected]
    if request.flag("v"):
        table.insert(0, columns)
    widths = [max((len(line[i]) for line in table), default=0) for i in range(len(columns))]
    text = "".join(" ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() + "\n" for line in table)
    return Response(200, text, text=True)


def allocation_explain(server: SimServer, request: Request) -> Response:
    source = request.body if isinstance(request.body, dict) and request.body else request.query
    index = source.get("index")
    shard = source.get("shard")
    primary = source.get("primary")
    if isinstance(primary, str):
        primary = primary.lower() == "true"
    current_node = source.get("current_node")
    include_yes = request.flag("include_yes_decisions")
    return ok(
        server.read(
            lambda m: m.explain(
                None if index is None else str(index),
                None if shard is None else int(shard),
                None if primary is None else bool(primary),
                current_node=current_node,
                include_yes_decisions=include_yes,
                human=request.flag("human"),
            )
        )
    )


def get_cluster_settings(server: SimServer, request: Request) -> Response:
    return ok(
        server.read(
            lambda m: m.get_cluster_settings(
                include_defaults=request.flag("include_defaults"),
                flat=request.flag("flat_settings"),
            )
        )
    )


def put_cluster_settings(server: SimServer, request: Request) -> Response:
    body = request.body if isinstance(request.body, dict) else {}
    if not body.get("persistent") and not body.get("transient"):
        raise SimApiError(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: no settings to update;",
        )
    return ok(server.write(lambda m: m.put_cluster_settings(body.get("persistent"), body.get("transient"))))


def get_index_settings(server: SimServer, request: Request) -> Response:
    target = request.params.get("index")
    return ok(server.read(lambda m: m.get_index_settings(target, flat=request.flag("flat_settings"))))


def put_index_settings(server: SimServer, request: Request) -> Response:
    if not isinstance(request.body, dict) or not request.body:
        raise SimApiError(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: no settings to update;",
        )
    target = request.params.get("index")
    body: JsonDict = request.body
    return ok(server.write(lambda m: m.put_index_settings(target, body)))


def cluster_reroute(server: SimServer, request: Request) -> Response:
    body = request.body if isinstance(request.body, dict) else {}
    commands = body.get("commands", [])
    if not isinstance(commands, list):
        raise SimApiError(
            400,
            "x_content_parse_exception",
            "[cluster_reroute] commands must be an array",
        )
    dry_run = request.flag("dry_run") or bool(body.get("dry_run"))
    return ok(
        server.write(
            lambda m: m.reroute(
                commands,
                dry_run=dry_run,
                retry_failed=request.flag("retry_failed"),
                explain=request.flag("explain"),
                metric=request.query.get("metric"),
            )
        )
    )


def nodes_info(server: SimServer, request: Request) -> Response:
    return ok(server.read(lambda m: m.nodes_info()))


def index_document(server: SimServer, request: Request) -> Response:
    if not isinstance(request.body, dict):
        raise SimApiError(400, "parse_exception", "request body is required")
    index = request.params["index"]
    doc_id = request.params.get("id") or server.next_doc_id()
    source: JsonDict = request.body
    timeout = request.query.get("timeout", "1m")
    # A write waits up to `timeout` for its primary to be active, then fails with 503.
    server.write(lambda m: m.ensure_index(index))
    server.wait_for(lambda m: {"ready": m.primary_active_for(index, doc_id)}, lambda b: bool(b["ready"]),
                    parse_time_value(timeout, "timeout"))
    status, body = server.write(lambda m: m.index_doc(index, doc_id, source, timeout=timeout))
    return ok(body, status)


def get_document(server: SimServer, request: Request) -> Response:
    status, body = server.read(lambda m: m.get_doc(request.params["index"], request.params["id"]))
    return ok(body, status)


def count_documents(server: SimServer, request: Request) -> Response:
    return ok(server.read(lambda m: m.count(request.params.get("index"))))


def search_documents(server: SimServer, request: Request) -> Response:
    size = int(request.query.get("size", "10"))
    return ok(server.read(lambda m: m.search(request.params.get("index"), size)))


def refresh_index(server: SimServer, request: Request) -> Response:
    count = server.read(lambda m: sum(len(meta.shards) for meta in m.resolve_indices(request.params.get("index"))))
    return ok({"_shards": {"total": count, "successful": count, "failed": 0}})


def create_index(server: SimServer, request: Request) -> Response:
    body = request.body if isinstance(request.body, dict) else {}
    settings = body.get("settings", {})
    index = request.params["index"]
    server.write(lambda m: m.create_index(index, settings=settings))
    # wait_for_active_shards defaults to 1 (the primaries), for up to `timeout` (30s); the index
    # is created either way, shards_acknowledged says whether they started in time.
    body = server.wait_for(lambda m: {"ready": m.primaries_active(index)}, lambda b: bool(b["ready"]),
                           parse_time_value(request.query.get("timeout", "30s"), "timeout"))
    return ok({"acknowledged": True, "shards_acknowledged": bool(body["ready"]), "index": index})


def index_exists(server: SimServer, request: Request) -> Response:
    exists = server.read(lambda m: request.params["index"] in m.state.indices)
    return ok(None, 200 if exists else 404)


def get_index(server: SimServer, request: Request) -> Response:
    settings = server.read(lambda m: m.get_index_settings(request.params["index"]))
    return ok({name: {"aliases": {}, "mappings": {}, **value} for name, value in settings.items()})


def delete_index(server: SimServer, request: Request) -> Response:
    server.write(lambda m: m.delete_index(request.params["index"]))
    return ok({"acknowledged": True})


_INDEX = r"(?P<index>[^/_][^/]*|_all)"
ROUTES: list[tuple[frozenset[str], re.Pattern[str], Handler]] = [
    (frozenset({"GET", "HEAD"}), re.compile(r"/"), root),
    (
        frozenset({"GET"}),
        re.compile(r"/_cluster/health(?:/(?P<index>[^/]+))?"),
        cluster_health,
    ),
    (frozenset({"GET"}), re.compile(r"/_cat/shards(?:/(?P<index>[^/]+))?"), cat_shards),
    (frozenset({"GET"}), re.compile(r"/_cat/nodes"), cat_nodes),
    (frozenset({"GET"}), re.compile(r"/_cat/recovery(?:/(?P<index>[^/]+))?"), cat_recovery),
    (
        frozenset({"GET", "POST"}),
        re.compile(r"/_cluster/allocation/explain"),
        allocation_explain,
    ),
    (frozenset({"GET"}), re.compile(r"/_cluster/settings"), get_cluster_settings),
    (frozenset({"PUT"}), re.compile(r"/_cluster/settings"), put_cluster_settings),
    (frozenset({"POST"}), re.compile(r"/_cluster/reroute"), cluster_reroute),
    (frozenset({"GET"}), re.compile(r"/_nodes(?:/[^/]+)*"), nodes_info),
    (frozenset({"GET"}), re.compile(r"/_settings"), get_index_settings),
    (frozenset({"PUT"}), re.compile(r"/_settings"), put_index_settings),
    (frozenset({"GET", "POST"}), re.compile(r"/_count"), count_documents),
    (
        frozenset({"GET"}),
        re.compile(rf"/{_INDEX}/_settings(?:/[^/]+)?"),
        get_index_settings,
    ),
    (frozenset({"PUT"}), re.compile(rf"/{_INDEX}/_settings"), put_index_settings),
    (frozenset({"GET", "POST"}), re.compile(rf"/{_INDEX}/_count"), count_documents),
    (frozenset({"GET", "POST"}), re.compile(rf"/{_INDEX}/_search"), search_documents),
    (frozenset({"GET", "POST"}), re.compile(rf"/{_INDEX}/_refresh"), refresh_index),
    (frozenset({"POST"}), re.compile(r"/_refresh"), refresh_index),
    (
        frozenset({"PUT", "POST"}),
        re.compile(rf"/{_INDEX}/_doc/(?P<id>[^/]+)"),
        index_document,
    ),
    (frozenset({"POST"}), re.compile(rf"/{_INDEX}/_doc"), index_document),
    (frozenset({"GET"}), re.compile(rf"/{_INDEX}/_doc/(?P<id>[^/]+)"), get_document),
    (frozenset({"PUT"}), re.compile(rf"/{_INDEX}"), create_index),
    (frozenset({"HEAD"}), re.compile(rf"/{_INDEX}"), index_exists),
    (frozenset({"GET"}), re.compile(rf"/{_INDEX}"), get_index),
    (frozenset({"DELETE"}), re.compile(rf"/{_INDEX}"), delete_index),
]


def route(method: str, path: str) -> tuple[Handler, dict[str, str]]:
    known_path = False
    for methods, pattern, handler in ROUTES:
        found = pattern.fullmatch(path)
        if found is None:
            continue
        known_path = True
        if method in methods:
            return handler, {k: unquote(v) for k, v in found.groupdict().items() if v is not None}
    if known_path:
        raise SimApiError(
            405,
            "method_not_allowed",
            f"Incorrect HTTP method for uri [{path}] and method [{method}]",
        )
    raise SimApiError(
        400,
        "illegal_argument_exception",
        f"no handler found for uri [{path}] and method [{method}]",
    )




# ------------------------------------------------------------ parameters ---

# BaseRestHandler: parameters every handler accepts (ALWAYS_SUPPORTED and RestResponse's
# error_trace); each handler's own are those its REST spec declares (rest-api-spec/api/*.json).
ALWAYS_SUPPORTED = frozenset({"format", "filter_path", "pretty", "human", "error_trace"})
_CAT = frozenset({"format", "h", "help", "s", "v", "master_timeout"})
_INDICES = frozenset({"index", "allow_no_indices", "expand_wildcards", "ignore_unavailable"})
SUPPORTED_PARAMS: dict[Handler, frozenset[str]] = {
    root: frozenset(),
    cluster_health: frozenset({"index", "expand_wildcards", "level", "local", "master_timeout", "timeout",
                               "wait_for_active_shards", "wait_for_events", "wait_for_nodes",
                               "wait_for_no_initializing_shards", "wait_for_no_relocating_shards", "wait_for_status"}),
    cat_shards: _CAT | {"index", "bytes", "time"},
    cat_nodes: _CAT | {"bytes", "full_id", "include_unloaded_segments", "time"},
    cat_recovery: _CAT | {"index", "active_only", "bytes", "detailed", "time"},
    allocation_explain: frozenset({"include_disk_info", "include_yes_decisions", "master_timeout", "index", "shard",
                                   "primary", "current_node"}),
    get_cluster_settings: frozenset({"flat_settings", "include_defaults", "local", "master_timeout", "timeout"}),
    put_cluster_settings: frozenset({"flat_settings", "master_timeout", "timeout"}),
    cluster_reroute: frozenset({"dry_run", "explain", "metric", "retry_failed", "master_timeout", "timeout"}),
    nodes_info: frozenset({"flat_settings", "timeout", "node_id", "metric"}),
    get_index_settings: _INDICES | {"name", "flat_settings", "include_defaults", "local", "master_timeout"},
    put_index_settings: _INDICES | {"flat_settings", "master_timeout", "preserve_existing", "reopen", "timeout"},
    count_documents: _INDICES | {"analyzer", "analyze_wildcard", "default_operator", "df", "ignore_throttled", "lenient",
                                 "min_score", "preference", "q", "routing", "terminate_after"},
    search_documents: _INDICES | {"allow_partial_search_results", "analyzer", "analyze_wildcard", "batched_reduce_size",
                                  "ccs_minimize_roundtrips", "default_operator", "df", "docvalue_fields", "explain",
                                  "from", "ignore_throttled", "lenient", "max_concurrent_shard_requests",
                                  "pre_filter_shard_size", "preference", "q", "request_cache", "rest_total_hits_as_int",
                                  "routing", "scroll", "search_type", "seq_no_primary_term", "size", "sort", "_source",
                                  "_source_excludes", "_source_includes", "stats", "stored_fields", "terminate_after",
                                  "timeout", "track_scores", "track_total_hits", "typed_keys", "version"},
    refresh_index: _INDICES,
    index_document: frozenset({"index", "id", "if_primary_term", "if_seq_no", "op_type", "pipeline", "refresh",
                               "require_alias", "routing", "timeout", "version", "version_type",
                               "wait_for_active_shards"}),
    get_document: frozenset({"index", "id", "preference", "realtime", "refresh", "routing", "_source",
                             "_source_excludes", "_source_includes", "stored_fields", "version", "version_type"}),
    create_index: frozenset({"index", "master_timeout", "timeout", "wait_for_active_shards"}),
    index_exists: _INDICES | {"flat_settings", "include_defaults", "local"},
    get_index: _INDICES | {"features", "flat_settings", "include_defaults", "local", "master_timeout"},
    delete_index: _INDICES | {"master_timeout", "timeout"},
}


def _similarity(a: str, b: str) -> float:
    """Lucene's LevenshteinDistance.getDistance: 1 - edits / the longer length."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - previous[-1] / longest


def check_parameters(handler: Handler, request: Request) -> None:
    """BaseRestHandler.handleRequest: an unknown query parameter is refused with 400, with
    suggestions: "request [path] contains unrecognized parameter: [x] -> did you mean [y]?"."""
    supported = SUPPORTED_PARAMS.get(handler)
    if supported is None:
        return
    allowed = supported | ALWAYS_SUPPORTED
    unknown = sorted(set(request.query) - allowed)
    if not unknown:
        return
    parts = []
    for name in unknown:
        scored = sorted(((_similarity(name, c), c) for c in allowed if _similarity(name, c) > 0.5),
                        key=lambda t: (-t[0], t[1]))
        part = f"[{name}]"
        if scored:
            listed = "[" + ", ".join(c for _, c in scored) + "]"
            part += f" -> did you mean {'any of ' if len(scored) > 1 else ''}{listed}?"
        parts.append(part)
    raise SimApiError(400, "illegal_argument_exception",
                      f"request [{request.path}] contains unrecognized parameter{'s' if len(unknown) > 1 else ''}: "
                      + ", ".join(parts))

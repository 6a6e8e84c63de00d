"""Serve a simulated Elasticsearch cluster over its REST API on 127.0.0.1.

Owns the HTTP surface only: routing, query/body parsing, the headers the
official client insists on (``X-Elastic-Product``, compatible media types),
error bodies, ``wait_for_status`` waiting, and a "hang" fault that accepts
requests and never answers (to test client timeouts). Every model access
happens under one lock; the model itself is ``drengine.datastores.elasticsearch.simulator``.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from drengine.datastores.elasticsearch.simulator import SCENARIOS, EsCluster, SimApiError, build_scenario
from drengine.datastores.elasticsearch.simulator.model import JsonDict, parse_time_value

T = TypeVar("T")
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
DEFAULT_CAT_SHARD_COLUMNS = (
    "index",
    "shard",
    "prirep",
    "state",
    "docs",
    "store",
    "ip",
    "node",
)
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

    def satisfied(body: JsonDict) -> bool:
        status_ok = wanted is None or STATUS_RANK[body["status"]] <= STATUS_RANK[wanted]
        return status_ok and (wanted_nodes is None or nodes_match(body["number_of_nodes"], wanted_nodes))

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
    return cat_response(request, rows, DEFAULT_CAT_SHARD_COLUMNS + ("unassigned.reason",))


def cat_nodes(server: SimServer, request: Request) -> Response:
    return cat_response(request, server.read(lambda m: m.cat_nodes()), DEFAULT_CAT_NODE_COLUMNS)


def cat_response(request: Request, rows: list[dict[str, str | None]], defaults: tuple[str, ...]) -> Response:
    columns = (
        [CAT_ALIASES.get(c.strip(), c.strip()) for c in request.query["h"].split(",")] if "h" in request.query else list(defaults)
    )
    if "h" not in request.query and request.query.get("format") != "json":
        columns = [c for c in columns if c != "unassigned.reason"]
    selected = [{column: row.get(column) for column in columns} for row in rows]
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
    status, body = server.write(lambda m: m.index_doc(index, doc_id, source))
    return ok(body, status)


def get_document(server: SimServer, request: Request) -> Response:
    status, body = server.read(lambda m: m.get_doc(request.params["index"], request.params["id"]))
    return ok(body, status)


def count_documents(server: SimServer, request: Request) -> Response:
    return ok(server.read(lambda m: m.count(request.params.get("index"))))


def refresh_index(server: SimServer, request: Request) -> Response:
    count = server.read(lambda m: sum(len(meta.shards) for meta in m.resolve_indices(request.params.get("index"))))
    return ok({"_shards": {"total": count, "successful": count, "failed": 0}})


def create_index(server: SimServer, request: Request) -> Response:
    body = request.body if isinstance(request.body, dict) else {}
    settings = body.get("settings", {})
    index = request.params["index"]
    server.write(lambda m: m.create_index(index, settings=settings))
    return ok({"acknowledged": True, "shards_acknowledged": True, "index": index})


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


# ---------------------------------------------------------------- server ---


class _HttpServer(ThreadingHTTPServer):
    # Join handler threads on close so that stop() leaves nothing running.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimServer) -> None:
        self.sim = sim
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.server.sim._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sim._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        # The simulator must not print; the engine's journal records what matters.
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        raw = self._read_body()
        sim = self.server.sim
        if sim.wait_while_hanging():
            # Never answer: the client's own timeout is what is under test.
            self.close_connection = True
            return
        response = self._respond(raw)
        self._send(response)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _respond(self, raw: bytes) -> Response:
        sim = self.server.sim
        try:
            self._check_compatibility()
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            handler, params = route(self.command, path)
            body = json.loads(raw) if raw.strip() else None
            request = Request(
                self.command,
                path,
                params,
                dict(parse_qsl(parts.query, keep_blank_values=True)),
                body,
                self.headers.get("Accept", ""),
            )
            return handler(sim, request)
        except SimApiError as error:
            return Response(error.status, error.body())
        except json.JSONDecodeError as error:
            return Response(
                400,
                SimApiError(
                    400,
                    "x_content_parse_exception",
                    f"failed to parse request body: {error}",
                ).body(),
            )
        except (KeyError, ValueError, TypeError) as error:
            return Response(
                400,
                SimApiError(400, "illegal_argument_exception", f"bad request: {error!r}").body(),
            )

    def _compat_version(self) -> str | None:
        found = re.search(
            r"compatible-with=(\d+)",
            self.headers.get("Accept", "") + self.headers.get("Content-Type", ""),
        )
        return found.group(1) if found else None

    def _check_compatibility(self) -> None:
        requested = self._compat_version()
        major = int(self.server.sim.version.split(".")[0])
        if requested is not None and int(requested) not in (major, major - 1):
            raise SimApiError(
                400,
                "media_type_header_exception",
                f"Invalid media-type value on headers [Accept, Content-Type]: compatible-with={requested} is not supported by version {self.server.sim.version}",
            )

    def _send(self, response: Response) -> None:
        if response.text:
            payload = str(response.body).encode()
            content_type = "text/plain; charset=UTF-8"
        else:
            payload = b"" if response.body is None else json.dumps(response.body).encode()
            compat = self._compat_version()
            content_type = f"application/vnd.elasticsearch+json;compatible-with={compat}" if compat else "application/json"
        self.send_response(response.status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class SimServer:
    """An Elasticsearch REST endpoint on 127.0.0.1 backed by an ``EsCluster``."""

    def __init__(self, model: EsCluster, *, port: int = 0) -> None:
        self.model = model
        self._port = port
        self._condition = threading.Condition()
        self._hanging = False
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._doc_counter = 0

    @property
    def version(self) -> str:
        return self.model.state.version

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulated Elasticsearch server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        if self._server is not None:
            return self.url
        self._stopping.clear()
        self._server = _HttpServer(("127.0.0.1", self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="es-sim-http",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        with self._condition:
            self._condition.notify_all()
        server.shutdown()
        with self._connections_lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            # Unblock handler threads parked on idle keep-alive connections.
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- faults

    def hang(self, hanging: bool = True) -> None:
        """Accept requests but answer none of them until ``hang(False)`` or ``stop()``."""
        with self._condition:
            self._hanging = hanging
            self._condition.notify_all()

    def wait_while_hanging(self) -> bool:
        """Block while hanging; True means the request must go unanswered."""
        with self._condition:
            if not self._hanging:
                return False
            while self._hanging and not self._stopping.is_set():
                self._condition.wait(HEALTH_POLL_SECONDS)
            return True

    # ---- model access (one lock)

    def read(self, action: Callable[[EsCluster], T]) -> T:
        """Run ``action`` under the lock after letting expired allocation delays take effect."""
        with self._condition:
            self.model.allocate()
            return action(self.model)

    def write(self, action: Callable[[EsCluster], T]) -> T:
        """Run a mutating ``action`` under the lock and wake requests waiting for a health status."""
        with self._condition:
            self.model.allocate()
            try:
                return action(self.model)
            finally:
                self._condition.notify_all()

    def with_model(self, action: Callable[[EsCluster], T]) -> T:
        """For tests and fault injection while serving (kill a node, move the clock)."""
        return self.write(action)

    def snapshot(self) -> JsonDict:
        return self.read(lambda m: m.to_json())

    def wait_for(
        self,
        observe: Callable[[EsCluster], JsonDict],
        done: Callable[[JsonDict], bool],
        timeout: float,
    ) -> JsonDict:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._condition:
            while True:
                self.model.allocate()
                body = observe(self.model)
                remaining = deadline - time.monotonic()
                if done(body) or remaining <= 0 or self._stopping.is_set():
                    return body
                self._condition.wait(min(remaining, HEALTH_POLL_SECONDS))

    def next_doc_id(self) -> str:
        with self._condition:
            self._doc_counter += 1
            return f"sim-{self._doc_counter:08d}"

    def _track(self, connection: socket.socket, opened: bool) -> None:
        with self._connections_lock:
            if opened:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


# ------------------------------------------------------------------ main ---


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a simulated Elasticsearch cluster on 127.0.0.1.")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="one-node-lost-3")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument(
        "--state",
        type=Path,
        help="load the cluster from this JSON file if it exists; save it on exit",
    )
    args = parser.parse_args(argv)
    if args.state is not None and args.state.exists():
        model = EsCluster.from_json(json.loads(args.state.read_text()))
    else:
        model = build_scenario(args.scenario)
    server = SimServer(model, port=args.port)
    print(
        f"simulated Elasticsearch ({args.scenario}) at {server.start()}  (Ctrl-C to stop)",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if args.state is not None:
            args.state.write_text(json.dumps(model.to_json()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

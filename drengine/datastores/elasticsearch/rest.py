"""Serve a simulated Elasticsearch cluster over its REST API on 127.0.0.1.

Owns the HTTP server: the headers the official client insists on
(``X-Elastic-Product``, compatible media types), error bodies, waiting for a health status,
and a "hang" fault that accepts requests and never answers (to test client timeouts).
The endpoints are in ``restapi``; every model access happens under one lock; the model
itself is ``drengine.datastores.elasticsearch.simulator``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

from drengine.clock import SimulatedClock
from drengine.datastores.elasticsearch.restapi import (
    HEALTH_POLL_SECONDS,
    Handler,
    Request,
    Response,
    check_parameters,
    route,
)
from drengine.datastores.elasticsearch.simulator import EsCluster, SimApiError
from drengine.datastores.elasticsearch.simulator.model import JsonDict, parse_time_value

T = TypeVar("T")


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
    # TCP_NODELAY, as Elasticsearch sets it (http.tcp.no_delay): otherwise the body, written after
    # the headers, waits for the client's delayed ACK (~40 ms per request on loopback).
    disable_nagle_algorithm = True
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
            check_parameters(handler, request)
            return self._handle(handler, request)
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

    def _handle(self, handler: Handler, request: Request) -> Response:
        """Run the handler; with no master, wait the request's master_timeout (30s by default) for
        one, as TransportMasterNodeAction does, then answer 503."""
        sim = self.server.sim
        try:
            return handler(sim, request)
        except SimApiError as error:
            if error.error_type != "master_not_discovered_exception":
                raise
            timeout = parse_time_value(request.query.get("master_timeout", "30s"), "master_timeout")
            found = sim.wait_for(lambda m: {"master": m.has_master()}, lambda b: bool(b["master"]), timeout)
            if not found["master"]:
                raise
            return handler(sim, request)

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


# The least a waiting request moves a SimulatedClock (so that a wait always ends).
SIMULATED_STEP = 0.01


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
            # How long stop() waits for the loop to see it (a select timeout: no busy loop).
            kwargs={"poll_interval": 0.005},
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
            self.model.advance()
            return action(self.model)

    def write(self, action: Callable[[EsCluster], T]) -> T:
        """Run a mutating ``action`` under the lock and wake requests waiting for a health status."""
        with self._condition:
            self.model.advance()
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
        """Wait for `done` on the model's clock, as the server waits (`timeout` is the request's).
        On a SimulatedClock nobody else moves time while the request waits: the server moves the
        clock itself, from one model event (a recovery done, a delay run out) to the next."""
        clock = self.model.clock
        deadline = clock.now() + max(timeout, 0.0)
        with self._condition:
            while True:
                self.model.advance()
                body = observe(self.model)
                remaining = deadline - clock.now()
                if done(body) or remaining <= 0 or self._stopping.is_set():
                    return body
                if isinstance(clock, SimulatedClock):
                    step = self.model.next_event()
                    clock.advance(remaining if step is None else min(max(step, SIMULATED_STEP), remaining))
                else:
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

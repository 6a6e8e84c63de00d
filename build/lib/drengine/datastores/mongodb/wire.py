"""Serve a simulated MongoDB replica set over the real MongoDB wire protocol.

This module owns the sockets: each member of a ``SimulatedReplicaSet`` gets
its own loopback listener, speaking OP_MSG (and legacy OP_QUERY for old
handshakes), so that drengine's connector runs the real pymongo code paths
against the simulator. Replies follow the shapes MongoDB documents for
``hello``, ``replSetGetStatus``, ``replSetGetConfig`` and the error documents.

Faults reach the sockets: a killed member's port refuses connections, a hung
member accepts TCP but never answers, and revive reopens the port. All model
access goes through one lock; threads are plain ``threading`` threads that
``WireCluster.stop()`` ends.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from bson.errors import BSONError

from drengine.clock import SimulatedClock
from drengine.datastores.mongodb.simulator import SimulatedReplicaSet
from drengine.datastores.mongodb.simulator.model import Process
from drengine.datastores.mongodb.wirecommands import READ_ONLY_COMMANDS, CommandContext, Reply, Wait, run_command, step
from drengine.datastores.mongodb.wireproto import (
    WAIT_SLICE_SECONDS,
    BsonDoc,
    ProtocolError,
    Request,
    encode_reply,
    parse_request,
    read_message,
)

# An endless wait (a write without wtimeout) moves a simulated clock this far at most; then it
# waits for the client (its own socket timeout) in real time.
SIMULATED_IDLE_LIMIT = 600.0


# --- sockets and threads


@dataclass
class _Connection:
    sock: socket.socket
    member_id: int
    connection_id: int
    closed: bool = False
    thread: threading.Thread | None = None

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def peer_has_closed(self) -> bool:
        """True once the client hung up (checked while we are not reading)."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


@dataclass
class _Port:
    """One member's TCP port: listening while it runs, refusing while killed."""

    member_id: int
    host: str
    port: int
    listener: socket.socket | None = None
    placeholder: socket.socket | None = None
    acceptor: threading.Thread | None = None
    connections: list[_Connection] = field(default_factory=list)


class WireCluster:
    """Every member of a simulated replica set on its own 127.0.0.1 port."""

    def __init__(
        self,
        model: SimulatedReplicaSet,
        *,
        host: str = "127.0.0.1",
        port_base: int | None = None,
        ports: Mapping[int, int] | None = None,
        auto_settle: bool = True,
    ) -> None:
        self._model = model
        self._host = host
        self._port_base = port_base
        self._requested_ports = dict(ports or {})
        self._auto_settle = auto_settle
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._ports: dict[int, _Port] = {}
        self._connection_ids = itertools.count(1)
        self._running = False

    # lifecycle

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

    def start(self) -> dict[int, tuple[str, int]]:
        """Bind every member's port, point the model at them, start serving."""
        with self._lock:
            if self._running:
                return self.addresses()
            self._running = True
            for index, member_id in enumerate(self._model.member_ids()):
                port = self._choose_port(member_id, index)
                self._ports[member_id] = self._bind(member_id, port)
            for member_id, entry in self._ports.items():
                self._model.rehost(member_id, f"{self._host}:{entry.port}")
            self._sync_ports()
            return self.addresses()

    def _choose_port(self, member_id: int, index: int) -> int:
        if member_id in self._requested_ports:
            return self._requested_ports[member_id]
        if self._port_base is not None:
            return self._port_base + index
        return 0

    def _bind(self, member_id: int, port: int) -> _Port:
        placeholder = _bound_socket(self._host, port)
        actual = placeholder.getsockname()[1]
        return _Port(member_id, self._host, actual, placeholder=placeholder)

    def stop(self) -> None:
        """Close every socket and end every thread this cluster started."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            ports = list(self._ports.values())
            for entry in ports:
                self._close_listener(entry)
                self._drop_connections(entry)
                if entry.placeholder is not None:
                    entry.placeholder.close()
                    entry.placeholder = None
            self._changed.notify_all()
        for entry in ports:
            if entry.acceptor is not None:
                entry.acceptor.join(timeout=2)
            for connection in entry.connections:
                if connection.thread is not None:
                    connection.thread.join(timeout=2)
            entry.connections.clear()

    def addresses(self) -> dict[int, tuple[str, int]]:
        with self._lock:
            return {mid: (entry.host, entry.port) for mid, entry in self._ports.items()}

    def address(self, member_id: int) -> tuple[str, int]:
        return self.addresses()[member_id]

    def uri(self, member_id: int) -> str:
        host, port = self.address(member_id)
        return f"mongodb://{host}:{port}/?directConnection=true"

    # model access and faults

    @contextlib.contextmanager
    def locked(self) -> Iterator[SimulatedReplicaSet]:
        """Use the model under the cluster's lock; sockets follow its faults after."""
        with self._lock:
            yield self._model
            self._after_change()

    def kill(self, member_id: int) -> None:
        with self.locked() as model:
            model.kill(member_id)

    def hang(self, member_id: int) -> None:
        with self.locked() as model:
            model.hang(member_id)

    def revive(self, member_id: int) -> None:
        with self.locked() as model:
            model.revive(member_id)

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        with self.locked() as model:
            model.partition(groups)

    def heal(self) -> None:
        with self.locked() as model:
            model.heal()

    def lag(self, member_id: int, seconds: float = 0.0, ops: int = 0) -> None:
        with self.locked() as model:
            model.lag(member_id, seconds=seconds, ops=ops)

    def wipe(self, member_id: int) -> None:
        with self.locked() as model:
            model.wipe(member_id)

    def settle(self) -> None:
        with self.locked() as model:
            model.settle()

    def snapshot_json(self) -> str:
        with self._lock:
            return self._model.to_json()

    def _after_change(self) -> None:
        if self._auto_settle:
            self._model.advance()
        if self._running:
            self._sync_ports()
        self._changed.notify_all()

    def _sync_ports(self) -> None:
        for member_id, entry in self._ports.items():
            process = self._model.node(member_id).process
            if process is Process.KILLED and entry.listener is not None:
                self._close_listener(entry)
                self._drop_connections(entry)
                entry.placeholder = _bound_socket(entry.host, entry.port)
            elif process is not Process.KILLED and entry.listener is None:
                self._open_listener(entry)

    def _open_listener(self, entry: _Port) -> None:
        if entry.placeholder is not None:
            entry.placeholder.close()
            entry.placeholder = None
        listener = _bound_socket(entry.host, entry.port)
        listener.listen(64)
        entry.listener = listener
        entry.acceptor = threading.Thread(
            target=self._accept_loop,
            args=(entry, listener),
            name=f"mongowire-accept-{entry.member_id}",
            daemon=True,
        )
        entry.acceptor.start()

    def _close_listener(self, entry: _Port) -> None:
        listener, entry.listener = entry.listener, None
        if listener is None:
            return
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()

    def _drop_connections(self, entry: _Port) -> None:
        for connection in entry.connections:
            connection.close()

    # serving

    def _accept_loop(self, entry: _Port, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                if entry.listener is not listener or not self._running:
                    sock.close()
                    return
                connection = _Connection(sock, entry.member_id, next(self._connection_ids))
                entry.connections = [c for c in entry.connections if not c.closed]
                entry.connections.append(connection)
                connection.thread = threading.Thread(
                    target=self._serve,
                    args=(connection,),
                    name=f"mongowire-conn-{connection.connection_id}",
                    daemon=True,
                )
                connection.thread.start()

    def _serve(self, connection: _Connection) -> None:
        try:
            while not connection.closed:
                message = read_message(connection.sock)
                if message is None:
                    break
                request = parse_request(*message)
                reply = self._answer(connection, request)
                if reply is not None and not request.more_to_come:
                    connection.sock.sendall(encode_reply(request, reply))
        except (OSError, ProtocolError, BSONError, struct.error):
            pass
        finally:
            connection.close()

    def _answer(self, connection: _Connection, request: Request) -> BsonDoc | None:
        with self._lock:
            if not self._wait_while_hung(connection):
                return None
            if _is_awaitable_hello(request.command):
                self._await_topology_change(connection, request.command)
                if not self._wait_while_hung(connection):
                    return None
            if self._auto_settle:
                # Time-driven changes (heartbeats, elections, freeze expiry, lag) show on the next look.
                self._model.advance()
            ctx = CommandContext(
                self._model,
                connection.member_id,
                request.db,
                connection.connection_id,
                self._model.now(),
            )
            name = next(iter(request.command), "")
            reply: Reply | None = run_command(ctx, request.command)
            while isinstance(reply, Wait):
                reply = self._wait_for(connection, ctx, reply)
            if self._process(connection.member_id) is not Process.RUNNING:
                reply = None  # shut down (or killed) while answering: the connection just closes
            if self._auto_settle and name not in READ_ONLY_COMMANDS:
                self._after_change()
            else:
                self._changed.notify_all()
            return reply

    def _wait_for(self, connection: _Connection, ctx: CommandContext, wait: Wait) -> Reply | None:
        """Drive a waiting command as model time passes; None when the connection must end."""
        waited = 0.0
        while self._running and not connection.closed:
            self._model.advance()
            self._changed.notify_all()
            reply = step(ctx, wait.ready)
            if reply is not None:
                return reply
            now = self._model.now()
            if wait.deadline is not None and now >= wait.deadline:
                return step(ctx, wait.expired)
            if self._process(connection.member_id) is not Process.RUNNING:
                return None  # killed or hung while waiting: no answer comes
            pause = self._model.heartbeat_interval()
            if wait.deadline is not None:
                pause = min(pause, wait.deadline - now)
            waited += self._pause(pause, bounded=wait.deadline is not None or waited < SIMULATED_IDLE_LIMIT)
            if connection.peer_has_closed():
                return None
        return None

    def _pause(self, seconds: float, *, bounded: bool) -> float:
        """Let `seconds` of model time pass. On a simulated clock the wait moves the clock (the
        client did wait that long); past SIMULATED_IDLE_LIMIT of an endless wait it stops
        moving it and waits for the client instead. Otherwise: real time, lock released."""
        clock = self._model.clock
        if isinstance(clock, SimulatedClock) and bounded:
            self._lock.release()
            try:
                clock.sleep(seconds)
            finally:
                self._lock.acquire()
            return seconds
        self._changed.wait(WAIT_SLICE_SECONDS)
        return 0.0

    def _process(self, member_id: int) -> Process:
        return self._model.node(member_id).process

    def _wait_while_hung(self, connection: _Connection) -> bool:
        """Block (lock released) while the member is hung, as a stopped process
        would; False if the connection must end instead of answering."""
        while self._running and not connection.closed:
            process = self._process(connection.member_id)
            if process is Process.KILLED:
                return False
            if process is Process.RUNNING:
                return True
            self._changed.wait(WAIT_SLICE_SECONDS)
            if connection.peer_has_closed():
                return False
        return False

    def _await_topology_change(self, connection: _Connection, cmd: BsonDoc) -> None:
        """Streaming hello: answer when this member's topology changes or
        maxAwaitTimeMS passes, as MongoDB 4.4+ does for awaitable hello."""
        deadline = time.monotonic() + float(cmd["maxAwaitTimeMS"]) / 1000.0
        seen = cmd["topologyVersion"]
        while self._running and not connection.closed:
            if self._process(connection.member_id) is not Process.RUNNING:
                return
            self._model.advance()
            node = self._model.node(connection.member_id)
            if str(seen.get("processId")) != node.process_id or int(seen.get("counter", -1)) != node.topology_counter:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._changed.wait(min(remaining, WAIT_SLICE_SECONDS))
            if connection.peer_has_closed():
                connection.closed = True
                return


def _is_awaitable_hello(cmd: BsonDoc) -> bool:
    return next(iter(cmd), "") in ("hello", "isMaster", "ismaster") and "topologyVersion" in cmd and "maxAwaitTimeMS" in cmd


def _bound_socket(host: str, port: int) -> socket.socket:
    # A bound socket that is not listening refuses connections, which keeps a
    # killed member's port reserved (so its host:port stays valid) yet closed.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock

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

import argparse
import contextlib
import itertools
import json
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import bson
from bson import json_util
from bson.errors import BSONError
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.timestamp import Timestamp

from drengine.datastores.mongodb.simulator import SCENARIOS, SimulatedReplicaSet, build_scenario
from drengine.datastores.mongodb.simulator.model import BadValue, Document, OpTime, Process, ReplicaSetError
from drengine.datastores.mongodb.simulator.views import HelloView, InsertOutcome, MemberStatusView, StatusView

BsonDoc = dict[str, Any]

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013
MSG_CHECKSUM_PRESENT = 1 << 0
MSG_MORE_TO_COME = 1 << 1
HEADER = struct.Struct("<iiii")

MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE_BYTES = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
# 17 is MongoDB 6.0; pymongo 4.20 refuses servers below wire version 9.
MAX_WIRE_VERSION = 17
SERVER_VERSION = "6.0.0"
LOGICAL_SESSION_TIMEOUT_MINUTES = 30
# A waiting thread re-checks its socket this often, so stop() and a client
# closing its end are noticed promptly without busy looping.
WAIT_SLICE_SECONDS = 0.05
ADMIN_ONLY = frozenset(
    {
        "replSetGetStatus",
        "replSetGetConfig",
        "replSetReconfig",
        "replSetFreeze",
        "replSetStepDown",
    }
)
EXTENDED_JSON = json_util.RELAXED_JSON_OPTIONS


class ProtocolError(Exception):
    """A message this server cannot parse; the connection is dropped."""


@dataclass(frozen=True)
class Request:
    request_id: int
    op_code: int
    db: str
    command: BsonDoc
    more_to_come: bool


# --- wire protocol framing


def read_message(sock: socket.socket) -> tuple[int, int, bytes] | None:
    """(request_id, op_code, body) of the next message, or None at EOF."""
    header = _recv_exact(sock, HEADER.size)
    if header is None:
        return None
    length, request_id, _response_to, op_code = HEADER.unpack(header)
    if not HEADER.size <= length <= MAX_MESSAGE_SIZE_BYTES:
        raise ProtocolError(f"message length {length} out of range")
    body = _recv_exact(sock, length - HEADER.size)
    if body is None:
        return None
    return request_id, op_code, body


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks.extend(chunk)
    return bytes(chunks)


def parse_request(request_id: int, op_code: int, body: bytes) -> Request:
    if op_code == OP_MSG:
        return _parse_op_msg(request_id, body)
    if op_code == OP_QUERY:
        return _parse_op_query(request_id, body)
    raise ProtocolError(f"unsupported opcode {op_code}")


def _parse_op_msg(request_id: int, body: bytes) -> Request:
    (flags,) = struct.unpack_from("<I", body, 0)
    end = len(body) - (4 if flags & MSG_CHECKSUM_PRESENT else 0)
    position = 4
    command: BsonDoc | None = None
    sequences: dict[str, list[BsonDoc]] = {}
    while position < end:
        kind = body[position]
        position += 1
        (size,) = struct.unpack_from("<i", body, position)
        if kind == 0:
            command = bson.decode(body[position : position + size])
        elif kind == 1:
            section = body[position + 4 : position + size]
            name, _, documents = section.partition(b"\x00")
            sequences[name.decode()] = bson.decode_all(documents)
        else:
            raise ProtocolError(f"unknown OP_MSG section kind {kind}")
        position += size
    if command is None:
        raise ProtocolError("OP_MSG without a body section")
    # Document sequences (kind 1) are the command's array fields, e.g. documents.
    command.update(sequences)
    db = command.pop("$db", "admin")
    return Request(request_id, OP_MSG, str(db), command, bool(flags & MSG_MORE_TO_COME))


def _parse_op_query(request_id: int, body: bytes) -> Request:
    name_end = body.index(b"\x00", 4)
    collection = body[4:name_end].decode()
    position = name_end + 1 + 8  # skip numberToSkip and numberToReturn
    (size,) = struct.unpack_from("<i", body, position)
    query = bson.decode(body[position : position + size])
    if "$query" in query:
        query = dict(query["$query"])
    db, _, _ = collection.partition(".")
    return Request(request_id, OP_QUERY, db, query, False)


_request_ids = itertools.count(1)
_request_ids_lock = threading.Lock()


def _next_request_id() -> int:
    with _request_ids_lock:
        return next(_request_ids) & 0x7FFFFFFF


def encode_reply(request: Request, reply: BsonDoc) -> bytes:
    """An OP_MSG reply, or OP_REPLY for a legacy OP_QUERY handshake."""
    document = bson.encode(reply)
    if request.op_code == OP_QUERY:
        payload = struct.pack("<iqii", 0, 0, 0, 1) + document
        op_code = OP_REPLY
    else:
        payload = struct.pack("<IB", 0, 0) + document
        op_code = OP_MSG
    header = HEADER.pack(HEADER.size + len(payload), _next_request_id(), request.request_id, op_code)
    return header + payload


# --- rendering model views as MongoDB documents


def _optime_doc(optime: OpTime) -> BsonDoc:
    return {"ts": Timestamp(optime.seconds, optime.increment), "t": Int64(optime.term)}


def _date(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _election_id(term: int) -> ObjectId:
    # mongod builds electionId from a fixed prefix and the term it won.
    return ObjectId(f"7fffffff{term:016x}")


def hello_document(view: HelloView, *, legacy: bool, hello_ok: bool, connection_id: int, now: float) -> BsonDoc:
    doc: BsonDoc = {"topologyVersion": _topology_version_of(view)}
    if view.set_name is not None:
        doc.update(_replica_set_fields(view))
    doc["ismaster" if legacy else "isWritablePrimary"] = view.is_writable_primary
    doc["secondary"] = view.secondary
    if view.set_name is None:
        doc["isreplicaset"] = True
        doc["info"] = view.info or ""
    doc.update(
        {
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "maxMessageSizeBytes": MAX_MESSAGE_SIZE_BYTES,
            "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
            "localTime": _date(now),
            "logicalSessionTimeoutMinutes": LOGICAL_SESSION_TIMEOUT_MINUTES,
            "connectionId": connection_id,
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
        }
    )
    if hello_ok:
        doc["helloOk"] = True
    doc["ok"] = 1.0
    return doc


def _topology_version_of(view: HelloView) -> BsonDoc:
    return {"processId": ObjectId(view.process_id), "counter": Int64(view.topology_counter)}


def _replica_set_fields(view: HelloView) -> BsonDoc:
    fields: BsonDoc = {"hosts": view.hosts}
    if view.passives:
        fields["passives"] = view.passives
    if view.arbiters:
        fields["arbiters"] = view.arbiters
    fields["setName"] = view.set_name
    fields["setVersion"] = view.set_version
    if view.primary:
        fields["primary"] = view.primary
    fields["me"] = view.me
    if view.arbiter_only:
        fields["arbiterOnly"] = True
    if view.passive:
        fields["passive"] = True
    if view.hidden:
        fields["hidden"] = True
    if view.is_writable_primary:
        fields["electionId"] = _election_id(view.term)
    fields["lastWrite"] = {
        "opTime": _optime_doc(view.last_write),
        "lastWriteDate": _date(view.last_write_seconds),
        "majorityOpTime": _optime_doc(view.majority_write),
        "majorityWriteDate": _date(view.last_write_seconds),
    }
    return fields


def status_document(view: StatusView) -> BsonDoc:
    return {
        "set": view.set_name,
        "date": _date(view.now),
        "myState": view.my_state,
        "term": Int64(view.term),
        "syncSourceHost": view.sync_source_host,
        "syncSourceId": view.sync_source_id,
        "heartbeatIntervalMillis": Int64(view.heartbeat_interval_millis),
        "majorityVoteCount": view.majority_vote_count,
        "writeMajorityCount": view.write_majority_count,
        "votingMembersCount": view.voting_members_count,
        "writableVotingMembersCount": view.writable_voting_members_count,
        "optimes": {
            "lastCommittedOpTime": _optime_doc(view.last_committed),
            "readConcernMajorityOpTime": _optime_doc(view.last_committed),
            "appliedOpTime": _optime_doc(view.applied),
            "durableOpTime": _optime_doc(view.applied),
            "lastAppliedWallTime": _date(view.applied_seconds),
            "lastDurableWallTime": _date(view.applied_seconds),
        },
        "members": [_member_status_document(m, view.now) for m in view.members],
        "ok": 1.0,
    }


def _member_status_document(member: MemberStatusView, now: float) -> BsonDoc:
    doc: BsonDoc = {
        "_id": member.member_id,
        "name": member.name,
        "health": 1.0 if member.healthy else 0.0,
        "state": member.state_code,
        "stateStr": member.state_str,
        "uptime": member.uptime,
    }
    if member.optime is not None:
        doc["optime"] = _optime_doc(member.optime)
        doc["optimeDate"] = _date(member.optime_seconds)
        if not member.is_self:
            doc["optimeDurable"] = _optime_doc(member.optime)
            doc["optimeDurableDate"] = _date(member.optime_seconds)
    if not member.is_self:
        doc["lastHeartbeat"] = _date(now)
        doc["lastHeartbeatRecv"] = _date(now if member.healthy else 0)
        doc["pingMs"] = Int64(0)
        doc["lastHeartbeatMessage"] = member.last_heartbeat_message
    doc["syncSourceHost"] = member.sync_source_host
    doc["syncSourceId"] = member.sync_source_id
    doc["infoMessage"] = ""
    if member.election_optime is not None:
        doc["electionTime"] = Timestamp(member.election_optime.seconds, member.election_optime.increment)
        doc["electionDate"] = _date(member.election_optime.seconds)
    doc["configVersion"] = member.config_version
    doc["configTerm"] = member.config_term
    if member.is_self:
        doc["self"] = True
    return doc


def config_document(model: SimulatedReplicaSet, member_id: int) -> BsonDoc:
    config = model.get_config(member_id)
    doc: BsonDoc = dict(config.to_document())
    doc["term"] = Int64(config.term)
    settings = dict(cast(Mapping[str, object], doc["settings"]))
    settings["replicaSetId"] = ObjectId(config.settings.replica_set_id)
    doc["settings"] = settings
    return doc


def error_document(code: int, code_name: str, message: str) -> BsonDoc:
    return {"ok": 0.0, "errmsg": message, "code": code, "codeName": code_name}


# --- BSON documents <-> the model's JSON documents


def to_model_document(doc: Mapping[str, Any]) -> Document:
    # Relaxed extended JSON keeps ObjectId, dates and the like round-trippable
    # while the model (and its saved state file) stays plain JSON.
    loaded: Document = json.loads(json_util.dumps(doc, json_options=EXTENDED_JSON))
    return loaded


def from_model_document(doc: Document) -> BsonDoc:
    loaded: BsonDoc = json_util.loads(json.dumps(doc), json_options=EXTENDED_JSON)
    return loaded


# --- commands


@dataclass
class CommandContext:
    model: SimulatedReplicaSet
    member_id: int
    db: str
    connection_id: int
    now: float


CommandHandler = Callable[[CommandContext, BsonDoc], BsonDoc]


def _hello(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    legacy = next(iter(cmd)).lower() == "ismaster"
    return hello_document(
        ctx.model.hello(ctx.member_id),
        legacy=legacy,
        hello_ok=bool(cmd.get("helloOk", False)),
        connection_id=ctx.connection_id,
        now=ctx.now,
    )


def _ping(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    return {"ok": 1.0}


def _build_info(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    return {
        "version": SERVER_VERSION,
        "gitVersion": "drengine-simulator",
        "versionArray": [int(part) for part in SERVER_VERSION.split(".")] + [0],
        "bits": 64,
        "debug": False,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "storageEngines": ["inMemory"],
        "modules": [],
        # Lets tooling tell the simulator from a real mongod.
        "drengineSimulator": True,
        "ok": 1.0,
    }


def _repl_set_get_status(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    return status_document(ctx.model.status(ctx.member_id))


def _repl_set_get_config(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    return {"config": config_document(ctx.model, ctx.member_id), "ok": 1.0}


def _repl_set_reconfig(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    new_config = cmd["replSetReconfig"]
    if not isinstance(new_config, Mapping):
        raise BadValue("replSetReconfig needs a config document")
    ctx.model.reconfig(ctx.member_id, new_config, force=bool(cmd.get("force", False)))
    return {"ok": 1.0}


def _repl_set_freeze(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    seconds = float(cmd["replSetFreeze"])
    ctx.model.freeze(ctx.member_id, seconds)
    return {"info": "unfreezing", "ok": 1.0} if seconds == 0 else {"ok": 1.0}


def _repl_set_step_down(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    seconds = float(cmd.get("replSetStepDown") or 60)
    ctx.model.step_down(ctx.member_id, seconds, force=bool(cmd.get("force", False)))
    return {"ok": 1.0}


def _insert(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    namespace = f"{ctx.db}.{cmd['insert']}"
    docs = [to_model_document(d) for d in cmd.get("documents", [])]
    concern = cmd.get("writeConcern") or {}
    outcome = ctx.model.insert_many(
        ctx.member_id,
        namespace,
        docs,
        w=concern.get("w"),
        ordered=bool(cmd.get("ordered", True)),
    )
    return _insert_reply(outcome, concern)


def _insert_reply(outcome: InsertOutcome, concern: Mapping[str, Any]) -> BsonDoc:
    reply: BsonDoc = {"n": outcome.inserted}
    if outcome.write_errors:
        reply["writeErrors"] = [{"index": e.index, "code": e.code, "errmsg": e.message} for e in outcome.write_errors]
    failure = outcome.write_concern_error
    if failure is not None:
        reply["writeConcernError"] = {
            "code": failure.code,
            "codeName": failure.code_name,
            "errmsg": failure.message,
            "errInfo": {"wtimeout": True, "writeConcern": dict(concern)},
        }
    reply["opTime"] = _optime_doc(outcome.optime)
    reply["ok"] = 1.0
    return reply


def _secondary_ok(cmd: BsonDoc) -> bool:
    preference = cmd.get("$readPreference") or {}
    return str(preference.get("mode", "primary")) != "primary"


def _find(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    if cmd.get("sort"):
        raise BadValue("the simulator does not sort; drop the sort option")
    namespace = f"{ctx.db}.{cmd['find']}"
    docs = _matching(ctx, namespace, cmd.get("filter") or {}, cmd)
    skip = int(cmd.get("skip") or 0)
    limit = abs(int(cmd.get("limit") or 0))
    selected = docs[skip : skip + limit] if limit else docs[skip:]
    return _cursor_reply(namespace, [from_model_document(d) for d in selected])


def _matching(ctx: CommandContext, namespace: str, filter: Mapping[str, Any], cmd: BsonDoc) -> list[Document]:
    return ctx.model.find(
        ctx.member_id,
        namespace,
        to_model_document(filter),
        secondary_ok=_secondary_ok(cmd),
    )


def _cursor_reply(namespace: str, batch: list[BsonDoc]) -> BsonDoc:
    # The whole result fits in the first batch, so the cursor is already closed.
    return {"cursor": {"id": Int64(0), "ns": namespace, "firstBatch": batch}, "ok": 1.0}


def _count(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    namespace = f"{ctx.db}.{cmd['count']}"
    return {"n": len(_matching(ctx, namespace, cmd.get("query") or {}, cmd)), "ok": 1.0}


def _aggregate(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    """Only the pipeline count_documents() sends: [$match], $group with $sum: 1."""
    namespace = f"{ctx.db}.{cmd['aggregate']}"
    pipeline = list(cmd.get("pipeline") or [])
    filter: Mapping[str, Any] = {}
    if pipeline and "$match" in pipeline[0]:
        filter = pipeline.pop(0)["$match"]
    skip, limit = 0, 0
    while pipeline and ("$skip" in pipeline[0] or "$limit" in pipeline[0]):
        stage = pipeline.pop(0)
        skip = int(stage.get("$skip", skip))
        limit = int(stage.get("$limit", limit))
    if len(pipeline) != 1 or not _is_count_group(pipeline[0]):
        raise BadValue("the simulator's aggregate supports only [$match, $skip, $limit, {$group: {_id: ..., n: {$sum: 1}}}]")
    group = pipeline[0]["$group"]
    docs = _matching(ctx, namespace, filter, cmd)[skip:]
    total = len(docs[:limit] if limit else docs)
    counter = next(key for key in group if key != "_id")
    batch = [{"_id": group["_id"], counter: total}] if total else []
    return _cursor_reply(namespace, batch)


def _is_count_group(stage: Mapping[str, Any]) -> bool:
    group = stage.get("$group")
    if not isinstance(group, Mapping) or "_id" not in group or len(group) != 2:
        return False
    counter = next(value for key, value in group.items() if key != "_id")
    return isinstance(counter, Mapping) and counter.get("$sum") == 1


def _end_sessions(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    return {"ok": 1.0}


def _kill_cursors(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    ids = list(cmd.get("cursors") or [])
    return {
        "cursorsKilled": [],
        "cursorsNotFound": ids,
        "cursorsAlive": [],
        "cursorsUnknown": [],
        "ok": 1.0,
    }


COMMANDS: dict[str, CommandHandler] = {
    "hello": _hello,
    "isMaster": _hello,
    "ismaster": _hello,
    "ping": _ping,
    "buildInfo": _build_info,
    "buildinfo": _build_info,
    "replSetGetStatus": _repl_set_get_status,
    "replSetGetConfig": _repl_set_get_config,
    "replSetReconfig": _repl_set_reconfig,
    "replSetFreeze": _repl_set_freeze,
    "replSetStepDown": _repl_set_step_down,
    "insert": _insert,
    "find": _find,
    "count": _count,
    "aggregate": _aggregate,
    "endSessions": _end_sessions,
    "killCursors": _kill_cursors,
}
READ_ONLY_COMMANDS = frozenset(
    {
        "hello",
        "isMaster",
        "ismaster",
        "ping",
        "buildInfo",
        "buildinfo",
        "replSetGetStatus",
        "replSetGetConfig",
    }
)


STATE_CHANGE_CODES = frozenset({10107, 13435, 13436, 11600, 11602, 91, 189})


def _topology_version(ctx: CommandContext) -> BsonDoc:
    return _topology_version_of(ctx.model.hello(ctx.member_id))


def run_command(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    """Answer one command document the way mongod would."""
    if not cmd:
        return error_document(59, "CommandNotFound", "empty command document")
    name = next(iter(cmd))
    handler = COMMANDS.get(name)
    if handler is None:
        return error_document(59, "CommandNotFound", f"no such command: '{name}'")
    if name in ADMIN_ONLY and ctx.db != "admin":
        return error_document(13, "Unauthorized", f"{name} may only be run against the admin database.")
    try:
        return handler(ctx, cmd)
    except ReplicaSetError as error:
        reply = error_document(error.code, error.code_name, error.message)
        if error.code in STATE_CHANGE_CODES:
            # MongoDB 4.4+ attaches topologyVersion so that drivers can tell a
            # stale "not primary" from news; without it pymongo forgets the
            # server and waits for its monitor before the next command.
            reply["topologyVersion"] = _topology_version(ctx)
        return reply
    except (KeyError, TypeError, ValueError) as error:
        return error_document(2, "BadValue", f"malformed {name} command: {error}")


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
            self._model.settle()
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
            ctx = CommandContext(
                self._model,
                connection.member_id,
                request.db,
                connection.connection_id,
                time.time(),
            )
            name = next(iter(request.command), "")
            if not self._auto_settle:
                return run_command(ctx, request.command)
            if name in READ_ONLY_COMMANDS:
                # Time-driven changes (freeze expiry, lag) show on the next look.
                self._model.settle()
                self._changed.notify_all()
                return run_command(ctx, request.command)
            reply = run_command(ctx, request.command)
            self._after_change()
            return reply

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


# --- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drengine.datastores.mongodb.wire",
        description="Serve a simulated MongoDB replica set on 127.0.0.1.",
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="healthy-3")
    parser.add_argument("--port-base", type=int, default=None)
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        help="JSON state file: loaded if present, written back on exit",
    )
    args = parser.parse_args(argv)
    if args.state is not None and args.state.exists():
        model = SimulatedReplicaSet.from_json(args.state.read_text())
    else:
        model = build_scenario(args.scenario)
    cluster = WireCluster(model, port_base=args.port_base)
    addresses = cluster.start()
    for member_id, (host, port) in sorted(addresses.items()):
        print(f"member {member_id}: mongodb://{host}:{port}/?directConnection=true")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if args.state is not None:
            args.state.write_text(cluster.snapshot_json())
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

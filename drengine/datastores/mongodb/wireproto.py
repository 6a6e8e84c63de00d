"""The MongoDB wire protocol as the simulator speaks it: OP_MSG (and legacy OP_QUERY for
old handshakes) framing, and the model's views rendered as the documents mongod answers
with (hello, replSetGetStatus, replSetGetConfig, errors)."""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import bson
from bson import json_util
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.timestamp import Timestamp

from drengine.datastores.mongodb.simulator import SimulatedReplicaSet
from drengine.datastores.mongodb.simulator.model import Document, OpTime
from drengine.datastores.mongodb.simulator.views import HelloView, MemberStatusView, StatusView

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
        "shutdown",
        "setDefaultRWConcern",
        "getDefaultRWConcern",
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


def optime_doc(optime: OpTime) -> BsonDoc:
    return {"ts": Timestamp(optime.seconds, optime.increment), "t": Int64(optime.term)}


def _date(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _election_id(term: int) -> ObjectId:
    # mongod builds electionId from a fixed prefix and the term it won.
    return ObjectId(f"7fffffff{term:016x}")


def hello_document(view: HelloView, *, legacy: bool, hello_ok: bool, connection_id: int, now: float) -> BsonDoc:
    doc: BsonDoc = {"topologyVersion": topology_version_of(view)}
    if view.set_name is not None:
        doc.update(_replica_set_fields(view, legacy=legacy))
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


def topology_version_of(view: HelloView) -> BsonDoc:
    return {"processId": ObjectId(view.process_id), "counter": Int64(view.topology_counter)}


def _replica_set_fields(view: HelloView, *, legacy: bool) -> BsonDoc:
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
    if view.secondary_delay_secs:
        # hello_response.cpp: slaveDelay to a legacy isMaster, secondaryDelaySecs to hello.
        fields["slaveDelay" if legacy else "secondaryDelaySecs"] = Int64(view.secondary_delay_secs)
    if view.is_writable_primary:
        fields["electionId"] = _election_id(view.term)
    fields["lastWrite"] = {
        "opTime": optime_doc(view.last_write),
        "lastWriteDate": _date(view.last_write_seconds),
        "majorityOpTime": optime_doc(view.majority_write),
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
            "lastCommittedOpTime": optime_doc(view.last_committed),
            "readConcernMajorityOpTime": optime_doc(view.last_committed),
            "appliedOpTime": optime_doc(view.applied),
            "durableOpTime": optime_doc(view.applied),
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
        doc["optime"] = optime_doc(member.optime)
        doc["optimeDate"] = _date(member.optime_seconds)
        if not member.is_self:
            doc["optimeDurable"] = optime_doc(member.optime)
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
        # As in replSetGetStatus.txt's example: the member answering has `self` and an empty
        # lastHeartbeatMessage, but no heartbeat times.
        doc["self"] = True
        doc["lastHeartbeatMessage"] = ""
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



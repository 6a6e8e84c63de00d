"""The write commands the simulated mongod answers: insert (with its write concern, waited for
as mongod waits: failed with 64 at wtimeout, 189 when the primary steps down, 100 when no config
can satisfy it; a retryable write applied once), and setDefaultRWConcern / getDefaultRWConcern."""

from __future__ import annotations

from collections.abc import Callable

from bson import json_util

from drengine.datastores.mongodb.simulator.model import BadValue, OpTime
from drengine.datastores.mongodb.simulator.views import InsertOutcome
from drengine.datastores.mongodb.wireproto import BsonDoc, from_model_document, optime_doc, to_model_document
from drengine.datastores.mongodb.wirewait import CommandContext, Reply, Wait, deadline_after

# The codes the retryable-writes spec (and error_codes.yml's RetriableError category) retry.
RETRYABLE_CODES = frozenset({6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})


def insert(ctx: CommandContext, cmd: BsonDoc) -> Reply:
    """Write, then wait for the write concern: until wtimeout (then writeConcernError 64,
    errInfo.wtimeout true), forever without one; a primary that steps down while the write waits
    answers writeConcernError 189, a `w` larger than the data-bearing members 100 (see
    simulator/writeconcern.py). Shape: DRIVERS-967 / RUST-370 and
    https://www.mongodb.com/docs/manual/reference/write-concern/#wtimeout. A retryable write
    (lsid and txnNumber) is applied once: its retry is answered from what was applied."""
    namespace = f"{ctx.db}.{cmd['insert']}"
    docs = [to_model_document(d) for d in cmd.get("documents", [])]
    concern = dict(cmd.get("writeConcern") or {})
    model, member = ctx.model, ctx.member_id
    outcome = model.insert_many(member, namespace, docs, w=concern.get("w"), ordered=bool(cmd.get("ordered", True)),
                                txn=retryable_write(cmd))
    if not outcome.inserted:
        return _insert_reply(outcome, None)
    return _after_write_concern(ctx, cmd, concern, outcome.optime, lambda error: _insert_reply(outcome, error))


def retryable_write(cmd: BsonDoc) -> str | None:
    """The session and txnNumber of a retryable write (outside a transaction), else None."""
    if "txnNumber" not in cmd or "lsid" not in cmd or "autocommit" in cmd:
        return None
    return f"{json_util.dumps(cmd['lsid'])}/{int(cmd['txnNumber'])}"


def _after_write_concern(ctx: CommandContext, cmd: BsonDoc, concern: BsonDoc, optime: OpTime,
                         reply: Callable[[BsonDoc | None], BsonDoc]) -> Reply:
    """Answer `reply(None)` once `optime` satisfies the write concern; `reply(writeConcernError)`
    when mongod gives up on it (wtimeout, step-down, unsatisfiable)."""
    model, member = ctx.model, ctx.member_id
    shown = dict(concern)
    shown.setdefault("provenance", "clientSupplied" if "w" in concern else "implicitDefault")

    def failed(code: int, name: str, message: str, info: BsonDoc) -> BsonDoc:
        answer = reply({"code": code, "codeName": name, "errmsg": message, "errInfo": {**info, "writeConcern": shown}})
        if retryable_write(cmd) is not None and code in RETRYABLE_CODES:
            # error_labels.cpp: a retryable write whose write concern failed with a retryable code.
            answer["errorLabels"] = ["RetryableWriteError"]
        return answer

    def acknowledged() -> BsonDoc | None:
        progress = model.write_concern_progress(member, optime, concern.get("w"))
        if progress.failure is not None:
            return failed(progress.failure.code, progress.failure.code_name, progress.failure.message, {})
        return reply(None) if progress.satisfied else None

    def timed_out() -> BsonDoc:
        return failed(64, "WriteConcernFailed", "waiting for replication timed out", {"wtimeout": True})

    return acknowledged() or Wait(ready=acknowledged, deadline=deadline_after(ctx, concern.get("wtimeout")),
                                  expired=timed_out)


def set_default_rw_concern(ctx: CommandContext, cmd: BsonDoc) -> Reply:
    """setDefaultRWConcern on the primary, waiting for its own writeConcern (majority by default).
    https://www.mongodb.com/docs/manual/reference/command/setDefaultRWConcern/"""
    if "defaultWriteConcern" not in cmd:
        raise BadValue("the simulator supports setDefaultRWConcern with defaultWriteConcern only")
    wanted = to_model_document(cmd["defaultWriteConcern"] or {})
    optime = ctx.model.set_default_write_concern(ctx.member_id, wanted)
    concern = dict(cmd.get("writeConcern") or {"w": "majority"})
    return _after_write_concern(ctx, cmd, concern, optime,
                                lambda error: _rw_defaults(ctx, error))


def get_default_rw_concern(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    """Any member answers from the settings it holds. https://www.mongodb.com/docs/manual/reference/command/getDefaultRWConcern/"""
    ctx.model.get_config(ctx.member_id)  # NotYetInitialized without a config, as mongod
    return _rw_defaults(ctx, None)


def _rw_defaults(ctx: CommandContext, concern_error: BsonDoc | None) -> BsonDoc:
    wide = ctx.model.cluster_wide_write_concern(ctx.member_id)
    reply: BsonDoc = {}
    if wide is not None:
        reply["defaultWriteConcern"] = from_model_document({"wtimeout": 0, **wide})
    reply["defaultReadConcern"] = {"level": "local"}
    reply["defaultWriteConcernSource"] = "global" if wide is not None else "implicit"
    reply["defaultReadConcernSource"] = "implicit"
    if concern_error is not None:
        reply["writeConcernError"] = concern_error
    reply["ok"] = 1.0
    return reply


def _insert_reply(outcome: InsertOutcome, concern_error: BsonDoc | None) -> BsonDoc:
    reply: BsonDoc = {"n": outcome.inserted}
    if outcome.write_errors:
        reply["writeErrors"] = [{"index": e.index, "code": e.code, "errmsg": e.message} for e in outcome.write_errors]
    if concern_error is not None:
        reply["writeConcernError"] = concern_error
    reply["opTime"] = optime_doc(outcome.optime)
    reply["ok"] = 1.0
    return reply

"""The commands the simulated mongod answers, each turned into a model call and its reply
document; unknown commands and admin commands outside `admin` are refused as mongod refuses them.

Some commands wait, as mongod's do, in model time: a write for its write concern (until
`wtimeout`, forever without one), a safe reconfig for the current config to be committed and
then for the new one to reach a majority (until `maxTimeMS`, forever without it), a step-down
for a secondary to catch up (`secondaryCatchUpPeriodSecs`). Their handlers return a `Wait`
that the server drives (wire.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bson.int64 import Int64

from drengine.datastores.mongodb.simulator.model import (
    STEP_DOWN_CATCH_UP_SECONDS,
    BadValue,
    Document,
    ReplicaSetError,
)
from drengine.datastores.mongodb.wireproto import (
    ADMIN_ONLY,
    MAX_BSON_OBJECT_SIZE,
    SERVER_VERSION,
    BsonDoc,
    config_document,
    error_document,
    from_model_document,
    hello_document,
    status_document,
    to_model_document,
    topology_version_of,
)
from drengine.datastores.mongodb.wirewait import CommandContext, CommandHandler, Reply, Wait, deadline_after
from drengine.datastores.mongodb.wirewrites import (
    RETRYABLE_CODES,
    get_default_rw_concern,
    insert,
    retryable_write,
    set_default_rw_concern,
)

__all__ = ["READ_ONLY_COMMANDS", "CommandContext", "Reply", "Wait", "run_command", "step"]

# --- commands


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


def _repl_set_reconfig(ctx: CommandContext, cmd: BsonDoc) -> Reply:
    """Forced: installed at once. Safe: wait for the current config to be committed (308 when
    maxTimeMS runs out first), install, then wait for a majority to hold the new config
    (MaxTimeMSExpired 50). repl_set_commands.cpp; https://www.mongodb.com/docs/manual/reference/command/replSetReconfig/"""
    new_config = cmd["replSetReconfig"]
    if not isinstance(new_config, Mapping):
        raise BadValue("replSetReconfig needs a config document")
    model, member = ctx.model, ctx.member_id
    config = model.prepare_reconfig(member, new_config, force=bool(cmd.get("force", False)))
    if cmd.get("force"):
        return {"ok": 1.0}
    deadline = deadline_after(ctx, cmd.get("maxTimeMS"))

    def install() -> Reply:
        installed = model.install_agreed(member, config)
        return Wait(ready=lambda: {"ok": 1.0} if model.config_propagated(member, installed.version) else None,
                    deadline=deadline,
                    expired=lambda: error_document(50, "MaxTimeMSExpired", "operation exceeded time limit"))

    if model.config_committed(member):
        return install()
    return Wait(ready=lambda: install() if model.config_committed(member) else None, deadline=deadline,
                expired=lambda: error_document(308, "CurrentConfigNotCommittedYet", model.uncommitted_reason(member)))


def _repl_set_freeze(ctx: CommandContext, cmd: BsonDoc) -> BsonDoc:
    seconds = float(cmd["replSetFreeze"])
    ctx.model.freeze(ctx.member_id, seconds)
    return {"info": "unfreezing", "ok": 1.0} if seconds == 0 else {"ok": 1.0}


def _repl_set_step_down(ctx: CommandContext, cmd: BsonDoc) -> Reply:
    """Wait up to secondaryCatchUpPeriodSecs (10 s) for an electable secondary to catch up, then
    step down and hand it the election. https://www.mongodb.com/docs/manual/reference/command/replSetStepDown/"""
    seconds = float(cmd.get("replSetStepDown") or 60)
    catch_up = float(cmd.get("secondaryCatchUpPeriodSecs", STEP_DOWN_CATCH_UP_SECONDS))
    force = bool(cmd.get("force", False))
    model, member = ctx.model, ctx.member_id
    if not model.hello(member).is_writable_primary:
        model.step_down(member, seconds, force=force)  # answers NotWritablePrimary as mongod does

    def done() -> BsonDoc:
        model.do_step_down(member, seconds)
        return {"ok": 1.0}

    def expired() -> BsonDoc:
        if force:
            return done()
        return error_document(262, "ExceededTimeLimit", "No electable secondaries caught up as of stepdown deadline")

    return Wait(ready=lambda: done() if model.step_down_ready(member) else None,
                deadline=model.now() + catch_up, expired=expired)


def _shutdown(ctx: CommandContext, cmd: BsonDoc) -> Reply:
    """mongod stops and closes the connection without a reply (the server drops it: wire.py).
    https://www.mongodb.com/docs/manual/reference/command/shutdown/"""
    ctx.model.shutdown(ctx.member_id, force=bool(cmd.get("force", False)))
    return {"ok": 1.0}


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
    "shutdown": _shutdown,
    "insert": insert,
    "setDefaultRWConcern": set_default_rw_concern,
    "getDefaultRWConcern": get_default_rw_concern,
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
        "getDefaultRWConcern",
    }
)


STATE_CHANGE_CODES = frozenset({10107, 13435, 13436, 11600, 11602, 91, 189})
def _topology_version(ctx: CommandContext) -> BsonDoc:
    return topology_version_of(ctx.model.hello(ctx.member_id))


def run_command(ctx: CommandContext, cmd: BsonDoc) -> Reply:
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
        reply = error_reply(ctx, error)
        if name == "insert" and retryable_write(cmd) is not None and error.code in RETRYABLE_CODES:
            reply["errorLabels"] = ["RetryableWriteError"]
        return reply
    except (KeyError, TypeError, ValueError) as error:
        return error_document(2, "BadValue", f"malformed {name} command: {error}")


def error_reply(ctx: CommandContext, error: ReplicaSetError) -> BsonDoc:
    reply = error_document(error.code, error.code_name, error.message)
    if error.code in STATE_CHANGE_CODES:
        # MongoDB 4.4+ attaches topologyVersion so that drivers can tell a
        # stale "not primary" from news; without it pymongo forgets the
        # server and waits for its monitor before the next command.
        reply["topologyVersion"] = _topology_version(ctx)
    return reply


def step(ctx: CommandContext, turn: Callable[[], Reply | None]) -> Reply | None:
    """One look at a waiting command, its refusals answered as mongod answers them."""
    try:
        return turn()
    except ReplicaSetError as error:
        return error_reply(ctx, error)



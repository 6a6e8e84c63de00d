"""What every Ceph step shares: the exact commands it sends (shown as the JSON monitor
command, `Statement(language="ceph-mon")`, or PG command, `"ceph-pg"`), sending one and
journaling it, and looking at the cluster (once, or until no PG is still peering)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

from drengine.datastores.ceph.backend import CephBackend, MonitorControl
from drengine.datastores.ceph.connector import CephSnapshot, JsonDoc, PgInfo
from drengine.datastores.ceph.decisions import UnfoundSource
from drengine.steps import Mode, RunContext, Statement

Ctx = RunContext[CephBackend]

# PG states that pass by themselves within seconds; decisions wait (bounded) until they are gone.
TRANSIENT_STATES = frozenset({"peering", "activating", "creating", "unknown"})
SETTLE_SECONDS = 20.0


# -- statements --------------------------------------------------------------------------------------


def mon_cmd(**cmd: Any) -> dict[str, Any]:
    return dict(cmd)


def flag_cmd(verb: Literal["set", "unset"], flag: str) -> dict[str, Any]:
    return mon_cmd(prefix=f"osd {verb}", key=flag)


def min_size_cmd(pool: str, value: int) -> dict[str, Any]:
    # Ceph wants the value as a string.
    return mon_cmd(prefix="osd pool set", pool=pool, var="min_size", val=str(value))


def out_cmd(osd: int) -> dict[str, Any]:
    return mon_cmd(prefix="osd out", ids=[str(osd)])


def lost_cmd(osd: int) -> dict[str, Any]:
    return mon_cmd(prefix="osd lost", id=osd, yes_i_really_mean_it=True)


def unfound_cmd(mode: str) -> dict[str, Any]:
    return {"prefix": "mark_unfound_lost", "mulcmd": mode}


def mon_statement(ctx: Ctx, cmd: Mapping[str, Any]) -> Statement:
    return Statement(target=ctx.cluster.name, text=json.dumps(dict(cmd)), language="ceph-mon")


def pg_statement(pgid: str, cmd: Mapping[str, Any]) -> Statement:
    return Statement(target=f"pg {pgid}", text=json.dumps(dict(cmd)), language="ceph-pg")


# -- sending and looking --------------------------------------------------------------------------


def send(ctx: Ctx, cmd: Mapping[str, Any], note: str = "") -> JsonDoc:
    answer = ctx.backend.mon_command(cmd)
    message = answer.get("message", "") if isinstance(answer, dict) else ""
    ctx.sent(mon_statement(ctx, cmd), result=str(message or "ok") + (f"; {note}" if note else ""))
    return answer


def snapshot(ctx: Ctx) -> CephSnapshot:
    return ctx.backend.observe()


def transient_pgs(snap: CephSnapshot) -> list[PgInfo]:
    """Inactive PGs still on their way somewhere (peering after an OSD went down): deciding on
    them would mistake a moment for a state."""
    return [pg for pg in snap.inactive_pgs if pg.states & TRANSIENT_STATES and "peered" not in pg.states]


def look_until(ctx: Ctx, done: Callable[[CephSnapshot], bool], seconds: float, poll: float) -> CephSnapshot:
    """Observe until `done(snapshot)` or `seconds` have passed on the run's clock (a plan looks
    once and never waits); returns the last snapshot."""
    last: list[CephSnapshot] = []

    def look() -> bool:
        last[:] = [ctx.backend.observe()]
        return done(last[0])

    ctx.wait_until(look, 0.0 if ctx.mode is Mode.PLAN else seconds, interval=poll)
    return last[0]


def settled_snapshot(ctx: Ctx, settle: float = SETTLE_SECONDS, poll: float = 0.5) -> CephSnapshot:
    """Look until no inactive PG is still peering, at most `settle` seconds; then decide on what is seen."""
    return look_until(ctx, lambda snap: not transient_pgs(snap), settle, poll)


def lost_osds(ctx: Ctx) -> set[int]:
    dump = ctx.backend.mon_command({"prefix": "osd dump"})
    if not isinstance(dump, dict):
        return set()
    return {int(o["osd"]) for o in dump.get("osds", []) if int(o.get("lost_at", 0) or 0) > 0}


def unfound_sources(ctx: Ctx, snap: CephSnapshot) -> list[UnfoundSource]:
    sources = []
    for pg in snap.pgs_with_unfound:
        listing = ctx.backend.pg_command(pg.pgid, {"prefix": "list_unfound"})
        might: dict[int, str] = {}
        if isinstance(listing, dict):
            for item in listing.get("might_have_unfound", []):
                might[int(item["osd"])] = str(item.get("status", ""))
        sources.append(UnfoundSource(pgid=pg.pgid, objects=pg.unfound, might_have=might))
    return sources


def monitors(ctx: Ctx) -> MonitorControl:
    return ctx.backend.monitors


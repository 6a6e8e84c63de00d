"""What a command handler of the simulated mongod gets and may return: its context, and a
`Wait` for a reply that is not ready yet (the server drives it as model time passes: wire.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drengine.datastores.mongodb.simulator import SimulatedReplicaSet
from drengine.datastores.mongodb.wireproto import BsonDoc


@dataclass
class CommandContext:
    model: SimulatedReplicaSet
    member_id: int
    db: str
    connection_id: int
    now: float


@dataclass
class Wait:
    """A reply that is not ready yet: `ready` is asked again as model time passes (a reply, a
    further wait, or None); past `deadline` (model time; None: never) `expired` answers."""

    ready: Callable[[], BsonDoc | Wait | None]
    deadline: float | None
    expired: Callable[[], BsonDoc | Wait]


Reply = BsonDoc | Wait
CommandHandler = Callable[[CommandContext, BsonDoc], Reply]


def deadline_after(ctx: CommandContext, millis: Any) -> float | None:
    """A model-time deadline `millis` from now; 0 or absent means none."""
    if millis is None or float(millis) <= 0:
        return None
    return ctx.model.now() + float(millis) / 1000.0

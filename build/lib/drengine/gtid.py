"""MariaDB GTID positions: `domain-server-sequence`, comma-separated, one per domain.
Positions are compared domain by domain, on sequence numbers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

GTID_RE = re.compile(r"^(\d{1,10})-(\d{1,10})-(\d{1,20})$")


@dataclass(frozen=True, order=True)
class Gtid:
    domain: int
    server: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"


Position = dict[int, Gtid]


def _gtids(text: str | None) -> list[Gtid]:
    """The GTIDs of a comma-separated list; empty or None is none. Raises ValueError on junk."""
    return list(_parsed(text or ""))


@lru_cache(maxsize=4096)
def _parsed(text: str) -> tuple[Gtid, ...]:
    # The same positions are parsed over and over (every probe of every server): parse each text once.
    out = []
    for part in text.replace("\n", "").split(","):
        part = part.strip()
        if not part:
            continue
        m = GTID_RE.match(part)
        if not m:
            raise ValueError(f"not a GTID: {part!r}")
        out.append(Gtid(int(m[1]), int(m[2]), int(m[3])))
    return tuple(out)


def parse(text: str | None) -> Position:
    """A GTID position: the last GTID per domain."""
    return {g.domain: g for g in _gtids(text)}


def render(pos: Position) -> str:
    return ",".join(str(pos[d]) for d in sorted(pos))


def seq(pos: Position, domain: int) -> int:
    g = pos.get(domain)
    return g.seq if g else 0


def covers(a: Position, b: Position) -> bool:
    """True when position `a` is at or past `b` in every domain of `b`."""
    return all(seq(a, d) >= g.seq for d, g in b.items())


def missing(have: Position, want: Position) -> dict[int, int]:
    """Per domain, how many transactions `have` lacks compared to `want` (only positive gaps)."""
    return {d: g.seq - seq(have, d) for d, g in want.items() if g.seq > seq(have, d)}


def total(pos: Position) -> int:
    return sum(g.seq for g in pos.values())


def merge_max(*positions: Position) -> Position:
    out: Position = {}
    for pos in positions:
        for d, g in pos.items():
            if d not in out or g.seq > out[d].seq:
                out[d] = g
    return out


State = dict[tuple[int, int], int]


def parse_state(text: str | None) -> State:
    """`@@gtid_binlog_state`: the last sequence number per (domain, server_id)."""
    out: State = {}
    for g in _gtids(text):
        out[(g.domain, g.server)] = max(out.get((g.domain, g.server), 0), g.seq)
    return out


def errant(own: Position, primary_state: State) -> dict[int, int]:
    """Transactions a server holds that the primary's binlog never had: per domain, how far
    its last GTID lies past what the primary recorded for the same originating server."""
    out: dict[int, int] = {}
    for d, g in own.items():
        known = primary_state.get((d, g.server), 0)
        if g.seq > known:
            out[d] = g.seq - known
    return out

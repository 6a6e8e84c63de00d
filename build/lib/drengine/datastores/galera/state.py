"""The one reader of a Galera node's saved state: `grastate.dat` (uuid, seqno,
safe_to_bootstrap) and the position `mariadbd --wsrep-recover` prints. Pure functions,
used by the connector, the simulator and the lab alike."""

from __future__ import annotations

import re

from drengine.errors import CommandFailed
from drengine.steps import Fact, fact

# `mariadbd --wsrep-recover` logs `WSREP: Recovered position: uuid:seqno`; galera_recovery
# prints `--wsrep_start_position=uuid:seqno`.
RECOVERED_RE = re.compile(
    r"(?:Recovered position:?\s+|--wsrep[_-]start[_-]position=)"
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(-?\d+)"
)


@fact
class Grastate(Fact):
    """What a stopped node saved in `grastate.dat` (seqno -1 while running and after a crash)."""

    name: str
    uuid: str
    seqno: int
    safe_to_bootstrap: bool


@fact
class Recovered(Fact):
    """The position `--wsrep-recover` found in the node's InnoDB pages."""

    name: str
    uuid: str
    seqno: int

    @property
    def position(self) -> str:
        return f"{self.uuid}:{self.seqno}"


def parse_grastate(text: str, name: str) -> Grastate:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    if "uuid" not in fields or "seqno" not in fields:
        raise CommandFailed(f"{name}: grastate.dat has no uuid or seqno line; it reads: {text[:300]!r}")
    try:
        seqno = int(fields["seqno"])
    except ValueError:
        raise CommandFailed(f"{name}: grastate.dat has seqno {fields['seqno']!r}, expected a number") from None
    return Grastate(name=name, uuid=fields["uuid"], seqno=seqno, safe_to_bootstrap=fields.get("safe_to_bootstrap", "0") == "1")


def parse_recovered(output: str, name: str) -> Recovered:
    matches = RECOVERED_RE.findall(output)
    if not matches:
        tail = output.strip()[-800:] or "(nothing)"
        raise CommandFailed(
            f"{name}: the recover command printed no `Recovered position: uuid:seqno`; expected it on stdout or "
            f"stderr (is the error log going to a file? point log-error at stderr for the recover template). "
            f"Output ends with: {tail}"
        )
    uuid, seqno = matches[-1]
    return Recovered(name=name, uuid=uuid, seqno=int(seqno))


def has_recovered_position(output: str) -> bool:
    return RECOVERED_RE.search(output) is not None

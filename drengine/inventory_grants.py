"""The privileges a MariaDB or Galera account needs for drengine's runbooks, read from the
server's own `SHOW GRANTS` (the account's grants and its current role's), for
`drengine inventory check --connect`.

The alternatives follow MariaDB's `sql/privilege.h` (PRIV_STMT_* and PRIV_SET_SYSTEM_*):
since 10.5.2 SUPER is split into fine-grained privileges and still accepted for the
replication statements and KILL; since 10.11.0 (MDEV-29596) `SET GLOBAL read_only` needs
READ_ONLY ADMIN, which SUPER no longer includes; before 10.5.2, SUPER (and REPLICATION CLIENT
for SHOW SLAVE STATUS) did everything. `SET GLOBAL wsrep_provider_options` needs SUPER.
Grants on a database pattern (`drengine%`) or to a role that is not the current one are not
seen: the check then reports the privilege as missing, naming it, and the operator decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GLOBAL = "*.*"
HEARTBEAT_DB = "drengine"  # the heartbeat and canary tables the runbooks write
HEARTBEAT_PRIVILEGES = ("CREATE", "INSERT", "DELETE", "SELECT")  # REPLACE INTO is an INSERT and a DELETE


@dataclass(frozen=True)
class Need:
    """What a runbook step sends, and the global privileges of which any one allows it."""

    what: str
    any_of: tuple[str, ...]


def _version(text: str) -> tuple[int, int, int]:
    """`10.11.19-MariaDB-0+deb12u1` -> (10, 11, 19)."""
    numbers = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(numbers[1]), int(numbers[2]), int(numbers[3])) if numbers else (0, 0, 0)


def needs(kind: str, server_version: str) -> list[Need]:
    """The global privileges the `kind` runbooks (promote, rejoin, fencing by SQL; Galera's bootstrap) need."""
    version = _version(server_version)
    monitor: tuple[str, ...]
    slave_admin: tuple[str, ...]
    read_only: tuple[str, ...]
    kill: tuple[str, ...]
    if version < (10, 5, 2):
        monitor, slave_admin, read_only, kill = ("SUPER", "REPLICATION CLIENT"), ("SUPER",), ("SUPER",), ("SUPER",)
    else:
        monitor, slave_admin = ("SLAVE MONITOR", "SUPER"), ("REPLICATION SLAVE ADMIN", "SUPER")
        read_only = ("READ_ONLY ADMIN",) if version >= (10, 11, 0) else ("READ_ONLY ADMIN", "SUPER")
        kill = ("CONNECTION ADMIN", "SUPER")
    fencing = [Need("SET GLOBAL read_only (fencing, promotion)", read_only),
               Need("KILL CONNECTION of other accounts' sessions (fencing by SQL)", kill),
               Need("every session in information_schema.PROCESSLIST (fencing by SQL)", ("PROCESS",))]
    if kind == "galera":
        return [Need("SET GLOBAL wsrep_provider_options='pc.bootstrap=YES' (bootstrap)", ("SUPER",)), *fencing]
    return [Need("SHOW ALL SLAVES STATUS (observe)", monitor),
            Need("STOP SLAVE, CHANGE MASTER, RESET SLAVE ALL, START SLAVE (promote, rejoin)", slave_admin),
            *fencing]


_GRANT = re.compile(r"^GRANT (?P<privileges>.+?) ON (?P<on>\S+) TO ", re.S)


def granted(show_grants: list[str]) -> dict[str, set[str]]:
    """`SHOW GRANTS` lines -> {`*.*` or database name: privileges}; ALL PRIVILEGES kept as `ALL`.
    Table and column grants, proxy and role lines are left out (they never give these)."""
    held: dict[str, set[str]] = {}
    for line in show_grants:
        found = _GRANT.match(line)
        if found is None:
            continue  # `GRANT role TO user`: the role's own grants are listed when it is the current role
        on = found["on"].replace("`", "")
        if on != GLOBAL and not on.endswith(".*"):
            continue
        scope = GLOBAL if on == GLOBAL else on[:-2]
        privileges = {p.strip().upper() for p in found["privileges"].split(",")}
        held.setdefault(scope, set()).update("ALL" if p == "ALL PRIVILEGES" else p for p in privileges)
    return held


@dataclass(frozen=True)
class Lack:
    """A privilege the account does not hold: any one of `any_of` on `on`, for `what`."""

    any_of: tuple[str, ...]
    what: str
    on: str = GLOBAL

    def __str__(self) -> str:
        where = "" if self.on == GLOBAL else f" on {self.on}"
        return f"{' or '.join(self.any_of)}{where} for {self.what}"


def missing(kind: str, server_version: str, show_grants: list[str]) -> list[Lack]:
    """What the account lacks; empty when it holds everything the runbooks send."""
    held = granted(show_grants)
    everywhere = held.get(GLOBAL, set())
    lacking = []
    if "ALL" not in everywhere:
        lacking += [Lack(n.any_of, n.what) for n in needs(kind, server_version) if not everywhere.intersection(n.any_of)]
    on_db = everywhere | held.get(HEARTBEAT_DB, set())
    absent = tuple(p for p in HEARTBEAT_PRIVILEGES if p not in on_db)
    if absent and "ALL" not in on_db:
        lacking.append(Lack((", ".join(absent),), "the heartbeat and canary writes", f"{HEARTBEAT_DB}.*"))
    return lacking


def grant_statements(lacking: list[Lack], account: str) -> list[str]:
    """The GRANTs an operator could run to fix it (the first alternative of each need)."""
    by_scope: dict[str, list[str]] = {}
    for lack in lacking:
        by_scope.setdefault(lack.on, []).append(lack.any_of[0])
    return [f"GRANT {', '.join(dict.fromkeys(privileges))} ON {on} TO {account}" for on, privileges in by_scope.items()]

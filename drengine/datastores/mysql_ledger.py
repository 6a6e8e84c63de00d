"""The change-ledger entries MariaDB and Galera share (drengine/ledger.py): a member fenced
before a promotion or a bootstrap (read-only with its sessions killed, stopped, killed by pid,
or out of the proxies), and a member put in maint in a proxy's read backends because it must
take no traffic. Each datastore's `ledger.py` declares them under its own kind
(`mariadb.fenced`, `galera.proxy_maint`, ...); the rejoin steps and `readmit` close them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drengine.datastores.mysql_fencing import Fencing
from drengine.datastores.mysql_traffic import ProxyChange
from drengine.inventory import Cluster
from drengine.ledger import DAY, Change, ChangeKind, Holding, LedgerEntry, Look

FENCED = "fenced"
PROXY_MAINT = "proxy_maint"

Declare = Callable[[Change], None]


def fenced_kind(datastore: str) -> str:
    return f"{datastore}.{FENCED}"


def maint_kind(datastore: str) -> str:
    return f"{datastore}.{PROXY_MAINT}"


def declare_fences(datastore: str, fencing: Fencing, rejoin_runbook: str, changed: Declare) -> None:
    """Every member a method fenced (or killed): it stays out until it is rejoined."""
    for member in fencing.members:
        done = next((a for a in member.attempts if a.outcome in ("fenced", "dead") and a.method != "resume"), None)
        if done is None or member.state == "down":
            continue
        changed(Change(kind=fenced_kind(datastore), target=member.member,
                       what=f"{member.member} fenced by {done.method}: {done.detail}", before=member.state,
                       after=f"fenced by {done.method}",
                       undo=f"start {member.member} again if it is stopped (the inventory's service.start), then rejoin it",
                       undo_runbook=rejoin_runbook))


def declare_found_fenced(datastore: str, before: dict[str, str], found: list[tuple[str, str]], rejoin_runbook: str,
                         changed: Declare) -> None:
    """A fence step found done when a killed run resumes (its own declaration may not have been
    journaled before the kill): every target that was not down when the run decided, and is now
    down or answers read-only, is left fenced by this run. `before`: member -> state the run saw;
    `found`: (member, what the probe sees now)."""
    for member, now in found:
        if before.get(member, "down") == "down":
            continue  # down before the run touched it: nothing this run changed
        changed(Change(kind=fenced_kind(datastore), target=member,
                       what=f"{member} fenced before the interruption: found {now} on resume", before=before[member],
                       after=f"found {now}",
                       undo=f"start {member} again if it is stopped (the inventory's service.start), then rejoin it",
                       undo_runbook=rejoin_runbook))


def declare_maint(cluster: Cluster, changes: list[ProxyChange], rejoin_runbook: str, changed: Declare) -> None:
    """Every read-backend server put in maint that the inventory wants back (`rejoined: ready`):
    the member takes no reads until it is readmitted. (With `rejoined: maint`, maint is where a
    returning member stays: the inventory's own choice, not something left behind.)"""
    datastore = cluster.kind
    back = {p.name for p in cluster.proxies if p.rejoined == "ready"}
    for change in changes:
        if change.state != "maint" or change.role != "read" or change.proxy not in back:
            continue
        changed(Change(kind=maint_kind(datastore), target=f"{change.proxy} {change.backend}/{change.server}",
                       what=f"{change.member} in maint in {change.proxy} {change.backend}/{change.server}",
                       before=change.before, after="maint",
                       undo=f"echo 'set server {change.backend}/{change.server} state {change.before}' | socat stdio "
                            f"<{change.proxy}'s runtime API>",
                       undo_runbook=rejoin_runbook))


def undo_maint(ctx: Any, datastore: str, servers: list[str]) -> None:
    """Readmitted: the read servers of the members are as the inventory says again."""
    for server in servers:
        ctx.undone(maint_kind(datastore), server)


def _server(backend: Any, entry: LedgerEntry) -> Any:
    proxy, _, where = entry.target.partition(" ")
    backend_name, _, server = where.partition("/")
    for view in backend.proxy_views():
        if view.proxy == proxy:
            if view.error:
                return view.error
            return next((s for s in view.servers if s.backend == backend_name and s.server == server), None)
    return None


def check_maint(backend: Any, entry: LedgerEntry) -> Look:
    server = _server(backend, entry)
    if isinstance(server, str):
        return Look(Holding.UNKNOWN, f"proxy {entry.target.split(' ')[0]}: {server}")
    if server is None:
        return Look(Holding.UNKNOWN, f"{entry.target} is not in the proxy any more")
    if server.admin == "maint":
        return Look(Holding.IN_PLACE, f"{entry.target} is in maint")
    return Look(Holding.UNDONE, f"{entry.target} is {server.admin}")


def fence_look(entry: LedgerEntry, state: str, error: str, serving: bool, rejoined: bool) -> Look:
    """A fenced member now: not running or not serving (in place), rejoined (undone), serving on
    its own (changed again: a split brain risk)."""
    if state == "down":
        return Look(Holding.IN_PLACE, f"{entry.target} is not running")
    if state != "up":
        return Look(Holding.UNKNOWN, f"{entry.target} is {state}: {error}")
    if rejoined:
        return Look(Holding.UNDONE, f"{entry.target} is back in the cluster")
    if serving:
        return Look(Holding.CHANGED, f"{entry.target} takes writes on its own again: fence it or rejoin it now")
    return Look(Holding.IN_PLACE, f"{entry.target} runs, fenced (takes no writes)")


def kinds(datastore: str, check_fenced: Callable[[Any, LedgerEntry], Look]) -> tuple[ChangeKind, ...]:
    return (
        # A fenced old primary is a member less: rejoin it (or rebuild it) within a day.
        ChangeKind(fenced_kind(datastore), "a member fenced", DAY, check_fenced),
        ChangeKind(maint_kind(datastore), "a proxy server put in maint", DAY, check_maint),
    )

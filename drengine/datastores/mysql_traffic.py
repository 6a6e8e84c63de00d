"""Where the application's traffic goes, for MariaDB replication and Galera alike: the
HAProxy instances in front of a cluster (inventory `proxies:`), switched to a new primary
after a recovery, a canary written through each write frontend to prove where it lands, and
rejoined members put back as the inventory says.

`TrafficAPI` is what the fencing and traffic steps need from a backend; the real backends
provide it with `Proxies` (HAProxy's runtime API, SQL through the frontends) and their host
operations, the simulators with their model of the proxies and processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from drengine.clock import Clock
from drengine.datastores.mysql_hosts import MemberHosts, ServerProcess, ServiceAction
from drengine.datastores.mysql_pool import MySQLPool, Row, Sql
from drengine.errors import DrengineError, InputError
from drengine.haproxy import (
    AdminState,
    HAProxyAPI,
    ProxyView,
    set_state_command,
    shutdown_sessions_command,
    statement,
)
from drengine.inventory import Cluster, Inventory, Proxy
from drengine.status import ProxyStatus
from drengine.steps import Fact, Statement, fact
from drengine.transport import CommandResult, ShellCommand, render_service

# Identity of the server a connection reached: unique per member (server_id for replication,
# the port or host name for Galera nodes, whose server_id is often the same everywhere).
IDENTITY = Sql("SELECT @@hostname, @@port, @@server_id")
TRAFFIC_CHECK = "traffic-check"


class TrafficAPI(Protocol):
    """What fencing and traffic steps use; MariaDB and Galera backends, real and simulated."""

    cluster: Cluster
    clock: Clock  # the run's: what the traffic canary writes

    def execute(self, member: str, sql: Sql, timeout: float | None = None) -> None: ...

    def query(self, member: str, sql: Sql, timeout: float | None = None) -> list[Row]: ...

    def kill(self, member: str) -> str: ...

    def service_command(self, action: ServiceAction, member: str) -> ShellCommand: ...

    def run_service(self, action: ServiceAction, member: str, timeout: float | None = None) -> CommandResult: ...

    def server_process(self, member: str) -> ServerProcess: ...

    def proxy_views(self) -> list[ProxyView]: ...

    def proxy_command(self, proxy: str, command: str) -> None: ...

    def through_frontend(self, proxy: str, statements: Sequence[Sql], read_timeout: float | None = None) -> list[Row]: ...


def proxy_of(cluster: Cluster, name: str) -> Proxy:
    for proxy in cluster.proxies:
        if proxy.name == name:
            return proxy
    raise InputError(f"cluster {cluster.name} has no proxy named {name!r}; proxies: {[p.name for p in cluster.proxies]}")


class Proxies:
    """The real side of TrafficAPI's proxy operations: runtime APIs and frontend connections."""

    def __init__(self, cluster: Cluster, inventory: Inventory, hosts: MemberHosts, pool: MySQLPool) -> None:
        self.cluster = cluster
        self.inventory = inventory
        self.hosts = hosts
        self._pools: dict[str, MySQLPool] = {}
        for proxy in cluster.proxies:
            cred = proxy.credentials
            if cred is None:
                self._pools[proxy.name] = pool
                continue
            where = f"{inventory.path}: cluster {cluster.name} proxy {proxy.name} credentials"
            self._pools[proxy.name] = MySQLPool(cluster, cred.user, cred.password.resolve(where) if cred.password else "")

    def api(self, name: str) -> HAProxyAPI:
        proxy = proxy_of(self.cluster, name)
        transport = self.hosts.host_transport(proxy.host) if proxy.host is not None else None
        return HAProxyAPI(proxy, transport)

    def views(self) -> list[ProxyView]:
        return [self.api(p.name).view() for p in self.cluster.proxies]

    def command(self, proxy: str, command: str) -> None:
        self.api(proxy).command(command)

    def through_frontend(self, name: str, statements: Sequence[Sql], read_timeout: float | None = None) -> list[Row]:
        proxy = proxy_of(self.cluster, name)
        if proxy.frontend is None:
            raise InputError(f"cluster {self.cluster.name}: proxy {name} has no `frontend:` in the inventory; "
                             f"drengine needs it to write through the proxy as the application does")
        where = f"proxy {name} frontend ({proxy.frontend.address}:{proxy.frontend.port})"
        return self._pools[name].run_at(proxy.frontend.address, proxy.frontend.port, statements, where, read_timeout).rows


# -- switching traffic ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyChange:
    proxy: str
    command: str
    why: str
    # The server and the admin state it goes to (for the change ledger; empty for session shutdowns).
    member: str = ""
    backend: str = ""
    server: str = ""
    role: str = ""
    before: str = ""
    state: str = ""


def wanted_state(proxy: Proxy, role: str, member: str, primary: str, out: frozenset[str]) -> AdminState | None:
    """The admin state a server should have once traffic follows `primary`; None: leave it.
    `out` are members that must take no traffic (fenced, not back)."""
    if role == "write":
        if member == primary:
            return "ready"
        return "drain" if proxy.standby == "drain" and member not in out else "maint"
    return "maint" if member in out else None


def switch_changes(cluster: Cluster, views: list[ProxyView], primary: str, out: frozenset[str]) -> list[ProxyChange]:
    """The runtime API commands that send writes to `primary` only: its servers first made ready,
    then the other write servers put in standby, and members in `out` taken out of the read
    backends too. A server put in maint that still holds sessions gets them shut down
    (HAProxy keeps open sessions when a server goes to maint)."""
    first: list[ProxyChange] = []
    then: list[ProxyChange] = []
    for view in views:
        proxy = proxy_of(cluster, view.proxy)
        for server in view.servers:
            want = wanted_state(proxy, server.role, server.member, primary, out)
            if want is not None and want != server.admin:
                change = ProxyChange(view.proxy, set_state_command(server.backend, server.server, want),
                                     f"{server.member}: {server.admin} -> {want} in {server.backend}",
                                     server.member, server.backend, server.server, server.role, server.admin, want)
                (first if want == "ready" else then).append(change)
            if want == "maint" and server.sessions:
                then.append(ProxyChange(view.proxy, shutdown_sessions_command(server.backend, server.server),
                                        f"{server.member}: close its {server.sessions} open session(s) in {server.backend}"))
    return first + then


def readmit_changes(cluster: Cluster, views: list[ProxyView], members: list[str], primary: str) -> list[ProxyChange]:
    """Put rejoined members back as the inventory says: read backends `rejoined` (ready or
    maint), write backends the proxy's standby state (only the primary takes writes)."""
    changes = []
    for view in views:
        proxy = proxy_of(cluster, view.proxy)
        for server in view.servers:
            if server.member not in members or server.member == primary:
                continue
            want: AdminState
            if server.role == "write":
                want = "drain" if proxy.standby == "drain" else "maint"
            else:
                want = "ready" if proxy.rejoined == "ready" else "maint"
            if want != server.admin:
                changes.append(ProxyChange(view.proxy, set_state_command(server.backend, server.server, want),
                                           f"{server.member}: {server.admin} -> {want} in {server.backend}",
                                           server.member, server.backend, server.server, server.role, server.admin,
                                           want))
    return changes


def change_statements(cluster: Cluster, changes: list[ProxyChange]) -> list[Statement]:
    return [statement(cluster, proxy_of(cluster, c.proxy), c.command) for c in changes]


def apply_changes(api: TrafficAPI, changes: list[ProxyChange], record: Statements) -> None:
    for change in changes:
        api.proxy_command(change.proxy, change.command)
        record(statement(api.cluster, proxy_of(api.cluster, change.proxy), change.command), "ok")


class Statements(Protocol):
    def __call__(self, statement: Statement, result: str) -> None: ...


# -- proving where writes land ------------------------------------------------------------------------


@fact
class LandedOn(Fact):
    """Where a canary written through a proxy's frontend landed."""

    proxy: str
    member: str  # the member whose identity matched; "" if none
    identity: str
    gtid: str = ""  # MariaDB: the canary's GTID (@@last_gtid), naming the server that wrote it


def identities(api: TrafficAPI, members: list[str]) -> dict[str, str]:
    """Each reachable member's identity, asked directly (not through a proxy)."""
    out = {}
    for member in members:
        rows = api.query(member, IDENTITY)
        if rows:
            out[member] = _identity(rows[0])
    return out


def _identity(row: Row) -> str:
    return f"{row[0]}:{row[1]} server_id {row[2]}"


def write_through(api: TrafficAPI, proxy: str, write: Sql | None, known: dict[str, str], with_gtid: bool) -> LandedOn:
    """Write through the proxy's frontend (if `write`), then ask the same connection who it is."""
    ask = Sql("SELECT @@hostname, @@port, @@server_id, @@last_gtid") if with_gtid else IDENTITY
    statements = [write, ask] if write is not None else [ask]
    rows = api.through_frontend(proxy, statements)
    row = rows[0] if rows else ("?", "?", "?")
    identity = _identity(row)
    member = next((m for m, i in known.items() if i == identity), "")
    return LandedOn(proxy=proxy, member=member, identity=identity, gtid=str(row[3] or "") if with_gtid and len(row) > 3 else "")


def traffic_problems(api: TrafficAPI, writers: set[str]) -> list[str]:
    """What keeps the proxies from sending writes to `writers` only (for drills): an unreachable
    runtime API, a write backend with another server ready, or a canary landing elsewhere."""
    problems = []
    for view in api.proxy_views():
        ready = set(view.ready_writers())
        if view.error:
            problems.append(view.describe())
        elif not ready or ready - writers:
            problems.append(f"proxy {view.proxy} sends writes to {', '.join(sorted(ready)) or 'no server'}, expected "
                            f"{' or '.join(sorted(writers)) or 'a writable member'}")
    known = identities(api, sorted(writers))
    for proxy in api.cluster.proxies:
        if proxy.frontend is None:
            continue
        try:
            landed = write_through(api, proxy.name, None, known, with_gtid=False)
        except DrengineError as exc:
            problems.append(f"proxy {proxy.name}: no connection through its frontend: {exc}")
            continue
        if landed.member not in writers:
            problems.append(f"proxy {proxy.name}: a connection through its frontend reached {landed.identity}, "
                            f"not {' or '.join(sorted(writers))}")
    return problems


def frontends(cluster: Cluster) -> list[str]:
    return [p.name for p in cluster.proxies if p.frontend is not None]


def proxy_statuses(views: list[ProxyView]) -> list[ProxyStatus]:
    """Where each proxy sends writes, for `drengine status`."""
    out = []
    for view in views:
        if view.error:
            out.append(ProxyStatus(name=view.proxy, state="unreachable", error=view.error))
            continue
        writers = sorted(set(view.ready_writers()))
        state = "writes to one server" if len(writers) == 1 else (
            "no server takes writes" if not writers else f"writes to {len(writers)} servers")
        out.append(ProxyStatus(name=view.proxy, state=state, points_to=", ".join(writers),
                               error="" if len(writers) == 1 else view.describe()))
    return out


class HostsAndProxies:
    """The `TrafficAPI` half and the drill faults of a real MariaDB or Galera backend, written
    once: host operations through `MemberHosts`, proxies through `Proxies`, one pool to close."""

    cluster: Cluster
    pool: MySQLPool
    hosts: MemberHosts
    proxies: Proxies

    # -- drill faults ---------------------------------------------------------------------------
    def kill(self, member: str) -> str:
        target = self.cluster.member(member)
        done = self.hosts.signal(target, "KILL")
        self.hosts.wait_gone(target, 10.0)
        return done

    def hang(self, member: str) -> str:
        return self.hosts.signal(self.cluster.member(member), "STOP")

    def resume(self, member: str) -> str:
        return self.hosts.resume(self.cluster.member(member))

    def start(self, member: str) -> str:
        return self.hosts.start(self.cluster.member(member))

    # -- hosts and proxies (TrafficAPI) ---------------------------------------------------------
    def service_command(self, action: ServiceAction, member: str) -> ShellCommand:
        return render_service(self.cluster, self.cluster.member(member), action)

    def run_service(self, action: ServiceAction, member: str, timeout: float | None = None) -> CommandResult:
        return self.hosts.run_service(action, self.cluster.member(member), timeout)

    def server_process(self, member: str) -> ServerProcess:
        return self.hosts.process(self.cluster.member(member))

    def proxy_views(self) -> list[ProxyView]:
        return self.proxies.views()

    def proxy_command(self, proxy: str, command: str) -> None:
        self.proxies.command(proxy, command)

    def through_frontend(self, proxy: str, statements: Sequence[Sql], read_timeout: float | None = None) -> list[Row]:
        return self.proxies.through_frontend(proxy, statements, read_timeout)

    def close(self) -> None:
        self.pool.close()
        self.hosts.close()

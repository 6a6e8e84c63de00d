"""MariaDB Galera connector: probes every node in parallel into an immutable view (wsrep
status read with `wsrep_sync_wait=0`, so a non-Primary node still answers), sends
statements, and runs the host side of a recovery through each member's host transport:
read grastate.dat, run `--wsrep-recover`, start, stop and bootstrap-start a node with
the cluster's service templates (shown verbatim in plans).

How a member's host is reached: `transport.member_transport`, the one rule (a member
without `host:` is refused, with a message saying how to name its host). SQL probes need
no host.

Every probe and command is bounded: connect and read timeouts on SQL (a SIGSTOPped node
still completes the TCP handshake, so only the read timeout saves a probe), connect and
command timeouts on the transports.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Literal, Protocol

from drengine import transport
from drengine.datastores.galera import DATASTORE
from drengine.datastores.mariadb.connector import Sql
from drengine.errors import CommandFailed, ConnectError, ProbeTimeout
from drengine.inventory import Cluster, Inventory, Member
from drengine.steps import Fact, Statement, fact
from drengine.transport import CommandResult, HostTransport, MemberTransports, ServiceAction, ShellCommand, render_template

if TYPE_CHECKING:
    import pymysql

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_SERVICE",
    "GaleraAPI",
    "GaleraBackend",
    "GaleraView",
    "Grastate",
    "NodeView",
    "Recovered",
    "ServiceAction",
    "grastate_path",
    "grastate_statement",
    "parse_grastate",
    "parse_recovered",
    "render_service",
    "safe_to_bootstrap_command",
]

SYNC_WAIT_OFF = "SET SESSION wsrep_sync_wait=0"
STATUS_SQL = "SHOW GLOBAL STATUS LIKE 'wsrep_%'"
DEFAULT_DATA_DIR = DATASTORE.default_data_dir or "/var/lib/mysql"
# Defaults for systemd hosts with the Debian/RHEL packages: the unit's ExecStartPre runs
# galera_recovery, so a plain start of a crashed node rejoins by IST when it can.
DEFAULT_SERVICE: dict[str, str] = {
    "start": "systemctl start mariadb",
    "stop": "systemctl stop mariadb",
    "bootstrap": "galera_new_cluster",
    "recover": "galera_recovery",
    "status": "systemctl is-active --quiet mariadb",
}

# `mariadbd --wsrep-recover` logs `WSREP: Recovered position: uuid:seqno`; galera_recovery
# prints `--wsrep_start_position=uuid:seqno`.
_RECOVERED_RE = re.compile(
    r"(?:Recovered position:?\s+|--wsrep[_-]start[_-]position=)([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(-?\d+)"
)
NodeState = Literal["up", "down", "hung", "unreachable"]


# -- facts -----------------------------------------------------------------------------------------


@fact
class NodeView(Fact):
    """One node as a probe saw it.

    state: `up` (answered), `down` (connection refused: nothing listens, the process is
    not running), `hung` (accepted the connection, then no answer within the read
    timeout), `unreachable` (no TCP answer, or another error: its state is unknown; it
    may be alive on the other side of a partition).
    """

    name: str
    address: str
    port: int
    state: NodeState
    error: str = ""
    cluster_status: str = ""  # Primary, non-Primary, Disconnected
    cluster_size: int = 0
    ready: bool = False
    connected: bool = False
    local_state: str = ""  # wsrep_local_state_comment: Synced, Donor/Desynced, Joiner, Joined, Initialized
    last_committed: int = -1
    state_uuid: str = ""
    incoming: list[str] = []  # wsrep_incoming_addresses: client addresses of the nodes in its component
    probe_seconds: float = 0.0

    @property
    def is_primary(self) -> bool:
        return self.state == "up" and self.cluster_status == "Primary"

    @property
    def running(self) -> bool | None:
        """Is the mariadbd process running? None when the probe cannot tell."""
        return {"up": True, "hung": True, "down": False}.get(self.state)

    def describe(self) -> str:
        if self.state != "up":
            return f"{self.name} ({self.address}:{self.port}): {self.state.upper()}: {self.error}"
        return (
            f"{self.name} ({self.address}:{self.port}): {self.cluster_status} component of size {self.cluster_size}, "
            f"{self.local_state or '?'}, last committed {self.last_committed}, state {self.state_uuid or '?'}"
        )


@fact
class GaleraView(Fact):
    cluster: str
    nodes: list[NodeView]
    observed_at: float

    def node(self, name: str) -> NodeView:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


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


# -- parsing and rendering (pure) -----------------------------------------------------------------


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
    matches = _RECOVERED_RE.findall(output)
    if not matches:
        tail = output.strip()[-800:] or "(nothing)"
        raise CommandFailed(
            f"{name}: the recover command printed no `Recovered position: uuid:seqno`; expected it on stdout or "
            f"stderr (is the error log going to a file? point log-error at stderr for the recover template). "
            f"Output ends with: {tail}"
        )
    uuid, seqno = matches[-1]
    return Recovered(name=name, uuid=uuid, seqno=int(seqno))


def data_dir_of(member: Member) -> str:
    return member.data_dir or DEFAULT_DATA_DIR


def grastate_path(member: Member) -> str:
    return data_dir_of(member).rstrip("/") + "/grastate.dat"


def render_service(cluster: Cluster, member: Member, action: ServiceAction) -> ShellCommand:
    """The exact shell command a service action sends for this member: the inventory's template,
    else the packaged systemd default (the one renderer, `transport.render_service`)."""
    return transport.render_service(cluster, member, action, default=DEFAULT_SERVICE[action])


def safe_to_bootstrap_command(member: Member) -> ShellCommand:
    """What an operator does on the node chosen after a full crash: Galera refuses
    `--wsrep-new-cluster` until grastate.dat says `safe_to_bootstrap: 1`."""
    return render_template(
        "sed -i 's/^safe_to_bootstrap: *0 *$/safe_to_bootstrap: 1/' {data_dir}/grastate.dat",
        data_dir=data_dir_of(member).rstrip("/"),
    )


# -- the interface the actions use ------------------------------------------------------------------


class GaleraAPI(Protocol):
    """What the Galera actions use; the real connector and the simulator both provide it."""

    cluster: Cluster

    def observe(self) -> GaleraView: ...

    def probe(self, member: str) -> NodeView: ...

    def execute(self, member: str, sql: Sql, timeout: float | None = None) -> None: ...

    def query(self, member: str, sql: Sql, timeout: float | None = None) -> list[tuple[Any, ...]]: ...

    def service_command(self, action: ServiceAction, member: str) -> ShellCommand: ...

    def run_service(self, action: ServiceAction, member: str, timeout: float | None = None) -> CommandResult: ...

    def node_running(self, member: str) -> bool | None: ...

    def read_grastate(self, member: str) -> Grastate: ...

    def recover_position(self, member: str, timeout: float | None = None) -> Recovered: ...

    def mark_safe_to_bootstrap(self, member: str) -> CommandResult: ...

    def close(self) -> None: ...


def _flag(value: Any) -> bool:
    return str(value).upper() in ("1", "ON", "YES", "TRUE")


def view_from_status(member: Member, port: int, status: dict[str, str], seconds: float = 0.0) -> NodeView:
    """Build a node's view from its `wsrep_%` status variables."""

    def number(key: str, default: int) -> int:
        try:
            return int(status.get(key, default))
        except ValueError:
            return default

    incoming = [a.strip() for a in status.get("wsrep_incoming_addresses", "").split(",") if a.strip()]
    return NodeView(
        name=member.name,
        address=member.address,
        port=port,
        state="up",
        cluster_status=status.get("wsrep_cluster_status", ""),
        cluster_size=number("wsrep_cluster_size", 0),
        ready=_flag(status.get("wsrep_ready", "OFF")),
        connected=_flag(status.get("wsrep_connected", "OFF")),
        local_state=status.get("wsrep_local_state_comment", ""),
        last_committed=number("wsrep_last_committed", -1),
        state_uuid=status.get("wsrep_cluster_state_uuid", ""),
        incoming=incoming,
        probe_seconds=round(seconds, 3),
    )


# -- the real connector ------------------------------------------------------------------------------


class GaleraBackend:
    """pymysql for SQL, the inventory's host transports for everything on the nodes' hosts."""

    def __init__(self, cluster: Cluster, inventory: Inventory) -> None:
        self.cluster = cluster
        self.inventory = inventory
        cred = cluster.credentials
        self._user = cred.user
        self._password = cred.password.resolve(f"{inventory.path}: cluster {cluster.name} credentials") if cred.password else ""
        self._hosts = MemberTransports(inventory, cluster.name)
        # One connection per member, reused: opening one costs 20-25 ms against a Galera node,
        # which would dominate a survivor bootstrap (a probe, a statement, a poll, three writes).
        self._conns: dict[str, Any] = {}
        self._member_locks = {m.name: threading.Lock() for m in cluster.members}

    # -- SQL --------------------------------------------------------------------------------------
    def _connect(self, member: Member, read_timeout: float | None = None) -> pymysql.connections.Connection[Any]:
        import pymysql

        t = self.cluster.timeouts
        return pymysql.connect(
            host=member.address,
            port=self.cluster.port_of(member),
            user=self._user,
            password=self._password,
            connect_timeout=t.connect,
            read_timeout=read_timeout or t.read,
            write_timeout=t.read,
            autocommit=True,
        )

    def observe(self) -> GaleraView:
        members = self.cluster.members
        t = self.cluster.timeouts
        pool = cf.ThreadPoolExecutor(max_workers=min(32, len(members)), thread_name_prefix="galera-probe")
        try:
            futures = {pool.submit(self._probe, m): m for m in members}
            # Safety net on top of the per-connection timeouts (a ping, a connect, the statements).
            done, _ = cf.wait(futures, timeout=t.connect + 3 * t.read + 1.0)
            nodes = []
            for fut, member in futures.items():
                if fut in done:
                    nodes.append(fut.result())
                else:
                    nodes.append(self._failed(member, "hung", f"no answer within {t.connect + 3 * t.read + 1:g} s"))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return GaleraView(cluster=self.cluster.name, nodes=nodes, observed_at=time.time())

    def probe(self, member: str) -> NodeView:
        return self._probe(self.cluster.member(member))

    def _failed(self, member: Member, state: NodeState, error: str) -> NodeView:
        return NodeView(name=member.name, address=member.address, port=self.cluster.port_of(member), state=state, error=error)

    def _run(self, member: Member, statements: list[tuple[str, tuple[Any, ...] | None]],
             read_timeout: float | None = None) -> list[tuple[Any, ...]]:
        """Send statements on the member's connection (opened, or checked with a ping, first)
        and return the last one's rows. A custom read timeout gets a connection of its own."""
        with self._member_locks[member.name]:
            conn = None if read_timeout else self._conns.pop(member.name, None)
            if conn is not None:
                try:
                    conn.ping(reconnect=False)  # a restarted or killed node left this connection dead
                except Exception as exc:  # noqa: BLE001 - a dead cached connection is replaced, not reported
                    _close(conn)
                    conn = None
                    if "timed out" in str(exc).lower():
                        raise  # hung: a new connection would only wait as long again
            if conn is None:
                conn = self._connect(member, read_timeout)
            try:
                with conn.cursor() as cur:
                    rows: list[tuple[Any, ...]] = []
                    for template, params in statements:
                        cur.execute(template, params)
                        rows = [tuple(r) for r in cur.fetchall() or []]
            except BaseException:
                _close(conn)
                raise
            if read_timeout:
                _close(conn)
            else:
                self._conns[member.name] = conn
            return rows

    def _probe(self, member: Member) -> NodeView:
        started = time.monotonic()
        try:
            # wsrep_sync_wait=0: otherwise a non-Primary node blocks or refuses the probe.
            rows = self._run(member, [(SYNC_WAIT_OFF, None), (STATUS_SQL, None)])
        except Exception as exc:  # noqa: BLE001 - every failure says something about the node
            state, error = _classify(exc, self.cluster.timeouts.connect, self.cluster.timeouts.read)
            return self._failed(member, state, error)
        status = {str(k): str(v) for k, v in rows}
        return view_from_status(member, self.cluster.port_of(member), status, time.monotonic() - started)

    def execute(self, member: str, sql: Sql, timeout: float | None = None) -> None:
        self.query(member, sql, timeout)

    def query(self, member: str, sql: Sql, timeout: float | None = None) -> list[tuple[Any, ...]]:
        import pymysql

        target = self.cluster.member(member)
        t = self.cluster.timeouts
        read_timeout = timeout + t.read if timeout else None
        try:
            return self._run(target, [(sql.template, sql.params or None)], read_timeout)
        except Exception as exc:  # noqa: BLE001 - turned into one clear error naming the statement
            state, error = _classify(exc, t.connect, read_timeout or t.read)
            where = f"{member} ({target.address}:{self.cluster.port_of(target)})"
            if isinstance(exc, pymysql.err.OperationalError) and exc.args and exc.args[0] in (2003, 2006, 2013):
                if state == "hung":
                    raise ProbeTimeout(f"{where}: `{sql.shown()}`: {error}") from None
                raise ConnectError(f"{where}: cannot send `{sql.shown()}`: {error}") from None
            raise CommandFailed(f"{member}: `{sql.shown()}` failed: {error}") from None

    # -- hosts ------------------------------------------------------------------------------------
    def _transport(self, member: Member) -> HostTransport:
        return self._hosts.of(member, f"run commands on {member.name} (read grastate.dat, --wsrep-recover, start or stop it)")

    def service_command(self, action: ServiceAction, member: str) -> ShellCommand:
        return render_service(self.cluster, self.cluster.member(member), action)

    def run_service(self, action: ServiceAction, member: str, timeout: float | None = None) -> CommandResult:
        target = self.cluster.member(member)
        return self._transport(target).run(render_service(self.cluster, target, action), timeout=timeout)

    def node_running(self, member: str) -> bool | None:
        """Ask the host (the status template): exit 0 running, 3 (LSB "not running") or 1 stopped.
        None when the answer is something else: drengine does not guess."""
        result = self.run_service("status", member, timeout=self.cluster.timeouts.read + 10)
        if result.exit_status == 0:
            return True
        if result.exit_status in (1, 3):
            return False
        return None

    def read_grastate(self, member: str) -> Grastate:
        target = self.cluster.member(member)
        text = self._transport(target).read_file(grastate_path(target))
        return parse_grastate(text, member)

    def recover_position(self, member: str, timeout: float | None = None) -> Recovered:
        result = self.run_service("recover", member, timeout=timeout)
        output = result.stdout + "\n" + result.stderr
        if result.exit_status != 0 and not _RECOVERED_RE.search(output):
            result.check()
        return parse_recovered(output, member)

    def mark_safe_to_bootstrap(self, member: str) -> CommandResult:
        target = self.cluster.member(member)
        return self._transport(target).run(safe_to_bootstrap_command(target), timeout=self.cluster.timeouts.read + 10)

    def close(self) -> None:
        self._hosts.close()
        for name, lock in self._member_locks.items():
            # A probe still stuck on a hung node keeps its connection; it is closed when the probe ends.
            if lock.acquire(timeout=0.1):
                try:
                    conn = self._conns.pop(name, None)
                    if conn is not None:
                        _close(conn)
                finally:
                    lock.release()


def grastate_statement(member: Member) -> Statement:
    return Statement(member.name, f"cat -- {grastate_path(member)}", language="shell")


def _close(conn: Any) -> None:
    # Closing a broken connection must not mask the real error.
    with contextlib.suppress(Exception):
        conn.close()


def _classify(exc: Exception, connect: float, read: float) -> tuple[NodeState, str]:
    """Turn a pymysql error into the node's state and a plain message."""
    text = str(exc)
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    code = args[0] if args and isinstance(args[0], int) else None
    detail = f"error {code}: {args[1]}" if code is not None and len(args) >= 2 else (text or type(exc).__name__)
    timed_out = "timed out" in text.lower() or isinstance(exc, TimeoutError)
    if code == 2003 and timed_out:
        return "unreachable", f"no TCP answer within the connect timeout of {connect:g} s (host down or partitioned?)"
    if timed_out:
        return "hung", f"accepted the connection but gave no answer within the read timeout of {read:g} s (hung or overloaded)"
    if code == 2003 and ("111" in text or "refused" in text.lower()):
        return "down", f"connection refused: nothing listens on the port (mariadbd not running) ({detail})"
    return "unreachable", detail

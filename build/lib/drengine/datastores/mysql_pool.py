"""The one MySQL-protocol connection pool, shared by MariaDB replication and Galera.

It owns the statements drengine sends (`Sql`, shown with secrets masked), one idle
connection per member (a new MariaDB connection costs ~20 ms, more than the statements of
a whole promotion), and how a failure is read: a member that refuses the connection is
`down` (nothing listens), one that accepted it and then said nothing within the read
timeout is `hung` (a SIGSTOPped server still completes the TCP handshake), one that gave no
TCP answer within the connect timeout is `unreachable`. The failure is told by the
exception's type, its errno and which timeout fired, never by the wording of a message
(pymysql keeps the socket error as `original_exception` or as the context of its own).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NoReturn

from drengine.errors import CommandFailed, ConnectError, ProbeTimeout
from drengine.inventory import Cluster, Member
from drengine.steps import Statement

if TYPE_CHECKING:
    from typing import TypeAlias

    import pymysql

    Connection: TypeAlias = pymysql.connections.Connection[pymysql.cursors.Cursor]

MemberState = Literal["up", "down", "hung", "unreachable"]
Value = str | int | float
Row = tuple[object, ...]

# pymysql's client error numbers (CR_*): the connection, not the server, failed.
CR_CONN_HOST_ERROR = 2003  # could not open the TCP connection
CR_SERVER_GONE_ERROR = 2006  # a write on the connection failed
CR_SERVER_LOST = 2013  # a read on the connection failed or hit end of file


@dataclass(frozen=True)
class Sql:
    """A statement with its parameters. `shown()` is the exact text an operator could type,
    with secret parameters masked."""

    template: str
    params: tuple[Value, ...] = ()
    secret: frozenset[int] = frozenset()

    def shown(self) -> str:
        if not self.params:
            return self.template
        shown = tuple("'***'" if i in self.secret else _literal(v) for i, v in enumerate(self.params))
        return self.template % shown

    def on(self, target: str) -> Statement:
        return Statement(target=target, text=self.shown(), language="sql")


# drengine's own table for verification writes and canaries, on MariaDB replication and Galera alike.
HEARTBEAT_DDL = [
    Sql("CREATE DATABASE IF NOT EXISTS drengine"),
    Sql("CREATE TABLE IF NOT EXISTS drengine.heartbeat (id VARCHAR(64) PRIMARY KEY, written_at DOUBLE NOT NULL)"),
]


def _literal(value: Value) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- failures -----------------------------------------------------------------------------------


class MemberFailed(ConnectError):
    """A member did not answer; `state` says how, `detail` says it without naming the member."""

    state: MemberState = "unreachable"

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


class MemberDown(MemberFailed):
    """The member's host refused the connection: nothing listens on the port."""

    state: MemberState = "down"


class MemberUnreachable(MemberFailed):
    """No TCP answer, or the connection broke: the member's state is unknown."""

    state: MemberState = "unreachable"


class MemberHung(MemberFailed, ProbeTimeout):
    """The member accepted the connection and then gave no answer within the read timeout."""

    state: MemberState = "hung"


class StatementFailed(CommandFailed):
    """The server answered, with an error (read-only, non-Primary, syntax...)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.detail = message


@dataclass(frozen=True)
class Failure:
    """What one failed connection or statement says about the member."""

    state: MemberState  # "up" when the server itself answered with an error
    errno: int | None
    detail: str


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, the socket error pymysql kept, and their causes and contexts."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (getattr(current, "original_exception", None), current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _errno(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def classify(exc: BaseException, connect_timeout: float, read_timeout: float) -> Failure:
    """Read a failed connection or statement as the member's state, by exception type and errno."""
    code = _errno(exc)
    causes = list(_causes(exc))
    timed_out = any(isinstance(c, TimeoutError) for c in causes)
    refused = any(isinstance(c, ConnectionRefusedError) for c in causes)
    socket_error = next((c for c in causes if isinstance(c, OSError)), None)
    said = f"error {code}: " if code is not None else ""  # the client's number, as the mysql client shows it
    if refused:
        return Failure("down", code, f"{said}connection refused: nothing listens on the port (server not running)")
    if code == CR_CONN_HOST_ERROR or (code is None and isinstance(exc, OSError)):
        if timed_out:
            return Failure("unreachable", code, f"{said}no TCP answer within the connect timeout of {connect_timeout:g} s "
                                                f"(host down or partitioned?)")
        return Failure("unreachable", code, f"{said}cannot connect: {socket_error or exc}")
    if timed_out:
        return Failure("hung", code, f"accepted the connection but gave no answer within the read timeout of "
                                     f"{read_timeout:g} s (hung or overloaded)")
    if code in (CR_SERVER_GONE_ERROR, CR_SERVER_LOST) or socket_error is not None:
        return Failure("unreachable", code, f"{said}the server closed the connection (stopped, restarted or killed the session?)")
    if code is not None:
        message = exc.args[1] if len(exc.args) > 1 else ""
        return Failure("up", code, f"error {code}: {message}")
    return Failure("up", None, str(exc) or type(exc).__name__)


def raise_failure(failure: Failure, where: str, what: str = "") -> NoReturn:
    """Raise the error that says the failure: Member* for the member's state, StatementFailed
    when the server answered with an error. `what` names the statement, if any."""
    doing = f"`{what}`: " if what else ""
    kinds: dict[MemberState, type[MemberFailed]] = {"hung": MemberHung, "down": MemberDown,
                                                    "unreachable": MemberUnreachable}
    if failure.state in kinds:
        raise kinds[failure.state](f"{where}: {doing}{failure.detail}", failure.detail) from None
    raise StatementFailed(f"{where}: {doing}failed: {failure.detail}", failure.errno) from None


def state_of(error: ConnectError) -> MemberState:
    """The member state a connection error stands for (`unreachable` when it does not say)."""
    state: MemberState = getattr(error, "state", "unreachable")
    return state


def detail_of(error: Exception) -> str:
    """What failed, without the member's name and address in front (views name the member)."""
    detail: str = getattr(error, "detail", "") or str(error)
    return detail


# -- the pool -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """The rows of the last statement sent, with its column names."""

    columns: tuple[str, ...]
    rows: list[Row]

    def dicts(self) -> list[dict[str, object]]:
        return [dict(zip(self.columns, row, strict=False)) for row in self.rows]


class MySQLPool:
    """Connections to a cluster's members with the cluster's credentials and timeouts.

    One idle connection per member is kept and pinged before reuse. A ping that finds the
    member hung fails at once (connecting again would cost another full read timeout); a
    ping that finds the connection closed (a restarted or killed server) reconnects.
    Statements with a longer read timeout (server-side waits) get a connection of their own.
    """

    def __init__(self, cluster: Cluster, user: str, password: str) -> None:
        self.cluster = cluster
        self._user = user
        self._password = password
        self._idle: dict[str, Connection] = {}
        self._guard = threading.Lock()

    def where(self, member: Member) -> str:
        return f"{member.name} ({member.address}:{self.cluster.port_of(member)})"

    def run(self, member: Member, statements: Sequence[Sql], read_timeout: float | None = None) -> Result:
        """Send the statements in order on one connection; return the last one's rows."""
        import pymysql

        t = self.cluster.timeouts
        limit = read_timeout or t.read
        with self._session(member, read_timeout) as conn:
            current: list[str] = []
            try:
                return _execute(conn, statements, current)
            except (pymysql.err.MySQLError, OSError) as exc:
                failure = classify(exc, t.connect, limit)
                if failure.state != "up":
                    _close(conn)
                raise_failure(failure, self.where(member), "".join(current))

    @contextlib.contextmanager
    def _session(self, member: Member, read_timeout: float | None) -> Iterator[Connection]:
        conn = self._reuse(member) if read_timeout is None else None
        if conn is None:
            conn = self._connect(member, read_timeout)
        try:
            yield conn
        finally:
            if read_timeout is None and conn.open:
                with self._guard:
                    previous = self._idle.pop(member.name, None)
                    self._idle[member.name] = conn
                if previous is not None:
                    _close(previous)
            else:
                _close(conn)

    def _reuse(self, member: Member) -> Connection | None:
        import pymysql

        with self._guard:
            conn = self._idle.pop(member.name, None)
        if conn is None:
            return None
        try:
            conn.ping(reconnect=False)
            return conn
        except (pymysql.err.MySQLError, OSError) as exc:
            _close(conn)
            t = self.cluster.timeouts
            failure = classify(exc, t.connect, t.read)
            if failure.state == "hung":
                raise_failure(failure, self.where(member))
            return None  # closed under us (restart, kill): connect again and see

    def _connect(self, member: Member, read_timeout: float | None) -> Connection:
        return self._open(member.address, self.cluster.port_of(member), read_timeout, self.where(member))

    def _open(self, address: str, port: int, read_timeout: float | None, where: str) -> Connection:
        import pymysql

        t = self.cluster.timeouts
        limit = read_timeout or t.read
        try:
            return pymysql.connect(
                host=address, port=port, user=self._user, password=self._password,
                connect_timeout=t.connect, read_timeout=limit, write_timeout=t.read, autocommit=True,
            )
        except (pymysql.err.MySQLError, OSError) as exc:
            raise_failure(classify(exc, t.connect, limit), where)

    def run_at(self, address: str, port: int, statements: Sequence[Sql], where: str,
               read_timeout: float | None = None) -> Result:
        """Send statements on a connection of their own to an address that is not a member (a
        proxy's frontend): never kept, since a proxy picks the server once per connection."""
        import pymysql

        t = self.cluster.timeouts
        limit = read_timeout or t.read
        conn = self._open(address, port, read_timeout, where)
        current: list[str] = []
        try:
            return _execute(conn, statements, current)
        except (pymysql.err.MySQLError, OSError) as exc:
            raise_failure(classify(exc, t.connect, limit), where, "".join(current))
        finally:
            _close(conn)

    def close(self) -> None:
        with self._guard:
            idle, self._idle = list(self._idle.values()), {}
        for conn in idle:
            _close(conn)


def _execute(conn: Connection, statements: Sequence[Sql], current: list[str]) -> Result:
    """Send the statements in order; `current` names the one being sent, for the error message."""
    with conn.cursor() as cur:
        result = Result((), [])
        for sql in statements:
            current[:] = [sql.shown()]
            cur.execute(sql.template, sql.params or None)
            columns = tuple(str(d[0]) for d in cur.description or ())
            result = Result(columns, [tuple(r) for r in cur.fetchall() or ()])
        return result


def _close(conn: Connection) -> None:
    # Closing a broken connection must not mask the real error.
    with contextlib.suppress(Exception):
        conn.close()

"""MongoDB connector (pymongo): one client per member, probed in parallel into an immutable
view of the replica set, and admin commands sent one member at a time.

Every client uses `directConnection=True`: with the majority lost there is no primary, and
pymongo's replica-set discovery would wait for one. Server selection, connect and socket
timeouts come from the inventory, so a hung member (it accepts TCP, then never answers)
costs one timeout, and all members are probed at once so that three hung members cost
about one timeout too, not three.

Commands travel as MongoDB extended JSON text: the text an operator sees in a plan is
parsed and sent as it stands (`{"replSetReconfig": {...}, "force": true}`), and a `$db`
field names a database other than `admin`, as OP_MSG does on the wire.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from drengine.clock import SYSTEM, Clock, wait_until
from drengine.datastores.mongodb.fencing import SHUTDOWN_WAIT_SECONDS, FenceAttempt, sql_statements
from drengine.datastores.mongodb.setview import (
    CANARY_COLLECTION,
    CANARY_DB,
    COUNT_CANARY,
    INVALID_REPLICA_SET_CONFIG,
    NOT_YET_INITIALIZED,
    STATE_NAMES,
    MemberView,
    PeerStatus,
    ReplConfig,
    SetView,
    canary_failure,
    canary_insert_command,
    command_text,
    config_from_json,
    freeze_command,
    optime_of,
    peer_status,
    reconfig_command,
    step_down_command,
)
from drengine.errors import CommandFailed, ConnectError, DrengineError, ProbeTimeout
from drengine.faults import FaultsByProcess, ProcessFaults, stop_command
from drengine.inventory import Cluster, FenceMethod, Inventory, Member
from drengine.steps import Statement
from drengine.transport import command_text as command_text_of

if TYPE_CHECKING:
    from pymongo import MongoClient

# Grace on top of connect + read before a probe thread is given up on.
PROBE_GRACE_SECONDS = 0.5
SELECTION_MARGIN_MS = 20
# The backend's threads (probes, closing clients), started only when none is idle: a probe stuck on
# a hung member until its socket timeout keeps its thread, and the next look gets others.
POOL_THREADS = 32


class MongoAPI(Protocol):
    """What the MongoDB actions use; the real connector and the simulator both provide it."""

    cluster: Cluster

    def observe(self) -> SetView: ...

    def probe(self, member: str) -> MemberView: ...

    def command(self, member: str, text: str) -> dict[str, Any]: ...

    def get_config(self, member: str) -> ReplConfig: ...

    def endpoint(self, member: str) -> str: ...

    def fence(self, member: str, method: FenceMethod) -> FenceAttempt: ...

    def down(self, member: str) -> str | None: ...

    def close(self) -> None: ...


# -- the connector -------------------------------------------------------------------------------------


class MongoBackend(FaultsByProcess):
    """Implements MongoAPI with pymongo. `endpoints` maps member names to (host, port) when
    they differ from the inventory (the simulator serves each member on its own port)."""

    _faults: ProcessFaults  # fencing also stops members and checks their process is gone

    def __init__(
        self,
        cluster: Cluster,
        inventory: Inventory | None,
        endpoints: Mapping[str, tuple[str, int]] | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.cluster = cluster
        self.clock = clock  # the run's: waits for a fenced member to go down
        self._endpoints = {
            m.name: (endpoints[m.name] if endpoints and m.name in endpoints else (m.address, cluster.port_of(m)))
            for m in cluster.members
        }
        self._user = ""
        self._password = ""
        cred = cluster.credentials
        if cred.password is not None and inventory is not None:
            where = f"{inventory.path}: cluster {cluster.name} credentials"
            self._user = cred.user
            self._password = cred.password.resolve(where)
        # One client per member and socket timeout: commands the server holds (a write waiting for
        # its wtimeout, a reconfig for its maxTimeMS) get a socket timeout longer than that wait.
        self._clients: dict[tuple[str, float], MongoClient[dict[str, Any]]] = {}
        self._retired: list[MongoClient[dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._faults = ProcessFaults(inventory, cluster)
        self._primary_hint: str | None = None
        self._pool: cf.ThreadPoolExecutor | None = None

    def _threads(self) -> cf.ThreadPoolExecutor:
        """The backend's thread pool: one look after another reuses the threads of the last."""
        with self._lock:
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(max_workers=max(POOL_THREADS, len(self.cluster.members)),
                                                   thread_name_prefix="mongo-probe")
            return self._pool

    # -- fencing (before a forced reconfig removes a member) ------------------------------------
    def fence(self, member: str, method: FenceMethod) -> FenceAttempt:
        """Stop `member` by one method; ok once its port refuses connections (or its process is gone)."""
        if method is FenceMethod.SQL:
            return self._fence_sql(member)
        where = self.cluster.member(member).host or "localhost"
        if method is FenceMethod.SERVICE:
            statement = Statement(where, command_text_of(stop_command(self.cluster, self.cluster.member(member))),
                                  language="shell")
            return self._fenced_by(member, statement, lambda: self._faults.stop(member))
        if method is FenceMethod.SIGNAL:
            return self._fenced_by(member, None, lambda: self._faults.kill(member))
        return FenceAttempt(False, [], "no proxy serves MongoDB clients")

    def _fenced_by(self, member: str, statement: Statement | None, act: Callable[[], str]) -> FenceAttempt:
        where = self.cluster.member(member).host or "localhost"
        try:
            done = act()
        except DrengineError as exc:
            return FenceAttempt(False, [statement] if statement else [], str(exc))
        shown = statement or Statement(where, done, language="shell")
        return self._confirm_down(member, [shown])

    def _fence_sql(self, member: str) -> FenceAttempt:
        seen = self.probe(member)
        if not seen.reachable:
            return FenceAttempt(False, [], f"it does not answer ({seen.error})")
        statements = sql_statements(member, seen.is_writable_primary)
        for statement in statements:
            try:
                self.command(member, statement.text)
            except ConnectError:
                pass  # mongod closes its connections as it steps down or stops
            except CommandFailed as exc:
                return FenceAttempt(False, statements, str(exc))
        return self._confirm_down(member, statements)

    def _confirm_down(self, member: str, statements: list[Statement]) -> FenceAttempt:
        if wait_until(lambda: self.down(member) is not None, SHUTDOWN_WAIT_SECONDS, 0.1, clock=self.clock):
            return FenceAttempt(True, statements, f"down: {self.down(member)}")
        return FenceAttempt(False, statements, f"still accepts connections {SHUTDOWN_WAIT_SECONDS:g} s later")

    def down(self, member: str) -> str | None:
        """Why the member is certainly down (its port refuses connections, or its pid file names no
        process), or None when it may still run (it answers, hangs, or cannot be reached)."""
        try:
            self._tcp_check(member)
        except ConnectError as exc:
            if "refused" in str(exc).lower():
                return "its port refuses connections"
        except ProbeTimeout:
            pass
        entry = self.cluster.member(member)
        try:
            gone = entry.pid_file is not None and self._faults.gone(member)
        except DrengineError:
            gone = False  # the host cannot be asked: unknown, not down
        return f"no process holds its pid file {entry.pid_file}" if gone else None

    # -- clients ---------------------------------------------------------------------------
    def endpoint(self, member: str) -> str:
        host, port = self._endpoints[member]
        return f"{host}:{port}"

    def _client(self, member: str, server_wait: float = 0.0) -> MongoClient[dict[str, Any]]:
        with self._lock:
            client = self._clients.get((member, server_wait))
            if client is not None:
                return client
            from pymongo import MongoClient

            host, port = self._endpoints[member]
            t = self.cluster.timeouts
            extra: dict[str, Any] = {}
            if self._password:
                extra = {"username": self._user, "password": self._password, "authSource": "admin"}
            client = MongoClient(
                host,
                port,
                directConnection=True,
                # pymongo re-checks its deadline every 500 ms; a deadline just under the connect
                # timeout fails on the wake-up at the timeout instead of sometimes one later.
                serverSelectionTimeoutMS=max(1, int(t.connect * 1000) - SELECTION_MARGIN_MS),
                connectTimeoutMS=int(t.connect * 1000),
                socketTimeoutMS=int((t.read + server_wait) * 1000),
                # A recovery tool must not retry a reconfig behind the operator's back.
                retryWrites=False,
                retryReads=False,
                # Short admin commands on one member each: polling hello is all the monitoring they
                # need, without the streaming protocol's extra connection and RTT thread per client
                # (serverMonitoringMode, DRIVERS-2578: what drivers use on FaaS platforms).
                serverMonitoringMode="poll",
                appname="drengine",
                **extra,
            )
            self._clients[(member, server_wait)] = client
            return client

    def _tcp_check(self, member: str) -> None:
        """A plain TCP connect first: a refused or unroutable port fails here in milliseconds,
        where pymongo's server selection would wait its whole timeout for a member that is down."""
        host, port = self._endpoints[member]
        try:
            with socket.create_connection((host, port), timeout=self.cluster.timeouts.connect):
                pass
        except TimeoutError:
            raise ProbeTimeout(f"{member} ({host}:{port}): no TCP connection within {self.cluster.timeouts.connect:g} s "
                               f"(host down or packets dropped?)") from None
        except OSError as exc:
            hint = " (is mongod running there?)" if isinstance(exc, ConnectionRefusedError) else ""
            raise ConnectError(f"{member} ({host}:{port}): cannot connect: {exc.strerror or exc}{hint}") from None

    def _forget(self, member: str) -> None:
        """Drop the client of a member that failed: a fresh client checks the server at once,
        where the old one would first wait out its monitor's back-off."""
        with self._lock:
            for key in [k for k in self._clients if k[0] == member]:
                self._retired.append(self._clients.pop(key))  # closed with the others in close()

    def close(self) -> None:
        """Close every client at once: pymongo may wait for a server that has gone away."""
        with self._lock:
            clients = list(self._clients.values()) + self._retired
            self._clients.clear()
            self._retired = []
            pool, self._pool = self._pool, None
        if not clients:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            return
        if pool is None or len(clients) > POOL_THREADS:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            pool = cf.ThreadPoolExecutor(max_workers=len(clients), thread_name_prefix="mongo-close")
        try:
            futures = [pool.submit(_quiet_close, c) for c in clients]
            cf.wait(futures, timeout=self.cluster.timeouts.connect + PROBE_GRACE_SECONDS)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- commands --------------------------------------------------------------------------
    def command(self, member: str, text: str) -> dict[str, Any]:
        """Send one command document given as extended JSON text; `$db` picks the database."""
        from bson import json_util

        doc: dict[str, Any] = json_util.loads(text)
        db = str(doc.pop("$db", "admin"))
        name = next(iter(doc), "?")
        wait = server_wait(doc)
        try:
            reply: dict[str, Any] = self._client(member, wait).get_database(db).command(doc)
        except Exception as exc:  # noqa: BLE001 - turned into one error naming member and command
            raise self._failed(member, name, exc, wait) from None
        return reply

    def _failed(self, member: str, command: str, exc: Exception, waited: float = 0.0) -> Exception:
        error = _command_error(member, self.endpoint(member), command, exc, self.cluster, waited)
        if isinstance(error, ConnectError):
            self._forget(member)
        return error

    def _admin(self, member: str, name: str) -> dict[str, Any]:
        try:
            reply: dict[str, Any] = self._client(member).admin.command(name)
        except Exception as exc:  # noqa: BLE001 - see command()
            raise self._failed(member, name, exc) from None
        return reply

    # Named commands for drills and other callers; each sends exactly the text its builder shows.
    def reconfig(self, member: str, config_document: str, force: bool) -> dict[str, Any]:
        return self.command(member, reconfig_command(config_document, force))

    def freeze(self, member: str, seconds: int) -> dict[str, Any]:
        return self.command(member, freeze_command(seconds))

    def step_down(self, member: str, seconds: int) -> dict[str, Any]:
        return self.command(member, step_down_command(seconds))

    def insert_canary(self, member: str, marker: str) -> dict[str, Any]:
        """Insert a marker with w: majority; CommandFailed when a majority did not acknowledge."""
        reply = self.command(member, canary_insert_command(marker, self.clock.wall()))
        failure = canary_failure(reply)
        if failure:
            raise MongoCommandFailed(f"{member} ({self.endpoint(member)}): {failure}",
                                     (reply.get("writeConcernError") or (reply.get("writeErrors") or [{}])[0]).get("code"))
        return reply

    def count_canary(self, member: str) -> int:
        return int(self.command(member, COUNT_CANARY).get("n", 0))

    def primary(self) -> str | None:
        """The one member that answers as writable primary (None when there is none or two)."""
        found = [m.name for m in self.observe().members if m.reachable and m.is_writable_primary]
        self._primary_hint = found[0] if len(found) == 1 else None
        return self._primary_hint

    def write_canary(self, marker: str) -> None:
        """A canary on the primary with w: majority (the primary last seen, else found again)."""
        target = self._primary_hint or self.primary()
        if target is None:
            raise MongoCommandFailed(f"cluster {self.cluster.name}: no writable primary to write the canary on", None)
        try:
            self.insert_canary(target, marker)
        except DrengineError:
            self._primary_hint = None  # look for the primary again next time
            raise

    def canary_markers(self) -> set[str]:
        """Every canary marker the primary holds (empty while there is no primary)."""
        target = self.primary()
        if target is None:
            return set()
        reply = self.command(target, command_text({"find": CANARY_COLLECTION, "filter": {}, "batchSize": 100000,
                                                   "$db": CANARY_DB}))
        return {str(doc["_id"]) for doc in reply.get("cursor", {}).get("firstBatch", [])}

    def get_config(self, member: str) -> ReplConfig:
        from bson import json_util

        reply = self._admin(member, "replSetGetConfig")
        return config_from_json(json_util.dumps(reply["config"], json_options=json_util.RELAXED_JSON_OPTIONS))

    # -- observing -------------------------------------------------------------------------
    def observe(self) -> SetView:
        members = self.cluster.members
        t = self.cluster.timeouts
        budget = t.backstop
        started = time.monotonic()
        # A thread still stuck in I/O after the budget ends at its socket timeout; it is not waited for.
        futures = {self._threads().submit(self._probe, m): m for m in members}
        done, _ = cf.wait(futures, timeout=budget)
        views = []
        for fut, member in futures.items():
            if fut in done:
                views.append(fut.result())
            else:
                fut.cancel()
                views.append(self._unreachable(
                    member, f"no answer within {budget:g} s, the probe's budget (2 x (connect {t.connect:g} s + "
                            f"read {t.read:g} s) + 1 s): hung member, or a machine too busy to run the probe",
                    budget))
        return SetView(cluster=self.cluster.name, members=views, observed_at=self.clock.wall(),
                       probe_seconds=round(time.monotonic() - started, 3))

    def probe(self, member: str) -> MemberView:
        return self._probe(self.cluster.member(member))

    def _unreachable(self, member: Member, error: str, seconds: float = 0.0) -> MemberView:
        return MemberView(name=member.name, host=self.endpoint(member.name), reachable=False, error=error,
                          probe_seconds=round(seconds, 3))

    def _probe(self, member: Member) -> MemberView:
        from bson import json_util

        started = time.monotonic()
        name = member.name
        try:
            self._tcp_check(name)
            hello = self._admin(name, "hello")
        except (ConnectError, CommandFailed) as exc:
            self._forget(name)
            return self._unreachable(member, str(exc), time.monotonic() - started)
        last_write = hello.get("lastWrite") or {}
        state = ("PRIMARY" if hello.get("isWritablePrimary") else "SECONDARY" if hello.get("secondary")
                 else "ARBITER" if hello.get("arbiterOnly") else "")
        term: int | None = None
        peers: list[PeerStatus] = []
        config: ReplConfig | None = None
        try:
            status = self._admin(name, "replSetGetStatus")
            state = STATE_NAMES.get(int(status.get("myState", 6)), "UNKNOWN")
            term = int(status["term"]) if "term" in status else None
            peers = [peer_status(row) for row in status.get("members", [])]
        except CommandFailed as exc:
            code = getattr(exc, "code", None)
            if code == INVALID_REPLICA_SET_CONFIG:
                state = "REMOVED"  # its config no longer names it
            elif code == NOT_YET_INITIALIZED or hello.get("setName") is None:
                state = "STARTUP"  # no replica-set config: new or wiped
            else:
                return self._unreachable(member, str(exc), time.monotonic() - started)
        except ConnectError as exc:
            self._forget(name)
            return self._unreachable(member, str(exc), time.monotonic() - started)
        if hello.get("setName") is not None:
            try:
                reply = self._admin(name, "replSetGetConfig")
                config = config_from_json(json_util.dumps(reply["config"], json_options=json_util.RELAXED_JSON_OPTIONS))
            except CommandFailed:
                config = None  # a REMOVED member may refuse; its hello still says what it believes
            except ConnectError as exc:
                self._forget(name)
                return self._unreachable(member, str(exc), time.monotonic() - started)
        return MemberView(
            name=name,
            host=self.endpoint(name),
            reachable=True,
            me=str(hello.get("me") or ""),
            state=state,
            is_writable_primary=bool(hello.get("isWritablePrimary")),
            arbiter_only=bool(hello.get("arbiterOnly")),
            set_name=str(hello.get("setName") or ""),
            set_version=int(hello["setVersion"]) if hello.get("setVersion") is not None else None,
            term=term,
            optime=None if hello.get("arbiterOnly") else optime_of(last_write.get("opTime")),
            config=config,
            peers=peers,
            probe_seconds=round(time.monotonic() - started, 3),
        )


def _quiet_close(client: Any) -> None:
    # Closing a broken client must not mask the real outcome.
    with contextlib.suppress(Exception):
        client.close()


class MongoCommandFailed(CommandFailed):
    """A member answered a command with an error; `code` is MongoDB's error code."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


def server_wait(doc: Mapping[str, Any]) -> float:
    """Seconds the server may hold this command before it answers: a write's wtimeout, a
    command's maxTimeMS. The socket timeout must outlast it, or a slow majority would look like
    a hung member."""
    concern = doc.get("writeConcern")
    wtimeout = concern.get("wtimeout", 0) if isinstance(concern, Mapping) else 0
    return max(float(wtimeout or 0), float(doc.get("maxTimeMS", 0) or 0)) / 1000.0


def _command_error(member: str, endpoint: str, command: str, exc: Exception, cluster: Cluster,
                   waited: float = 0.0) -> Exception:
    from pymongo.errors import (
        AutoReconnect,
        ConnectionFailure,
        NetworkTimeout,
        NotPrimaryError,
        OperationFailure,
        ServerSelectionTimeoutError,
    )

    where = f"{member} ({endpoint})"
    t = cluster.timeouts
    if isinstance(exc, NetworkTimeout):
        if waited:
            return ProbeTimeout(f"{where}: `{command}` got no answer within {waited + t.read:g} s: the server may hold "
                                f"it {waited:g} s (its wtimeout or maxTimeMS) and then must answer, so the member "
                                f"itself hangs, not just a slow majority")
        return ProbeTimeout(f"{where}: `{command}` got no answer within the read timeout of {t.read:g} s "
                            f"(hung or overloaded member?)")
    if isinstance(exc, ServerSelectionTimeoutError):
        detail = _selection_detail(str(exc), endpoint)
        if "timed out" in str(exc).lower() or "No servers found yet" in str(exc):
            return ProbeTimeout(f"{where}: `{command}` could not be sent: the member did not complete the "
                                f"handshake within {t.connect:g} s (hung member?)")
        return ConnectError(f"{where}: cannot connect to send `{command}` within {t.connect:g} s: {detail}")
    if isinstance(exc, (OperationFailure, NotPrimaryError)):
        # NotPrimaryError is an AutoReconnect, but it is an answer, not a lost connection.
        details = exc.details or {}
        name = details.get("codeName", "") if isinstance(details, Mapping) else ""
        msg = details.get("errmsg", str(exc)) if isinstance(details, Mapping) else str(exc)
        code = details.get("code") if isinstance(details, Mapping) else None
        code = getattr(exc, "code", None) or code
        return MongoCommandFailed(f"{where}: `{command}` failed: {msg} (code {code}{' ' + name if name else ''})",
                                  int(code) if code is not None else None)
    if isinstance(exc, (AutoReconnect, ConnectionFailure)):
        return ConnectError(f"{where}: connection lost during `{command}`: {_selection_detail(str(exc), endpoint)}")
    return MongoCommandFailed(f"{where}: `{command}` failed: {type(exc).__name__}: {exc}", None)


def _selection_detail(text: str, endpoint: str) -> str:
    """The cause inside pymongo's server-selection message, without the topology dump."""
    cause = text.split(" (configured timeouts", 1)[0].split(", Timeout:", 1)[0]
    cause = cause.removeprefix(f"{endpoint}: ")
    if "refused" in cause.lower():
        return f"{cause} (is mongod running there?)"
    return cause

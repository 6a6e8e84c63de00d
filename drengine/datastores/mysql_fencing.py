"""Fencing for MariaDB replication and Galera: make sure a member that must not take writes
(an old primary before a promotion, the nodes left out of a bootstrap) cannot, by the
methods the inventory lists, in its order (default: sql, service, signal, proxy):

- sql: on a member that answers, `SET GLOBAL read_only=1`, its client connections killed
  (not the replicas' binlog dump threads: they still deliver its last transactions);
- service: the inventory's stop template over the member's host transport, until the pid
  in its pid file is gone;
- signal: SIGKILL by the pid file over the host transport (a SIGSTOPped process cannot
  handle SIGTERM, but dies of SIGKILL);
- proxy: out of every HAProxy backend that serves it (maint, sessions shut down).

Methods are tried until one fences the member; each one's outcome is journaled. A member
whose process is found gone is confirmed dead. A method that cannot apply (no host, no pid
file, no proxy, SQL on a member that does not answer) is skipped and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from drengine.clock import Clock, wait_until
from drengine.datastores.mysql_hosts import kill_command
from drengine.datastores.mysql_pool import MemberState, Sql
from drengine.datastores.mysql_traffic import Statements, TrafficAPI, proxy_of
from drengine.errors import DrengineError
from drengine.haproxy import set_state_command, shutdown_sessions_command, statement
from drengine.inventory import Cluster, FenceMethod, Member
from drengine.steps import Fact, Statement, fact
from drengine.transport import command_text

READ_ONLY = Sql("SET GLOBAL read_only=1")
# Client sessions only: replication threads and the binlog dump threads replicas read from are kept.
CLIENTS = Sql("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
              "AND USER NOT IN ('system user', 'event_scheduler') AND COMMAND NOT LIKE 'Binlog Dump%'")
CONFIRM = Sql("SELECT @@read_only, @@gtid_binlog_pos")
Outcome = Literal["fenced", "dead", "failed", "skipped", "not needed"]


@fact
class FenceAttempt(Fact):
    member: str
    method: str
    outcome: Outcome
    detail: str

    def line(self) -> str:
        return f"{self.member}: {self.method}: {self.outcome.upper()}: {self.detail}"


@fact
class MemberFence(Fact):
    """How one member was fenced (or not), method by method."""

    member: str
    state: str  # what the probe saw before fencing: up, down, hung, unreachable
    attempts: list[FenceAttempt] = []
    final_position: str = ""  # the GTID position of a member fenced read-only (nothing follows it)

    @property
    def safe(self) -> bool:
        """Fenced by some method, or confirmed dead."""
        return self.state == "down" or any(a.outcome in ("fenced", "dead") for a in self.attempts)

    def how(self) -> str:
        if self.state == "down":
            return "not running (its host refused the connection)"
        done = [a for a in self.attempts if a.outcome in ("fenced", "dead")]
        if not done:
            return "NOT FENCED: " + "; ".join(f"{a.method} {a.outcome}" for a in self.attempts)
        return f"{'fenced by ' + done[0].method if done[0].outcome == 'fenced' else 'confirmed dead'}: {done[0].detail}"


@fact
class Fencing(Fact):
    members: list[MemberFence] = []

    @property
    def unsafe(self) -> list[str]:
        return [m.member for m in self.members if not m.safe]

    def of(self, name: str) -> MemberFence | None:
        return next((m for m in self.members if m.member == name), None)

    def lines(self) -> list[str]:
        return [line for m in self.members for line in [f"{m.member}: {m.how()}"] + [a.line() for a in m.attempts]]

    def summary(self) -> str:
        """Which fences succeeded, member by member, with what was run (for the next gate)."""
        return "; ".join(f"{m.member} {m.how()}" for m in self.members)


# -- what each method would send -----------------------------------------------------------------------


def _shell(member: str, text: str) -> Statement:
    return Statement(member, text, language="shell")


def method_statements(api: TrafficAPI, member: Member, method: FenceMethod) -> list[Statement]:
    """The exact commands a method sends (shown at the gate and in plans)."""
    name = member.name
    if method is FenceMethod.SQL:
        return [READ_ONLY.on(name), Statement(name, f"{CLIENTS.shown()}  -- then KILL CONNECTION <id> for each")]
    if method is FenceMethod.SERVICE:
        return [_shell(name, command_text(api.service_command("stop", name))
                       + f"   # then wait until the pid in {member.pid_file or 'its pid file'} is gone")]
    if method is FenceMethod.SIGNAL:
        return [_shell(name, kill_command(member, "KILL"))]
    out = []
    for proxy in api.cluster.proxies:
        for backend in proxy.backends:
            server = backend.servers.get(name)
            if server is not None:
                out += [statement(api.cluster, proxy, set_state_command(backend.name, server, "maint")),
                        statement(api.cluster, proxy, shutdown_sessions_command(backend.name, server))]
    return out


def fence_statements(api: TrafficAPI, member: Member) -> list[Statement]:
    return [s for m in api.cluster.fence_methods() for s in method_statements(api, member, m)]


# -- the methods ---------------------------------------------------------------------------------------


class _Run:
    """One member's fencing: the backend, where statements are journaled, the clock and a bound."""

    def __init__(self, api: TrafficAPI, member: Member, state: MemberState, record: Statements, clock: Clock,
                 timeout: float) -> None:
        self.api, self.member, self.state = api, member, state
        self.record, self.clock, self.timeout = record, clock, timeout
        self.final_position = ""

    def attempt(self, method: FenceMethod, outcome: Outcome, detail: str) -> FenceAttempt:
        return FenceAttempt(member=self.member.name, method=method.value, outcome=outcome, detail=detail)

    def sql(self) -> FenceAttempt:
        name = self.member.name
        if self.state != "up":
            return self.attempt(FenceMethod.SQL, "skipped", f"it did not answer the probe ({self.state}); SQL cannot reach it")
        try:
            self.api.execute(name, READ_ONLY)
            self.record(READ_ONLY.on(name), "ok")
            killed = 0
            for row in self.api.query(name, CLIENTS):
                kill = Sql("KILL CONNECTION %s", (int(str(row[0])),))
                try:
                    self.api.execute(name, kill)
                    killed += 1
                    self.record(kill.on(name), "ok")
                except DrengineError as exc:  # the session ended by itself meanwhile
                    self.record(kill.on(name), f"error: {exc}")
            rows = self.api.query(name, CONFIRM)
        except DrengineError as exc:
            return self.attempt(FenceMethod.SQL, "failed", str(exc))
        read_only = bool(rows) and str(rows[0][0]) in ("1", "ON")
        self.final_position = str(rows[0][1] or "") if rows else ""
        if not read_only:
            return self.attempt(FenceMethod.SQL, "failed", "read_only is still 0 after SET GLOBAL read_only=1")
        return self.attempt(FenceMethod.SQL, "fenced", f"read_only=1, {killed} client connection(s) killed; last "
                                                      f"position {self.final_position or '-'}")

    def service(self) -> FenceAttempt:
        name = self.member.name
        if self.member.host is None:
            return self.attempt(FenceMethod.SERVICE, "skipped", "the inventory names no host for it")
        shown = _shell(name, command_text(self.api.service_command("stop", name)))
        try:
            result = self.api.run_service("stop", name, timeout=self.timeout)
        except DrengineError as exc:
            self.record(shown, f"error: {exc}")
            return self.attempt(FenceMethod.SERVICE, "failed", str(exc))
        self.record(shown, f"exit {result.exit_status}")
        if not result.ok:
            return self.attempt(FenceMethod.SERVICE, "failed", f"`{result.command}` exited {result.exit_status}: "
                                                               f"{(result.stderr or result.stdout).strip()[-300:]}")
        if self.member.pid_file is None:
            return self.attempt(FenceMethod.SERVICE, "fenced", f"`{result.command}` exited 0 (no pid_file to confirm)")
        return self._gone(FenceMethod.SERVICE, f"`{result.command}` exited 0")

    def _gone(self, method: FenceMethod, done: str) -> FenceAttempt:
        started = self.clock.now()
        try:
            gone = wait_until(lambda: not self.api.server_process(self.member.name).alive, self.timeout, 0.05, self.clock)
        except DrengineError as exc:
            return self.attempt(method, "failed", f"{done}, but its process could not be checked: {exc}")
        if not gone:
            return self.attempt(method, "failed", f"{done}, but its process still runs after {self.timeout:g} s")
        return self.attempt(method, "fenced", f"{done}; its process is gone after {self.clock.now() - started:.2f} s")

    def signal(self) -> FenceAttempt:
        name = self.member.name
        if self.member.host is None or self.member.pid_file is None:
            missing = "host" if self.member.host is None else "pid_file"
            return self.attempt(FenceMethod.SIGNAL, "skipped", f"the inventory gives no {missing} for it")
        try:
            found = self.api.server_process(name)
            if not found.alive:
                self.record(_shell(name, f"cat {self.member.pid_file}"), found.describe())
                return self.attempt(FenceMethod.SIGNAL, "dead", found.describe())
            done = self.api.kill(name)
        except DrengineError as exc:
            return self.attempt(FenceMethod.SIGNAL, "failed", str(exc))
        self.record(_shell(name, done), "ok")
        return self._gone(FenceMethod.SIGNAL, done)

    def proxy(self) -> FenceAttempt:
        name = self.member.name
        servers = [(proxy, backend.name, backend.servers[name]) for proxy in self.api.cluster.proxies
                   for backend in proxy.backends if name in backend.servers]
        if not servers:
            return self.attempt(FenceMethod.PROXY, "skipped", "no proxy in the inventory serves it")
        try:
            for proxy, backend, server in servers:
                for command in (set_state_command(backend, server, "maint"), shutdown_sessions_command(backend, server)):
                    self.api.proxy_command(proxy.name, command)
                    self.record(statement(self.api.cluster, proxy_of(self.api.cluster, proxy.name), command), "ok")
            views = {v.proxy: v for v in self.api.proxy_views()}
        except DrengineError as exc:
            return self.attempt(FenceMethod.PROXY, "failed", str(exc))
        still = [f"{s.backend}/{s.server} is {s.admin}" for v in views.values() for s in v.of(name) if s.admin != "maint"]
        if still:
            return self.attempt(FenceMethod.PROXY, "failed", "; ".join(still))
        where = ", ".join(f"{p.name} {b}/{s}" for p, b, s in servers)
        return self.attempt(FenceMethod.PROXY, "fenced", f"in maint, sessions shut down: {where}")


def fence_member(api: TrafficAPI, member: Member, state: MemberState, record: Statements, clock: Clock,
                 timeout: float) -> MemberFence:
    """Try the cluster's methods in order until one fences the member (or finds it dead)."""
    run = _Run(api, member, state, record, clock, timeout)
    methods: dict[FenceMethod, Callable[[], FenceAttempt]] = {
        FenceMethod.SQL: run.sql, FenceMethod.SERVICE: run.service,
        FenceMethod.SIGNAL: run.signal, FenceMethod.PROXY: run.proxy,
    }
    attempts: list[FenceAttempt] = []
    done = ""
    for method in api.cluster.fence_methods():
        if done:
            attempts.append(run.attempt(method, "not needed", f"already {done}"))
            continue
        attempt = methods[method]()
        attempts.append(attempt)
        if attempt.outcome in ("fenced", "dead"):
            done = f"fenced by {method.value}" if attempt.outcome == "fenced" else "confirmed dead"
    return MemberFence(member=member.name, state=state, attempts=attempts, final_position=run.final_position)


def needs_fencing(state: MemberState) -> bool:
    """A member whose host refused the connection is not running; any other may be alive."""
    return state != "down"


def fence_risk(cluster: Cluster, targets: list[tuple[str, MemberState, str]]) -> str:
    who = "; ".join(f"{name} ({state}: {error})" if error else f"{name} ({state})" for name, state, error in targets)
    order = ", ".join(m.value for m in cluster.fence_methods())
    return (f"split brain: {who} may still be alive (a hung process wakes up, a partition heals) and take writes "
            f"from clients that still reach it, which the new primary never gets. drengine fences it first "
            f"({order}, in this order); if every method fails, the next step is held at a dangerous gate")
